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

proptest! {
    /// `strip_port` takes off a port and nothing else: the host of `host:digits` and of
    /// `[v6]:digits`, and any other text comes back whole or as a prefix without a `:port`.
    #[test]
    fn prop_strip_port_takes_off_a_port_only(
        host in "[a-zA-Z0-9.-]{0,20}",
        v6 in "[0-9a-f:]{2,20}",
        port in "[0-9]{0,5}",
        junk in "\\PC{0,30}",
    ) {
        let host_port = format!("{host}:{port}");
        prop_assert_eq!(wasmgate_http::strip_port(&host_port), host.as_str());
        let v6_port = format!("[{v6}]:{port}");
        prop_assert_eq!(wasmgate_http::strip_port(&v6_port), v6.as_str());
        prop_assert_eq!(wasmgate_http::strip_port(&host), host.as_str());
        let stripped = wasmgate_http::strip_port(&junk);
        if stripped != junk {
            let rest = junk.strip_prefix(stripped)
                .or_else(|| junk.strip_prefix('[').and_then(|j| j.strip_prefix(stripped)));
            prop_assert!(rest.is_some(), "{:?} is not a part of {:?}", stripped, junk);
            let rest = rest.unwrap_or_default().trim_start_matches(']');
            prop_assert!(rest.is_empty() || (rest.starts_with(':') && rest[1..].bytes().all(|b| b.is_ascii_digit())),
                "{:?} lost {:?}, which is not a port", junk, rest);
        }
    }

    /// The client address comes from `x-forwarded-for` only when hops are trusted, and is
    /// always one of its trimmed entries or the source address without its port.
    #[test]
    fn prop_client_ip_is_an_xff_entry_or_the_source(
        xff in "[0-9a-f.:, ]{0,40}",
        source in "\\PC{0,25}",
        xff_hop in 0u32..5,
    ) {
        let client = wasmgate_http::ClientIp { xff_hop };
        let found = client.find(Some(&xff), Some(&source));
        if let Some(ip) = found {
            let from_xff = xff_hop > 0 && xff.split(',').any(|entry| entry.trim() == ip);
            prop_assert!(from_xff || ip == wasmgate_http::strip_port(&source), "{:?}", ip);
            prop_assert!(!ip.is_empty());
        }
        if xff_hop == 0 {
            prop_assert_eq!(found, Some(wasmgate_http::strip_port(&source)).filter(|s| !s.is_empty()));
        }
    }

    /// Any text is a duration or a reason, never a panic; a duration is at least 1ms.
    #[test]
    fn prop_durations_parse_or_say_why(text in "[0-9]{0,22}(ms|s|m|h|d|x|)") {
        match wasmgate_http::parse_duration(&text) {
            Ok(d) => prop_assert!(d.as_nanos() >= 1_000_000),
            Err(err) => prop_assert!(err.reason().contains("duration")),
        }
    }
}
