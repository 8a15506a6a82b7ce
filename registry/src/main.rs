//! `wasmgate-registry`: runs the registry. Flags and environment variables are in the README.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wasmgate_registry::{
    load_tokens, tokens_from_env, Config, ServerOptions, DEFAULT_MAX_UPLOAD_BYTES,
};

/// Stores proxy-wasm modules by SHA256 and serves them over HTTP and the OCI pull API.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Listen address (port 0: any free port).
    #[arg(long, env = "WASMGATE_REGISTRY_BIND", default_value = "127.0.0.1:8787")]
    bind: SocketAddr,
    /// The store's directory; created when missing.
    #[arg(
        long,
        env = "WASMGATE_REGISTRY_DATA_DIR",
        default_value = "wasmgate-registry-data"
    )]
    data_dir: PathBuf,
    /// Publish tokens, one per line. More come from WASMGATE_REGISTRY_TOKENS (comma separated).
    #[arg(long, env = "WASMGATE_REGISTRY_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Read-only tokens, one per line (used with --read-auth).
    #[arg(long, env = "WASMGATE_REGISTRY_READ_TOKEN_FILE")]
    read_token_file: Option<PathBuf>,
    /// Reads need a token too.
    #[arg(long, env = "WASMGATE_REGISTRY_READ_AUTH")]
    read_auth: bool,
    /// Uploads larger than this many bytes are refused with 413.
    #[arg(long, env = "WASMGATE_REGISTRY_MAX_UPLOAD_BYTES", default_value_t = DEFAULT_MAX_UPLOAD_BYTES)]
    max_upload_bytes: u64,
    #[command(flatten)]
    server: ServerOptions,
}

fn config(cli: Cli) -> Result<Config, wasmgate_registry::Error> {
    let mut tokens = tokens_from_env()?;
    if let Some(path) = &cli.token_file {
        tokens.extend(load_tokens(path)?);
    }
    let read_tokens = match &cli.read_token_file {
        Some(path) => load_tokens(path)?,
        None => Vec::new(),
    };
    Ok(Config {
        bind: cli.bind,
        data_dir: cli.data_dir,
        tokens,
        read_tokens,
        read_auth: cli.read_auth,
        max_upload_bytes: cli.max_upload_bytes,
        server: cli.server,
    })
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
    let result = config(cli).and_then(|config| {
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
