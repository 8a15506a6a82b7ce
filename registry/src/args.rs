//! The registry's command-line flags and `WASMGATE_REGISTRY_*` environment variables, one set
//! flattened into both front-ends: `wasmgate-registry` and `wasmgate serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::auth::{load_tokens, tokens_from_env};
use crate::{Config, Error, ServerOptions, DEFAULT_MAX_UPLOAD_BYTES};

/// How to run the registry: every flag also reads a `WASMGATE_REGISTRY_*` variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Listen address (port 0: any free port).
    #[arg(long, env = "WASMGATE_REGISTRY_BIND", default_value = "127.0.0.1:8787")]
    pub bind: SocketAddr,
    /// The store's directory; created when missing.
    #[arg(
        long,
        value_name = "DIR",
        env = "WASMGATE_REGISTRY_DATA_DIR",
        default_value = "wasmgate-registry-data"
    )]
    pub data_dir: PathBuf,
    /// Publish tokens, one per line. More come from WASMGATE_REGISTRY_TOKENS (comma separated).
    #[arg(long, value_name = "FILE", env = "WASMGATE_REGISTRY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Read-only tokens, one per line (used with --read-auth).
    #[arg(long, value_name = "FILE", env = "WASMGATE_REGISTRY_READ_TOKEN_FILE")]
    pub read_token_file: Option<PathBuf>,
    /// Reads need a token too.
    #[arg(long, env = "WASMGATE_REGISTRY_READ_AUTH")]
    pub read_auth: bool,
    /// Uploads larger than this many bytes are refused with 413.
    #[arg(
        long,
        value_name = "BYTES",
        env = "WASMGATE_REGISTRY_MAX_UPLOAD_BYTES",
        default_value_t = DEFAULT_MAX_UPLOAD_BYTES
    )]
    pub max_upload_bytes: u64,
    /// Timeouts, header size, connection limits and shutdown deadline.
    #[command(flatten)]
    pub server: ServerOptions,
}

impl Args {
    /// The configuration these flags describe, with the tokens of `WASMGATE_REGISTRY_TOKENS`
    /// and the token files read.
    pub fn config(self) -> Result<Config, Error> {
        let mut tokens = tokens_from_env()?;
        if let Some(path) = &self.token_file {
            tokens.extend(load_tokens(path)?);
        }
        let read_tokens = match &self.read_token_file {
            Some(path) => load_tokens(path)?,
            None => Vec::new(),
        };
        Ok(Config {
            bind: self.bind,
            data_dir: self.data_dir,
            tokens,
            read_tokens,
            read_auth: self.read_auth,
            max_upload_bytes: self.max_upload_bytes,
            server: self.server,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn flags_parse_into_a_config() {
        let cli = Cli::try_parse_from([
            "x",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/d",
            "--read-auth",
            "--max-upload-bytes",
            "10",
        ])
        .unwrap();
        assert_eq!(cli.args.bind.port(), 0);
        assert!(cli.args.read_auth);
        let config = cli.args.config().unwrap();
        assert_eq!(config.max_upload_bytes, 10);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/d"));
        assert!(Cli::try_parse_from(["x", "--bind", "nowhere"]).is_err());
    }
}
