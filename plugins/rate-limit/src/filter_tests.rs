//! Filter flows of local rules on `FakeHost`, and the host calls a request costs.

use super::*;
use crate::shared::SEED_KEY;
use crate::store::PROBES;
use serde_json::{json, Value};
use wasmgate_glue::{FakeHost, FakeProxy, HostError, LocalReply};

/// A configured and started plugin, and the host every request runs on.
struct Fixture {
    plugin: RateLimit,
    host: FakeHost,
}

impl Fixture {
    fn new(config: Value) -> Fixture {
        let mut host = FakeProxy::new().root();
        let mut plugin = RateLimit::configure(config.to_string().as_bytes(), &mut host).unwrap();
        plugin.on_start(&mut host);
        Fixture { plugin, host }
    }

    /// Run one request through a new filter: the local reply if it was refused, and
    /// the response headers the filter added otherwise.
    fn send(&mut self, request: FakeHost) -> Result<Vec<(String, String)>, LocalReply> {
        let mut host = self.host.proxy.adopt(request);
        let mut filter = self.plugin.create_filter(7);
        let action = filter.on_request_headers(&mut host, true);
        let action = host.settle(action);
        match host.local_reply.take() {
            Some(reply) => {
                assert_eq!(action, Action::Pause);
                Err(reply)
            }
            None => {
                assert_eq!(action, Action::Continue);
                host.response.clear();
                filter.on_response_headers(&mut host, true);
                Ok(host.response.clone())
            }
        }
    }

    fn allowed(&mut self, request: FakeHost, count: usize) -> usize {
        (0..count)
            .filter(|_| self.send(request.clone()).is_ok())
            .count()
    }

    fn stat(&mut self, rule: &str, stat: &str) -> i64 {
        for active in &self.plugin.shared.rules {
            active.stats.flush(&mut self.host);
        }
        self.host
            .metric(&format!("rate_limit.default.{rule}.{stat}"))
            .unwrap_or_else(|| panic!("no stat {rule}.{stat}"))
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn get(path: &str) -> FakeHost {
    FakeHost::new()
        .with_request("GET", path)
        .with_property(&["source", "address"], b"10.0.0.1:1234")
}

#[test]
fn allows_exactly_the_limit_then_refuses_with_retry_after_and_headers() {
    let mut f = Fixture::new(json!({"rules": [{
        "name": "per_ip", "key": ["client_ip"],
        "limit": {"requests_per_unit": 3, "unit": "minute"},
    }]}));
    assert_eq!(f.allowed(get("/"), 10), 3);
    f.host.advance(Duration::from_secs(20));
    let reply = f.send(get("/")).unwrap_err();
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body, b"rate limited\n");
    assert_eq!(header(&reply.headers, "retry-after"), Some("40"));
    assert_eq!(header(&reply.headers, "x-ratelimit-limit"), Some("3"));
    assert_eq!(header(&reply.headers, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&reply.headers, "x-ratelimit-reset"), Some("40"));
    assert_eq!(
        (f.stat("per_ip", "allowed"), f.stat("per_ip", "limited")),
        (3, 8)
    );
    f.host.advance(Duration::from_secs(40));
    assert_eq!(f.allowed(get("/"), 10), 3, "refilled after the minute");
}

#[test]
fn a_failing_clock_refuses_every_request_even_with_failure_mode_allow() {
    let mut f = Fixture::new(json!({"rules": [{
        "name": "per_ip", "key": ["client_ip"], "failure_mode": "allow",
        "limit": {"requests_per_unit": 3, "unit": "minute"},
    }]}));
    f.host.proxy.state().fail_clock = Some(HostError::Failed("clock".into()));
    for _ in 0..2 {
        let reply = f.send(get("/")).unwrap_err();
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, b"rate-limit: clock unavailable\n");
    }
    assert!(f
        .host
        .logged(LogLevel::Error, "#7 rate-limit: cannot read the clock"));
    assert_eq!(f.stat("per_ip", "allowed"), 0);
    // The tick hands the counts to Envoy, and skips the sweep instead of collecting keys
    // as of 1970.
    f.plugin.on_tick(&mut f.host);
    assert_eq!(f.host.metric("rate_limit.clock_errors"), Some(2));
    assert!(f.host.logged(LogLevel::Warn, "idle keys not collected"));
    f.host.proxy.state().fail_clock = None;
    assert_eq!(f.allowed(get("/"), 5), 3, "no tokens were taken meanwhile");
}

