//! `wasmgate push` to a real Wasmgate registry (`wasmgate serve`) and to a real CNCF
//! Distribution registry (Debian's `docker-registry`), then what each publishes is checked
//! by its consumers: the rendered manifests, Envoy, and `skopeo inspect`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use test_env::{client, get_echo, Envoy, Upstream};

mod common;
use common::{free_port, serve_registry, wasmgate, Process};

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A folder with the built modules packaged into `wasmgate.lock.json` and the demo configs.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let modules: PathBuf = test_env::wasm_module("jwt_auth").parent().unwrap().into();
    ok(wasmgate(
        &["package", "--modules", modules.to_str().unwrap()],
        dir.path(),
    ));
    for (name, yaml) in wasmgate::demo::CONFIGS {
        std::fs::write(dir.path().join(format!("{name}.yaml")), yaml).unwrap();
    }
    dir
}

fn wait_for(url: &str, process: &mut Process) {
    test_env::wait_until(&format!("{url} to answer"), Duration::from_secs(30), || {
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!("{url}: the server exited ({status})");
        }
        client()
            .get(url)
            .send()
            .is_ok_and(|r| r.status().is_success())
    });
}

fn module_sha(name: &str) -> String {
    wasmgate_envoy::Digest::of(&std::fs::read(test_env::wasm_module(name)).unwrap())
        .hex()
        .to_owned()
}

#[test]
fn push_to_the_wasmgate_registry_then_render_from_it() {
    let dir = workdir();
    let (_server, registry) = serve_registry(&dir.path().join("data"));

    let out = wasmgate(
        &["push", "--registry", &registry, "--token", "nope"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    ok(wasmgate(
        &["push", "--registry", &registry, "--token", "s3cret"],
        dir.path(),
    ));
    let meta: Value = client()
        .get(format!(
            "{registry}/api/v1/plugins/rate-limit/versions/0.1.0"
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(meta["sha256"], module_sha("rate_limit"));
    assert_eq!(
        meta["schema"]["type"], "object",
        "the config schema is published"
    );

    let yaml = ok(wasmgate(
        &[
            "render",
            "wasmplugin",
            "--registry",
            &registry,
            "--plugin",
            "header-rewrite=header-rewrite.yaml",
        ],
        dir.path(),
    ));
    let plugin = wasmgate::pluginconfig::parse(yaml.as_bytes()).unwrap();
    assert_eq!(plugin["spec"]["sha256"], module_sha("header_rewrite"));
    assert_eq!(
        plugin["spec"]["url"],
        format!("{registry}/api/v1/plugins/header-rewrite/versions/0.1.0/module")
    );

    // The lock file now says where each module is, so the registry is not needed to render.
    let from_lock = ok(wasmgate(
        &[
            "render",
            "wasmplugin",
            "--plugin",
            "header-rewrite=header-rewrite.yaml",
        ],
        dir.path(),
    ));
    assert_eq!(from_lock, yaml);

    let upstream = Upstream::start();
    let bootstrap = ok(wasmgate(
        &[
            "render",
            "envoy",
            "--format",
            "json",
            "--registry",
            &registry,
            "--plugin",
            "header-rewrite=header-rewrite.yaml",
            "--upstream",
            &format!("http://{}", upstream.addr()),
        ],
        dir.path(),
    ));
    let envoy = Envoy::builder()
        .bootstrap(serde_json::from_str(&bootstrap).unwrap())
        .start();
    let echo = get_echo(&client(), &envoy.url("/x"), &[]);
    assert_eq!(
        echo.header("x-wasmgate-demo").as_deref(),
        Some("rewritten-by-header-rewrite")
    );
}

#[test]
fn push_to_an_oci_registry_that_skopeo_reads() {
    let dir = workdir();
    let port = free_port();
    let config = dir.path().join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("oci").display()
        ),
    )
    .unwrap();
    let mut registry = Process(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry, `make setup`)"),
    );
    wait_for(&format!("http://127.0.0.1:{port}/v2/"), &mut registry);

    let prefix = format!("127.0.0.1:{port}/wasmgate");
    let pushed: Value = serde_json::from_str(&ok(wasmgate(
        &[
            "--output",
            "json",
            "push",
            "jwt-auth",
            "--oci",
            &prefix,
            "--plain-http",
        ],
        dir.path(),
    )))
    .unwrap();
    let row = &pushed["pushed"][0];
    let reference = format!("{prefix}/jwt-auth:0.1.0");
    assert_eq!(row["oci"], reference);

    let inspect = |raw: bool| -> Value {
        let mut command = Command::new("skopeo");
        command.args(["inspect", "--tls-verify=false"]);
        if raw {
            command.arg("--raw");
        }
        let out = command
            .arg(format!("docker://{reference}"))
            .output()
            .expect("skopeo (Debian package skopeo, `make setup`)");
        serde_json::from_str(&ok(out)).unwrap()
    };
    let image = inspect(false);
    assert_eq!(image["Digest"], row["manifest_digest"]);
    assert_eq!(image["Layers"], serde_json::json!([row["layer_digest"]]));
    assert_eq!(image["Architecture"], "wasm");
    assert_eq!(image["Os"], "wasip1");
    let manifest = inspect(true);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );

    // Pushing again is a no-op with the same digest: the image is built deterministically.
    let again: Value = serde_json::from_str(&ok(wasmgate(
        &[
            "--output",
            "json",
            "push",
            "jwt-auth",
            "--oci",
            &prefix,
            "--plain-http",
        ],
        dir.path(),
    )))
    .unwrap();
    assert_eq!(
        again["pushed"][0]["manifest_digest"],
        row["manifest_digest"]
    );

    let yaml = ok(wasmgate(
        &[
            "render",
            "trafficextension",
            "--oci",
            "--plugin",
            "jwt-auth=jwt-auth.yaml",
        ],
        dir.path(),
    ));
    let extension = wasmgate::pluginconfig::parse(yaml.as_bytes()).unwrap();
    assert_eq!(
        extension["spec"]["wasm"]["url"],
        format!("oci://{reference}")
    );
    assert_eq!(
        format!(
            "sha256:{}",
            extension["spec"]["wasm"]["sha256"].as_str().unwrap()
        ),
        row["manifest_digest"].as_str().unwrap()
    );
}

