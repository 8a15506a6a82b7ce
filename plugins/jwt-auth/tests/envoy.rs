//! jwt-auth loaded into a real Envoy: local and remote keys, responses, forwarding, metrics,
//! keys shared by workers, and agreement with Envoy's native jwt_authn.

#[path = "support/mint.rs"]
mod mint;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use test_env::{client, static_cluster, wait_until, Envoy, Mode, Upstream, WasmFilter};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({ "iss": "https://issuer", "aud": "api", "sub": "user-1", "iat": now(), "exp": now() + 600,
            "scope": "read", "org": { "team": "payments" } })
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

use test_env::reqwest;

fn get(envoy: &Envoy, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = client().get(envoy.url(path));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().unwrap(),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn ok_echo(reply: &Reply) -> test_env::Echo {
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .stat(&format!("wasmcustom.jwt_auth.{name}"))
        .unwrap_or(0)
}

/// Wait for counter `name` to reach `expected`, then check it went no further: the plugin
/// hands its counts to Envoy on its tick (every second at most).
fn counted(envoy: &Envoy, name: &str, expected: u64) {
    let name = format!("wasmcustom.jwt_auth.{name}");
    envoy.wait_for_stat(&name, Duration::from_secs(5), |v| v >= expected);
    assert_eq!(envoy.stat(&name), Some(expected), "{name}");
}

#[test]
fn local_keys_responses_forwarding_scopes_and_metrics() {
    let (rsa, ec, ed) = (mint::rsa(1), mint::p256(1), mint::ed25519(1));
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(WasmFilter::plugin("jwt_auth").config(json!({
            "providers": { "main": {
                "issuer": "https://issuer",
                "audiences": ["api"],
                "local_jwks": mint::jwks(&[("rsa", &rsa), ("ec", &ec), ("ed", &ed)]),
                "forward_payload_header": "x-jwt-payload",
                "claim_to_headers": [
                    { "header_name": "x-jwt-sub", "claim_name": "sub" },
                    { "header_name": "x-jwt-team", "claim_name": "org.team" },
                ],
            }},
            "rules": [
                { "match": { "prefix": "/public" } },
                { "match": { "prefix": "/admin" }, "requires": { "provider_name": "main" }, "required_scopes": ["admin"] },
            ],
            "default": { "provider_name": "main" },
            "realm": "shop",
        })))
        .upstream(upstream.addr())
        .start();

    for (alg, kid, key) in [
        ("RS256", "rsa", &rsa),
        ("PS256", "rsa", &rsa),
        ("ES256", "ec", &ec),
        ("EdDSA", "ed", &ed),
    ] {
        let token = mint::token(alg, kid, key, &claims());
        let reply = get(
            &envoy,
            "/api",
            &[("authorization", &bearer(&token)), ("x-jwt-sub", "admin")],
        );
        let echo = ok_echo(&reply);
        assert_eq!(
            echo.header("authorization"),
            None,
            "{alg}: the token is stripped"
        );
        assert_eq!(
            echo.all("x-jwt-sub"),
            vec!["user-1"],
            "{alg}: the spoofed copy is gone"
        );
        assert_eq!(echo.header("x-jwt-team").as_deref(), Some("payments"));
        assert_eq!(
            echo.header("x-jwt-payload").as_deref(),
            token.split('.').nth(1)
        );
    }

    let missing = get(&envoy, "/api", &[]);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.headers["www-authenticate"], "Bearer realm=\"shop\"");

    let expired = mint::token(
        "ES256",
        "ec",
        &ec,
        &json!({ "iss": "https://issuer", "aud": "api", "exp": now() - 3600 }),
    );
    let reply = get(&envoy, "/api", &[("authorization", &bearer(&expired))]);
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.headers["www-authenticate"],
        "Bearer realm=\"shop\", error=\"invalid_token\", error_description=\"token is expired\""
    );
    assert!(reply.body.contains("token is expired"), "{}", reply.body);
    assert!(
        !reply.body.contains("ec"),
        "no key ids leak: {}",
        reply.body
    );

    let token = mint::token("ES256", "ec", &ec, &claims());
    let reply = get(&envoy, "/admin", &[("authorization", &bearer(&token))]);
    assert_eq!(reply.status, 403);
    assert!(reply.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"insufficient_scope\""));
    assert!(reply.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("scope=\"admin\""));

    let echo = ok_echo(&get(&envoy, &format!("/q?a=1&access_token={token}"), &[]));
    assert_eq!(echo.path, "/q?a=1", "the query token is stripped");

    let echo = ok_echo(&get(&envoy, "/public/x", &[("x-jwt-sub", "admin")]));
    assert_eq!(
        echo.header("x-jwt-sub"),
        None,
        "spoofed output headers never reach upstream"
    );

    let twice = get(
        &envoy,
        "/api",
        &[
            ("authorization", &bearer(&token)),
            ("authorization", &bearer(&token)),
        ],
    );
    assert_eq!(twice.status, 401);

    // Four algorithms and the query token.
    counted(&envoy, "allowed", 5);
    counted(&envoy, "denied.missing", 1);
    counted(&envoy, "denied.expired", 1);
    counted(&envoy, "denied.insufficient_scope", 1);
    counted(&envoy, "denied.duplicate", 1);
    assert!(
        stat(&envoy, "cache_hit") >= 1,
        "the ES256 token was seen before"
    );
}

