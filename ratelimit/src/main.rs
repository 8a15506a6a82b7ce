//! `wasmgate-ratelimit`: runs the rate-limit service. `--help` lists the flags; the README
//! documents the limits file, metrics and failure behaviour.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Wasmgate's rate-limit service for Envoy's `envoy.filters.http.ratelimit` filter.
#[derive(Debug, Parser)]
#[command(
    name = "wasmgate-ratelimit",
    version,
    about = "Wasmgate's rate-limit service for Envoy's native rate-limit filter (RLS over gRPC).",
    long_about = wasmgate_ratelimit::ABOUT
)]
struct Cli {
    #[command(flatten)]
    options: wasmgate_ratelimit::Options,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match wasmgate_ratelimit::run(&cli.options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmgate-ratelimit: error: {e}");
            ExitCode::FAILURE
        }
    }
}
