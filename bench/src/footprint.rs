//! Start time, memory and module sizes.

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::procfs;
use crate::results::{ModuleSize, Row, Status};
use crate::start::{module_path, start};

/// The modules whose sizes are reported.
const MODULES: [&str; 4] = ["header_rewrite", "jwt_auth", "rate_limit", "wasmgate_all"];

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
