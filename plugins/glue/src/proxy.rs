//! The proxy-wasm glue: the only code in Wasmgate that names `proxy_wasm`.
//!
//! It implements [`Host`] with real host calls (every failure becomes a value, never a
//! panic), turns Envoy's root and HTTP contexts into [`Plugin`] and [`HttpFilter`] calls,
//! and picks the plugin by the `root_id` Envoy passes, so that one module can host several.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{self, BufferType, ContextType, MapType, MetricType, Status};

use crate::host::{
    GrpcCall, Headers, Host, HostError, HttpCall, LocalReply, LogLevel, MetricId, MetricKind,
};
use crate::plugin::{Action, Callbacks, ConfigError, HttpFilter, Plugin};

/// The version of the Wasmgate workspace, logged at VM start.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the module was built from, logged at VM start.
pub const GIT_HASH: &str = env!("WASMGATE_GIT_HASH");

#[doc(hidden)]
pub use proxy_wasm as __proxy_wasm;

/// The custom section in which [`export!`] lists, one name a line, the exports a module keeps.
/// The build (`wasmgate_artifact::wasm::strip_exports`, run by `make wasm` and `wasmgate
/// build`) removes every other export, and this section.
pub const KEEP_SECTION: &str = "wasmgate.exports";

/// What every module exports whatever its plugins use: the memory, the WASI reactor entry the
/// SDK starts from, the ABI version marker, the allocator Envoy returns data through, the
/// root and stream lifecycle (`proxy_on_delete` frees the SDK's context, so it stays), and
/// request headers, where a plugin whose configuration was refused answers 503.
/// Left out, as Envoy treats a missing one as done or a no-op: `proxy_on_done`,
/// `proxy_on_log`, the body, trailer, network-filter, queue and foreign-function callbacks.
const ALWAYS: &[&str] = &[
    "memory",
    "_initialize",
    "proxy_abi_version_0_2_1",
    "proxy_on_memory_allocate",
    "proxy_on_context_create",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_delete",
    "proxy_on_request_headers",
];

/// The exports each kind of callback needs, next to [`ALWAYS`].
const fn groups(callbacks: Callbacks) -> [&'static [&'static str]; 5] {
    const NONE: &[&str] = &[];
    [
        ALWAYS,
        if callbacks.response_headers {
            &["proxy_on_response_headers"]
        } else {
            NONE
        },
        if callbacks.tick {
            &["proxy_on_tick"]
        } else {
            NONE
        },
        if callbacks.http_call_response {
            &["proxy_on_http_call_response"]
        } else {
            NONE
        },
        // A unary call ends in one of the two: the message, or the status it failed with.
        if callbacks.grpc_call_response {
            &["proxy_on_grpc_receive", "proxy_on_grpc_close"]
        } else {
            NONE
        },
    ]
}

/// The exports a module whose plugins use `callbacks` keeps, in a fixed order.
pub fn exports(callbacks: Callbacks) -> Vec<&'static str> {
    groups(callbacks).into_iter().flatten().copied().collect()
}

/// The length of [`keep_section`] for `callbacks`.
#[doc(hidden)]
pub const fn keep_section_len(callbacks: Callbacks) -> usize {
    let groups = groups(callbacks);
    let (mut len, mut g) = (0, 0);
    while g < groups.len() {
        let mut n = 0;
        while n < groups[g].len() {
            len += groups[g][n].len() + 1;
            n += 1;
        }
        g += 1;
    }
    len
}

/// The contents of [`KEEP_SECTION`] for `callbacks`: [`exports`], each followed by `\n`.
/// Built at compile time, as a `#[link_section]` static must be.
#[doc(hidden)]
pub const fn keep_section<const N: usize>(callbacks: Callbacks) -> [u8; N] {
    let groups = groups(callbacks);
    let mut out = [0u8; N];
    let (mut at, mut g) = (0, 0);
    while g < groups.len() {
        let mut n = 0;
        while n < groups[g].len() {
            let name = groups[g][n].as_bytes();
            let mut i = 0;
            while i < name.len() {
                out[at] = name[i];
                at += 1;
                i += 1;
            }
            out[at] = b'\n';
            at += 1;
            n += 1;
        }
        g += 1;
    }
    assert!(at == N, "keep_section: N must be keep_section_len");
    out
}

