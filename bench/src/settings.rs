//! What the environment asks of a run (`BENCH_*`, see bench/README.md).

use std::env;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::configs::{Scenario, NONE};

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
    /// Only configurations whose id contains one of these (`BENCH_ONLY`, comma separated).
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
            only,
            out,
        })
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

    #[test]
    fn settings_default_and_parse() {
        assert_eq!(env_number("WASMGATE_BENCH_UNSET_FOR_TEST", 3usize), Ok(3));
    }
}
