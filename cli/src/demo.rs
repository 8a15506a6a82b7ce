//! `wasmgate demo`: the registry on its default storage (in a temporary folder), the three
//! plugins published to it, a demo JWKS server and echo upstream, and Envoy fetching every
//! module from the registry with sha256; plus the rate-limit service and two listeners
//! sharing one global limit through it ([`global`]). Prints curl commands showing each plugin
//! at work.
//!
//! The demo signing key is derived from a public string: it is for this demo only.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, Method, Uri};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::error::{read, Error, Result};
use crate::pluginconfig::{check, parse, Configured};
use crate::plugins;
use crate::registry::Registry;
use crate::render::{self, CodeFrom, EnvoyOptions, Source};

pub mod global;

/// The demo's pluginConfigs, in chain order.
pub const CONFIGS: [(&str, &str); 3] = [
    ("jwt-auth", include_str!("../demo/jwt-auth.yaml")),
    ("rate-limit", include_str!("../demo/rate-limit.yaml")),
    (
        "header-rewrite",
        include_str!("../demo/header-rewrite.yaml"),
    ),
];

/// Issuer and audience of the demo tokens.
const ISSUER: &str = "wasmgate-demo";
/// The key id of the demo key in the JWKS.
const KID: &str = "wasmgate-demo";
/// Where the demo JWKS server serves its keys.
const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The demo plugins with their configurations, the JWKS URI set to `jwks_uri`, validated.
pub fn plugins(jwks_uri: &str) -> Result<Vec<Configured>> {
    CONFIGS
        .iter()
        .map(|(name, yaml)| {
            let plugin = plugins::find(name)?;
            let mut config = parse(yaml.as_bytes())?;
            if let Some(uri) = config.pointer_mut("/providers/demo/remote_jwks/uri") {
                *uri = Value::String(jwks_uri.to_owned());
            }
            let origin = "demo configuration";
            let warnings = check(plugin, &config, origin).map_err(|e| e.context(origin))?;
            Ok(Configured {
                plugin,
                version: None,
                config,
                warnings,
            })
        })
        .collect()
}

