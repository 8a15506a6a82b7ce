//! The run: start every configuration, load them in interleaved rounds against no-filter
//! bursts, then measure start time, memory, module sizes and downloads; write the report.

use std::fs;
use std::process::Command;
use std::time::Instant;

use crate::configs::{self, NONE};
use crate::nginx::{self, Nginx};
use crate::report::{self, Report};
use crate::results::{Cores, Machine, Row};
use crate::settings::Settings;
use crate::{downloads, footprint, load, procfs, start};

/// Run what `BENCH_ONLY` selects, print the tables and merge them into the results file.
pub fn run() -> Result<(), String> {
    let settings = Settings::from_env()?;
    let cores = pin_self()?;
    let envoy_version = envoy_version()?;
    eprintln!(
        "wasmgate-bench: Envoy {envoy_version}, {} cores; {settings:?}",
        cores.count
    );
    let main = if settings.runs_load() {
        Some(load_report(&settings, cores, &envoy_version)?)
    } else {
        None
    };
    let module_costs = if settings.runs_memory() {
        eprintln!("module costs: size, memory and start-up per module");
        let started = Instant::now();
        let load_before = procfs::load_average();
        let costs = footprint::module_costs(settings.memory_starts);
        let machine = machine(&envoy_version, cores, started, load_before);
        Some(report::render_module_costs(
            &machine,
            &costs,
            settings.memory_starts,
        ))
    } else {
        None
    };
    for text in main.iter().chain(&module_costs) {
        println!("{text}");
    }
    // A missing file is a first run: nothing to keep.
    let existing = fs::read_to_string(&settings.out).unwrap_or_default();
    let text = report::merge(&existing, main.as_deref(), module_costs.as_deref());
    fs::write(&settings.out, &text).map_err(|e| format!("{}: {e}", settings.out.display()))?;
    eprintln!("written to {}", settings.out.display());
    Ok(())
}

/// The machine and the run so far.
fn machine(
    envoy_version: &str,
    cores: Cores,
    started: Instant,
    load_before: Option<f64>,
) -> Machine {
    Machine {
        date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
        envoy_version: envoy_version.to_owned(),
        cores: cores.count,
        cpu_model: cpu_model(),
        pinned: cores.envoy.is_some(),
        load_before,
        load_after: procfs::load_average(),
        minutes: started.elapsed().as_secs_f64() / 60.0,
    }
}

/// The load-tested configurations, then start time, memory, sizes and downloads: the report
/// without the module-cost section.
fn load_report(settings: &Settings, cores: Cores, envoy_version: &str) -> Result<String, String> {
    let started = Instant::now();
    let machine_before = procfs::load_average();
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
    let rls = start::start_rls(&rows, work.path(), cores);
    let mut running = start::start_all(&mut rows, upstream.addr());
    if !running.contains_key(NONE) {
        return Err(format!(
            "the no-filter Envoy did not start: {:?}",
            rows[0].status
        ));
    }
    load::warm_up(&mut rows, &mut running, settings, cores);
    if !running.contains_key(NONE) {
        return Err(format!("the no-filter Envoy failed: {:?}", rows[0].status));
    }
    for round in 0..settings.rounds {
        eprintln!("round {} of {}", round + 1, settings.rounds);
        load::run_round(round, &mut rows, &mut running, settings, cores)?;
    }
    for row in rows.iter_mut() {
        if let Some(envoy) = running.get(row.scenario.id) {
            row.rss_loaded_kib = procfs::rss_kib(envoy.pid()).ok();
        }
    }
    drop(running);

    eprintln!("start time and memory");
    footprint::starts_and_memory(&mut rows, upstream.addr(), settings.starts);
    drop(upstream);
    drop(rls);
    eprintln!("module sizes");
    let modules = footprint::module_sizes();
    eprintln!("downloads");
    let downloads = downloads::downloads(work.path(), settings, cores);

    let report = Report {
        machine: machine(envoy_version, cores, started, machine_before),
        settings: settings.clone(),
        rows,
        modules,
        downloads,
    };
    Ok(report.render())
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
