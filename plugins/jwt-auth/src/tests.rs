//! Verification tests with a fixed clock: every algorithm, every refusal.

use crate::mint;

use serde_json::{json, Value};

use wasmgate_http::{Matcher, StringMatch};

use crate::claims::ClaimRules;
use crate::fake_crypto;
use crate::hostcrypto::{Crypto, HostCrypto};
use crate::jwk::{Jwks, KeySet};
use crate::token::{Alg, Reason, Token};
use mint::{b64, key_for, token, token_with_header};

/// The fixed clock: 2026-01-01T00:00:00Z, as in `FakeHost`.
const NOW: i64 = 1_767_225_600;
const MAX: usize = 8192;

fn keyset(value: Value) -> KeySet {
    let jwks: Jwks = serde_json::from_value(value).unwrap();
    KeySet::strict(&jwks).unwrap()
}

fn keyset_err(value: Value) -> String {
    let jwks: Jwks = serde_json::from_value(value).unwrap();
    let (field, why) = KeySet::strict(&jwks).unwrap_err();
    format!("{field}: {why}")
}

fn claims() -> Value {
    json!({ "iss": "https://issuer", "sub": "user-1", "aud": "api", "iat": NOW - 10, "exp": NOW + 600 })
}

/// Parse, verify and check claims with default rules, verifying the signature both in
/// the module and through a host that verifies like Envoy: the two must agree.
fn check(raw: &str, keys: &KeySet) -> Result<(), Reason> {
    let token = Token::parse(raw, MAX)?;
    let mut host = fake_crypto::host();
    let mut crypto = Crypto::Host(HostCrypto::new(&mut host));
    let by_host = token.verify(keys, &mut crypto);
    if let Crypto::Host(done) = crypto {
        assert_eq!(done.failure, None, "the host gave no verdict");
    }
    // ES384 and ES512 are in the module only in the portable build.
    if token.alg.in_module() {
        let module = token.verify(keys, &mut Crypto::Module);
        assert_eq!(module, by_host, "module and host disagree on {raw}");
    }
    by_host?;
    ClaimRules::default().check(&token.claims, NOW).map(|_| ())
}

#[test]
fn every_algorithm_verifies_with_its_key() {
    for alg in Alg::ALL {
        let name = alg.name();
        let key = key_for(name);
        let keys = keyset(mint::jwks(&[("k1", &key)]));
        let raw = token(name, "k1", &key, &claims());
        assert_eq!(check(&raw, &keys), Ok(()), "{name}");
        // Without a kid, every key of the fitting type is tried.
        let raw = token(name, "", &key, &claims());
        assert_eq!(check(&raw, &keys), Ok(()), "{name} without kid");
    }
}

#[test]
fn a_signature_by_another_key_is_refused_for_every_algorithm() {
    for alg in Alg::ALL {
        let name = alg.name();
        let other = match key_for(name) {
            mint::Signer::Rsa(_) => mint::rsa(2),
            mint::Signer::P256(_) => mint::p256(2),
            mint::Signer::P384(_) => mint::p384(2),
            mint::Signer::P521(_) => mint::p521(2),
            mint::Signer::Ed25519(_) => mint::ed25519(2),
            mint::Signer::Hmac(_) => mint::hmac(2, 64),
        };
        let keys = keyset(mint::jwks(&[("k1", &key_for(name))]));
        let raw = token(name, "k1", &other, &claims());
        assert_eq!(check(&raw, &keys), Err(Reason::Signature), "{name}");
    }
}

#[test]
fn a_tampered_payload_is_refused() {
    let key = key_for("ES256");
    let keys = keyset(mint::jwks(&[("k1", &key)]));
    let raw = token("ES256", "k1", &key, &claims());
    let parts: Vec<&str> = raw.split('.').collect();
    let forged = b64(json!({ "sub": "admin", "exp": NOW + 600 })
        .to_string()
        .as_bytes());
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_eq!(check(&tampered, &keys), Err(Reason::Signature));
}

