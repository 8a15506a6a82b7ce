//! An in-memory proxy for native tests of filter flows (feature `fake`, or the glue's tests).
//!
//! As in Envoy, proxy-wide state and per-stream state are different objects: a
//! [`FakeProxy`] holds what every context of a plugin shares (shared data, metrics, clock,
//! random bytes, callout tokens, logs, foreign functions), and each [`FakeHost`] made from it
//! is one context (the root, or one HTTP stream) with its own headers, properties, callouts
//! and reply.
//!
//! ```
//! use wasmgate_glue::{FakeHost, FakeProxy, Headers, Host};
//! let host = FakeHost::new().with_header("x-user", "ada");
//! assert_eq!(host.header(Headers::Request, "X-User").as_deref(), Some("ada"));
//!
//! let proxy = FakeProxy::new();
//! let (mut one, two) = (proxy.stream(), proxy.stream());
//! one.set_shared_data("k", b"v", None).unwrap();
//! assert_eq!(two.shared_data("k").0.as_deref(), Some(&b"v"[..]));
//! ```

use std::cell::{Ref, RefCell, RefMut};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::host::{
    GrpcCall, Headers, Host, HostError, HttpCall, LocalReply, LogLevel, MetricId, MetricKind,
};

/// A callout the filter sent, as the fake recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// A gRPC call the filter sent, as the fake recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedGrpcCall {
    pub token: u32,
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub message: Vec<u8>,
    pub timeout: Duration,
}

/// What a foreign function does with its serialized arguments.
type ForeignFn = dyn Fn(&[u8]) -> Result<Vec<u8>, HostError>;

/// A foreign function registered with [`FakeHost::with_foreign_function`].
#[derive(Clone)]
pub struct ForeignFunction(Rc<ForeignFn>);

impl std::fmt::Debug for ForeignFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForeignFunction")
    }
}

/// What a scripted race does before a shared-data write: change the proxy as another worker
/// would, or fail the write with an error.
type RaceFn = dyn FnMut(&mut ProxyState) -> Result<(), HostError>;

/// A race scripted with [`FakeProxy::race_writes`].
struct Race {
    key: String,
    times: u32,
    run: Box<RaceFn>,
}

/// The proxy-wide state of a [`FakeProxy`]; read and change it with [`FakeProxy::state`].
#[derive(Debug)]
pub struct ProxyState {
    /// Shared data: key → (value, CAS token).
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    /// When set, every shared-data write fails with this error.
    pub fail_shared_writes: Option<HostError>,
    pub now: SystemTime,
    /// When set, every clock read fails with this error.
    pub fail_clock: Option<HostError>,
    /// When set, every request for random bytes fails with this error.
    pub fail_random: Option<HostError>,
    /// Bytes handed out by [`Host::random`] so far: the fake's randomness is a counter, so
    /// runs repeat and two draws differ.
    pub random_drawn: u64,
    /// When set, every callout (HTTP or gRPC) fails with this error.
    pub fail_calls: Option<HostError>,
    pub tick_period: Option<Duration>,
    pub metrics: Vec<(MetricKind, String, i64)>,
    pub logs: Vec<(LogLevel, String)>,
    /// Foreign functions by name; any other name is [`HostError::NotFound`], as in Envoy.
    pub foreign_functions: HashMap<String, ForeignFunction>,
    next_token: u32,
    races: Vec<Race>,
}

impl std::fmt::Debug for Race {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Race({:?} x{})", self.key, self.times)
    }
}

impl ProxyState {
    /// Write shared data as another worker would: unconditionally, with a new CAS token.
    pub fn write_shared(&mut self, key: &str, value: &[u8]) {
        let current = self.shared.get(key).map(|(_, c)| *c);
        let next = current.unwrap_or(0).wrapping_add(1).max(1);
        self.shared.insert(key.to_owned(), (value.to_vec(), next));
    }

    /// The value stored under `key`.
    pub fn shared_value(&self, key: &str) -> Option<&[u8]> {
        self.shared.get(key).map(|(value, _)| value.as_slice())
    }

    /// Run the race scripted for a write to `key`, if any is left.
    fn race(&mut self, key: &str) -> Result<(), HostError> {
        let Some(index) = self.races.iter().position(|r| r.key == key && r.times > 0) else {
            return Ok(());
        };
        self.races[index].times -= 1;
        // The race runs on the state it lives in: take it out while it runs.
        let mut race = self.races.remove(index);
        let outcome = (race.run)(self);
        self.races.insert(index, race);
        outcome
    }
}

