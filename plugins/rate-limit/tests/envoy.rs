//! rate-limit loaded into a real Envoy with two workers, hit by many connections at once.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_env::reqwest::blocking::{Client, Response};
use test_env::{client, Envoy, WasmFilter};

/// Envoy with two workers in front of a direct 200 answer, running rate-limit with `config`.
fn envoy(config: Value) -> Envoy {
    Envoy::builder()
        .wasm(WasmFilter::plugin("rate_limit").config(config))
        .concurrency(2)
        .start()
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn get(client: &Client, envoy: &Envoy, headers: &[(&str, &str)]) -> Response {
    let mut request = client.get(envoy.url("/"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().expect("request through Envoy")
}

/// Send `threads × per_thread` requests, each thread on connections of its own; the
/// request headers come from `headers(thread, i)`. Returns every status.
fn blast(
    envoy: &Envoy,
    path: &str,
    threads: usize,
    per_thread: usize,
    headers: impl Fn(usize, usize) -> Vec<(String, String)> + Send + Sync + 'static,
) -> Vec<u16> {
    let url = envoy.url(path);
    let headers = Arc::new(headers);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let url = url.clone();
            let headers = Arc::clone(&headers);
            thread::spawn(move || {
                let client = client();
                (0..per_thread)
                    .map(|i| {
                        let mut request = client.get(&url);
                        for (name, value) in headers(t, i) {
                            request = request.header(name, value);
                        }
                        request
                            .send()
                            .expect("request through Envoy")
                            .status()
                            .as_u16()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("client thread"))
        .collect()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

fn stat(envoy: &Envoy, rule: &str, name: &str) -> u64 {
    envoy
        .stat(&format!("wasmcustom.rate_limit.default.{rule}.{name}"))
        .unwrap_or_else(|| panic!("Envoy has no stat {rule}.{name}"))
}

/// A stat once it satisfies `done`, or its value after 10 s. Each worker adds its counts to
/// Envoy's stats every `cleanup_interval`, so they trail the traffic by up to that long.
fn settled(envoy: &Envoy, rule: &str, name: &str, done: impl Fn(u64) -> bool) -> u64 {
    let value = || stat(envoy, rule, name);
    test_env::poll(Duration::from_secs(10), || {
        Some(value()).filter(|v| done(*v))
    })
    .unwrap_or_else(value)
}

/// A stat once it reaches `want`, or its value after 10 s.
fn stat_eq(envoy: &Envoy, rule: &str, name: &str, want: u64) -> u64 {
    settled(envoy, rule, name, |v| v == want)
}

/// Connections each worker accepted.
fn connections_per_worker(envoy: &Envoy) -> Vec<u64> {
    let mut per_worker: Vec<(String, u64)> = envoy
        .stats()
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with("listener.127.0.0.1_")
                && name.contains(".worker_")
                && name.ends_with(".downstream_cx_total")
        })
        .collect();
    per_worker.sort();
    per_worker.into_iter().map(|(_, v)| v).collect()
}

#[test]
fn exactly_the_limit_is_allowed_across_both_workers() {
    const LIMIT: usize = 60;
    const SENT: usize = 16 * 15;
    let envoy = envoy(json!({"rules": [
        {"name": "global", "match": {"path": {"exact": "/global"}},
         "limit": {"requests_per_unit": LIMIT, "unit": "minute"}},
        {"name": "per_ip", "match": {"path": {"exact": "/per-ip"}}, "key": ["client_ip"],
         "limit": {"requests_per_unit": LIMIT, "unit": "minute"}},
    ]}));
    for (rule, path) in [("global", "/global"), ("per_ip", "/per-ip")] {
        // 16 threads, each with its own connection, send 15 requests each at once.
        let statuses = blast(&envoy, path, 16, 15, |_, _| Vec::new());
        assert_eq!(statuses.len(), SENT);
        assert_eq!(count(&statuses, 200), LIMIT, "{rule}: {statuses:?}");
        assert_eq!(count(&statuses, 429), SENT - LIMIT, "{rule}");
        assert_eq!(stat_eq(&envoy, rule, "allowed", LIMIT as u64), LIMIT as u64);
        assert_eq!(
            stat_eq(&envoy, rule, "limited", (SENT - LIMIT) as u64),
            (SENT - LIMIT) as u64
        );
        assert_eq!(stat(&envoy, rule, "store_errors"), 0);
    }
    let workers = connections_per_worker(&envoy);
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(
        workers.iter().all(|n| *n > 0),
        "both workers must serve: {workers:?}"
    );
}

#[test]
fn independent_keys_with_headers_and_retry_after() {
    let envoy = envoy(json!({
    "response": {"rate_limit_headers": "always", "headers": [{"name": "x-limited-by", "value": "wasmgate"}]},
    "rules": [{
        "name": "per_key", "key": [{"header": "x-api-key"}],
        "limit": {"requests_per_unit": 2, "unit": "minute"},
    }]}));
    let client = client();
    for key in ["alpha", "beta"] {
        let first = get(&client, &envoy, &[("x-api-key", key)]);
        assert_eq!(first.status(), 200);
        assert_eq!(header(&first, "x-ratelimit-limit").as_deref(), Some("2"));
        assert_eq!(
            header(&first, "x-ratelimit-remaining").as_deref(),
            Some("1")
        );
        let second = get(&client, &envoy, &[("x-api-key", key)]);
        assert_eq!(second.status(), 200);
        assert_eq!(
            header(&second, "x-ratelimit-remaining").as_deref(),
            Some("0")
        );
        let refused = get(&client, &envoy, &[("x-api-key", key)]);
        assert_eq!(refused.status(), 429);
        assert_eq!(
            header(&refused, "x-limited-by").as_deref(),
            Some("wasmgate")
        );
        assert_eq!(
            header(&refused, "x-ratelimit-remaining").as_deref(),
            Some("0")
        );
        let retry: u64 = header(&refused, "retry-after")
            .and_then(|v| v.parse().ok())
            .expect("retry-after in seconds");
        assert!((55..=60).contains(&retry), "retry-after {retry}");
        let reset: u64 = header(&refused, "x-ratelimit-reset")
            .and_then(|v| v.parse().ok())
            .expect("x-ratelimit-reset in seconds");
        assert_eq!(reset, retry);
        assert_eq!(refused.text().unwrap(), "rate limited\n");
    }
    // No key: the rule is skipped.
    for _ in 0..5 {
        assert_eq!(get(&client, &envoy, &[]).status(), 200);
    }
    assert_eq!(stat_eq(&envoy, "per_key", "allowed", 4), 4);
    assert_eq!(stat_eq(&envoy, "per_key", "limited", 2), 2);
}

#[test]
fn buckets_refill_after_the_interval() {
    let envoy = envoy(json!({"rules": [{
        "name": "short", "key": ["client_ip"],
        "limit": {"max_tokens": 3, "tokens_per_fill": 3, "fill_interval": "2s"},
    }]}));
    let client = client();
    let burst = |client: &Client| {
        (0..6)
            .filter(|_| get(client, &envoy, &[]).status() == 200)
            .count()
    };
    let started = Instant::now();
    assert_eq!(burst(&client), 3);
    let refused = get(&client, &envoy, &[]);
    assert_eq!(refused.status(), 429);
    let retry = header(&refused, "retry-after").unwrap_or_default();
    assert!(retry == "1" || retry == "2", "retry-after {retry}");
    thread::sleep(Duration::from_millis(2_100).saturating_sub(started.elapsed()));
    assert_eq!(burst(&client), 3, "a full bucket again after 2 s");
}

#[test]
fn trusted_xff_hops_pick_the_client() {
    // Envoy's default connection manager leaves x-forwarded-for as the client sent it.
    let envoy = envoy(json!({"client_ip": {"xff_hop": 2}, "rules": [{
        "name": "per_client", "key": ["client_ip"],
        "limit": {"requests_per_unit": 1, "unit": "hour"},
    }]}));
    let client = client();
    let via = |xff: &str| get(&client, &envoy, &[("x-forwarded-for", xff)]).status();
    // The proxy in front of Envoy appended 10.0.0.9; the one before it saw 198.51.100.1.
    assert_eq!(via("1.2.3.4, 198.51.100.1, 10.0.0.9"), 200);
    assert_eq!(
        via("5.6.7.8, 198.51.100.1, 10.0.0.9"),
        429,
        "spoofed hops are ignored"
    );
    assert_eq!(via("198.51.100.2, 10.0.0.9"), 200, "another client");
    assert_eq!(via("198.51.100.2, 10.0.0.9"), 429);
}

#[test]
fn without_xff_trust_the_connection_is_the_client() {
    // At the edge Envoy takes the client from the connection (use_remote_address), and that
    // is what `source.address` holds: a forged x-forwarded-for changes nothing.
    let mut bootstrap = Envoy::builder()
        .wasm(WasmFilter::plugin("rate_limit").config(json!({"rules": [{
            "name": "per_client", "key": ["client_ip"],
            "limit": {"requests_per_unit": 2, "unit": "hour"},
        }]})))
        .concurrency(2)
        .to_json();
    let hcm = bootstrap
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .expect("the connection manager");
    hcm["use_remote_address"] = json!(true);
    let envoy = Envoy::builder().bootstrap(bootstrap).start();
    let client = client();
    let statuses: Vec<u16> = ["198.51.100.1", "198.51.100.2", "198.51.100.3", ""]
        .iter()
        .map(|xff| {
            let headers: &[(&str, &str)] = if xff.is_empty() {
                &[]
            } else {
                &[("x-forwarded-for", xff)]
            };
            get(&client, &envoy, headers).status().as_u16()
        })
        .collect();
    assert_eq!(statuses, vec![200, 200, 429, 429]);
}

#[test]
fn shadow_mode_lets_everything_through_and_counts() {
    let envoy = envoy(json!({
        "response": {"shadow_header": "x-ratelimit-shadow"},
        "rules": [{"name": "trial", "shadow": true, "limit": {"requests_per_unit": 5, "unit": "minute"}}],
    }));
    let statuses = blast(&envoy, "/", 4, 5, |_, _| Vec::new());
    assert_eq!(count(&statuses, 200), 20);
    assert_eq!(stat_eq(&envoy, "trial", "allowed", 5), 5);
    assert_eq!(stat_eq(&envoy, "trial", "shadow_limited", 15), 15);
    assert_eq!(stat(&envoy, "trial", "limited"), 0);
    let response = get(&client(), &envoy, &[]);
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-ratelimit-shadow").as_deref(),
        Some("trial")
    );
}

#[test]
fn the_key_cap_holds_under_a_burst_of_unique_keys() {
    const MAX_KEYS: u64 = 64;
    let envoy = envoy(json!({"cleanup_interval": "100ms", "rules": [{
        "name": "per_key", "key": [{"header": "x-api-key"}], "max_keys": MAX_KEYS,
        "limit": {"requests_per_unit": 10_000, "unit": "minute"},
    }]}));
    let rss_before = rss_kb(&envoy);
    let statuses = blast(&envoy, "/", 8, 250, |t, i| {
        vec![("x-api-key".to_owned(), format!("key-{t}-{i}"))]
    });
    assert_eq!(count(&statuses, 200), 2000);
    // Keys beyond the cap share the overflow bucket instead of getting entries of their own.
    let overflowed = settled(&envoy, "per_key", "overflowed", |v| v >= 2000 - MAX_KEYS);
    assert!(overflowed >= 2000 - MAX_KEYS, "overflowed {overflowed}");
    let live = settled(&envoy, "per_key", "live_keys", |v| v > 0);
    assert!(live > 0 && live <= MAX_KEYS, "live keys {live}");
    let rss_after = rss_kb(&envoy);
    // 2000 keys held one by one would be small too; what matters is that nothing per key
    // is added, which the gauge and the overflow count show. This catches gross leaks.
    assert!(
        rss_after < rss_before + 64 * 1024,
        "Envoy grew from {rss_before} kB to {rss_after} kB"
    );
}

fn rss_kb(envoy: &Envoy) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", envoy.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    let cases = [
        (
            json!({"mode": "remote"}),
            "mode: unknown variant `remote`, expected `local` or `global`",
        ),
        (
            json!({"mode": "global", "domain": "api", "rules": [{"name": "g"}]}),
            "rate_limit_service: required: rules[0] is global",
        ),
        (
            json!({"mode": "global", "rate_limit_service": {"cluster": "rls"}, "rules": [{"name": "g"}]}),
            "domain: required: rules[0] is global",
        ),
        (
            json!({"rate_limit_service": {"cluster": "rate limit"}}),
            "rate_limit_service.cluster: \"rate limit\" is not an Envoy cluster name",
        ),
        (
            json!({"rules": [{"limit": {"requests_per_unit": 1, "unit": "minute"}, "match": {"path": {"regex": "("}}}]}),
            "rules[0].match.path.regex: invalid regex",
        ),
        (
            json!({"rules": [{"limit": {"max_tokens": 2, "fill_interval": "1s"}, "cost": 3}]}),
            "rules[0].cost: 3 is not from 1 to the bucket's capacity (2)",
        ),
    ];
    for (config, message) in cases {
        let err = Envoy::builder()
            .wasm(WasmFilter::plugin("rate_limit").config(config))
            .try_start()
            .expect_err("Envoy must refuse a plugin whose configuration is invalid");
        assert!(
            err.log.contains(&format!(
                "rate-limit: invalid plugin configuration: {message}"
            )),
            "the log must name the field ({message}): {err}"
        );
    }
}

#[test]
fn path_suffixes_select_requests_and_cookies_key_them() {
    let envoy = envoy(json!({"rules": [{
        "name": "json", "match": {"path": {"suffix": ".json"}}, "key": [{"cookie": "session"}],
        "limit": {"requests_per_unit": 1, "unit": "hour"},
    }]}));
    let client = client();
    let status = |path: &str, cookie: &str| {
        client
            .get(envoy.url(path))
            .header("cookie", cookie)
            .send()
            .expect("request through Envoy")
            .status()
            .as_u16()
    };
    assert_eq!(status("/a.json?x=1", "theme=dark; session=\"a\""), 200);
    assert_eq!(
        status("/b.json", "session=a"),
        429,
        "one key, quoted or not"
    );
    assert_eq!(status("/b.json", "session=b"), 200, "another key");
    assert_eq!(status("/a.html", "session=a"), 200, "not a .json path");
    assert_eq!(status("/a.html", "session=a"), 200);
}

#[test]
fn the_combined_module_hosts_rate_limit_by_root_id() {
    let envoy = Envoy::builder()
        .wasm(
            WasmFilter::plugin("wasmgate_all")
                .root_id("rate-limit")
                .vm_id("wasmgate")
                .config(json!({"rules": [{
                    "name": "combined", "limit": {"requests_per_unit": 2, "unit": "minute"},
                }]})),
        )
        .concurrency(2)
        .start();
    let statuses = blast(&envoy, "/", 4, 2, |_, _| Vec::new());
    assert_eq!(count(&statuses, 200), 2, "{statuses:?}");
    assert_eq!(stat_eq(&envoy, "combined", "limited", 6), 6);
}

#[test]
fn a_global_rule_whose_cluster_envoy_does_not_know_follows_its_failure_mode() {
    for (mode, want) in [("deny", 429), ("allow", 200)] {
        let envoy = envoy(json!({
            "mode": "global", "domain": "api",
            "rate_limit_service": {"cluster": "nowhere"},
            "rules": [{"name": "g", "failure_mode": mode}],
        }));
        let response = get(&client(), &envoy, &[]);
        assert_eq!(response.status().as_u16(), want, "failure_mode {mode}");
        assert!(
            envoy.wait_for_log(
                "rule g: rate limit service: cannot call cluster \"nowhere\"",
                Duration::from_secs(5)
            ),
            "the log names the cluster"
        );
    }
}

#[test]
fn header_prefix_suffix_and_host_patterns_pick_the_requests_a_rule_counts() {
    let one_an_hour = json!({"requests_per_unit": 1, "unit": "hour"});
    let envoy = envoy(json!({"rules": [
        {"name": "beta", "match": {"headers": [{"name": "X-Client", "suffix": "-beta"}]},
         "limit": one_an_hour},
        {"name": "test_keys", "match": {"headers": [{"name": "x-api-key", "prefix": "test_"}]},
         "limit": one_an_hour},
        {"name": "org", "match": {"hosts": ["API.Example.com", {"suffix": ".Example.ORG"}]},
         "limit": one_an_hour},
        {"name": "posts", "match": {"methods": ["post"]}, "limit": one_an_hour},
    ]}));
    let client = client();
    let status = |headers: &[(&str, &str)]| get(&client, &envoy, headers).status().as_u16();
    // Each pair: the first request matches a rule and takes its only token, the second is
    // refused by it; requests that do not match are never counted.
    assert_eq!(status(&[("x-client", "app-beta")]), 200);
    assert_eq!(status(&[("x-client", "web-beta")]), 429, "suffix -beta");
    assert_eq!(status(&[("x-client", "app-beta-2")]), 200, "not a suffix");
    assert_eq!(status(&[("x-client", "beta")]), 200);
    assert_eq!(status(&[("x-api-key", "test_1")]), 200);
    assert_eq!(status(&[("x-api-key", "test_2")]), 429, "prefix test_");
    assert_eq!(status(&[("x-api-key", "prod_test_1")]), 200, "not a prefix");
    assert_eq!(status(&[("host", "www.example.org:8080")]), 200);
    assert_eq!(
        status(&[("host", "API.EXAMPLE.ORG")]),
        429,
        "host suffix, any case, port or none"
    );
    assert_eq!(status(&[("host", "example.org.evil.test")]), 200);
    assert_eq!(status(&[("host", "example.org")]), 200, "not .example.org");
    // The exact host shares the rule's one bucket, already empty.
    assert_eq!(
        status(&[("host", "api.example.com:443")]),
        429,
        "exact host"
    );
    assert_eq!(status(&[("host", "api.example.com.test")]), 200);
    let post = |n| {
        client
            .post(envoy.url(&format!("/{n}")))
            .send()
            .expect("request through Envoy")
            .status()
            .as_u16()
    };
    assert_eq!((post(1), post(2)), (200, 429), "methods [post] is POST");
    assert_eq!(stat_eq(&envoy, "beta", "limited", 1), 1);
    assert_eq!(stat_eq(&envoy, "test_keys", "limited", 1), 1);
    assert_eq!(stat_eq(&envoy, "org", "limited", 2), 2);
    assert!(
        envoy.wait_for_log(
            r#"rate-limit: configuration: rules[3].match.methods[0]: "post" is read as "POST""#,
            Duration::from_secs(5)
        ),
        "the lower-case method is warned about in Envoy's log"
    );
}
