//! Filter flows against `FakeHost`: sources, rules, forwarding, responses, remote keys.

use crate::mint;

use std::time::Duration;

use serde_json::{json, Value};
use wasmgate_glue::{Action, FakeHost, Headers, Host, HttpFilter, Plugin};

use crate::fake_crypto;
use crate::JwtAuth;

const NOW: i64 = 1_767_225_600;

fn es() -> mint::Signer {
    mint::p256(1)
}

fn good_claims() -> Value {
    json!({ "iss": "https://issuer", "sub": "user-1", "aud": "api", "exp": NOW + 600,
            "scope": "read write", "realm": { "tier": "gold", "level": 3, "ok": true } })
}

fn good() -> String {
    mint::token("ES256", "k1", &es(), &good_claims())
}

fn local(extra: Value) -> Value {
    let mut provider = json!({
        "issuer": "https://issuer",
        "audiences": ["api"],
        "local_jwks": mint::jwks(&[("k1", &es())]),
    });
    for (k, v) in extra.as_object().unwrap() {
        provider[k] = v.clone();
    }
    provider
}

/// A plugin configured on a host that verifies signatures like Envoy 1.40, so these flows
/// take the host path; `crypto_flow_tests` covers the choice and the module path.
fn plugin(config: Value) -> JwtAuth {
    let mut root = fake_crypto::host();
    let mut plugin = JwtAuth::configure(config.to_string().as_bytes(), &mut root).unwrap();
    plugin.on_start(&mut root);
    plugin
}

/// A host whose metric ids match every plugin's (metrics are defined in a fixed order),
/// verifying signatures like Envoy.
fn new_host() -> FakeHost {
    let mut host = fake_crypto::host();
    crate::keys::Metrics::define(&mut host).unwrap();
    host
}

/// One request, then the counters handed to `host` as the root's tick would.
fn run(plugin: &JwtAuth, host: &mut FakeHost) -> Action {
    let action = plugin.create_filter(7).on_request_headers(host, true);
    let action = host.settle(action);
    plugin.flush_metrics(host);
    action
}

fn status(host: &FakeHost) -> u32 {
    host.local_reply.as_ref().map_or(0, |r| r.status)
}

fn reply_header(host: &FakeHost, name: &str) -> String {
    let reply = host.local_reply.as_ref().unwrap();
    reply
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .unwrap()
        .1
        .clone()
}

fn simple() -> JwtAuth {
    plugin(
        json!({ "providers": { "main": local(json!({})) }, "default": { "provider_name": "main" } }),
    )
}

#[test]
fn a_valid_bearer_token_passes_and_is_stripped() {
    let plugin = simple();
    let mut host = new_host().with_header("authorization", &format!("bearer {}", good()));
    assert_eq!(run(&plugin, &mut host), Action::Continue);
    assert_eq!(host.local_reply, None);
    assert_eq!(host.header(Headers::Request, "authorization"), None);
    assert_eq!(host.metric("jwt_auth.allowed"), Some(1));
}

#[test]
fn a_missing_token_gets_a_401_challenge_without_error_code() {
    let plugin = simple();
    let mut host = new_host();
    assert_eq!(run(&plugin, &mut host), Action::Pause);
    assert_eq!(status(&host), 401);
    assert_eq!(
        reply_header(&host, "www-authenticate"),
        "Bearer realm=\"wasmgate\""
    );
    assert_eq!(host.metric("jwt_auth.denied.missing"), Some(1));
    // Another scheme is not a bearer token.
    let mut host = new_host().with_header("authorization", "Basic dXNlcjpwYXNz");
    run(&plugin, &mut host);
    assert_eq!(status(&host), 401);
    assert_eq!(host.metric("jwt_auth.denied.missing"), Some(1));
}

