//! What the environment asks of a run (`BENCH_*`, see bench/README.md).

use std::env;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::configs::{Scenario, NONE};

/// The `BENCH_ONLY` word for the module-cost table (size, memory and start-up per module).
pub const MEMORY: &str = "memory";

/// What the environment asks for (see bench/README.md).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Length of each saturating burst (`BENCH_SECONDS`).
    pub seconds: Duration,
    /// Length of each one-connection run (`BENCH_LATENCY_SECONDS`).
    pub latency_seconds: Duration,
    /// Interleaved rounds (`BENCH_ROUNDS`).
    pub rounds: usize,
    /// Connections at saturation (`BENCH_CONNECTIONS`).
    pub connections: u32,
    /// Extra Envoy starts per configuration for start time and memory (`BENCH_STARTS`).
    pub starts: usize,
    /// Starts per module and concurrency for the module-cost table (`BENCH_MEMORY_STARTS`).
    pub memory_starts: usize,
    /// Only configurations whose id contains one of these (`BENCH_ONLY`, comma separated);
    /// [`MEMORY`] names the module-cost table.
    pub only: Vec<String>,
    /// The results file (`BENCH_OUT`).
    pub out: PathBuf,
}

impl Settings {
    pub fn from_env() -> Result<Settings, String> {
        let only = env::var("BENCH_ONLY")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let out = env::var_os("BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| test_env::workspace_root().join("bench/RESULTS.md"));
        Ok(Settings {
            seconds: Duration::from_secs(env_number("BENCH_SECONDS", 2)?),
            latency_seconds: Duration::from_secs(env_number("BENCH_LATENCY_SECONDS", 1)?),
            rounds: env_number("BENCH_ROUNDS", 3)?,
            connections: env_number("BENCH_CONNECTIONS", 16)?,
            starts: env_number("BENCH_STARTS", 1)?,
            memory_starts: env_number("BENCH_MEMORY_STARTS", 3)?,
            only,
            out,
        })
    }

    /// Whether the load-tested configurations run: unless `BENCH_ONLY` names only [`MEMORY`].
    pub fn runs_load(&self) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o != MEMORY)
    }

    /// Whether the module-cost table runs: with no `BENCH_ONLY`, or one naming [`MEMORY`].
    pub fn runs_memory(&self) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == MEMORY)
    }

    pub fn selects(&self, scenario: &Scenario) -> bool {
        scenario.id == NONE
            || self.only.is_empty()
            || self.only.iter().any(|o| scenario.id.contains(o.as_str()))
    }
}

fn env_number<T: FromStr + Copy>(name: &str, default: T) -> Result<T, String> {
    match env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map_err(|_| format!("{name}={value:?} is not a number")),
        _ => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(words: &[&str]) -> Settings {
        Settings {
            seconds: Duration::from_secs(1),
            latency_seconds: Duration::from_secs(1),
            rounds: 1,
            connections: 1,
            starts: 1,
            memory_starts: 1,
            only: words.iter().map(|w| (*w).to_owned()).collect(),
            out: PathBuf::new(),
        }
    }

    #[test]
    fn bench_only_memory_runs_the_module_costs_alone() {
        let all = only(&[]);
        assert!(all.runs_load() && all.runs_memory());
        let memory = only(&["memory"]);
        assert!(!memory.runs_load() && memory.runs_memory());
        let jwt = only(&["jwt"]);
        assert!(jwt.runs_load() && !jwt.runs_memory());
        let both = only(&["jwt", "memory"]);
        assert!(both.runs_load() && both.runs_memory());
    }

    #[test]
    fn settings_default_and_parse() {
        assert_eq!(env_number("WASMGATE_BENCH_UNSET_FOR_TEST", 3usize), Ok(3));
    }
}
