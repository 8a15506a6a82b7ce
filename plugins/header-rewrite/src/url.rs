//! Changing the request target (`:path`): joining, query edits and percent-encoding.
//! Splitting, decoding and reading parameters are `wasmgate_http`'s.
//!
//! Query changes keep every parameter they do not touch exactly as it was received
//! (same encoding, same order); only the parameters they set or add are encoded here.

use std::borrow::Cow;

use wasmgate_http::is_param;

/// Join a path and a query; an empty query drops the `?`.
pub fn join(path: &str, query: Option<&str>) -> String {
    match query {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    }
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
    let pairs = query.split('&').filter(|_| !query.is_empty());
    let mut out: Vec<Cow<'_, str>> = Vec::new();
    match edit {
        QueryEdit::Set(name, value) => {
            let mut done = false;
            for pair in pairs {
                if !is_param(pair, name) {
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
        QueryEdit::Remove(name) => {
            out.extend(pairs.filter(|p| !is_param(p, name)).map(Cow::Borrowed))
        }
    }
    let edited = out.join("&");
    (edited != query).then_some(edited)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins() {
        assert_eq!(join("/a", Some("")), "/a");
        assert_eq!(join("/a", Some("x")), "/a?x");
        assert_eq!(join("/a", None), "/a");
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
    fn encodes() {
        assert_eq!(encode("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(encode_path("/a b?c#d/%41"), "/a%20b%3Fc%23d/%41");
        assert!(matches!(encode_path("/fine/path"), Cow::Borrowed(_)));
    }
}
