//! The run: start every configuration, load them in interleaved rounds against no-filter
//! bursts, then measure start time, memory, module sizes and downloads.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use std::{env, fs};

use test_env::{Envoy, WasmFilter};

use crate::configs::{self, Filter, Request, Scenario, NONE};
use crate::nginx::{self, Nginx};
use crate::report::{Download, Machine, ModuleSize, Report};
use crate::{procfs, rls, stats, wrk};

/// The modules whose sizes are reported.
const MODULES: [&str; 4] = ["header_rewrite", "jwt_auth", "rate_limit", "wasmgate_all"];
/// Connections for the file downloads: enough to keep one server core busy.
const DOWNLOAD_CONNECTIONS: u32 = 4;

/// What the environment asks for (see bench/README.md).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Length of each saturating burst (`BENCH_SECONDS`).
    pub seconds: Duration,
    /// Length of each one-connection run (`BENCH_LATENCY_SECONDS`).
    pub latency_seconds: Duration,
    /// Interleaved rounds (`BENCH_ROUNDS`).
    pub rounds: usize,
    /// Connections at saturation (`BENCH_CONNECTIONS`).
    pub connections: u32,
    /// Extra Envoy starts per configuration for start time and memory (`BENCH_STARTS`).
    pub starts: usize,
    /// Only configurations whose id contains one of these (`BENCH_ONLY`, comma separated).
    pub only: Vec<String>,
    /// The results file (`BENCH_OUT`).
    pub out: PathBuf,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let only = env::var("BENCH_ONLY")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let out = env::var_os("BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| test_env::workspace_root().join("bench/RESULTS.md"));
        Ok(Settings {
            seconds: Duration::from_secs(env_number("BENCH_SECONDS", 2)?),
            latency_seconds: Duration::from_secs(env_number("BENCH_LATENCY_SECONDS", 1)?),
            rounds: env_number("BENCH_ROUNDS", 3)?,
            connections: env_number("BENCH_CONNECTIONS", 16)?,
            starts: env_number("BENCH_STARTS", 1)?,
            only,
            out,
        })
    }

    fn selects(&self, scenario: &Scenario) -> bool {
        scenario.id == NONE
            || self.only.is_empty()
            || self.only.iter().any(|o| scenario.id.contains(o.as_str()))
    }
}

fn env_number<T: FromStr + Copy>(name: &str, default: T) -> Result<T, String> {
    match env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map_err(|_| format!("{name}={value:?} is not a number")),
        _ => Ok(default),
    }
}

/// Whether a configuration could be measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// A module it needs is not built.
    Missing(String),
    /// Envoy refused it, it failed its check, or a run failed.
    Failed(String),
}

/// One saturating burst against one Envoy.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    pub report: wrk::Report,
    /// Envoy CPU time (user + system, every thread) per completed request, in µs.
    pub cpu_us: f64,
}

/// Everything measured for one configuration.
#[derive(Debug)]
pub struct Row {
    pub scenario: Scenario,
    pub status: Status,
    pub saturated: Vec<Burst>,
    pub one_connection: Vec<wrk::Report>,
    /// Per round: CPU per request against the paired no-filter bursts, as a fraction.
    pub cpu_change: Vec<f64>,
    /// Per round: CPU per request divided by the paired no-filter mean.
    pub normalized: Vec<Option<f64>>,
    pub start_ms: Vec<f64>,
    /// Resident memory right after start, in KiB, at concurrency 1 and 2.
    pub rss_kib: [Vec<f64>; 2],
    /// Resident memory of the load-tested Envoy (concurrency 1) after all rounds, in KiB.
    pub rss_loaded_kib: Option<u64>,
}

impl Row {
    fn new(scenario: Scenario, rounds: usize) -> Row {
        Row {
            scenario,
            status: Status::Ok,
            saturated: Vec::new(),
            one_connection: Vec::new(),
            cpu_change: Vec::new(),
            normalized: vec![None; rounds],
            start_ms: Vec::new(),
            rss_kib: [Vec::new(), Vec::new()],
            rss_loaded_kib: None,
        }
    }

    fn fail(&mut self, why: String) {
        self.set(Status::Failed(why));
    }

