//! `wasmgate serve` has the flags and environment variables of `wasmgate-registry` (one
//! `wasmgate_registry::Args`).

use std::process::Command;

#[test]
fn serve_takes_every_registry_flag_and_its_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--bind", "WASMGATE_REGISTRY_BIND"),
        ("--data-dir", "WASMGATE_REGISTRY_DATA_DIR"),
        ("--token-file", "WASMGATE_REGISTRY_TOKEN_FILE"),
        ("--read-token-file", "WASMGATE_REGISTRY_READ_TOKEN_FILE"),
        ("--read-auth", "WASMGATE_REGISTRY_READ_AUTH"),
        ("--max-upload-bytes", "WASMGATE_REGISTRY_MAX_UPLOAD_BYTES"),
    ] {
        assert!(help.contains(flag), "no {flag} in:\n{help}");
        assert!(
            help.contains(&format!("env: {env}=")) || help.contains(&format!("env: {env}]")),
            "no {env} in:\n{help}"
        );
    }
}

#[test]
fn serve_reads_its_options_from_the_environment() {
    // An unusable value from the environment is refused by clap like the flag would be.
    let out = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["serve"])
        .env("WASMGATE_REGISTRY_BIND", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not-an-address"), "{stderr}");
}