#[test]
fn a_bad_config_is_refused_naming_the_field() {
    let err = Envoy::builder()
        .wasm(WasmFilter::plugin("jwt_auth").config(json!({
            "providers": { "main": { "local_jwks": mint::jwks(&[("k", &mint::p256(1))]) } },
            "rules": [{ "match": { "regex": "(" }, "requires": { "provider_name": "main" } }],
        })))
        .try_start()
        .expect_err("Envoy must refuse the configuration");
    assert!(
        err.log.contains(
            "jwt-auth: invalid plugin configuration: rules[0].match.regex: invalid regex"
        ),
        "{err}"
    );
}

#[test]
fn a_duplicate_key_is_refused_naming_it() {
    // `providers` is a map: without the check the second "main" silently replaced the first.
    let jwks = |seed| mint::jwks(&[("k", &mint::p256(seed))]).to_string();
    let config = format!(
        r#"{{"providers":{{"main":{{"local_jwks":{}}},"main":{{"local_jwks":{}}}}},"default":{{"provider_name":"main"}}}}"#,
        jwks(1),
        jwks(2)
    );
    let err = Envoy::builder()
        .wasm(WasmFilter::plugin("jwt_auth").raw_config(&config))
        .try_start()
        .expect_err("Envoy must refuse the configuration");
    assert!(
        err.log
            .contains(r#"jwt-auth: invalid plugin configuration: providers: duplicate key "main""#),
        "{err}"
    );
}

fn remote_filter(timeout: &str, cache_duration: &str) -> WasmFilter {
    WasmFilter::plugin("jwt_auth").config(json!({
        "providers": { "main": {
            "issuer": "https://issuer",
            "remote_jwks": {
                "uri": "http://issuer.test/jwks", "cluster": "jwks",
                "timeout": timeout, "cache_duration": cache_duration,
                "unknown_kid_refetch_interval": "1s",
            },
            "claim_to_headers": [{ "header_name": "x-jwt-sub", "claim_name": "sub" }],
        }},
        "default": { "provider_name": "main" },
    }))
}

fn jwks_doc(keys: &[(&str, &mint::Signer)]) -> String {
    mint::jwks(keys).to_string()
}

#[test]
fn remote_keys_first_request_waits_then_rotation_then_outages_keep_the_last_good_keys() {
    let (k1, k2) = (mint::p256(1), mint::p256(2));
    let jwks = Upstream::start();
    jwks.serve("/jwks", "application/json", jwks_doc(&[("k1", &k1)]));
    // The first fetch is slow: the first request has to wait for it.
    jwks.set_mode("/jwks", Mode::Slow(Duration::from_millis(400)));
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(remote_filter("2s", "1s"))
        .cluster(static_cluster("jwks", jwks.addr()))
        .upstream(upstream.addr())
        .start();
    let t1 = mint::token("ES256", "k1", &k1, &claims());
    let echo = ok_echo(&get(
        &envoy,
        "/",
        &[("authorization", &bearer(&t1)), ("x-jwt-sub", "spoofed")],
    ));
    assert_eq!(echo.all("x-jwt-sub"), vec!["user-1"]);
    jwks.set_mode("/jwks", Mode::Ok);

    // Rotation: a token with a new kid triggers a refetch that finds it.
    jwks.serve(
        "/jwks",
        "application/json",
        jwks_doc(&[("k1", &k1), ("k2", &k2)]),
    );
    let t2 = mint::token("ES256", "k2", &k2, &claims());
    ok_echo(&get(&envoy, "/", &[("authorization", &bearer(&t2))]));

    // Outage with errors: refreshes fail, the last good keys keep working.
    jwks.set_mode("/jwks", Mode::Status(500));
    let failed = stat(&envoy, "jwks_fetch_failed");
    wait_until("a failed refresh", Duration::from_secs(10), || {
        stat(&envoy, "jwks_fetch_failed") > failed
    });
    ok_echo(&get(&envoy, "/", &[("authorization", &bearer(&t1))]));
    let fresh = mint::token(
        "ES256",
        "k2",
        &k2,
        &json!({ "iss": "https://issuer", "sub": "u2", "exp": now() + 60 }),
    );
    ok_echo(&get(&envoy, "/", &[("authorization", &bearer(&fresh))]));

    // Outage by timeout: the same.
    jwks.set_mode("/jwks", Mode::Slow(Duration::from_secs(5)));
    let failed = stat(&envoy, "jwks_fetch_failed");
    wait_until("a timed-out refresh", Duration::from_secs(15), || {
        stat(&envoy, "jwks_fetch_failed") > failed
    });
    ok_echo(&get(&envoy, "/", &[("authorization", &bearer(&t2))]));

    // A removed key stops working once a refresh succeeds.
    jwks.set_mode("/jwks", Mode::Ok);
    jwks.serve("/jwks", "application/json", jwks_doc(&[("k2", &k2)]));
    let ok = stat(&envoy, "jwks_fetch_ok");
    wait_until("a good refresh", Duration::from_secs(15), || {
        stat(&envoy, "jwks_fetch_ok") > ok
    });
    let t1_again = mint::token(
        "ES256",
        "k1",
        &k1,
        &json!({ "iss": "https://issuer", "sub": "x", "exp": now() + 60 }),
    );
    wait_until("k1 to be refused", Duration::from_secs(5), || {
        get(&envoy, "/", &[("authorization", &bearer(&t1_again))]).status == 401
    });
}

#[test]
fn with_the_jwks_down_from_the_start_requests_get_401_not_a_hang() {
    let jwks = Upstream::start();
    jwks.serve("/jwks", "application/json", "{}");
    jwks.set_mode("/jwks", Mode::Status(503));
    let envoy = Envoy::builder()
        .wasm(remote_filter("500ms", "60s"))
        .cluster(static_cluster("jwks", jwks.addr()))
        .start();
    let token = mint::token("ES256", "k1", &mint::p256(1), &claims());
    for _ in 0..3 {
        let reply = get(&envoy, "/", &[("authorization", &bearer(&token))]);
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert!(
            reply
                .body
                .contains("keys to verify the token are unavailable"),
            "{}",
            reply.body
        );
    }
    // A timeout instead of an error: the same decision.
    jwks.set_mode("/jwks", Mode::Slow(Duration::from_secs(3)));
    let envoy = Envoy::builder()
        .wasm(remote_filter("300ms", "60s"))
        .cluster(static_cluster("jwks", jwks.addr()))
        .start();
    assert_eq!(
        get(&envoy, "/", &[("authorization", &bearer(&token))]).status,
        401
    );
}

#[test]
fn two_workers_share_one_fetch() {
    let key = mint::p256(1);
    let jwks = Upstream::start();
    jwks.serve("/jwks", "application/json", jwks_doc(&[("k1", &key)]));
    let envoy = Envoy::builder()
        .wasm(remote_filter("2s", "60s"))
        .cluster(static_cluster("jwks", jwks.addr()))
        .concurrency(2)
        .start();
    wait_until("the first fetch", Duration::from_secs(10), || {
        stat(&envoy, "jwks_fetch_ok") >= 1
    });
    let token = mint::token("ES256", "k1", &key, &claims());
    // New connections spread over both workers.
    for _ in 0..20 {
        let reply = client()
            .get(envoy.url("/"))
            .header("authorization", bearer(&token))
            .header("connection", "close")
            .send()
            .unwrap();
        assert_eq!(reply.status(), 200);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(jwks.hits("/jwks"), 1, "one fetch for the whole Envoy");
    assert_eq!(stat(&envoy, "jwks_fetch_ok"), 1);
}

/// One token of the comparison set: what it is, and whether it is valid. The plugin allows
/// exactly the valid ones; jwt_authn allows them too, and also the ones where the plugin is
/// deliberately stricter (see the README).
struct Case {
    name: &'static str,
    token: String,
    valid: bool,
    plugin_stricter: bool,
}

fn comparison_cases() -> Vec<Case> {
    let (rsa, ec, ed, other) = (mint::rsa(1), mint::p256(1), mint::ed25519(1), mint::p256(9));
    let (ec384, ec521, hs) = (mint::p384(1), mint::p521(1), mint::hmac(1, 64));
    let c = claims();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        c
    };
    let good = mint::token("ES256", "ec", &ec, &c);
    let parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let padded_header = {
        let header = json!({ "alg": "ES256", "kid": "ec", "typ": "JWT" }).to_string();
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE,
            header.as_bytes(),
        )
    };
    let padded = {
        let input = format!("{padded_header}.{}", parts[1]);
        format!("{input}.{}", mint::b64(&ec.sign("ES256", input.as_bytes())))
    };
    let none_header = mint::b64(json!({ "alg": "none" }).to_string().as_bytes());
    let crit = mint::token_with_header(
        &json!({ "alg": "ES256", "kid": "ec", "crit": ["x"], "x": 1 }),
        &c,
        "ES256",
        &ec,
    );
    // RS256 over raw header and payload texts (repeated names cannot go through a `Value`).
    let rs256_text = |header: &str, payload: &str| {
        let input = format!(
            "{}.{}",
            mint::b64(header.as_bytes()),
            mint::b64(payload.as_bytes())
        );
        format!(
            "{input}.{}",
            mint::b64(&rsa.sign("RS256", input.as_bytes()))
        )
    };
    let claims_text = c.to_string();
    let rs256_header = |extra: Value| {
        let mut header = json!({ "alg": "RS256", "kid": "rsa" });
        for (name, value) in extra.as_object().into_iter().flatten() {
            header[name] = value.clone();
        }
        mint::token_with_header(&header, &c, "RS256", &rsa)
    };
    let case = |name, token, valid| Case {
        name,
        token,
        valid,
        plugin_stricter: false,
    };
    let stricter = |name, token| Case {
        name,
        token,
        valid: false,
        plugin_stricter: true,
    };
    vec![
        case("RS256", mint::token("RS256", "rsa", &rsa, &c), true),
        case("RS384", mint::token("RS384", "rsa", &rsa, &c), true),
        case("PS256", mint::token("PS256", "rsa", &rsa, &c), true),
        case("ES256", good.clone(), true),
        case("RS512", mint::token("RS512", "rsa", &rsa, &c), true),
        case("PS512", mint::token("PS512", "rsa", &rsa, &c), true),
        case("ES384", mint::token("ES384", "ec384", &ec384, &c), true),
        case("ES512", mint::token("ES512", "ec521", &ec521, &c), true),
        case("EdDSA", mint::token("EdDSA", "ed", &ed, &c), true),
        case("HS256", mint::token("HS256", "hs", &hs, &c), true),
        case("HS512", mint::token("HS512", "hs", &hs, &c), true),
        case("no kid", mint::token("ES256", "", &ec, &c), true),
        case(
            "expired",
            mint::token(
                "ES256",
                "ec",
                &ec,
                &with(&|c| c["exp"] = json!(now() - 3600)),
            ),
            false,
        ),
        case(
            "expired within skew",
            mint::token("ES256", "ec", &ec, &with(&|c| c["exp"] = json!(now() - 30))),
            true,
        ),
        case(
            "not yet valid",
            mint::token(
                "ES256",
                "ec",
                &ec,
                &with(&|c| c["nbf"] = json!(now() + 3600)),
            ),
            false,
        ),
        case(
            "wrong issuer",
            mint::token(
                "ES256",
                "ec",
                &ec,
                &with(&|c| c["iss"] = json!("https://evil")),
            ),
            false,
        ),
        case(
            "wrong audience",
            mint::token("ES256", "ec", &ec, &with(&|c| c["aud"] = json!("other"))),
            false,
        ),
        case(
            "audience list",
            mint::token(
                "ES256",
                "ec",
                &ec,
                &with(&|c| c["aud"] = json!(["x", "api"])),
            ),
            true,
        ),
        case("other key", mint::token("ES256", "ec", &other, &c), false),
        case("unknown kid", mint::token("ES256", "nope", &ec, &c), false),
        case(
            "tampered",
            format!(
                "{}.{}.{}",
                parts[0],
                mint::b64(br#"{"iss":"https://issuer","aud":"api","sub":"admin"}"#),
                parts[2]
            ),
            false,
        ),
        case("alg none", format!("{none_header}.{}.", parts[1]), false),
        case("garbage", "not-a-token".into(), false),
        // The other `s` of each ECDSA signature: one of each pair is high, which JOSE allows.
        case("ES256 other s", negated_s(&good), true),
        case(
            "ES384 other s",
            negated_s(&mint::token("ES384", "ec384", &ec384, &c)),
            true,
        ),
        case(
            "ES512 other s",
            negated_s(&mint::token("ES512", "ec521", &ec521, &c)),
            true,
        ),
        case(
            "ES256 r = 0",
            ecdsa_with(&good, 32, |r, _| r.fill(0)),
            false,
        ),
        case(
            "ES256 s = 0",
            ecdsa_with(&good, 32, |_, s| s.fill(0)),
            false,
        ),
        case(
            "ES256 r >= n",
            ecdsa_with(&good, 32, |r, _| r.fill(0xff)),
            false,
        ),
        case(
            "ES512 s >= n",
            ecdsa_with(&mint::token("ES512", "ec521", &ec521, &c), 66, |_, s| {
                s.fill(0xff)
            }),
            false,
        ),
        case(
            "RS256 flipped bit",
            flipped(&mint::token("RS256", "rsa", &rsa, &c)),
            false,
        ),
        case(
            "ES384 flipped bit",
            flipped(&mint::token("ES384", "ec384", &ec384, &c)),
            false,
        ),
        case(
            "RS256 other key",
            mint::token("RS256", "rsa", &mint::rsa(2), &c),
            false,
        ),
        case(
            "ES256 naming an RSA key",
            mint::token("ES256", "rsa", &ec, &c),
            false,
        ),
        case(
            "RS256 naming an EC key",
            mint::token("RS256", "ec", &rsa, &c),
            false,
        ),
        // Repeated names: whichever one a verifier reads, the token says two things.
        case(
            "duplicate alg, none first",
            rs256_text(r#"{"alg":"none","alg":"RS256","kid":"rsa"}"#, &claims_text),
            false,
        ),
        case(
            "duplicate exp, expired first",
            rs256_text(
                r#"{"alg":"RS256","kid":"rsa"}"#,
                &format!(r#"{{"exp":{},{}"#, now() - 3600, &claims_text[1..]),
            ),
            false,
        ),
        stricter("b64 false", rs256_header(json!({ "b64": false }))),
        stricter("typ a number", rs256_header(json!({ "typ": 1 }))),
        stricter("x5c a string", rs256_header(json!({ "x5c": "MIIB" }))),
        case(
            "negative nbf",
            mint::token("RS256", "rsa", &rsa, &with(&|c| c["nbf"] = json!(-1))),
            false,
        ),
        stricter("padded header", padded),
        stricter("crit header", crit),
    ]
}

/// The token with its ECDSA signature `(r, s)` replaced by `(r, n - s)`.
fn negated_s(token: &str) -> String {
    let alg = match mint::signature(token).len() {
        64 => "ES256",
        96 => "ES384",
        _ => "ES512",
    };
    mint::with_signature(token, &mint::negated_s(alg, &mint::signature(token)).0)
}

/// The token with `r` and `s` (each `size` bytes) of its ECDSA signature changed by `f`.
fn ecdsa_with(token: &str, size: usize, f: impl Fn(&mut [u8], &mut [u8])) -> String {
    let mut sig = mint::signature(token);
    let (r, s) = sig.split_at_mut(size);
    f(r, s);
    mint::with_signature(token, &sig)
}

/// The token with one bit of its signature flipped.
fn flipped(token: &str) -> String {
    let mut sig = mint::signature(token);
    let at = sig.len() / 2;
    sig[at] ^= 0x10;
    mint::with_signature(token, &sig)
}

/// Every case on both verification paths: `crypto: host` (Envoy's `verify_signature`,
/// refused by the plugin if this Envoy cannot) and `crypto: module` (pure Rust). The
/// module has no P-384 or P-521 code (`make wasm` builds without the `portable` feature):
/// with `crypto: module` its key set has no such keys, and ES384/ES512 tokens find no key.
#[test]
fn agrees_with_native_jwt_authn_except_where_documented_stricter() {
    let (rsa, ec, ed) = (mint::rsa(1), mint::p256(1), mint::ed25519(1));
    let (ec384, ec521, hs) = (mint::p384(1), mint::p521(1), mint::hmac(1, 64));
    let jwks = mint::jwks(&[
        ("rsa", &rsa),
        ("ec", &ec),
        ("ed", &ed),
        ("ec384", &ec384),
        ("ec521", &ec521),
        ("hs", &hs),
    ]);
    let upstream = Upstream::start();
    let native = Envoy::builder()
        .filter(json!({
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": { "main": {
                    "issuer": "https://issuer",
                    "audiences": ["api"],
                    "local_jwks": { "inline_string": jwks.to_string() },
                }},
                "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "main" } }],
            },
        }))
        .upstream(upstream.addr())
        .start();
    let module_jwks = mint::jwks(&[("rsa", &rsa), ("ec", &ec), ("ed", &ed), ("hs", &hs)]);
    let plugin = |crypto: &str| {
        let jwks = if crypto == "module" {
            &module_jwks
        } else {
            &jwks
        };
        Envoy::builder()
            .wasm(WasmFilter::plugin("jwt_auth").config(json!({
                "providers": { "main": { "issuer": "https://issuer", "audiences": ["api"], "local_jwks": jwks } },
                "default": { "provider_name": "main" },
                "token_cache_size": 0,
                "crypto": crypto,
            })))
            .upstream(upstream.addr())
            .start()
    };
    let (host, module) = (plugin("host"), plugin("module"));
    assert!(
        host.log()
            .contains("RS256/384/512 and ES256/384/512 verified by the host (verify_signature)"),
        "{}",
        host.log()
    );
    assert!(module
        .log()
        .contains("every signature verified in the module (crypto: module)"));

    let mut report = Vec::new();
    let cases = comparison_cases();
    for case in &cases {
        let auth = bearer(&case.token);
        let native_ok = get(&native, "/", &[("authorization", &auth)]).status == 200;
        let host_ok = get(&host, "/", &[("authorization", &auth)]).status == 200;
        let module_ok = get(&module, "/", &[("authorization", &auth)]).status == 200;
        let expected_native = case.valid || case.plugin_stricter;
        let host_only = case.name.starts_with("ES384") || case.name.starts_with("ES512");
        let expected_module = case.valid && !host_only;
        if native_ok != expected_native || host_ok != case.valid || module_ok != expected_module {
            report.push(format!(
                "{}: jwt_authn allowed={native_ok} (expected {expected_native}), plugin allowed={host_ok} with host crypto (expected {}), {module_ok} in the module (expected {expected_module})",
                case.name, case.valid
            ));
        }
    }
    let missing = (get(&native, "/", &[]).status, get(&host, "/", &[]).status);
    assert_eq!(missing, (401, 401));
    assert!(report.is_empty(), "disagreements:\n{}", report.join("\n"));
    // Every RS* and ES* signature that reached verification went to Envoy, and Envoy always
    // gave a verdict; the module path never asked.
    // 21 cases reach an RS* or ES* verification (the others are refused before).
    host.wait_for_stat(
        "wasmcustom.jwt_auth.host_verify",
        Duration::from_secs(5),
        |v| v >= 21,
    );
    assert_eq!(stat(&host, "host_verify_failed"), 0);
    // Counted by the same tick as the module's other counters.
    module.wait_for_stat("wasmcustom.jwt_auth.allowed", Duration::from_secs(5), |v| {
        v > 0
    });
    assert_eq!(stat(&module, "host_verify"), 0);
}

