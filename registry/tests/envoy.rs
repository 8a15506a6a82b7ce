//! A real Envoy downloads a module from the registry through `vm_config.code.remote`
//! (URL + sha256) and runs it; a wrong sha256 makes Envoy refuse the module.
//!
//! Needs the header-rewrite module: `make wasm`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{client, Server, TOKEN};
use serde_json::{json, Value};
use test_env::{get_echo, static_cluster, wasm_module, Envoy, Upstream};

const CONFIG: &str =
    r#"{"rules":[{"request":[{"op":"set","name":"x-wasmgate","value":"from-registry"}]}]}"#;

/// Publish the built header_rewrite module; its sha256 (hex).
fn publish_header_rewrite(server: &Server) -> String {
    let module = std::fs::read(wasm_module("header_rewrite")).unwrap();
    let response = client()
        .put(server.url("/api/v1/plugins/header-rewrite/versions/0.1.0"))
        .bearer_auth(TOKEN)
        .header("x-wasmgate-root-id", "header-rewrite")
        .body(module)
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    let meta: Value = response.json().unwrap();
    meta["sha256"].as_str().unwrap().to_owned()
}

/// The Wasm filter fetching its code from the registry.
fn remote_filter(registry: SocketAddr, path: &str, sha256: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "header-rewrite",
                "root_id": "header-rewrite",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": CONFIG,
                },
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "remote": {
                        "http_uri": {
                            "uri": format!("http://{registry}{path}"),
                            "cluster": "registry",
                            "timeout": "10s",
                        },
                        "sha256": sha256,
                        "retry_policy": { "num_retries": 0 },
                    }},
                },
            },
        },
    })
}

fn bytes_served(server: &Server) -> u64 {
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("wasmgate_registry_bytes_served_total "))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn envoy_downloads_a_module_by_url_and_sha256_and_runs_it() {
    let server = Server::start();
    let sha256 = publish_header_rewrite(&server);
    let upstream = Upstream::start();
    let path = format!("/api/v1/blobs/sha256:{sha256}");
    let envoy = Envoy::builder()
        .filter(remote_filter(server.addr, &path, &sha256))
        .cluster(static_cluster("registry", server.addr))
        .upstream(upstream.addr())
        .start();
    let echo = get_echo(&test_env::client(), &envoy.url("/through"), &[]);
    assert_eq!(echo.header("x-wasmgate").as_deref(), Some("from-registry"));
    let module_size = std::fs::metadata(wasm_module("header_rewrite"))
        .unwrap()
        .len();
    assert!(
        bytes_served(&server) >= module_size,
        "Envoy fetched the module from the registry"
    );
}

#[test]
fn envoy_downloads_by_name_and_version_too() {
    let server = Server::start();
    let sha256 = publish_header_rewrite(&server);
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .filter(remote_filter(
            server.addr,
            "/api/v1/plugins/header-rewrite/versions/0.1.0/module",
            &sha256,
        ))
        .cluster(static_cluster("registry", server.addr))
        .upstream(upstream.addr())
        .start();
    let echo = get_echo(&test_env::client(), &envoy.url("/"), &[]);
    assert_eq!(echo.header("x-wasmgate").as_deref(), Some("from-registry"));
}

#[test]
fn a_wrong_sha256_makes_envoy_refuse_the_module() {
    let server = Server::start();
    let sha256 = publish_header_rewrite(&server);
    let upstream = Upstream::start();
    let wrong = format!(
        "{}{}",
        &sha256[..63],
        if sha256.ends_with('0') { "1" } else { "0" }
    );
    let path = format!("/api/v1/blobs/sha256:{sha256}");
    let started = Envoy::builder()
        .filter(remote_filter(server.addr, &path, &wrong))
        .cluster(static_cluster("registry", server.addr))
        .upstream(upstream.addr())
        .try_start();
    assert!(bytes_served(&server) > 0, "Envoy did fetch the module");
    match started {
        // Envoy refused the listener's filter chain outright.
        Err(err) => assert!(err.log.to_lowercase().contains("wasm"), "{err}"),
        // Or it runs without the module: requests fail closed, nothing reaches the upstream.
        Ok(envoy) => {
            // The fetch succeeded (the registry served the bytes) but failed the digest check.
            assert!(
                envoy.wait_for_log(
                    "Plugin header-rewrite failed to load",
                    Duration::from_secs(10)
                ),
                "{}",
                envoy.log()
            );
            let response = test_env::client().get(envoy.url("/")).send().unwrap();
            assert!(response.status().is_server_error(), "{}", response.status());
            assert_eq!(upstream.echoed(), 0);
        }
    }
}
