//! Where signatures are verified, through the filter: the choice made at configure, the
//! host path counted, a host that fails refusing the request, the module path.

use serde_json::{json, Value};
use wasmgate_glue::{Action, FakeHost, HostError, HttpFilter, LogLevel, Plugin};

use crate::fake_crypto;
use crate::hostcrypto::FUNCTION;
use crate::mint;
use crate::JwtAuth;

const NOW: i64 = 1_767_225_600;

fn config(alg: &str, crypto: &str) -> Value {
    json!({
        "providers": { "main": {
            "local_jwks": mint::jwks(&[("k1", &mint::key_for(alg))]),
        } },
        "default": { "provider_name": "main" },
        "crypto": crypto,
    })
}

/// Configure and start, as Envoy's `on_configure` does.
fn configure(config: &Value, host: &mut FakeHost) -> Result<JwtAuth, String> {
    let mut plugin =
        JwtAuth::configure(config.to_string().as_bytes(), host).map_err(|e| e.to_string())?;
    plugin.on_start(host);
    Ok(plugin)
}

fn token(alg: &str) -> String {
    mint::token(
        alg,
        "k1",
        &mint::key_for(alg),
        &json!({ "sub": "u", "exp": NOW + 600 }),
    )
}

/// Run one request with `token` on `host` (metrics defined as the plugin defined them).
fn run(plugin: &JwtAuth, mut host: FakeHost, token: &str) -> FakeHost {
    crate::keys::Metrics::define(&mut host).unwrap();
    host = host.with_header("authorization", &format!("Bearer {token}"));
    host.reset_host_calls();
    let action = plugin.create_filter(3).on_request_headers(&mut host, true);
    let action = host.settle(action);
    if host.local_reply.is_none() {
        assert_eq!(action, Action::Continue);
    }
    plugin.flush_metrics(&mut host);
    host
}

fn status(host: &FakeHost) -> u32 {
    host.local_reply.as_ref().map_or(200, |r| r.status)
}

#[test]
fn rs_and_es_go_to_the_host_when_it_offers_verify_signature() {
    for alg in ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"] {
        let mut root = fake_crypto::host();
        let plugin = configure(&config(alg, "auto"), &mut root).unwrap();
        assert!(root.logged(LogLevel::Info, "verified by the host (verify_signature)"));
        let host = run(&plugin, fake_crypto::host(), &token(alg));
        assert_eq!(status(&host), 200, "{alg}");
        assert_eq!(host.metric("jwt_auth.host_verify"), Some(1), "{alg}");
        assert_eq!(host.host_calls().get("call_foreign_function"), Some(&1));
        // A signature by another key: the host says no, the request is refused.
        let other_key = match alg {
            a if a.starts_with("RS") => mint::rsa(2),
            "ES256" => mint::p256(2),
            "ES384" => mint::p384(2),
            _ => mint::p521(2),
        };
        let other = mint::token(alg, "k1", &other_key, &json!({}));
        let host = run(&plugin, fake_crypto::host(), &other);
        assert_eq!(status(&host), 401, "{alg}");
        assert_eq!(host.metric("jwt_auth.denied.signature"), Some(1));
        assert_eq!(host.metric("jwt_auth.host_verify_failed"), Some(0));
    }
}

#[test]
fn ps_eddsa_and_hs_stay_in_the_module() {
    for alg in ["PS256", "EdDSA", "HS256"] {
        let plugin = configure(&config(alg, "host"), &mut fake_crypto::host()).unwrap();
        let host = run(&plugin, fake_crypto::host(), &token(alg));
        assert_eq!(status(&host), 200, "{alg}");
        assert_eq!(
            host.host_calls().get("call_foreign_function"),
            None,
            "{alg}"
        );
    }
}

/// What a fake `verify_signature` answers.
type Answer = fn(&[u8]) -> Result<Vec<u8>, HostError>;

