//! What a new user ran into (issue 15): lock files that can be committed, missing modules,
//! argument errors in JSON, non-Wasm files, URLs without a scheme, empty config files.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;
use common::{stderr, wasmgate};

/// A folder with `modules/` (a copy of the built modules) and `deploy/wasmgate.lock.json`
/// packaged from them, each entry with an HTTP URL.
fn packaged() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let built = test_env::wasm_module("jwt_auth")
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::create_dir_all(dir.path().join("modules")).unwrap();
    std::fs::create_dir_all(dir.path().join("deploy")).unwrap();
    for module in ["jwt_auth", "rate_limit", "header_rewrite"] {
        std::fs::copy(
            built.join(format!("{module}.wasm")),
            dir.path().join(format!("modules/{module}.wasm")),
        )
        .unwrap();
    }
    let out = wasmgate(
        &[
            "package",
            "--modules",
            "modules",
            "--lock",
            "deploy/wasmgate.lock.json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lock_path = dir.path().join("deploy/wasmgate.lock.json");
    let mut lock: Value = serde_json::from_slice(&std::fs::read(&lock_path).unwrap()).unwrap();
    for (name, entry) in lock["plugins"].as_object_mut().unwrap() {
        entry["url"] = format!("http://registry.example.com/{name}.wasm").into();
    }
    std::fs::write(&lock_path, serde_json::to_vec(&lock).unwrap()).unwrap();
    dir
}

#[test]
fn the_lock_file_records_module_paths_relative_to_itself() {
    let dir = packaged();
    let lock: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("deploy/wasmgate.lock.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        lock["plugins"]["header-rewrite"]["module"],
        "../modules/header_rewrite.wasm"
    );
    // The folder moved elsewhere (another checkout): a --local render still finds the module.
    let moved = tempfile::tempdir().unwrap();
    let target = moved.path().join("checkout");
    std::fs::rename(dir.path(), &target)
        .or_else(|_| {
            Command::new("cp")
                .args(["-r", dir.path().to_str().unwrap(), target.to_str().unwrap()])
                .status()
                .map(drop)
        })
        .unwrap();
    let out = wasmgate(
        &[
            "render",
            "envoy",
            "--local",
            "--plugin",
            "header-rewrite",
            "--lock",
            "deploy/wasmgate.lock.json",
        ],
        &target,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("checkout/deploy/../modules/header_rewrite.wasm"),
        "{text}"
    );
}

#[test]
fn a_missing_module_is_an_error_for_local_renders_and_a_warning_otherwise() {
    let dir = packaged();
    std::fs::remove_file(dir.path().join("modules/header_rewrite.wasm")).unwrap();
    let lock = ["--lock", "deploy/wasmgate.lock.json"];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&lock);
        wasmgate(&all, dir.path())
    };
    let local = run(&["render", "envoy", "--local", "--plugin", "header-rewrite"]);
    assert_eq!(local.status.code(), Some(1));
    assert!(
        stderr(&local).contains("module file")
            && stderr(&local).contains("header_rewrite.wasm (from the lock file) is missing"),
        "{}",
        stderr(&local)
    );
    for kind in [
        &["envoy"][..],
        &["wasmplugin"],
        &["trafficextension"],
        &["envoyfilter"],
    ] {
        let mut args = vec!["render"];
        args.extend_from_slice(kind);
        args.extend_from_slice(&["--plugin", "header-rewrite"]);
        let out = run(&args);
        assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("warning: header-rewrite: module file")
                && stderr(&out).contains("sha256 was not checked"),
            "{kind:?}: {}",
            stderr(&out)
        );
    }
    // The module that is there is not warned about.
    let present = run(&["render", "wasmplugin", "--plugin", "rate-limit"]);
    assert!(present.status.success());
    assert!(
        !stderr(&present).contains("missing"),
        "{}",
        stderr(&present)
    );
}

