//! Callouts inside a mesh: `render wasmplugin | trafficextension | envoyfilter` point
//! jwt-auth's remote JWKS and rate-limit's rate limit service at Istio's
//! `outbound|PORT||HOST` clusters and write the ServiceEntry (and for https the
//! DestinationRule) that makes Istio build them; what cannot be a mesh cluster is warned.

use std::path::Path;

use serde_json::{json, Value};

mod common;
use common::{package_with_urls, stderr, wasmgate};

/// A folder with a lock file of the built modules (each with an HTTP URL) and configs:
/// `jwks-https.yaml` (an issuer outside the mesh), `jwks-loopback.yaml` (the demo's, on
/// 127.0.0.1) and `global.yaml` (a global rate limit through cluster `rls`).
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    package_with_urls(dir.path());
    let demo = wasmgate::demo::CONFIGS[0].1;
    std::fs::write(dir.path().join("jwks-loopback.yaml"), demo).unwrap();
    std::fs::write(
        dir.path().join("jwks-https.yaml"),
        demo.replace(
            "http://127.0.0.1:8788/.well-known/jwks.json",
            "https://login.example.com/.well-known/jwks.json",
        )
        .replace("cluster: demo-jwks", "cluster: issuer"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("global.yaml"),
        "mode: global\ndomain: api\nrate_limit_service: {cluster: rls}\nrules:\n- name: per_ip\n  key: [client_ip]\n  limit: {requests_per_unit: 5, unit: second}\n",
    )
    .unwrap();
    dir
}

/// The JSON documents and the standard error of a successful render.
fn render(dir: &Path, args: &[&str]) -> (Vec<Value>, String) {
    let mut all = vec!["render"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let out = wasmgate(&all, dir);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let docs = match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(items) => items,
        one => vec![one],
    };
    (docs, stderr(&out))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The pluginConfig of a WasmPlugin or TrafficExtension.
fn plugin_config(doc: &Value) -> &Value {
    match doc["kind"].as_str() {
        Some("TrafficExtension") => &doc["spec"]["wasm"]["pluginConfig"],
        _ => &doc["spec"]["pluginConfig"],
    }
}

#[test]
fn https_jwks_gets_istios_cluster_a_service_entry_and_verified_tls_origination() {
    let dir = workdir();
    for kind in ["wasmplugin", "trafficextension"] {
        let (docs, err) = render(
            dir.path(),
            &[
                kind,
                "--plugin",
                "jwt-auth=jwks-https.yaml",
                "-n",
                "default",
            ],
        );
        assert!(!err.contains("warning"), "{err}");
        assert_eq!(docs.len(), 3, "{docs:#?}");
        let plugin = &docs[0];
        assert_eq!(
            plugin_config(plugin)["providers"]["demo"]["remote_jwks"]["cluster"],
            "outbound|443||login.example.com"
        );
        let entries = of_kind(&docs, "ServiceEntry");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["apiVersion"], "networking.istio.io/v1");
        assert_eq!(entries[0]["metadata"]["namespace"], "default");
        assert_eq!(
            entries[0]["spec"],
            json!({
                "hosts": ["login.example.com"],
                "location": "MESH_EXTERNAL",
                "ports": [{"number": 443, "name": "https-443", "protocol": "HTTPS"}],
                "resolution": "DNS",
            })
        );
        let rules = of_kind(&docs, "DestinationRule");
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0]["spec"],
            json!({
                "host": "login.example.com",
                "trafficPolicy": {"portLevelSettings": [{
                    "port": {"number": 443},
                    "tls": {
                        "mode": "SIMPLE",
                        "sni": "login.example.com",
                        "caCertificates": "/etc/ssl/certs/ca-certificates.crt",
                        "subjectAltNames": ["login.example.com"],
                    },
                }]},
            })
        );
    }
    let tls = |extra: &[&str]| {
        let mut args = vec!["wasmplugin", "--plugin", "jwt-auth=jwks-https.yaml"];
        args.extend_from_slice(extra);
        let (docs, err) = render(dir.path(), &args);
        let rule = of_kind(&docs, "DestinationRule")[0].clone();
        (
            rule["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"].clone(),
            err,
        )
    };
    let (ca, _) = tls(&["--jwks-ca-file", "/etc/issuer/ca.pem"]);
    assert_eq!(ca["caCertificates"], "/etc/issuer/ca.pem");
    let (ca, _) = tls(&["--jwks-ca-file", "issuer=/etc/issuer/ca.pem"]);
    assert_eq!(ca["caCertificates"], "/etc/issuer/ca.pem");
    let (secret, _) = tls(&["--jwks-ca-secret", "issuer-ca"]);
    assert_eq!(secret["credentialName"], "issuer-ca");
    assert_eq!(secret.get("caCertificates"), None);
    let (insecure, err) = tls(&["--insecure-jwks-tls"]);
    assert_eq!(insecure["insecureSkipVerify"], true);
    assert!(err.contains("is NOT checked"), "{err}");
}