#[test]
fn a_host_that_gives_no_verdict_refuses_the_request_and_is_counted() {
    let plugin = configure(&config("ES256", "auto"), &mut fake_crypto::host()).unwrap();
    let answers: [Answer; 4] = [
        |_| Err(HostError::BadArgument),
        |_| Err(HostError::Failed("InternalFailure".into())),
        |_| Ok(b"\x08\x07".to_vec()),
        |_| Ok(b"\x12\x20truncated".to_vec()),
    ];
    for answer in answers {
        let host = run(
            &plugin,
            FakeHost::new().with_foreign_function(FUNCTION, answer),
            &token("ES256"),
        );
        assert_eq!(status(&host), 401);
        assert_eq!(host.metric("jwt_auth.host_verify_failed"), Some(1));
        assert_eq!(host.metric("jwt_auth.denied.signature"), Some(1));
        assert!(host.logged(LogLevel::Warn, "gave no verdict"));
    }
}

#[test]
fn without_the_function_auto_verifies_in_the_module() {
    let mut root = FakeHost::new();
    let plugin = configure(&config("RS256", "auto"), &mut root).unwrap();
    assert!(root.logged(LogLevel::Info, "every signature verified in the module"));
    let host = run(&plugin, FakeHost::new(), &token("RS256"));
    assert_eq!(status(&host), 200);
    assert_eq!(host.host_calls().get("call_foreign_function"), None);
    // A host whose answers cannot be trusted is not used either.
    let mut liar = FakeHost::new().with_foreign_function(FUNCTION, |_| Ok(vec![8, 1]));
    configure(&config("RS256", "auto"), &mut liar).unwrap();
    assert!(liar.logged(LogLevel::Info, "accepted a wrong signature"));
}

/// `crypto: host` where the host cannot: a valid configuration (the CLI checks it without
/// Envoy), but every RS* and ES* token is refused, loudly; other algorithms still work.
#[test]
fn crypto_host_without_a_usable_host_refuses_rs_and_es_tokens() {
    for mut root in [
        FakeHost::new(),
        FakeHost::new().with_foreign_function(FUNCTION, |_| Ok(vec![8, 1])),
    ] {
        let plugin = configure(&config("ES256", "host"), &mut root).unwrap();
        assert!(root.logged(
            LogLevel::Critical,
            "every RS* and ES* token will be refused"
        ));
        // The same proxy (its foreign function), with its stats and logs forgotten.
        let stream = root.clone();
        stream.proxy.state().metrics.clear();
        stream.proxy.state().logs.clear();
        let host = run(&plugin, stream, &token("ES256"));
        assert_eq!(status(&host), 401);
        assert_eq!(host.metric("jwt_auth.host_verify_failed"), Some(1));
        // The liar is never asked: it would say yes to anything.
        assert_eq!(host.host_calls().get("call_foreign_function"), None);
    }
    let plugin = configure(&config("EdDSA", "host"), &mut FakeHost::new()).unwrap();
    assert_eq!(status(&run(&plugin, FakeHost::new(), &token("EdDSA"))), 200);
}

#[test]
fn crypto_module_never_asks_the_host() {
    let mut root = fake_crypto::host();
    let plugin = configure(&config("ES256", "module"), &mut root).unwrap();
    assert_eq!(root.host_calls().get("call_foreign_function"), None);
    assert!(root.logged(LogLevel::Info, "(crypto: module)"));
    let host = run(&plugin, fake_crypto::host(), &token("ES256"));
    assert_eq!(status(&host), 200);
    assert_eq!(host.host_calls().get("call_foreign_function"), None);
    assert!(configure(&config("ES256", "bogus"), &mut root)
        .unwrap_err()
        .contains("crypto"));
}

