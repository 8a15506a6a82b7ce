//! Wasmgate's module registry: proxy-wasm modules stored by SHA256 and served over a JSON API,
//! plain downloads (Envoy `vm_config.code.remote`) and the OCI distribution pull API (Istio).
//!
//! Layering: [`app`] (routes: `api`, `oci`) → [`Registry`] (auth, metrics, config) → the
//! `store` (blobs and metadata on disk). Errors inside are `io::Error`s and typed enums; at the
//! edge they become JSON or OCI error bodies that never carry internal detail.
//!
//! ```no_run
//! # async fn run() -> Result<(), wasmgate_registry::Error> {
//! let mut config = wasmgate_registry::Config::default();
//! config.tokens = wasmgate_registry::tokens_from_env()?;
//! wasmgate_registry::serve(config).await
//! # }
//! ```

mod api;
mod args;
mod auth;
mod body;
mod conn;
mod download;
mod error;
mod extract;
mod metrics;
pub mod names;
mod oci;
mod publish;
mod server;
mod store;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

pub use api::app;
pub use args::Args;
pub use auth::{load_tokens, parse_tokens, tokens_from_env, TOKENS_ENV};
/// The one OCI image builder: the registry's OCI API and `wasmgate push --oci` share it.
pub use oci::{image as oci_image, ImageBlobs};
pub use server::{
    raise_fd_limit, ServerOptions, DEFAULT_BODY_MIN_BYTES, DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_SHUTDOWN_TIMEOUT,
};
pub use store::{BlobRef, OciImage, Recovery, VersionMeta};

use metrics::Metrics;
use store::Store;

/// The default size limit of an uploaded module: 64 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 64 * 1024 * 1024;

/// How the registry runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where [`serve`] listens.
    pub bind: SocketAddr,
    /// The store's directory; created when missing.
    pub data_dir: PathBuf,
    /// Bearer tokens that may publish (and read). None: the registry is read-only.
    pub tokens: Vec<String>,
    /// Bearer tokens that may only read (they matter only with `read_auth`).
    pub read_tokens: Vec<String>,
    /// Whether reads need a token; `/healthz`, `/readyz` and `/metrics` never do.
    pub read_auth: bool,
    /// Uploads larger than this are refused with 413.
    pub max_upload_bytes: u64,
    /// Connection limits: timeouts, header size, shutdown deadline.
    pub server: ServerOptions,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: PathBuf::from("wasmgate-registry-data"),
            tokens: Vec::new(),
            read_tokens: Vec::new(),
            read_auth: false,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            server: ServerOptions::default(),
        }
    }
}

/// Why the registry could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory cannot be opened or repaired.
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A token file cannot be read.
    #[error("token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A configuration value is unusable; the message names it.
    #[error("{0}")]
    Config(String),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// A running registry's shared state: configuration, store and metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Store,
    metrics: Metrics,
}

impl Registry {
    /// Open the store in `config.data_dir` (creating it, and removing what a crash left
    /// behind) and get ready to serve.
    pub fn open(config: Config) -> Result<Registry, Error> {
        if config.max_upload_bytes == 0 {
            return Err(Error::Config("max_upload_bytes must be above 0".into()));
        }
        config.server.check()?;
        if config.read_auth && config.tokens.is_empty() && config.read_tokens.is_empty() {
            return Err(Error::Config(
                "read_auth is on but there is no token: nobody could read".into(),
            ));
        }
        let (store, recovery) = Store::open(&config.data_dir).map_err(|source| Error::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        tracing::info!(
            data_dir = %config.data_dir.display(),
            versions = recovery.versions,
            removed_temp_files = recovery.removed_temp_files,
            removed_orphan_blobs = recovery.removed_orphan_blobs,
            skipped_metadata = recovery.skipped_metadata,
            "store opened"
        );
        if config.tokens.is_empty() {
            tracing::warn!("no publish token configured: the registry is read-only");
        }
        Ok(Registry {
            inner: Arc::new(Inner {
                config,
                store,
                metrics: Metrics::default(),
            }),
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    /// One version's metadata, e.g. for a CLI that runs the registry in-process.
    pub fn version(&self, name: &str, version: &str) -> Option<VersionMeta> {
        let name = name.parse().ok()?;
        let version = version.parse().ok()?;
        self.inner
            .store
            .get(&name, &version)
            .map(|meta| (*meta).clone())
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}

/// Open the store, raise the open files limit, listen on `config.bind` and serve until
/// SIGTERM or ctrl-c.
pub async fn serve(config: Config) -> Result<(), Error> {
    let addr = config.bind;
    let registry = Registry::open(config)?;
    raise_fd_limit();
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    serve_on(listener, registry, shutdown_signal()).await
}

/// Serve on `listener` until `shutdown` completes, then let requests in flight finish within
/// `config.server.shutdown_timeout` and drop the connections still open.
pub async fn serve_on(
    listener: TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!("wasmgate-registry listening on http://{addr}");
    server::run(listener, registry, shutdown).await?;
    tracing::info!("wasmgate-registry stopped");
    Ok(())
}

/// Completes on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}
