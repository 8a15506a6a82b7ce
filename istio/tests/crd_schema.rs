//! Every manifest the renderers can produce, and the checked-in examples, pass Istio's own CRD
//! schemas (`crds/istio-crds.yaml`, see `crds/README.md` for the source) with the `jsonschema`
//! crate, in strict field mode as `kubectl apply` (`--validate=strict`) uses it: a field the
//! schema does not declare is an error. The CEL rules (`x-kubernetes-validations`) a Wasmgate
//! manifest could break are checked explicitly by [`cel`]:
//!
//! - WasmPlugin: at most one of `selector`, `targetRef`, `targetRefs`; TrafficExtension
//!   (`ExtensionFilter`): at most one of `selector`, `targetRefs`, exactly one of `wasm`, `lua`;
//!   EnvoyFilter: at most one of `workloadSelector`, `targetRefs`;
//! - label selectors (`selector.matchLabels`, `workloadSelector.labels`): no `*` in keys or
//!   values, no empty key;
//! - `targetRefs[].namespace`: empty (no cross-namespace reference);
//! - `url`: scheme one of `http`, `https`, `oci`, `file`;
//! - `vmConfig.env[]`: `value` only when `valueFrom` is not `HOST`;
//! - list-map keys (`x-kubernetes-list-type: map`): `match[].ports[].number`,
//!   `vmConfig.env[].name`, ServiceEntry `ports[].name` unique;
//! - EnvoyFilter `configPatches[].match`: `waypoint` only with context `WAYPOINT`;
//! - ServiceEntry: `hosts[]` not `*`; `ports[].number` and `targetPort` 1-65535 and numbers
//!   unique; at most one of `workloadSelector`, `endpoints`; CIDR `addresses` only with
//!   resolution `NONE`/`STATIC`; no `endpoints` with resolution `NONE`; at most one endpoint
//!   with `DNS_ROUND_ROBIN`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use wasmgate_envoy::{Code, Digest, Remote, Trust, WasmFilter};
use wasmgate_istio::mesh::{self, MeshService, Protocol, Verify};
use wasmgate_istio::{
    envoy_filter, traffic_extension, wasm_plugin, Delivery, EnvVar, EnvoyFilterSpec, FailStrategy,
    Metadata, PatchContext, Phase, PluginSpec, PullPolicy, TargetRef, TrafficSelector,
};

/// The fixture's schema for a manifest kind and the apiVersion Wasmgate writes it with.
fn schema_of(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "WasmPlugin" => ("WasmPlugin", "extensions.istio.io/v1alpha1"),
        "TrafficExtension" => ("ExtensionFilter", "extensions.istio.io/v1alpha1"),
        "EnvoyFilter" => ("EnvoyFilter", "networking.istio.io/v1alpha3"),
        "ServiceEntry" => ("ServiceEntry", "networking.istio.io/v1"),
        "DestinationRule" => ("DestinationRule", "networking.istio.io/v1"),
        other => panic!("no CRD schema for kind {other:?}"),
    }
}

fn schemas() -> BTreeMap<String, Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crds/istio-crds.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Strict field validation: an object schema declaring `properties`, with no
/// `additionalProperties` and no `x-kubernetes-preserve-unknown-fields`, refuses others.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            if map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && !preserves
            {
                map.insert("additionalProperties".into(), json!(false));
            }
            map.values_mut().for_each(strict);
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

/// Every problem Istio's API server would find in `doc`: schema errors and CEL rules.
fn problems(doc: &Value) -> Vec<String> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let (key, api_version) = schema_of(kind);
    let mut found = Vec::new();
    if doc["apiVersion"] != api_version {
        found.push(format!("apiVersion {} for {kind}", doc["apiVersion"]));
    }
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let dns = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !dns {
        found.push(format!(
            "metadata.name {name:?} is not a DNS-1123 subdomain"
        ));
    }
    let mut schema = schemas().remove(key).unwrap();
    strict(&mut schema);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let body = json!({ "spec": doc["spec"] });
    for error in validator.iter_errors(&body) {
        found.push(format!("{}: {error}", error.instance_path));
    }
    found.extend(cel(kind, &doc["spec"]));
    found
}

