//! Load from `wrk`: run it pinned to a core, and read its report.

use std::process::Command;
use std::time::Duration;

/// One run of wrk against one URL.
#[derive(Debug, Clone)]
pub struct Load {
    pub url: String,
    pub connections: u32,
    pub duration: Duration,
    pub headers: Vec<(String, String)>,
    /// The core wrk runs on, when the machine has cores to spare.
    pub core: Option<usize>,
    /// A Lua script (`-s`) that builds each request, e.g. to send a different token each time.
    pub script: Option<std::path::PathBuf>,
}

/// What wrk reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Responses that were not 2xx or 3xx.
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts, together.
    pub socket_errors: u64,
}

impl Report {
    /// Why this run does not count, if it does not.
    pub fn problem(&self) -> Option<String> {
        if self.requests == 0 {
            return Some("no request completed".into());
        }
        if self.non_2xx > 0 {
            return Some(format!(
                "{} of {} responses were not 2xx",
                self.non_2xx, self.requests
            ));
        }
        if self.socket_errors > 0 {
            return Some(format!("{} socket errors", self.socket_errors));
        }
        None
    }

    /// [`Report::problem`] for a configuration that answers `status`: refusals are the work
    /// being measured when it is not 200.
    pub fn problem_expecting(&self, status: u16) -> Option<String> {
        match self.problem() {
            Some(_) if status != 200 && self.requests > 0 && self.socket_errors == 0 => None,
            problem => problem,
        }
    }
}

/// Run wrk (one thread, `--latency`) and parse its report.
pub fn run(load: &Load) -> Result<Report, String> {
    let mut command = match load.core {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &core.to_string(), "wrk"]);
            c
        }
        None => Command::new("wrk"),
    };
    command
        .args(["-t", "1"])
        .args(["-c", &load.connections.to_string()])
        // wrk takes whole seconds only.
        .args(["-d", &format!("{}s", load.duration.as_secs().max(1))])
        .args(["--timeout", "5s", "--latency"]);
    for (name, value) in &load.headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    if let Some(script) = &load.script {
        command.arg("-s").arg(script);
    }
    command.arg(&load.url);
    let out = command
        .output()
        .map_err(|e| format!("cannot run wrk: {e} (install it with `apt-get install wrk`)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(&stdout)
}

/// Parse wrk 4's report (printed with `--latency`).
pub fn parse(report: &str) -> Result<Report, String> {
    let mut requests = None;
    let mut seconds = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in report.lines().map(str::trim) {
        if let Some((count, rest)) = line.split_once(" requests in ") {
            requests = count.trim().parse::<u64>().ok();
            seconds = rest
                .split(',')
                .next()
                .and_then(parse_duration_us)
                .map(|us| us / 1e6);
        } else if let Some(value) = line.strip_prefix("Requests/sec:") {
            rps = value.trim().parse::<f64>().ok();
        } else if let Some(value) = line.strip_prefix("50%") {
            p50 = parse_duration_us(value.trim());
        } else if let Some(value) = line.strip_prefix("99%") {
            p99 = parse_duration_us(value.trim());
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = value.trim().parse().unwrap_or(u64::MAX);
        } else if let Some(value) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            socket_errors = value
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    let missing = |what: &str| format!("wrk's report has no {what}:\n{report}");
    Ok(Report {
        requests: requests.ok_or_else(|| missing("request count"))?,
        seconds: seconds.ok_or_else(|| missing("duration"))?,
        requests_per_second: rps.ok_or_else(|| missing("Requests/sec"))?,
        p50_us: p50.ok_or_else(|| missing("50% latency"))?,
        p99_us: p99.ok_or_else(|| missing("99% latency"))?,
        non_2xx,
        socket_errors,
    })
}

/// `812.00us`, `1.23ms`, `3.00s`, `2.00m` in microseconds.
fn parse_duration_us(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 3s test @ http://127.0.0.1:40000/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  211.33us   9.87ms   91.20%
    Req/Sec    15.70k   612.50    16.48k    80.00%
  Latency Distribution
     50%  987.00us
     75%    1.07ms
     90%    1.19ms
     99%    1.73ms
  46899 requests in 3.00s, 6.40MB read
Requests/sec:  15621.43
Transfer/sec:      2.13MB
";

    #[test]
    fn parses_a_clean_report() {
        let r = parse(REPORT).unwrap();
        assert_eq!(r.requests, 46899);
        assert!((r.seconds - 3.0).abs() < 1e-9);
        assert!((r.requests_per_second - 15621.43).abs() < 1e-9);
        assert!((r.p50_us - 987.0).abs() < 1e-9);
        assert!((r.p99_us - 1730.0).abs() < 1e-6);
        assert_eq!(r.problem(), None);
    }

    #[test]
    fn errors_and_non_2xx_make_a_run_not_count() {
        let bad = REPORT.replace(
            "Requests/sec:",
            "  Socket errors: connect 0, read 2, write 0, timeout 3\n  Non-2xx or 3xx responses: 46899\nRequests/sec:",
        );
        let r = parse(&bad).unwrap();
        assert_eq!((r.non_2xx, r.socket_errors), (46899, 5));
        assert_eq!(
            r.problem().unwrap(),
            "46899 of 46899 responses were not 2xx"
        );
    }

    #[test]
    fn a_truncated_report_is_an_error() {
        let err = parse("Running 3s test @ http://127.0.0.1:1/\n").unwrap_err();
        assert!(err.contains("request count"), "{err}");
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration_us("812.00us"), Some(812.0));
        assert_eq!(parse_duration_us("2.00s"), Some(2e6));
        assert_eq!(parse_duration_us("1.50m"), Some(90e6));
        assert_eq!(parse_duration_us("12parsecs"), None);
    }
}
