//! header-rewrite loaded into a real Envoy.

use serde_json::json;
use test_env::{client, get_echo, Envoy, Upstream, WasmFilter, ECHO_RESPONSE_HEADER};

#[test]
fn sets_a_request_header_upstream_and_a_response_header_downstream() {
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(WasmFilter::plugin("header_rewrite").config(json!({
            "rules": [{
                "request": [{ "op": "set", "name": "x-wasmgate", "value": "on" }],
                "response": [{ "op": "set", "name": "x-served-by", "value": "wasmgate" }],
            }]
        })))
        .upstream(upstream.addr())
        .start();

    let echo = get_echo(
        &client(),
        &envoy.url("/hello"),
        &[("x-wasmgate", "spoofed")],
    );
    assert_eq!(echo.path, "/hello");
    assert_eq!(echo.all("x-wasmgate"), vec!["on"]);

    let response = client()
        .get(envoy.url("/hello"))
        .header(ECHO_RESPONSE_HEADER, "x-served-by: upstream")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let served_by: Vec<_> = response.headers().get_all("x-served-by").iter().collect();
    assert_eq!(served_by, vec!["wasmgate"]);
}

#[test]
fn a_malformed_config_is_refused_naming_the_field() {
    let err = Envoy::builder()
        .wasm(WasmFilter::plugin("header_rewrite").config(json!({
            "rules": [{ "request": [{ "op": "set", "name": "x-a", "valeu": "1" }] }]
        })))
        .try_start()
        .expect_err("Envoy must refuse a plugin whose configuration is invalid");
    assert!(
        err.log
            .contains("header-rewrite: invalid plugin configuration: rules[0].request[0]"),
        "the log must name the field: {err}"
    );
    assert!(err.log.contains("valeu"), "{err}");
}

#[test]
fn the_combined_module_hosts_header_rewrite_by_root_id() {
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(
            WasmFilter::plugin("wasmgate_all")
                .root_id("header-rewrite")
                .vm_id("wasmgate")
                .config(json!({
                    "rules": [{ "request": [{ "op": "set", "name": "x-combined", "value": "yes" }] }]
                })),
        )
        .upstream(upstream.addr())
        .start();
    let echo = get_echo(&client(), &envoy.url("/"), &[]);
    assert_eq!(echo.header("x-combined").as_deref(), Some("yes"));
    assert!(envoy.wait_for_log(
        "this module hosts: jwt-auth, rate-limit, header-rewrite",
        std::time::Duration::from_secs(15)
    ));
}
