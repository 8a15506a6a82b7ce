//! Helpers the CLI's integration tests share: run the built binary, read its output, package
//! the built modules into a lock file.
// Each test file is a crate of its own and uses only some of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Run the built `wasmgate` in `dir`, without a registry token from the environment.
pub fn wasmgate(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(args)
        .current_dir(dir)
        .env_remove("WASMGATE_TOKEN")
        .output()
        .unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `wasmgate package` of the built modules into `dir/wasmgate.lock.json`, each entry then
/// given the URL a registry at registry.example.com would serve it from.
pub fn package_with_urls(dir: &Path) {
    let modules = test_env::wasm_module("jwt_auth")
        .parent()
        .unwrap()
        .to_path_buf();
    let out = wasmgate(&["package", "--modules", modules.to_str().unwrap()], dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let lock_path = dir.join("wasmgate.lock.json");
    let mut lock: Value = serde_json::from_slice(&std::fs::read(&lock_path).unwrap()).unwrap();
    for (name, entry) in lock["plugins"].as_object_mut().unwrap() {
        entry["url"] =
            format!("https://registry.example.com/api/v1/plugins/{name}/versions/0.1.0/module")
                .into();
    }
    std::fs::write(&lock_path, serde_json::to_vec(&lock).unwrap()).unwrap();
}

/// A child process killed when the test ends, pass or fail.
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on (now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `wasmgate serve` on a free loopback port with `data_dir` and the token `s3cret`, once
/// `/healthz` answers: the process and the registry's base URL.
pub fn serve_registry(data_dir: &Path) -> (Process, String) {
    let port = free_port();
    let registry = format!("http://127.0.0.1:{port}");
    let mut server = Process(
        Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data_dir)
            .env("WASMGATE_REGISTRY_TOKENS", "s3cret")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let healthz = format!("{registry}/healthz");
    test_env::wait_until(
        &format!("{healthz} to answer"),
        std::time::Duration::from_secs(30),
        || {
            if let Ok(Some(status)) = server.0.try_wait() {
                panic!("{registry}: the registry exited ({status})");
            }
            test_env::client()
                .get(&healthz)
                .send()
                .is_ok_and(|r| r.status().is_success())
        },
    );
    (server, registry)
}