#[test]
fn an_invalid_token_gets_rfc6750_invalid_token() {
    let plugin = simple();
    let expired = mint::token(
        "ES256",
        "k1",
        &es(),
        &json!({ "iss": "https://issuer", "aud": "api", "exp": NOW - 3600 }),
    );
    let mut host = new_host().with_header("authorization", &format!("Bearer {expired}"));
    run(&plugin, &mut host);
    assert_eq!(status(&host), 401);
    assert_eq!(
        reply_header(&host, "www-authenticate"),
        "Bearer realm=\"wasmgate\", error=\"invalid_token\", error_description=\"token is expired\""
    );
    let body: Value = serde_json::from_slice(&host.local_reply.as_ref().unwrap().body).unwrap();
    assert_eq!(
        body,
        json!({ "error": "invalid_token", "error_description": "token is expired" })
    );
    assert_eq!(host.metric("jwt_auth.denied.expired"), Some(1));
}

#[test]
fn a_failing_clock_refuses_expired_and_valid_tokens_with_503() {
    let expired = mint::token(
        "ES256",
        "k1",
        &es(),
        &json!({ "iss": "https://issuer", "aud": "api", "exp": 1 }),
    );
    let excused = two_providers(json!({ "allow_missing_or_failed": {} }));
    for (plugin, token) in [
        (simple(), expired.clone()),
        (simple(), good()),
        (excused, expired),
    ] {
        let mut host = new_host()
            .with_failing_clock()
            .with_header("authorization", &format!("Bearer {token}"));
        assert_eq!(run(&plugin, &mut host), Action::Pause);
        assert_eq!(status(&host), 503, "no time, no decision");
        assert!(host.logged(
            wasmgate_glue::LogLevel::Error,
            "#7 jwt-auth: cannot read the clock"
        ));
        assert_eq!(host.metric("jwt_auth.clock_failed"), Some(1));
    }
    // Requests that need no token check need no clock.
    let mut host = new_host().with_failing_clock();
    run(&two_providers(json!({ "allow_missing": {} })), &mut host);
    assert_eq!(status(&host), 0);
}

#[test]
fn duplicate_or_empty_credentials_are_refused() {
    let plugin = simple();
    let cases = [
        new_host()
            .with_header("authorization", &format!("Bearer {}", good()))
            .with_header("authorization", &format!("Bearer {}", good())),
        new_host()
            .with_header("authorization", "Bearer ")
            .with_header("x", "y"),
        new_host()
            .with_header("authorization", &format!("Bearer {}", good()))
            .with_request("GET", &format!("/?access_token={}", good())),
        new_host().with_request(
            "GET",
            &format!("/?access_token={0}&access_token={0}", good()),
        ),
        new_host().with_request("GET", "/?access_token="),
    ];
    for mut host in cases {
        run(&plugin, &mut host);
        assert_eq!(status(&host), 401, "{:?}", host.request);
        assert!(reply_header(&host, "www-authenticate").contains("more than one token"));
    }
}

#[test]
fn query_parameter_tokens_are_found_and_stripped() {
    let plugin = simple();
    let mut host = new_host().with_request("GET", &format!("/a?x=1&access_token={}&y=2", good()));
    assert_eq!(run(&plugin, &mut host), Action::Continue);
    assert_eq!(
        host.header(Headers::Request, ":path").as_deref(),
        Some("/a?x=1&y=2")
    );
}

#[test]
fn query_parameters_are_found_and_stripped_by_their_decoded_name() {
    let plugin = simple();
    let mut host = new_host().with_request("GET", &format!("/a?access%5Ftoken={}&y=2", good()));
    assert_eq!(run(&plugin, &mut host), Action::Continue);
    assert_eq!(
        host.header(Headers::Request, ":path").as_deref(),
        Some("/a?y=2")
    );
    let mut host = new_host().with_request(
        "GET",
        &format!("/?access_token={0}&access%5Ftoken={0}", good()),
    );
    run(&plugin, &mut host);
    assert_eq!(status(&host), 401, "one parameter, sent twice");
}