/// The shared-data slot that holds the bucket of `x-api-key: victim` after one request.
fn slot_of_victim(mut host: FakeHost) -> String {
    let config = json!({"rules": [{"name": "k", "key": [{"header": "x-api-key"}],
        "limit": {"requests_per_unit": 5, "unit": "minute"}}]});
    let mut plugin = RateLimit::configure(config.to_string().as_bytes(), &mut host).unwrap();
    plugin.on_start(&mut host);
    let mut request = host
        .proxy
        .adopt(get("/").with_header("x-api-key", "victim"));
    plugin
        .create_filter(1)
        .on_request_headers(&mut request, true);
    let mut taken: Vec<_> = request
        .proxy
        .peek()
        .shared
        .iter()
        .filter(|(_, (value, _))| value.len() > 1)
        .map(|(key, _)| key.clone())
        .collect();
    taken.retain(|k| k != SEED_KEY);
    assert_eq!(taken.len(), 1, "{taken:?}");
    taken.remove(0)
}

#[test]
fn the_slot_hash_is_keyed_by_a_random_seed_shared_through_shared_data() {
    // Two Envoys draw different seeds: where a key lands cannot be computed in advance.
    let slots: std::collections::HashSet<_> = (0..4)
        .map(|i| {
            let host = FakeHost::new();
            host.proxy.state().random_drawn = i * 1_000;
            slot_of_victim(host)
        })
        .collect();
    assert!(slots.len() > 1, "the seed must move the key: {slots:?}");
    // Workers of one Envoy share the seed the first one stored, whatever they draw.
    let mut first = FakeHost::new();
    RateLimit::configure(b"{}", &mut first).unwrap();
    let stored = first.proxy.shared(SEED_KEY).unwrap();
    assert_eq!(stored.len(), 16);
    let mut worker = FakeHost::new();
    worker.proxy.state().shared = first.proxy.peek().shared.clone();
    worker.proxy.state().random_drawn = 5_000;
    RateLimit::configure(b"{}", &mut worker).unwrap();
    assert_eq!(worker.proxy.shared(SEED_KEY).unwrap(), stored);
    assert_eq!(slot_of_victim(worker), slot_of_victim(first));
}

#[test]
fn no_randomness_refuses_the_configuration() {
    let mut host = FakeHost::new();
    host.proxy.state().fail_random = Some(HostError::Failed("random_get".into()));
    let err = RateLimit::configure(b"{}", &mut host).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot get random bytes for the key-hash seed"),
        "{err}"
    );
    assert!(
        !host.proxy.peek().shared.contains_key(SEED_KEY),
        "no fixed seed stored"
    );
}

#[test]
fn keys_do_not_share_buckets_and_missing_keys_follow_the_rule() {
    let mut f = Fixture::new(json!({"rules": [
        {"name": "skip", "key": [{"header": "x-api-key"}], "match": {"path": {"prefix": "/skip"}},
         "limit": {"requests_per_unit": 2, "unit": "hour"}},
        {"name": "shared", "key": [{"query": "key"}, {"cookie": "sid"}], "missing_key": "shared",
         "match": {"path": {"prefix": "/shared"}}, "limit": {"requests_per_unit": 2, "unit": "hour"}},
    ]}));
    let with_key = |path: &str, key: &str| get(path).with_header("x-api-key", key);
    assert_eq!(f.allowed(with_key("/skip", "a"), 5), 2);
    assert_eq!(f.allowed(with_key("/skip", "b"), 5), 2);
    assert_eq!(f.allowed(get("/skip"), 5), 5, "no key: the rule is skipped");
    let composite = |q: &str, c: &str| get(&format!("/shared?{q}")).with_header("cookie", c);
    assert_eq!(f.allowed(composite("key=1", "sid=x"), 5), 2);
    assert_eq!(
        f.allowed(composite("key=%31", "a=b; sid=x"), 5),
        0,
        "same key, decoded"
    );
    assert_eq!(f.allowed(composite("key=1", "sid=y"), 5), 2);
    assert_eq!(
        f.allowed(composite("key=2", "other=1"), 5),
        2,
        "the shared missing key"
    );
    assert_eq!(f.allowed(get("/shared"), 5), 0, "same missing key");
}

