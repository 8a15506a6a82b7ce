//! The `match` of every plugin's rules: path, methods, hosts and headers, as configured and
//! as compiled once in `on_configure`. The semantics, documented for users in
//! `plugins/MATCHING.md`:
//!
//! - every condition given must hold; none given: every request;
//! - `path` is the path without the query, a [`Pattern`];
//! - `methods`: the method is one of these, compared case-sensitively as HTTP says; names
//!   with lower-case letters are upper-cased with a warning;
//! - `hosts`: the host (`:authority` without its port, lowercased) matches one of these
//!   [`Pattern`]s, whose literal text is lowercased too;
//! - `headers`: conditions on request headers ([`HeaderMatch`]).

use std::borrow::Cow;

use serde::Deserialize;
use wasmgate_glue::json::{self, At, Error, Json};
use wasmgate_glue::{ConfigError, FromJson};

use crate::header::{is_token_char, request_header_name};
use crate::{strip_port, Matcher, StringMatch, Warnings};

/// A string condition: a bare string is `exact`, or a [`StringMatch`] object
/// (`{"prefix": "/api/"}`). A `regex` matches anywhere unless anchored with `^…$`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Pattern {
    /// Equal to this.
    Exact(String),
    /// `exact`, `prefix`, `suffix` or `regex`.
    Match(StringMatch),
}

impl FromJson for Pattern {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        match json {
            Json::String(text) => Ok(Pattern::Exact(text.clone())),
            other => StringMatch::from_json(other, at).map(Pattern::Match),
        }
    }
}

impl Pattern {
    /// As a [`StringMatch`].
    pub fn as_match(&self) -> Cow<'_, StringMatch> {
        match self {
            Pattern::Exact(text) => Cow::Owned(StringMatch::Exact(text.clone())),
            Pattern::Match(m) => Cow::Borrowed(m),
        }
    }

    /// Compile; a `regex` matches anywhere unless anchored. An invalid one is refused naming
    /// the field `regex`.
    pub fn compile(&self) -> Result<Matcher, ConfigError> {
        self.as_match().compile()
    }
}

/// A condition on one request header: `name` and at most one of `present`, `exact`,
/// `prefix`, `suffix` and `regex`; with none of them, the header must be present (as in
/// Envoy's `HeaderMatcher`). A value condition does not hold when the header is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (case-insensitive); pseudo-headers such as `:method` too, and `host` is
    /// the `:authority`.
    pub name: String,
    /// `true`: the header is present; `false`: it is absent.
    #[serde(default)]
    pub present: Option<bool>,
    /// The header's value equals this.
    #[serde(default)]
    pub exact: Option<String>,
    /// The header's value starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The header's value ends with this.
    #[serde(default)]
    pub suffix: Option<String>,
    /// The header's value matches this regular expression, anywhere unless anchored.
    #[serde(default)]
    pub regex: Option<String>,
}

// Written out rather than derived: the four value conditions share one string decoder
// (the derive inlines one per field); the derive's errors, word for word.
impl FromJson for HeaderMatch {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        const FIELDS: &[&str] = &["name", "present", "exact", "prefix", "suffix", "regex"];
        let mut header = HeaderMatch::default();
        let mut name = None;
        for (key, value) in json::object(json, "struct HeaderMatch", at)? {
            let at = at.key(key);
            let slot = match key.as_str() {
                "name" => {
                    name = Some(String::from_json(value, &at)?);
                    continue;
                }
                "present" => {
                    header.present = FromJson::from_json(value, &at)?;
                    continue;
                }
                "exact" => &mut header.exact,
                "prefix" => &mut header.prefix,
                "suffix" => &mut header.suffix,
                "regex" => &mut header.regex,
                _ => return Err(json::unknown_field(key, FIELDS, &at)),
            };
            *slot = FromJson::from_json(value, &at)?;
        }
        header.name = match name {
            Some(name) => name,
            None => String::missing("name", at)?,
        };
        Ok(header)
    }
}

/// A header value condition's kind: the [`StringMatch`] it is.
type ValueKind = fn(String) -> StringMatch;

/// A compiled [`HeaderMatch`].
#[derive(Debug, Clone)]
pub struct HeaderCondition {
    /// Lowercased; `host` is `:authority`.
    pub name: String,
    pub test: HeaderTest,
}

