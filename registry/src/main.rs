//! `wasmgate-registry`: runs the registry. Flags and environment variables are in the README.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Stores proxy-wasm modules by SHA256 and serves them over HTTP and the OCI pull API.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    args: wasmgate_registry::Args,
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
    let result = cli.args.config().and_then(|config| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(wasmgate_registry::Error::Serve)?
            .block_on(wasmgate_registry::serve(config))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("wasmgate-registry: {e}");
            ExitCode::FAILURE
        }
    }
}