fn has(value: &Value, field: &str) -> bool {
    !value[field].is_null()
}

fn items(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn unique<'a>(values: impl Iterator<Item = &'a Value>, what: &str, found: &mut Vec<String>) {
    let mut seen = Vec::new();
    for value in values {
        if seen.contains(&value) {
            found.push(format!("{what}: {value} twice"));
        }
        seen.push(value);
    }
}

fn labels(value: &Value, what: &str, found: &mut Vec<String>) {
    for (key, label) in value.as_object().into_iter().flatten() {
        if key.is_empty() || key.contains('*') || label.as_str().unwrap_or("").contains('*') {
            found.push(format!("{what}: {key:?}={label}: wildcard or empty key"));
        }
    }
}

/// The CEL rules of the module's top-level comment.
fn cel(kind: &str, spec: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let count = |fields: &[&str]| fields.iter().filter(|f| has(spec, f)).count();
    let (targeting, wasm) = match kind {
        "WasmPlugin" => (count(&["selector", "targetRef", "targetRefs"]), spec),
        "TrafficExtension" => {
            if has(spec, "wasm") == has(spec, "lua") {
                found.push("exactly one of wasm or lua must be set".into());
            }
            (count(&["selector", "targetRefs"]), &spec["wasm"])
        }
        "EnvoyFilter" => (count(&["workloadSelector", "targetRefs"]), &Value::Null),
        _ => (0, &Value::Null),
    };
    if targeting > 1 {
        found.push(format!(
            "{kind}: only one of targetRefs or selector can be set"
        ));
    }
    labels(
        &spec["selector"]["matchLabels"],
        "selector.matchLabels",
        &mut found,
    );
    labels(
        &spec["workloadSelector"]["labels"],
        "workloadSelector.labels",
        &mut found,
    );
    labels(
        &spec["workloadSelector"]["matchLabels"],
        "workloadSelector.matchLabels",
        &mut found,
    );
    for target in items(&spec["targetRefs"]).chain(std::iter::once(&spec["targetRef"])) {
        if target["namespace"]
            .as_str()
            .is_some_and(|ns| !ns.is_empty())
        {
            found.push("targetRefs: cross namespace referencing is not supported".into());
        }
    }
    if let Some(url) = wasm["url"].as_str() {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        if !["", "http", "https", "oci", "file"].contains(&scheme) {
            found.push(format!("url {url:?}: scheme {scheme:?}"));
        }
    }
    for env in items(&wasm["vmConfig"]["env"]) {
        if env["valueFrom"] == "HOST" && has(env, "value") {
            found.push(format!(
                "vmConfig.env {}: value with valueFrom HOST",
                env["name"]
            ));
        }
    }
    unique(
        items(&wasm["vmConfig"]["env"]).map(|e| &e["name"]),
        "vmConfig.env[].name",
        &mut found,
    );
    for selector in items(&spec["match"]) {
        unique(
            items(&selector["ports"]).map(|p| &p["number"]),
            "match[].ports[].number",
            &mut found,
        );
    }
    for patch in items(&spec["configPatches"]) {
        let matching = &patch["match"];
        if has(matching, "waypoint") != (matching["context"] == "WAYPOINT")
            && has(matching, "waypoint")
        {
            found.push("configPatches[].match: waypoint only with context WAYPOINT".into());
        }
    }
    if kind == "ServiceEntry" {
        for host in items(&spec["hosts"]) {
            if host == "*" {
                found.push("hosts: hostname cannot be wildcard".into());
            }
        }
        for port in items(&spec["ports"]) {
            for field in ["number", "targetPort"] {
                if let Some(n) = port[field].as_u64() {
                    if !(1..=65535).contains(&n) {
                        found.push(format!("ports[].{field} {n}: port must be between 1-65535"));
                    }
                }
            }
        }
        unique(
            items(&spec["ports"]).map(|p| &p["number"]),
            "ports[].number",
            &mut found,
        );
        unique(
            items(&spec["ports"]).map(|p| &p["name"]),
            "ports[].name",
            &mut found,
        );
        if has(spec, "workloadSelector") && has(spec, "endpoints") {
            found.push("only one of WorkloadSelector or Endpoints can be set".into());
        }
        let resolution = spec["resolution"].as_str().unwrap_or("NONE");
        let cidr = items(&spec["addresses"]).any(|a| a.as_str().is_some_and(|a| a.contains('/')));
        if cidr && !["NONE", "STATIC"].contains(&resolution) {
            found.push("CIDR addresses are allowed only for NONE/STATIC resolution types".into());
        }
        if resolution == "NONE" && has(spec, "endpoints") {
            found.push("NONE mode cannot set endpoints".into());
        }
        if resolution == "DNS_ROUND_ROBIN" && items(&spec["endpoints"]).count() > 1 {
            found.push("DNS_ROUND_ROBIN mode cannot have multiple endpoints".into());
        }
    }
    found
}

