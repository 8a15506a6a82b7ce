//! Wasmgate's own rate-limit plugin (the built `rate_limit.wasm`) in global mode, in real
//! Envoys, asking this service over gRPC with counters in a real Redis: a limit shared by
//! two Envoys, each failure of the service and the recovery, and the OVER_LIMIT memory.
//! Run `make wasm` first.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::{get, grpc_cluster, limits_file, Redis, Service};
use test_env::serde_json::{json, Value};
use test_env::{client, Envoy, WasmFilter};

const LIMITS: &str = r#"
domain: wasm-test
descriptors:
  - key: generic_key
    value: shared
    descriptors:
      - key: x-round
        rate_limit: { unit: hour, requests_per_unit: 7 }
  - key: generic_key
    value: per_user
    descriptors:
      - key: x-user
        rate_limit: { unit: hour, requests_per_unit: 3 }
"#;

/// The plugin's configuration: global rules keyed by `x-round` and by `x-user`.
fn config(timeout: &str, failure_mode: &str) -> Value {
    json!({
        "mode": "global",
        "domain": "wasm-test",
        "cleanup_interval": "100ms",
        "rate_limit_service": { "cluster": "ratelimit", "timeout": timeout },
        "rules": [
            { "name": "shared", "key": [{ "header": "x-round" }], "failure_mode": failure_mode },
            { "name": "per_user", "key": [{ "header": "x-user" }], "failure_mode": failure_mode },
        ],
    })
}

/// Envoy with two workers running rate_limit.wasm with `config`, the service at `grpc`.
fn envoy(grpc: SocketAddr, config: Value) -> Envoy {
    Envoy::builder()
        .wasm(WasmFilter::plugin("rate_limit").config(config))
        .cluster(grpc_cluster("ratelimit", grpc))
        .concurrency(2)
        .start()
}

fn status(envoy: &Envoy, headers: &[(&str, &str)]) -> u16 {
    get(&client(), &envoy.url("/"), headers).0
}

/// A plugin stat summed over `envoys`, once their workers have added their counts (each
/// every `cleanup_interval`): waits for `want`, then returns what is there.
fn stat(envoys: &[&Envoy], rule: &str, name: &str, want: u64) -> u64 {
    let name = format!("wasmcustom.rate_limit.wasm-test.{rule}.{name}");
    let total = || envoys.iter().map(|e| e.stat(&name).unwrap_or(0)).sum();
    test_env::poll(Duration::from_secs(5), || {
        Some(total()).filter(|v| *v >= want)
    })
    .unwrap_or_else(total)
}

#[test]
fn two_envoys_share_one_global_limit_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start();
    let service = Service::start(&limits_file(dir.path(), LIMITS), Some(&redis.url()));
    let envoys = [
        envoy(service.grpc, config("5s", "deny")),
        envoy(service.grpc, config("5s", "deny")),
    ];
    let client = client();
    for round in 0..4 {
        let round = format!("round-{round}");
        let mut allowed = [0; 2];
        let mut first_refusal = None;
        for i in 0..20 {
            let which = i % 2;
            let (status, headers) = get(&client, &envoys[which].url("/"), &[("x-round", &round)]);
            match status {
                200 => allowed[which] += 1,
                429 => {
                    first_refusal.get_or_insert(headers);
                }
                other => panic!("{round}: unexpected status {other}"),
            }
        }
        assert_eq!(allowed[0] + allowed[1], 7, "{round}: {allowed:?}");
        assert!(allowed[0] > 0 && allowed[1] > 0, "{round}: {allowed:?}");
        // The refusal speaks of the service's limit, as a local one would of its bucket.
        let headers = first_refusal.expect("refused");
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header("x-ratelimit-limit"), Some("7"));
        assert_eq!(header("x-ratelimit-remaining"), Some("0"));
        let retry: u64 = header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("retry-after");
        assert!((1..=3600).contains(&retry), "retry-after {retry}");
    }
    let [a, b] = &envoys;
    assert_eq!(stat(&[a, b], "shared", "limited", 4 * 13), 4 * 13);
    assert_eq!(stat(&[a, b], "shared", "allowed", 4 * 7), 4 * 7);
}

