//! The `wasmgate` binary: exit codes, messages naming what is wrong, lints, and the Envoy
//! bootstrap rendered from real modules passing `envoy --mode validate` (which loads every
//! module and configures every plugin).

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{stderr, stdout, wasmgate};

fn modules() -> PathBuf {
    test_env::wasm_module("jwt_auth")
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A folder with a lock file packaged from the built modules and the demo configs.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let modules = modules();
    let out = wasmgate(
        &["package", "--modules", modules.to_str().unwrap()],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, yaml) in wasmgate::demo::CONFIGS {
        std::fs::write(dir.path().join(format!("{name}.yaml")), yaml).unwrap();
    }
    dir
}

#[test]
fn unknown_plugin_is_a_usage_error() {
    let dir = workdir();
    let out = wasmgate(
        &["render", "wasmplugin", "--plugin", "jwt-authz"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "unknown plugin \"jwt-authz\"; known plugins: jwt-auth, rate-limit, header-rewrite"
        ),
        "{}",
        stderr(&out)
    );
    let out = wasmgate(&["schema", "nope"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_plugin_config_names_the_file_and_field() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "rules:\n- limit: {requests_per_unit: 3, unit: fortnight}\n",
    )
    .unwrap();
    let out = wasmgate(
        &["render", "envoy", "--plugin", "rate-limit=bad.yaml"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bad.yaml: invalid pluginConfig for rate-limit: rules[0].limit.unit"),
        "{err}"
    );
    assert!(err.contains("fortnight"), "{err}");
    assert!(stdout(&out).is_empty(), "nothing is written on error");
}

#[test]
fn a_duplicate_key_in_a_plugin_config_names_the_file_and_key() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("dup.yaml"),
        "rules:\n- request:\n  - {op: set, name: x-a, value: '1'}\nrules: []\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dup.json"),
        r#"{"rules":[{"request":[{"op":"set","name":"x-a","value":"1","name":"x-b"}]}]}"#,
    )
    .unwrap();
    for (file, key) in [
        ("dup.yaml", r#"duplicate key "rules""#),
        ("dup.json", r#"rules[0].request[0]: duplicate key "name""#),
    ] {
        let plugin = format!("header-rewrite={file}");
        let out = wasmgate(&["render", "envoy", "--plugin", &plugin], dir.path());
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains(file) && err.contains(key), "{err}");
        assert!(stdout(&out).is_empty(), "nothing is written on error");
    }
}

#[test]
fn unreachable_registry_is_reported() {
    let dir = workdir();
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let registry = format!("http://127.0.0.1:{port}");
    let out = wasmgate(
        &[
            "render",
            "wasmplugin",
            "--plugin",
            "header-rewrite",
            "--registry",
            &registry,
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot reach the registry at {registry}")),
        "{}",
        stderr(&out)
    );
}

fn edit_lock(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("wasmgate.lock.json");
    let mut lock: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut lock);
    std::fs::write(&path, lock.to_string()).unwrap();
}