#[test]
fn cookies_headers_with_custom_prefixes_and_forward() {
    let plugin = plugin(json!({
        "providers": { "main": local(json!({
            "from_cookies": ["session"],
            "from_headers": [{ "name": "x-token", "value_prefix": "JWT " }],
            "forward": true,
        })) },
        "default": { "provider_name": "main" },
    }));
    let mut host = new_host().with_header("cookie", &format!("a=1; session={}; b=2", good()));
    assert_eq!(run(&plugin, &mut host), Action::Continue);
    assert!(
        host.header(Headers::Request, "cookie")
            .unwrap()
            .contains("session="),
        "forward keeps it"
    );
    let mut host = new_host().with_header("x-token", &format!("jwt {}", good()));
    assert_eq!(run(&plugin, &mut host), Action::Continue);
    // The default Authorization source is replaced by the configured ones.
    let mut host = new_host().with_header("authorization", &format!("Bearer {}", good()));
    run(&plugin, &mut host);
    assert_eq!(status(&host), 401);
}

#[test]
fn a_cookie_token_is_stripped_without_touching_other_cookies() {
    let plugin = plugin(json!({
        "providers": { "main": local(json!({ "from_cookies": ["session"] })) },
        "default": { "provider_name": "main" },
    }));
    let mut host = new_host().with_header("cookie", &format!("a=1; session={}; b=2", good()));
    host.reset_host_calls();
    assert_eq!(run(&plugin, &mut host), Action::Continue);
    // `:path` and `cookie`, once: the cookie is rewritten from the value the token came in.
    assert_eq!(host.host_calls()["header"], 2);
    assert_eq!(
        host.header(Headers::Request, "cookie").as_deref(),
        Some("a=1; b=2")
    );
}

#[test]
fn payload_and_claims_go_upstream_and_spoofed_copies_never_do() {
    let plugin = plugin(json!({
        "providers": { "main": local(json!({
            "forward_payload_header": "x-jwt-payload",
            "claim_to_headers": [
                { "header_name": "x-sub", "claim_name": "sub" },
                { "header_name": "x-tier", "claim_name": "realm.tier" },
                { "header_name": "x-level", "claim_name": "realm.level" },
                { "header_name": "x-ok", "claim_name": "realm.ok" },
                { "header_name": "x-absent", "claim_name": "realm.nothing" },
            ],
        })) },
        "rules": [{ "match": { "prefix": "/public" } }],
        "default": { "provider_name": "main" },
    }));
    let token = good();
    let mut host = new_host()
        .with_header("authorization", &format!("Bearer {token}"))
        .with_header("x-sub", "admin")
        .with_header("x-absent", "spoofed")
        .with_header("x-jwt-payload", "spoofed");
    assert_eq!(run(&plugin, &mut host), Action::Continue);
    assert_eq!(host.all(Headers::Request, "x-sub"), vec!["user-1"]);
    assert_eq!(host.all(Headers::Request, "x-tier"), vec!["gold"]);
    assert_eq!(host.all(Headers::Request, "x-level"), vec!["3"]);
    assert_eq!(host.all(Headers::Request, "x-ok"), vec!["true"]);
    assert!(host.all(Headers::Request, "x-absent").is_empty());
    assert_eq!(
        host.all(Headers::Request, "x-jwt-payload"),
        vec![token.split('.').nth(1).unwrap()]
    );

    // Unchecked paths still lose the spoofed headers.
    let mut host = new_host()
        .with_request("GET", "/public/x")
        .with_header("x-sub", "admin");
    assert_eq!(run(&plugin, &mut host), Action::Continue);
    assert!(host.all(Headers::Request, "x-sub").is_empty());
}

#[test]
fn rules_match_path_and_method_first_match_wins() {
    let plugin = plugin(json!({
        "providers": { "main": local(json!({})) },
        "rules": [
            { "match": { "path": "/health" } },
            { "match": { "prefix": "/api", "methods": ["GET"] }, "requires": { "provider_name": "main" } },
            { "match": { "prefix": "/api" } },
            { "match": { "regex": "/v[0-9]+/.*" }, "requires": { "provider_name": "main" } },
        ],
    }));
    let cases = [
        ("GET", "/health", 0),
        ("GET", "/health/x", 0), // no rule, no default: unchecked
        ("GET", "/api/x?q=1", 401),
        ("POST", "/api/x", 0),
        ("GET", "/v2/things", 401),
        ("GET", "/xv2/things", 0),
    ];
    for (method, path, want) in cases {
        let mut host = new_host().with_request(method, path);
        run(&plugin, &mut host);
        assert_eq!(status(&host), want, "{method} {path}");
    }
}

