//! The rate limit service the global rate-limit configurations ask, native and Wasm alike:
//! `wasmgate-ratelimit` (built next to this binary by `make bench`) on a `redis-server` of
//! its own, both on the load generator's core, as the upstream is.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_env::wasmgate_envoy::{Cluster, Scheme};

use crate::configs::{RLS_CLUSTER, RLS_LIMITS};

/// Redis and the service, killed on drop.
pub struct Rls {
    children: Vec<Child>,
    pub grpc: SocketAddr,
}

impl Drop for Rls {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn pinned(program: &Path, core: Option<usize>) -> Command {
    match core {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &core.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// `wasmgate-ratelimit` next to this binary (`cargo build --release -p wasmgate-ratelimit`).
fn service_binary() -> Result<PathBuf, String> {
    let here = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let path = here.with_file_name("wasmgate-ratelimit");
    if path.is_file() {
        Ok(path)
    } else {
        Err("wasmgate-ratelimit is not built (cargo build --release -p wasmgate-ratelimit)".into())
    }
}

impl Rls {
    pub fn start(work: &Path, core: Option<usize>) -> Result<Rls, String> {
        let service = service_binary()?;
        std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
        let limits = work.join("limits.yaml");
        std::fs::write(&limits, RLS_LIMITS).map_err(|e| format!("{}: {e}", limits.display()))?;
        let redis_addr = crate::nginx::free_port()?;
        let redis = pinned(Path::new("redis-server"), core)
            .args([
                "--port",
                &redis_addr.port().to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(work)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server (make setup installs it): {e}"))?;
        let mut rls = Rls {
            children: vec![redis],
            grpc: redis_addr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(redis_addr).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut child = pinned(&service, core)
            .arg("--limits")
            .arg(&limits)
            .args(["--grpc-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
            .args(["--redis", &format!("redis://{redis_addr}/")])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", service.display()))?;
        let stdout = child.stdout.take();
        rls.children.push(child);
        // The service says where it listens on its first line: `listening grpc=ADDR http=...`.
        let mut line = String::new();
        if let Some(stdout) = stdout {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        rls.grpc = line
            .split_whitespace()
            .find_map(|part| part.strip_prefix("grpc="))
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| format!("wasmgate-ratelimit did not start: {line:?}"))?;
        Ok(rls)
    }

    /// The HTTP/2 cluster [`RLS_CLUSTER`] reaching the service (the CLI's `grpc://` cluster).
    pub fn cluster(&self) -> Cluster {
        Cluster::for_socket(RLS_CLUSTER, Scheme::Grpc, self.grpc)
    }
}
