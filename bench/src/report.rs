//! The results as Markdown: printed, and written to bench/RESULTS.md.

use std::fmt::Write;

use crate::results::{Download, Machine, ModuleSize, Row, Status};
use crate::settings::Settings;
use crate::stats::Summary;
use crate::wrk;

/// Everything a run produced.
#[derive(Debug)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub rows: Vec<Row>,
    pub modules: Vec<ModuleSize>,
    pub downloads: Vec<Download>,
}

const HOW_TO_READ: &str = "\
How to read this: every configuration ran behind the same Envoy build with `--concurrency 1`,
Envoy pinned to one core and wrk (one thread) plus the nginx upstream to the other, over loopback.
Each round runs every configuration once between two no-filter bursts sent the same request;
rounds alternate direction. Figures are medians over the rounds, `±` is half the range
(max − min) relative to the median.

- **req/s**, **p50 / p99**: at saturation (wrk with the connections above), and with one
  connection (latency without queueing). They move with the machine's speed.
- **CPU µs/req**: Envoy's user + system CPU time over a burst divided by the requests it served:
  the steadiest figure, and the one that says what a filter costs.
- **vs no filter**: the change of CPU per request against the mean of the no-filter bursts just
  before and after, paired per round (so a machine slowing down does not count as filter cost);
  median, with the lowest and highest round in brackets.
- **vs native**: the Wasm (or Lua) configuration's paired CPU per request divided by its native
  equivalent's, per round, median: `1.20×` = 20 % more Envoy CPU per request than the native filter.
- A configuration whose module is not built is **missing**; one Envoy refused, or that answered
  anything but 2xx, is **failed**, with the reason.
";

