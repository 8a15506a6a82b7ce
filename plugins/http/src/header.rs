//! Header names and values in the configurations.

use wasmgate_glue::ConfigError;

/// Whether `c` is an RFC 9110 token character, what header names and methods are made of.
pub fn is_token_char(c: char) -> bool {
    // Bytes, not `str::contains`: its char searcher costs the Wasm modules 1.3 KB.
    c.is_ascii_alphanumeric() || (c.is_ascii() && b"!#$%&'*+-.^_`|~".contains(&(c as u8)))
}

/// A header name, lowercased: one or more RFC 9110 token characters. Pseudo-headers
/// (`:path`) are refused; the plugin that may write them checks them itself. The caller
/// names the field with [`ConfigError::at`].
pub fn header_name(name: &str) -> Result<String, ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new("", "header name is empty"));
    }
    check_token(name, name)?;
    Ok(name.to_ascii_lowercase())
}

/// A request header name as conditions and templates read it, lowercased: a header name, or
/// a pseudo-header (`:method`); `host` is `:authority`, the name Envoy keeps it under.
pub fn request_header_name(name: &str) -> Result<String, ConfigError> {
    let bare = name.strip_prefix(':').unwrap_or(name);
    if bare.is_empty() {
        return Err(ConfigError::new("", "header name is empty"));
    }
    check_token(name, bare)?;
    let lower = name.to_ascii_lowercase();
    Ok(if lower == "host" {
        ":authority".to_owned()
    } else {
        lower
    })
}

/// Refuse `bare` (part of header name `name`) when it holds a character a header name
/// may not have, naming it.
pub fn check_token(name: &str, bare: &str) -> Result<(), ConfigError> {
    match bare.chars().find(|c| !is_token_char(*c)) {
        Some(bad) => Err(ConfigError::new(
            "",
            format!("{name:?} is not a header name: {bad:?} is not allowed in one"),
        )),
        None => Ok(()),
    }
}

/// Whether `value` would split or truncate a header: it holds a CR, LF or NUL.
pub fn breaks_header(value: &str) -> bool {
    // Bytes, not `str::contains` with a char array: its searcher costs the Wasm modules
    // about a kilobyte (issue 14).
    value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// A header value written as configured: no CR, LF or NUL, which would split or truncate it.
pub fn check_header_value(value: &str) -> Result<(), ConfigError> {
    if breaks_header(value) {
        return Err(ConfigError::new(
            "",
            "header value contains CR, LF or NUL, which would split or truncate the header",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_chars_are_rfc_9110_tchar() {
        let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        for c in ('\0'..='\u{2ff}').chain(['\u{ff01}', '\u{1f600}']) {
            assert_eq!(is_token_char(c), tchar(c), "{c:?}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(header_name("X-Api-Key").unwrap(), "x-api-key");
        assert_eq!(
            header_name("a!#$%&'*+-.^_`|~9").unwrap(),
            "a!#$%&'*+-.^_`|~9"
        );
        for bad in ["a b", "a:b", ":path", "x\u{e9}", "a\r", "(a)"] {
            let err = header_name(bad).unwrap_err();
            assert!(
                err.reason().contains("is not a header name"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            header_name("").unwrap_err().reason(),
            "header name is empty"
        );
    }

    #[test]
    fn request_header_names() {
        assert_eq!(request_header_name("Host").unwrap(), ":authority");
        assert_eq!(request_header_name(":Method").unwrap(), ":method");
        assert_eq!(request_header_name("X-A").unwrap(), "x-a");
        assert!(request_header_name(":").is_err());
        assert!(request_header_name("a:b").is_err());
    }

    #[test]
    fn values() {
        assert!(check_header_value("a b\tc").is_ok());
        for bad in ["a\rb", "a\nb", "a\0"] {
            assert!(check_header_value(bad)
                .unwrap_err()
                .reason()
                .contains("CR, LF or NUL"));
        }
    }
}
