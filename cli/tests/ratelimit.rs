//! `wasmgate ratelimit`: the rate-limit service's flags and checks under the CLI; the service
//! itself is tested in ratelimit/tests.

use std::process::Command;

fn wasmgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(args)
        .env_remove("WASMGATE_RATELIMIT_REDIS")
        .output()
        .expect("run wasmgate")
}

#[test]
fn check_names_the_file_and_field_and_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("limits.yaml");
    std::fs::write(
        &bad,
        "domain: api\ndescriptors:\n  - key: a\n    rate_limit: {unit: weekly, requests_per_unit: 1}\n",
    )
    .expect("write");
    let out = wasmgate(&[
        "ratelimit",
        "--check",
        "--limits",
        &bad.display().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("descriptors[0].rate_limit.unit: unknown variant `weekly`"),
        "{stderr}"
    );

    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ratelimit/examples/limits.yaml"
    );
    let out = wasmgate(&["ratelimit", "--check", "--limits", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: domains wasmgate\n"
    );
}

#[test]
fn help_lists_the_service_flags() {
    let out = wasmgate(&["ratelimit", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--limits",
        "--redis",
        "--grpc-bind",
        "--http-bind",
        "--backend-timeout-ms",
    ] {
        assert!(help.contains(flag), "{help}");
    }
}
