//! `wasmgate render wasmplugin | trafficextension | envoyfilter` refuse what Istio's admission
//! would refuse, default what Istio needs (targetRef groups) and order plugins as given.

use std::path::Path;

use serde_json::{json, Value};

mod common;
use common::{package_with_urls, stderr, wasmgate};

/// A folder with a lock file packaged from the built modules, each with an HTTP URL, and the
/// demo configs.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    package_with_urls(dir.path());
    for (name, yaml) in wasmgate::demo::CONFIGS {
        std::fs::write(dir.path().join(format!("{name}.yaml")), yaml).unwrap();
    }
    dir
}

/// Render JSON documents (an array when there are several).
fn render(dir: &Path, args: &[&str]) -> Result<Vec<Value>, (Option<i32>, String)> {
    let mut all = vec!["render"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let out = wasmgate(&all, dir);
    if !out.status.success() {
        return Err((out.status.code(), stderr(&out)));
    }
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(match value {
        Value::Array(items) => items,
        one => vec![one],
    })
}

#[test]
fn target_refs_get_the_group_istio_requires() {
    let dir = workdir();
    for (target, group) in [
        ("Gateway/public", "gateway.networking.k8s.io"),
        ("GatewayClass/istio", "gateway.networking.k8s.io"),
        ("ServiceEntry/login", "networking.istio.io"),
    ] {
        for kind in ["wasmplugin", "trafficextension"] {
            let docs = render(
                dir.path(),
                &[
                    kind,
                    "--plugin",
                    "rate-limit=rate-limit.yaml",
                    "--target-ref",
                    target,
                ],
            )
            .unwrap();
            assert_eq!(docs[0]["spec"]["targetRefs"][0]["group"], group, "{target}");
        }
    }
    // The core group is the empty string, which Istio accepts left out.
    let docs = render(
        dir.path(),
        &[
            "wasmplugin",
            "--plugin",
            "rate-limit",
            "--target-ref",
            "Service/api",
        ],
    )
    .unwrap();
    assert_eq!(
        docs[0]["spec"]["targetRefs"],
        json!([{"kind": "Service", "name": "api"}])
    );

    let (code, err) = render(
        dir.path(),
        &[
            "wasmplugin",
            "--plugin",
            "rate-limit",
            "--target-ref",
            "Deployment/api",
        ],
    )
    .unwrap_err();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("Gateway, GatewayClass, Service, ServiceEntry"),
        "{err}"
    );
    let (code, err) = render(
        dir.path(),
        &[
            "wasmplugin",
            "--plugin",
            "rate-limit",
            "--target-ref",
            "apps/Deployment/api",
        ],
    )
    .unwrap_err();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("targetRefs[0]: apps/Deployment: Istio accepts only"),
        "{err}"
    );
}