impl Report {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let s = &self.settings;
        let load = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.2}"));
        let _ = writeln!(out, "# Wasmgate benchmark results\n");
        let _ = writeln!(out, "Written by `make bench` (bench/): each plugin against the native Envoy filter doing the same work.\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| date | {} |", m.date);
        let _ = writeln!(out, "| Envoy | {} |", m.envoy_version);
        let _ = writeln!(out, "| machine | {} cores, {} |", m.cores, m.cpu_model);
        let _ = writeln!(
            out,
            "| pinning | {} |",
            if m.pinned {
                "Envoy on core 0; wrk and the nginx upstream on core 1"
            } else {
                "none (one core: everything shares it)"
            }
        );
        let _ = writeln!(
            out,
            "| load average (1 min) before / after | {} / {} |",
            load(m.load_before),
            load(m.load_after)
        );
        let _ = writeln!(
            out,
            "| settings | {} rounds; bursts of {} s at {} connections; one-connection runs of {} s (`BENCH_ROUNDS`, `BENCH_SECONDS`, `BENCH_CONNECTIONS`, `BENCH_LATENCY_SECONDS`) |",
            s.rounds,
            s.seconds.as_secs(),
            s.connections,
            s.latency_seconds.as_secs()
        );
        let _ = writeln!(out, "| run time | {:.1} min |\n", m.minutes);
        out.push_str(HOW_TO_READ);
        out.push('\n');
        self.render_load(&mut out);
        self.render_memory(&mut out);
        self.render_modules(&mut out);
        self.render_downloads(&mut out);
        out
    }

    fn render_load(&self, out: &mut String) {
        let _ = writeln!(out, "## Throughput, latency and CPU per request\n");
        let _ = writeln!(out, "| configuration | req/s | p50 / p99 saturated | p50 / p99 one connection | CPU µs/req | vs no filter | vs native |");
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|");
        for row in self.rows.iter().filter(|r| r.scenario.load) {
            let label = row.scenario.label;
            if let Some(status) = status_text(&row.status) {
                if row.saturated.is_empty() {
                    let _ = writeln!(out, "| {label} | {status} | | | | | |");
                    continue;
                }
                let _ = writeln!(
                    out,
                    "| {label} ({status}; figures from the rounds before) | | | | | | |"
                );
            }
            let rps: Vec<f64> = row
                .saturated
                .iter()
                .map(|b| b.report.requests_per_second)
                .collect();
            let cpu: Vec<f64> = row.saturated.iter().map(|b| b.cpu_us).collect();
            let sat = latency(row.saturated.iter().map(|b| &b.report));
            let one = latency(row.one_connection.iter());
            let change = if row.scenario.id == crate::configs::NONE {
                "—".to_owned()
            } else {
                Summary::of(&row.cpu_change).map_or("—".into(), |c| {
                    format!(
                        "{:+.1} % ({:+.1} … {:+.1})",
                        c.median * 100.0,
                        c.min * 100.0,
                        c.max * 100.0
                    )
                })
            };
            let _ = writeln!(
                out,
                "| {label} | {} | {sat} | {one} | {} | {change} | {} |",
                with_spread(&rps, 0),
                with_spread(&cpu, 1),
                self.versus_native(row)
            );
        }
        out.push('\n');
    }

    fn versus_native(&self, row: &Row) -> String {
        let Some(native) = row.scenario.native else {
            return String::new();
        };
        let Some(native) = self.rows.iter().find(|r| r.scenario.id == native) else {
            return "native not run".into();
        };
        let ratios: Vec<f64> = row
            .normalized
            .iter()
            .zip(&native.normalized)
            .filter_map(|(w, n)| Some((*w)? / (*n)?))
            .collect();
        Summary::of(&ratios).map_or("—".into(), |r| {
            format!("{:.2}× ({:.2} … {:.2})", r.median, r.min, r.max)
        })
    }

    fn render_memory(&self, out: &mut String) {
        let _ = writeln!(out, "## Start time and memory\n");
        let _ = writeln!(out, "Envoy started afresh for each figure (median of the starts); RSS read 0.3 s after it is ready, before any traffic. The last column is the load-tested Envoy (concurrency 1) after all rounds.\n");
        let _ = writeln!(out, "| configuration | start to ready, ms | RSS concurrency 1, MiB | vs no filter | RSS concurrency 2, MiB | vs no filter | RSS after the rounds, MiB |");
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|");
        let none = self.rows.first();
        let base = |i: usize| {
            none.and_then(|n| Summary::of(&n.rss_kib[i]))
                .map(|s| s.median)
        };
        for row in &self.rows {
            let label = row.scenario.label;
            if let Some(status) = status_text(&row.status) {
                let _ = writeln!(out, "| {label} | {status} | | | | | |");
                continue;
            }
            let start =
                Summary::of(&row.start_ms).map_or("—".into(), |s| format!("{:.0}", s.median));
            let mut cells = vec![start];
            for i in 0..2 {
                match Summary::of(&row.rss_kib[i]) {
                    Some(rss) => {
                        cells.push(format!("{:.1}", rss.median / 1024.0));
                        cells.push(match base(i) {
                            Some(b) if row.scenario.id != crate::configs::NONE => {
                                format!("{:+.1}", (rss.median - b) / 1024.0)
                            }
                            _ => "—".into(),
                        });
                    }
                    None => cells.extend(["—".to_owned(), "—".to_owned()]),
                }
            }
            cells.push(
                row.rss_loaded_kib
                    .map_or("—".into(), |kib| format!("{:.1}", kib as f64 / 1024.0)),
            );
            let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
        }
        out.push('\n');
    }

    fn render_modules(&self, out: &mut String) {
        let _ = writeln!(out, "## Module sizes\n");
        let _ = writeln!(
            out,
            "| module | raw (Cargo, `[profile.wasm]`), KiB | shipped (after `wasm-opt -Oz`), KiB |"
        );
        let _ = writeln!(out, "|---|--:|--:|");
        for m in &self.modules {
            let raw = m.raw.map_or("missing: not built".into(), kib);
            let opt = match &m.optimized {
                Ok(bytes) => kib(*bytes),
                Err(why) if m.raw.is_none() => why.clone(),
                Err(why) => format!("failed: {why}"),
            };
            let _ = writeln!(out, "| `{}.wasm` | {raw} | {opt} |", m.name);
        }
        out.push('\n');
        // Written by hand as the modules shrink; kept here so each run shows the history.
        out.push_str(include_str!("../module-size-steps.md"));
        out.push('\n');
    }

    fn render_downloads(&self, out: &mut String) {
        let _ = writeln!(out, "## Module downloads\n");
        let _ = writeln!(out, "The same `wasmgate_all.wasm` fetched over and over with wrk ({} connections), the server on Envoy's core.\n", 4);
        let _ = writeln!(out, "| server | downloads/s | MiB/s |");
        let _ = writeln!(out, "|---|--:|--:|");
        for d in &self.downloads {
            match &d.result {
                Ok(r) => {
                    let mib = r.requests_per_second * d.size as f64 / 1024.0 / 1024.0;
                    let _ = writeln!(
                        out,
                        "| {} | {:.0} | {mib:.0} |",
                        d.label, r.requests_per_second
                    );
                }
                Err(why) if why.starts_with("missing") => {
                    let _ = writeln!(out, "| {} | {why} | |", d.label);
                }
                Err(why) => {
                    let _ = writeln!(out, "| {} | failed: {why} | |", d.label);
                }
            }
        }
    }
}

fn status_text(status: &Status) -> Option<String> {
    match status {
        Status::Ok => None,
        Status::Missing(why) => Some(format!("**missing**: {}", cell(why))),
        Status::Failed(why) => Some(format!("**failed**: {}", cell(why))),
    }
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn kib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

/// `15620 ±3 %`.
fn with_spread(values: &[f64], decimals: usize) -> String {
    Summary::of(values).map_or("—".into(), |s| {
        format!("{:.*} ±{:.0} %", decimals, s.median, s.spread_percent())
    })
}

/// Median p50 and p99 over runs: `812 µs / 1.73 ms`.
fn latency<'a>(reports: impl Iterator<Item = &'a wrk::Report>) -> String {
    let (p50, p99): (Vec<f64>, Vec<f64>) = reports.map(|r| (r.p50_us, r.p99_us)).unzip();
    match (Summary::of(&p50), Summary::of(&p99)) {
        (Some(a), Some(b)) => format!("{} / {}", micros(a.median), micros(b.median)),
        _ => "—".into(),
    }
}

/// A duration in µs, shown in µs below a millisecond and in ms above.
pub fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_switch_unit_at_a_millisecond() {
        assert_eq!(micros(812.4), "812 µs");
        assert_eq!(micros(1730.0), "1.73 ms");
    }

    #[test]
    fn spread_is_shown_with_the_median() {
        assert_eq!(with_spread(&[90.0, 100.0, 110.0], 0), "100 ±10 %");
        assert_eq!(with_spread(&[], 1), "—");
    }

    #[test]
    fn pipes_do_not_break_the_table() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