/// Builds a plugin from its configuration, behind a trait object.
type Configure = fn(&[u8], &mut dyn Host) -> Result<Box<dyn DynPlugin>, ConfigError>;

/// One plugin a module hosts: its name (the `root_id` that selects it) and how to build it.
#[derive(Clone, Copy)]
pub struct Entry {
    name: &'static str,
    configure: Configure,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("name", &self.name).finish()
    }
}

/// The [`Entry`] for plugin `P`.
pub const fn entry<P: Plugin>() -> Entry {
    Entry {
        name: P::NAME,
        configure: configure_boxed::<P>,
    }
}

fn configure_boxed<P: Plugin>(
    config: &[u8],
    host: &mut dyn Host,
) -> Result<Box<dyn DynPlugin>, ConfigError> {
    Ok(Box::new(P::configure(config, host)?))
}

/// [`Plugin`] without its associated types, so a module can hold any of its plugins.
trait DynPlugin {
    /// The stream's context with the plugin's filter inside.
    fn create_stream(&self, context_id: u32) -> Box<dyn HttpContext>;
    fn on_start(&mut self, host: &mut dyn Host);
    fn on_tick(&mut self, host: &mut dyn Host);
    fn on_http_call_response(&mut self, host: &mut dyn Host, token: u32, status: Option<u16>);
    fn on_grpc_call_response(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        response: Result<&[u8], u32>,
    );
}

impl<P: Plugin> DynPlugin for P {
    fn create_stream(&self, context_id: u32) -> Box<dyn HttpContext> {
        Stream::boxed(Box::new(Plugin::create_filter(self, context_id)))
    }
    fn on_start(&mut self, host: &mut dyn Host) {
        Plugin::on_start(self, host);
    }
    fn on_tick(&mut self, host: &mut dyn Host) {
        Plugin::on_tick(self, host);
    }
    fn on_http_call_response(&mut self, host: &mut dyn Host, token: u32, status: Option<u16>) {
        Plugin::on_http_call_response(self, host, token, status);
    }
    fn on_grpc_call_response(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        response: Result<&[u8], u32>,
    ) {
        Plugin::on_grpc_call_response(self, host, token, response);
    }
}

thread_local! {
    static ENTRIES: Cell<&'static [Entry]> = const { Cell::new(&[]) };
}

/// Start the module with the plugins it hosts. Called once by [`crate::export!`].
pub fn start(entries: &'static [Entry]) {
    ENTRIES.with(|e| e.set(entries));
    // The SDK's own hook unwraps the log call; ours never panics while reporting a panic.
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(
            types::LogLevel::Critical,
            &format!("wasmgate: panic, this Wasm VM is now unusable: {info}"),
        );
    }));
    proxy_wasm::set_root_context(|context_id| Box::new(Root::new(context_id)));
}

/// The host as seen from the context currently being called.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealHost;

fn map_type(map: Headers) -> MapType {
    match map {
        Headers::Request => MapType::HttpRequestHeaders,
        Headers::Response => MapType::HttpResponseHeaders,
        Headers::CallResponse => MapType::HttpCallResponseHeaders,
    }
}

fn host_error(status: Status) -> HostError {
    match status {
        Status::CasMismatch => HostError::CasMismatch,
        Status::NotFound => HostError::NotFound,
        Status::BadArgument => HostError::BadArgument,
        other => HostError::Failed(format!("{other:?}")),
    }
}

fn report(what: &str, result: Result<(), Status>) {
    if let Err(status) = result {
        let _ = hostcalls::log(
            types::LogLevel::Warn,
            &format!("wasmgate: host call {what} failed: {status:?}"),
        );
    }
}

impl Host for RealHost {
    fn header(&self, map: Headers, name: &str) -> Option<String> {
        hostcalls::get_map_value(map_type(map), name).ok().flatten()
    }

    fn headers(&self, map: Headers) -> Vec<(String, String)> {
        hostcalls::get_map(map_type(map)).unwrap_or_default()
    }

