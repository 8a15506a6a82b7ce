//! The echo upstream: answers every request with what it received, and serves fixed
//! documents (a JWKS, say) whose answers a test can switch between 200, an error and slow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// A request header asking the echo upstream to add a response header: `name: value`.
pub const ECHO_RESPONSE_HEADER: &str = "x-echo-response-header";
/// A request header asking the echo upstream to answer with this status.
pub const ECHO_STATUS: &str = "x-echo-status";

/// What the echo upstream received, as it sends it back (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Echo {
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Every header in order, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Echo {
    /// The values of a header, joined with `,` as a proxy would; `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// Every value of a header, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// How a fixed document answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// 200 with the document.
    Ok,
    /// This status with a short error body.
    Status(u16),
    /// The document, after this delay.
    Slow(Duration),
}

#[derive(Debug, Clone)]
struct Document {
    content_type: String,
    body: Vec<u8>,
    mode: Mode,
    hits: usize,
}

#[derive(Debug, Default)]
struct Shared {
    documents: HashMap<String, Document>,
    requests: usize,
}

/// The echo upstream, on a loopback port, with its own runtime thread. Stops on drop.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Upstream {
    /// Start on a free loopback port.
    ///
    /// # Panics
    /// When no port or runtime can be had.
    pub fn start() -> Upstream {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(listener) => listener,
            Err(e) => panic!("cannot bind the echo upstream: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(e) => panic!("echo upstream has no address: {e}"),
        };
        if let Err(e) = listener.set_nonblocking(true) {
            panic!("echo upstream: {e}");
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => panic!("echo upstream runtime: {e}"),
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => panic!("echo upstream listener: {e}"),
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Upstream {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve `body` at `path` (exact path, query ignored) with 200 until told otherwise.
    pub fn serve(&self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) {
        let mut shared = lock(&self.shared);
        let hits = shared.documents.get(path).map_or(0, |d| d.hits);
        shared.documents.insert(
            path.to_owned(),
            Document {
                content_type: content_type.to_owned(),
                body: body.into(),
                mode: Mode::Ok,
                hits,
            },
        );
    }

    /// Change how the document at `path` answers.
    pub fn set_mode(&self, path: &str, mode: Mode) {
        if let Some(doc) = lock(&self.shared).documents.get_mut(path) {
            doc.mode = mode;
        }
    }

    /// How many requests the document at `path` has had.
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.shared).documents.get(path).map_or(0, |d| d.hits)
    }

    /// How many requests were echoed.
    pub fn echoed(&self) -> usize {
        lock(&self.shared).requests
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(
    State(shared): State<Arc<Mutex<Shared>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let document = {
        let mut shared = lock(&shared);
        match shared.documents.get_mut(uri.path()) {
            Some(doc) => {
                doc.hits += 1;
                Some(doc.clone())
            }
            None => {
                shared.requests += 1;
                None
            }
        }
    };
    if let Some(doc) = document {
        return match doc.mode {
            Mode::Status(status) => (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "switched to an error by the test\n",
            )
                .into_response(),
            Mode::Slow(delay) => {
                tokio::time::sleep(delay).await;
                ([("content-type", doc.content_type)], doc.body).into_response()
            }
            Mode::Ok => ([("content-type", doc.content_type)], doc.body).into_response(),
        };
    }
    echo(method, uri, headers, body)
}

fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let echo = Echo {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let status = headers
        .get(ECHO_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (
        status,
        [("content-type", "application/json")],
        serde_json::to_string(&echo).unwrap_or_default(),
    )
        .into_response();
    for value in headers.get_all(ECHO_RESPONSE_HEADER) {
        let Some((name, value)) = value.to_str().ok().and_then(|v| v.split_once(':')) else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.trim()),
            HeaderValue::try_from(value.trim()),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
