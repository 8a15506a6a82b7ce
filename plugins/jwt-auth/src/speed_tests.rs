//! What one request costs: the host calls of the cold and warm paths pinned, and (ignored,
//! `--release -- --ignored --nocapture`) native timings of the pieces.

use std::time::Instant;

use serde_json::{json, Value};
use wasmgate_glue::{FakeHost, HttpFilter, Plugin};

use crate::fake_crypto;
use crate::mint;
use crate::JwtAuth;

const NOW: i64 = 1_767_225_600;

/// The bench's configuration: one provider, issuer and audience, forward, cache on.
fn config(alg: &str) -> Value {
    json!({
        "providers": { "bench": {
            "issuer": "https://issuer",
            "audiences": ["api"],
            "local_jwks": mint::jwks(&[("k1", &mint::key_for(alg))]),
            "forward": true,
        } },
        "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "bench" } }],
        "token_cache_size": 100,
    })
}

fn token(alg: &str, jti: u32) -> String {
    mint::token(
        alg,
        "k1",
        &mint::key_for(alg),
        &json!({ "iss": "https://issuer", "aud": "api", "sub": "bench-user",
                 "iat": NOW - 60, "exp": NOW + 3600, "jti": jti.to_string() }),
    )
}

fn plugin(alg: &str) -> JwtAuth {
    let mut root = fake_crypto::host();
    let mut plugin = JwtAuth::configure(config(alg).to_string().as_bytes(), &mut root).unwrap();
    plugin.on_start(&mut root);
    plugin
}

fn request(token: &str) -> FakeHost {
    let mut host = fake_crypto::host();
    crate::keys::Metrics::define(&mut host).unwrap();
    let mut host = host.with_header("authorization", &format!("Bearer {token}"));
    host.reset_host_calls();
    host
}

fn run(plugin: &JwtAuth, host: &mut FakeHost) {
    let action = plugin.create_filter(2).on_request_headers(host, true);
    assert_eq!(action, wasmgate_glue::Action::Continue);
    assert!(host.local_reply.is_none());
}

/// The host calls of a request whose token misses the cache: two headers read (path and
/// token: no rule names methods), one clock read, one `verify_signature`. Counters cost no
/// host call on the request path (the root's tick hands them to Envoy).
#[test]
fn a_cold_token_makes_four_host_calls() {
    for alg in ["RS256", "ES256"] {
        let plugin = plugin(alg);
        let mut host = request(&token(alg, 1));
        run(&plugin, &mut host);
        assert_eq!(
            host.host_calls(),
            [("header", 2), ("now", 1), ("call_foreign_function", 1),].into(),
            "{alg}"
        );
    }
}

/// A token the cache holds: the same reads, no signature.
#[test]
fn a_warm_token_makes_three_host_calls() {
    for alg in ["RS256", "ES256"] {
        let plugin = plugin(alg);
        let token = token(alg, 1);
        run(&plugin, &mut request(&token));
        let mut host = request(&token);
        run(&plugin, &mut host);
        assert_eq!(
            host.host_calls(),
            [("header", 2), ("now", 1)].into(),
            "{alg}"
        );
        plugin.flush_metrics(&mut host);
        assert_eq!(host.metric("jwt_auth.cache_hit"), Some(1));
    }
}

/// `:method` is read only when a decision depends on it.
#[test]
fn the_method_is_read_when_a_rule_names_methods() {
    let mut config = config("ES256");
    config["rules"] = json!([
        { "match": { "prefix": "/", "methods": ["POST"] } },
        { "match": { "prefix": "/" }, "requires": { "provider_name": "bench" } },
    ]);
    let mut root = fake_crypto::host();
    let mut plugin = JwtAuth::configure(config.to_string().as_bytes(), &mut root).unwrap();
    plugin.on_start(&mut root);
    let mut host = request(&token("ES256", 1));
    run(&plugin, &mut host);
    assert_eq!(host.host_calls().get("header"), Some(&3));
    // A POST takes the first rule, which requires nothing.
    let mut host = FakeHost::new().with_request("POST", "/");
    host.reset_host_calls();
    run(&plugin, &mut host);
    assert_eq!(host.host_calls(), [("header", 2)].into());
}

#[test]
#[ignore]
fn timings() {
    for alg in ["RS256", "ES256"] {
        let plugin = plugin(alg);
        let tokens: Vec<String> = (0..200).map(|i| token(alg, i)).collect();
        let n = 20_000;
        let time = |name: &str, f: &mut dyn FnMut(usize)| {
            for i in 0..1000 {
                f(i);
            }
            let start = Instant::now();
            for i in 0..n {
                f(i);
            }
            let ns = start.elapsed().as_nanos() / n as u128;
            println!("{alg} {name}: {ns} ns");
        };
        let max = 8192;
        time("parse", &mut |i| {
            std::hint::black_box(crate::token::Token::parse(&tokens[i % 200], max).unwrap());
        });
        let cache = crate::cache::TokenCache::new(1);
        time("cache key", &mut |i| {
            std::hint::black_box(cache.key(&tokens[i % 200], 0));
        });
        let rules = crate::claims::ClaimRules {
            issuer: Some("https://issuer".into()),
            audiences: vec!["api".into()],
            ..Default::default()
        };
        let parsed = crate::token::Token::parse(&tokens[0], max).unwrap();
        time("claims check", &mut |_| {
            std::hint::black_box(rules.check(&parsed.claims, NOW).unwrap());
        });
        let hosts: Vec<FakeHost> = tokens.iter().map(|t| request(t)).collect();
        time("fake host clone (baseline)", &mut |i| {
            std::hint::black_box(hosts[i % 200].clone());
        });
        // Warm: the same 200 tokens over and over (cache of 100 holds... all 200? no: 100)
        let warm = &tokens[0];
        let warm_host = request(warm);
        run(&plugin, &mut warm_host.clone());
        // Cold: a host that says yes at once, so only the module's own work is timed.
        let yes = |t: &String| {
            let mut host = FakeHost::new()
                .with_foreign_function(crate::hostcrypto::FUNCTION, |_| Ok(vec![8, 1]));
            crate::keys::Metrics::define(&mut host).unwrap();
            host.with_header("authorization", &format!("Bearer {t}"))
        };
        let cold_hosts: Vec<FakeHost> = tokens.iter().map(yes).collect();
        time("request cold, host says yes (incl. clone)", &mut |i| {
            let mut h = cold_hosts[i % 200].clone();
            run(&plugin, &mut h);
        });
        time("request warm (incl. clone)", &mut |_| {
            let mut h = warm_host.clone();
            run(&plugin, &mut h);
        });
    }
}