#[test]
fn a_push_where_one_plugin_conflicts_reports_each_and_records_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let built: PathBuf = test_env::wasm_module("jwt_auth").parent().unwrap().into();
    let modules = dir.path().join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    for module in ["jwt_auth", "rate_limit", "header_rewrite"] {
        std::fs::copy(
            built.join(format!("{module}.wasm")),
            modules.join(format!("{module}.wasm")),
        )
        .unwrap();
    }
    ok(wasmgate(&["package", "--modules", "modules"], dir.path()));
    let (_server, registry) = serve_registry(&dir.path().join("data"));
    ok(wasmgate(
        &[
            "push",
            "header-rewrite",
            "--registry",
            &registry,
            "--token",
            "s3cret",
        ],
        dir.path(),
    ));
    // Other content under the same version: the registry refuses it (409).
    std::fs::copy(built.join("noop.wasm"), modules.join("header_rewrite.wasm")).unwrap();
    ok(wasmgate(&["package", "--modules", "modules"], dir.path()));
    let out = wasmgate(
        &[
            "push",
            "--registry",
            &registry,
            "--token",
            "s3cret",
            "--output",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = report["pushed"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{report:#}");
    for row in rows {
        match row["plugin"].as_str().unwrap() {
            "header-rewrite" => assert!(row["error"].as_str().unwrap().contains("409"), "{row}"),
            _ => assert!(row["url"].as_str().is_some(), "{row}"),
        }
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 of 3 plugins not pushed (header-rewrite: ") && err.contains("409"),
        "{err}"
    );
    let lock: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("wasmgate.lock.json")).unwrap())
            .unwrap();
    assert!(lock["plugins"]["jwt-auth"]["url"].is_string());
    assert!(lock["plugins"]["rate-limit"]["url"].is_string());
    assert!(
        lock["plugins"]["header-rewrite"].get("url").is_none(),
        "{lock:#}"
    );
}