fn two_providers(requires: Value) -> JwtAuth {
    let other = mint::p256(2);
    plugin(json!({
        "providers": {
            "a": local(json!({})),
            "b": { "local_jwks": mint::jwks(&[("k2", &other)]), "from_headers": [{ "name": "x-b" }] },
        },
        "default": requires,
    }))
}

fn b_token() -> String {
    mint::token("ES256", "k2", &mint::p256(2), &json!({ "exp": NOW + 60 }))
}

fn outcome(plugin: &JwtAuth, a: Option<&str>, b: Option<&str>) -> u32 {
    let mut host = new_host();
    if let Some(a) = a {
        host = host.with_header("authorization", &format!("Bearer {a}"));
    }
    if let Some(b) = b {
        host = host.with_header("x-b", b);
    }
    run(plugin, &mut host);
    status(&host)
}

#[test]
fn requires_any_all_allow_missing_and_allow_missing_or_failed() {
    let (a, b, bad) = (good(), b_token(), "e30.e30.e30".to_owned());
    let any = two_providers(
        json!({ "requires_any": [{ "provider_name": "a" }, { "provider_name": "b" }] }),
    );
    assert_eq!(outcome(&any, Some(&a), None), 0);
    assert_eq!(outcome(&any, None, Some(&b)), 0);
    assert_eq!(outcome(&any, None, None), 401);
    assert_eq!(outcome(&any, Some(&bad), Some(&b)), 0);

    let all = two_providers(
        json!({ "requires_all": [{ "provider_name": "a" }, { "provider_name": "b" }] }),
    );
    assert_eq!(outcome(&all, Some(&a), Some(&b)), 0);
    assert_eq!(outcome(&all, Some(&a), None), 401);

    let missing = two_providers(json!({ "allow_missing": {} }));
    assert_eq!(outcome(&missing, None, None), 0);
    assert_eq!(outcome(&missing, None, Some(&b)), 0);
    assert_eq!(
        outcome(&missing, Some(&bad), None),
        401,
        "a token that is there must be valid"
    );

    let any_missing = two_providers(
        json!({ "requires_any": [{ "provider_name": "a" }, { "allow_missing": {} }] }),
    );
    assert_eq!(outcome(&any_missing, None, None), 0);
    assert_eq!(outcome(&any_missing, Some(&bad), None), 401);

    let failed = two_providers(json!({ "allow_missing_or_failed": {} }));
    assert_eq!(outcome(&failed, Some(&bad), None), 0);
    assert_eq!(outcome(&failed, None, None), 0);
    // A valid token is still verified and stripped.
    let mut host = new_host().with_header("authorization", &format!("Bearer {a}"));
    run(&failed, &mut host);
    assert_eq!(host.header(Headers::Request, "authorization"), None);
}