#[test]
fn alg_none_is_refused_in_any_spelling() {
    let keys = keyset(mint::jwks(&[("k1", &key_for("HS256"))]));
    for none in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({ "alg": none }).to_string().as_bytes());
        let payload = b64(claims().to_string().as_bytes());
        for raw in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            assert_eq!(check(&raw, &keys), Err(Reason::Algorithm), "{none}");
        }
    }
}

#[test]
fn unknown_or_misspelled_algorithms_are_refused() {
    let key = key_for("HS256");
    let keys = keyset(mint::jwks(&[("k1", &key)]));
    for alg in ["hs256", "RS1", "ES256K", "", "HS256 "] {
        let header = json!({ "alg": alg, "kid": "k1" });
        let raw = token_with_header(&header, &claims(), "HS256", &key);
        assert_eq!(check(&raw, &keys), Err(Reason::Algorithm), "{alg:?}");
    }
    let header = json!({ "alg": 256 });
    let raw = token_with_header(&header, &claims(), "HS256", &key);
    assert_eq!(check(&raw, &keys), Err(Reason::Malformed));
}

#[test]
fn hmac_never_verifies_with_an_asymmetric_key() {
    // The classic confusion attack: HS256 keyed with the RSA public key's bytes.
    let rsa = mint::rsa(1);
    let keys = keyset(mint::jwks(&[("k1", &rsa)]));
    let mint::Signer::Rsa(private) = &rsa else {
        unreachable!()
    };
    let public_der = {
        use rsa::traits::PublicKeyParts;
        private.n().to_bytes_be()
    };
    let raw = token("HS256", "k1", &mint::Signer::Hmac(public_der), &claims());
    assert_eq!(check(&raw, &keys), Err(Reason::UnknownKey));
    let raw = token("HS256", "", &mint::hmac(1, 64), &claims());
    assert_eq!(check(&raw, &keys), Err(Reason::UnknownKey));
}

#[test]
fn the_algorithm_must_fit_the_key_type_and_the_keys_own_alg() {
    let ec = key_for("ES256");
    let keys = keyset(mint::jwks(&[("k1", &ec)]));
    // ES384 with a P-256 key: no fitting key.
    let raw = token("ES384", "k1", &key_for("ES384"), &claims());
    assert_eq!(check(&raw, &keys), Err(Reason::UnknownKey));

    let rsa = mint::rsa(1);
    let mut jwk = rsa.jwk("k1");
    jwk["alg"] = json!("RS256");
    let keys = keyset(json!({ "keys": [jwk] }));
    assert_eq!(check(&token("RS256", "k1", &rsa, &claims()), &keys), Ok(()));
    assert_eq!(
        check(&token("PS256", "k1", &rsa, &claims()), &keys),
        Err(Reason::UnknownKey),
        "the key says RS256 only"
    );
}

#[test]
fn with_a_kid_only_that_key_is_tried() {
    let (a, b) = (mint::p256(1), mint::p256(2));
    let keys = keyset(mint::jwks(&[("a", &a), ("b", &b)]));
    assert_eq!(check(&token("ES256", "b", &b, &claims()), &keys), Ok(()));
    assert_eq!(
        check(&token("ES256", "a", &b, &claims()), &keys),
        Err(Reason::Signature)
    );
    assert_eq!(
        check(&token("ES256", "c", &b, &claims()), &keys),
        Err(Reason::UnknownKey)
    );
    assert_eq!(check(&token("ES256", "", &b, &claims()), &keys), Ok(()));
    let raw = token("ES256", "c", &b, &claims());
    assert!(!Token::parse(&raw, MAX).unwrap().kid_known(&keys));
}

#[test]
fn crit_is_refused() {
    let key = key_for("HS256");
    let keys = keyset(mint::jwks(&[("k1", &key)]));
    let header = json!({ "alg": "HS256", "crit": ["exp"], "exp": 1 });
    let raw = token_with_header(&header, &claims(), "HS256", &key);
    assert_eq!(check(&raw, &keys), Err(Reason::Crit));
}

