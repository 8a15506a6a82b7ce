//! The demo's global limit: Wasmgate's rate-limit service in this process (counters in
//! memory, the limits embedded below) and two more Envoy listeners whose rate-limit filter
//! asks it in global mode, so requests to either listener count against one limit.

use std::net::SocketAddr;

use serde_json::{json, Value};
use tokio::sync::oneshot;
use wasmgate_envoy::{Action, Bootstrap, Cluster, Code, HttpFilter, Remote, WasmFilter};

use crate::error::{Error, Result};
use crate::pluginconfig::check;
use crate::plugins;
use crate::render::{Resolved, REGISTRY_CLUSTER};

/// The listeners sharing the limit, by name.
pub const LISTENERS: [&str; 2] = ["global-a", "global-b"];
/// Requests a minute the two listeners get together.
pub const LIMIT: u32 = 5;
/// The Envoy cluster of the rate-limit service (HTTP/2).
const CLUSTER: &str = "demo-ratelimit";
/// The service's domain and the rule's name: the descriptor is `generic_key=shared`.
const DOMAIN: &str = "demo_global";
const RULE: &str = "shared";

/// The service's limits file.
fn limits() -> String {
    format!(
        "domain: {DOMAIN}\ndescriptors:\n- key: generic_key\n  value: {RULE}\n  rate_limit: {{unit: minute, requests_per_unit: {LIMIT}}}\n"
    )
}

/// rate-limit's pluginConfig in global mode, validated by the plugin's own code.
pub fn config() -> Result<Value> {
    let config = json!({
        "mode": "global",
        "domain": DOMAIN,
        "rate_limit_service": { "cluster": CLUSTER, "timeout": "250ms" },
        "rules": [{ "name": RULE, "failure_mode": "deny" }],
    });
    // Written in the current vocabulary: nothing to warn about.
    let origin = "demo global configuration";
    check(plugins::find("rate-limit")?, &config, origin).map_err(|e| e.context(origin))?;
    Ok(config)
}

/// Start the rate-limit service (gRPC on a free loopback port) on `runtime`; it stops when
/// the returned sender fires.
pub fn start_service(
    runtime: &tokio::runtime::Runtime,
) -> Result<(SocketAddr, oneshot::Sender<()>)> {
    let fail = |e: String| Error::failed(format!("demo: rate-limit service: {e}"));
    let file = wasmgate_ratelimit::config::parse(&limits()).map_err(|e| fail(e.to_string()))?;
    let limits = wasmgate_ratelimit::config::Limits::from_files(vec![file])
        .map_err(|e| fail(e.to_string()))?;
    let loopback: SocketAddr = "127.0.0.1:0"
        .parse()
        .map_err(|_| fail("bad address".into()))?;
    let options = wasmgate_ratelimit::server::Options {
        limits: Vec::new(),
        grpc_bind: loopback,
        http_bind: loopback,
        redis: None,
        backend_timeout_ms: 500,
        check: false,
    };
    let server = runtime
        .block_on(wasmgate_ratelimit::server::Server::bind(&options, limits))
        .map_err(|e| fail(e.to_string()))?;
    let addr = server.grpc_addr().map_err(|e| fail(e.to_string()))?;
    let (stop, stopped) = oneshot::channel::<()>();
    runtime.spawn(server.run(async {
        let _ = stopped.await;
    }));
    Ok((addr, stop))
}

/// Add the two listeners (on `addrs`) running rate-limit in global mode, its code fetched
/// from the registry with sha256 like the main chain's, and the service's cluster.
pub fn add_listeners(
    bootstrap: &mut Bootstrap,
    addrs: [SocketAddr; 2],
    rate_limit: &Resolved,
    service: SocketAddr,
) -> Result<()> {
    let url = rate_limit
        .pinned
        .http_url
        .clone()
        .ok_or_else(|| Error::failed("demo: rate-limit has no URL in the registry"))?;
    let mut filter = WasmFilter::new(
        rate_limit.configured.plugin.name,
        Code::Remote(Remote::new(url, REGISTRY_CLUSTER, rate_limit.pinned.sha256)),
    );
    filter.configuration = config()?.to_string();
    let filter: HttpFilter = filter.to_http_filter();
    for (name, addr) in LISTENERS.iter().zip(addrs) {
        let mut one = Bootstrap::new(
            addr,
            None,
            vec![filter.clone()],
            Action::upstream(),
            Vec::new(),
        );
        let mut listener = one.static_resources.listeners.remove(0);
        listener.name = (*name).to_owned();
        bootstrap.static_resources.listeners.push(listener);
    }
    let cluster = Cluster::for_url(CLUSTER, &format!("grpc://{service}"))
        .map_err(|e| Error::failed(format!("demo: {}", e.0)))?;
    bootstrap.static_resources.clusters.push(cluster);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_global_config_and_limits_are_valid() {
        let config = config().unwrap();
        assert_eq!(config["mode"], "global");
        let file = wasmgate_ratelimit::config::parse(&limits()).unwrap();
        let limits = wasmgate_ratelimit::config::Limits::from_files(vec![file]).unwrap();
        assert_eq!(limits.domains(), [DOMAIN]);
    }
}