fn validate(config: &Value) -> Result<(), String> {
    JwtAuth::validate(config.to_string().as_bytes())
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The default build has no P-384 or P-521 code: where every signature is verified in the
/// module (`crypto: module`, or `auto` on a host without `verify_signature`), a P-384 or
/// P-521 key is refused at configure, naming it; where the host verifies, such tokens pass.
#[cfg(not(feature = "portable"))]
#[test]
fn without_portable_es384_and_es512_need_the_host() {
    for alg in ["ES384", "ES512"] {
        for (crypto, mut root) in [("module", fake_crypto::host()), ("auto", FakeHost::new())] {
            let err = configure(&config(alg, crypto), &mut root).unwrap_err();
            assert_eq!(
                err,
                format!("providers.main.local_jwks.keys[0]: {alg} needs the host's verify_signature or the portable build of jwt-auth; here every signature is verified in the module"),
                "{alg}, crypto: {crypto}"
            );
        }
        // The CLI cannot tell what the host offers: it refuses `crypto: module` only.
        assert!(validate(&config(alg, "module"))
            .unwrap_err()
            .contains("needs the host's verify_signature or the portable build"));
        validate(&config(alg, "auto")).unwrap();
        validate(&config(alg, "host")).unwrap();
        let plugin = configure(&config(alg, "auto"), &mut fake_crypto::host()).unwrap();
        let host = run(&plugin, fake_crypto::host(), &token(alg));
        assert_eq!(status(&host), 200, "{alg}");
        assert_eq!(host.metric("jwt_auth.host_verify"), Some(1), "{alg}");
    }
}

#[cfg(feature = "portable")]
#[test]
fn the_portable_build_verifies_es384_and_es512_without_a_host() {
    for alg in ["ES384", "ES512"] {
        for (crypto, mut root) in [("module", fake_crypto::host()), ("auto", FakeHost::new())] {
            let plugin = configure(&config(alg, crypto), &mut root).unwrap();
            let host = run(&plugin, FakeHost::new(), &token(alg));
            assert_eq!(status(&host), 200, "{alg}, crypto: {crypto}");
            assert_eq!(host.host_calls().get("call_foreign_function"), None);
        }
        validate(&config(alg, "module")).unwrap();
    }
}

/// A fetched JWKS where the module verifies alone: a key only a host could use is skipped,
/// named in the log and counted; the other keys work (the portable build keeps them all).
#[test]
fn fetched_keys_only_a_host_could_use_are_skipped_logged_and_counted() {
    let config = json!({
        "providers": { "main": { "remote_jwks": { "uri": "http://issuer.local/jwks", "cluster": "jwks" } } },
        "default": { "provider_name": "main" },
        "crypto": "module",
    });
    let plugin = configure(&config, &mut fake_crypto::host()).unwrap();
    let mut host = FakeHost::new();
    crate::keys::Metrics::define(&mut host).unwrap();
    host = host.with_header("authorization", &format!("Bearer {}", token("ES256")));
    let mut filter = plugin.create_filter(3);
    assert_eq!(filter.on_request_headers(&mut host, true), Action::Pause);
    let body = mint::jwks(&[
        ("k1", &mint::key_for("ES256")),
        ("k2", &mint::key_for("ES384")),
    ]);
    host.answer_call(200, &[], body.to_string().as_bytes());
    let call = host.calls[0].token;
    filter.on_http_call_response(&mut host, call, Some(200));
    assert_eq!(status(&host), 200);
    plugin.flush_metrics(&mut host);
    assert_eq!(host.metric("jwt_auth.jwks_fetch_ok"), Some(1));
    if cfg!(feature = "portable") {
        assert_eq!(host.metric("jwt_auth.jwks_keys_skipped"), Some(0));
        return;
    }
    assert_eq!(host.metric("jwt_auth.jwks_keys_skipped"), Some(1));
    assert!(host.logged(
        LogLevel::Warn,
        "provider main: key skipped, keys[1] (kid \"k2\"): ES384 needs the host's verify_signature or the portable build"
    ));
}