#[test]
fn only_strict_unpadded_base64url_is_accepted() {
    let key = key_for("HS256");
    let keys = keyset(mint::jwks(&[("k1", &key)]));
    let good = token("HS256", "k1", &key, &json!({ "sub": "a", "exp": NOW + 60 }));
    assert_eq!(check(&good, &keys), Ok(()));
    let parts: Vec<&str> = good.split('.').collect();

    // Padding on any segment.
    let header_json = json!({ "alg": "HS256", "kid": "k1" }).to_string();
    let padded = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE,
        header_json.as_bytes(),
    );
    assert!(padded.ends_with('='), "pick a header whose encoding pads");
    let raw = format!("{padded}.{}.{}", parts[1], parts[2]);
    assert_eq!(check(&raw, &keys), Err(Reason::Malformed));
    assert_eq!(check(&format!("{good}="), &keys), Err(Reason::Malformed));

    // Standard (non-url) alphabet.
    let std_sig = parts[2].replace('-', "+").replace('_', "/");
    if std_sig != parts[2] {
        assert_eq!(
            check(&format!("{}.{}.{std_sig}", parts[0], parts[1]), &keys),
            Err(Reason::Malformed)
        );
    }
    assert_eq!(
        check(&format!("{}.{}+.{}", parts[0], parts[1], parts[2]), &keys),
        Err(Reason::Malformed)
    );

    // Stray bits in the last character.
    let last = parts[2].chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    let twisted = alphabet.chars().nth(idx ^ 1).unwrap();
    let mut sig = parts[2].to_owned();
    sig.pop();
    sig.push(twisted);
    assert_ne!(
        check(&format!("{}.{}.{sig}", parts[0], parts[1]), &keys),
        Ok(())
    );

    // Whitespace, wrong segment counts, empty signature.
    assert_eq!(check(&format!(" {good}"), &keys), Err(Reason::Malformed));
    assert_eq!(
        check(&format!("{}.{}", parts[0], parts[1]), &keys),
        Err(Reason::Malformed)
    );
    assert_eq!(check(&format!("{good}.x.y"), &keys), Err(Reason::Malformed));
    assert_eq!(
        check(&format!("{}.{}.", parts[0], parts[1]), &keys),
        Err(Reason::Malformed)
    );
}

