//! `make bench`: every Wasmgate plugin against the native Envoy filter doing the same work,
//! on one Envoy build, in one run. See bench/README.md.

mod cold;
mod configs;
mod downloads;
mod footprint;
mod load;
mod nginx;
mod procfs;
mod report;
mod results;
mod rls;
mod run;
mod settings;
mod start;
mod stats;
mod wrk;

use std::process::ExitCode;

fn main() -> ExitCode {
    match run::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wasmgate-bench: {err}");
            ExitCode::FAILURE
        }
    }
}