#[test]
fn conditions_select_requests_and_every_matching_rule_must_allow() {
    let mut f = Fixture::new(json!({"rules": [
        {"name": "all", "limit": {"requests_per_unit": 5, "unit": "minute"}},
        {"name": "posts", "limit": {"requests_per_unit": 1, "unit": "minute"},
         "match": {"methods": ["post"], "path": {"regex": "^/api/v[0-9]+/"},
                   "hosts": ["api.example.com"], "headers": [{"name": "x-tier", "exact": "free"}]}},
    ]}));
    let post = |authority: &str, tier: &str| {
        let mut host = get("/api/v2/items?x=1")
            .with_request("POST", "/api/v2/items")
            .with_header("x-tier", tier);
        host.set_header(Headers::Request, ":authority", authority);
        host
    };
    // Not matched by "posts": a GET, a paid tier.
    assert!(f.send(get("/api/v2/items")).is_ok());
    assert!(f.send(post("API.example.com:8443", "paid")).is_ok());
    assert!(f.send(post("other.example.com", "free")).is_ok());
    assert!(f.send(post("API.example.com:8443", "free")).is_ok());
    // "posts" refuses, and "all" gets its token back.
    let reply = f.send(post("api.example.com", "free")).unwrap_err();
    assert_eq!(header(&reply.headers, "x-ratelimit-limit"), Some("1"));
    assert_eq!(f.stat("posts", "limited"), 1);
    assert_eq!(
        f.allowed(get("/"), 10),
        1,
        "5 - 4 allowed, the refused one refunded"
    );
    assert_eq!(f.stat("all", "allowed"), 5);
}

#[test]
fn a_cost_above_one_and_a_raw_bucket() {
    let mut f = Fixture::new(json!({"rules": [{"name": "b", "cost": 2,
        "limit": {"max_tokens": 5, "tokens_per_fill": 1, "fill_interval": "10s"}}]}));
    assert_eq!(f.allowed(get("/"), 5), 2);
    let reply = f.send(get("/")).unwrap_err();
    assert_eq!(header(&reply.headers, "retry-after"), Some("10"));
    assert_eq!(header(&reply.headers, "x-ratelimit-remaining"), Some("1"));
    f.host.advance(Duration::from_secs(10));
    assert_eq!(f.allowed(get("/"), 5), 1);
}

#[test]
fn shadow_rules_let_everything_through_count_and_report() {
    let mut f = Fixture::new(json!({
    "response": {"shadow_header": "x-shadow-limited"},
    "rules": [
        {"name": "trial", "shadow": true, "limit": {"requests_per_unit": 2, "unit": "minute"}},
        {"name": "trial2", "shadow": true, "limit": {"requests_per_unit": 3, "unit": "minute"}},
    ]}));
    let answers: Vec<_> = (0..5).map(|_| f.send(get("/")).unwrap()).collect();
    assert_eq!(header(&answers[1], "x-shadow-limited"), None);
    assert_eq!(header(&answers[2], "x-shadow-limited"), Some("trial"));
    assert_eq!(
        header(&answers[4], "x-shadow-limited"),
        Some("trial,trial2")
    );
    assert_eq!(f.stat("trial", "shadow_limited"), 3);
    assert_eq!(f.stat("trial2", "shadow_limited"), 2);
    assert_eq!(f.stat("trial", "limited"), 0);
}