#[test]
fn required_scopes_and_claims_answer_403_insufficient_scope() {
    let plugin = plugin(json!({
        "providers": { "main": local(json!({})) },
        "rules": [
            { "match": { "prefix": "/write" }, "requires": { "provider_name": "main" }, "required_scopes": ["write"] },
            { "match": { "prefix": "/admin" }, "requires": { "provider_name": "main" }, "required_scopes": ["admin", "read"] },
            { "match": { "prefix": "/gold" }, "requires": { "provider_name": "main" },
              "required_claims": [{ "claim": "realm.tier", "exact": ["gold", "platinum"] }] },
            { "match": { "prefix": "/users" }, "requires": { "provider_name": "main" },
              "required_claims": [{ "claim": "sub", "prefix": ["svc-"] }] },
            { "match": { "prefix": "/maybe" }, "requires": { "allow_missing": {} }, "required_scopes": ["read"] },
        ],
    }));
    let auth = format!("Bearer {}", good());
    let at = |path: &str| {
        let mut host = new_host()
            .with_request("GET", path)
            .with_header("authorization", &auth);
        run(&plugin, &mut host);
        host
    };
    assert_eq!(status(&at("/write")), 0);
    assert_eq!(status(&at("/gold")), 0);
    let host = at("/admin");
    assert_eq!(status(&host), 403);
    assert_eq!(
        reply_header(&host, "www-authenticate"),
        "Bearer realm=\"wasmgate\", error=\"insufficient_scope\", error_description=\"token lacks a required claim or scope\", scope=\"admin read\""
    );
    assert_eq!(host.metric("jwt_auth.denied.insufficient_scope"), Some(1));
    assert_eq!(status(&at("/users")), 403);
    let mut host = new_host().with_request("GET", "/maybe");
    run(&plugin, &mut host);
    assert_eq!(status(&host), 401, "a required scope needs a token");

    // `scp` arrays count as scopes too.
    let token = mint::token(
        "ES256",
        "k1",
        &es(),
        &json!({ "iss": "https://issuer", "aud": ["x", "api"], "scp": ["admin", "read"] }),
    );
    let mut host = new_host()
        .with_request("GET", "/admin")
        .with_header("authorization", &format!("Bearer {token}"));
    run(&plugin, &mut host);
    assert_eq!(status(&host), 0);
}

#[test]
fn cors_preflight_bypass() {
    let config = |bypass: bool| {
        plugin(
            json!({ "providers": { "main": local(json!({})) }, "default": { "provider_name": "main" }, "bypass_cors_preflight": bypass }),
        )
    };
    let preflight = || {
        new_host()
            .with_request("OPTIONS", "/x")
            .with_header("origin", "https://app")
            .with_header("access-control-request-method", "POST")
    };
    let mut host = preflight();
    assert_eq!(run(&config(true), &mut host), Action::Continue);
    let mut host = preflight();
    run(&config(false), &mut host);
    assert_eq!(status(&host), 401);
    // A plain OPTIONS is not a preflight.
    let mut host = new_host().with_request("OPTIONS", "/x");
    run(&config(true), &mut host);
    assert_eq!(status(&host), 401);
}

#[test]
fn repeated_tokens_are_served_from_the_cache_until_exp() {
    let plugin = simple();
    let token = mint::token(
        "ES256",
        "k1",
        &es(),
        &json!({ "iss": "https://issuer", "aud": "api", "exp": NOW + 10 }),
    );
    let mut host = new_host().with_header("authorization", &format!("Bearer {token}"));
    run(&plugin, &mut host);
    let mut host2 = new_host().with_header("authorization", &format!("Bearer {token}"));
    assert_eq!(run(&plugin, &mut host2), Action::Continue);
    assert_eq!(host2.metric("jwt_auth.cache_hit"), Some(1));
    let mut later = new_host()
        .with_header("authorization", &format!("Bearer {token}"))
        .with_now(host.proxy.now() + Duration::from_secs(71));
    run(&plugin, &mut later);
    assert_eq!(status(&later), 401, "never past exp + skew");
    assert_eq!(later.metric("jwt_auth.cache_hit"), Some(0));
}