    fn set(&mut self, status: Status) {
        match &status {
            Status::Ok => {}
            Status::Missing(why) => eprintln!("  {}: missing: {why}", self.scenario.id),
            Status::Failed(why) => eprintln!("  {}: FAILED: {why}", self.scenario.id),
        }
        self.status = status;
    }
}

/// Which cores Envoy and the load generator use.
#[derive(Debug, Clone, Copy)]
pub struct Cores {
    pub count: usize,
    pub envoy: Option<usize>,
    pub load: Option<usize>,
}

/// Run everything, print the table and write the results file.
pub fn run() -> Result<(), String> {
    let settings = Settings::from_env()?;
    let started = Instant::now();
    let cores = pin_self()?;
    let machine_before = procfs::load_average();
    let envoy_version = envoy_version()?;
    eprintln!(
        "wasmgate-bench: Envoy {envoy_version}, {} cores; {settings:?}",
        cores.count
    );
    let work = tempfile::Builder::new()
        .prefix("wasmgate-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let upstream = Nginx::start(
        &work.path().join("upstream"),
        nginx::UPSTREAM_LOCATION,
        cores.load,
    )?;

    eprintln!("signing {} cold tokens per algorithm", crate::cold::COUNT);
    crate::cold::write(&work.path().join("cold"))?;
    let mut rows: Vec<Row> = configs::all()
        .into_iter()
        .filter(|s| settings.selects(s))
        .map(|s| Row::new(s, settings.rounds))
        .collect();
    let rls = start_rls(&rows, work.path(), cores);
    let mut running = start_all(&mut rows, upstream.addr());
    if !running.contains_key(NONE) {
        return Err(format!(
            "the no-filter Envoy did not start: {:?}",
            rows[0].status
        ));
    }
    warm_up(&mut rows, &mut running, &settings, cores);
    if !running.contains_key(NONE) {
        return Err(format!("the no-filter Envoy failed: {:?}", rows[0].status));
    }
    for round in 0..settings.rounds {
        eprintln!("round {} of {}", round + 1, settings.rounds);
        run_round(round, &mut rows, &mut running, &settings, cores)?;
    }
    for row in rows.iter_mut() {
        if let Some(envoy) = running.get(row.scenario.id) {
            row.rss_loaded_kib = procfs::rss_kib(envoy.pid()).ok();
        }
    }
    drop(running);

    eprintln!("start time and memory");
    starts_and_memory(&mut rows, upstream.addr(), settings.starts);
    drop(upstream);
    drop(rls);
    eprintln!("module sizes");
    let modules = module_sizes();
    eprintln!("downloads");
    let downloads = downloads(work.path(), &settings, cores);

    let report = Report {
        machine: Machine {
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
            envoy_version,
            cores: cores.count,
            cpu_model: cpu_model(),
            pinned: cores.envoy.is_some(),
            load_before: machine_before,
            load_after: procfs::load_average(),
            minutes: started.elapsed().as_secs_f64() / 60.0,
        },
        settings: settings.clone(),
        rows,
        modules,
        downloads,
    };
    let text = report.render();
    println!("{text}");
    fs::write(&settings.out, &text).map_err(|e| format!("{}: {e}", settings.out.display()))?;
    eprintln!("written to {}", settings.out.display());
    Ok(())
}

/// Pin this process (and so every Envoy it starts) to core 0, and leave core 1 to the load
/// generator and the upstream.
fn pin_self() -> Result<Cores, String> {
    let count = std::thread::available_parallelism().map_or(1, usize::from);
    if count < 2 {
        eprintln!("wasmgate-bench: one core only: Envoy and wrk share it, figures will be lower");
        return Ok(Cores {
            count,
            envoy: None,
            load: None,
        });
    }
    procfs::pin(std::process::id(), 0)?;
    Ok(Cores {
        count,
        envoy: Some(0),
        load: Some(1),
    })
}

fn envoy_version() -> Result<String, String> {
    let binary = test_env::envoy_binary();
    let out = command_output(&binary.to_string_lossy(), &["--version"]).ok_or_else(|| {
        format!(
            "cannot run {} --version: install Envoy with `make envoy`",
            binary.display()
        )
    })?;
    // "envoy  version: <sha>/1.40.1/Clean/RELEASE/BoringSSL"
    Ok(out
        .split("version:")
        .nth(1)
        .map_or(out.as_str(), str::trim)
        .to_owned())
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default()
}

