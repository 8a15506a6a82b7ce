//! Property tests of every parser that sees an untrusted token or key document: token split
//! and base64url, JOSE header, claims, JWKS. They never panic, on error paths too, and a
//! token that was not signed by a known key is never accepted. Named `prop_*` so that
//! `make fuzz` runs them with many cases (`PROPTEST_CASES` overrides the default 256).

#[path = "support/mint.rs"]
mod mint;

use jwt_auth::claims::ClaimRules;
use jwt_auth::hostcrypto::Crypto;
use jwt_auth::jwk::KeySet;
use jwt_auth::token::Token;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const MAX: usize = 8192;

/// Any JSON value, a few levels deep, with numbers at the edges (huge, negative, fractional).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-zA-Z0-9 ._:/-]{0,12}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}|alg|kid|crit|exp|nbf|iat|aud|iss", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object(entries: Vec<(&str, Value)>, extra: Value) -> Value {
    let mut map: Map<String, Value> = match extra {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for (k, v) in entries {
        map.insert(k.to_owned(), v);
    }
    Value::Object(map)
}

/// A segment: base64url of some bytes, sometimes padded or in the other alphabet.
fn segment(bytes: &[u8], style: u8) -> String {
    let plain = mint::b64(bytes);
    match style % 4 {
        0 | 1 => plain,
        2 => format!("{plain}=="),
        _ => plain.replace('-', "+").replace('_', "/"),
    }
}

fn alg_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "ES256", "ES384", "ES512", "RS256", "PS256", "HS256", "EdDSA", "none", "None", "NONE",
            "", "es256",
        ])
        .prop_map(Value::from),
        json_value(),
    ]
}

fn es256_keys() -> KeySet {
    let jwks = mint::jwks(&[("k1", &mint::p256(1))]);
    KeySet::lenient(jwks.to_string().as_bytes(), false)
        .unwrap()
        .set
}

proptest! {
    #[test]
    fn prop_any_text_parses_or_is_refused(raw in "[A-Za-z0-9_=+/.-]{0,120}|.{0,80}") {
        if let Ok(token) = Token::parse(&raw, MAX) {
            prop_assert!(token.verify(&es256_keys(), &mut Crypto::Module).is_err());
        }
    }

    #[test]
    fn prop_forged_tokens_never_verify(
        alg in alg_value(),
        kid in prop::option::of(json_value()),
        crit in any::<bool>(),
        header_extra in json_value(),
        claims in json_value(),
        signature in prop::collection::vec(any::<u8>(), 0..140),
        styles in any::<[u8; 3]>(),
        extra_dots in 0usize..2,
    ) {
        let mut header = vec![("alg", alg)];
        if let Some(kid) = kid {
            header.push(("kid", kid));
        }
        if crit {
            header.push(("crit", json!(["exp"])));
        }
        let header = object(header, header_extra);
        let raw = format!(
            "{}.{}.{}{}",
            segment(header.to_string().as_bytes(), styles[0]),
            segment(claims.to_string().as_bytes(), styles[1]),
            segment(&signature, styles[2]),
            ".".repeat(extra_dots),
        );
        if let Ok(token) = Token::parse(&raw, MAX) {
            let _ = token.kid_known(&es256_keys());
            prop_assert!(token.verify(&es256_keys(), &mut Crypto::Module).is_err(), "a random signature verified");
        }
    }

    /// The claims decoder (glue's parser: repeated names refused while the tree is built)
    /// gives back the values the payload was written from, and agrees with a separate
    /// repeated-name walk, on payloads that repeat a name at the top or one level down, or
    /// not at all. (Compared with the written values rather than serde_json's reading of
    /// the text: serde_json's default float parser can be one ulp off; Rust's is exact.)
    #[test]
    fn prop_one_pass_claims_match_value_and_the_repeated_name_walk(
        claims in prop::collection::btree_map("[a-c]{1,2}|exp|aud", json_value(), 1..5),
        repeat in 0u8..3,
    ) {
        let first = claims.iter().next().map(|(k, v)| format!("{}:{v}", json!(k))).unwrap();
        let text = serde_json::to_string(&claims).unwrap();
        let text = match repeat {
            0 => text,
            1 => format!("{{{first},{}", &text[1..]),
            _ => format!(r#"{{"n":{{{first},{},"z":1}}"#, &text[1..]),
        };
        let raw = format!("{}.{}.AAAA", mint::b64(br#"{"alg":"ES256"}"#), mint::b64(text.as_bytes()));
        let unique = wasmgate_glue::check_duplicate_keys(text.as_bytes()).is_ok();
        prop_assert_eq!(unique, repeat == 0);
        match Token::parse(&raw, MAX) {
            Ok(token) => {
                prop_assert!(unique, "a repeated name passed: {}", text);
                let expected = Value::Object(claims.into_iter().collect());
                prop_assert_eq!(Value::Object(token.claims), expected);
            }
            Err(reason) => {
                prop_assert!(!unique, "refused {:?}: {}", reason, text);
                prop_assert_eq!(reason, jwt_auth::token::Reason::Malformed);
            }
        }
    }

    #[test]
    fn prop_claims_are_checked_without_panicking(
        exp in json_value(), nbf in json_value(), iat in json_value(),
        aud in json_value(), iss in json_value(), sub in json_value(),
        now in any::<i64>(), skew in 0i64..1_000_000, lifetime in prop::option::of(any::<i64>()),
    ) {
        let claims = object(
            vec![("exp", exp), ("nbf", nbf), ("iat", iat), ("aud", aud), ("iss", iss), ("sub", sub)],
            Value::Null,
        );
        let Value::Object(claims) = claims else { unreachable!() };
        let rules = ClaimRules {
            issuer: Some("https://issuer".into()),
            audiences: vec!["api".into()],
            clock_skew_seconds: skew,
            max_lifetime: lifetime,
            ..ClaimRules::default()
        };
        let _ = rules.check(&claims, now);
        let _ = ClaimRules::default().check(&claims, now);
    }

    #[test]
    fn prop_jwks_documents_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        kty in prop::sample::select(vec!["RSA", "EC", "OKP", "oct", "", "rsa"]),
        crv in prop::sample::select(vec!["P-256", "P-384", "P-521", "Ed25519", "X25519", ""]),
        members in prop::collection::btree_map(
            prop::sample::select(vec!["n", "e", "x", "y", "k", "d", "kid", "alg", "use", "key_ops"]),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Value::from(mint::b64(&b))),
                json_value(),
            ],
            0..8,
        ),
        extra in json_value(),
    ) {
        let _ = KeySet::lenient(&bytes, true);
        let mut key = object(vec![("kty", json!(kty)), ("crv", json!(crv))], extra);
        for (k, v) in members {
            key[k] = v;
        }
        let good = mint::p256(1).jwk("k1");
        let document = json!({ "keys": [key, good] });
        if let Ok(read) = KeySet::lenient(document.to_string().as_bytes(), false) {
            let set = read.set;
            prop_assert!(!set.keys.is_empty());
        }
        let _ = KeySet::lenient(json!({ "keys": key }).to_string().as_bytes(), true);
    }
}