fn config_error(config: Value) -> String {
    JwtAuth::configure(config.to_string().as_bytes(), &mut FakeHost::new())
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    let main = || local(json!({}));
    let cases = [
        (
            json!({ "providers": { "main": main() }, "rulez": [] }),
            "unknown field `rulez`",
        ),
        (
            json!({ "providers": {} }),
            "providers: needs at least one provider",
        ),
        (
            json!({ "providers": { "main": main() }, "rules": [{ "match": { "regex": "(" } }] }),
            "rules[0].match.regex: invalid regex \"(\"",
        ),
        (
            json!({ "providers": { "main": main() }, "rules": [{ "requires": { "provider_name": "nope" } }] }),
            "rules[0].requires.provider_name: no provider is named \"nope\"",
        ),
        (
            json!({ "providers": { "main": main() }, "default": { "requires_any": [{ "provider_name": "main" }, { "provider_name": "x" }] } }),
            "default.requires_any[1].provider_name: no provider",
        ),
        (
            json!({ "providers": { "main": local(json!({ "local_jwks": { "keys": [{ "kty": "EC", "crv": "P-256", "alg": "ES999", "x": "", "y": "" }] } })) } }),
            "providers.main.local_jwks.keys[0].alg: unsupported algorithm \"ES999\"",
        ),
        (
            json!({ "providers": { "main": local(json!({ "local_jwks": { "keys": [{ "kty": "RSA", "n": "AQAB", "e": "AQAB" }] } })) } }),
            "providers.main.local_jwks.keys[0].n: RSA modulus",
        ),
        (
            json!({ "providers": { "main": { "issuer": "x" } } }),
            "providers.main: needs exactly one of local_jwks and remote_jwks",
        ),
        (
            json!({ "providers": { "main": local(json!({ "remote_jwks": { "uri": "http://a/", "cluster": "c" } })) } }),
            "needs exactly one",
        ),
        (
            json!({ "providers": { "main": { "remote_jwks": { "uri": "ftp://a/", "cluster": "c" } } } }),
            "providers.main.remote_jwks.uri: must start with http://",
        ),
        (
            json!({ "providers": { "main": { "remote_jwks": { "uri": "http://a/", "cluster": "c", "timeout": "5" } } } }),
            "providers.main.remote_jwks.timeout: \"5\" is not a duration like",
        ),
        (
            json!({ "providers": { "main": local(json!({ "max_lifetime": "forever" })) } }),
            "providers.main.max_lifetime:",
        ),
        (
            json!({ "providers": { "main": local(json!({ "subjects": { "regex": "[" } })) } }),
            "providers.main.subjects: invalid regex",
        ),
        (
            json!({ "providers": { "main": local(json!({ "claim_to_headers": [{ "header_name": "bad header", "claim_name": "sub" }] })) } }),
            "providers.main.claim_to_headers[0].header_name:",
        ),
        (
            json!({ "providers": { "main": local(json!({ "claim_to_headers": [{ "header_name": "x", "claim_name": "a..b" }] })) } }),
            "providers.main.claim_to_headers[0].claim_name:",
        ),
        (
            json!({ "providers": { "main": local(json!({ "forward_payload_header": "authorization" })) } }),
            "providers.main.from_headers: \"authorization\" is also an output header",
        ),
        (
            json!({ "providers": { "main": main() }, "rules": [{ "match": { "path": "/a", "prefix": "/b" } }] }),
            "rules[0].match: at most one of",
        ),
        (
            json!({ "providers": { "main": main() }, "rules": [{ "match": { "methods": ["G T"] } }] }),
            "rules[0].match.methods[0]: \"G T\" is not an HTTP method",
        ),
        (
            json!({ "providers": { "main": main() }, "rules": [{ "match": { "path": { "prefx": "/" } } }] }),
            "rules[0].match.path: unknown variant `prefx`",
        ),
        (
            json!({ "providers": { "main": main() }, "rules": [{ "match": { "hosts": ["a.com"] } }] }),
            "rules[0].match.hosts: jwt-auth rules match on path and methods only",
        ),
        (
            json!({ "providers": { "main": main() }, "rules": [{ "required_scopes": ["a"] }] }),
            "rules[0].requires: required_scopes and required_claims need",
        ),
        (
            json!({ "providers": { "main": main() }, "rules": [{ "requires": { "provider_name": "main" }, "required_claims": [{ "claim": "x" }] }] }),
            "rules[0].required_claims[0]: needs values",
        ),
        (
            json!({ "providers": { "main": main() }, "default": { "allow_missing": { "x": 1 } } }),
            "default.allow_missing.x: unknown field",
        ),
        (
            json!({ "providers": { "main": main() }, "realm": "a\"b" }),
            "realm: must not contain",
        ),
    ];
    for (config, want) in cases {
        let got = config_error(config.clone());
        assert!(
            got.contains(want),
            "{config}\n  got:  {got}\n  want: {want}"
        );
    }
}

// ---- remote JWKS ----

