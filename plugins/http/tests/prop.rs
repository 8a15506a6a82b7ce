//! Property tests of the request parsers every plugin runs on untrusted input: they never
//! panic, and what they return is consistent with the input. Named `prop_*` so that
//! `make fuzz` runs them with many cases (`PROPTEST_CASES` overrides the default 256).

use proptest::prelude::*;
use wasmgate_http::{
    cookie, cookie_values, cookies, decode, decode_bytes, is_param, query_param, query_param_bytes,
    query_values, split,
};

/// Text rich in the characters the parsers split on, plus anything else.
fn tricky() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z=;,\"% ?#&+.0-9A-F]{0,40}",
        any::<String>(),
        "(%[0-9a-fA-F]{0,2}|[=&;, \"?])*",
    ]
}

proptest! {
    #[test]
    fn prop_cookies_never_panic_and_come_from_the_header(header in tricky(), name in tricky()) {
        for (n, v) in cookies(&header) {
            prop_assert!(header.contains(n) && header.contains(v));
            prop_assert_eq!(n.trim(), n);
        }
        let values: Vec<&str> = cookie_values(&header, &name).collect();
        prop_assert_eq!(cookie(&header, &name), values.first().copied());
        for v in values {
            prop_assert!(!v.starts_with('"') && !v.ends_with('"'));
        }
    }

    #[test]
    fn prop_targets_split_and_decode_without_panicking(target in tricky(), name in tricky()) {
        let (path, query) = split(&target);
        prop_assert!(!path.contains('?'));
        match query {
            Some(q) => prop_assert_eq!(format!("{path}?{q}"), target.clone()),
            None => prop_assert_eq!(path, target.as_str()),
        }
        let query = query.unwrap_or("");
        let _ = decode(&target);
        let bytes = decode_bytes(&target);
        prop_assert!(bytes.len() <= target.len(), "decoding never grows the text");
        let values: Vec<_> = query_values(query, &name).collect();
        prop_assert_eq!(query_param(query, &name), values.first().cloned());
        prop_assert_eq!(query_param_bytes(query, &name).is_some(), !values.is_empty());
        for pair in query.split('&') {
            let _ = is_param(pair, &name);
        }
    }

    #[test]
    fn prop_decoding_plain_text_changes_nothing(text in "[a-zA-Z0-9._~/-]{0,40}") {
        prop_assert_eq!(decode(&text), text.as_str());
    }
}