#[test]
fn allowed_responses_describe_the_most_restrictive_rule_when_asked() {
    let config = |when: &str| {
        json!({"response": {"rate_limit_headers": when}, "rules": [
            {"name": "wide", "limit": {"requests_per_unit": 100, "unit": "minute"}},
            {"name": "narrow", "limit": {"max_tokens": 10, "tokens_per_fill": 1, "fill_interval": "2s"}},
            {"name": "quiet", "shadow": true, "limit": {"requests_per_unit": 1, "unit": "minute"}},
        ]})
    };
    let mut f = Fixture::new(config("always"));
    let headers = f.send(get("/")).unwrap();
    assert_eq!(header(&headers, "x-ratelimit-limit"), Some("10"));
    assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("9"));
    assert_eq!(header(&headers, "x-ratelimit-reset"), Some("2"));
    let mut f = Fixture::new(config("refused"));
    assert_eq!(f.send(get("/")).unwrap(), Vec::new());
}

#[test]
fn custom_refusals_and_never_sending_rate_limit_headers() {
    let mut f = Fixture::new(json!({
        "response": {"status": 503, "body": "slow down", "rate_limit_headers": "never",
                     "headers": [{"name": "Content-Type", "value": "text/plain"}]},
        "rules": [{"limit": {"requests_per_unit": 1, "unit": "second"}}]}));
    f.send(get("/")).unwrap();
    let reply = f.send(get("/")).unwrap_err();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body, b"slow down");
    assert_eq!(header(&reply.headers, "content-type"), Some("text/plain"));
    assert_eq!(header(&reply.headers, "retry-after"), Some("1"));
    assert_eq!(header(&reply.headers, "x-ratelimit-limit"), None);
}

#[test]
fn store_failures_follow_the_failure_mode_and_are_counted() {
    let mut f = Fixture::new(json!({"rules": [
        {"name": "open", "limit": {"requests_per_unit": 1, "unit": "minute"}},
        {"name": "closed", "failure_mode": "deny", "match": {"path": {"exact": "/closed"}},
         "limit": {"requests_per_unit": 1, "unit": "minute"}},
    ]}));
    f.host.proxy.state().fail_shared_writes = Some(HostError::Failed("boom".into()));
    assert_eq!(f.allowed(get("/"), 3), 3);
    assert_eq!(f.stat("open", "store_errors"), 3);
    let reply = f.send(get("/closed")).unwrap_err();
    assert_eq!(reply.status, 429);
    assert_eq!(header(&reply.headers, "retry-after"), Some("1"));
    assert_eq!(f.stat("closed", "store_errors"), 1);
    assert!(f.host.logged(
        LogLevel::Warn,
        "#7 rate-limit: rule closed: shared data write failed"
    ));
}

#[test]
fn the_client_is_found_through_trusted_xff_hops() {
    let mut f = Fixture::new(json!({"client_ip": {"xff_hop": 2}, "rules": [{
        "key": ["client_ip"], "limit": {"requests_per_unit": 1, "unit": "minute"}}]}));
    let via = |xff: &str| get("/").with_header("x-forwarded-for", xff);
    assert!(f.send(via("spoofed, 198.51.100.1, 10.0.0.9")).is_ok());
    assert!(f.send(via("other-spoof, 198.51.100.1, 10.0.0.9")).is_err());
    assert!(f.send(via("198.51.100.2, 10.0.0.9")).is_ok());
    // Too few hops: the connection's address.
    assert!(f.send(via("10.0.0.9")).is_ok());
    assert!(f.send(get("/")).is_err());
}

