//! Filter flows of global rules on `FakeHost`: the call sent, each answer of the service,
//! its failures, the verdict memory, and global rules mixed with local and shadow ones.

use std::time::Duration;

use serde_json::{json, Value};
use wasmgate_glue::{
    Action, FakeHost, FakeProxy, Headers, HostError, HttpFilter, LocalReply, Plugin,
};

use super::{RateLimit, RateLimitFilter};

const OK: &[u8] = &[0x08, 0x01];

/// A `RateLimitResponse` with one status per `(over_limit, limit, remaining, reset_secs)`,
/// and one response header to add.
fn answer(statuses: &[(bool, u32, u32, u8)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(over, limit, remaining, reset) in statuses {
        let status = [
            0x08,
            if over { 2 } else { 1 },
            0x12,
            0x02,
            0x08,
            limit as u8,
            0x18,
            remaining as u8,
            0x22,
            0x02,
            0x08,
            reset,
        ];
        out.extend([0x12, status.len() as u8]);
        out.extend(status);
    }
    out.extend([0x1a, 0x08, 0x0a, 0x03, b'x', b'-', b's', 0x12, 0x01, b'1']);
    out
}

struct Fixture {
    plugin: RateLimit,
    /// The root context; its proxy is every stream's.
    root: FakeHost,
}

/// A stream in flight: its filter, its host, and what `on_request_headers` returned.
struct Stream {
    filter: RateLimitFilter,
    host: FakeHost,
    action: Action,
}

impl Fixture {
    fn new(config: Value) -> Fixture {
        let mut root = FakeProxy::new().root();
        let mut plugin = RateLimit::configure(config.to_string().as_bytes(), &mut root).unwrap();
        plugin.on_start(&mut root);
        Fixture { plugin, root }
    }

    fn start(&mut self, host: FakeHost) -> Stream {
        let mut host = self.root.proxy.adopt(host);
        let mut filter = self.plugin.create_filter(9);
        let action = filter.on_request_headers(&mut host, true);
        let action = host.settle(action);
        Stream {
            filter,
            host,
            action,
        }
    }

    /// Deliver the service's answer to the stream's `index`-th call.
    fn answer(&mut self, stream: &mut Stream, index: usize, response: Result<&[u8], u32>) {
        let token = stream.host.grpc_calls[index].token;
        stream
            .filter
            .on_grpc_call_response(&mut stream.host, token, response);
    }

    fn stat(&mut self, rule: &str, stat: &str) -> i64 {
        self.plugin.on_tick(&mut self.root);
        self.root
            .metric(&format!("rate_limit.api.{rule}.{stat}"))
            .unwrap_or_else(|| panic!("no stat {rule}.{stat}"))
    }
}

fn get() -> FakeHost {
    FakeHost::new().with_property(&["source", "address"], b"10.0.0.1:1234")
}

fn header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
    reply
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn config(rules: Value) -> Value {
    json!({"mode": "global", "domain": "api",
           "rate_limit_service": {"cluster": "rls", "timeout": "250ms"}, "rules": rules})
}

#[test]
fn an_allowed_request_waits_for_the_service_then_goes_on_with_its_headers() {
    let mut f = Fixture::new(config(
        json!([{"name": "per_ip", "key": ["client_ip", {"header": "x-plan"}]}]),
    ));
    let mut s = f.start(get().with_header("x-plan", "gold"));
    assert_eq!(s.action, Action::Pause);
    let call = &s.host.grpc_calls[0];
    assert_eq!(call.cluster, "rls");
    assert_eq!(call.service, "envoy.service.ratelimit.v3.RateLimitService");
    assert_eq!(call.method, "ShouldRateLimit");
    assert_eq!(call.timeout, Duration::from_millis(250));
    let expected = crate::global::encode_request(
        "api",
        [&[
            ("generic_key", "per_ip"),
            ("remote_address", "10.0.0.1"),
            ("x-plan", "gold"),
        ][..]],
        1,
    );
    assert_eq!(call.message, expected);
    f.answer(&mut s, 0, Ok(&answer(&[(false, 5, 4, 60)])));
    assert_eq!(s.host.resumed, 1);
    assert!(s.host.local_reply.is_none());
    s.filter.on_response_headers(&mut s.host, true);
    assert_eq!(
        s.host.all(Headers::Response, "x-s"),
        ["1"],
        "the service's header"
    );
    assert_eq!(f.stat("per_ip", "allowed"), 1);
}

#[test]
fn over_limit_refuses_like_local_mode_and_is_remembered_until_the_reset() {
    let mut f = Fixture::new(config(json!([{"name": "per_ip", "key": ["client_ip"]}])));
    let mut s = f.start(get());
    f.answer(&mut s, 0, Ok(&answer(&[(true, 5, 0, 30)])));
    let reply = s.host.local_reply.clone().expect("refused");
    assert_eq!(reply.status, 429);
    assert_eq!(s.host.resumed, 0);
    assert_eq!(header(&reply, "retry-after"), Some("30"));
    assert_eq!(header(&reply, "x-ratelimit-limit"), Some("5"));
    assert_eq!(header(&reply, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&reply, "x-ratelimit-reset"), Some("30"));
    assert_eq!(header(&reply, "x-s"), Some("1"));

    // The flood that follows costs no call until the window resets.
    f.root.advance(Duration::from_secs(10));
    for _ in 0..3 {
        let s = f.start(get());
        assert_eq!(s.action, Action::Pause);
        assert!(s.host.grpc_calls.is_empty());
        let reply = s.host.local_reply.expect("refused from memory");
        assert_eq!(header(&reply, "retry-after"), Some("20"));
    }
    let other = f.start(get().with_property(&["source", "address"], b"10.0.0.2:1"));
    assert_eq!(other.host.grpc_calls.len(), 1, "another key is asked");
    assert_eq!(f.stat("per_ip", "remembered"), 3);
    assert_eq!(f.stat("per_ip", "limited"), 4);
    f.root.advance(Duration::from_secs(20));
    assert_eq!(
        f.start(get()).host.grpc_calls.len(),
        1,
        "reset: asked again"
    );
}

#[test]
fn failures_follow_each_rules_failure_mode_and_are_counted() {
    let mut f = Fixture::new(config(json!([
        {"name": "open", "failure_mode": "allow"},
        {"name": "closed", "failure_mode": "deny", "match": {"path": {"prefix": "/closed"}}},
    ])));
    // Unavailable: the open rule lets the request through.
    let mut s = f.start(get());
    f.answer(&mut s, 0, Err(14));
    assert_eq!(s.host.resumed, 1);
    assert!(s.host.logged(
        wasmgate_glue::LogLevel::Warn,
        "gRPC status 14 (unavailable); failure_mode allow"
    ));
    // Timed out, for both rules in one call: the closed one refuses.
    let mut s = f.start(get().with_request("GET", "/closed"));
    assert_eq!(s.host.grpc_calls.len(), 1, "one call for both rules");
    f.answer(&mut s, 0, Err(4));
    let reply = s.host.local_reply.clone().expect("refused");
    assert_eq!(
        (reply.status, header(&reply, "retry-after")),
        (429, Some("1"))
    );
    // An answer that cannot be read is a failure too.
    let mut s = f.start(get().with_request("GET", "/closed"));
    f.answer(&mut s, 0, Ok(&[0x12, 0x09]));
    assert!(s.host.local_reply.is_some());
    // A call that cannot be sent is decided at once.
    f.root.proxy.state().fail_calls = Some(HostError::BadArgument);
    let s = f.start(get().with_request("GET", "/closed"));
    assert_eq!(s.action, Action::Pause);
    assert!(s.host.local_reply.is_some());
    assert_eq!(f.stat("open", "service_errors"), 4);
    assert_eq!(f.stat("closed", "service_errors"), 3);
    assert_eq!(f.stat("closed", "limited"), 3);
}

#[test]
fn local_and_global_rules_mix_and_shadow_works_for_both() {
    let mut f = Fixture::new(
        json!({"domain": "api", "rate_limit_service": {"cluster": "rls"},
        "response": {"shadow_header": "x-shadow"},
        "rules": [
            {"name": "local", "limit": {"requests_per_unit": 2, "unit": "minute"}},
            {"name": "global", "mode": "global", "key": ["method"], "cost": 2},
            {"name": "trial", "mode": "global", "shadow": true},
        ]}),
    );
    // Two costs: two calls.
    let mut s = f.start(get());
    assert_eq!(s.host.grpc_calls.len(), 2);
    let trial = &s.host.grpc_calls[1].message;
    assert!(!trial.ends_with(&[0x18, 0x02]), "cost 1: no hits_addend");
    assert!(s.host.grpc_calls[0].message.ends_with(&[0x18, 0x02]));
    f.answer(&mut s, 1, Ok(&answer(&[(true, 1, 0, 60)])));
    assert_eq!(s.host.resumed, 0, "still waiting for the other call");
    f.answer(&mut s, 0, Ok(OK));
    assert_eq!(s.host.resumed, 1);
    s.filter.on_response_headers(&mut s.host, true);
    assert_eq!(s.host.all(Headers::Response, "x-shadow"), ["trial"]);
    // The global rule refuses: the local token is given back.
    let mut s = f.start(get());
    f.answer(&mut s, 0, Ok(&answer(&[(true, 4, 0, 60)])));
    assert!(s.host.local_reply.is_some());
    assert_eq!(f.stat("local", "allowed"), 1);
    // Remembered: refused with no call at all, the local token given back again.
    let s = f.start(get());
    assert!(s.host.grpc_calls.is_empty());
    assert!(s.host.local_reply.is_some());
    assert_eq!(f.stat("local", "allowed"), 1);
    assert_eq!(f.stat("trial", "shadow_limited"), 2);
}

#[test]
fn a_global_refusal_gives_back_the_tokens_of_a_later_local_rule() {
    let mut f = Fixture::new(
        json!({"domain": "api", "rate_limit_service": {"cluster": "rls"},
        "rules": [
            {"name": "global", "mode": "global"},
            {"name": "local", "limit": {"requests_per_unit": 1, "unit": "minute"}},
        ]}),
    );
    let mut s = f.start(get());
    f.answer(&mut s, 0, Ok(&answer(&[(true, 9, 0, 1)])));
    assert!(s.host.local_reply.is_some());
    f.root.advance(Duration::from_secs(2));
    let mut s = f.start(get());
    f.answer(&mut s, 0, Ok(OK));
    assert_eq!(s.host.resumed, 1, "the local token was given back");
}

#[test]
fn a_local_bucket_in_front_of_a_global_rule_sheds_load_before_any_call() {
    let mut f = Fixture::new(config(json!([{"name": "g",
        "limit": {"requests_per_unit": 2, "unit": "second"}}])));
    let calls: usize = (0..5).map(|_| f.start(get()).host.grpc_calls.len()).sum();
    assert_eq!(calls, 2);
}

#[test]
fn a_global_request_costs_one_clock_read_one_memory_read_and_one_call() {
    // bench/src/configs.rs: rate_limit_global_wasm(), one rule without a key.
    let mut f = Fixture::new(config(json!([{"name": "bench_open"}])));
    for _ in 0..2 {
        let mut s = f.start(get());
        assert_eq!(
            s.host.host_calls(),
            [("now", 1), ("shared_data", 1), ("grpc_call", 1)].into()
        );
        s.host.reset_host_calls();
        f.answer(&mut s, 0, Ok(OK));
        assert_eq!(s.host.host_calls(), [("resume_request", 1)].into());
    }
    // Under a flood, a remembered verdict: no call at all.
    let mut s = f.start(get());
    f.answer(&mut s, 0, Ok(&answer(&[(true, 1, 0, 60)])));
    let s = f.start(get());
    assert_eq!(
        s.host.host_calls(),
        [("now", 1), ("shared_data", 1), ("reply", 1)].into()
    );
}
