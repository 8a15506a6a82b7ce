//! The process: limits loaded, listeners bound, gRPC and the HTTP admin endpoints served
//! until a shutdown signal, then in-flight calls drained.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::config::{ConfigError, Limits};
use crate::grpc::RateLimitService;
use crate::limiter::Limiter;
use crate::store::{MemoryStore, RedisStore, Store, StoreError};

/// What `--help` says about the service, for the `wasmgate-ratelimit` binary and for
/// `wasmgate ratelimit`.
pub const ABOUT: &str = "\
Runs Envoy's rate-limit service (envoy.service.ratelimit.v3.RateLimitService, gRPC over HTTP/2) \
with limits from YAML or JSON files, counting in Redis (shared by every replica) or in memory \
(one process, for demos).

Point Envoy's envoy.filters.http.ratelimit filter at the gRPC address through a cluster with \
HTTP/2. When the backend fails, calls are answered UNAVAILABLE quickly and the filter's \
failure_mode_deny decides. On the HTTP address: GET /healthz (the process), /ready (the \
backend answers), /metrics (Prometheus). SIGTERM or Ctrl-C drains calls in flight and exits.";

/// The service's flags (flattened into the binary's and the CLI's command line).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// A limits file (YAML or JSON: domain, descriptors, rate_limit {unit, requests_per_unit});
    /// repeat for more domains. See ratelimit/README.md.
    #[arg(long = "limits", value_name = "FILE", required = true)]
    pub limits: Vec<PathBuf>,
    /// Where gRPC (ShouldRateLimit) listens; port 0 picks a free port.
    #[arg(
        long,
        env = "WASMGATE_RATELIMIT_GRPC_BIND",
        default_value = "127.0.0.1:8081"
    )]
    pub grpc_bind: SocketAddr,
    /// Where HTTP (/healthz, /ready, /metrics) listens; port 0 picks a free port.
    #[arg(
        long,
        env = "WASMGATE_RATELIMIT_HTTP_BIND",
        default_value = "127.0.0.1:8080"
    )]
    pub http_bind: SocketAddr,
    /// Count in this Redis (`redis://host:port/db`), shared by every replica pointed at it.
    /// Without it, counters live in this process's memory.
    #[arg(long, env = "WASMGATE_RATELIMIT_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// How long a Redis connect or call may take before the call is answered UNAVAILABLE,
    /// in milliseconds.
    #[arg(
        long,
        env = "WASMGATE_RATELIMIT_BACKEND_TIMEOUT_MS",
        default_value_t = 500,
        value_name = "MS"
    )]
    pub backend_timeout_ms: u64,
    /// Only load and check the limits files, print the domains, and exit.
    #[arg(long)]
    pub check: bool,
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A service with its listeners bound, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    limiter: Arc<Limiter>,
    grpc: TcpListener,
    http: TcpListener,
}

impl Server {
    /// Build the store, bind both listeners.
    pub async fn bind(options: &Options, limits: Limits) -> Result<Server, Error> {
        let store = match &options.redis {
            Some(url) => Store::Redis(RedisStore::new(
                url,
                Duration::from_millis(options.backend_timeout_ms.max(1)),
            )?),
            None => Store::Memory(MemoryStore::default()),
        };
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })
        };
        Ok(Server {
            limiter: Arc::new(Limiter::new(limits, store)),
            grpc: bind(options.grpc_bind).await?,
            http: bind(options.http_bind).await?,
        })
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// Serve until `shutdown` completes, then let in-flight calls finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let http = axum::serve(self.http, admin(self.limiter.clone()))
            .with_graceful_shutdown(wait(stopped.clone()));
        let grpc = tonic::transport::Server::builder()
            .add_service(RateLimitService::new(self.limiter))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(self.grpc),
                wait(stopped),
            );
        let (http, grpc) = tokio::join!(http, grpc);
        http?;
        grpc?;
        Ok(())
    }
}

/// The HTTP admin endpoints: /healthz, /ready, /metrics.
pub fn admin(limiter: Arc<Limiter>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(limiter)
}

async fn ready(State(limiter): State<Arc<Limiter>>) -> impl IntoResponse {
    match limiter.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

async fn metrics(State(limiter): State<Arc<Limiter>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        limiter.metrics().render(limiter.store().kind()),
    )
}

/// Run the service as a process: load and check the limits, bind, print the addresses on
/// stdout (`listening grpc=ADDR http=ADDR backend=KIND`), serve until Ctrl-C or SIGTERM.
/// With `--check`, print the domains and return.
pub fn run(options: &Options) -> Result<(), Error> {
    let limits = Limits::load(&options.limits)?;
    if options.check {
        println!("ok: domains {}", limits.domains().join(", "));
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let domains = limits.domains().join(", ");
        let server = Server::bind(options, limits).await?;
        let (grpc, http) = (server.grpc_addr()?, server.http_addr()?);
        let backend = server.limiter.store().kind();
        if let Err(e) = server.limiter.store().ping().await {
            // Not fatal: Redis may come up later; until then calls get UNAVAILABLE.
            tracing::warn!("backend not reachable yet: {e}");
        }
        tracing::info!(%grpc, %http, backend, domains, "rate-limit service started");
        println!("listening grpc={grpc} http={http} backend={backend}");
        server.run(shutdown_signal()).await?;
        tracing::info!("rate-limit service stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received, draining");
}