/// The module `make wasm` builds has no P-384 or P-521 code: ES384 and ES512 tokens verify
/// through Envoy's `verify_signature` (`crypto: auto`); where every signature would be
/// verified in the module (`crypto: module`), a P-384 key is refused at configure, naming
/// it, and a fetched one is skipped, logged and counted while the other keys work.
#[test]
fn es384_and_es512_verify_through_the_host_and_need_it() {
    let (ec, ec384, ec521) = (mint::p256(1), mint::p384(1), mint::p521(1));
    let jwks = mint::jwks(&[("ec384", &ec384), ("ec521", &ec521)]);
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(WasmFilter::plugin("jwt_auth").config(json!({
            "providers": { "main": { "local_jwks": jwks } },
            "default": { "provider_name": "main" },
        })))
        .upstream(upstream.addr())
        .start();
    for (alg, kid, key) in [("ES384", "ec384", &ec384), ("ES512", "ec521", &ec521)] {
        let token = mint::token(alg, kid, key, &claims());
        ok_echo(&get(&envoy, "/", &[("authorization", &bearer(&token))]));
        let other = mint::token(alg, kid, key, &json!({ "sub": "other" }));
        // The token's header and signature over another payload.
        let (t, o): (Vec<_>, Vec<_>) = (token.split('.').collect(), other.split('.').collect());
        let tampered = format!("{}.{}.{}", t[0], o[1], t[2]);
        let reply = get(&envoy, "/", &[("authorization", &bearer(&tampered))]);
        assert_eq!(reply.status, 401, "{alg} with another payload");
    }
    counted(&envoy, "host_verify", 4);
    assert_eq!(stat(&envoy, "host_verify_failed"), 0);

    let err = Envoy::builder()
        .wasm(WasmFilter::plugin("jwt_auth").config(json!({
            "providers": { "main": { "local_jwks": mint::jwks(&[("ec", &ec), ("ec521", &ec521)]) } },
            "crypto": "module",
        })))
        .try_start()
        .expect_err("Envoy must refuse the configuration");
    assert!(
        err.log.contains(
            "jwt-auth: invalid plugin configuration: providers.main.local_jwks.keys[1]: ES512 needs the host's verify_signature or the portable build of jwt-auth"
        ),
        "{err}"
    );

    let server = Upstream::start();
    server.serve(
        "/jwks",
        "application/json",
        jwks_doc(&[("ec", &ec), ("ec384", &ec384)]),
    );
    let envoy = Envoy::builder()
        .wasm(WasmFilter::plugin("jwt_auth").config(json!({
            "providers": { "main": { "remote_jwks": { "uri": "http://issuer.test/jwks", "cluster": "jwks" } } },
            "default": { "provider_name": "main" },
            "crypto": "module",
        })))
        .cluster(static_cluster("jwks", server.addr()))
        .upstream(upstream.addr())
        .start();
    let token = mint::token("ES256", "ec", &ec, &claims());
    ok_echo(&get(&envoy, "/", &[("authorization", &bearer(&token))]));
    let token = mint::token("ES384", "ec384", &ec384, &claims());
    assert_eq!(
        get(&envoy, "/", &[("authorization", &bearer(&token))]).status,
        401
    );
    // Counters and log lines reach the admin API and the log file a moment later.
    wait_until(
        "the skipped key counted and logged",
        Duration::from_secs(5),
        || {
            stat(&envoy, "jwks_keys_skipped") >= 1
            && envoy.log().contains(
                "provider main: key skipped, keys[1] (kid \"ec384\"): ES384 needs the host's verify_signature or the portable build",
            )
        },
    );
}