    fn set_header(&mut self, map: Headers, name: &str, value: &str) {
        report(
            "set_header",
            hostcalls::set_map_value(map_type(map), name, Some(value)),
        );
    }

    fn add_header(&mut self, map: Headers, name: &str, value: &str) {
        report(
            "add_header",
            hostcalls::add_map_value(map_type(map), name, value),
        );
    }

    fn remove_header(&mut self, map: Headers, name: &str) {
        report(
            "remove_header",
            hostcalls::remove_map_value(map_type(map), name),
        );
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set_shared_data(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), HostError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(host_error)
    }

    fn now(&self) -> Result<SystemTime, HostError> {
        hostcalls::get_current_time().map_err(host_error)
    }

    fn random(&mut self, buf: &mut [u8]) -> Result<(), HostError> {
        // The error's code, not its Display: that carries every platform's messages (issue 14).
        getrandom::getrandom(buf)
            .map_err(|err| HostError::Failed(format!("random_get: error {}", err.code())))
    }

    fn reply(&mut self, reply: LocalReply) {
        let headers = reply
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        report(
            "send_http_response",
            hostcalls::send_http_response(reply.status, headers, Some(&reply.body)),
        );
    }

    fn resume_request(&mut self) {
        report("resume_http_request", hostcalls::resume_http_request());
    }

    fn clear_route_cache(&mut self) {
        report(
            "clear_route_cache",
            hostcalls::call_foreign_function("clear_route_cache", None).map(|_| ()),
        );
    }

    fn http_call(&mut self, call: &HttpCall<'_>) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(
            call.cluster,
            call.headers.clone(),
            call.body,
            Vec::new(),
            call.timeout,
        )
        .map_err(host_error)
    }

    fn grpc_call(&mut self, call: &GrpcCall<'_>) -> Result<u32, HostError> {
        // A plain cluster name: Envoy reads the argument as a serialized GrpcService first and,
        // when that fails, as a cluster name (an unknown one is an error here, not later).
        hostcalls::dispatch_grpc_call(
            call.cluster,
            call.service,
            call.method,
            Vec::new(),
            Some(call.message),
            call.timeout,
        )
        .map_err(host_error)
    }

    fn call_response_body(&self, max: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, max)
            .ok()
            .flatten()
    }

    fn set_tick_period(&mut self, period: Duration) {
        report("set_tick_period", hostcalls::set_tick_period(period));
    }

    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(kind, name)
            .map(MetricId)
            .map_err(host_error)
    }

    fn increment_metric(&mut self, id: MetricId, delta: i64) {
        report("increment_metric", hostcalls::increment_metric(id.0, delta));
    }

    fn record_metric(&mut self, id: MetricId, value: u64) {
        report("record_metric", hostcalls::record_metric(id.0, value));
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => types::LogLevel::Trace,
            LogLevel::Debug => types::LogLevel::Debug,
            LogLevel::Info => types::LogLevel::Info,
            LogLevel::Warn => types::LogLevel::Warn,
            LogLevel::Error => types::LogLevel::Error,
            LogLevel::Critical => types::LogLevel::Critical,
        };
        let _ = hostcalls::log(level, message);
    }

    fn call_foreign_function(
        &mut self,
        name: &str,
        arguments: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        // Envoy's foreign functions answer Ok, NotFound, BadArgument, SerializationFailure or
        // InternalFailure, which the SDK maps; only bad guest memory could make it panic.
        hostcalls::call_foreign_function(name, Some(arguments))
            .map(Option::unwrap_or_default)
            .map_err(host_error)
    }
}

/// Carry out a header callback's action: a reply is sent here, and pauses the stream.
fn action(action: Action) -> types::Action {
    match action.settle(&mut RealHost) {
        Action::Continue => types::Action::Continue,
        Action::Pause | Action::Reply(_) => types::Action::Pause,
    }
}

/// The `:status` of the callout response being delivered; `None` when the callout failed
/// (timeout, reset, unknown cluster) and Envoy delivered no headers.
fn call_status(num_headers: usize) -> Option<u16> {
    if num_headers == 0 {
        return None;
    }
    RealHost
        .header(Headers::CallResponse, ":status")
        .and_then(|s| s.parse().ok())
}