fn assert_valid(doc: &Value) {
    let found = problems(doc);
    assert!(found.is_empty(), "{found:#?}\n{doc:#}");
}

fn digest() -> Digest {
    Digest::of(b"wasmgate crd schema test")
}

/// One PluginSpec per combination of the options the renderers take.
fn plugin_specs() -> Vec<PluginSpec> {
    let base = PluginSpec {
        plugin_config: json!({"rules": [{"name": "a"}]}),
        ..PluginSpec::new(
            "rate-limit",
            "https://registry.example.com/api/v1/plugins/rate-limit/versions/0.1.0/module",
            digest(),
        )
    };
    let mut specs = vec![base.clone()];
    specs.push(PluginSpec {
        metadata: Metadata {
            name: "jwt-auth".into(),
            namespace: Some("prod".into()),
        },
        phase: Some(Phase::Authn),
        priority: Some(-10),
        selector: BTreeMap::from([
            ("app".to_owned(), "api".to_owned()),
            ("example.com/tier".to_owned(), "front_end-1.2".to_owned()),
        ]),
        traffic: vec![
            TrafficSelector {
                mode: Some(wasmgate_istio::WorkloadMode::Server),
                ports: vec![
                    wasmgate_istio::PortSelector { number: 8080 },
                    wasmgate_istio::PortSelector { number: 8443 },
                ],
            },
            TrafficSelector {
                mode: Some(wasmgate_istio::WorkloadMode::ClientAndServer),
                ports: Vec::new(),
            },
        ],
        fail_strategy: Some(FailStrategy::FailClose),
        image_pull_policy: Some(PullPolicy::Always),
        image_pull_secret: Some("registry-pull".into()),
        env: vec![
            "TRUST_DOMAIN=cluster.local".parse::<EnvVar>().unwrap(),
            "POD_NAME".parse().unwrap(),
        ],
        ..base.clone()
    });
    for (i, target) in [
        "Gateway/public",
        "GatewayClass/istio",
        "Service/api",
        "ServiceEntry/login",
    ]
    .iter()
    .enumerate()
    {
        specs.push(PluginSpec {
            target_refs: vec![target.parse::<TargetRef>().unwrap()],
            phase: Some([Phase::Authn, Phase::Authz, Phase::Stats, Phase::Stats][i]),
            fail_strategy: Some(
                [
                    FailStrategy::FailOpen,
                    FailStrategy::FailReload,
                    FailStrategy::FailClose,
                    FailStrategy::FailOpen,
                ][i],
            ),
            image_pull_policy: Some(PullPolicy::IfNotPresent),
            ..base.clone()
        });
    }
    specs.push(PluginSpec {
        url: "oci://registry.example.com/wasmgate/rate-limit:0.1.0".into(),
        ..base.clone()
    });
    specs.push(PluginSpec {
        url: "file:///etc/istio/rate_limit.wasm".into(),
        ..base
    });
    specs
}