/// The rate limit service's cluster, once [`start_rls`] has started it; or why it did not.
static RLS: OnceLock<Result<test_env::wasmgate_envoy::Cluster, String>> = OnceLock::new();

/// Start the rate limit service when a selected configuration needs it.
fn start_rls(rows: &[Row], work: &Path, cores: Cores) -> Option<rls::Rls> {
    if !rows.iter().any(|r| r.scenario.rls) {
        return None;
    }
    eprintln!("starting redis-server and wasmgate-ratelimit");
    let started = rls::Rls::start(&work.join("rls"), cores.load);
    let _ = RLS.set(
        started
            .as_ref()
            .map(rls::Rls::cluster)
            .map_err(Clone::clone),
    );
    started.ok()
}

/// Start an Envoy for `scenario`; the error says whether it is missing or failed.
fn start(
    scenario: &Scenario,
    upstream: SocketAddr,
    concurrency: u32,
) -> Result<(Envoy, Duration), Status> {
    if let Some(module) = scenario
        .modules()
        .into_iter()
        .find(|m| !module_path(m).is_file())
    {
        return Err(Status::Missing(format!("{module}.wasm not built")));
    }
    let mut builder = Envoy::builder()
        .upstream(upstream)
        .concurrency(concurrency)
        .log_level("warn");
    if scenario.rls {
        match RLS.get() {
            Some(Ok(cluster)) => builder = builder.cluster(cluster.clone()),
            Some(Err(why)) => return Err(Status::Missing(why.clone())),
            None => {
                return Err(Status::Missing(
                    "the rate limit service is not running".into(),
                ))
            }
        }
    }
    for filter in &scenario.filters {
        builder = match filter {
            Filter::Native(json) => builder.filter(json.clone()),
            Filter::Wasm {
                module,
                root_id,
                vm_id,
                config,
            } => builder.wasm(
                WasmFilter::new(module_path(module))
                    .root_id(root_id)
                    .vm_id(vm_id)
                    .config(config.clone()),
            ),
        };
    }
    let begin = Instant::now();
    match builder.try_start() {
        Ok(envoy) => Ok((envoy, begin.elapsed())),
        Err(err) => Err(Status::Failed(refusal(&err.log))),
    }
}

fn module_path(module: &str) -> PathBuf {
    test_env::wasm_dir().join(format!("{module}.wasm"))
}

/// The first error in Envoy's log, without its `[time][pid][level][logger] [file:line]` prefix.
fn refusal(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("invalid plugin configuration"))
        .or_else(|| {
            log.lines()
                .find(|l| l.contains("[critical]") || l.contains("[error]"))
        })
        .unwrap_or("Envoy did not start");
    let mut message = line.trim();
    while let Some(rest) = message.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => message = rest[end + 1..].trim_start(),
            None => break,
        }
    }
    message.chars().take(240).collect()
}

/// Start every load-tested configuration and check it does its work.
fn start_all(rows: &mut [Row], upstream: SocketAddr) -> HashMap<&'static str, Envoy> {
    let mut running = HashMap::new();
    for row in rows.iter_mut().filter(|r| r.scenario.load) {
        match start(&row.scenario, upstream, 1) {
            Ok((envoy, took)) => match check(&envoy, &row.scenario) {
                Ok(()) => {
                    eprintln!("  {}: ready in {} ms", row.scenario.id, took.as_millis());
                    row.start_ms.push(took.as_secs_f64() * 1e3);
                    running.insert(row.scenario.id, envoy);
                }
                Err(why) => row.fail(why),
            },
            Err(status) => row.set(status),
        }
    }
    running
}

/// The configuration answers the benchmark's request with 200 and does its visible work.
fn check(envoy: &Envoy, scenario: &Scenario) -> Result<(), String> {
    let client = test_env::client();
    let headers = scenario.request.headers();
    let send = |with_token: bool| {
        let mut request = client.get(envoy.url("/"));
        for (name, value) in &headers {
            if with_token || name != "authorization" {
                request = request.header(name, value);
            }
        }
        request.send().map_err(|e| format!("check request: {e}"))
    };
    let response = send(true)?;
    let want = scenario.request.status();
    if response.status() != want {
        // A flood's first request may still be allowed: it is the next one that is refused.
        let again = send(true)?.status();
        if again != want {
            return Err(format!(
                "the benchmark's request got {again} instead of {want}"
            ));
        }
    }
    for (name, want) in &scenario.check.response_headers {
        let got = response.headers().get(*name).and_then(|v| v.to_str().ok());
        if got != Some(*want) {
            return Err(format!(
                "response header {name} is {got:?}, expected {want:?}"
            ));
        }
    }
    if let Some(want) = scenario.check.without_token {
        let got = send(false)?.status().as_u16();
        if got != want {
            return Err(format!(
                "a request without a token got {got} instead of {want}"
            ));
        }
    }
    Ok(())
}