/// What a header condition checks.
#[derive(Debug, Clone)]
pub enum HeaderTest {
    Present,
    Absent,
    Value(Matcher),
}

impl HeaderTest {
    /// Whether a header with this value (or absent: `None`) passes.
    pub fn holds(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (HeaderTest::Present, value) => value.is_some(),
            (HeaderTest::Absent, value) => value.is_none(),
            (HeaderTest::Value(matcher), Some(value)) => matcher.matches(value),
            (HeaderTest::Value(_), None) => false,
        }
    }
}

impl HeaderMatch {
    /// Check and compile; errors name the field (`name`, `regex`, or the condition itself).
    pub fn compile(&self) -> Result<HeaderCondition, ConfigError> {
        let name = request_header_name(&self.name).map_err(|e| e.at("name"))?;
        let kind: [(&Option<String>, ValueKind); 4] = [
            (&self.exact, StringMatch::Exact),
            (&self.prefix, StringMatch::Prefix),
            (&self.suffix, StringMatch::Suffix),
            (&self.regex, StringMatch::Regex),
        ];
        let given = kind.iter().filter(|(value, _)| value.is_some()).count();
        if given + usize::from(self.present.is_some()) > 1 {
            return Err(ConfigError::new(
                "",
                "a header condition takes `name` and at most one of `present`, `exact`, `prefix`, `suffix` and `regex`",
            ));
        }
        let value = kind
            .into_iter()
            .find_map(|(value, kind)| value.as_ref().map(|v| kind(v.clone())));
        let test = match value {
            Some(condition) => HeaderTest::Value(condition.compile()?),
            None if self.present == Some(false) => HeaderTest::Absent,
            None => HeaderTest::Present,
        };
        Ok(HeaderCondition { name, test })
    }
}

/// The methods a rule is for; empty: every method.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Methods(Vec<String>);

impl Methods {
    /// Check the configured names (`methods`); a name with lower-case letters is upper-cased
    /// with a warning, since methods are case-sensitive and every standard one is upper case.
    pub fn compile(names: &[String], warnings: &mut Warnings) -> Result<Methods, ConfigError> {
        let mut methods = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() || !name.chars().all(is_token_char) {
                return Err(ConfigError::new(
                    format!("[{i}]"),
                    format!("{name:?} is not an HTTP method"),
                ));
            }
            let upper = name.to_ascii_uppercase();
            if upper != *name {
                warnings.warn(
                    format!("[{i}]"),
                    format!("{name:?} is read as {upper:?}: methods are case-sensitive, write them in upper case"),
                );
            }
            methods.push(upper);
        }
        Ok(Methods(methods))
    }

    /// Whether no method was given, so every method passes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a request with this method (`None`: unknown) passes.
    pub fn matches(&self, method: Option<&str>) -> bool {
        self.is_empty() || method.is_some_and(|m| self.0.iter().any(|w| w == m))
    }
}

/// Conditions on a request, the `match` of a rule; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RequestMatch {
    /// The path, without the query: a string (exact), or `exact`, `prefix`, `suffix` or
    /// `regex` (anywhere in the path unless anchored with `^…$`).
    #[serde(default)]
    pub path: Option<Pattern>,
    /// The method is one of these, e.g. `["GET", "HEAD"]` (case-sensitive).
    #[serde(default)]
    pub methods: Vec<String>,
    /// The host (`:authority` without its port) matches one of these, case-insensitively: a
    /// string (exact), or `exact`, `prefix`, `suffix` or `regex`.
    #[serde(default)]
    pub hosts: Vec<Pattern>,
    /// Conditions on request headers; all must hold.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    /// Old spelling of `hosts` with one pattern (header-rewrite); accepted with a warning.
    #[serde(default)]
    pub host: Option<StringMatch>,
    /// Old spelling of `path: {prefix: …}` (jwt-auth); accepted with a warning.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Old spelling of `path: {regex: "^(?:…)$"}` (jwt-auth): a regex that must match the
    /// whole path; accepted with a warning.
    #[serde(default)]
    pub regex: Option<String>,
}

