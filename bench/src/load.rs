//! Load: warm-up, the interleaved rounds against no-filter bursts, one-connection latency.

use std::collections::HashMap;
use std::time::Duration;

use test_env::Envoy;

use crate::configs::{Request, NONE};
use crate::results::{Burst, Cores, Row, Status};
use crate::settings::Settings;
use crate::{procfs, stats, wrk};

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
pub fn warm_up(
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
pub fn run_round(
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