#[test]
fn rules_requirements_sources_cors_and_forward() {
    let (a_key, b_key) = (mint::p256(1), mint::ed25519(2));
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(WasmFilter::plugin("jwt_auth").config(json!({
            "providers": {
                "a": { "issuer": "https://issuer", "local_jwks": mint::jwks(&[("a", &a_key)]) },
                "b": {
                    "local_jwks": mint::jwks(&[("b", &b_key)]),
                    "from_cookies": ["session"],
                    "from_headers": [{ "name": "x-b-token", "value_prefix": "Token " }],
                    "forward": true,
                },
            },
            "rules": [
                { "match": { "path": "/open" } },
                { "match": { "prefix": "/any" }, "requires": { "requires_any": [{ "provider_name": "a" }, { "provider_name": "b" }] } },
                { "match": { "prefix": "/all" }, "requires": { "requires_all": [{ "provider_name": "a" }, { "provider_name": "b" }] } },
                { "match": { "prefix": "/maybe" }, "requires": { "allow_missing": {} } },
                { "match": { "prefix": "/whatever" }, "requires": { "allow_missing_or_failed": {} } },
                { "match": { "regex": "/teams/[a-z]+/billing" }, "requires": { "provider_name": "a" },
                  "required_claims": [{ "claim": "org.team", "exact": ["payments"] }] },
                { "match": { "prefix": "/write", "methods": ["POST"] }, "requires": { "provider_name": "a" } },
                { "match": { "prefix": "/write" } },
            ],
            "default": { "provider_name": "a" },
            "bypass_cors_preflight": true,
        })))
        .upstream(upstream.addr())
        .start();
    let a = bearer(&mint::token("ES256", "a", &a_key, &claims()));
    let b = mint::token(
        "EdDSA",
        "b",
        &b_key,
        &json!({ "sub": "b-user", "exp": now() + 60 }),
    );
    let cookie = format!("theme=dark; session={b}");
    let b_header = format!("token {b}");
    let other_team = bearer(&mint::token(
        "ES256",
        "a",
        &a_key,
        &json!({ "iss": "https://issuer", "org": { "team": "sales" } }),
    ));
    let status = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut request = client().request(method.parse().unwrap(), envoy.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().unwrap().status().as_u16()
    };
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        ("GET", "/open", vec![], 200),
        ("GET", "/elsewhere", vec![], 401),
        ("GET", "/any", vec![("cookie", &cookie)], 200),
        ("GET", "/any", vec![("x-b-token", &b_header)], 200),
        ("GET", "/any", vec![("authorization", &a)], 200),
        ("GET", "/any", vec![], 401),
        ("GET", "/all", vec![("authorization", &a)], 401),
        (
            "GET",
            "/all",
            vec![("authorization", &a), ("cookie", &cookie)],
            200,
        ),
        ("GET", "/maybe", vec![], 200),
        (
            "GET",
            "/maybe",
            vec![("authorization", "Bearer e30.e30.e30")],
            401,
        ),
        (
            "GET",
            "/whatever",
            vec![("authorization", "Bearer e30.e30.e30")],
            200,
        ),
        ("GET", "/teams/x/billing", vec![("authorization", &a)], 200),
        (
            "GET",
            "/teams/x/billing",
            vec![("authorization", &other_team)],
            403,
        ),
        ("POST", "/write", vec![], 401),
        ("GET", "/write", vec![], 200),
        (
            "OPTIONS",
            "/x",
            vec![
                ("origin", "https://app"),
                ("access-control-request-method", "POST"),
            ],
            200,
        ),
        ("OPTIONS", "/x", vec![], 401),
    ];
    for (method, path, headers, want) in cases {
        assert_eq!(
            status(method, path, &headers),
            want,
            "{method} {path} {headers:?}"
        );
    }
    // `forward: true` keeps provider b's cookie; provider a's header is stripped.
    let echo = ok_echo(&get(
        &envoy,
        "/all",
        &[("authorization", &a), ("cookie", &cookie)],
    ));
    assert_eq!(echo.header("authorization"), None);
    assert!(echo
        .header("cookie")
        .unwrap()
        .contains(&format!("session={b}")));
}

