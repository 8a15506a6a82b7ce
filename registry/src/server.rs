//! Connections: the accept loop, the limits every connection runs under (header, idle and body
//! timeouts, header size) and graceful shutdown with a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::body::RateGuarded;
use crate::conn::{Busy, GuardedConn};
use crate::{Error, Registry};

/// The default [`ServerOptions::header_timeout`] (nginx's `client_header_timeout`).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// The default [`ServerOptions::idle_timeout`] (nginx's `keepalive_timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// The default [`ServerOptions::body_timeout`] (nginx's `client_body_timeout`).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// The default [`ServerOptions::body_min_bytes`]: 16 KiB a minute, about 270 bytes/s.
pub const DEFAULT_BODY_MIN_BYTES: u64 = 16 * 1024;
/// The default [`ServerOptions::max_header_bytes`]: 64 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The default [`ServerOptions::shutdown_timeout`].
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a pause after a failed `accept` (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Limits every connection runs under (flattened into the binary's and `wasmgate serve`'s
/// command lines). Durations are written like `60s`, `2m` or `500ms`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ServerOptions {
    /// How long a client has to send a request's line and headers, counted from the
    /// connection's start or the end of the previous answer; then the connection is closed.
    #[arg(
        long,
        env = "WASMGATE_REGISTRY_HEADER_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub header_timeout: Duration,
    /// A connection on which nothing is sent or received for this long while the registry waits
    /// on it (a client that stops reading a download, say) is closed.
    #[arg(
        long,
        env = "WASMGATE_REGISTRY_IDLE_TIMEOUT",
        default_value = "75s",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub idle_timeout: Duration,
    /// A request body must bring at least --body-min-bytes in every interval of this length, or
    /// the request gets 408 and the connection is closed. A rate, not a deadline: slow but
    /// steady uploads take as long as they need.
    #[arg(
        long,
        env = "WASMGATE_REGISTRY_BODY_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub body_timeout: Duration,
    /// The bytes of body a client must send in every --body-timeout interval.
    #[arg(
        long,
        env = "WASMGATE_REGISTRY_BODY_MIN_BYTES",
        default_value_t = DEFAULT_BODY_MIN_BYTES,
        value_name = "BYTES"
    )]
    pub body_min_bytes: u64,
    /// The largest request line plus headers accepted; larger ones get 431.
    #[arg(
        long,
        env = "WASMGATE_REGISTRY_MAX_HEADER_BYTES",
        default_value_t = DEFAULT_MAX_HEADER_BYTES,
        value_name = "BYTES"
    )]
    pub max_header_bytes: usize,
    /// On SIGTERM or ctrl-c, how long requests in flight may take to finish; then the remaining
    /// connections are dropped and the process exits 0.
    #[arg(
        long,
        env = "WASMGATE_REGISTRY_SHUTDOWN_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub shutdown_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            body_min_bytes: DEFAULT_BODY_MIN_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write it like 60s, 2m or 500ms)"))
}

impl ServerOptions {
    /// Refuse values the server cannot run with, naming the option.
    pub fn check(&self) -> Result<(), Error> {
        for (name, value) in [
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_timeout", self.body_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::Config(format!("{name} must be above 0")));
            }
        }
        // hyper reads a request head in buffers of at least 8 KiB; below 1 KiB ordinary
        // clients would be refused.
        if self.max_header_bytes < 1024 {
            return Err(Error::Config(
                "max_header_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
    }
}

/// Raise this process's soft limit of open files to its hard limit, so that many clients at
/// once do not run the registry out of file descriptors (`accept: Too many open files`).
pub fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(open_files = limit, "open files limit"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
}

/// Serve `registry` on `listener` until `shutdown` completes; then stop accepting, let
/// requests in flight finish within the shutdown timeout and drop what is left.
pub(crate) async fn run(
    listener: TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let options = Arc::new(registry.config().server.clone());
    options.check()?;
    let router = crate::app(registry);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_header_size(options.max_header_bytes);
    let http = Arc::new(http);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("accept error: {e}");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        connections.spawn(connection(
            stream,
            router.clone(),
            Arc::clone(&http),
            Arc::clone(&options),
            stopping.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    let open = connections.len();
    let drained = tokio::time::timeout(options.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            of = open,
            timeout = ?options.shutdown_timeout,
            "connections still open at the shutdown deadline: dropped"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// One client connection, until it ends or, after shutdown began, its request in flight ends.
async fn connection(
    stream: TcpStream,
    router: axum::Router,
    http: Arc<hyper::server::conn::http1::Builder>,
    options: Arc<ServerOptions>,
    mut stopping: watch::Receiver<bool>,
) {
    // Small JSON answers go out at once instead of waiting for the client's ACK.
    let _ = stream.set_nodelay(true);
    let busy = Busy::default();
    let io = GuardedConn::new(
        stream,
        options.idle_timeout,
        options.max_header_bytes,
        busy.clone(),
    );
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let request = request.map(|body| {
            axum::body::Body::new(RateGuarded::new(
                body,
                options.body_min_bytes,
                options.body_timeout,
            ))
        });
        let handling = busy.enter();
        let answer = tower_service::Service::call(&mut router.clone(), request);
        async move {
            let answer = answer.await;
            drop(handling);
            answer
        }
    });
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async {
            // The guard it returns is not Send: drop it at once.
            let _ = stopping.wait_for(|stop| *stop).await;
        } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection closed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerOptions,
    }

    #[test]
    fn the_flags_defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["registry"]).unwrap();
        assert_eq!(cli.server, ServerOptions::default());
        let cli = Cli::try_parse_from(["registry", "--header-timeout", "1m30s"]).unwrap();
        assert_eq!(cli.server.header_timeout, Duration::from_secs(90));
        assert!(Cli::try_parse_from(["registry", "--idle-timeout", "soon"]).is_err());
    }

    #[test]
    fn unusable_values_are_refused_naming_the_option() {
        let zero = ServerOptions {
            body_timeout: Duration::ZERO,
            ..ServerOptions::default()
        };
        assert!(matches!(zero.check(), Err(Error::Config(m)) if m.contains("body_timeout")));
        let tiny = ServerOptions {
            max_header_bytes: 10,
            ..ServerOptions::default()
        };
        assert!(matches!(tiny.check(), Err(Error::Config(m)) if m.contains("max_header_bytes")));
    }
}