/// The demo signing key: derived from a public string, so anyone can mint demo tokens.
fn signing_key() -> ed25519_dalek::SigningKey {
    let seed =
        wasmgate_envoy::Digest::of(b"wasmgate demo signing key - never use for anything real");
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&seed.hex()[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    ed25519_dalek::SigningKey::from_bytes(&bytes)
}

/// The demo JWKS: the public half of the demo key.
pub fn jwks() -> Value {
    let public = signing_key().verifying_key();
    json!({ "keys": [{
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": KID,
        "x": URL_SAFE_NO_PAD.encode(public.as_bytes()),
    }]})
}

/// A demo token for `subject`, valid for a day from now.
pub fn token(subject: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": KID });
    let claims = json!({
        "iss": ISSUER, "aud": ISSUER, "sub": subject, "iat": now, "exp": now + 86_400,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signing_key().sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// A token whose signature does not verify: the valid one with its signature changed.
pub fn tampered_token(subject: &str) -> String {
    let valid = token(subject);
    let (input, signature) = valid.rsplit_once('.').unwrap_or((&valid, ""));
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
    if let Some(first) = bytes.first_mut() {
        *first ^= 0x01;
    }
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What the demo runs with.
#[derive(Debug, Clone)]
pub struct Options {
    /// Envoy's listener; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Envoy's admin interface; port 0 picks a free one.
    pub admin: SocketAddr,
    /// The two listeners sharing a global limit; port 0 picks a free one.
    pub global: [SocketAddr; 2],
    /// Folder holding the built modules (`jwt_auth.wasm`, …).
    pub modules: PathBuf,
    pub envoy: PathBuf,
}

/// The running demo. Dropping it stops Envoy and the servers.
#[derive(Debug)]
pub struct Demo {
    /// Envoy's listener.
    pub listener: SocketAddr,
    /// Envoy's admin interface.
    pub admin: SocketAddr,
    /// The two listeners sharing one global limit ([`global::LISTENERS`]).
    pub global: [SocketAddr; 2],
    /// The rate-limit service's gRPC address.
    pub ratelimit: SocketAddr,
    /// The registry's base URL.
    pub registry: String,
    /// The Envoy bootstrap the demo rendered.
    pub bootstrap: PathBuf,
    envoy: Child,
    log: PathBuf,
    stop: Vec<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    /// Held so the folder (registry data, bootstrap, log) lives as long as the demo and is
    /// removed after Envoy and the servers have stopped.
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Envoy's log so far.
    pub fn envoy_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What a person needs from Envoy's log when it did not start: its errors, else its end.
    fn envoy_log_summary(&self) -> String {
        let log = self.envoy_log();
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("][critical][") || l.contains("][error]["))
            .collect();
        let lines = if errors.is_empty() {
            let all: Vec<&str> = log.lines().collect();
            all[all.len().saturating_sub(20)..].to_vec()
        } else {
            errors
        };
        lines.join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.envoy.kill();
        let _ = self.envoy.wait();
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::failed(format!("demo: {what}: {e}"))
}

/// Serve `app` on a free loopback port until the returned sender fires.
fn spawn_server(
    runtime: &tokio::runtime::Runtime,
    app: Router,
) -> Result<(SocketAddr, oneshot::Sender<()>)> {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(io("bind"))?;
    let addr = listener.local_addr().map_err(io("bind"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    runtime.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((addr, stop))
}

/// The echo upstream: answers with the request it received, as JSON.
async fn echo(method: Method, uri: Uri, headers: HeaderMap) -> Json<Value> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Json(json!({ "method": method.as_str(), "path": uri.to_string(), "headers": headers }))
}

/// Start everything; returns once Envoy is ready and the plugins answered a first request.
pub fn start(options: &Options) -> Result<Demo> {
    let dir = tempfile::Builder::new()
        .prefix("wasmgate-demo-")
        .tempdir()
        .map_err(io("temporary folder"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("async runtime"))?;
    let mut stop = Vec::new();

    // The temporary folder's name is random, so each run gets its own publish token.
    let digest = wasmgate_envoy::Digest::of(dir.path().as_os_str().as_encoded_bytes());
    let token = format!("demo-{}", &digest.hex()[..32]);
    let registry_config = wasmgate_registry::Config {
        bind: "127.0.0.1:0"
            .parse()
            .map_err(|_| Error::failed("demo: bad address"))?,
        data_dir: dir.path().join("registry"),
        tokens: vec![token.clone()],
        ..wasmgate_registry::Config::default()
    };
    let registry = wasmgate_registry::Registry::open(registry_config)
        .map_err(|e| Error::failed(format!("demo: registry: {e}")))?;
    let (registry_addr, registry_stop) = spawn_server(&runtime, wasmgate_registry::app(registry))?;
    stop.push(registry_stop);
    let (jwks_addr, jwks_stop) = spawn_server(
        &runtime,
        Router::new().route(JWKS_PATH, get(|| async { Json(jwks()) })),
    )?;
    stop.push(jwks_stop);
    let (upstream_addr, upstream_stop) = spawn_server(&runtime, Router::new().fallback(echo))?;
    stop.push(upstream_stop);
    let (ratelimit_addr, ratelimit_stop) = global::start_service(&runtime)?;
    stop.push(ratelimit_stop);

    let registry_url = format!("http://{registry_addr}");
    let client = Registry::new(&registry_url, Some(token))?;
    let version = env!("CARGO_PKG_VERSION");
    for plugin in &plugins::PLUGINS {
        let path = options.modules.join(format!("{}.wasm", plugin.module));
        let module =
            read(&path).map_err(|e| e.context("demo: build the plugins first (`make wasm`)"))?;
        client.publish(plugin.name, version, module, plugin.name, plugin.summary)?;
        client.publish_schema(plugin.name, version, &plugin.schema())?;
    }

    let configured = plugins(&format!("http://{jwks_addr}{JWKS_PATH}"))?;
    let resolved = render::resolve(Source::Registry(&client), configured)?;
    let (mut bootstrap, _) = render::envoy(
        &resolved,
        &EnvoyOptions {
            listen: options.listen,
            admin: Some(options.admin),
            upstream: format!("http://{upstream_addr}"),
            code: CodeFrom::Remote,
            clusters: Vec::new(),
            jwks_tls: render::JwksTls::default(),
        },
    )?;
    let rate_limit = resolved
        .iter()
        .find(|p| p.configured.plugin.name == "rate-limit")
        .ok_or_else(|| Error::failed("demo: rate-limit is not among the plugins"))?;
    global::add_listeners(&mut bootstrap, options.global, rate_limit, ratelimit_addr)?;
    let bootstrap_path = dir.path().join("envoy.yaml");
    crate::error::write(
        &bootstrap_path,
        render::encode(&[bootstrap], render::Format::Yaml)?.as_bytes(),
    )?;

    let log = dir.path().join("envoy.log");
    let admin_path = dir.path().join("admin-address.txt");
    let mut command = Command::new(&options.envoy);
    die_with_this_process(&mut command);
    let envoy = command
        .arg("-c")
        .arg(&bootstrap_path)
        .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
        .args(["--file-flush-interval-msec", "100"])
        .arg("--log-path")
        .arg(&log)
        .arg("--admin-address-path")
        .arg(&admin_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::failed(format!(
                "demo: cannot run {}: {e} (install it with `make envoy` or set ENVOY_BIN)",
                options.envoy.display()
            ))
        })?;
    let mut demo = Demo {
        listener: options.listen,
        admin: options.admin,
        global: options.global,
        ratelimit: ratelimit_addr,
        registry: registry_url,
        bootstrap: bootstrap_path,
        envoy,
        log,
        stop,
        runtime: Some(runtime),
        _dir: dir,
    };
    wait_ready(&mut demo, &admin_path)?;
    Ok(demo)
}

fn http() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::failed(format!("cannot build an HTTP client: {e}")))
}

/// Wait until Envoy's admin says LIVE, then find the listener's address.
fn wait_ready(demo: &mut Demo, admin_path: &Path) -> Result<()> {
    let client = http()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = demo.envoy.try_wait() {
            return Err(Error::failed(format!(
                "demo: Envoy exited ({status}); its log:\n{}",
                demo.envoy_log_summary()
            )));
        }
        if let Some(admin) = std::fs::read_to_string(admin_path)
            .ok()
            .and_then(|s| s.trim().parse::<SocketAddr>().ok())
        {
            demo.admin = admin;
            let ready = client
                .get(format!("http://{admin}/ready"))
                .send()
                .and_then(|r| r.text())
                .is_ok_and(|body| body.trim() == "LIVE");
            if ready {
                let listeners: Value = client
                    .get(format!("http://{admin}/listeners?format=json"))
                    .send()
                    .and_then(|r| r.json())
                    .map_err(|e| Error::failed(format!("demo: Envoy admin: {e}")))?;
                let bound = |name: &str| -> Result<SocketAddr> {
                    let status = listeners["listener_statuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|s| s["name"] == name);
                    let address = status.map(|s| &s["local_address"]["socket_address"]);
                    address
                        .and_then(|a| {
                            format!(
                                "{}:{}",
                                a["address"].as_str().unwrap_or("127.0.0.1"),
                                a["port_value"].as_u64().unwrap_or(0)
                            )
                            .parse()
                            .ok()
                        })
                        .ok_or_else(|| {
                            Error::failed(format!("demo: Envoy reports no listener {name}"))
                        })
                };
                demo.listener = bound("wasmgate")?;
                demo.global = [bound(global::LISTENERS[0])?, bound(global::LISTENERS[1])?];
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(Error::failed(format!(
                "demo: Envoy not ready after 60 s; its log:\n{}",
                demo.envoy_log_summary()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The copy-paste curl commands showing each plugin at work.
pub fn instructions(demo: &Demo) -> String {
    let base = format!("http://{}", demo.listener);
    let valid = token("demo-user");
    let invalid = tampered_token("demo-user");
    format!(
        "\
Wasmgate demo is running.
  registry   {registry}  (jwt-auth, rate-limit, header-rewrite published; Envoy fetched each by sha256)
  envoy      {base}  (admin http://{admin}, config {bootstrap})

jwt-auth: /api needs a token signed by the demo key
  curl -i {base}/api/hello                                        # 401, no token
  curl -i -H 'authorization: Bearer {invalid}' {base}/api/hello   # 401, bad signature
  curl -i -H 'authorization: Bearer {valid}' {base}/api/hello     # 200, upstream sees x-user: demo-user

rate-limit: 3 requests a minute per client under /limited
  for i in 1 2 3 4; do curl -s -o /dev/null -w '%{{http_code}}\\n' {base}/limited; done   # 200 200 200 429

header-rewrite: a request header for the upstream, a response header for you
  curl -i {base}/public    # response has x-wasmgate: header-rewrite; the echoed request has x-wasmgate-demo

rate-limit, global: listeners {a} and {b} ask one rate-limit service ({ratelimit}, counters in
memory), {limit} requests a minute for both together
  for url in {a} {b} {a} {b} {a} {b}; do curl -s -o /dev/null -w '%{{http_code}} ' $url/; done; echo   # 200 200 200 200 200 429

Ctrl-C stops everything.
",
        registry = demo.registry,
        admin = demo.admin,
        a = format_args!("http://{}", demo.global[0]),
        b = format_args!("http://{}", demo.global[1]),
        ratelimit = demo.ratelimit,
        limit = global::LIMIT,
        bootstrap = demo.bootstrap.display(),
    )
}

/// Envoy is the demo's only child process (the registry and the servers are tasks of this
/// one): it gets SIGKILL when this process dies, however it dies (SIGKILL, a crash), so it
/// never keeps the demo's ports. Linux sends the signal when the *thread* that spawned Envoy
/// exits: [`start`] must run on a thread that outlives the [`Demo`] (the CLI's main thread).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // prctl has no safe wrapper in std, and must run in the forked child.
fn die_with_this_process(command: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    let parent = std::process::id();
    let pre_exec = move || {
        // SAFETY: between fork and exec only async-signal-safe calls that do not allocate:
        // prctl and getppid.
        let set = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
        if set == -1 {
            return Err(std::io::Error::last_os_error());
        }
        // This process may have died before prctl: then no signal would ever come.
        // SAFETY: getppid cannot fail.
        if u32::try_from(unsafe { libc::getppid() }).ok() != Some(parent) {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the closure above is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(pre_exec);
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_this_process(_: &mut Command) {}

/// Run the demo until Ctrl-C, SIGTERM or SIGHUP.
pub fn run(options: &Options) -> Result<()> {
    eprintln!("starting the registry, publishing the plugins and starting Envoy…");
    let demo = start(options)?;
    let Some(runtime) = demo.runtime.as_ref() else {
        return Err(Error::failed("demo: the async runtime is gone"));
    };
    // The handlers go in before the instructions are printed: whoever acts on them (a person, a
    // test, a supervisor) may signal at once, and an unhandled SIGHUP would kill the CLI without
    // its clean-up. SIGTERM stops it too, for `kill` and supervisors; SIGHUP is what a closing
    // terminal sends.
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let _entered = runtime.enter();
        signal(SignalKind::interrupt()).and_then(|interrupt| {
            Ok((
                interrupt,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ))
        })
    };
    let (mut interrupt, mut term, mut hangup) =
        signals.map_err(|e| Error::failed(format!("demo: cannot install signal handlers: {e}")))?;
    print!("{}", instructions(&demo));
    runtime.block_on(async {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
            _ = hangup.recv() => {}
        }
    });
    // After SIGHUP the terminal may be gone: a failed write must not stop the clean-up
    // (eprintln! would panic).
    let _ = writeln!(
        std::io::stderr(),
        "\nstopping Envoy, the registry and the demo servers"
    );
    drop(demo);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_configs_are_accepted_by_the_plugins() {
        let plugins = plugins("http://127.0.0.1:1/.well-known/jwks.json").unwrap();
        assert_eq!(plugins.len(), 3);
        assert_eq!(
            plugins[0].config.pointer("/providers/demo/remote_jwks/uri"),
            Some(&json!("http://127.0.0.1:1/.well-known/jwks.json"))
        );
    }

    #[test]
    fn tokens_verify_with_the_jwks_and_tampering_breaks_them() {
        use ed25519_dalek::Verifier as _;
        let key = jwks()["keys"][0]["x"].as_str().unwrap().to_owned();
        let key: [u8; 32] = URL_SAFE_NO_PAD.decode(key).unwrap().try_into().unwrap();
        let key = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
        let verify = |token: &str| {
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig: [u8; 64] = URL_SAFE_NO_PAD.decode(sig).unwrap().try_into().unwrap();
            key.verify(
                input.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .is_ok()
        };
        assert!(verify(&token("ada")));
        assert!(!verify(&tampered_token("ada")));
    }
}