#[test]
fn argument_errors_are_json_with_output_json() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["render", "envoy", "--bogus", "--output", "json"][..],
        &["--output=json", "render", "envoy", "--bogus"],
        &["--output", "json", "render", "nothing"],
    ] {
        let out = wasmgate(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let error: Value = serde_json::from_str(stderr(&out).trim())
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stderr(&out)));
        assert_eq!(error["error"]["exit_code"], 2);
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("bogus") || message.contains("nothing"),
            "{message}"
        );
        assert!(!message.starts_with("error:"), "{message}");
    }
    // Without --output json, clap's own text.
    let out = wasmgate(&["render", "envoy", "--bogus"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: unexpected argument '--bogus'"));
}

#[test]
fn inspect_on_a_file_that_is_not_wasm_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello\n").unwrap();
    let out = wasmgate(&["inspect", "notes.txt"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("notes.txt: not a WebAssembly module"), "{err}");
}

#[test]
fn a_url_without_a_scheme_says_what_is_expected() {
    let dir = packaged();
    let lock = "deploy/wasmgate.lock.json";
    for args in [
        &[
            "render",
            "envoy",
            "--plugin",
            "header-rewrite",
            "--registry",
            "127.0.0.1:8000",
        ][..],
        &[
            "render",
            "envoy",
            "--plugin",
            "header-rewrite",
            "--lock",
            lock,
            "--upstream",
            "localhost:8000",
        ],
        &[
            "render",
            "envoy",
            "--plugin",
            "header-rewrite",
            "--lock",
            lock,
            "--cluster",
            "a=127.0.0.1:1",
        ],
        &["push", "--registry", "localhost:8000", "--lock", lock],
    ] {
        let out = wasmgate(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("expected"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("http://host:port"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn an_empty_config_file_is_an_error() {
    let dir = packaged();
    std::fs::write(dir.path().join("empty.yaml"), "").unwrap();
    std::fs::write(dir.path().join("comment.yaml"), "# nothing yet\n\n").unwrap();
    std::fs::write(dir.path().join("object.yaml"), "{}\n").unwrap();
    let render = |config: &str| {
        let plugin = format!("header-rewrite={config}");
        wasmgate(
            &[
                "render",
                "envoy",
                "--plugin",
                &plugin,
                "--lock",
                "deploy/wasmgate.lock.json",
            ],
            dir.path(),
        )
    };
    for config in ["empty.yaml", "comment.yaml"] {
        let out = render(config);
        assert_eq!(out.status.code(), Some(1), "{config}");
        assert!(
            stderr(&out).contains(&format!("{config}: the file is empty"))
                && stderr(&out).contains("write {}"),
            "{}",
            stderr(&out)
        );
    }
    let out = render("object.yaml");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The `wasmgate render` lines of the README's command list, continuation lines joined and
/// comments dropped.
fn readme_render_commands() -> Vec<Vec<String>> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(readme).unwrap();
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.split("  #").next().unwrap_or_default().trim_end();
        if current.is_empty() && !line.starts_with("wasmgate render") {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                commands.push(current.split_whitespace().map(str::to_owned).collect());
                current.clear();
            }
        }
    }
    commands
}

#[test]
fn the_readme_render_commands_run_as_written_from_cli_examples() {
    let commands = readme_render_commands();
    assert!(commands.len() >= 4, "{commands:?}");
    // cli/examples after `package` and `push` (to a registry and an OCI registry): the lock
    // has each module's URL and image.
    let dir = packaged();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for config in ["jwt.yaml", "rl.yaml", "hr.yaml"] {
        std::fs::copy(examples.join(config), dir.path().join(config)).unwrap();
    }
    let mut lock: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("deploy/wasmgate.lock.json")).unwrap(),
    )
    .unwrap();
    for (name, entry) in lock["plugins"].as_object_mut().unwrap() {
        entry["module"] = format!("modules/{}.wasm", name.replace('-', "_")).into();
        entry["oci"] = serde_json::json!({
            "reference": format!("127.0.0.1:5000/wasmgate/{name}:0.1.0"),
            "manifest_digest": format!("sha256:{}", "a".repeat(64)),
        });
    }
    std::fs::write(
        dir.path().join("wasmgate.lock.json"),
        serde_json::to_vec(&lock).unwrap(),
    )
    .unwrap();
    for command in commands {
        // The README renders from a running registry; here the lock file stands in for it.
        let mut args: Vec<&str> = Vec::new();
        let mut words = command[1..].iter();
        while let Some(word) = words.next() {
            if word == "--registry" {
                words.next();
                continue;
            }
            args.push(word);
        }
        let out = wasmgate(&args, dir.path());
        assert!(out.status.success(), "{command:?}: {}", stderr(&out));
    }
}

#[test]
fn a_push_with_nothing_to_push_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wasmgate.lock.json"), r#"{"plugins": {}}"#).unwrap();
    for target in [
        &["--registry", "http://127.0.0.1:1"][..],
        &["--oci", "127.0.0.1:1/wasmgate", "--plain-http"],
    ] {
        let mut args = vec!["push"];
        args.extend_from_slice(target);
        let out = wasmgate(&args, dir.path());
        assert_eq!(out.status.code(), Some(1), "{target:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no plugin to push"),
            "{target:?}: {}",
            stderr(&out)
        );
    }
}