fn load(
    envoy: &Envoy,
    request: Request,
    connections: u32,
    duration: Duration,
    cores: Cores,
) -> wrk::Load {
    wrk::Load {
        url: envoy.url("/"),
        connections,
        duration,
        headers: request.headers(),
        core: cores.load,
        script: request.script(),
    }
}

/// One saturating burst, with Envoy's CPU time over it.
fn burst(
    envoy: &Envoy,
    request: Request,
    settings: &Settings,
    cores: Cores,
) -> Result<Burst, String> {
    let pid = envoy.pid();
    let before = procfs::cpu_seconds(pid)?;
    let report = wrk::run(&load(
        envoy,
        request,
        settings.connections,
        settings.seconds,
        cores,
    ))?;
    let after = procfs::cpu_seconds(pid)?;
    if let Some(problem) = report.problem_expecting(request.status()) {
        return Err(problem);
    }
    Ok(Burst {
        report,
        cpu_us: (after - before) * 1e6 / report.requests as f64,
    })
}

/// A short burst at every configuration first: V8 compiles lazily, caches fill.
fn warm_up(
    rows: &mut [Row],
    running: &mut HashMap<&'static str, Envoy>,
    settings: &Settings,
    cores: Cores,
) {
    let short = Settings {
        seconds: Duration::from_secs(1),
        ..settings.clone()
    };
    for row in rows.iter_mut() {
        let Some(envoy) = running.get(row.scenario.id) else {
            continue;
        };
        if let Err(why) = burst(envoy, row.scenario.request, &short, cores) {
            row.fail(format!("warm-up: {why}"));
            running.remove(row.scenario.id);
        }
    }
}

fn index(rows: &[Row], id: &str) -> usize {
    rows.iter().position(|r| r.scenario.id == id).unwrap_or(0)
}

/// One round: each configuration between two no-filter bursts sent the same request, then
/// one-connection latency of each.
fn run_round(
    round: usize,
    rows: &mut [Row],
    running: &mut HashMap<&'static str, Envoy>,
    settings: &Settings,
    cores: Cores,
) -> Result<(), String> {
    // Every other round runs backwards, so a slow drift of the machine does not always
    // favour the same configurations.
    let backwards = round % 2 == 1;
    let mut requests = Request::ALL.to_vec();
    if backwards {
        requests.reverse();
    }
    let none = index(rows, NONE);
    for request in requests {
        let mut members: Vec<usize> = (0..rows.len())
            .filter(|&i| {
                let s = &rows[i].scenario;
                s.id != NONE && s.request == request && running.contains_key(s.id)
            })
            .collect();
        if backwards {
            members.reverse();
        }
        if members.is_empty() && request != Request::Plain {
            continue;
        }
        let mut before = baseline(rows, none, running, request, settings, cores)?;
        for i in members {
            let id = rows[i].scenario.id;
            let Some(envoy) = running.get(id) else {
                continue;
            };
            match burst(envoy, request, settings, cores) {
                Ok(b) => {
                    let after = baseline(rows, none, running, request, settings, cores)?;
                    let row = &mut rows[i];
                    row.cpu_change
                        .push(stats::paired_change(before, b.cpu_us, after));
                    row.normalized[round] = Some(b.cpu_us / ((before + after) / 2.0));
                    eprintln!(
                        "  {id}: {:.0} req/s, {:.1} µs CPU/req ({:+.1} %)",
                        b.report.requests_per_second,
                        b.cpu_us,
                        stats::paired_change(before, b.cpu_us, after) * 100.0
                    );
                    row.saturated.push(b);
                    before = after;
                }
                Err(why) => {
                    rows[i].fail(format!("round {}: {why}", round + 1));
                    running.remove(id);
                }
            }
        }
    }
    for row in rows.iter_mut() {
        let Some(envoy) = running.get(row.scenario.id) else {
            continue;
        };
        let one = load(
            envoy,
            row.scenario.request,
            1,
            settings.latency_seconds,
            cores,
        );
        let status = row.scenario.request.status();
        match wrk::run(&one) {
            Ok(report) if report.problem_expecting(status).is_none() => {
                row.one_connection.push(report)
            }
            Ok(report) => row.fail(format!(
                "one connection, round {}: {}",
                round + 1,
                report.problem_expecting(status).unwrap_or_default()
            )),
            Err(why) => row.fail(why),
        }
        if !matches!(row.status, Status::Ok) {
            running.remove(row.scenario.id);
        }
    }
    Ok(())
}