fn remote_config(extra: Value) -> Value {
    let mut remote = json!({ "uri": "http://issuer.local/jwks", "cluster": "jwks", "timeout": "1s", "cache_duration": "10s" });
    for (k, v) in extra.as_object().unwrap() {
        remote[k] = v.clone();
    }
    json!({
        "providers": { "main": { "issuer": "https://issuer", "remote_jwks": remote } },
        "default": { "provider_name": "main" },
    })
}

fn jwks_body(keys: &[(&str, &mint::Signer)]) -> Vec<u8> {
    mint::jwks(keys).to_string().into_bytes()
}

#[test]
fn a_request_before_any_key_waits_for_a_fetch_then_gets_a_decision() {
    let plugin = plugin(remote_config(json!({})));
    let mut host = new_host().with_header("authorization", &format!("Bearer {}", good()));
    let mut filter = plugin.create_filter(3);
    assert_eq!(filter.on_request_headers(&mut host, true), Action::Pause);
    assert_eq!(host.calls.len(), 1);
    let call = host.calls[0].clone();
    assert_eq!(call.cluster, "jwks");
    assert!(call.headers.contains(&(":path".into(), "/jwks".into())));
    assert!(call
        .headers
        .contains(&(":authority".into(), "issuer.local".into())));
    host.answer_call(200, &[], &jwks_body(&[("k1", &es())]));
    filter.on_http_call_response(&mut host, call.token, Some(200));
    assert_eq!(host.resumed, 1);
    assert_eq!(host.local_reply, None);
    plugin.flush_metrics(&mut host);
    assert_eq!(host.metric("jwt_auth.jwks_fetch_ok"), Some(1));

    // The keys are now shared: another worker (another plugin instance, same shared data)
    // verifies without fetching.
    let other = self::plugin(remote_config(json!({})));
    let calls = host.calls.len();
    host.set_header(
        Headers::Request,
        "authorization",
        &format!("Bearer {}", good()),
    );
    assert_eq!(run(&other, &mut host), Action::Continue);
    assert_eq!(host.calls.len(), calls);
}

#[test]
fn a_failed_first_fetch_answers_401_and_never_hangs() {
    for (answer, body) in [
        (Some(500), &b"oops"[..]),
        (None, &b""[..]),
        (Some(200), &b"{\"keys\":[]}"[..]),
    ] {
        let plugin = plugin(remote_config(json!({})));
        let mut host = new_host().with_header("authorization", &format!("Bearer {}", good()));
        let mut filter = plugin.create_filter(3);
        assert_eq!(filter.on_request_headers(&mut host, true), Action::Pause);
        host.answer_call(answer.unwrap_or(0), &[], body);
        let token = host.calls[0].token;
        filter.on_http_call_response(&mut host, token, answer);
        assert_eq!(status(&host), 401, "{answer:?}");
        assert!(reply_header(&host, "www-authenticate")
            .contains("keys to verify the token are unavailable"));
        plugin.flush_metrics(&mut host);
        assert_eq!(host.metric("jwt_auth.jwks_fetch_failed"), Some(1));
        // While failures back off, the next request is answered at once, without a fetch.
        let mut next = host.clone();
        next.local_reply = None;
        assert_eq!(run(&plugin, &mut next), Action::Pause);
        assert_eq!(status(&next), 401);
        assert_eq!(next.calls.len(), 1);
    }
}

#[test]
fn an_unknown_callout_cluster_is_answered_not_hung() {
    let plugin = plugin(remote_config(json!({})));
    let mut host = new_host().with_header("authorization", &format!("Bearer {}", good()));
    host.proxy.state().fail_calls = Some(wasmgate_glue::HostError::BadArgument);
    assert_eq!(run(&plugin, &mut host), Action::Pause);
    assert_eq!(status(&host), 401);
}

