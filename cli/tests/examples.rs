//! Snapshot tests: the checked-in examples are what the renderers produce today, and each
//! passes Envoy's own validation (the EnvoyFilter once its patches are placed in a bootstrap).

use std::path::Path;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn load(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    text.split("\n---\n")
        .map(|doc| wasmgate::pluginconfig::parse(doc.as_bytes()).unwrap())
        .collect()
}

fn validate(bootstrap: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bootstrap.json");
    std::fs::write(&path, bootstrap.to_string()).unwrap();
    if let Err(log) = test_env::validate(&path) {
        panic!("envoy --mode validate refused it:\n{log}");
    }
}

#[test]
fn examples_are_up_to_date() {
    let stale = wasmgate::examples::check(root()).unwrap();
    assert!(
        stale.is_empty(),
        "stale examples {stale:?}: run `cargo run -p wasmgate -- examples` and review the diff"
    );
}

#[test]
fn envoy_example_validates() {
    validate(&load("envoy/examples/bootstrap.yaml")[0]);
}

#[test]
fn envoyfilter_example_validates_in_a_bootstrap() {
    let filter = &load("istio/examples/envoyfilter.yaml")[0];
    let mut bootstrap = load("envoy/examples/bootstrap.yaml")[0].clone();
    let chain = bootstrap
        .pointer_mut(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .unwrap();
    // The bootstrap's own plugins out: only the router stays, as in a sidecar's chain.
    chain
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] == "envoy.filters.http.router");
    bootstrap["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["name"] == "upstream" || c["name"] == "wasmgate-registry");
    // ECDS: a filter discovered by name gets the EXTENSION_CONFIG of that name, as Envoy
    // would; the bootstrap's registry cluster stands in for istio-agent's download.
    let mut extensions = std::collections::BTreeMap::new();
    for patch in filter["spec"]["configPatches"].as_array().unwrap() {
        let mut value = patch["patch"]["value"].clone();
        if value["config_discovery"].is_object() {
            let extension: &Value = &extensions[value["name"].as_str().unwrap()];
            value = serde_json::json!({ "name": value["name"], "typed_config": extension["typed_config"] });
        }
        match patch["applyTo"].as_str().unwrap() {
            "EXTENSION_CONFIG" => {
                extensions.insert(value["name"].as_str().unwrap().to_owned(), value);
            }
            "CLUSTER" => bootstrap["static_resources"]["clusters"]
                .as_array_mut()
                .unwrap()
                .push(value),
            "HTTP_FILTER" => {
                assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
                let chain = bootstrap
                    .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters")
                    .unwrap()
                    .as_array_mut()
                    .unwrap();
                let router = chain.len() - 1;
                chain.insert(router, value);
            }
            other => panic!("unexpected applyTo {other}"),
        }
    }
    validate(&bootstrap);
}

#[test]
fn istio_examples_pin_every_module() {
    // Each file ends with the ServiceEntry and DestinationRule of the remote JWKS.
    let kinds = |docs: &[Value]| -> Vec<String> {
        docs.iter()
            .map(|d| d["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    let plugins = load("istio/examples/wasmplugin.yaml");
    assert_eq!(
        kinds(&plugins),
        [
            "WasmPlugin",
            "WasmPlugin",
            "WasmPlugin",
            "ServiceEntry",
            "DestinationRule"
        ]
    );
    for doc in &plugins[..3] {
        assert_eq!(doc["apiVersion"], "extensions.istio.io/v1alpha1");
        assert_eq!(doc["spec"]["sha256"].as_str().unwrap().len(), 64);
    }
    let extensions = load("istio/examples/trafficextension.yaml");
    assert_eq!(
        kinds(&extensions),
        [
            "TrafficExtension",
            "TrafficExtension",
            "TrafficExtension",
            "ServiceEntry",
            "DestinationRule"
        ]
    );
    assert_eq!(
        kinds(&load("istio/examples/envoyfilter.yaml")),
        ["EnvoyFilter", "ServiceEntry", "DestinationRule"]
    );
    for doc in &extensions[..3] {
        assert_eq!(doc["kind"], "TrafficExtension");
        assert!(doc["spec"]["wasm"]["url"]
            .as_str()
            .unwrap()
            .starts_with("oci://"));
        assert_eq!(doc["spec"]["wasm"]["sha256"].as_str().unwrap().len(), 64);
    }
}

#[test]
fn check_mode_fails_on_a_stale_example() {
    let copy = tempfile::tempdir().unwrap();
    for path in [
        wasmgate::examples::EXAMPLE_LOCK,
        "envoy/examples/bootstrap.yaml",
        "istio/examples/wasmplugin.yaml",
        "istio/examples/trafficextension.yaml",
        "istio/examples/envoyfilter.yaml",
    ] {
        let to = copy.path().join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root().join(path), &to).unwrap();
    }
    let check = |root: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .args(["examples", "--check", "--root"])
            .arg(root)
            .output()
            .unwrap()
    };
    assert!(check(copy.path()).status.success());

    let stale = copy.path().join("istio/examples/wasmplugin.yaml");
    let text = std::fs::read_to_string(&stale).unwrap();
    std::fs::write(&stale, text.replace("phase: AUTHN", "phase: AUTHZ")).unwrap();
    let out = check(copy.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stale generated examples") && err.contains("istio/examples/wasmplugin.yaml"),
        "{err}"
    );

    let regenerate = std::process::Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["examples", "--root"])
        .arg(copy.path())
        .output()
        .unwrap();
    assert!(regenerate.status.success());
    assert!(check(copy.path()).status.success());
}