/// A no-filter burst; its CPU per request. Only the plain request's bursts make the
/// no-filter row, so that row compares with the other plain rows.
fn baseline(
    rows: &mut [Row],
    none: usize,
    running: &HashMap<&'static str, Envoy>,
    request: Request,
    settings: &Settings,
    cores: Cores,
) -> Result<f64, String> {
    let envoy = running
        .get(NONE)
        .ok_or_else(|| "the no-filter Envoy is gone".to_owned())?;
    let b = burst(envoy, request, settings, cores)
        .map_err(|e| format!("the no-filter Envoy failed a burst: {e}"))?;
    if request == Request::Plain {
        rows[none].saturated.push(b);
    }
    Ok(b.cpu_us)
}

/// Start each configuration afresh: time to ready, and memory once ready.
fn starts_and_memory(rows: &mut [Row], upstream: SocketAddr, starts: usize) {
    for repeat in 0..starts.max(1) {
        let concurrencies: &[u32] = if repeat == 0 { &[1, 2] } else { &[1] };
        for &concurrency in concurrencies {
            for row in rows.iter_mut().filter(|r| r.status == Status::Ok) {
                match start(&row.scenario, upstream, concurrency) {
                    Ok((envoy, took)) => {
                        // Let the workers finish loading their VMs before reading memory.
                        std::thread::sleep(Duration::from_millis(300));
                        if concurrency == 1 {
                            row.start_ms.push(took.as_secs_f64() * 1e3);
                        }
                        if let Ok(kib) = procfs::rss_kib(envoy.pid()) {
                            row.rss_kib[usize::from(concurrency == 2)].push(kib as f64);
                        }
                    }
                    Err(status) => row.set(status),
                }
            }
        }
    }
}

/// Each module as Cargo built it and as `make wasm` ships it (after `wasm-opt -Oz`).
fn module_sizes() -> Vec<ModuleSize> {
    let size = |path: PathBuf| fs::metadata(path).ok().map(|m| m.len());
    MODULES
        .iter()
        .map(|name| {
            let file = format!("{name}.wasm");
            ModuleSize {
                name,
                raw: size(test_env::wasm_build_dir().join(&file)),
                optimized: size(module_path(name)).ok_or_else(|| "not built".to_owned()),
            }
        })
        .collect()
}

/// The same module downloaded from nginx and from the registry, each server on Envoy's core.
fn downloads(work: &Path, settings: &Settings, cores: Cores) -> Vec<Download> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_the_plugin_error_without_the_log_prefix() {
        let log = "[2026-11-26 17:40:00.123][42][warning][main] [source/server/server.cc:1] something\n\
                   [2026-11-26 17:40:00.200][42][error][wasm] [source/extensions/common/wasm/context.cc:1220] wasm log header-rewrite: invalid plugin configuration: rules[0].request[1].op: unknown variant `remove`\n\
                   [2026-11-26 17:40:00.300][42][critical][main] [source/server/server.cc:2] error initializing config";
        assert_eq!(
            refusal(log),
            "wasm log header-rewrite: invalid plugin configuration: rules[0].request[1].op: unknown variant `remove`"
        );
        assert_eq!(
            refusal("[t][1][critical][main] [x.cc:2] error initializing config"),
            "error initializing config"
        );
        assert_eq!(refusal(""), "Envoy did not start");
    }

    #[test]
    fn settings_default_and_parse() {
        assert_eq!(env_number("WASMGATE_BENCH_UNSET_FOR_TEST", 3usize), Ok(3));
    }
}
