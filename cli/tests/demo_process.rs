//! `wasmgate demo` as a process: Envoy dies with the CLI however the CLI ends (SIGKILL gives
//! no chance to clean up), SIGHUP (a closing terminal) stops the demo cleanly, and the ports
//! are free again afterwards. Linux only: the processes are found in /proc.
#![cfg(target_os = "linux")]

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A running `wasmgate demo` and what it printed.
struct Running {
    cli: Child,
    listener: SocketAddr,
    admin: SocketAddr,
    /// The CLI's child processes (Envoy), found once the demo is ready.
    children: Vec<u32>,
}

fn start() -> Running {
    let modules = test_env::wasm_module("jwt_auth")
        .parent()
        .unwrap()
        .to_path_buf();
    let mut cli = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--modules")
        .arg(&modules)
        .arg("--envoy")
        .arg(test_env::envoy_binary())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    // `  envoy      http://LISTENER  (admin http://ADMIN, config …)`
    let envoy_line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.trim_start().starts_with("envoy "))
        .unwrap_or_else(|| panic!("the demo did not start: {:?}", cli.try_wait()));
    // Keep reading so the CLI never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let words: Vec<&str> = envoy_line.split_whitespace().collect();
    let address = |word: &str| -> SocketAddr {
        word.trim_start_matches("http://")
            .trim_end_matches(',')
            .parse()
            .unwrap_or_else(|_| panic!("no address in {envoy_line:?}"))
    };
    let listener = address(words[1]);
    let admin = address(words[3]);
    let children = children(cli.id());
    assert!(!children.is_empty(), "the demo runs no Envoy process");
    Running {
        cli,
        listener,
        admin,
        children,
    }
}

impl Drop for Running {
    /// A failed test leaves no demo behind.
    fn drop(&mut self) {
        if self.cli.try_wait().ok().flatten().is_none() {
            let _ = self.cli.kill();
            let _ = self.cli.wait();
        }
    }
}

/// The child processes of `pid`, from every thread's /proc children list.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        found.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    found
}

/// A process that no longer runs: gone, or a zombie nobody reaped yet (it holds no ports).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) STATE …`; comm may hold spaces, so the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn port_free(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_ok()
}

/// Wait (up to a minute, so a loaded machine does not fail the test) until `done`.
fn eventually(what: &str, done: impl FnMut() -> bool) {
    test_env::wait_until(what, Duration::from_secs(60), done);
}

fn assert_all_stopped(running: &Running) {
    for pid in &running.children {
        eventually(&format!("Envoy (pid {pid}) has exited"), || ended(*pid));
    }
    eventually(&format!("port {} is free", running.listener), || {
        port_free(running.listener)
    });
    eventually(&format!("port {} is free", running.admin), || {
        port_free(running.admin)
    });
}

fn wait(cli: &mut Child) -> ExitStatus {
    test_env::wait_for("the CLI to exit", Duration::from_secs(60), || {
        cli.try_wait().unwrap()
    })
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn envoy_dies_with_a_killed_cli_and_frees_its_ports() {
    let mut running = start();
    assert!(!port_free(running.listener), "Envoy is not listening");
    for pid in &running.children {
        assert!(!ended(*pid));
    }
    running.cli.kill().unwrap();
    let status = running.cli.wait().unwrap();
    assert!(!status.success());
    assert_all_stopped(&running);
}

#[test]
fn sighup_stops_the_demo_cleanly() {
    let mut running = start();
    signal(running.cli.id(), "HUP");
    let status = wait(&mut running.cli);
    assert!(status.success(), "after SIGHUP: {status}");
    assert_all_stopped(&running);
}
