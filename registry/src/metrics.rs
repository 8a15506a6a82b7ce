//! Prometheus metrics, kept as plain counters and rendered as text on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::Registry;

/// The registry's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, method, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Body bytes of downloads actually sent.
    pub bytes_served: Arc<AtomicU64>,
    /// Body bytes of uploads received.
    pub bytes_received: AtomicU64,
    /// Publish outcome → count.
    publishes: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Count a publish by its outcome (`created`, `unchanged`, `conflict`, `refused`).
    pub fn publish(&self, outcome: &'static str) {
        *self
            .publishes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(outcome)
            .or_default() += 1;
    }

    fn request(&self, route: String, method: String, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route, method, status))
            .or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, plugins: usize, versions: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP wasmgate_registry_http_requests_total HTTP requests by route, method and status.\n");
        out.push_str("# TYPE wasmgate_registry_http_requests_total counter\n");
        for ((route, method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "wasmgate_registry_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP wasmgate_registry_bytes_served_total Body bytes of downloads sent.\n");
        out.push_str("# TYPE wasmgate_registry_bytes_served_total counter\n");
        let _ = writeln!(
            out,
            "wasmgate_registry_bytes_served_total {}",
            self.bytes_served.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP wasmgate_registry_bytes_received_total Body bytes of uploads received.\n",
        );
        out.push_str("# TYPE wasmgate_registry_bytes_received_total counter\n");
        let _ = writeln!(
            out,
            "wasmgate_registry_bytes_received_total {}",
            self.bytes_received.load(Ordering::Relaxed)
        );
        out.push_str("# HELP wasmgate_registry_publishes_total Module publishes by outcome.\n");
        out.push_str("# TYPE wasmgate_registry_publishes_total counter\n");
        for (outcome, n) in self
            .publishes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "wasmgate_registry_publishes_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP wasmgate_registry_plugins Plugins in the store.\n");
        out.push_str("# TYPE wasmgate_registry_plugins gauge\n");
        let _ = writeln!(out, "wasmgate_registry_plugins {plugins}");
        out.push_str("# HELP wasmgate_registry_versions Plugin versions in the store.\n");
        out.push_str("# TYPE wasmgate_registry_versions gauge\n");
        let _ = writeln!(out, "wasmgate_registry_versions {versions}");
        out
    }
}

/// Count and log every routed request.
pub async fn track(State(registry): State<Registry>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    // Successful reads are the bulk of the traffic: keep them out of the default log level.
    if (method == "GET" || method == "HEAD") && status < 400 {
        tracing::debug!(%method, %path, status, elapsed_ms, "request");
    } else {
        tracing::info!(%method, %path, status, elapsed_ms, "request");
    }
    registry.metrics().request(route, method, status);
    response
}
