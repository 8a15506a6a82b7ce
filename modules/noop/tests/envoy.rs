//! noop.wasm in a real Envoy: requests go through untouched, a configuration is refused.
//! Needs `make wasm` first.

use test_env::{client, get_echo, Envoy, Upstream, WasmFilter};

#[test]
fn requests_go_through_untouched() {
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(WasmFilter::plugin("noop"))
        .upstream(upstream.addr())
        .start();
    let echo = get_echo(&client(), &envoy.url("/any/path?q=1"), &[("x-debug", "1")]);
    assert_eq!(echo.path, "/any/path?q=1");
    assert_eq!(echo.header("x-debug").as_deref(), Some("1"));
    let response = client()
        .delete(envoy.url("/gone"))
        .send()
        .expect("DELETE through Envoy");
    assert!(response.status().is_success(), "{}", response.status());
}

#[test]
fn a_configuration_is_refused_by_name() {
    let err = Envoy::builder()
        .wasm(WasmFilter::plugin("noop").raw_config(r#"{"rules":[]}"#))
        .try_start()
        .expect_err("Envoy must refuse a configuration the noop plugin does not take");
    assert!(
        err.log.contains("the noop plugin takes no configuration"),
        "{}",
        err.log
    );
}