#[test]
fn what_admission_refuses_is_refused_naming_the_field() {
    let dir = workdir();
    let cases: [(&[&str], &str); 7] = [
        (&["-n", "Prod"], "metadata.namespace: \"Prod\""),
        (
            &["--selector", "app=*"],
            "selector.matchLabels: app=*: wildcards",
        ),
        (&["--selector", "app*=api"], "wildcards"),
        (
            &["--selector", "app=api", "--selector", "app=web"],
            "--selector: label app is given twice",
        ),
        (
            &["--selector", &format!("app={}", "v".repeat(64))],
            "selector.matchLabels: app=",
        ),
        (
            &["--match", "SERVER:8080,8080"],
            "match[0].ports[1]: port 8080 is given twice",
        ),
        (
            &["--target-ref", "Gateway/Public"],
            "targetRefs[0].name: \"Public\"",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["wasmplugin", "--plugin", "rate-limit"];
        args.extend_from_slice(flags);
        let (code, err) = render(dir.path(), &args).unwrap_err();
        assert!(err.contains(expected), "{flags:?}: {err}");
        assert!(matches!(code, Some(1 | 2)), "{flags:?}: {code:?}");
    }
    let long_env = format!("TOKEN={}", "x".repeat(2049));
    let (_, err) = render(
        dir.path(),
        &[
            "trafficextension",
            "--plugin",
            "rate-limit",
            "--env",
            &long_env,
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("vmConfig.env[0].value (TOKEN): 2049 characters"),
        "{err}"
    );
    let (_, err) = render(
        dir.path(),
        &[
            "envoyfilter",
            "--plugin",
            "rate-limit",
            "--name",
            "Wasm_Gate",
        ],
    )
    .unwrap_err();
    assert!(err.contains("metadata.name: \"Wasm_Gate\""), "{err}");
}

#[test]
fn plugins_sharing_a_phase_run_in_the_order_of_the_flags() {
    let dir = workdir();
    let docs = render(
        dir.path(),
        &[
            "wasmplugin",
            "--phase",
            "AUTHZ",
            "--plugin",
            "header-rewrite=header-rewrite.yaml",
            "--plugin",
            "jwt-auth=jwt-auth.yaml",
            "--plugin",
            "rate-limit=rate-limit.yaml",
        ],
    )
    .unwrap();
    let order: Vec<(&str, i64)> = docs
        .iter()
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap(),
                d["spec"]["priority"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [("header-rewrite", 20), ("jwt-auth", 10), ("rate-limit", 0)]
    );

    // Each in its own phase (jwt-auth AUTHN, rate-limit AUTHZ): Istio's default priority.
    let docs = render(
        dir.path(),
        &[
            "trafficextension",
            "--plugin",
            "jwt-auth=jwt-auth.yaml",
            "--plugin",
            "rate-limit",
        ],
    )
    .unwrap();
    assert!(docs.iter().all(|d| d["spec"].get("priority").is_none()));

    // An explicit priority is kept, and a tie it creates is warned about.
    let out = wasmgate(
        &[
            "render",
            "wasmplugin",
            "--phase",
            "AUTHZ",
            "--priority",
            "7",
            "--plugin",
            "jwt-auth=jwt-auth.yaml",
            "--plugin",
            "rate-limit",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rate-limit: --priority 7 is given to every plugin"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn envoyfilter_uses_istios_ecds_form_and_keeps_the_inline_form_behind_a_flag() {
    let dir = workdir();
    let ecds = &render(
        dir.path(),
        &[
            "envoyfilter",
            "--plugin",
            "jwt-auth=jwt-auth.yaml",
            "--plugin",
            "rate-limit=rate-limit.yaml",
            "-n",
            "istio-system",
            "--target-ref",
            "Gateway/public",
            "--context",
            "GATEWAY",
            "--priority",
            "-5",
            "--fail-strategy",
            "FAIL_RELOAD",
            "--image-pull-secret",
            "registry-pull",
        ],
    )
    .unwrap()[0];
    assert_eq!(ecds["spec"]["priority"], -5);
    assert_eq!(
        ecds["spec"]["targetRefs"][0]["group"],
        "gateway.networking.k8s.io"
    );
    let patches = ecds["spec"]["configPatches"].as_array().unwrap();
    let applied: Vec<&str> = patches
        .iter()
        .map(|p| p["applyTo"].as_str().unwrap())
        .collect();
    // jwt-auth's JWKS cluster is the only cluster; the modules come through istio-agent.
    assert_eq!(
        applied,
        [
            "CLUSTER",
            "EXTENSION_CONFIG",
            "HTTP_FILTER",
            "EXTENSION_CONFIG",
            "HTTP_FILTER"
        ]
    );
    let extension = &patches[1]["patch"]["value"];
    assert_eq!(extension["name"], "wasmgate.jwt-auth");
    let config = &extension["typed_config"]["config"];
    assert_eq!(config["failure_policy"], "FAIL_RELOAD");
    assert_eq!(
        config["vm_config"]["code"]["remote"]["http_uri"]["uri"],
        "https://registry.example.com/api/v1/plugins/jwt-auth/versions/0.1.0/module"
    );
    assert_eq!(
        config["vm_config"]["environment_variables"]["key_values"]
            ["ISTIO_META_WASM_IMAGE_PULL_SECRET"],
        "registry-pull"
    );
    assert_eq!(patches[2]["patch"]["value"]["name"], "wasmgate.jwt-auth");
    assert!(patches[2]["patch"]["value"]["config_discovery"].is_object());

    let inline = &render(
        dir.path(),
        &[
            "envoyfilter",
            "--inline",
            "--plugin",
            "rate-limit=rate-limit.yaml",
        ],
    )
    .unwrap()[0];
    let patches = inline["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(patches[0]["applyTo"], "CLUSTER");
    assert_eq!(patches[0]["patch"]["value"]["name"], "wasmgate-registry");
    assert_eq!(
        patches[1]["patch"]["value"]["typed_config"]["config"]["root_id"],
        "rate-limit"
    );

    let (code, err) = render(
        dir.path(),
        &[
            "envoyfilter",
            "--plugin",
            "rate-limit",
            "--target-ref",
            "Service/api",
        ],
    )
    .unwrap_err();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("an EnvoyFilter attaches only to"), "{err}");
    let (_, err) = render(
        dir.path(),
        &["envoyfilter", "--plugin", "rate-limit", "--oci"],
    )
    .unwrap_err();
    assert!(err.contains("no OCI image"), "{err}");
    let out = wasmgate(
        &[
            "render",
            "envoyfilter",
            "--plugin",
            "jwt-auth=jwt-auth.yaml",
            "--fail-strategy",
            "FAIL_OPEN",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("jwt-auth: failStrategy FAIL_OPEN"),
        "{}",
        stderr(&out)
    );
}