#[test]
fn provider_claim_checks_and_token_size_limit() {
    let key = mint::p256(1);
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(WasmFilter::plugin("jwt_auth").config(json!({
            "providers": { "main": {
                "issuer": "https://issuer",
                "subjects": { "regex": "user-[0-9]+" },
                "clock_skew_seconds": 0,
                "require_expiration": true,
                "max_lifetime": "1h",
                "local_jwks": mint::jwks(&[("k", &key)]),
            }},
            "default": { "provider_name": "main" },
            "max_token_bytes": 600,
        })))
        .upstream(upstream.addr())
        .start();
    let token = |claims: Value| bearer(&mint::token("ES256", "k", &key, &claims));
    let base = |sub: &str, lifetime: i64| json!({ "iss": "https://issuer", "sub": sub, "iat": now() - 10, "exp": now() - 10 + lifetime });
    let cases = [
        ("good", token(base("user-42", 3600)), 200, ""),
        (
            "lifetime too long",
            token(base("user-42", 3601)),
            401,
            "token lifetime is not accepted",
        ),
        (
            "no exp",
            token(json!({ "iss": "https://issuer", "sub": "user-1" })),
            401,
            "token lifetime is not accepted",
        ),
        (
            "subject",
            token(base("admin", 600)),
            401,
            "token subject is not accepted",
        ),
        (
            "expired, no skew",
            token(base("user-1", 5)),
            401,
            "token is expired",
        ),
        (
            "too large",
            token(json!({ "iss": "https://issuer", "pad": "x".repeat(600) })),
            401,
            "token is too large",
        ),
    ];
    for (name, auth, status, description) in cases {
        let reply = get(&envoy, "/", &[("authorization", &auth)]);
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
        assert!(reply.body.contains(description), "{name}: {}", reply.body);
    }
    counted(&envoy, "denied.lifetime", 2);
    counted(&envoy, "denied.too_large", 1);
}

