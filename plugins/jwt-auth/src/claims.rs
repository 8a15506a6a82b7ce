//! Claim checks (RFC 7519 §4.1) with a clock passed in, so tests fix the time.

use serde_json::{Map, Value};
use wasmgate_http::Matcher;

use crate::token::Reason;

/// The claim checks of one provider.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    /// Accepted audiences; the token's `aud` must name at least one. Empty: not checked.
    pub audiences: Vec<String>,
    /// Accepted `sub` values; a regex must match the whole value.
    pub subjects: Option<Matcher>,
    pub clock_skew_seconds: i64,
    pub require_expiration: bool,
    /// Longest accepted `exp - iat` (or `exp - nbf` without `iat`), in seconds.
    pub max_lifetime: Option<i64>,
}

impl Default for ClaimRules {
    fn default() -> Self {
        ClaimRules {
            issuer: None,
            audiences: Vec::new(),
            subjects: None,
            clock_skew_seconds: 60,
            require_expiration: false,
            max_lifetime: None,
        }
    }
}

/// A NumericDate claim: absent, or a JSON number not before 1970 (fractions are floored).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Reason> {
    let secs = match claims.get(name) {
        None => return Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(secs) => secs,
            None => match n.as_f64() {
                // Dates beyond i64 seconds are saturated: far future or far past either way.
                Some(f) if f.is_finite() => f.floor() as i64,
                _ => return Err(Reason::Malformed),
            },
        },
        Some(_) => return Err(Reason::Malformed),
    };
    // No issuer dates a token before 1970; a negative `nbf` is a malformed token, not one
    // valid since forever (and verifiers reading dates as unsigned refuse it).
    if secs < 0 {
        return Err(Reason::Malformed);
    }
    Ok(Some(secs))
}

impl ClaimRules {
    /// Check the claims at `now` (Unix seconds). On success, the token's `exp`, if any.
    pub fn check(&self, claims: &Map<String, Value>, now: i64) -> Result<Option<i64>, Reason> {
        let exp = numeric_date(claims, "exp")?;
        let nbf = numeric_date(claims, "nbf")?;
        let iat = numeric_date(claims, "iat")?;
        let skew = self.clock_skew_seconds;
        if let Some(exp) = exp {
            if now > exp.saturating_add(skew) {
                return Err(Reason::Expired);
            }
        } else if self.require_expiration || self.max_lifetime.is_some() {
            return Err(Reason::Lifetime);
        }
        if let Some(nbf) = nbf {
            if now.saturating_add(skew) < nbf {
                return Err(Reason::NotYetValid);
            }
        }
        if let (Some(max), Some(exp)) = (self.max_lifetime, exp) {
            let Some(start) = iat.or(nbf) else {
                return Err(Reason::Lifetime);
            };
            if exp.saturating_sub(start) > max {
                return Err(Reason::Lifetime);
            }
        }
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(Reason::Issuer);
            }
        }
        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => self.audiences.iter().any(|a| a == aud),
                Some(Value::Array(auds)) => auds
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|aud| self.audiences.iter().any(|a| a == aud)),
                _ => false,
            };
            if !ok {
                return Err(Reason::Audience);
            }
        }
        if let Some(subjects) = &self.subjects {
            match claims.get("sub").and_then(Value::as_str) {
                Some(sub) if subjects.matches(sub) => {}
                _ => return Err(Reason::Subject),
            }
        }
        Ok(exp)
    }
}

/// A claim by dotted path (`realm.roles`), walking nested objects.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// The strings of a claim: a string, or the strings of an array.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A claim a rule requires: present, and one of its values equal to one of `exact` or
/// starting with one of `prefix`.
#[derive(Debug, Clone)]
pub struct RequiredClaim {
    /// Dotted claim path.
    pub claim: String,
    /// Accepted values.
    pub exact: Vec<String>,
    /// Accepted value prefixes.
    pub prefix: Vec<String>,
}

impl RequiredClaim {
    /// Whether the claims satisfy this requirement.
    pub fn satisfied(&self, claims: &Map<String, Value>) -> bool {
        let Some(value) = lookup(claims, &self.claim) else {
            return false;
        };
        strings(value).into_iter().any(|v| {
            self.exact.iter().any(|e| e == v)
                || self.prefix.iter().any(|p| v.starts_with(p.as_str()))
        })
    }
}

/// The scopes a token grants: `scope` (space-delimited, RFC 8693) and `scp` (an array or
/// a space-delimited string, as some issuers write it).
pub fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// A claim's value as a header value: strings as they are, numbers and booleans in JSON
/// form; anything else (objects, arrays, null), or a string with control characters, is
/// not forwarded.
pub fn header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.chars().any(char::is_control)).then_some(text)
}
