//! The request target (`:path`): path and query, percent-decoding, query parameters.
//!
//! A parameter is found by its decoded name, so `%61pi` and `api` are one parameter; its
//! value is decoded too. Nothing here re-encodes: callers that edit a query keep the
//! parameters they do not touch exactly as received.

use std::borrow::Cow;

/// `/a/b?x=1` → (`/a/b`, `Some("x=1")`): the path, and the query after the first `?`.
pub fn split(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// Percent-decode a query component as text: `+` is a space, a `%` not followed by two hex
/// digits stays as it is, and decoded bytes that are not UTF-8 become U+FFFD.
pub fn decode(text: &str) -> Cow<'_, str> {
    match decode_bytes(text) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(bytes) => Cow::Owned(
            String::from_utf8(bytes)
                .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned()),
        ),
    }
}

/// Percent-decode a query component as bytes, for keys where two different invalid UTF-8
/// sequences must stay different; otherwise the same as [`decode`].
pub fn decode_bytes(text: &str) -> Cow<'_, [u8]> {
    if !text.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(text.as_bytes());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Whether `pair` (`name=value`, or `name` alone) of a query string is parameter `name`,
/// compared after decoding.
pub fn is_param(pair: &str, name: &str) -> bool {
    let raw_name = pair.split_once('=').map_or(pair, |(n, _)| n);
    !pair.is_empty() && decode_bytes(raw_name).as_ref() == name.as_bytes()
}

/// The still encoded values of parameter `name` in `query` (without `?`), in order; a
/// parameter without `=` has the empty value.
fn raw_values<'q>(query: &'q str, name: &'q str) -> impl Iterator<Item = &'q str> + 'q {
    query
        .split('&')
        .filter(move |pair| is_param(pair, name))
        .map(|pair| pair.split_once('=').map_or("", |(_, value)| value))
}

/// Every value of parameter `name` in `query` (without `?`), decoded, in order.
pub fn query_values<'q>(query: &'q str, name: &'q str) -> impl Iterator<Item = Cow<'q, str>> + 'q {
    raw_values(query, name).map(decode)
}

/// The first value of parameter `name` in `query` (without `?`), decoded.
pub fn query_param<'q>(query: &'q str, name: &'q str) -> Option<Cow<'q, str>> {
    query_values(query, name).next()
}

/// The first value of parameter `name` in `query` (without `?`), decoded to bytes.
pub fn query_param_bytes<'q>(query: &'q str, name: &'q str) -> Option<Cow<'q, [u8]>> {
    raw_values(query, name).next().map(decode_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(split("/a?b=1"), ("/a", Some("b=1")));
        assert_eq!(split("/a"), ("/a", None));
    }

    #[test]
    fn reads_decoded_parameters() {
        let q = "a=1&b=x%20y&c&b=2&d=a+b&e%5B%5D=%E2%9C%93";
        assert_eq!(query_param(q, "a").as_deref(), Some("1"));
        assert_eq!(query_param(q, "b").as_deref(), Some("x y"));
        assert_eq!(query_param(q, "c").as_deref(), Some(""));
        assert_eq!(query_param(q, "d").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "e[]").as_deref(), Some("✓"));
        assert_eq!(query_param(q, "z"), None);
        assert_eq!(query_param("", "a"), None);
    }

    #[test]
    fn reads_every_value_and_bytes() {
        let q = "x=1&api_key=%61b+c&api_key=second&flag";
        assert_eq!(
            query_param_bytes(q, "api_key").as_deref(),
            Some(&b"ab c"[..])
        );
        assert_eq!(query_param_bytes(q, "flag").as_deref(), Some(&b""[..]));
        assert_eq!(query_param_bytes(q, "y"), None);
        assert_eq!(
            query_param_bytes("k=100%", "k").as_deref(),
            Some(&b"100%"[..])
        );
        assert_eq!(
            query_param_bytes("k=%zz%4", "k").as_deref(),
            Some(&b"%zz%4"[..])
        );
        assert_eq!(
            query_values("t=a&%74=b&tt=c&t", "t").collect::<Vec<_>>(),
            ["a", "b", ""]
        );
        assert_eq!(query_values("", "t").count(), 0);
        assert_ne!(
            query_param_bytes("k=%FF", "k"),
            query_param_bytes("k=%FE", "k"),
            "invalid UTF-8 keeps its bytes"
        );
        assert_eq!(query_param("k=%FF", "k").as_deref(), Some("\u{FFFD}"));
    }

    #[test]
    fn names_compare_decoded() {
        assert!(is_param("a%20=x", "a "));
        assert!(is_param("a", "a"));
        assert!(!is_param("ab=1", "a"));
        assert!(!is_param("", ""));
    }

    #[test]
    fn decodes() {
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%0D%0A"), "\r\n");
        assert!(matches!(decode("plain"), Cow::Borrowed("plain")));
    }
}
