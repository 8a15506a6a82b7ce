//! Every shipped module (target/modules, from `make wasm`) exports exactly what its plugins
//! declare ([`Plugin::CALLBACKS`]) plus what every module needs, and no other proxy-wasm
//! callback: Envoy calls into the VM for each callback a module exports, used or not.
//! Needs `make wasm` first.

use std::collections::BTreeSet;

use wasmgate_artifact::wasm::inspect;
use wasmgate_glue::proxy::exports;
use wasmgate_glue::{Callbacks, Plugin};

fn shipped(module: &str) -> BTreeSet<String> {
    let path = test_env::wasm_module(module);
    let file = std::fs::File::open(&path).unwrap();
    inspect(std::io::BufReader::new(file))
        .unwrap()
        .exports
        .into_iter()
        .collect()
}

fn declared(callbacks: Callbacks) -> BTreeSet<String> {
    exports(callbacks).into_iter().map(str::to_owned).collect()
}

#[test]
fn each_module_exports_what_its_plugins_declare() {
    let jwt = <jwt_auth::JwtAuth as Plugin>::CALLBACKS;
    let rate = <rate_limit::RateLimit as Plugin>::CALLBACKS;
    let rewrite = <header_rewrite::HeaderRewrite as Plugin>::CALLBACKS;
    for (module, callbacks) in [
        ("jwt_auth", jwt),
        ("rate_limit", rate),
        ("header_rewrite", rewrite),
        ("wasmgate_all", jwt.union(rate).union(rewrite)),
        // modules/noop declares none (a cdylib only, so not a dependency here).
        ("noop", Callbacks::NONE),
    ] {
        assert_eq!(shipped(module), declared(callbacks), "{module}.wasm");
    }
}

#[test]
fn no_module_exports_callbacks_no_plugin_implements() {
    // What the proxy-wasm SDK exports and no Wasmgate plugin uses.
    let unused = [
        "proxy_on_request_body",
        "proxy_on_request_trailers",
        "proxy_on_response_body",
        "proxy_on_response_trailers",
        "proxy_on_log",
        "proxy_on_done",
        "proxy_on_foreign_function",
        "proxy_on_queue_ready",
        "proxy_on_new_connection",
        "proxy_on_downstream_data",
        "proxy_on_upstream_data",
        "proxy_on_grpc_receive_initial_metadata",
        "proxy_on_grpc_receive_trailing_metadata",
    ];
    for module in [
        "jwt_auth",
        "rate_limit",
        "header_rewrite",
        "wasmgate_all",
        "noop",
    ] {
        let exports = shipped(module);
        for name in unused {
            assert!(!exports.contains(name), "{module}.wasm exports {name}");
        }
        // The custom section listing what to keep is gone with the rest.
        let bytes = std::fs::read(test_env::wasm_module(module)).unwrap();
        let section = wasmgate_artifact::strip::KEEP_SECTION.as_bytes();
        assert!(
            !bytes.windows(section.len()).any(|w| w == section),
            "{module}.wasm still has its {} section",
            wasmgate_artifact::strip::KEEP_SECTION
        );
    }
    // jwt-auth does nothing on responses: Envoy must not call into its VM for them.
    assert!(!shipped("jwt_auth").contains("proxy_on_response_headers"));
}

#[test]
fn the_glue_and_the_stripper_name_the_same_section() {
    assert_eq!(
        wasmgate_glue::proxy::KEEP_SECTION,
        wasmgate_artifact::strip::KEEP_SECTION
    );
}
