//! The request target (`:path`): splitting, query parameters and percent-encoding.
//!
//! Query changes keep every parameter they do not touch exactly as it was received
//! (same encoding, same order); only the parameters they set or add are encoded here.

use std::borrow::Cow;

/// `/a/b?x=1` → (`/a/b`, `Some("x=1")`).
pub fn split(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// Join a path and a query; an empty query drops the `?`.
pub fn join(path: &str, query: Option<&str>) -> String {
    match query {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    }
}

/// The first value of parameter `name` (compared after decoding), decoded; a parameter
/// without `=` has the empty value.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        (!pair.is_empty() && decode(raw_name) == name).then(|| decode(raw_value).into_owned())
    })
}

/// A change to the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryEdit<'a> {
    /// Replace the first `name` parameter's value and drop the others; append when absent.
    Set(&'a str, &'a str),
    /// Append `name=value`, keeping parameters of the same name.
    Add(&'a str, &'a str),
    /// Remove every `name` parameter.
    Remove(&'a str),
}

/// Apply `edit` to `query` (without `?`); `None` when nothing changes.
pub fn edit_query(query: &str, edit: QueryEdit<'_>) -> Option<String> {
    let named = |pair: &str, name: &str| {
        !pair.is_empty() && decode(pair.split_once('=').map_or(pair, |(n, _)| n)) == name
    };
    let pairs = query.split('&').filter(|_| !query.is_empty());
    let mut out: Vec<Cow<'_, str>> = Vec::new();
    match edit {
        QueryEdit::Set(name, value) => {
            let mut done = false;
            for pair in pairs {
                if !named(pair, name) {
                    out.push(Cow::Borrowed(pair));
                } else if !done {
                    out.push(Cow::Owned(format!("{}={}", encode(name), encode(value))));
                    done = true;
                }
            }
            if !done {
                out.push(Cow::Owned(format!("{}={}", encode(name), encode(value))));
            }
        }
        QueryEdit::Add(name, value) => {
            out.extend(pairs.map(Cow::Borrowed));
            out.push(Cow::Owned(format!("{}={}", encode(name), encode(value))));
        }
        QueryEdit::Remove(name) => out.extend(pairs.filter(|p| !named(p, name)).map(Cow::Borrowed)),
    }
    let edited = out.join("&");
    (edited != query).then_some(edited)
}

/// Percent-decode a query component; `+` is a space. Malformed escapes stay as they are.
pub fn decode(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// Percent-encode a query component: everything but RFC 3986 unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            push_escaped(&mut out, b);
        }
    }
    out
}

/// Make text safe inside a path: characters that may not appear there (controls, space,
/// `?`, `#`, quotes, non-ASCII…) are percent-encoded; `%` and the path's own punctuation
/// stay, so segments taken from the path keep their encoding.
pub fn encode_path(text: &str) -> Cow<'_, str> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
    if text.bytes().all(allowed) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if allowed(b) {
            out.push(char::from(b));
        } else {
            push_escaped(&mut out, b);
        }
    }
    Cow::Owned(out)
}

/// `host:port`, `[v6]:port`, `v6` or `host` → the host without the port.
pub fn strip_port(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(address, |(ip, _)| ip);
    }
    match address.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_joins() {
        assert_eq!(split("/a?b=1"), ("/a", Some("b=1")));
        assert_eq!(split("/a"), ("/a", None));
        assert_eq!(join("/a", Some("")), "/a");
        assert_eq!(join("/a", Some("x")), "/a?x");
        assert_eq!(join("/a", None), "/a");
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
    fn set_replaces_the_first_and_drops_the_rest() {
        assert_eq!(
            edit_query("a=1&b=2&a=3&c=%2F", QueryEdit::Set("a", "x y")).as_deref(),
            Some("a=x%20y&b=2&c=%2F")
        );
        assert_eq!(
            edit_query("b=2", QueryEdit::Set("a", "&=")).as_deref(),
            Some("b=2&a=%26%3D")
        );
        assert_eq!(edit_query("a=1", QueryEdit::Set("a", "1")), None);
        assert_eq!(
            edit_query("", QueryEdit::Set("a", "1")).as_deref(),
            Some("a=1")
        );
    }

    #[test]
    fn add_appends_and_remove_drops_every_match() {
        assert_eq!(
            edit_query("a=1", QueryEdit::Add("a", "2")).as_deref(),
            Some("a=1&a=2")
        );
        assert_eq!(
            edit_query("a=1&b=2&a%20=x&a", QueryEdit::Remove("a")).as_deref(),
            Some("b=2&a%20=x")
        );
        assert_eq!(edit_query("b=2", QueryEdit::Remove("a")), None);
        assert_eq!(
            edit_query("a=1", QueryEdit::Remove("a")).as_deref(),
            Some("")
        );
    }

    #[test]
    fn encodes_and_decodes() {
        assert_eq!(encode("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%0D%0A"), "\r\n");
        assert_eq!(encode_path("/a b?c#d/%41"), "/a%20b%3Fc%23d/%41");
        assert!(matches!(encode_path("/fine/path"), Cow::Borrowed(_)));
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("10.0.0.1:5555"), "10.0.0.1");
        assert_eq!(strip_port("[::1]:5555"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("example.com:8080"), "example.com");
    }
}
