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
                    Ok((envoy, took)) => match settled_rss_kib(envoy.pid()) {
                        Ok(kib) => {
                            row.start_ms[c].push(took.as_secs_f64() * 1e3);
                            row.rss_kib[c].push(kib as f64);
                        }
                        Err(why) => row.status = Status::Failed(why),
                    },
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