#[test]
fn the_cap_holds_and_idle_keys_are_collected_on_ticks() {
    let mut f = Fixture::new(json!({"cleanup_interval": "100ms", "rules": [{
        "name": "capped", "key": [{"header": "x-api-key"}], "max_keys": 16,
        "limit": {"requests_per_unit": 1000, "unit": "minute"}}]}));
    assert_eq!(
        f.host.proxy.state().tick_period,
        Some(Duration::from_millis(100))
    );
    let entries = f.host.proxy.peek().shared.len();
    assert_eq!(
        entries,
        16 + 1 + 1,
        "slots, the overflow bucket, the key-hash seed"
    );
    let allowed = (0..20_000)
        .filter(|i| {
            f.send(get("/").with_header("x-api-key", &i.to_string()))
                .is_ok()
        })
        .count();
    // 16 keys with a slot each; the rest share the overflow bucket and its 1000 tokens.
    assert_eq!(allowed, 16 + 1000);
    assert_eq!(
        f.host.proxy.peek().shared.len(),
        entries,
        "a flood of keys adds no entries"
    );
    assert_eq!(f.stat("capped", "overflowed"), 20_000 - 16);
    f.plugin.on_tick(&mut f.host);
    assert_eq!(f.stat("capped", "live_keys"), 16);
    f.host.advance(Duration::from_secs(60));
    f.plugin.on_tick(&mut f.host);
    assert_eq!(f.stat("capped", "live_keys"), 0);
    assert!(f
        .host
        .proxy
        .peek()
        .shared
        .iter()
        .filter(|(key, _)| !key.ends_with("/overflow") && *key != SEED_KEY)
        .all(|(_, (value, _))| value == crate::bucket::EMPTY_SLOT));
}

#[test]
fn sweeps_spread_over_ticks() {
    let mut f = Fixture::new(json!({"rules": [
        {"name": "big", "key": ["path"], "max_keys": 1500, "limit": {"requests_per_unit": 5, "unit": "minute"}},
        {"name": "small", "key": ["path"], "max_keys": 10, "limit": {"requests_per_unit": 5, "unit": "minute"}},
    ]}));
    f.send(get("/a")).unwrap();
    f.plugin.on_tick(&mut f.host);
    assert_eq!(
        f.host.metric("rate_limit.default.big.live_keys"),
        Some(0),
        "not yet swept"
    );
    f.plugin.on_tick(&mut f.host);
    assert_eq!(f.stat("big", "live_keys"), 1);
    assert_eq!(f.stat("small", "live_keys"), 1);
}

#[test]
fn a_config_error_names_the_field() {
    let err = RateLimit::configure(
        br#"{"rules":[{"limit":{"requests_per_unit":1,"unit":"minute"},"match":{"path":{"regex":"("}}}]}"#,
        &mut FakeHost::new(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("rules[0].match.path.regex: invalid regex"),
        "{err}"
    );
}

/// The host calls of one request through a started plugin, by phase.
fn calls_per_request(f: &mut Fixture, request: FakeHost) -> (FakeHost, FakeHost) {
    let mut host = f.host.proxy.adopt(request);
    let mut filter = f.plugin.create_filter(3);
    assert_eq!(filter.on_request_headers(&mut host, true), Action::Continue);
    let request = host.clone();
    host.reset_host_calls();
    filter.on_response_headers(&mut host, true);
    (request, host)
}

#[test]
fn a_global_limit_costs_the_clock_one_read_and_one_write() {
    // bench/src/configs.rs: rate_limit_wasm(), a bucket never emptied.
    let mut f = Fixture::new(json!({ "rules": [{ "limit": {
        "max_tokens": 1_000_000_000u64,
        "tokens_per_fill": 1_000_000_000u64,
        "fill_interval": "1s",
    }}]}));
    for _ in 0..2 {
        let (request, response) = calls_per_request(&mut f, get("/"));
        assert_eq!(
            request.host_calls(),
            [("now", 1), ("shared_data", 1), ("set_shared_data", 1)].into()
        );
        assert_eq!(response.calls_made(), 0);
    }
}

#[test]
fn a_client_ip_key_adds_one_property_read() {
    let mut f = Fixture::new(json!({ "rules": [{
        "key": ["client_ip"],
        "limit": { "requests_per_unit": 100, "unit": "second" },
    }]}));
    // A new key looks at every slot it may sit in before taking its home slot.
    let (first, _) = calls_per_request(&mut f, get("/"));
    assert_eq!(
        first.host_calls(),
        [
            ("now", 1),
            ("property", 1),
            ("shared_data", PROBES),
            ("set_shared_data", 1)
        ]
        .into()
    );
    // A known key is found in its home slot.
    let (again, _) = calls_per_request(&mut f, get("/"));
    assert_eq!(again.host_calls()["property"], 1);
    assert_eq!(again.calls_made(), 4);
}