#[test]
fn an_over_limit_verdict_is_remembered_so_a_flood_costs_one_call_per_proxy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start();
    let service = Service::start(&limits_file(dir.path(), LIMITS), Some(&redis.url()));
    let envoys = [
        envoy(service.grpc, config("5s", "deny")),
        envoy(service.grpc, config("5s", "deny")),
    ];
    let mut statuses = Vec::new();
    for i in 0..200 {
        statuses.push(status(&envoys[i % 2], &[("x-user", "flooder")]));
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 197);
    // 3 allowed calls, then one OVER_LIMIT per Envoy; every other refusal came from the
    // verdict memory that both workers of an Envoy read.
    let calls = service.metric("wasmgate_ratelimit_calls_total");
    assert_eq!(calls, Some(5.0), "service calls for 200 requests");
    let [a, b] = &envoys;
    assert_eq!(stat(&[a, b], "per_user", "remembered", 195), 195);
}

/// A port that accepts connections and never answers: a service too slow for any timeout.
fn black_hole() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind")
}

#[test]
fn slow_service_beyond_the_timeout_follows_the_failure_mode() {
    let hole = black_hole();
    let addr = hole.local_addr().expect("addr");
    let deny = envoy(addr, config("300ms", "deny"));
    let allow = envoy(addr, config("300ms", "allow"));
    let started = Instant::now();
    let (refused, headers) = get(&client(), &deny.url("/"), &[("x-user", "slow")]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout holds"
    );
    assert_eq!(refused, 429);
    assert_eq!(
        headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert_eq!(status(&allow, &[("x-user", "slow")]), 200);
    assert_eq!(stat(&[&deny], "per_user", "service_errors", 1), 1);
    assert_eq!(stat(&[&allow], "per_user", "service_errors", 1), 1);
    assert!(deny.log().contains("gRPC status"), "the log says why");
}

#[test]
fn service_or_redis_down_follows_the_failure_mode_and_limits_return_after_recovery() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = limits_file(dir.path(), LIMITS);
    let mut redis = Redis::start();
    let service = Service::start(&limits, Some(&redis.url()));
    let grpc = service.grpc;
    let deny = envoy(grpc, config("2s", "deny"));
    let allow = envoy(grpc, config("2s", "allow"));
    let user = |name: &'static str| [("x-user", name)];
    assert_eq!(status(&deny, &user("a")), 200);

    // The service stopped: connection refused.
    drop(service);
    assert_eq!(status(&deny, &user("b")), 429);
    assert_eq!(status(&allow, &user("b")), 200);
    let service = Service::start_on(
        &limits,
        Some(&redis.url()),
        &grpc.to_string(),
        "127.0.0.1:0",
    );
    let recovered: Vec<u16> = (0..5).map(|_| status(&deny, &user("a"))).collect();
    assert_eq!(
        recovered,
        [200, 200, 429, 429, 429],
        "a's count survived in Redis"
    );

    // Redis stopped: the service answers UNAVAILABLE.
    let port = redis.port;
    redis.stop();
    assert_eq!(status(&deny, &user("c")), 429);
    assert_eq!(status(&allow, &user("c")), 200);
    let redis = Redis::start_on(port);
    let limited: Vec<u16> = (0..4).map(|_| status(&allow, &user("c"))).collect();
    assert_eq!(limited, [200, 200, 200, 429], "a new Redis counts afresh");
    assert_eq!(stat(&[&deny], "per_user", "service_errors", 2), 2);
    assert_eq!(stat(&[&allow], "per_user", "service_errors", 2), 2);
    drop((service, redis));
}

#[test]
fn shadow_global_rules_mixed_with_local_ones_report_but_never_refuse() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start();
    let service = Service::start(&limits_file(dir.path(), LIMITS), Some(&redis.url()));
    let envoy = envoy(
        service.grpc,
        json!({
            "domain": "wasm-test",
            "rate_limit_service": { "cluster": "ratelimit", "timeout": "5s" },
            "response": { "shadow_header": "x-ratelimit-shadow" },
            "rules": [
                { "name": "local", "limit": { "requests_per_unit": 4, "unit": "hour" } },
                { "name": "per_user", "mode": "global", "shadow": true, "key": [{ "header": "x-user" }] },
            ],
        }),
    );
    let client = client();
    let answers: Vec<(u16, Option<String>)> = (0..6)
        .map(|_| {
            let (status, headers) = get(&client, &envoy.url("/"), &[("x-user", "trial")]);
            let shadow = headers
                .get("x-ratelimit-shadow")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (status, shadow)
        })
        .collect();
    let shadow = Some("per_user".to_owned());
    assert_eq!(
        answers,
        [
            (200, None),
            (200, None),
            (200, None),
            (200, shadow.clone()),
            (429, None),
            (429, None),
        ],
        "the global shadow rule reports from its 4th request; the local rule refuses the 5th"
    );
    assert_eq!(stat(&[&envoy], "per_user", "shadow_limited", 1), 1);
}