/// The proxy-wide half of the fake: a cheap handle (clones share one state) from which
/// [`stream`](Self::stream) and [`root`](Self::root) make the contexts of one plugin.
#[derive(Debug, Clone)]
pub struct FakeProxy(Rc<RefCell<ProxyState>>);

impl Default for FakeProxy {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeProxy {
    /// An empty proxy at a fixed time (2026-01-01T00:00:00Z).
    pub fn new() -> Self {
        FakeProxy(Rc::new(RefCell::new(ProxyState {
            shared: HashMap::new(),
            fail_shared_writes: None,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            fail_clock: None,
            fail_random: None,
            random_drawn: 0,
            fail_calls: None,
            tick_period: None,
            metrics: Vec::new(),
            logs: Vec::new(),
            foreign_functions: HashMap::new(),
            next_token: 1,
            races: Vec::new(),
        })))
    }

    /// A new HTTP stream on this proxy: a request `GET /` to `example.com`.
    pub fn stream(&self) -> FakeHost {
        FakeHost {
            proxy: self.clone(),
            request: vec![
                (":method".into(), "GET".into()),
                (":path".into(), "/".into()),
                (":authority".into(), "example.com".into()),
                (":scheme".into(), "http".into()),
            ],
            response: vec![(":status".into(), "200".into())],
            call_response: Vec::new(),
            call_response_body: None,
            properties: HashMap::new(),
            local_reply: None,
            calls: Vec::new(),
            grpc_calls: Vec::new(),
            resumed: 0,
            route_cache_cleared: 0,
            host_calls: RefCell::new(HashMap::new()),
        }
    }

    /// The root context of this proxy: no request, no response.
    pub fn root(&self) -> FakeHost {
        FakeHost {
            request: Vec::new(),
            response: Vec::new(),
            ..self.stream()
        }
    }

    /// The proxy-wide state, to read or change (release it before the next host call).
    pub fn state(&self) -> RefMut<'_, ProxyState> {
        self.0.borrow_mut()
    }

    /// The proxy-wide state, to read.
    pub fn peek(&self) -> Ref<'_, ProxyState> {
        self.0.borrow()
    }

    fn offer(&self, name: &str, f: impl Fn(&[u8]) -> Result<Vec<u8>, HostError> + 'static) {
        self.state()
            .foreign_functions
            .insert(name.to_owned(), ForeignFunction(Rc::new(f)));
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        self.state().now += by;
    }

    /// Script a race: before each of the next `times` writes to shared-data `key`, `race`
    /// runs on the proxy, as another worker writing between this one's read and its write
    /// (use [`ProxyState::write_shared`]), or fails the write by returning an error.
    pub fn race_writes(
        &self,
        key: &str,
        times: u32,
        race: impl FnMut(&mut ProxyState) -> Result<(), HostError> + 'static,
    ) {
        self.state().races.push(Race {
            key: key.to_owned(),
            times,
            run: Box::new(race),
        });
    }

    /// The next `times` compare-and-swap writes to `key` lose: another worker rewrites the
    /// same value first, so the token read before them no longer matches.
    pub fn lose_writes(&self, key: &str, times: u32) {
        let owned = key.to_owned();
        self.race_writes(key, times, move |state| {
            let value = state.shared_value(&owned).map(<[u8]>::to_vec);
            if let Some(value) = value {
                state.write_shared(&owned, &value);
            }
            Ok(())
        });
    }

    /// Scripted races that have not run yet, over all keys.
    pub fn races_left(&self) -> u32 {
        self.peek().races.iter().map(|r| r.times).sum()
    }

    /// The value of a metric by name (sum of increments, or the last recorded value).
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.peek()
            .metrics
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, v)| *v)
    }

    /// Whether any log line at `level` or above contains `needle`.
    pub fn logged(&self, level: LogLevel, needle: &str) -> bool {
        self.peek()
            .logs
            .iter()
            .any(|(l, m)| *l >= level && m.contains(needle))
    }

    /// The value stored in shared data under `key`.
    pub fn shared(&self, key: &str) -> Option<Vec<u8>> {
        self.peek().shared_value(key).map(<[u8]>::to_vec)
    }

    /// Put a stream built on its own (say by `FakeHost::new()`) on this proxy, keeping its
    /// headers and properties.
    pub fn adopt(&self, mut stream: FakeHost) -> FakeHost {
        stream.proxy = self.clone();
        stream
    }

    /// The time the clock shows (whether or not reads of it fail).
    pub fn now(&self) -> SystemTime {
        self.peek().now
    }

    fn next_token(&self) -> u32 {
        let mut state = self.state();
        let token = state.next_token;
        state.next_token += 1;
        token
    }
}

