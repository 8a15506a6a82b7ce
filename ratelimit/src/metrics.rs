//! Prometheus counters of the service, rendered in the text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// Upper bounds of the backend latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// What the service counts; shared by the gRPC handler and the `/metrics` endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    calls: AtomicU64,
    over_limit: AtomicU64,
    shadow_over_limit: AtomicU64,
    no_limit: AtomicU64,
    invalid: AtomicU64,
    backend_errors: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

/// One event to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A ShouldRateLimit call.
    Call,
    /// A call answered OVER_LIMIT.
    OverLimit,
    /// A descriptor over its limit in shadow mode (answered OK).
    ShadowOverLimit,
    /// A descriptor no configured limit matched.
    NoLimit,
    /// A call refused as INVALID_ARGUMENT.
    Invalid,
    /// A call answered UNAVAILABLE because the backend failed.
    BackendError,
}

impl Metrics {
    pub fn count(&self, event: Event) {
        let counter = match event {
            Event::Call => &self.calls,
            Event::OverLimit => &self.over_limit,
            Event::ShadowOverLimit => &self.shadow_over_limit,
            Event::NoLimit => &self.no_limit,
            Event::Invalid => &self.invalid,
            Event::BackendError => &self.backend_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Record how long one backend round trip took (successful or not).
    pub fn backend_latency(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric; `backend` labels the latency.
    pub fn render(&self, backend: &str) -> String {
        let mut out = String::new();
        let counters = [
            ("calls", "ShouldRateLimit calls.", &self.calls),
            ("over_limit", "Calls answered OVER_LIMIT.", &self.over_limit),
            (
                "shadow_over_limit",
                "Descriptors over their limit in shadow mode (answered OK).",
                &self.shadow_over_limit,
            ),
            (
                "no_limit",
                "Descriptors no configured limit matched.",
                &self.no_limit,
            ),
            (
                "invalid_requests",
                "Calls refused as INVALID_ARGUMENT.",
                &self.invalid,
            ),
            (
                "backend_errors",
                "Calls answered UNAVAILABLE because the backend failed.",
                &self.backend_errors,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP wasmgate_ratelimit_{name}_total {help}");
            let _ = writeln!(out, "# TYPE wasmgate_ratelimit_{name}_total counter");
            let _ = writeln!(
                out,
                "wasmgate_ratelimit_{name}_total {}",
                value.load(Ordering::Relaxed)
            );
        }
        let name = "wasmgate_ratelimit_backend_seconds";
        let _ = writeln!(out, "# HELP {name} Backend round trips, successful or not.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{backend=\"{backend}\",le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{backend=\"{backend}\",le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{backend=\"{backend}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{backend=\"{backend}\"}} {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.count(Event::Call);
        metrics.count(Event::Call);
        metrics.count(Event::OverLimit);
        metrics.backend_latency(Duration::from_micros(700));
        metrics.backend_latency(Duration::from_millis(30));
        let text = metrics.render("redis");
        assert!(
            text.contains("wasmgate_ratelimit_calls_total 2\n"),
            "{text}"
        );
        assert!(text.contains("wasmgate_ratelimit_over_limit_total 1\n"));
        assert!(text.contains("_bucket{backend=\"redis\",le=\"0.0005\"} 0\n"));
        assert!(text.contains("_bucket{backend=\"redis\",le=\"0.001\"} 1\n"));
        assert!(text.contains("_bucket{backend=\"redis\",le=\"0.05\"} 2\n"));
        assert!(text.contains("_count{backend=\"redis\"} 2\n"));
    }
}