/// The outcome of a gRPC call being delivered: the response message (status 0, read from
/// the receive buffer), or the gRPC status code it failed with. A message that cannot be
/// read is reported as INTERNAL (13), never as an empty message.
fn grpc_response(status_code: u32, size: usize) -> Result<Vec<u8>, u32> {
    const GRPC_INTERNAL: u32 = 13;
    if status_code != 0 {
        return Err(status_code);
    }
    match hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size) {
        Ok(body) => Ok(body.unwrap_or_default()),
        Err(_) => Err(GRPC_INTERNAL),
    }
}

fn hosted_names(entries: &[Entry]) -> String {
    // A loop, not `collect` and `join`: less Wasm code (issue 14).
    let mut names = String::new();
    for entry in entries {
        if !names.is_empty() {
            names.push_str(", ");
        }
        names.push_str(entry.name);
    }
    names
}

/// Pick the plugin for `root_id`. A module that hosts one plugin answers to any root id.
fn select(entries: &'static [Entry], root_id: &str) -> Result<Entry, String> {
    match entries {
        [only] => Ok(*only),
        _ => entries
            .iter()
            .find(|e| e.name == root_id)
            .copied()
            .ok_or_else(|| {
                format!(
                    "root_id \"{root_id}\" names no plugin in this module; set root_id to one of: {}",
                    hosted_names(entries)
                )
            }),
    }
}

/// Envoy's root context for one plugin instance.
struct Root {
    context_id: u32,
    name: &'static str,
    plugin: Option<Box<dyn DynPlugin>>,
}

impl Root {
    fn new(context_id: u32) -> Self {
        Root {
            context_id,
            name: "wasmgate",
            plugin: None,
        }
    }

