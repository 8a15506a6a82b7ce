//! Start time, memory and module sizes: per configuration, and per module next to the no-op
//! floor (the module-cost table).

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::results::{ModuleSize, Row, Status};
use crate::start::{module_path, start};
use crate::{configs, procfs};

/// The modules whose sizes are reported.
const MODULES: [&str; 5] = [
    "header_rewrite",
    "jwt_auth",
    "rate_limit",
    "wasmgate_all",
    "noop",
];

/// Start each configuration afresh: time to ready, and memory once ready.
pub fn starts_and_memory(rows: &mut [Row], upstream: SocketAddr, starts: usize) {
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
pub fn module_sizes() -> Vec<ModuleSize> {
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

/// Concurrencies the module-cost table starts Envoy with.
pub const CONCURRENCIES: [u32; 2] = [1, 4];

/// One configuration of the module-cost table, measured.
#[derive(Debug)]
pub struct ModuleCost {
    pub cost: configs::ModuleCost,
    /// Shipped size in bytes (after `wasm-opt -Oz`); `None` for no filter or not built.
    pub size: Option<u64>,
    pub status: Status,
    /// Per [`CONCURRENCIES`]: process start to admin `/ready`, in ms, one per start.
    pub start_ms: [Vec<f64>; 2],
    /// Per [`CONCURRENCIES`]: settled resident memory, in KiB, one per start.
    pub rss_kib: [Vec<f64>; 2],
    /// Per [`CONCURRENCIES`]: where that memory is, one per start (same order as `rss_kib`).
    pub parts: [Vec<Parts>; 2],
    /// Per [`CONCURRENCIES`]: CPU time (user + system, every thread) Envoy used from its start
    /// until its memory settled, in ms: the start-up's work, which a busy machine does not
    /// inflate the way it inflates start to ready.
    pub cpu_ms: [Vec<f64>; 2],
}

/// Where an Envoy's resident memory is, in KiB, read right after its settled RSS.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Parts {
    /// Pages of Envoy's binary and libraries it touched.
    pub file: f64,
    /// Code V8 generated (anonymous executable pages).
    pub jit: f64,
    /// Bytes the program holds from tcmalloc (admin `/memory` `allocated`).
    pub heap_in_use: f64,
    /// Bytes tcmalloc holds that the program freed (`heap_size` − `allocated`): memory a
    /// start-up needed for a moment (V8 compiling, say) and the allocator kept.
    pub heap_free: f64,
    /// The rest of the anonymous memory: Wasm linear memories, V8's own heaps, stacks.
    pub other: f64,
}

impl Parts {
    /// The parts of `pid`'s resident memory (`rss`, KiB), tcmalloc's figures from `envoy`.
    fn read(envoy: &test_env::Envoy, rss: u64) -> Result<Parts, String> {
        let resident = procfs::resident(envoy.pid())?;
        let (_, body) = envoy
            .admin_get("/memory")
            .map_err(|e| format!("admin /memory: {e}"))?;
        let (allocated, heap_size) = parse_admin_memory(&body)
            .ok_or_else(|| format!("admin /memory: unexpected answer {body:?}"))?;
        let kib = |bytes: u64| bytes as f64 / 1024.0;
        let file = resident.file as f64;
        let jit = resident.jit as f64;
        let heap_in_use = kib(allocated);
        let heap_free = kib(heap_size.saturating_sub(allocated));
        Ok(Parts {
            file,
            jit,
            heap_in_use,
            heap_free,
            other: rss as f64 - file - jit - heap_in_use - heap_free,
        })
    }

    /// `self − base`, part by part.
    pub fn minus(&self, base: &Parts) -> Parts {
        Parts {
            file: self.file - base.file,
            jit: self.jit - base.jit,
            heap_in_use: self.heap_in_use - base.heap_in_use,
            heap_free: self.heap_free - base.heap_free,
            other: self.other - base.other,
        }
    }
}

/// `allocated` and `heap_size` (bytes) from admin `/memory`, whose numbers are JSON strings.
pub fn parse_admin_memory(body: &str) -> Option<(u64, u64)> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    let field = |name: &str| -> Option<u64> {
        match &json[name] {
            serde_json::Value::String(s) => s.parse().ok(),
            other => other.as_u64(),
        }
    };
    Some((field("allocated")?, field("heap_size")?))
}