// Written out rather than derived, for the size of every plugin's module: the old
// spellings `prefix` and `regex` share one string decoder; the derive's errors, word for word.
impl FromJson for RequestMatch {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        const FIELDS: &[&str] = &[
            "path", "methods", "hosts", "headers", "host", "prefix", "regex",
        ];
        let mut m = RequestMatch::default();
        for (key, value) in json::object(json, "struct RequestMatch", at)? {
            let at = at.key(key);
            match key.as_str() {
                "path" => m.path = FromJson::from_json(value, &at)?,
                "methods" => m.methods = FromJson::from_json(value, &at)?,
                "hosts" => m.hosts = FromJson::from_json(value, &at)?,
                "headers" => m.headers = FromJson::from_json(value, &at)?,
                "host" => m.host = FromJson::from_json(value, &at)?,
                "prefix" | "regex" => {
                    let old = if key == "prefix" {
                        &mut m.prefix
                    } else {
                        &mut m.regex
                    };
                    *old = FromJson::from_json(value, &at)?;
                }
                _ => return Err(json::unknown_field(key, FIELDS, &at)),
            }
        }
        Ok(m)
    }
}

/// A compiled [`RequestMatch`].
#[derive(Debug, Clone, Default)]
pub struct CompiledMatch {
    pub path: Option<Matcher>,
    pub methods: Methods,
    /// Literal text lowercased; empty: every host.
    pub hosts: Vec<Matcher>,
    pub headers: Vec<HeaderCondition>,
}

