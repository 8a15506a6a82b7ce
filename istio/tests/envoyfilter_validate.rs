//! An EnvoyFilter's patches, applied to a bootstrap the way Istio applies them, pass
//! `envoy --mode validate`.

use std::collections::BTreeMap;

use serde_json::Value;
use wasmgate_envoy::{render, Code, Digest, Remote, Spec, WasmFilter};
use wasmgate_istio::{
    envoy_filter, Delivery, EnvoyFilterSpec, FailStrategy, Metadata, PatchContext, PullPolicy,
};

/// Apply `ADD` cluster patches and `INSERT_BEFORE` router filter patches to a bootstrap. A
/// filter discovered by ECDS gets the `EXTENSION_CONFIG` of its name, as Envoy would, with
/// the module fetched from `module_cluster` (istio-agent's part: it downloads the module
/// itself).
fn apply(mut bootstrap: Value, envoy_filter: &Value) -> Value {
    let mut extensions = std::collections::BTreeMap::new();
    for patch in envoy_filter["spec"]["configPatches"].as_array().unwrap() {
        let mut value = patch["patch"]["value"].clone();
        if let Some(name) = value["config_discovery"]
            .is_object()
            .then(|| value["name"].clone())
        {
            let extension: &Value = extensions.get(name.as_str().unwrap()).unwrap();
            value = serde_json::json!({ "name": name, "typed_config": extension["typed_config"] });
        }
        match (
            patch["applyTo"].as_str(),
            patch["patch"]["operation"].as_str(),
        ) {
            (Some("EXTENSION_CONFIG"), Some("ADD")) => {
                extensions.insert(value["name"].as_str().unwrap().to_owned(), value);
            }
            (Some("CLUSTER"), Some("ADD")) => bootstrap["static_resources"]["clusters"]
                .as_array_mut()
                .unwrap()
                .push(value),
            (Some("HTTP_FILTER"), Some("INSERT_BEFORE")) => {
                let before = patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]
                    ["name"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let chain = bootstrap
                    .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters")
                    .unwrap()
                    .as_array_mut()
                    .unwrap();
                let at = chain
                    .iter()
                    .position(|f| f["name"] == before.as_str())
                    .unwrap();
                chain.insert(at, value);
            }
            other => panic!("unexpected patch {other:?}"),
        }
    }
    bootstrap
}

#[test]
fn patches_placed_in_a_bootstrap_validate() {
    patches_validate(Delivery::Inline, None);
}

#[test]
fn ecds_patches_resolved_in_a_bootstrap_validate() {
    patches_validate(
        Delivery::Ecds {
            image_pull_secret: Some("pull".into()),
            image_pull_policy: Some(PullPolicy::IfNotPresent),
        },
        Some(FailStrategy::FailReload),
    );
}

fn patches_validate(delivery: Delivery, fail_strategy: Option<FailStrategy>) {
    let sha = Digest::of(b"module");
    let filters = ["jwt-auth", "rate-limit", "header-rewrite"]
        .map(|p| {
            let mut filter = WasmFilter::new(
                p,
                Code::Remote(Remote::new(
                    format!("http://wasmgate-registry.wasmgate.svc:5000/api/v1/plugins/{p}/versions/0.1.0/module"),
                    "wasmgate-registry",
                    sha,
                )),
            );
            filter.configuration = "{}".into();
            filter
        })
        .to_vec();
    let manifest = envoy_filter(&EnvoyFilterSpec {
        metadata: Metadata {
            name: "wasmgate".into(),
            namespace: Some("istio-system".into()),
        },
        selector: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
        context: PatchContext::Gateway,
        filters,
        clusters: vec![
            (
                "wasmgate-registry".into(),
                "http://wasmgate-registry.wasmgate.svc:5000".into(),
            ),
            // A JWKS issuer: verified against the system bundle and its name.
            (
                "login_example_com".into(),
                "https://login.example.com".into(),
            ),
        ],
        trust: BTreeMap::new(),
        delivery,
        priority: None,
        target_refs: Vec::new(),
        fail_strategy,
    })
    .unwrap();
    let base = render(&Spec {
        listen: "127.0.0.1:10000".parse().unwrap(),
        admin: None,
        filters: Vec::new(),
        upstream: "http://127.0.0.1:8000".into(),
        clusters: Vec::new(),
        trust: BTreeMap::new(),
    })
    .unwrap();
    let bootstrap = apply(
        serde_json::to_value(base).unwrap(),
        &serde_json::to_value(manifest).unwrap(),
    );
    let chain = bootstrap
        .pointer(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .unwrap();
    assert_eq!(chain.as_array().unwrap().len(), 4);
    assert_eq!(chain[0]["typed_config"]["config"]["root_id"], "jwt-auth");
    assert_eq!(
        chain[2]["typed_config"]["config"]["root_id"],
        "header-rewrite"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bootstrap.json");
    std::fs::write(&path, bootstrap.to_string()).unwrap();
    if let Err(log) = test_env::validate(&path) {
        panic!("envoy --mode validate refused the patched bootstrap:\n{log}");
    }
}