/// One context of a fake proxy: the root or one HTTP stream. Build it with the `with_*`
/// methods, run a filter against it, then read what the filter did from its public fields
/// (this context's) and from [`proxy`](Self::proxy) (everything shared).
///
/// [`FakeHost::new`] is a stream on its own fresh proxy; streams that share a proxy come
/// from [`FakeProxy::stream`]. A clone shares the proxy and copies the stream.
#[derive(Debug, Clone)]
pub struct FakeHost {
    /// The proxy this context belongs to.
    pub proxy: FakeProxy,
    pub request: Vec<(String, String)>,
    pub response: Vec<(String, String)>,
    pub call_response: Vec<(String, String)>,
    pub call_response_body: Option<Vec<u8>>,
    pub properties: HashMap<Vec<String>, Vec<u8>>,
    pub local_reply: Option<LocalReply>,
    /// The HTTP callouts this context sent (tokens are unique proxy-wide, as in Envoy).
    pub calls: Vec<RecordedCall>,
    /// The gRPC calls this context sent.
    pub grpc_calls: Vec<RecordedGrpcCall>,
    pub resumed: u32,
    pub route_cache_cleared: u32,
    /// Host calls made through the [`Host`] trait, by method name (the builders count none).
    host_calls: RefCell<HashMap<&'static str, u32>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeHost {
    /// A request `GET /` to `example.com` on a proxy of its own (see [`FakeProxy::new`]).
    pub fn new() -> Self {
        FakeProxy::new().stream()
    }

    /// Add a request header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.request.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Set the request's method and path.
    #[must_use]
    pub fn with_request(mut self, method: &str, path: &str) -> Self {
        self.replace(Headers::Request, ":method", method);
        self.replace(Headers::Request, ":path", path);
        self
    }

    /// Add a response header.
    #[must_use]
    pub fn with_response_header(mut self, name: &str, value: &str) -> Self {
        self.response
            .push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Set a property, e.g. `with_property(&["source", "address"], b"10.0.0.1:5555")`.
    #[must_use]
    pub fn with_property(mut self, path: &[&str], value: &[u8]) -> Self {
        self.properties.insert(
            path.iter().map(|s| (*s).to_owned()).collect(),
            value.to_vec(),
        );
        self
    }

    /// Set the proxy's clock.
    #[must_use]
    pub fn with_now(self, now: SystemTime) -> Self {
        self.proxy.state().now = now;
        self
    }

    /// Make every clock read on the proxy fail, as a host whose time call fails would.
    #[must_use]
    pub fn with_failing_clock(self) -> Self {
        self.proxy.state().fail_clock = Some(HostError::Failed("clock unavailable".into()));
        self
    }

    /// Offer a foreign function on the proxy (as Envoy offers `verify_signature`),
    /// implemented by `f`.
    #[must_use]
    pub fn with_foreign_function(
        self,
        name: &str,
        f: impl Fn(&[u8]) -> Result<Vec<u8>, HostError> + 'static,
    ) -> Self {
        self.proxy.offer(name, f);
        self
    }

    /// Move the proxy's clock forward.
    pub fn advance(&self, by: Duration) {
        self.proxy.advance(by);
    }

    /// Set the callout response that the next `on_http_call_response` will read.
    pub fn answer_call(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.call_response = std::iter::once((":status".to_owned(), status.to_string()))
            .chain(
                headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
            .collect();
        self.call_response_body = Some(body.to_vec());
    }

    /// Carry out a header callback's action as the glue does (see [`crate::Action::settle`]):
    /// a reply lands in [`local_reply`](Self::local_reply).
    pub fn settle(&mut self, action: crate::Action) -> crate::Action {
        action.settle(self)
    }

    /// The value of a proxy metric by name (sum of increments, or the last recorded value).
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.proxy.metric(name)
    }

    /// Every header of `map` named `name`, in order.
    pub fn all(&self, map: Headers, name: &str) -> Vec<String> {
        self.map(map)
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether any proxy log line at `level` or above contains `needle`.
    pub fn logged(&self, level: LogLevel, needle: &str) -> bool {
        self.proxy.logged(level, needle)
    }

    /// How many times each [`Host`] method was called on this context since it was built or
    /// [`reset_host_calls`](Self::reset_host_calls), by method name (`"set_header"`, ...).
    pub fn host_calls(&self) -> HashMap<&'static str, u32> {
        self.host_calls.borrow().clone()
    }

    /// Every [`Host`] call made on this context since it was built or the counts were reset.
    pub fn calls_made(&self) -> u32 {
        self.host_calls.borrow().values().sum()
    }

    /// Forget the host calls counted so far (say, those `configure` made).
    pub fn reset_host_calls(&mut self) {
        self.host_calls.get_mut().clear();
    }

    fn count(&self, method: &'static str) {
        *self.host_calls.borrow_mut().entry(method).or_insert(0) += 1;
    }

    fn replace(&mut self, map: Headers, name: &str, value: &str) {
        let entries = self.map_mut(map);
        match entries
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some(first) => {
                entries[first].1 = value.to_owned();
                let mut index = 0;
                entries.retain(|(k, _)| {
                    let keep = index <= first || !k.eq_ignore_ascii_case(name);
                    index += 1;
                    keep
                });
            }
            None => entries.push((name.to_ascii_lowercase(), value.to_owned())),
        }
    }

