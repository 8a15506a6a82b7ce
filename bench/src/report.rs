//! The results as Markdown: printed, and written to bench/RESULTS.md.

use std::fmt::Write;

use crate::footprint::ModuleCost;
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
- Where a jwt-auth request's CPU goes (Envoy's code, the module's Wasm code, the kernel), and why
  no Wasm filter meets native `jwt_authn` on this Envoy: [jwt-request-cost.md](jwt-request-cost.md).
  Where a module's memory and start-up go: [module-memory.md](module-memory.md).
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

/// Opens the module-cost section of the results file: a run that measures only it
/// (`BENCH_ONLY=memory`) rewrites what lies between the markers and nothing else.
pub const MODULE_COSTS_BEGIN: &str =
    "<!-- module costs: written by `make bench` or `BENCH_ONLY=memory`; other runs keep it -->";
/// Closes the module-cost section.
pub const MODULE_COSTS_END: &str = "<!-- module costs: end -->";

/// Issue 14's target for each plugin against the floor: RSS added, in KiB.
const TARGET_RSS_KIB: f64 = 4.0 * 1024.0;
/// Issue 14's target for each plugin against the floor: start to ready, in ms.
const TARGET_START_MS: f64 = 150.0;

/// The module-cost section, markers included: each module's size, the RSS it adds to Envoy
/// and its start to ready, next to the no-op floor.
pub fn render_module_costs(machine: &Machine, costs: &[ModuleCost], starts: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{MODULE_COSTS_BEGIN}");
    let _ = writeln!(
        out,
        "## Module costs: size, memory and start-up next to the floor\n"
    );
    let _ = writeln!(
        out,
        "{}; Envoy {}; {} cores, {}; load average (1 min) {} before, {} after; {starts} starts per module and concurrency (`BENCH_MEMORY_STARTS`), {:.1} min.\n",
        machine.date,
        machine.envoy_version,
        machine.cores,
        machine.cpu_model,
        machine.load_before.map_or("?".into(), |l| format!("{l:.2}")),
        machine.load_after.map_or("?".into(), |l| format!("{l:.2}")),
        machine.minutes
    );
    let _ = writeln!(out, "Each module alone in a fresh Envoy (one filter with the configuration of its load row; `wasmgate_all` hosts all three plugins on one `vm_id`), no traffic; Envoy pinned to one core, configurations interleaved, medians over the starts. **RSS added**: Envoy's `VmRSS` once it stops growing after `/ready` (the workers load their VMs then), minus Envoy with no filter at the same `--concurrency`. **Start to ready**: process start to admin `/ready` answering `LIVE` (polled every 50 ms). In brackets: the difference from the floor, `noop.wasm` (a plugin that lets every request through, built like the others). Target (issue 14): each plugin within {:.0} MiB RSS and {TARGET_START_MS:.0} ms start-up of the floor, at both concurrencies (c).\n", TARGET_RSS_KIB / 1024.0);
    let _ = writeln!(out, "| module | shipped size, KiB | RSS added, concurrency 1, MiB | RSS added, concurrency 4, MiB | start to ready, concurrency 1, ms | start to ready, concurrency 4, ms | within target of the floor |");
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|---|");
    let median = |values: &[f64]| Summary::of(values).map(|s| s.median);
    let none = costs.iter().find(|c| c.cost.module.is_empty());
    let floor = costs
        .iter()
        .find(|c| c.cost.module == crate::configs::FLOOR);
    let base_rss = |i: usize| none.and_then(|n| median(&n.rss_kib[i]));
    let added = |c: &ModuleCost, i: usize| Some(median(&c.rss_kib[i])? - base_rss(i)?);
    let started = |c: &ModuleCost, i: usize| median(&c.start_ms[i]);
    let ok = |c: &ModuleCost| c.status == Status::Ok;
    let floor = floor.filter(|f| ok(f));
    for cost in costs {
        let name = if cost.cost.module.is_empty() {
            "no filter (baseline)".to_owned()
        } else if cost.cost.module == crate::configs::FLOOR {
            format!("`{}.wasm` (the floor)", cost.cost.module)
        } else {
            format!("`{}.wasm`", cost.cost.module)
        };
        if let Some(status) = status_text(&cost.status) {
            let _ = writeln!(out, "| {name} | {status} | | | | | |");
            continue;
        }
        let is_floor = floor.is_some_and(|f| std::ptr::eq(f, cost));
        let versus = |value: Option<f64>, of_floor: Option<f64>, scale: f64, decimals: usize| {
            let Some(value) = value else {
                return "—".to_owned();
            };
            match of_floor {
                Some(f) if !is_floor && !cost.cost.module.is_empty() => format!(
                    "{:.*} ({:+.*})",
                    decimals,
                    value / scale,
                    decimals,
                    (value - f) / scale
                ),
                _ => format!("{:.*}", decimals, value / scale),
            }
        };
        let size = versus(
            cost.size.map(|b| b as f64),
            floor.and_then(|f| f.size).map(|b| b as f64),
            1024.0,
            1,
        );
        let mut cells = vec![
            name,
            if cost.cost.module.is_empty() {
                "—".into()
            } else {
                size
            },
        ];
        for i in 0..2 {
            cells.push(if cost.cost.module.is_empty() {
                base_rss(i).map_or("—".into(), |b| format!("{:.1} in all", b / 1024.0))
            } else {
                versus(added(cost, i), floor.and_then(|f| added(f, i)), 1024.0, 1)
            });
        }
        for i in 0..2 {
            cells.push(versus(
                started(cost, i),
                floor.and_then(|f| started(f, i)),
                1.0,
                0,
            ));
        }
        let verdict = if cost.cost.module.is_empty() {
            String::new()
        } else if is_floor {
            "the floor".into()
        } else if let Some(floor) = floor {
            let mut over = Vec::new();
            for (i, concurrency) in crate::footprint::CONCURRENCIES.iter().enumerate() {
                if let (Some(a), Some(b)) = (added(cost, i), added(floor, i)) {
                    if a - b > TARGET_RSS_KIB {
                        over.push(format!(
                            "RSS {:+.1} MiB (c={concurrency})",
                            (a - b) / 1024.0
                        ));
                    }
                }
                if let (Some(a), Some(b)) = (started(cost, i), started(floor, i)) {
                    if a - b > TARGET_START_MS {
                        over.push(format!("start {:+.0} ms (c={concurrency})", a - b));
                    }
                }
            }
            match (over.is_empty(), cost.cost.plugin) {
                (true, true) => "yes".into(),
                (true, false) => "yes (three plugins; the target is per plugin)".into(),
                (false, true) => format!("**no**: {}", over.join(", ")),
                (false, false) => format!(
                    "no: {} (three plugins; the target is per plugin)",
                    over.join(", ")
                ),
            }
        } else {
            "— (the floor was not measured)".into()
        };
        cells.push(verdict);
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    render_memory_parts(&mut out, costs);
    let _ = writeln!(out, "\n{MODULE_COSTS_END}");
    out
}

/// Where each module's added RSS is: the start with the median RSS of each configuration,
/// part by part, minus the no-filter Envoy's median start at the same concurrency.
fn render_memory_parts(out: &mut String, costs: &[ModuleCost]) {
    use crate::footprint::median_parts;
    let Some(none) = costs.iter().find(|c| c.cost.module.is_empty()) else {
        return;
    };
    let _ = writeln!(out, "\n### Where the added memory is\n");
    let _ = writeln!(
        out,
        "Why it is there and what each change saved: [module-memory.md](module-memory.md).\n"
    );
    let _ = writeln!(out, "The start with the median RSS of each row, minus the no-filter Envoy's (same concurrency), in MiB. **Envoy's pages**: more of Envoy's own binary touched (V8 is part of it). **V8 code**: code V8 generated (anonymous executable pages). **Heap in use**: what Envoy and V8 hold from tcmalloc (admin `/memory` `allocated`). **Freed, kept by tcmalloc**: `heap_size − allocated`, memory used for a moment during start-up (V8 compiling the module) that the allocator keeps mapped. **Other**: the remaining anonymous memory (Wasm linear memories, V8's own heaps, thread stacks). **Start-up CPU**: Envoy's CPU time (every thread) from its start until its memory settled, median, minus the no-filter Envoy's, in ms: the work a module's start-up costs, which a busy machine inflates far less than start to ready.\n");
    let _ = writeln!(out, "| module | c | RSS added | Envoy's pages | V8 code | heap in use | freed, kept by tcmalloc | other | start-up CPU added, ms |");
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    let median = |values: &[f64]| Summary::of(values).map(|s| s.median);
    for cost in costs.iter().filter(|c| !c.cost.module.is_empty()) {
        if cost.status != Status::Ok {
            continue;
        }
        for (i, concurrency) in crate::footprint::CONCURRENCIES.iter().enumerate() {
            let (Some((rss, parts)), Some((base_rss, base))) = (
                median_parts(&cost.rss_kib[i], &cost.parts[i]),
                median_parts(&none.rss_kib[i], &none.parts[i]),
            ) else {
                continue;
            };
            let d = parts.minus(&base);
            let mib = |kib: f64| format!("{:+.1}", kib / 1024.0);
            let cpu = match (median(&cost.cpu_ms[i]), median(&none.cpu_ms[i])) {
                (Some(a), Some(b)) => format!("{:+.0}", a - b),
                _ => "—".into(),
            };
            let _ = writeln!(
                out,
                "| `{}.wasm` | {concurrency} | {} | {} | {} | {} | {} | {} | {cpu} |",
                cost.cost.module,
                mib(rss - base_rss),
                mib(d.file),
                mib(d.jit),
                mib(d.heap_in_use),
                mib(d.heap_free),
                mib(d.other)
            );
        }
    }
}

/// The results file after a run: `main` (the load, memory, size and download sections) and
/// `module_costs` (its section, markers included) replace what they cover in `existing`; what
/// a run did not measure is kept as it was, so a partial run never erases another's figures.
pub fn merge(existing: &str, main: Option<&str>, module_costs: Option<&str>) -> String {
    let (old_main, old_costs) = match (
        existing.find(MODULE_COSTS_BEGIN),
        existing.find(MODULE_COSTS_END),
    ) {
        (Some(begin), Some(end)) if begin < end => {
            let end = end + MODULE_COSTS_END.len();
            (
                format!("{}{}", &existing[..begin], &existing[end..]),
                Some(existing[begin..end].to_owned()),
            )
        }
        _ => (existing.to_owned(), None),
    };
    let main = main.map_or(old_main, str::to_owned);
    let costs = module_costs.map(|c| c.trim_end().to_owned()).or(old_costs);
    let mut out = main.trim_end().to_owned();
    if let Some(costs) = costs {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&costs);
    }
    out.push('\n');
    out
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
    fn a_partial_run_keeps_the_sections_it_did_not_measure() {
        let costs = |figure: &str| {
            format!("{MODULE_COSTS_BEGIN}\n## Module costs\n{figure}\n{MODULE_COSTS_END}\n")
        };
        let full = merge("", Some("# Results\nload v1\n"), Some(&costs("mem v1")));
        assert!(full.starts_with("# Results\nload v1\n\n"), "{full}");
        assert!(full.contains("mem v1"));
        // BENCH_ONLY=memory: the load sections stay, the module costs are replaced.
        let memory = merge(&full, None, Some(&costs("mem v2")));
        assert!(
            memory.contains("load v1") && memory.contains("mem v2"),
            "{memory}"
        );
        assert!(!memory.contains("mem v1"));
        // BENCH_ONLY=jwt: the module costs stay.
        let jwt = merge(&memory, Some("# Results\nload v2\n"), None);
        assert!(jwt.contains("load v2") && jwt.contains("mem v2"), "{jwt}");
        assert!(!jwt.contains("load v1"));
        assert_eq!(merge(&jwt, None, None), jwt);
        // A file from before the section existed gains it.
        let old = merge("# Results\nold\n", None, Some(&costs("mem")));
        assert!(old.starts_with("# Results\nold\n\n<!--"), "{old}");
        assert_eq!(merge("", None, Some(&costs("mem"))), costs("mem"));
    }

    #[test]
    fn module_costs_are_judged_against_the_floor() {
        // 50 MiB of file pages, 1 of code, 8 in use, the rest freed and kept by tcmalloc.
        let parts = |rss_mib: f64| crate::footprint::Parts {
            file: 50.0 * 1024.0,
            jit: 1024.0,
            heap_in_use: 8.0 * 1024.0,
            heap_free: (rss_mib - 59.0) * 1024.0,
            other: 0.0,
        };
        let measured = |cost: crate::configs::ModuleCost, rss_mib: f64, start_ms: f64| ModuleCost {
            size: Some(100 * 1024),
            cost,
            status: Status::Ok,
            start_ms: [vec![start_ms], vec![start_ms]],
            rss_kib: [vec![rss_mib * 1024.0], vec![rss_mib * 1024.0]],
            parts: [vec![parts(rss_mib)], vec![parts(rss_mib)]],
            cpu_ms: [vec![start_ms / 2.0], vec![start_ms / 2.0]],
        };
        let mut configs = crate::configs::module_costs().into_iter();
        let costs = vec![
            measured(configs.next().unwrap(), 64.0, 100.0),
            measured(configs.next().unwrap(), 88.0, 600.0),
            measured(configs.next().unwrap(), 91.9, 749.0),
            measured(configs.next().unwrap(), 92.1, 700.0),
            measured(configs.next().unwrap(), 90.0, 800.0),
        ];
        let machine = Machine {
            date: "today".into(),
            envoy_version: "1.40".into(),
            cores: 2,
            cpu_model: "cpu".into(),
            pinned: true,
            load_before: None,
            load_after: Some(1.0),
            minutes: 1.0,
        };
        let text = render_module_costs(&machine, &costs, 1);
        assert!(
            text.starts_with(MODULE_COSTS_BEGIN) && text.trim_end().ends_with(MODULE_COSTS_END)
        );
        let row = |name: &str| {
            text.lines()
                .find(|l| l.starts_with("| ") && l.contains(name))
                .unwrap()
                .to_owned()
        };
        assert!(
            row("no filter").contains("| 64.0 in all |"),
            "{}",
            row("no filter")
        );
        assert!(
            row("noop.wasm").ends_with("| the floor |"),
            "{}",
            row("noop.wasm")
        );
        // 3.9 MiB and 149 ms over the floor: met.
        let header = row("header_rewrite.wasm");
        assert!(
            header.contains("| 27.9 (+3.9) |") && header.contains("| 749 (+149) |"),
            "{header}"
        );
        assert!(header.ends_with("| yes |"), "{header}");
        // 4.1 MiB over: not met, saying which figure.
        assert!(
            row("jwt_auth.wasm").contains("**no**: RSS +4.1 MiB (c=1)"),
            "{}",
            row("jwt_auth.wasm")
        );
        // 200 ms slower to start: not met.
        assert!(
            row("rate_limit.wasm").contains("**no**: start +200 ms (c=1)"),
            "{}",
            row("rate_limit.wasm")
        );
        // The parts: 88 − 64 MiB added, all of it freed memory tcmalloc keeps (29 − 5).
        assert!(
            text.contains("| `noop.wasm` | 4 | +24.0 | +0.0 | +0.0 | +0.0 | +24.0 | +0.0 | +250 |"),
            "{text}"
        );
    }

    #[test]
    fn pipes_do_not_break_the_table() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