#[test]
fn encoded_parameter_names_and_subject_suffixes() {
    let key = mint::p256(1);
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(WasmFilter::plugin("jwt_auth").config(json!({
            "providers": { "main": {
                "subjects": { "suffix": "@example.com" },
                "local_jwks": mint::jwks(&[("k", &key)]),
            }},
            "default": { "provider_name": "main" },
        })))
        .upstream(upstream.addr())
        .start();
    let token = |sub: &str| {
        let claims = json!({ "sub": sub, "iat": now(), "exp": now() + 600 });
        mint::token("ES256", "k", &key, &claims)
    };
    let echo = ok_echo(&get(
        &envoy,
        &format!("/q?access%5Ftoken={}&a=1", token("ann@example.com")),
        &[],
    ));
    assert_eq!(
        echo.path, "/q?a=1",
        "found and stripped by its decoded name"
    );
    let reply = get(
        &envoy,
        &format!("/q?access_token={}", token("ann@example.org")),
        &[],
    );
    assert_eq!(reply.status, 401);
    assert!(
        reply.body.contains("token subject is not accepted"),
        "{}",
        reply.body
    );
}

#[test]
fn the_combined_module_hosts_jwt_auth_by_root_id() {
    let key = mint::p256(1);
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(
            WasmFilter::plugin("wasmgate_all")
                .root_id("jwt-auth")
                .vm_id("wasmgate")
                .config(json!({
                    "providers": { "main": { "local_jwks": mint::jwks(&[("k", &key)]) } },
                    "default": { "provider_name": "main" },
                })),
        )
        .upstream(upstream.addr())
        .start();
    let token = mint::token("ES256", "k", &key, &claims());
    ok_echo(&get(&envoy, "/", &[("authorization", &bearer(&token))]));
    assert_eq!(get(&envoy, "/", &[]).status, 401);
}