#[test]
fn header_and_payload_must_be_json_objects() {
    let key = key_for("HS256");
    let keys = keyset(mint::jwks(&[("k1", &key)]));
    let sign = |header: &str, payload: &str| {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let sig = key.sign("HS256", input.as_bytes());
        format!("{input}.{}", b64(&sig))
    };
    let header = r#"{"alg":"HS256"}"#;
    assert_eq!(check(&sign(header, r#"{"sub":"a"}"#), &keys), Ok(()));
    for payload in ["[1]", "\"s\"", "42", "not json", "{\"a\":", ""] {
        assert_eq!(
            check(&sign(header, payload), &keys),
            Err(Reason::Malformed),
            "{payload}"
        );
    }
    for header in [
        "[]",
        "\"HS256\"",
        "{\"alg\":\"HS256\"",
        "{}",
        r#"{"alg":"HS256","kid":7}"#,
    ] {
        assert!(check(&sign(header, "{}"), &keys).is_err(), "{header}");
    }
}

/// An HS256 token of the raw header and payload texts, signed by `key`.
fn signed_text(key: &mint::Signer, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = key.sign("HS256", input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

#[test]
fn repeated_names_in_the_header_or_the_claims_are_refused() {
    let key = key_for("HS256");
    let keys = keyset(mint::jwks(&[("k1", &key)]));
    let header = r#"{"alg":"HS256","kid":"k1"}"#;
    let payload = format!(r#"{{"iss":"https://issuer","exp":{}}}"#, NOW + 600);
    assert_eq!(check(&signed_text(&key, header, &payload), &keys), Ok(()));
    let headers = [
        // Whichever `alg` a verifier reads, the other one is a second opinion.
        r#"{"alg":"none","alg":"HS256","kid":"k1"}"#.to_owned(),
        r#"{"alg":"HS256","alg":"HS256","kid":"k1"}"#.to_owned(),
        r#"{"alg":"HS256","kid":"nope","kid":"k1"}"#.to_owned(),
        r#"{"alg":"HS256","kid":"k1","x":{"y":1,"y":2}}"#.to_owned(),
    ];
    for header in &headers {
        let raw = signed_text(&key, header, &payload);
        assert_eq!(check(&raw, &keys), Err(Reason::Malformed), "{header}");
    }
    let payloads = [
        format!(
            r#"{{"exp":{},"iss":"https://issuer","exp":{}}}"#,
            NOW - 3600,
            NOW + 600
        ),
        format!(
            r#"{{"iss":"https://issuer","exp":{},"exp":{}}}"#,
            NOW + 600,
            NOW - 3600
        ),
        format!(
            r#"{{"iss":"https://evil","iss":"https://issuer","exp":{}}}"#,
            NOW + 600
        ),
        format!(
            r#"{{"exp":{},"realm":{{"roles":["a"],"roles":["admin"]}}}}"#,
            NOW + 600
        ),
    ];
    for payload in &payloads {
        let raw = signed_text(&key, header, payload);
        assert_eq!(check(&raw, &keys), Err(Reason::Malformed), "{payload}");
    }
}

#[test]
fn registered_header_parameters_must_have_their_types() {
    let key = key_for("HS256");
    let keys = keyset(mint::jwks(&[("k1", &key)]));
    let at = |extra: Value| {
        let mut header = json!({ "alg": "HS256", "kid": "k1" });
        for (name, value) in extra.as_object().unwrap() {
            header[name] = value.clone();
        }
        check(&token_with_header(&header, &claims(), "HS256", &key), &keys)
    };
    for fine in [
        json!({ "typ": "JWT", "cty": "JWT", "jku": "https://x/jwks", "x5u": "https://x/c" }),
        json!({ "x5c": ["MIIB", "MIIC"], "x5t": "dGh1bWI", "x5t#S256": "dGh1bWI" }),
        json!({ "jwk": { "kty": "oct" }, "b64": true, "x-other": [1, { "a": null }] }),
    ] {
        assert_eq!(at(fine.clone()), Ok(()), "{fine}");
    }
    for bad in [
        json!({ "typ": 1 }),
        json!({ "cty": null }),
        json!({ "jku": ["https://x/jwks"] }),
        json!({ "x5u": {} }),
        json!({ "x5c": "MIIB" }),
        json!({ "x5c": ["MIIB", 2] }),
        json!({ "x5t": false }),
        json!({ "x5t#S256": 7 }),
        json!({ "jwk": "{}" }),
        json!({ "crit": "exp", "exp": 1 }),
        json!({ "crit": [1] }),
        // RFC 7797 unencoded payloads are not implemented, with or without `crit`.
        json!({ "b64": false }),
        json!({ "b64": "true" }),
        json!({ "b64": null }),
    ] {
        assert_eq!(at(bad.clone()), Err(Reason::Malformed), "{bad}");
    }
    assert_eq!(
        check(
            &signed_text(&key, r#"{"alg":"HS256","kid":["k1"]}"#, "{}"),
            &keys
        ),
        Err(Reason::Malformed)
    );
}

#[test]
fn numeric_dates_before_1970_are_refused() {
    let rules = ClaimRules::default();
    let at = |claims: Value| rules.check(claims.as_object().unwrap(), NOW);
    for name in ["exp", "nbf", "iat"] {
        assert_eq!(at(json!({ name: -1 })), Err(Reason::Malformed), "{name}");
        assert_eq!(at(json!({ name: -0.5 })), Err(Reason::Malformed), "{name}");
        assert_eq!(
            at(json!({ name: -1e300 })),
            Err(Reason::Malformed),
            "{name}"
        );
        assert_eq!(
            at(json!({ name: i64::MIN })),
            Err(Reason::Malformed),
            "{name}"
        );
    }
    assert_eq!(at(json!({ "nbf": 0, "iat": 0.5 })), Ok(None));
    assert_eq!(at(json!({ "exp": 1e300 })), Ok(Some(i64::MAX)));
}

#[test]
fn oversized_tokens_are_refused_before_parsing() {
    let key = key_for("HS256");
    let raw = token("HS256", "", &key, &json!({ "pad": "x".repeat(200) }));
    assert_eq!(Token::parse(&raw, 100).err(), Some(Reason::TooLarge));
    assert!(Token::parse(&raw, raw.len()).is_ok());
}

#[test]
fn time_claims_honour_the_clock_skew() {
    let rules = ClaimRules::default();
    let at = |claims: Value| rules.check(claims.as_object().unwrap(), NOW);
    assert_eq!(at(json!({ "exp": NOW - 60 })), Ok(Some(NOW - 60)));
    assert_eq!(at(json!({ "exp": NOW - 61 })), Err(Reason::Expired));
    assert_eq!(at(json!({ "nbf": NOW + 60 })), Ok(None));
    assert_eq!(at(json!({ "nbf": NOW + 61 })), Err(Reason::NotYetValid));
    assert_eq!(
        at(json!({ "exp": (NOW + 5) as f64 + 0.5 })),
        Ok(Some(NOW + 5))
    );
    assert_eq!(at(json!({ "exp": "tomorrow" })), Err(Reason::Malformed));
    assert_eq!(at(json!({ "nbf": null })), Err(Reason::Malformed));
    let strict = ClaimRules {
        clock_skew_seconds: 0,
        ..ClaimRules::default()
    };
    assert_eq!(
        strict.check(json!({ "exp": NOW - 1 }).as_object().unwrap(), NOW),
        Err(Reason::Expired)
    );
}

#[test]
fn expiration_and_lifetime_limits() {
    let rules = ClaimRules {
        require_expiration: true,
        ..ClaimRules::default()
    };
    assert_eq!(
        rules.check(json!({}).as_object().unwrap(), NOW),
        Err(Reason::Lifetime)
    );
    let rules = ClaimRules {
        max_lifetime: Some(3600),
        ..ClaimRules::default()
    };
    let at = |claims: Value| rules.check(claims.as_object().unwrap(), NOW);
    assert_eq!(
        at(json!({ "iat": NOW, "exp": NOW + 3600 })),
        Ok(Some(NOW + 3600))
    );
    assert_eq!(
        at(json!({ "iat": NOW, "exp": NOW + 3601 })),
        Err(Reason::Lifetime)
    );
    assert_eq!(
        at(json!({ "nbf": NOW, "exp": NOW + 3601 })),
        Err(Reason::Lifetime)
    );
    assert_eq!(
        at(json!({ "exp": NOW + 10 })),
        Err(Reason::Lifetime),
        "no start to measure from"
    );
    assert_eq!(
        at(json!({ "iat": NOW })),
        Err(Reason::Lifetime),
        "max_lifetime implies exp"
    );
}

#[test]
fn issuer_audiences_and_subjects() {
    let rules = ClaimRules {
        issuer: Some("https://issuer".into()),
        audiences: vec!["api".into(), "web".into()],
        subjects: Some(Matcher::Prefix("user-".into())),
        ..ClaimRules::default()
    };
    let at = |claims: Value| rules.check(claims.as_object().unwrap(), NOW);
    let ok = json!({ "iss": "https://issuer", "aud": "web", "sub": "user-9" });
    assert_eq!(at(ok.clone()), Ok(None));
    let mut c = ok.clone();
    c["aud"] = json!(["other", "api"]);
    assert_eq!(at(c), Ok(None), "aud array, any of");
    let mut c = ok.clone();
    c["aud"] = json!(["other"]);
    assert_eq!(at(c), Err(Reason::Audience));
    let mut c = ok.clone();
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(at(c), Err(Reason::Audience));
    let mut c = ok.clone();
    c["iss"] = json!("https://issuer/");
    assert_eq!(at(c), Err(Reason::Issuer));
    let mut c = ok.clone();
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(at(c), Err(Reason::Issuer));
    let mut c = ok.clone();
    c["sub"] = json!("service-1");
    assert_eq!(at(c), Err(Reason::Subject));
    let mut c = ok;
    c["sub"] = json!(7);
    assert_eq!(at(c), Err(Reason::Subject));

    let regex = StringMatch::Regex("user-[0-9]+".into())
        .compile_whole()
        .unwrap();
    assert!(regex.matches("user-12"));
    assert!(
        !regex.matches("xuser-12"),
        "a regex matches the whole value"
    );
    assert!(!regex.matches("user-12x"));
}

#[test]
fn bad_jwks_are_refused_naming_the_key_and_field() {
    let rsa = mint::rsa(1);
    let mut jwk = rsa.jwk("k");
    jwk["n"] = json!("AQAB");
    assert!(keyset_err(json!({ "keys": [jwk] })).starts_with("keys[0].n: RSA modulus of 17 bits"));
    let mut jwk = rsa.jwk("k");
    jwk["n"] = json!("a+b/");
    assert!(keyset_err(json!({ "keys": [jwk] })).starts_with("keys[0].n: not unpadded base64url"));
    let mut jwk = key_for("ES256").jwk("k");
    jwk["crv"] = json!("P-999");
    assert_eq!(
        keyset_err(json!({ "keys": [{"kty":"oct","k":b64(&[1; 32])}, jwk] })),
        "keys[1].crv: unsupported curve \"P-999\""
    );
    let mut jwk = key_for("ES256").jwk("k");
    jwk["y"] = json!(b64(&[1; 32]));
    assert_eq!(
        keyset_err(json!({ "keys": [jwk] })),
        "keys[0]: the point is not on the curve"
    );
    // P-384 and P-521 points are checked in both builds (by the curves' crates, or by
    // `der::on_curve` where only the host verifies).
    for alg in ["ES384", "ES512"] {
        let mut jwk = key_for(alg).jwk("k");
        let y = mint::b64(&vec![1; if alg == "ES384" { 48 } else { 66 }]);
        jwk["y"] = json!(y);
        assert_eq!(
            keyset_err(json!({ "keys": [jwk] })),
            "keys[0]: the point is not on the curve",
            "{alg}"
        );
    }
    let mut jwk = key_for("ES256").jwk("k");
    jwk["alg"] = json!("RS256");
    assert_eq!(
        keyset_err(json!({ "keys": [jwk] })),
        "keys[0].alg: RS256 does not fit a EC key"
    );
    let mut jwk = key_for("ES256").jwk("k");
    jwk["alg"] = json!("ES257");
    assert_eq!(
        keyset_err(json!({ "keys": [jwk] })),
        "keys[0].alg: unsupported algorithm \"ES257\""
    );
    let mut jwk = key_for("ES256").jwk("k");
    jwk["use"] = json!("enc");
    assert!(keyset_err(json!({ "keys": [jwk] })).starts_with("keys[0].use:"));
    let mut jwk = key_for("ES256").jwk("k");
    jwk["d"] = json!("secret");
    assert!(keyset_err(json!({ "keys": [jwk] })).starts_with("keys[0].d: private key"));
    assert!(
        keyset_err(json!({ "keys": [{"kty":"oct","k":b64(&[1; 16])}] }))
            .starts_with("keys[0].k: an HMAC key needs")
    );
    assert!(keyset_err(json!({ "keys": [{"kty":"XYZ"}] })).starts_with("keys[0].kty: unsupported"));
    assert!(keyset_err(json!({ "keys": [] })).starts_with("keys: a JWKS needs"));
}

#[test]
fn hmac_keys_shorter_than_the_hash_do_not_verify_longer_hashes() {
    let key = mint::hmac(3, 32);
    let keys = keyset(mint::jwks(&[("k", &key)]));
    assert_eq!(check(&token("HS256", "k", &key, &claims()), &keys), Ok(()));
    assert_eq!(
        check(&token("HS512", "k", &key, &claims()), &keys),
        Err(Reason::Signature)
    );
}

#[test]
fn fetched_jwks_skip_unusable_keys_but_need_one() {
    let good = key_for("ES256").jwk("k");
    let doc = json!({ "keys": [{ "kty": "RSA", "use": "enc", "n": "x", "e": "AQAB" }, good] });
    let read = KeySet::lenient(doc.to_string().as_bytes(), false).unwrap();
    let (set, skipped) = (read.set, read.skipped);
    assert_eq!((set.keys.len(), skipped), (1, 1));
    assert!(KeySet::lenient(br#"{"keys":[]}"#, false).is_err());
    assert!(KeySet::lenient(br#"{"keys":[{"kty":"XYZ"}]}"#, false).is_err());
    assert!(KeySet::lenient(b"<html>", false).is_err());
}

#[test]
fn a_flipped_bit_in_the_signature_is_refused_for_every_algorithm() {
    for alg in Alg::ALL {
        let name = alg.name();
        let key = key_for(name);
        let keys = keyset(mint::jwks(&[("k1", &key)]));
        let raw = token(name, "k1", &key, &claims());
        let sig = mint::signature(&raw);
        for at in [0, sig.len() / 2, sig.len() - 1] {
            let mut flipped = sig.clone();
            flipped[at] ^= 0x01;
            let bad = mint::with_signature(&raw, &flipped);
            assert_eq!(
                check(&bad, &keys),
                Err(Reason::Signature),
                "{name} byte {at}"
            );
        }
    }
}

/// JOSE takes either `s` of a signature, high or low; `check` also proves module and host
/// agree on both.
#[test]
fn ecdsa_signatures_with_a_high_or_low_s_are_accepted() {
    for name in ["ES256", "ES384", "ES512"] {
        let key = key_for(name);
        let keys = keyset(mint::jwks(&[("k1", &key)]));
        let raw = token(name, "k1", &key, &claims());
        let (other, other_is_high) = mint::negated_s(name, &mint::signature(&raw));
        assert_eq!(check(&raw, &keys), Ok(()), "{name}");
        let other = mint::with_signature(&raw, &other);
        assert_eq!(
            check(&other, &keys),
            Ok(()),
            "{name}, high s: {other_is_high}"
        );
    }
}

#[test]
fn ecdsa_r_and_s_must_be_in_range_and_the_signature_exactly_sized() {
    for (name, size) in [("ES256", 32), ("ES384", 48), ("ES512", 66)] {
        let key = key_for(name);
        let keys = keyset(mint::jwks(&[("k1", &key)]));
        let raw = token(name, "k1", &key, &claims());
        let sig = mint::signature(&raw);
        let (r, s) = sig.split_at(size);
        let zero = vec![0u8; size];
        // All ones is above the group order of every NIST curve.
        let big = vec![0xffu8; size];
        let cases: [(&str, Vec<u8>); 6] = [
            ("r = 0", [&zero[..], s].concat()),
            ("s = 0", [r, &zero[..]].concat()),
            ("r >= n", [&big[..], s].concat()),
            ("s >= n", [r, &big[..]].concat()),
            ("one byte more", [&sig[..], &[0]].concat()),
            ("one byte less", sig[1..].to_vec()),
        ];
        for (what, bad) in cases {
            let bad = mint::with_signature(&raw, &bad);
            assert_eq!(check(&bad, &keys), Err(Reason::Signature), "{name}: {what}");
            // Refused before the host is asked: a host that says yes to all is not asked.
            let mut yes = wasmgate_glue::FakeHost::new()
                .with_foreign_function(crate::hostcrypto::FUNCTION, |_| Ok(vec![8, 1]));
            let mut crypto = Crypto::Host(HostCrypto::new(&mut yes));
            let parsed = Token::parse(&bad, MAX).unwrap();
            assert_eq!(parsed.verify(&keys, &mut crypto), Err(Reason::Signature));
            let Crypto::Host(done) = crypto else {
                unreachable!()
            };
            assert_eq!(done.calls, 0, "{name}: {what}");
        }
        // A DER signature, as a host would take it, is not a JOSE one.
        let der = crate::der::ecdsa_signature(
            match name {
                "ES256" => crate::der::Curve::P256,
                "ES384" => crate::der::Curve::P384,
                _ => crate::der::Curve::P521,
            },
            &sig,
        )
        .unwrap();
        let bad = mint::with_signature(&raw, &der);
        assert_eq!(check(&bad, &keys), Err(Reason::Signature), "{name}: DER");
    }
}

#[test]
fn keys_carry_their_der_form_for_the_host_only_where_the_host_verifies() {
    for name in ["RS256", "ES256", "ES384", "ES512", "EdDSA", "HS256"] {
        let keys = keyset(mint::jwks(&[("k1", &key_for(name))]));
        let has_der = keys.keys[0].spki.is_some();
        assert_eq!(
            has_der,
            name.starts_with("RS") || name.starts_with("ES"),
            "{name}"
        );
    }
}

/// A JWKS with an ES256 key (`k1`), a P-384 key (`k2`) and a P-521 key (`k3`).
fn three_curves() -> Value {
    mint::jwks(&[
        ("k1", &key_for("ES256")),
        ("k2", &key_for("ES384")),
        ("k3", &key_for("ES512")),
    ])
}

/// The default build: P-384 and P-521 keys are loaded (checked, in their DER form) but
/// only the host verifies with them; the module says no rather than guess.
#[cfg(not(feature = "portable"))]
#[test]
fn without_portable_p384_and_p521_keys_are_for_the_host_only() {
    let keys = keyset(three_curves());
    let host_only: Vec<_> = keys.keys.iter().map(|k| k.host_only()).collect();
    assert_eq!(host_only, [None, Some(Alg::ES384), Some(Alg::ES512)]);
    assert_eq!(keys.first_host_only(), Some((1, Alg::ES384)));
    assert!(!Alg::ES384.in_module() && !Alg::ES512.in_module() && Alg::ES256.in_module());
    for alg in ["ES384", "ES512"] {
        let raw = token(alg, "", &key_for(alg), &claims());
        let parsed = Token::parse(&raw, MAX).unwrap();
        assert_eq!(
            parsed.verify(&keys, &mut Crypto::Module),
            Err(Reason::Signature),
            "{alg}"
        );
        assert_eq!(check(&raw, &keys), Ok(()), "{alg} through the host");
    }
}

#[cfg(feature = "portable")]
#[test]
fn the_portable_build_verifies_every_curve_in_the_module() {
    let keys = keyset(three_curves());
    assert!(keys.keys.iter().all(|k| k.host_only().is_none()));
    assert_eq!(keys.first_host_only(), None);
    for alg in ["ES256", "ES384", "ES512"] {
        let raw = token(alg, "", &key_for(alg), &claims());
        let parsed = Token::parse(&raw, MAX).unwrap();
        assert_eq!(parsed.verify(&keys, &mut Crypto::Module), Ok(()), "{alg}");
    }
}

/// A fetched JWKS where no host verifies: the keys only a host could use are left out,
/// each named for the log; where a host verifies (or in the portable build) they stay.
#[test]
fn fetched_keys_only_a_host_could_use_are_skipped_and_named_where_the_module_verifies() {
    let document = three_curves().to_string();
    let with_host = KeySet::lenient(document.as_bytes(), false).unwrap();
    assert_eq!((with_host.set.keys.len(), with_host.skipped), (3, 0));
    assert!(with_host.host_only.is_empty());
    let alone = KeySet::lenient(document.as_bytes(), true).unwrap();
    if cfg!(feature = "portable") {
        assert_eq!((alone.set.keys.len(), alone.skipped), (3, 0));
        return;
    }
    assert_eq!((alone.set.keys.len(), alone.skipped), (1, 2));
    assert_eq!(
        alone.host_only,
        [
            "keys[1] (kid \"k2\"): ES384 needs the host's verify_signature or the portable build of jwt-auth",
            "keys[2] (kid \"k3\"): ES512 needs the host's verify_signature or the portable build of jwt-auth",
        ]
    );
    // A document of such keys alone is no key set at all, and says why.
    let only = mint::jwks(&[("k2", &key_for("ES384"))]).to_string();
    let why = KeySet::lenient(only.as_bytes(), true).unwrap_err();
    assert_eq!(
        why,
        "no usable signing key among 1 keys (keys[0] (kid \"k2\"): ES384 needs the host's verify_signature or the portable build of jwt-auth)"
    );
}
