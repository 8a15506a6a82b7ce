//! What the rate-limit service's tests run for real: a `redis-server` on a free loopback
//! port, the `wasmgate-ratelimit` binary, and Envoy with its native rate-limit filter.

#![allow(dead_code)] // each test file uses a different part of this module

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use test_env::serde_json::{json, Value};
use test_env::wasmgate_envoy::{Cluster, Scheme};
use test_env::{Envoy, Upstream};

/// A port nobody listens on right now (the OS's pick, released for the child to take).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A `redis-server` of its own: no persistence, killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    /// A new, empty server on `port` (e.g. the port of one that was stopped).
    pub fn start_on(port: u16) -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut redis = Redis {
            child: None,
            port,
            dir,
        };
        redis.spawn();
        redis
    }

    /// `REDIS_SERVER`, else `redis-server` on PATH (Debian `redis-server`, `make setup`).
    fn binary() -> PathBuf {
        std::env::var_os("REDIS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("redis-server"))
    }

    fn spawn(&mut self) {
        let child = Command::new(Self::binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server: {e} (install it with `make setup` or set REDIS_SERVER)")
            });
        self.child = Some(child);
        let port = self.port;
        test_env::wait_until(
            &format!("redis-server on port {port} to answer PING"),
            Duration::from_secs(20),
            || {
                // Exited: the port was taken meanwhile; a PING would reach someone else's server.
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    panic!("redis-server on port {port} exited: {status}");
                }
                self.ping()
            },
        );
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if std::io::Write::write_all(&mut stream, b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kill it: every counter is gone, and connections are refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `wasmgate-ratelimit` process; killed on drop, its log printed if the test fails.
pub struct Service {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

pub fn service_binary() -> &'static str {
    env!("CARGO_BIN_EXE_wasmgate-ratelimit")
}

impl Service {
    /// Start the service with `limits`, on `redis` (or in memory), on free ports.
    pub fn start(limits: &Path, redis: Option<&str>) -> Service {
        Self::start_on(limits, redis, "127.0.0.1:0", "127.0.0.1:0")
    }

    pub fn start_on(limits: &Path, redis: Option<&str>, grpc: &str, http: &str) -> Service {
        let mut command = Command::new(service_binary());
        command
            .arg("--limits")
            .arg(limits)
            .args(["--grpc-bind", grpc, "--http-bind", http])
            .env("RUST_LOG", "info")
            .env_remove("WASMGATE_RATELIMIT_REDIS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = redis {
            command.args(["--redis", url]);
        }
        let mut child = command.spawn().expect("run wasmgate-ratelimit");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let addr = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|part| part.strip_prefix(name))
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| {
                    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                    panic!("the service did not start: stdout {line:?}\n{log}")
                })
        };
        let (grpc, http) = (addr("grpc="), addr("http="));
        Service {
            child,
            grpc,
            http,
            log,
        }
    }

    /// GET a path on the HTTP admin address: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        test_env::http_get(self.http, path).expect("admin GET")
    }

    /// One Prometheus sample by its full name (with labels, if any).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM, and the exit status once it has drained and exited.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        match test_env::poll(Duration::from_secs(20), || {
            self.child.try_wait().ok().flatten()
        }) {
            Some(status) => status,
            None => panic!("the service did not exit after SIGTERM\n{}", self.log()),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- wasmgate-ratelimit log ----\n{}\n---- end ----",
                self.log()
            );
        }
    }
}

/// Write a limits file into `dir`.
pub fn limits_file(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("limits.yaml");
    std::fs::write(&path, yaml).expect("write limits");
    path
}

/// A static cluster `name` speaking HTTP/2 to `addr`, as a gRPC service needs: the CLI's
/// `grpc://` cluster.
pub fn grpc_cluster(name: &str, addr: SocketAddr) -> Cluster {
    Cluster::for_socket(name, Scheme::Grpc, addr)
}

/// Envoy with the native `envoy.filters.http.ratelimit` filter calling the service at
/// `grpc` (HTTP/2 cluster), `rate_limits` on the route, and the echo upstream behind it.
pub fn envoy(
    grpc: SocketAddr,
    upstream: &Upstream,
    domain: &str,
    rate_limits: Value,
    failure_mode_deny: bool,
) -> Envoy {
    let cluster = grpc_cluster("ratelimit", grpc);
    let filter = json!({
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": domain,
            "failure_mode_deny": failure_mode_deny,
            // Envoy's default is 20 ms; a debug build on a busy CI machine may need more, and
            // a timeout would be read as the service failing.
            "timeout": "5s",
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            "rate_limit_service": {
                "grpc_service": { "envoy_grpc": { "cluster_name": "ratelimit" } },
                "transport_api_version": "V3",
            },
        },
    });
    let mut bootstrap = Envoy::builder()
        .filter(filter)
        .cluster(cluster)
        .upstream(upstream.addr())
        .to_json();
    let route = bootstrap
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes/0/route")
        .expect("the generated bootstrap has a route");
    route["rate_limits"] = rate_limits;
    Envoy::builder().bootstrap(bootstrap).start()
}

/// GET `path` with headers: the status and the response headers.
pub fn get(
    client: &test_env::reqwest::blocking::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, test_env::reqwest::header::HeaderMap) {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (response.status().as_u16(), response.headers().clone())
}