    fn map(&self, map: Headers) -> &Vec<(String, String)> {
        match map {
            Headers::Request => &self.request,
            Headers::Response => &self.response,
            Headers::CallResponse => &self.call_response,
        }
    }

    fn map_mut(&mut self, map: Headers) -> &mut Vec<(String, String)> {
        match map {
            Headers::Request => &mut self.request,
            Headers::Response => &mut self.response,
            Headers::CallResponse => &mut self.call_response,
        }
    }
}

impl Host for FakeHost {
    fn header(&self, map: Headers, name: &str) -> Option<String> {
        self.count("header");
        let values = self.all(map, name);
        if values.is_empty() {
            None
        } else {
            Some(values.join(","))
        }
    }

    fn headers(&self, map: Headers) -> Vec<(String, String)> {
        self.count("headers");
        self.map(map).clone()
    }

    fn set_header(&mut self, map: Headers, name: &str, value: &str) {
        self.count("set_header");
        self.replace(map, name, value);
    }

    fn add_header(&mut self, map: Headers, name: &str, value: &str) {
        self.count("add_header");
        self.map_mut(map)
            .push((name.to_ascii_lowercase(), value.to_owned()));
    }

    fn remove_header(&mut self, map: Headers, name: &str) {
        self.count("remove_header");
        self.map_mut(map)
            .retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.count("property");
        let key: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        self.properties.get(&key).cloned()
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.count("shared_data");
        match self.proxy.peek().shared.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set_shared_data(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), HostError> {
        self.count("set_shared_data");
        let mut state = self.proxy.state();
        if let Some(err) = &state.fail_shared_writes {
            return Err(err.clone());
        }
        state.race(key)?;
        let current = state.shared.get(key).map(|(_, c)| *c);
        // Like Envoy: a CAS of 0 or none always writes; otherwise it must match.
        if let (Some(want), Some(have)) = (cas.filter(|c| *c != 0), current) {
            if want != have {
                return Err(HostError::CasMismatch);
            }
        }
        state.write_shared(key, value);
        Ok(())
    }

    fn now(&self) -> Result<SystemTime, HostError> {
        self.count("now");
        let state = self.proxy.peek();
        match &state.fail_clock {
            Some(err) => Err(err.clone()),
            None => Ok(state.now),
        }
    }

    fn random(&mut self, buf: &mut [u8]) -> Result<(), HostError> {
        self.count("random");
        let mut state = self.proxy.state();
        if let Some(err) = &state.fail_random {
            return Err(err.clone());
        }
        for byte in buf {
            state.random_drawn += 1;
            *byte = (state.random_drawn.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8;
        }
        Ok(())
    }

    fn reply(&mut self, reply: LocalReply) {
        self.count("reply");
        self.local_reply = Some(reply);
    }

    fn resume_request(&mut self) {
        self.count("resume_request");
        self.resumed += 1;
    }

    fn clear_route_cache(&mut self) {
        self.count("clear_route_cache");
        self.route_cache_cleared += 1;
    }

    fn http_call(&mut self, call: &HttpCall<'_>) -> Result<u32, HostError> {
        self.count("http_call");
        if let Some(err) = &self.proxy.peek().fail_calls {
            return Err(err.clone());
        }
        let token = self.proxy.next_token();
        self.calls.push(RecordedCall {
            token,
            cluster: call.cluster.to_owned(),
            headers: call
                .headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: call.body.map(<[u8]>::to_vec),
            timeout: call.timeout,
        });
        Ok(token)
    }

    fn grpc_call(&mut self, call: &GrpcCall<'_>) -> Result<u32, HostError> {
        self.count("grpc_call");
        if let Some(err) = &self.proxy.peek().fail_calls {
            return Err(err.clone());
        }
        let token = self.proxy.next_token();
        self.grpc_calls.push(RecordedGrpcCall {
            token,
            cluster: call.cluster.to_owned(),
            service: call.service.to_owned(),
            method: call.method.to_owned(),
            message: call.message.to_vec(),
            timeout: call.timeout,
        });
        Ok(token)
    }

    fn call_response_body(&self, max: usize) -> Option<Vec<u8>> {
        self.count("call_response_body");
        self.call_response_body
            .as_ref()
            .map(|b| b[..b.len().min(max)].to_vec())
    }

    fn set_tick_period(&mut self, period: Duration) {
        self.count("set_tick_period");
        self.proxy.state().tick_period = Some(period);
    }

    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        self.count("define_metric");
        let mut state = self.proxy.state();
        if let Some(index) = state.metrics.iter().position(|(_, n, _)| n == name) {
            return Ok(MetricId(index as u32));
        }
        state.metrics.push((kind, name.to_owned(), 0));
        Ok(MetricId((state.metrics.len() - 1) as u32))
    }

    fn increment_metric(&mut self, id: MetricId, delta: i64) {
        self.count("increment_metric");
        if let Some(metric) = self.proxy.state().metrics.get_mut(id.0 as usize) {
            metric.2 += delta;
        }
    }

    fn record_metric(&mut self, id: MetricId, value: u64) {
        self.count("record_metric");
        if let Some(metric) = self.proxy.state().metrics.get_mut(id.0 as usize) {
            metric.2 = i64::try_from(value).unwrap_or(i64::MAX);
        }
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        self.count("log");
        self.proxy.state().logs.push((level, message.to_owned()));
    }

    fn call_foreign_function(
        &mut self,
        name: &str,
        arguments: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        self.count("call_foreign_function");
        // Cloned out so the function may use the proxy (a foreign function can call back).
        let function = self.proxy.peek().foreign_functions.get(name).cloned();
        match function {
            Some(ForeignFunction(f)) => f(arguments),
            None => Err(HostError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_and_set_replaces_all() {
        let mut host = FakeHost::new()
            .with_header("X-A", "1")
            .with_header("x-a", "2");
        assert_eq!(host.header(Headers::Request, "x-A").as_deref(), Some("1,2"));
        host.set_header(Headers::Request, "X-a", "3");
        assert_eq!(host.all(Headers::Request, "x-a"), vec!["3"]);
        host.remove_header(Headers::Request, "x-a");
        assert_eq!(host.header(Headers::Request, "x-a"), None);
    }

    #[test]
    fn cas_mismatch_is_reported() {
        let mut host = FakeHost::new();
        host.set_shared_data("k", b"1", None).unwrap();
        let (_, cas) = host.shared_data("k");
        host.set_shared_data("k", b"2", cas).unwrap();
        assert_eq!(
            host.set_shared_data("k", b"3", cas),
            Err(HostError::CasMismatch)
        );
        assert_eq!(host.shared_data("k").0.as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn streams_of_one_proxy_share_its_state_and_keep_their_own() {
        let proxy = FakeProxy::new();
        let mut root = proxy.root();
        let mut one = proxy.stream().with_header("x-a", "1");
        let two = proxy.stream();
        root.set_shared_data("k", b"v", None).unwrap();
        let id = root.define_metric(MetricKind::Counter, "m").unwrap();
        one.increment_metric(id, 2);
        one.set_header(Headers::Request, "x-b", "2");
        one.reply(LocalReply::new(429));
        assert_eq!(two.shared_data("k").0.as_deref(), Some(&b"v"[..]));
        assert_eq!(two.metric("m"), Some(2));
        assert_eq!(two.header(Headers::Request, "x-a"), None);
        assert_eq!(two.header(Headers::Request, "x-b"), None);
        assert_eq!(two.local_reply, None);
        assert_eq!(root.header(Headers::Request, ":path"), None);
        proxy.advance(Duration::from_secs(5));
        assert_eq!(one.now(), two.now());
        assert_eq!(one.calls_made(), 4);
    }

    #[test]
    fn scripted_races_lose_cas_writes_then_stop() {
        let proxy = FakeProxy::new();
        let mut host = proxy.stream();
        host.set_shared_data("k", b"1", None).unwrap();
        proxy.lose_writes("k", 2);
        assert_eq!(proxy.races_left(), 2);
        for _ in 0..2 {
            let (value, cas) = host.shared_data("k");
            assert_eq!(
                host.set_shared_data("k", b"2", cas),
                Err(HostError::CasMismatch)
            );
            assert_eq!(value.as_deref(), Some(&b"1"[..]));
        }
        let (_, cas) = host.shared_data("k");
        host.set_shared_data("k", b"2", cas).unwrap();
        assert_eq!(proxy.races_left(), 0);
        // Other keys are not raced; a race may rewrite the value or fail the write.
        host.set_shared_data("j", b"x", Some(7)).unwrap();
        proxy.race_writes("j", 1, |state| {
            state.write_shared("j", b"theirs");
            Err(HostError::Failed("gone".into()))
        });
        assert!(host.set_shared_data("j", b"ours", None).is_err());
        assert_eq!(proxy.shared("j").as_deref(), Some(&b"theirs"[..]));
    }

    #[test]
    fn a_settled_reply_is_recorded_and_pauses() {
        let mut host = FakeHost::new();
        let reply = LocalReply::new(503).header("a", "b").body("no");
        assert_eq!(
            host.settle(crate::Action::Reply(reply.clone())),
            crate::Action::Pause
        );
        assert_eq!(host.local_reply, Some(reply));
        assert_eq!(
            host.settle(crate::Action::Continue),
            crate::Action::Continue
        );
    }

    #[test]
    fn host_calls_are_counted_by_method_but_not_the_builders() {
        let mut host = FakeHost::new()
            .with_request("POST", "/a")
            .with_header("x-a", "1");
        assert_eq!(host.calls_made(), 0);
        let _ = host.header(Headers::Request, "x-a");
        host.set_header(Headers::Request, "x-b", "2");
        host.set_header(Headers::Request, "x-c", "3");
        let _ = host.now();
        assert_eq!(host.host_calls()["set_header"], 2);
        assert_eq!(host.host_calls()["header"], 1);
        assert_eq!(host.calls_made(), 4);
        host.reset_host_calls();
        assert_eq!(host.calls_made(), 0);
    }

    #[test]
    fn a_failing_clock_is_an_error() {
        let host = FakeHost::new().with_failing_clock();
        assert!(host.now().is_err());
        let host = FakeHost::new();
        assert_eq!(host.now(), Ok(host.proxy.now()));
    }

    #[test]
    fn grpc_calls_are_recorded_with_their_own_tokens_or_fail() {
        let mut host = FakeHost::new();
        let call = GrpcCall {
            cluster: "rls",
            service: "s.S",
            method: "M",
            message: b"\x0a\x01a",
            timeout: Duration::from_millis(50),
        };
        let first = host.grpc_call(&call).unwrap();
        assert_ne!(host.grpc_call(&call).unwrap(), first);
        assert_eq!(host.grpc_calls[0].message, b"\x0a\x01a");
        assert_eq!(host.grpc_calls[0].timeout, Duration::from_millis(50));
        host.proxy.state().fail_calls = Some(HostError::BadArgument);
        assert_eq!(host.grpc_call(&call), Err(HostError::BadArgument));
        assert_eq!(host.grpc_calls.len(), 2);
    }

    #[test]
    fn foreign_functions_answer_by_name_and_others_are_not_found() {
        let mut host = FakeHost::new().with_foreign_function("echo", |args| Ok(args.to_vec()));
        assert_eq!(
            host.call_foreign_function("echo", b"hi"),
            Ok(b"hi".to_vec())
        );
        assert_eq!(
            host.call_foreign_function("verify_signature", b""),
            Err(HostError::NotFound)
        );
        assert_eq!(host.host_calls()["call_foreign_function"], 2);
    }

    #[test]
    fn logs_are_recorded() {
        let mut host = FakeHost::new();
        host.log(LogLevel::Warn, "hello");
        assert!(host.logged(LogLevel::Info, "hello"));
    }
}