impl RequestMatch {
    /// Check and compile; errors and warnings name the field under the `match` object.
    pub fn compile(&self, warnings: &mut Warnings) -> Result<CompiledMatch, ConfigError> {
        let path = match (&self.path, &self.prefix, &self.regex) {
            (None, None, None) => None,
            (Some(path), None, None) => Some(path.compile().map_err(|e| e.at("path"))?),
            (None, Some(prefix), None) => {
                warnings.warn(
                    "prefix",
                    format!("old spelling: write `path: {{prefix: {prefix:?}}}`"),
                );
                Some(Matcher::Prefix(prefix.clone()))
            }
            (None, None, Some(pattern)) => {
                warnings.warn(
                    "regex",
                    format!("old spelling of a regex on the whole path: write `path: {{regex: \"^(?:{pattern})$\"}}`"),
                );
                Some(StringMatch::Regex(pattern.clone()).compile_whole()?)
            }
            _ => {
                return Err(ConfigError::new(
                    "",
                    "at most one of path, prefix and regex (prefix and regex are old spellings of path)",
                ))
            }
        };
        let methods = warnings
            .within("methods", |w| Methods::compile(&self.methods, w))
            .map_err(|e| e.at("methods"))?;
        let mut hosts = Vec::with_capacity(self.hosts.len());
        for (i, host) in self.hosts.iter().enumerate() {
            hosts.push(host_matcher(&host.as_match()).map_err(|e| e.at(&format!("hosts[{i}]")))?);
        }
        if let Some(host) = &self.host {
            if !self.hosts.is_empty() {
                return Err(ConfigError::new(
                    "host",
                    "set `hosts` only (`host` is its old spelling)",
                ));
            }
            warnings.warn(
                "host",
                "old spelling: write `hosts: [...]` with this pattern",
            );
            hosts.push(host_matcher(host).map_err(|e| e.at("host"))?);
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for (i, header) in self.headers.iter().enumerate() {
            headers.push(
                header
                    .compile()
                    .map_err(|e| e.at(&format!("headers[{i}]")))?,
            );
        }
        Ok(CompiledMatch {
            path,
            methods,
            hosts,
            headers,
        })
    }
}

/// A host pattern: literal text lowercased, since hosts are compared lowercased; a host
/// name that could never be one (empty, or with `/`, space or `,`) is refused.
fn host_matcher(m: &StringMatch) -> Result<Matcher, ConfigError> {
    let lower = match m {
        StringMatch::Exact(s) => {
            if s.is_empty() || s.bytes().any(|b| matches!(b, b'/' | b' ' | b',')) {
                return Err(ConfigError::new("", format!("{s:?} is not a host name")));
            }
            StringMatch::Exact(s.to_ascii_lowercase())
        }
        StringMatch::Prefix(s) => StringMatch::Prefix(s.to_ascii_lowercase()),
        StringMatch::Suffix(s) => StringMatch::Suffix(s.to_ascii_lowercase()),
        StringMatch::Regex(s) => StringMatch::Regex(s.clone()),
    };
    lower.compile()
}

/// The host of a request's `:authority`, as host conditions see it: without its port
/// ([`strip_port`]) and lowercased.
pub fn request_host(authority: &str) -> Cow<'_, str> {
    let host = strip_port(authority);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

impl CompiledMatch {
    /// Whether the request's host (`None`: it has none) passes; `host` is what
    /// [`request_host`] made of the `:authority`.
    pub fn matches_host(&self, host: Option<&str>) -> bool {
        self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|m| m.matches(h)))
    }

    /// Whether the conditions read the host.
    pub fn reads_host(&self) -> bool {
        !self.hosts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate_glue::parse_json;

    fn compile(json: &str) -> Result<(CompiledMatch, Vec<String>), ConfigError> {
        let mut warnings = Warnings::default();
        let compiled = parse_json::<RequestMatch>(json.as_bytes())?.compile(&mut warnings)?;
        Ok((compiled, warnings.iter().map(ToString::to_string).collect()))
    }

    fn refused(json: &str) -> ConfigError {
        match compile(json) {
            Ok(_) => panic!("accepted: {json}"),
            Err(err) => err,
        }
    }

    #[test]
    fn every_condition_compiles_without_warnings() {
        let (m, warnings) = compile(
            r#"{"path": {"regex": "/v([0-9]+)$"}, "methods": ["GET", "PURGE"],
                "hosts": ["API.example.com", {"suffix": ".Example.org"}, {"regex": "^a[0-9]\\."}],
                "headers": [{"name": "X-A"}, {"name": "x-b", "present": false},
                            {"name": "x-c", "suffix": "z"}]}"#,
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(
            m.path.as_ref().unwrap().matches("/x/v2"),
            "anywhere unless anchored"
        );
        assert!(!m.path.as_ref().unwrap().matches("/x/v2/y"));
        assert!(m.methods.matches(Some("PURGE")));
        assert!(!m.methods.matches(Some("get")), "case-sensitive");
        assert!(!m.methods.matches(None));
        assert!(m.matches_host(Some("api.example.com")));
        assert!(m.matches_host(Some("www.example.org")));
        assert!(m.matches_host(Some("a1.b")));
        assert!(!m.matches_host(Some("example.com")));
        assert!(!m.matches_host(None));
        assert_eq!(m.headers[0].name, "x-a");
        assert!(m.headers[0].test.holds(Some("")), "name alone: present");
        assert!(m.headers[1].test.holds(None));
        assert!(m.headers[2].test.holds(Some("xyz")));
        assert!(!m.headers[2].test.holds(None));
        let (any, _) = compile("{}").unwrap();
        assert!(any.methods.matches(None) && any.matches_host(None) && any.path.is_none());
        assert!(!any.reads_host());
    }

    #[test]
    fn a_bare_string_is_exact() {
        let (m, warnings) = compile(r#"{"path": "/a"}"#).unwrap();
        assert!(warnings.is_empty());
        assert!(m.path.as_ref().unwrap().matches("/a"));
        assert!(!m.path.as_ref().unwrap().matches("/ab"));
    }

    #[test]
    fn old_spellings_work_with_a_warning() {
        let (m, warnings) = compile(r#"{"prefix": "/api"}"#).unwrap();
        assert!(m.path.unwrap().matches("/api/x"));
        assert_eq!(
            warnings,
            ["prefix: old spelling: write `path: {prefix: \"/api\"}`"]
        );
        let (m, warnings) = compile(r#"{"regex": "/v[0-9]+"}"#).unwrap();
        let path = m.path.unwrap();
        assert!(path.matches("/v12"));
        assert!(
            !path.matches("/x/v12"),
            "the old regex matched the whole path"
        );
        assert!(warnings[0].starts_with("regex: "), "{warnings:?}");
        let (m, warnings) = compile(r#"{"host": {"exact": "Example.com"}}"#).unwrap();
        assert!(m.matches_host(Some("example.com")));
        assert!(
            warnings[0].starts_with("host: old spelling"),
            "{warnings:?}"
        );
        let (m, warnings) = compile(r#"{"methods": ["get"]}"#).unwrap();
        assert!(m.methods.matches(Some("GET")));
        assert!(
            warnings[0].starts_with("methods[0]: \"get\" is read as \"GET\""),
            "{warnings:?}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        for (json, field, reason) in [
            (r#"{"path": {"regex": "("}}"#, "path.regex", "invalid regex"),
            (
                r#"{"path": {"prefx": "/"}}"#,
                "path",
                "unknown variant `prefx`",
            ),
            (r#"{"regex": "("}"#, "regex", "invalid regex"),
            (
                r#"{"path": "/a", "prefix": "/b"}"#,
                "",
                "at most one of path, prefix and regex",
            ),
            (
                r#"{"methods": ["GE T"]}"#,
                "methods[0]",
                "not an HTTP method",
            ),
            (r#"{"methods": [""]}"#, "methods[0]", "not an HTTP method"),
            (r#"{"hosts": ["a/b"]}"#, "hosts[0]", "not a host name"),
            (
                r#"{"hosts": [{"regex": "["}]}"#,
                "hosts[0].regex",
                "invalid regex",
            ),
            (
                r#"{"hosts": ["a"], "host": {"exact": "b"}}"#,
                "host",
                "set `hosts` only",
            ),
            (
                r#"{"headers": [{"name": "a b"}]}"#,
                "headers[0].name",
                "not a header name",
            ),
            (
                r#"{"headers": [{"name": "a", "exact": "b", "regex": "c"}]}"#,
                "headers[0]",
                "at most one",
            ),
            (
                r#"{"headers": [{"name": "a", "present": true, "exact": "b"}]}"#,
                "headers[0]",
                "at most one",
            ),
            (
                r#"{"headers": [{"name": "a", "regex": "[z-a]"}]}"#,
                "headers[0].regex",
                "invalid regex",
            ),
            (
                r#"{"headers": [{"name": "a", "valeu": "b"}]}"#,
                "headers[0].valeu",
                "unknown field `valeu`, expected one of `name`, `present`, `exact`, `prefix`, `suffix`, `regex`",
            ),
            (
                r#"{"headers": [{"exact": "b"}]}"#,
                "headers[0]",
                "missing field `name`",
            ),
            (
                r#"{"headers": [{"name": null}]}"#,
                "headers[0].name",
                "invalid type: null, expected a string",
            ),
            (
                r#"{"headers": [{"name": "a", "prefix": 1}]}"#,
                "headers[0].prefix",
                "invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"pth": "/"}"#,
                "pth",
                "unknown field `pth`, expected one of `path`, `methods`, `hosts`, `headers`, `host`, `prefix`, `regex`",
            ),
            (r#"{"prefix": 1}"#, "prefix", "expected a string"),
            (r#"{"hosts": "a"}"#, "hosts", "expected a sequence"),
            (
                r#"{"path": {"glob": "*"}}"#,
                "path",
                "unknown variant `glob`, expected one of `exact`, `prefix`, `suffix`, `regex`",
            ),
            (r#"{"path": {"exact": 1}}"#, "path.exact", "expected a string"),
            (r#"{"path": {"exact": "/a", "prefix": "/b"}}"#, "path", "single key"),
        ] {
            let err = refused(json);
            assert_eq!(err.field(), field, "{json}: {err}");
            assert!(err.reason().contains(reason), "{json}: {err}");
        }
    }

    #[test]
    fn request_hosts_lose_port_and_case() {
        assert_eq!(request_host("API.Example.com:8443"), "api.example.com");
        assert!(matches!(request_host("a.b:1"), Cow::Borrowed("a.b")));
        assert_eq!(request_host("[::1]:80"), "::1");
    }

    #[cfg(feature = "schema")]
    #[test]
    fn the_schema_takes_a_string_or_an_object() {
        let schema = serde_json::to_string(&schemars::schema_for!(RequestMatch)).unwrap();
        for word in ["anyOf", "hosts", "suffix", "present"] {
            assert!(schema.contains(word), "{word} missing from {schema}");
        }
    }
}
