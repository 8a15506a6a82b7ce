//! The harness that runs a real Envoy for Wasmgate's integration tests.
//!
//! - [`Envoy`]: writes a bootstrap with any list of filters (Wasm or native) in front of a
//!   route, runs the Envoy binary on free loopback ports, waits for admin `/ready`, reads
//!   stats, prints Envoy's log when the test fails, and kills Envoy on drop. The bootstrap is
//!   rendered by the `wasmgate-envoy` crate, as the CLI renders users' bootstraps.
//! - [`Upstream`]: an echo server that answers with the request it received, and serves
//!   fixed documents whose answers a test can switch.
//! - [`wait_until`], [`wait_for`], [`poll`] and [`Envoy::wait_for_stat`]: wait for something
//!   another process does, with a deadline and a message naming what never happened.
//!
//! ```no_run
//! use test_env::{client, Envoy, Upstream, WasmFilter};
//! let upstream = Upstream::start();
//! let envoy = Envoy::builder()
//!     .wasm(WasmFilter::plugin("header_rewrite").config(serde_json::json!({})))
//!     .upstream(upstream.addr())
//!     .start();
//! let echo = test_env::get_echo(&client(), &envoy.url("/hello"), &[]);
//! assert_eq!(echo.path, "/hello");
//! ```

mod envoy;
mod upstream;
mod wait;

use std::path::{Path, PathBuf};

pub use envoy::{
    envoy_binary, http_get, static_cluster, validate, wasm_build_dir, wasm_dir, wasm_module, Envoy,
    EnvoyBuilder, StartError, WasmFilter,
};
pub use upstream::{Echo, Mode, Upstream, ECHO_RESPONSE_HEADER, ECHO_STATUS};
pub use wait::{poll, wait_for, wait_until};

pub use reqwest;
pub use serde_json;
pub use wasmgate_envoy;

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// An HTTP client for tests: no proxy from the environment, short timeouts.
///
/// # Panics
/// When the client cannot be built.
pub fn client() -> reqwest::blocking::Client {
    match reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(20))
        .build()
    {
        Ok(client) => client,
        Err(e) => panic!("cannot build an HTTP client: {e}"),
    }
}

/// GET `url` with `headers` and read the echo upstream's answer.
///
/// # Panics
/// When the request fails or the answer is not an echo (a filter replied itself).
pub fn get_echo(client: &reqwest::blocking::Client, url: &str, headers: &[(&str, &str)]) -> Echo {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = match request.send() {
        Ok(response) => response,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = response.status();
    let body = response.text().unwrap_or_default();
    match serde_json::from_str(&body) {
        Ok(echo) => echo,
        Err(_) => panic!("GET {url}: expected the upstream's echo, got {status}: {body}"),
    }
}
