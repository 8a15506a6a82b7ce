//! Starting a configuration's Envoy, and checking that it does its work before it is measured.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use test_env::{Envoy, WasmFilter};

use crate::configs::{Filter, Scenario};
use crate::results::{Cores, Row, Status};
use crate::rls;

/// The rate limit service's cluster, once [`start_rls`] has started it; or why it did not.
static RLS: OnceLock<Result<test_env::wasmgate_envoy::Cluster, String>> = OnceLock::new();

/// Start the rate limit service when a selected configuration needs it.
pub fn start_rls(rows: &[Row], work: &Path, cores: Cores) -> Option<rls::Rls> {
    if !rows.iter().any(|r| r.scenario.rls) {
        return None;
    }
    eprintln!("starting redis-server and wasmgate-ratelimit");
    let started = rls::Rls::start(&work.join("rls"), cores.load);
    let _ = RLS.set(
        started
            .as_ref()
            .map(rls::Rls::cluster)
            .map_err(Clone::clone),
    );
    started.ok()
}

/// Start an Envoy for `scenario`; the error says whether it is missing or failed.
pub fn start(
    scenario: &Scenario,
    upstream: SocketAddr,
    concurrency: u32,
) -> Result<(Envoy, Duration), Status> {
    if let Some(module) = scenario
        .modules()
        .into_iter()
        .find(|m| !module_path(m).is_file())
    {
        return Err(Status::Missing(format!("{module}.wasm not built")));
    }
    let mut builder = Envoy::builder()
        .upstream(upstream)
        .concurrency(concurrency)
        .log_level("warn");
    if scenario.rls {
        match RLS.get() {
            Some(Ok(cluster)) => builder = builder.cluster(cluster.clone()),
            Some(Err(why)) => return Err(Status::Missing(why.clone())),
            None => {
                return Err(Status::Missing(
                    "the rate limit service is not running".into(),
                ))
            }
        }
    }
    for filter in &scenario.filters {
        builder = match filter {
            Filter::Native(json) => builder.filter(json.clone()),
            Filter::Wasm {
                module,
                root_id,
                vm_id,
                config,
            } => builder.wasm(
                WasmFilter::new(module_path(module))
                    .root_id(root_id)
                    .vm_id(vm_id)
                    .config(config.clone()),
            ),
        };
    }
    let begin = Instant::now();
    match builder.try_start() {
        Ok(envoy) => Ok((envoy, begin.elapsed())),
        Err(err) => Err(Status::Failed(refusal(&err.log))),
    }
}

pub fn module_path(module: &str) -> PathBuf {
    test_env::wasm_dir().join(format!("{module}.wasm"))
}

/// The first error in Envoy's log, without its `[time][pid][level][logger] [file:line]` prefix.
fn refusal(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("invalid plugin configuration"))
        .or_else(|| {
            log.lines()
                .find(|l| l.contains("[critical]") || l.contains("[error]"))
        })
        .unwrap_or("Envoy did not start");
    let mut message = line.trim();
    while let Some(rest) = message.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => message = rest[end + 1..].trim_start(),
            None => break,
        }
    }
    message.chars().take(240).collect()
}

/// Start every load-tested configuration and check it does its work.
pub fn start_all(rows: &mut [Row], upstream: SocketAddr) -> HashMap<&'static str, Envoy> {
    let mut running = HashMap::new();
    for row in rows.iter_mut().filter(|r| r.scenario.load) {
        match start(&row.scenario, upstream, 1) {
            Ok((envoy, took)) => match check(&envoy, &row.scenario) {
                Ok(()) => {
                    eprintln!("  {}: ready in {} ms", row.scenario.id, took.as_millis());
                    row.start_ms.push(took.as_secs_f64() * 1e3);
                    running.insert(row.scenario.id, envoy);
                }
                Err(why) => row.fail(why),
            },
            Err(status) => row.set(status),
        }
    }
    running
}

/// The configuration answers the benchmark's request with 200 and does its visible work.
fn check(envoy: &Envoy, scenario: &Scenario) -> Result<(), String> {
    let client = test_env::client();
    let headers = scenario.request.headers();
    let send = |with_token: bool| {
        let mut request = client.get(envoy.url("/"));
        for (name, value) in &headers {
            if with_token || name != "authorization" {
                request = request.header(name, value);
            }
        }
        request.send().map_err(|e| format!("check request: {e}"))
    };
    let response = send(true)?;
    let want = scenario.request.status();
    if response.status() != want {
        // A flood's first request may still be allowed: it is the next one that is refused.
        let again = send(true)?.status();
        if again != want {
            return Err(format!(
                "the benchmark's request got {again} instead of {want}"
            ));
        }
    }
    for (name, want) in &scenario.check.response_headers {
        let got = response.headers().get(*name).and_then(|v| v.to_str().ok());
        if got != Some(*want) {
            return Err(format!(
                "response header {name} is {got:?}, expected {want:?}"
            ));
        }
    }
    if let Some(want) = scenario.check.without_token {
        let got = send(false)?.status().as_u16();
        if got != want {
            return Err(format!(
                "a request without a token got {got} instead of {want}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_the_plugin_error_without_the_log_prefix() {
        let log = "[2026-11-26 17:40:00.123][42][warning][main] [source/server/server.cc:1] something\n\
                   [2026-11-26 17:40:00.200][42][error][wasm] [source/extensions/common/wasm/context.cc:1220] wasm log header-rewrite: invalid plugin configuration: rules[0].request[1].op: unknown variant `remove`\n\
                   [2026-11-26 17:40:00.300][42][critical][main] [source/server/server.cc:2] error initializing config";
        assert_eq!(
            refusal(log),
            "wasm log header-rewrite: invalid plugin configuration: rules[0].request[1].op: unknown variant `remove`"
        );
        assert_eq!(
            refusal("[t][1][critical][main] [x.cc:2] error initializing config"),
            "error initializing config"
        );
        assert_eq!(refusal(""), "Envoy did not start");
    }
}