    fn root_id(&self) -> String {
        RealHost
            .property(&["plugin_root_id"])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, _: usize, _: usize) {
        let status = call_status(num_headers);
        if let Some(plugin) = self.plugin.as_mut() {
            plugin.on_http_call_response(&mut RealHost, token, status);
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, size: usize) {
        let response = grpc_response(status_code, size);
        if let Some(plugin) = self.plugin.as_mut() {
            plugin.on_grpc_call_response(
                &mut RealHost,
                token,
                response.as_deref().map_err(|&code| code),
            );
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        let entries = ENTRIES.with(Cell::get);
        RealHost.log(
            LogLevel::Info,
            &format!(
                "wasmgate {VERSION} (git {GIT_HASH}) starting root context {} for root_id \"{}\"; this module hosts: {}",
                self.context_id,
                self.root_id(),
                hosted_names(entries)
            ),
        );
        true
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let entries = ENTRIES.with(Cell::get);
        let entry = match select(entries, &self.root_id()) {
            Ok(entry) => entry,
            Err(why) => {
                RealHost.log(LogLevel::Critical, &format!("wasmgate: {why}"));
                return false;
            }
        };
        self.name = entry.name;
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match (entry.configure)(&config, &mut RealHost) {
            Ok(mut plugin) => {
                plugin.on_start(&mut RealHost);
                self.plugin = Some(plugin);
                RealHost.log(
                    LogLevel::Info,
                    &format!(
                        "{}: configured ({} bytes of configuration)",
                        self.name,
                        config.len()
                    ),
                );
                true
            }
            Err(err) => {
                RealHost.log(
                    LogLevel::Critical,
                    &format!("{}: invalid plugin configuration: {err}", self.name),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(plugin) = self.plugin.as_mut() {
            plugin.on_tick(&mut RealHost);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.plugin {
            Some(plugin) => plugin.create_stream(context_id),
            None => Stream::boxed(Box::new(Unconfigured { name: self.name })),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Serves streams of a plugin whose configuration was refused: fail closed, say why.
struct Unconfigured {
    name: &'static str,
}

impl HttpFilter for Unconfigured {
    fn on_request_headers(&mut self, _: &mut dyn Host, _: bool) -> Action {
        Action::Reply(
            LocalReply::new(503)
                .header("content-type", "text/plain")
                .body(format!("{}: plugin is not configured\n", self.name)),
        )
    }
}

/// Envoy's HTTP context, forwarding to the plugin's filter.
///
/// Not generic over the filter: the SDK's traits have some hundred default methods, each
/// in the vtable of every type implementing them, so a generic `Stream<F>` carried a copy of
/// all of them per filter type (issue 14). The price is a second allocation per stream.
struct Stream {
    filter: Box<dyn HttpFilter>,
}

impl Stream {
    // Out of line and not generic, so that `Stream`'s vtable and the SDK's default methods
    // in it are built in this crate only, where they are the same code as `Root`'s and
    // wasm-opt merges the two. Built from a plugin's generic code, they were a second copy
    // whose constants differed.
    #[inline(never)]
    fn boxed(filter: Box<dyn HttpFilter>) -> Box<dyn HttpContext> {
        Box::new(Stream { filter })
    }
}

impl Context for Stream {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, _: usize, _: usize) {
        let status = call_status(num_headers);
        self.filter
            .on_http_call_response(&mut RealHost, token, status);
    }

    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, size: usize) {
        let response = grpc_response(status_code, size);
        self.filter.on_grpc_call_response(
            &mut RealHost,
            token,
            response.as_deref().map_err(|&code| code),
        );
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> types::Action {
        action(self.filter.on_request_headers(&mut RealHost, end_of_stream))
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> types::Action {
        action(
            self.filter
                .on_response_headers(&mut RealHost, end_of_stream),
        )
    }
}

/// Export a module hosting the given plugins. One plugin: `export!(HeaderRewrite);`.
/// Several: `export!(JwtAuth, RateLimit, HeaderRewrite);` selected by `root_id`.
/// The module lists the exports its plugins need ([`Plugin::CALLBACKS`], their union) in a
/// custom section ([`KEEP_SECTION`]) that the build uses to strip the others.
#[macro_export]
macro_rules! export {
    ($($plugin:ty),+ $(,)?) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        mod __wasmgate_export {
            #[allow(unused_imports)]
            use super::*;
            static ENTRIES: &[$crate::proxy::Entry] = &[$($crate::proxy::entry::<$plugin>()),+];
            const CALLBACKS: $crate::Callbacks =
                $crate::Callbacks::NONE$(.union(<$plugin as $crate::Plugin>::CALLBACKS))+;
            // The exports to keep, read and removed by the build (`proxy::KEEP_SECTION`).
            #[link_section = "wasmgate.exports"]
            #[used]
            static KEEP: [u8; $crate::proxy::keep_section_len(CALLBACKS)] =
                $crate::proxy::keep_section(CALLBACKS);
            $crate::proxy::__proxy_wasm::main! {{
                $crate::proxy::start(ENTRIES);
            }}
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keep_section_lists_the_exports_a_line_each() {
        const TICK: Callbacks = Callbacks {
            tick: true,
            ..Callbacks::NONE
        };
        let section: [u8; keep_section_len(TICK)] = keep_section(TICK);
        let lines: Vec<&str> = std::str::from_utf8(&section).unwrap().lines().collect();
        assert_eq!(lines, exports(TICK));
        assert_eq!(lines[..ALWAYS.len()], *ALWAYS);
        assert_eq!(lines[ALWAYS.len()..], ["proxy_on_tick"]);
    }

    #[test]
    fn a_module_keeps_what_any_of_its_plugins_uses() {
        let jwt = Callbacks {
            tick: true,
            http_call_response: true,
            ..Callbacks::NONE
        };
        let rate = Callbacks {
            response_headers: true,
            grpc_call_response: true,
            ..Callbacks::NONE
        };
        assert_eq!(jwt.union(rate), Callbacks::ALL);
        assert_eq!(Callbacks::NONE.union(jwt), jwt);
        let all = exports(Callbacks::ALL);
        for name in [
            "proxy_on_response_headers",
            "proxy_on_tick",
            "proxy_on_http_call_response",
            "proxy_on_grpc_receive",
            "proxy_on_grpc_close",
        ] {
            assert!(all.contains(&name), "{name}");
            assert!(!exports(Callbacks::NONE).contains(&name), "{name}");
        }
    }
}