#[test]
fn shared_match_vocabulary_old_spellings_and_day_durations() {
    let (local, remote) = (mint::p256(1), mint::p256(2));
    let jwks = Upstream::start();
    jwks.serve("/jwks", "application/json", jwks_doc(&[("r", &remote)]));
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(WasmFilter::plugin("jwt_auth").config(json!({
            "providers": {
                "local": { "local_jwks": mint::jwks(&[("l", &local)]) },
                "remote": { "remote_jwks": {
                    "uri": "http://issuer.test/jwks", "cluster": "jwks", "cache_duration": "1d",
                }},
            },
            "rules": [
                { "match": { "path": { "prefix": "/new/" } } },
                { "match": { "prefix": "/old/" } },
                { "match": { "path": { "prefix": "/form" }, "methods": ["post"] } },
                { "match": { "path": { "regex": "^/remote(/|$)" } },
                  "requires": { "provider_name": "remote" } },
            ],
            "default": { "provider_name": "local" },
        })))
        .cluster(static_cluster("jwks", jwks.addr()))
        .upstream(upstream.addr())
        .start();
    let status = |method: &str, path: &str, signer: Option<(&str, &mint::Signer)>| {
        let mut request = client().request(method.parse().unwrap(), envoy.url(path));
        if let Some((kid, key)) = signer {
            let token = mint::token("ES256", kid, key, &claims());
            request = request.header("authorization", bearer(&token));
        }
        request.send().unwrap().status().as_u16()
    };
    // Open paths need no token; every other path falls to the default provider.
    for (method, path, want) in [
        ("GET", "/new/a?x=1", 200),
        ("GET", "/newer", 401),
        ("GET", "/old/a", 200),
        ("GET", "/older", 401),
        ("POST", "/form", 200),
        ("GET", "/form", 401),
        ("GET", "/remote", 401),
    ] {
        assert_eq!(status(method, path, None), want, "{method} {path}");
    }
    assert_eq!(status("GET", "/older", Some(("l", &local))), 200);
    // Keys fetched under a cache_duration of a day.
    assert_eq!(status("GET", "/remote/x", Some(("r", &remote))), 200);
    assert_eq!(status("GET", "/remote/x", Some(("l", &local))), 401);
    for warning in [
        "jwt-auth: configuration: rules[1].match.prefix: old spelling",
        r#"jwt-auth: configuration: rules[2].match.methods[0]: "post" is read as "POST""#,
    ] {
        assert!(
            envoy.wait_for_log(warning, Duration::from_secs(5)),
            "Envoy's log lacks {warning}"
        );
    }
}