#[test]
fn missing_or_malformed_sha256_is_refused() {
    let dir = workdir();
    edit_lock(dir.path(), |lock| {
        lock["plugins"]["rate-limit"]
            .as_object_mut()
            .unwrap()
            .remove("sha256");
        lock["plugins"]["header-rewrite"]["sha256"] = "abc123".into();
    });
    let out = wasmgate(
        &["render", "envoy", "--local", "--plugin", "rate-limit"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("plugins.rate-limit: sha256 is missing; refusing to render a manifest that is not pinned by sha256"),
        "{}",
        stderr(&out)
    );
    let out = wasmgate(
        &["render", "envoy", "--local", "--plugin", "header-rewrite"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("plugins.header-rewrite: malformed sha256: sha256 \"abc123\" has 6 hex digits, expected 64"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_stale_lock_is_refused() {
    let dir = workdir();
    edit_lock(dir.path(), |lock| {
        lock["plugins"]["jwt-auth"]["sha256"] = "0".repeat(64).into();
    });
    let out = wasmgate(
        &[
            "render",
            "envoy",
            "--local",
            "--plugin",
            "jwt-auth=jwt-auth.yaml",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("run `wasmgate package` again"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fail_open_on_jwt_auth_is_warned_about() {
    let dir = workdir();
    edit_lock(dir.path(), |lock| {
        lock["plugins"]["jwt-auth"]["url"] =
            "http://registry.example.com/api/v1/plugins/jwt-auth/versions/0.1.0/module".into();
    });
    let args = [
        "render",
        "wasmplugin",
        "--plugin",
        "jwt-auth=jwt-auth.yaml",
        "--fail-strategy",
        "FAIL_OPEN",
    ];
    let out = wasmgate(&args, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: jwt-auth: failStrategy FAIL_OPEN"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("failStrategy: FAIL_OPEN"));

    let mut json_args = vec!["--output", "json"];
    json_args.extend(args);
    let out = wasmgate(&json_args, dir.path());
    let warning: Value = serde_json::from_str(stderr(&out).lines().next().unwrap()).unwrap();
    assert_eq!(warning["warning"]["plugin"], "jwt-auth");
}

#[test]
fn errors_in_json_carry_the_exit_code() {
    let dir = workdir();
    let out = wasmgate(&["--output", "json", "schema", "nope"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let error: Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(error["error"]["exit_code"], 2);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown plugin"));
    let out = wasmgate(&["render", "envoy", "--no-such-flag"], dir.path());
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
}

#[test]
fn inspect_reports_digest_abi_and_exports() {
    let dir = workdir();
    let module = test_env::wasm_module("rate_limit");
    let out = wasmgate(
        &["--output", "json", "inspect", module.to_str().unwrap()],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let bytes = std::fs::read(&module).unwrap();
    assert_eq!(report["sha256"], wasmgate_envoy::Digest::of(&bytes).hex());
    assert_eq!(report["size"], bytes.len());
    assert_eq!(report["abi_version"], "0.2.1");
    let exports: Vec<&str> = report["exports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(exports.contains(&"proxy_on_configure"), "{exports:?}");
}

#[test]
fn schema_is_derived_from_the_config_types() {
    let dir = workdir();
    let out = wasmgate(&["schema", "jwt-auth"], dir.path());
    assert!(out.status.success());
    let schema: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(schema["type"], "object");
    assert!(schema["properties"]["providers"].is_object(), "{schema}");
}

#[test]
fn local_envoy_bootstrap_loads_and_configures_every_module() {
    let dir = workdir();
    let out = wasmgate(
        &[
            "render",
            "envoy",
            "--local",
            "--plugin",
            "jwt-auth=jwt-auth.yaml",
            "--plugin",
            "rate-limit=rate-limit.yaml",
            "--plugin",
            "header-rewrite=header-rewrite.yaml",
            "-o",
            "envoy.yaml",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = std::fs::read_to_string(dir.path().join("envoy.yaml")).unwrap();
    assert!(
        yaml.contains("name: demo-jwks"),
        "the JWKS cluster is derived from the config"
    );
    if let Err(log) = test_env::validate(&dir.path().join("envoy.yaml")) {
        panic!("envoy --mode validate refused the bootstrap:\n{log}");
    }
}

#[test]
fn wasm_opt_keeps_a_valid_proxy_wasm_module() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("rate_limit.wasm");
    std::fs::copy(test_env::wasm_module("rate_limit"), &module).unwrap();
    let (before, after) = wasmgate::wasmbuild::wasm_opt(&module).unwrap();
    assert!(after <= before, "{before} -> {after}");
    let report = wasmgate::inspect::inspect_file(&module).unwrap();
    assert_eq!(report.abi_version.as_deref(), Some("0.2.1"));
    assert_eq!(report.size, after);
    // Envoy still loads it and the plugin still configures.
    let mut filter =
        wasmgate_envoy::WasmFilter::new("rate-limit", wasmgate_envoy::Code::Local(module.clone()));
    filter.configuration =
        r#"{"rules":[{"limit":{"requests_per_unit":1,"unit":"second"}}]}"#.into();
    let bootstrap = wasmgate_envoy::render(&wasmgate_envoy::Spec {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: None,
        filters: vec![filter],
        upstream: "http://127.0.0.1:1".into(),
        clusters: Vec::new(),
        trust: Default::default(),
    })
    .unwrap();
    let path = dir.path().join("bootstrap.json");
    std::fs::write(&path, serde_json::to_string(&bootstrap).unwrap()).unwrap();
    if let Err(log) = test_env::validate(&path) {
        panic!("Envoy refused the optimized module:\n{log}");
    }
}

#[test]
fn every_istio_flag_lands_in_its_field() {
    let dir = workdir();
    edit_lock(dir.path(), |lock| {
        lock["plugins"]["rate-limit"]["url"] =
            "https://registry.example.com/api/v1/plugins/rate-limit/versions/0.1.0/module".into();
    });
    let out = wasmgate(
        &[
            "--output",
            "json",
            "render",
            "wasmplugin",
            "--format",
            "json",
            "--plugin",
            "rate-limit=rate-limit.yaml",
            "-n",
            "prod",
            "--target-ref",
            "gateway.networking.k8s.io/Gateway/public",
            "--match",
            "CLIENT:8080,8443",
            "--phase",
            "STATS",
            "--priority",
            "-5",
            "--fail-strategy",
            "FAIL_RELOAD",
            "--image-pull-policy",
            "Always",
            "--image-pull-secret",
            "pull",
            "--env",
            "POD_NAME",
            "--env",
            "TRUST_DOMAIN=cluster.local",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "no warning: {}", stderr(&out));
    let plugin: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let spec = &plugin["spec"];
    assert_eq!(plugin["metadata"]["namespace"], "prod");
    assert_eq!(
        spec["targetRefs"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}])
    );
    assert_eq!(
        spec["match"],
        serde_json::json!([{"mode": "CLIENT", "ports": [{"number": 8080}, {"number": 8443}]}])
    );
    assert_eq!(spec["phase"], "STATS");
    assert_eq!(spec["priority"], -5);
    assert_eq!(spec["failStrategy"], "FAIL_RELOAD");
    assert_eq!(spec["imagePullPolicy"], "Always");
    assert_eq!(spec["imagePullSecret"], "pull");
    assert_eq!(
        spec["vmConfig"]["env"],
        serde_json::json!([
            {"name": "POD_NAME", "valueFrom": "HOST"},
            {"name": "TRUST_DOMAIN", "value": "cluster.local"}
        ])
    );
    assert_eq!(spec["pluginConfig"]["rules"][0]["name"], "demo");

    let both = wasmgate(
        &[
            "render",
            "wasmplugin",
            "--plugin",
            "rate-limit",
            "--selector",
            "app=api",
            "--target-ref",
            "Service/api",
        ],
        dir.path(),
    );
    assert_eq!(
        both.status.code(),
        Some(2),
        "selector and targetRefs exclude each other"
    );
}

#[test]
fn explicit_clusters_replace_derived_ones() {
    let dir = workdir();
    let render = |extra: &[&str]| {
        let mut args = vec![
            "render",
            "envoy",
            "--local",
            "--format",
            "json",
            "--plugin",
            "jwt-auth=jwt-auth.yaml",
        ];
        args.extend(extra);
        let out = wasmgate(&args, dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        let bootstrap: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let jwks = bootstrap["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "demo-jwks")
            .unwrap()
            .clone();
        jwks["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]
            .clone()
    };
    assert_eq!(
        render(&[])["port_value"],
        8788,
        "derived from remote_jwks.uri"
    );
    let replaced = render(&["--cluster", "demo-jwks=http://keys.internal:9000"]);
    assert_eq!(replaced["address"], "keys.internal");
    assert_eq!(replaced["port_value"], 9000);
}

#[test]
fn a_global_rate_limit_gets_its_http2_cluster_and_bad_ones_are_refused() {
    let dir = workdir();
    let global =
        "mode: global\ndomain: api\nrate_limit_service: {cluster: ratelimit, timeout: 50ms}\n\
                  rules:\n- {name: per_ip, key: [client_ip], failure_mode: deny}\n";
    std::fs::write(dir.path().join("global.yaml"), global).unwrap();
    let render = |extra: &[&str]| {
        let mut args = vec![
            "render",
            "envoy",
            "--local",
            "--plugin",
            "rate-limit=global.yaml",
        ];
        args.extend(extra);
        wasmgate(&args, dir.path())
    };
    let out = render(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("rate-limit: rate_limit_service.cluster \"ratelimit\" is not defined; give the service's gRPC address with --cluster ratelimit=grpc://HOST:PORT"),
        "{}",
        stderr(&out)
    );
    let out = render(&["--cluster", "ratelimit=http://127.0.0.1:8081"]);
    assert!(
        stderr(&out).contains("is not an HTTP/2 (grpc://) cluster"),
        "{}",
        stderr(&out)
    );

    let out = render(&[
        "--cluster",
        "ratelimit=grpc://127.0.0.1:8081",
        "-o",
        "envoy.yaml",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = std::fs::read_to_string(dir.path().join("envoy.yaml")).unwrap();
    assert!(yaml.contains("http2_protocol_options: {}"), "{yaml}");
    if let Err(log) = test_env::validate(&dir.path().join("envoy.yaml")) {
        panic!("envoy --mode validate refused the bootstrap:\n{log}");
    }

    // The plugin's own config types refuse a global rule without its service or domain.
    for (config, field) in [
        (
            "mode: global\nrules: [{name: g}]\ndomain: api\n",
            "rate_limit_service: required",
        ),
        (
            "mode: global\nrate_limit_service: {cluster: r}\nrules: [{name: g}]\n",
            "domain: required",
        ),
        (
            "rate_limit_service: {cluster: 'a b'}\n",
            "rate_limit_service.cluster",
        ),
        (
            "rules: [{mode: global, failure_mode: open}]\n",
            "rules[0].failure_mode",
        ),
    ] {
        std::fs::write(dir.path().join("bad.yaml"), config).unwrap();
        let out = wasmgate(
            &[
                "render",
                "envoy",
                "--local",
                "--plugin",
                "rate-limit=bad.yaml",
            ],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(field), "{config}: {}", stderr(&out));
    }
}

#[test]
fn an_old_spelling_renders_with_a_warning_naming_plugin_file_and_field() {
    let dir = workdir();
    // jwt-auth with one rule whose `match` is `rule`, rendered from `file`.
    let render = |file: &str, rule: &str, json: bool| {
        let config = format!(
            "providers: {{demo: {{remote_jwks: {{uri: \"http://127.0.0.1:8788/jwks\", cluster: demo-jwks}}}}}}\nrules:\n- match: {rule}\n  requires: {{provider_name: demo}}\n"
        );
        std::fs::write(dir.path().join(file), config).unwrap();
        let plugin = format!("jwt-auth={file}");
        let args = ["render", "envoy", "--local", "--plugin", &plugin];
        let output: &[&str] = if json { &["--output", "json"] } else { &[] };
        let out = wasmgate(&[output, &args[..]].concat(), dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        out
    };
    let old = "{prefix: /api, methods: [get]}";
    let out = render("old.yaml", old, false);
    let err = stderr(&out);
    for warning in [
        "wasmgate: warning: jwt-auth: old.yaml: rules[0].match.prefix: old spelling: write `path: {prefix: \"/api\"}`",
        "wasmgate: warning: jwt-auth: old.yaml: rules[0].match.methods[0]: \"get\" is read as \"GET\"",
    ] {
        assert!(err.contains(warning), "{warning} missing from: {err}");
    }
    // The configuration is rendered as written: the plugin reads the old spelling itself.
    assert!(
        stdout(&out).contains(r#""prefix":"/api""#),
        "{}",
        stdout(&out)
    );

    let out = render("old.yaml", old, true);
    let warning: Value = serde_json::from_str(stderr(&out).lines().next().unwrap()).unwrap();
    assert_eq!(warning["warning"]["plugin"], "jwt-auth");
    let message = warning["warning"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("old.yaml: rules[0].match.prefix: old spelling"),
        "{message}"
    );

    let out = render("new.yaml", "{path: {prefix: /api}, methods: [GET]}", false);
    assert!(stderr(&out).is_empty(), "no warning: {}", stderr(&out));
}

#[test]
fn the_demo_configurations_the_examples_show_warn_about_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = wasmgate(&["examples", "--check"], root);
    assert!(out.status.success(), "{}", stderr(&out));
    // A plugin's warning here (an old spelling in cli/demo) would be printed on stderr.
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}