#[test]
fn envoyfilter_ecds_uses_istios_cluster_and_inline_adds_its_own() {
    let dir = workdir();
    let (docs, _) = render(
        dir.path(),
        &["envoyfilter", "--plugin", "jwt-auth=jwks-https.yaml"],
    );
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["EnvoyFilter", "ServiceEntry", "DestinationRule"]);
    let patches = docs[0]["spec"]["configPatches"].as_array().unwrap();
    assert!(
        patches.iter().all(|p| p["applyTo"] != "CLUSTER"),
        "{patches:#?}"
    );
    let text = docs[0].to_string();
    assert!(
        text.contains(r#"outbound|443||login.example.com"#),
        "{text}"
    );
    let (inline, _) = render(
        dir.path(),
        &[
            "envoyfilter",
            "--inline",
            "--plugin",
            "jwt-auth=jwks-https.yaml",
        ],
    );
    assert_eq!(inline.len(), 1);
    let clusters: Vec<&Value> = inline[0]["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["applyTo"] == "CLUSTER")
        .map(|p| &p["patch"]["value"]["name"])
        .collect();
    assert!(clusters.contains(&&json!("issuer")), "{clusters:?}");
}

#[test]
fn a_cluster_that_cannot_exist_in_a_mesh_is_a_warning() {
    let dir = workdir();
    let (docs, err) = render(
        dir.path(),
        &["wasmplugin", "--plugin", "jwt-auth=jwks-loopback.yaml"],
    );
    assert_eq!(docs.len(), 1, "no ServiceEntry for 127.0.0.1");
    assert_eq!(
        plugin_config(&docs[0])["providers"]["demo"]["remote_jwks"]["cluster"],
        "demo-jwks"
    );
    assert!(
        err.contains("warning: jwt-auth: cluster \"demo-jwks\" cannot exist in a mesh"),
        "{err}"
    );
    assert!(err.contains("an IP address"), "{err}");
    let (_, err) = render(
        dir.path(),
        &["trafficextension", "--plugin", "rate-limit=global.yaml"],
    );
    assert!(
        err.contains("rate_limit_service.cluster \"rls\" cannot exist in a mesh")
            && err.contains("--cluster rls=grpc://HOST:PORT"),
        "{err}"
    );
}

#[test]
fn the_rate_limit_service_gets_istios_cluster_and_a_grpc_service_entry() {
    let dir = workdir();
    let (docs, err) = render(
        dir.path(),
        &[
            "wasmplugin",
            "--plugin",
            "rate-limit=global.yaml",
            "--cluster",
            "rls=grpc://rls.example.internal:8081",
        ],
    );
    assert!(!err.contains("warning"), "{err}");
    assert_eq!(
        plugin_config(&docs[0])["rate_limit_service"]["cluster"],
        "outbound|8081||rls.example.internal"
    );
    let entries = of_kind(&docs, "ServiceEntry");
    assert_eq!(
        entries[0]["spec"]["ports"],
        json!([{"number": 8081, "name": "grpc-8081", "protocol": "GRPC"}])
    );
    assert!(of_kind(&docs, "DestinationRule").is_empty());
    // A Kubernetes service already has its cluster in the mesh.
    let (docs, _) = render(
        dir.path(),
        &[
            "wasmplugin",
            "--plugin",
            "rate-limit=global.yaml",
            "--cluster",
            "rls=grpc://rls.infra.svc.cluster.local:8081",
        ],
    );
    assert_eq!(docs.len(), 1);
    assert_eq!(
        plugin_config(&docs[0])["rate_limit_service"]["cluster"],
        "outbound|8081||rls.infra.svc.cluster.local"
    );
    for (cluster, wanted) in [
        (
            "other=grpc://rls.example.internal:8081",
            "no pluginConfig calls a cluster \"other\"",
        ),
        (
            "rls=http://rls.example.internal:8081",
            "expected grpc://HOST:PORT",
        ),
        ("rls=grpc://10.0.0.9:8081", "an IP address"),
    ] {
        let out = wasmgate(
            &[
                "render",
                "wasmplugin",
                "--plugin",
                "rate-limit=global.yaml",
                "--cluster",
                cluster,
            ],
            dir.path(),
        );
        assert!(!out.status.success(), "{cluster}");
        assert!(stderr(&out).contains(wanted), "{cluster}: {}", stderr(&out));
    }
}
