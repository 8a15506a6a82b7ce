//! Bearer tokens: where they come from and how a request's token is checked.

use std::path::Path;

use axum::http::{header, HeaderMap};
use base64::Engine as _;

use crate::{Error, Registry};

/// The environment variable holding publish tokens, comma separated.
pub const TOKENS_ENV: &str = "WASMGATE_REGISTRY_TOKENS";

/// Tokens from text: one per line (or comma separated), blank lines and `#` comments ignored.
pub fn parse_tokens(text: &str) -> Result<Vec<String>, Error> {
    let mut tokens = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        for token in line.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::Config(
                    "a token is printable ASCII without spaces".into(),
                ));
            }
            tokens.push(token.to_owned());
        }
    }
    Ok(tokens)
}

/// Publish tokens from a file (see [`parse_tokens`]).
pub fn load_tokens(path: &Path) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::TokenFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_tokens(&text)
}

/// Publish tokens from `WASMGATE_REGISTRY_TOKENS`; none when it is unset.
pub fn tokens_from_env() -> Result<Vec<String>, Error> {
    match std::env::var(TOKENS_ENV) {
        Ok(text) => parse_tokens(&text),
        Err(std::env::VarError::NotPresent) => Ok(Vec::new()),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Error::Config(format!("{TOKENS_ENV} is not valid UTF-8")))
        }
    }
}

/// The token a request presents: `Bearer <token>`, or the password of HTTP Basic (what OCI
/// clients such as skopeo send).
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (_, password) = decoded.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

/// Compare without stopping at the first difference, so timing does not reveal a prefix.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn known(tokens: &[String], presented: &str) -> bool {
    tokens
        .iter()
        .fold(false, |found, t| found | same(t, presented))
}

impl Registry {
    /// Whether the request carries a publish token.
    pub(crate) fn can_publish(&self, headers: &HeaderMap) -> bool {
        presented(headers).is_some_and(|t| known(&self.config().tokens, &t))
    }

    /// Whether the request may read.
    pub(crate) fn can_read(&self, headers: &HeaderMap) -> bool {
        let config = self.config();
        !config.read_auth
            || presented(headers)
                .is_some_and(|t| known(&config.tokens, &t) || known(&config.read_tokens, &t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn token_files_skip_comments_and_blank_lines() {
        let tokens = parse_tokens("# publishers\nalpha\n\n  beta  \ngamma,delta\n").unwrap();
        assert_eq!(tokens, ["alpha", "beta", "gamma", "delta"]);
        assert!(parse_tokens("bad token").is_err());
    }

    #[test]
    fn bearer_and_basic_credentials_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert_eq!(presented(&headers).as_deref(), Some("s3cret"));
        // base64("skopeo:s3cret")
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic c2tvcGVvOnMzY3JldA=="),
        );
        assert_eq!(presented(&headers).as_deref(), Some("s3cret"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Digest x"));
        assert_eq!(presented(&headers), None);
    }

    #[test]
    fn tokens_compare_exactly() {
        let tokens = vec!["abc".to_owned()];
        assert!(known(&tokens, "abc"));
        assert!(!known(&tokens, "ab"));
        assert!(!known(&tokens, "abd"));
        assert!(!known(&[], "abc"));
    }
}
