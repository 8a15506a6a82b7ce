//! The host trait: everything a plugin may ask of the proxy, as plain Rust values.
//!
//! Filter logic is written against [`Host`] so that it compiles and is tested on the build
//! machine; the proxy-wasm glue ([`crate::proxy`]) implements it with real host calls and
//! the fake host (`FakeHost`, feature `fake`) implements it in memory for tests.

use std::fmt;
use std::time::{Duration, SystemTime};

/// Which header map a header operation addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Headers {
    /// The downstream request's headers (`on_request_headers` and later).
    Request,
    /// The upstream response's headers (`on_response_headers` and later).
    Response,
    /// The headers of the response to an HTTP callout, inside its callback.
    CallResponse,
}

/// Log levels, in the order Envoy filters them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// The kind of an Envoy stat defined by a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Handle of a metric returned by [`Host::define_metric`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricId(pub u32);

/// Why a host call failed. Host calls never panic; callers decide what a failure means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// A compare-and-swap write lost against a concurrent writer.
    CasMismatch,
    /// The host does not know the thing asked for (cluster, metric, property).
    NotFound,
    /// The host refused the arguments (for example an unknown callout cluster).
    BadArgument,
    /// Anything else the host reported.
    Failed(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::CasMismatch => f.write_str("compare-and-swap mismatch"),
            HostError::NotFound => f.write_str("not found"),
            HostError::BadArgument => f.write_str("bad argument"),
            HostError::Failed(why) => write!(f, "host call failed: {why}"),
        }
    }
}

impl std::error::Error for HostError {}

/// A response the plugin answers the downstream with, instead of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalReply {
    /// A reply with `status`, no headers and an empty body.
    pub fn new(status: u32) -> Self {
        LocalReply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Add a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Set the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// An HTTP callout to an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall<'a> {
    /// Name of the Envoy cluster to send to.
    pub cluster: &'a str,
    /// Request headers including the pseudo-headers `:method`, `:path` and `:authority`.
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: Option<&'a [u8]>,
    pub timeout: Duration,
}

/// A unary gRPC call to an Envoy cluster (which must speak HTTP/2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall<'a> {
    /// Name of the Envoy cluster to send to.
    pub cluster: &'a str,
    /// Fully qualified service, e.g. `envoy.service.ratelimit.v3.RateLimitService`.
    pub service: &'a str,
    /// Method of the service, e.g. `ShouldRateLimit`.
    pub method: &'a str,
    /// The request message, already serialized.
    pub message: &'a [u8],
    pub timeout: Duration,
}

/// What a plugin may ask of the proxy. One value of it stands for one context (the root
/// context or one HTTP stream); it is only ever used from the thread that owns that context.
pub trait Host {
    /// One header's value, or `None` when the map has no such header. Names are
    /// case-insensitive; when a header repeats, the host joins the values with `,`.
    fn header(&self, map: Headers, name: &str) -> Option<String>;
    /// All headers of a map, in order, including pseudo-headers.
    fn headers(&self, map: Headers) -> Vec<(String, String)>;
    /// Replace every value of `name` with `value` (adding it when absent).
    fn set_header(&mut self, map: Headers, name: &str, value: &str);
    /// Add one more value for `name`, keeping the ones already there.
    fn add_header(&mut self, map: Headers, name: &str, value: &str);
    /// Remove every value of `name`.
    fn remove_header(&mut self, map: Headers, name: &str);

    /// A host property such as `["source", "address"]` or `["xds", "route_name"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;

    /// A value in the proxy-wide shared data with its CAS token.
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Write shared data; with `cas`, only when the stored token still matches.
    fn set_shared_data(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), HostError>;

    /// The host's wall clock. A failure is an error, never a default time: a plugin that
    /// cannot tell the time must refuse what depends on it (fail closed).
    fn now(&self) -> Result<SystemTime, HostError>;

    /// Fill `buf` with cryptographically secure random bytes (WASI `random_get` in Envoy).
    /// A failure is an error, never predictable bytes.
    fn random(&mut self, buf: &mut [u8]) -> Result<(), HostError>;

    /// Answer the downstream with `reply` instead of the upstream's response. A header
    /// callback returns [`crate::Action::Reply`] instead, which the glue sends and pauses on;
    /// this is for callbacks that return nothing (callout answers).
    fn reply(&mut self, reply: LocalReply);
    /// Let a request that a filter paused go on through the filter chain.
    fn resume_request(&mut self);
    /// Ask the router to pick the route again after headers changed.
    fn clear_route_cache(&mut self);

    /// Send an HTTP callout; its answer arrives in `on_http_call_response` with the token.
    fn http_call(&mut self, call: &HttpCall<'_>) -> Result<u32, HostError>;
    /// The body of the callout response being delivered, at most `max` bytes.
    fn call_response_body(&self, max: usize) -> Option<Vec<u8>>;

    /// Send a unary gRPC call; its answer arrives in `on_grpc_call_response` with the token.
    fn grpc_call(&mut self, call: &GrpcCall<'_>) -> Result<u32, HostError>;

    /// Ask for `on_tick` every `period` (root context only).
    fn set_tick_period(&mut self, period: Duration);

    /// Define (or look up) an Envoy stat; its full name is `wasmcustom.<name>`.
    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Result<MetricId, HostError>;
    fn increment_metric(&mut self, id: MetricId, delta: i64);
    fn record_metric(&mut self, id: MetricId, value: u64);

    /// Write a line to Envoy's log.
    fn log(&mut self, level: LogLevel, message: &str);

    /// Call a function the host registered by name (proxy-wasm `call_foreign_function`,
    /// e.g. Envoy's `verify_signature`) with serialized arguments; returns its serialized
    /// result (empty when it returned none). A host without the function answers
    /// [`HostError::NotFound`], which is also what a host that never implements this does.
    fn call_foreign_function(
        &mut self,
        name: &str,
        arguments: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        let _ = (name, arguments);
        Err(HostError::NotFound)
    }
}
