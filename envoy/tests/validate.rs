//! Every bootstrap shape the renderer produces passes `envoy --mode validate`.

use std::collections::BTreeMap;
use std::path::Path;

use wasmgate_envoy::{render, Code, Digest, Remote, Spec, Trust, WasmFilter, SYSTEM_CA_BUNDLE};

fn validate(spec: &Spec) {
    let bootstrap = render(spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bootstrap.json");
    std::fs::write(&path, serde_json::to_string_pretty(&bootstrap).unwrap()).unwrap();
    if let Err(log) = test_env::validate(Path::new(&path)) {
        panic!("envoy --mode validate refused the bootstrap:\n{log}");
    }
}

#[test]
fn remote_code_through_registry_cluster_validates() {
    let sha = Digest::of(b"module");
    let mut jwt = WasmFilter::new(
        "jwt-auth",
        Code::Remote(Remote::new(
            "http://127.0.0.1:5000/m/jwt.wasm",
            "registry",
            sha,
        )),
    );
    jwt.configuration = r#"{"issuers":[]}"#.into();
    let mut rewrite = WasmFilter::new(
        "header-rewrite",
        Code::Remote(Remote::new(
            "https://registry.example.com/m/hr.wasm",
            "registry-tls",
            sha,
        )),
    );
    rewrite.fail_open = true;
    validate(&Spec {
        listen: "127.0.0.1:10000".parse().unwrap(),
        admin: Some("127.0.0.1:9901".parse().unwrap()),
        filters: vec![jwt, rewrite],
        upstream: "http://localhost:8000".into(),
        clusters: vec![
            ("registry".into(), "http://127.0.0.1:5000".into()),
            ("registry-tls".into(), "https://registry.example.com".into()),
            (
                "jwks".into(),
                "https://issuer.example.com/.well-known/jwks.json".into(),
            ),
            ("jwks-ip".into(), "https://127.0.0.1:8443/keys".into()),
            ("jwks-insecure".into(), "https://127.0.0.1:8444/keys".into()),
        ],
        // The DNS name and the IP SAN matchers, a CA file named explicitly, and no validation.
        trust: BTreeMap::from([
            ("jwks-ip".into(), Trust::Verify(SYSTEM_CA_BUNDLE.into())),
            ("jwks-insecure".into(), Trust::Insecure),
        ]),
    });
}

#[test]
fn local_code_and_no_admin_validates() {
    // Validation loads a local module and configures the plugin, so this needs a real one
    // (`make wasm`).
    let mut filter = WasmFilter::new(
        "header-rewrite",
        Code::Local(test_env::wasm_module("header_rewrite")),
    );
    filter.configuration = r#"{"rules":[]}"#.into();
    validate(&Spec {
        listen: "[::1]:10000".parse().unwrap(),
        admin: None,
        filters: vec![filter],
        upstream: "http://[::1]:8000".into(),
        clusters: Vec::new(),
        trust: BTreeMap::new(),
    });
}
