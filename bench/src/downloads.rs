//! The combined module downloaded over and over from nginx and from the registry.

use std::env;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::nginx::{self, Nginx};
use crate::results::{Cores, Download};
use crate::settings::Settings;
use crate::start::module_path;
use crate::wrk;

/// Connections for the file downloads: enough to keep one server core busy.
const DOWNLOAD_CONNECTIONS: u32 = 4;

/// The same module downloaded from nginx and from the registry, each server on Envoy's core.
pub fn downloads(work: &Path, settings: &Settings, cores: Cores) -> Vec<Download> {
    let module = module_path("wasmgate_all");
    let Ok(bytes) = fs::read(&module) else {
        let why = "wasmgate_all.wasm not built".to_owned();
        return vec![
            Download::missing("nginx", why.clone()),
            Download::missing("wasmgate-registry", why),
        ];
    };
    let size = bytes.len() as u64;
    let nginx = nginx_download(work, &bytes, settings, cores);
    let registry = registry_download(work, &bytes, settings, cores);
    vec![
        Download::measured("nginx (Debian), static file", size, nginx),
        Download::measured("wasmgate-registry, /api/v1/blobs", size, registry),
    ]
}

fn download_load(url: String, settings: &Settings, cores: Cores) -> Result<wrk::Report, String> {
    let report = wrk::run(&wrk::Load {
        url,
        connections: DOWNLOAD_CONNECTIONS,
        duration: settings.seconds,
        headers: Vec::new(),
        core: cores.load,
        script: None,
    })?;
    match report.problem() {
        Some(problem) => Err(problem),
        None => Ok(report),
    }
}

fn nginx_download(
    work: &Path,
    bytes: &[u8],
    settings: &Settings,
    cores: Cores,
) -> Result<wrk::Report, String> {
    let dir = work.join("files");
    fs::create_dir_all(dir.join("www")).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::write(dir.join("www/module.wasm"), bytes).map_err(|e| format!("{}: {e}", dir.display()))?;
    let location = format!(
        "        location / {{ root {}; }}",
        dir.join("www").display()
    );
    let server = Nginx::start(&dir, &location, cores.envoy)?;
    download_load(
        format!("http://{}/module.wasm", server.addr()),
        settings,
        cores,
    )
}

/// The registry binary next to this one (`cargo build --release -p wasmgate-registry`).
fn registry_binary() -> Option<PathBuf> {
    let here = env::current_exe().ok()?;
    let path = here.parent()?.join("wasmgate-registry");
    path.is_file().then_some(path)
}

/// The registry process, killed on drop.
struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn registry_download(
    work: &Path,
    bytes: &[u8],
    settings: &Settings,
    cores: Cores,
) -> Result<wrk::Report, String> {
    let binary = registry_binary().ok_or_else(|| {
        "missing: wasmgate-registry is not built (cargo build --release -p wasmgate-registry)"
            .to_owned()
    })?;
    let addr = nginx::free_port()?;
    let token = "wasmgate-bench";
    let mut command = match cores.envoy {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &core.to_string()]).arg(&binary);
            c
        }
        None => Command::new(&binary),
    };
    let child = command
        .arg("--bind")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(work.join("registry-data"))
        .env("WASMGATE_REGISTRY_TOKENS", token)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let _registry = Registry(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err("the registry did not listen within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let response = test_env::client()
        .put(format!("http://{addr}/api/v1/plugins/bench/versions/0.1.0"))
        .bearer_auth(token)
        .header("x-wasmgate-root-id", "header-rewrite")
        .body(bytes.to_vec())
        .send()
        .map_err(|e| format!("publish: {e}"))?;
    let status = response.status();
    let body = response.text().unwrap_or_default();
    if !status.is_success() {
        return Err(format!("publish answered {status}: {body}"));
    }
    let meta: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("publish answered {body:?}: {e}"))?;
    let blob = meta["blob_url"]
        .as_str()
        .ok_or_else(|| format!("publish answer has no blob_url: {body}"))?;
    download_load(format!("http://{addr}{blob}"), settings, cores)
}
