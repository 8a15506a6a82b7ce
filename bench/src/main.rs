//! `make bench`: every Wasmgate plugin against the native Envoy filter doing the same work,
//! on one Envoy build, in one run. See bench/README.md.

mod cold;
mod configs;
mod measure;
mod nginx;
mod procfs;
mod report;
mod rls;
mod stats;
mod wrk;

use std::process::ExitCode;

fn main() -> ExitCode {
    match measure::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wasmgate-bench: {err}");
            ExitCode::FAILURE
        }
    }
}