fn envoy_filter_specs() -> Vec<EnvoyFilterSpec> {
    let filter = |plugin: &str| {
        let mut filter = WasmFilter::new(
            plugin,
            Code::Remote(Remote::new(
                format!(
                    "https://registry.example.com/api/v1/plugins/{plugin}/versions/0.1.0/module"
                ),
                "wasmgate-registry",
                digest(),
            )),
        );
        filter.configuration = r#"{"rules":[]}"#.into();
        filter
    };
    let base = EnvoyFilterSpec {
        metadata: Metadata {
            name: "wasmgate".into(),
            namespace: Some("istio-system".into()),
        },
        selector: BTreeMap::from([("istio".to_owned(), "ingressgateway".to_owned())]),
        context: PatchContext::Gateway,
        filters: vec![filter("jwt-auth"), filter("rate-limit")],
        clusters: vec![
            (
                "wasmgate-registry".into(),
                "https://registry.example.com".into(),
            ),
            ("issuer".into(), "http://login.example.com:8080".into()),
        ],
        trust: BTreeMap::new(),
        delivery: Delivery::Inline,
        priority: None,
        target_refs: Vec::new(),
        fail_strategy: None,
    };
    let mut specs = vec![base.clone()];
    specs.push(EnvoyFilterSpec {
        trust: BTreeMap::from([(
            "wasmgate-registry".to_owned(),
            Trust::Verify("/etc/istio/registry-ca.pem".into()),
        )]),
        context: PatchContext::SidecarInbound,
        fail_strategy: Some(FailStrategy::FailReload),
        priority: Some(-5),
        ..base.clone()
    });
    for (context, strategy) in [
        (PatchContext::SidecarInbound, None),
        (PatchContext::SidecarOutbound, Some(FailStrategy::FailOpen)),
        (PatchContext::Gateway, Some(FailStrategy::FailClose)),
    ] {
        specs.push(EnvoyFilterSpec {
            context,
            fail_strategy: strategy,
            clusters: Vec::new(),
            delivery: Delivery::Ecds {
                image_pull_secret: Some("registry-pull".into()),
                image_pull_policy: Some(PullPolicy::Always),
            },
            ..base.clone()
        });
    }
    specs.push(EnvoyFilterSpec {
        selector: BTreeMap::new(),
        target_refs: vec!["Gateway/public".parse().unwrap()],
        delivery: Delivery::Ecds {
            image_pull_secret: None,
            image_pull_policy: None,
        },
        clusters: Vec::new(),
        ..base
    });
    specs
}

fn mesh_services() -> Vec<MeshService> {
    let service = |host: &str, port, protocol, verify| MeshService {
        host: host.into(),
        port,
        protocol,
        verify,
    };
    vec![
        service(
            "login.example.com",
            443,
            Protocol::Https,
            Some(Verify::CaFile(wasmgate_envoy::SYSTEM_CA_BUNDLE.into())),
        ),
        service(
            "login.example.com",
            8443,
            Protocol::Https,
            Some(Verify::Secret("issuer-ca".into())),
        ),
        service(
            "login.example.com",
            443,
            Protocol::Https,
            Some(Verify::Insecure),
        ),
        service("keys.example.com", 80, Protocol::Http, None),
        service("ratelimit.example.internal", 8081, Protocol::Grpc, None),
    ]
}

/// Every document the renderers produce for the option matrix above.
fn rendered() -> Vec<Value> {
    let mut docs = Vec::new();
    for spec in plugin_specs() {
        docs.push(serde_json::to_value(wasm_plugin(&spec).unwrap()).unwrap());
        docs.push(serde_json::to_value(traffic_extension(&spec).unwrap()).unwrap());
    }
    for spec in envoy_filter_specs() {
        docs.push(serde_json::to_value(envoy_filter(&spec).unwrap()).unwrap());
    }
    for service in mesh_services() {
        for namespace in [None, Some("prod")] {
            docs.push(
                serde_json::to_value(mesh::service_entry(&service, namespace).unwrap()).unwrap(),
            );
            if let Some(rule) = mesh::destination_rule(&service, namespace).unwrap() {
                docs.push(serde_json::to_value(rule).unwrap());
            }
        }
    }
    docs
}