/// The start whose RSS is the median (the lower one of an even count): its parts add up to
/// its RSS, which medians taken part by part would not.
pub fn median_parts(rss_kib: &[f64], parts: &[Parts]) -> Option<(f64, Parts)> {
    let mut order: Vec<usize> = (0..rss_kib.len().min(parts.len())).collect();
    order.sort_by(|&a, &b| rss_kib[a].total_cmp(&rss_kib[b]));
    let middle = *order.get(order.len().checked_sub(1)? / 2)?;
    Some((rss_kib[middle], parts[middle]))
}

/// Start each module-cost configuration `starts` times at each of [`CONCURRENCIES`], the
/// configurations interleaved (every other pass backwards) so a drifting machine spreads over
/// all of them. No traffic: the route's upstream is never contacted.
pub fn module_costs(starts: usize) -> Vec<ModuleCost> {
    let mut costs: Vec<ModuleCost> = configs::module_costs()
        .into_iter()
        .map(|cost| ModuleCost {
            size: (!cost.module.is_empty())
                .then(|| fs::metadata(module_path(cost.module)).ok())
                .flatten()
                .map(|m| m.len()),
            cost,
            status: Status::Ok,
            start_ms: [Vec::new(), Vec::new()],
            rss_kib: [Vec::new(), Vec::new()],
            parts: [Vec::new(), Vec::new()],
            cpu_ms: [Vec::new(), Vec::new()],
        })
        .collect();
    // Nothing listens on the discard port; no request is ever sent.
    let upstream = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut pass = 0;
    for _ in 0..starts.max(1) {
        for (c, &concurrency) in CONCURRENCIES.iter().enumerate() {
            let mut order: Vec<usize> = (0..costs.len()).collect();
            if pass % 2 == 1 {
                order.reverse();
            }
            pass += 1;
            for i in order {
                let row = &mut costs[i];
                if row.status != Status::Ok {
                    continue;
                }
                match start(&row.cost.scenario, upstream, concurrency) {
                    Ok((envoy, took)) => {
                        let settled = settled_rss_kib(envoy.pid()).and_then(|kib| {
                            let cpu = procfs::cpu_seconds(envoy.pid())?;
                            Ok((kib, Parts::read(&envoy, kib)?, cpu))
                        });
                        match settled {
                            Ok((kib, parts, cpu)) => {
                                row.start_ms[c].push(took.as_secs_f64() * 1e3);
                                row.rss_kib[c].push(kib as f64);
                                row.parts[c].push(parts);
                                row.cpu_ms[c].push(cpu * 1e3);
                            }
                            Err(why) => row.status = Status::Failed(why),
                        }
                    }
                    Err(status) => row.status = status,
                }
                if let Status::Missing(why) | Status::Failed(why) = &row.status {
                    eprintln!("  {}: {why}", row.cost.scenario.id);
                }
            }
        }
    }
    costs
}

/// Envoy's resident memory once it stops growing: the workers create their Wasm VMs after
/// `/ready` answers, so a fixed wait would read some of them and not others. Settled means
/// four reads 50 ms apart within 256 KiB of each other, at least 300 ms after ready, at most 5 s.
fn settled_rss_kib(pid: u32) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    std::thread::sleep(Duration::from_millis(300));
    let mut last = procfs::rss_kib(pid)?;
    let mut steady = 0;
    while steady < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = procfs::rss_kib(pid)?;
        steady = if now.abs_diff(last) <= 256 {
            steady + 1
        } else {
            0
        };
        last = now;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_memory_numbers_are_strings() {
        let body = r#"{"allocated": "11585536", "heap_size": "41943040", "pageheap_unmapped": "0",
            "pageheap_free": "15581184", "total_thread_cache": "8020208"}"#;
        assert_eq!(parse_admin_memory(body), Some((11_585_536, 41_943_040)));
        assert_eq!(
            parse_admin_memory(r#"{"allocated": 5, "heap_size": 9}"#),
            Some((5, 9))
        );
        assert_eq!(parse_admin_memory(r#"{"allocated": "x"}"#), None);
        assert_eq!(parse_admin_memory("not json"), None);
    }

    #[test]
    fn the_median_start_keeps_its_own_parts() {
        let part = |file: f64| Parts {
            file,
            ..Parts::default()
        };
        let rss = [300.0, 100.0, 200.0];
        let parts = [part(3.0), part(1.0), part(2.0)];
        assert_eq!(median_parts(&rss, &parts), Some((200.0, part(2.0))));
        assert_eq!(
            median_parts(&rss[..2], &parts[..2]),
            Some((100.0, part(1.0)))
        );
        assert_eq!(median_parts(&[], &[]), None);
    }
}
