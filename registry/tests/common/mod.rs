//! Registries for the integration tests: in-process on a loopback port, or the built binary.

#![allow(dead_code)]

#[allow(unused_imports)]
pub use wasmgate_artifact::test_module;

/// The 64 hex digits of a SHA-256, computed apart from the registry's own digest type.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use tokio::sync::oneshot;
use wasmgate_registry::{Config, Registry};

pub const TOKEN: &str = "publish-token-0123456789";
pub const READ_TOKEN: &str = "read-token-0123456789";

pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A registry running in this process on its own runtime thread. Stops on drop.
pub struct Server {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        Self::with(|_| {})
    }

    /// Start with the test defaults (one publish token, 8 MiB limit), changed by `tweak`.
    pub fn with(tweak: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("wasmgate-registry-")
            .tempdir()
            .unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            tokens: vec![TOKEN.into()],
            max_upload_bytes: 8 * 1024 * 1024,
            ..Config::default()
        };
        tweak(&mut config);
        let registry = Registry::open(config).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                wasmgate_registry::serve_on(listener, registry, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        Server {
            addr,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// PUT a module with the publish token.
pub fn publish(base: &str, name: &str, version: &str, module: &[u8]) -> Response {
    client()
        .put(format!("{base}/api/v1/plugins/{name}/versions/{version}"))
        .bearer_auth(TOKEN)
        .body(module.to_vec())
        .send()
        .unwrap()
}

/// The JSON error code of an API error answer.
pub fn error_code(response: Response) -> String {
    let body: serde_json::Value = response.json().unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Send raw bytes as a request and read the whole answer (the URL is sent exactly as given).
pub fn raw_request(addr: SocketAddr, request: impl AsRef<[u8]>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_ref()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// Files under `dir`, recursively, as paths relative to it.
pub fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// The built `wasmgate-registry` binary, running. Killed on drop.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<String>>,
}

impl Binary {
    pub fn start(data_dir: &Path, args: &[&str]) -> Binary {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_wasmgate-registry")),
            data_dir,
            args,
        )
    }

    /// Start it with its soft limit of open files lowered to `soft` (the hard one unchanged).
    pub fn start_with_open_files(data_dir: &Path, args: &[&str], soft: u64) -> Binary {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_wasmgate-registry"));
        Self::spawn(command, data_dir, args)
    }

    fn spawn(mut command: Command, data_dir: &Path, args: &[&str]) -> Binary {
        let mut child = command
            .args(["--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("WASMGATE_REGISTRY_TOKENS", TOKEN)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (found, addr_rx) = std::sync::mpsc::channel();
        let log_writer = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some((_, addr)) = line.split_once("listening on http://") {
                    let _ = found.send(addr.trim().to_owned());
                }
                let mut log = log_writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("registry did not start: {}", log.lock().unwrap()));
        Binary {
            child,
            addr: addr.parse().unwrap(),
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait for the process to exit and return its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        test_env::poll(timeout, || self.child.try_wait().ok().flatten())?.code()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- registry log ----\n{}", self.log());
        }
    }
}