#[test]
fn every_rendered_manifest_passes_istios_crd_schema_and_cel_rules() {
    let docs = rendered();
    let kinds: std::collections::BTreeSet<&str> =
        docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "DestinationRule",
            "EnvoyFilter",
            "ServiceEntry",
            "TrafficExtension",
            "WasmPlugin"
        ]
    );
    for doc in &docs {
        assert_valid(doc);
    }
}

#[test]
fn the_checked_in_examples_pass_istios_crd_schema_and_cel_rules() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut count = 0;
    for file in [
        "wasmplugin.yaml",
        "trafficextension.yaml",
        "envoyfilter.yaml",
    ] {
        let text = std::fs::read_to_string(examples.join(file)).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let doc: Value = serde::Deserialize::deserialize(document).unwrap();
            assert_valid(&doc);
            count += 1;
        }
    }
    assert!(count >= 7, "{count} documents");
}

#[test]
fn what_the_schema_or_a_cel_rule_refuses_is_found() {
    let plugin = serde_json::to_value(wasm_plugin(&plugin_specs()[1]).unwrap()).unwrap();
    let broken = |edit: &dyn Fn(&mut Value), wanted: &str| {
        let mut doc = plugin.clone();
        edit(&mut doc);
        let found = problems(&doc);
        assert!(
            found.iter().any(|p| p.contains(wanted)),
            "{wanted:?} not in {found:#?}"
        );
    };
    broken(&|d| d["spec"]["pluginNmae"] = json!("x"), "pluginNmae");
    broken(
        &|d| d["spec"]["sha256"] = json!(format!("sha256:{}", digest().hex())),
        "/spec/sha256",
    );
    broken(&|d| d["spec"]["phase"] = json!("authn"), "/spec/phase");
    broken(
        &|d| d["spec"]["match"][0]["ports"][0]["number"] = json!(0),
        "/spec/match/0/ports/0/number",
    );
    broken(
        &|d| d["spec"]["match"][0]["ports"][1]["number"] = json!(8080),
        "match[].ports[].number: 8080 twice",
    );
    broken(
        &|d| d["spec"]["selector"]["matchLabels"]["app"] = json!("a*"),
        "wildcard",
    );
    broken(
        &|d| d["spec"]["targetRefs"] = json!([{"kind": "Gateway", "name": "g"}]),
        "only one of targetRefs or selector",
    );
    broken(
        &|d| d["spec"]["vmConfig"]["env"][1]["value"] = json!("x"),
        "value with valueFrom HOST",
    );
    broken(
        &|d| d["spec"]["url"] = json!("ftp://example.com/m.wasm"),
        "scheme \"ftp\"",
    );
    broken(&|d| d["metadata"]["name"] = json!("Jwt_Auth"), "DNS-1123");
    let service = &mesh_services()[4];
    let entry = serde_json::to_value(mesh::service_entry(service, None).unwrap()).unwrap();
    let mut twice = entry.clone();
    twice["spec"]["ports"] = json!([
        {"number": 8081, "name": "grpc-8081", "protocol": "GRPC"},
        {"number": 8081, "name": "grpc-other", "protocol": "GRPC"}
    ]);
    assert!(
        problems(&twice)
            .iter()
            .any(|p| p.contains("ports[].number")),
        "{:?}",
        problems(&twice)
    );
    let mut wildcard = entry;
    wildcard["spec"]["hosts"] = json!(["*"]);
    assert!(problems(&wildcard).iter().any(|p| p.contains("wildcard")));
}