#[test]
fn the_root_fetches_on_tick_once_for_all_workers_and_refreshes_before_expiry() {
    let mut a = plugin(remote_config(json!({})));
    let mut b = plugin(remote_config(json!({})));
    let mut host = new_host();
    a.on_start(&mut host);
    assert_eq!(host.proxy.peek().tick_period, Some(Duration::from_secs(1)));
    a.on_tick(&mut host);
    b.on_tick(&mut host);
    assert_eq!(host.calls.len(), 1, "one lease, one fetch");
    host.answer_call(200, &[], &jwks_body(&[("k1", &es())]));
    let token = host.calls[0].token;
    a.on_http_call_response(&mut host, token, Some(200));
    b.on_tick(&mut host);
    a.on_tick(&mut host);
    assert_eq!(host.calls.len(), 1, "fresh keys are not fetched again");
    let mut req = host
        .clone()
        .with_header("authorization", &format!("Bearer {}", good()));
    assert_eq!(
        run(&b, &mut req),
        Action::Continue,
        "b synced the shared keys on tick"
    );

    // After 4/5 of cache_duration, a refresh; a failed refresh keeps the last good keys.
    host.advance(Duration::from_secs(8));
    b.on_tick(&mut host);
    assert_eq!(host.calls.len(), 2);
    host.answer_call(503, &[], b"down");
    let token = host.calls[1].token;
    b.on_http_call_response(&mut host, token, Some(503));
    let req = host
        .clone()
        .with_header("authorization", &format!("Bearer {}", good()));
    assert_eq!(run(&a, &mut req.clone()), Action::Continue);
    assert_eq!(run(&b, &mut req.clone()), Action::Continue);
    // Backing off: no fetch in the next second.
    a.on_tick(&mut host);
    assert_eq!(host.calls.len(), 2);
    host.advance(Duration::from_secs(1));
    a.on_tick(&mut host);
    assert_eq!(host.calls.len(), 3);
}

#[test]
fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let plugin = plugin(remote_config(
        json!({ "unknown_kid_refetch_interval": "30s" }),
    ));
    let mut host = new_host();
    let mut root = self::plugin(remote_config(json!({})));
    root.on_tick(&mut host);
    host.answer_call(200, &[], &jwks_body(&[("k1", &es())]));
    let token = host.calls[0].token;
    root.on_http_call_response(&mut host, token, Some(200));

    // A token signed by a new key: one refetch, which finds it.
    let new_key = mint::p256(5);
    let rotated = mint::token("ES256", "k2", &new_key, &good_claims());
    let mut req = host
        .clone()
        .with_header("authorization", &format!("Bearer {rotated}"));
    let mut filter = plugin.create_filter(9);
    assert_eq!(filter.on_request_headers(&mut req, true), Action::Pause);
    assert_eq!(req.calls.len(), 2);
    req.answer_call(200, &[], &jwks_body(&[("k1", &es()), ("k2", &new_key)]));
    let token = req.calls[1].token;
    filter.on_http_call_response(&mut req, token, Some(200));
    assert_eq!((req.resumed, req.local_reply.clone()), (1, None));

    // A flood of bogus kids: the first refetches, the rest are refused at once.
    let bogus = |kid: &str| mint::token("ES256", kid, &new_key, &good_claims());
    let mut req2 = req
        .clone()
        .with_header("authorization", &format!("Bearer {}", bogus("x1")));
    req2.local_reply = None;
    req2.advance(Duration::from_secs(31));
    assert_eq!(run(&plugin, &mut req2), Action::Pause);
    let fetches = req2.calls.len();
    for kid in ["x1", "x2", "x3"] {
        let mut r = req2.clone();
        r.set_header(
            Headers::Request,
            "authorization",
            &format!("Bearer {}", bogus(kid)),
        );
        let mut filter = plugin.create_filter(10);
        let action = filter.on_request_headers(&mut r, true);
        r.settle(action);
        assert_eq!(r.calls.len(), fetches, "rate-limited");
        assert_eq!(status(&r), 401);
        assert!(reply_header(&r, "www-authenticate").contains("no key fits the token"));
    }
}

#[cfg(feature = "schema")]
#[test]
fn the_schema_describes_the_configuration() {
    let schema = serde_json::to_string(&schemars::schema_for!(crate::Config)).unwrap();
    for field in [
        "providers",
        "rules",
        "default",
        "remote_jwks",
        "claim_to_headers",
        "requires_any",
    ] {
        assert!(schema.contains(field), "{field}");
    }
}
