//! What a run measures, as plain data: filled in by the measuring modules, read by
//! [`crate::report`].

use crate::configs::Scenario;
use crate::wrk;

/// Whether a configuration could be measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// A module it needs is not built.
    Missing(String),
    /// Envoy refused it, it failed its check, or a run failed.
    Failed(String),
}

/// One saturating burst against one Envoy.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    pub report: wrk::Report,
    /// Envoy CPU time (user + system, every thread) per completed request, in µs.
    pub cpu_us: f64,
}

/// Everything measured for one configuration.
#[derive(Debug)]
pub struct Row {
    pub scenario: Scenario,
    pub status: Status,
    pub saturated: Vec<Burst>,
    pub one_connection: Vec<wrk::Report>,
    /// Per round: CPU per request against the paired no-filter bursts, as a fraction.
    pub cpu_change: Vec<f64>,
    /// Per round: CPU per request divided by the paired no-filter mean.
    pub normalized: Vec<Option<f64>>,
    pub start_ms: Vec<f64>,
    /// Resident memory right after start, in KiB, at concurrency 1 and 2.
    pub rss_kib: [Vec<f64>; 2],
    /// Resident memory of the load-tested Envoy (concurrency 1) after all rounds, in KiB.
    pub rss_loaded_kib: Option<u64>,
}

impl Row {
    pub fn new(scenario: Scenario, rounds: usize) -> Row {
        Row {
            scenario,
            status: Status::Ok,
            saturated: Vec::new(),
            one_connection: Vec::new(),
            cpu_change: Vec::new(),
            normalized: vec![None; rounds],
            start_ms: Vec::new(),
            rss_kib: [Vec::new(), Vec::new()],
            rss_loaded_kib: None,
        }
    }

    pub fn fail(&mut self, why: String) {
        self.set(Status::Failed(why));
    }

    pub fn set(&mut self, status: Status) {
        match &status {
            Status::Ok => {}
            Status::Missing(why) => eprintln!("  {}: missing: {why}", self.scenario.id),
            Status::Failed(why) => eprintln!("  {}: FAILED: {why}", self.scenario.id),
        }
        self.status = status;
    }
}

/// Which cores Envoy and the load generator use.
#[derive(Debug, Clone, Copy)]
pub struct Cores {
    pub count: usize,
    pub envoy: Option<usize>,
    pub load: Option<usize>,
}

/// The machine and the run.
#[derive(Debug, Clone)]
pub struct Machine {
    pub date: String,
    pub envoy_version: String,
    pub cores: usize,
    pub cpu_model: String,
    pub pinned: bool,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub minutes: f64,
}

/// One module's size.
#[derive(Debug, Clone)]
pub struct ModuleSize {
    pub name: &'static str,
    /// Bytes, `None` when not built.
    pub raw: Option<u64>,
    /// Bytes after `wasm-opt -Oz`, or why not.
    pub optimized: Result<u64, String>,
}

/// One server's download throughput.
#[derive(Debug, Clone)]
pub struct Download {
    pub label: &'static str,
    pub size: u64,
    pub result: Result<wrk::Report, String>,
}

impl Download {
    pub fn missing(label: &'static str, why: String) -> Download {
        Download {
            label,
            size: 0,
            result: Err(why),
        }
    }

    pub fn measured(
        label: &'static str,
        size: u64,
        result: Result<wrk::Report, String>,
    ) -> Download {
        Download {
            label,
            size,
            result,
        }
    }
}
