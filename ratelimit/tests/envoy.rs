//! Envoy's own native `envoy.filters.http.ratelimit` filter, a client nobody here wrote,
//! limited by the service with counters in a real Redis.

mod common;

use common::{envoy, get, limits_file, Redis, Service};
use test_env::serde_json::json;
use test_env::{client, Upstream};

const LIMITS: &str = r#"
domain: envoy-test
descriptors:
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 3, name: per-user }
  - key: round
    rate_limit: { unit: hour, requests_per_unit: 7 }
"#;

fn header_action(header: &str, key: &str) -> test_env::serde_json::Value {
    json!([{ "actions": [{ "request_headers": { "header_name": header, "descriptor_key": key } }] }])
}

#[test]
fn envoy_native_filter_is_limited_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start();
    let service = Service::start(&limits_file(dir.path(), LIMITS), Some(&redis.url()));
    let upstream = Upstream::start();
    let envoy = envoy(
        service.grpc,
        &upstream,
        "envoy-test",
        header_action("x-user", "user"),
        true,
    );
    let client = client();
    let url = envoy.url("/hello");

    let alice: Vec<u16> = (0..5)
        .map(|_| get(&client, &url, &[("x-user", "alice")]).0)
        .collect();
    assert_eq!(alice, [200, 200, 200, 429, 429]);
    // A key with no value in the limits file counts each value on its own.
    let (status, headers) = get(&client, &url, &[("x-user", "bob")]);
    assert_eq!(status, 200);
    // Envoy builds X-RateLimit-* from current_limit, limit_remaining and duration_until_reset.
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
    };
    assert!(
        header("x-ratelimit-limit").starts_with("3, 3;w=3600"),
        "{headers:?}"
    );
    assert_eq!(header("x-ratelimit-remaining"), "2");
    let reset: u64 = header("x-ratelimit-reset").parse().expect("seconds");
    assert!((1..=3600).contains(&reset), "reset {reset}");
    let (status, headers) = get(&client, &url, &[("x-user", "alice")]);
    assert_eq!(status, 429);
    assert_eq!(
        headers.get("x-envoy-ratelimited").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    // Only allowed requests reached the upstream: 3 of alice's and bob's one.
    assert_eq!(upstream.echoed(), 4);
    assert_eq!(
        envoy.stat("cluster.upstream.ratelimit.over_limit"),
        Some(3),
        "Envoy counts the OVER_LIMIT answers it got"
    );
    assert_eq!(service.metric("wasmgate_ratelimit_calls_total"), Some(7.0));
    assert_eq!(
        service.metric("wasmgate_ratelimit_over_limit_total"),
        Some(3.0)
    );
}

#[test]
fn two_envoys_share_one_limit_through_the_service_and_redis() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start();
    let service = Service::start(&limits_file(dir.path(), LIMITS), Some(&redis.url()));
    let upstream = Upstream::start();
    let envoys = [
        envoy(
            service.grpc,
            &upstream,
            "envoy-test",
            header_action("x-round", "round"),
            true,
        ),
        envoy(
            service.grpc,
            &upstream,
            "envoy-test",
            header_action("x-round", "round"),
            true,
        ),
    ];
    let client = client();
    for round in 0..4 {
        let round = format!("round-{round}");
        let mut allowed = [0; 2];
        for i in 0..20 {
            let which = i % 2;
            let (status, _) = get(&client, &envoys[which].url("/"), &[("x-round", &round)]);
            match status {
                200 => allowed[which] += 1,
                429 => {}
                other => panic!("{round}: unexpected status {other}"),
            }
        }
        assert_eq!(allowed[0] + allowed[1], 7, "{round}: {allowed:?}");
        assert!(
            allowed[0] > 0 && allowed[1] > 0,
            "{round}: both Envoys got some: {allowed:?}"
        );
    }
}

#[test]
fn redis_down_answers_unavailable_and_envoys_failure_mode_decides() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut redis = Redis::start();
    let service = Service::start(&limits_file(dir.path(), LIMITS), Some(&redis.url()));
    let upstream = Upstream::start();
    let deny = envoy(
        service.grpc,
        &upstream,
        "envoy-test",
        header_action("x-user", "user"),
        true,
    );
    let allow = envoy(
        service.grpc,
        &upstream,
        "envoy-test",
        header_action("x-user", "user"),
        false,
    );
    let client = client();
    let user = [("x-user", "carol")];
    assert_eq!(get(&client, &deny.url("/"), &user).0, 200);
    assert_eq!(service.get("/ready").0, 200);

    redis.stop();
    let started = std::time::Instant::now();
    let (denied, _) = get(&client, &deny.url("/"), &user);
    eprintln!("refused in {:?} with Redis down", started.elapsed());
    assert_eq!(denied, 500, "failure_mode_deny: true refuses");
    assert_eq!(
        get(&client, &allow.url("/"), &user).0,
        200,
        "failure_mode_deny: false lets it through"
    );
    assert_eq!(deny.stat("cluster.upstream.ratelimit.error"), Some(1));
    assert_eq!(
        allow.stat("cluster.upstream.ratelimit.failure_mode_allowed"),
        Some(1)
    );
    assert_eq!(
        service.metric("wasmgate_ratelimit_backend_errors_total"),
        Some(2.0)
    );
    assert_eq!(service.get("/ready").0, 503);
    assert_eq!(service.get("/healthz").0, 200);
}
