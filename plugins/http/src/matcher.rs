//! The `exact` / `prefix` / `suffix` / `regex` condition on a string, as configured and as
//! compiled once in `on_configure`.

use regex_lite::Regex;
use serde::Deserialize;
use wasmgate_glue::json::{self, At, Error, Json};
use wasmgate_glue::{ConfigError, FromJson};

/// How a string is matched: `{"exact": "/a"}`, `{"prefix": "/api/"}`,
/// `{"suffix": ".example.com"}` or `{"regex": "^/v(\\d+)/"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StringMatch {
    /// Equal to this.
    Exact(String),
    /// Starting with this.
    Prefix(String),
    /// Ending with this.
    Suffix(String),
    /// A regular expression (the `regex-lite` syntax); the field says whether it must match
    /// the whole string or matches anywhere in it.
    Regex(String),
}

// Written out rather than derived: one string decoder for the four kinds instead of four
// inlined copies (every plugin's module carries it; the derive's errors, word for word).
impl FromJson for StringMatch {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        const KINDS: &[&str] = &["exact", "prefix", "suffix", "regex"];
        let (name, content) = json::variant(json, "enum StringMatch", at)?;
        let kind: fn(String) -> StringMatch = match name {
            "exact" => StringMatch::Exact,
            "prefix" => StringMatch::Prefix,
            "suffix" => StringMatch::Suffix,
            "regex" => StringMatch::Regex,
            _ => return Err(json::unknown_variant(name, KINDS, at)),
        };
        let text = String::from_json(json::newtype_variant(content, at)?, &at.key(name))?;
        Ok(kind(text))
    }
}

impl StringMatch {
    /// Compile, with a `regex` that matches anywhere in the string unless it is anchored
    /// (`^…$`). An invalid regex is refused naming the field `regex`.
    pub fn compile(&self) -> Result<Matcher, ConfigError> {
        self.compile_as(false)
    }

    /// Compile, with a `regex` that must match the whole string. An invalid regex is
    /// refused naming the field `regex`.
    pub fn compile_whole(&self) -> Result<Matcher, ConfigError> {
        self.compile_as(true)
    }

    fn compile_as(&self, whole: bool) -> Result<Matcher, ConfigError> {
        Ok(match self {
            StringMatch::Exact(s) => Matcher::Exact(s.clone()),
            StringMatch::Prefix(s) => Matcher::Prefix(s.clone()),
            StringMatch::Suffix(s) => Matcher::Suffix(s.clone()),
            StringMatch::Regex(pattern) => {
                // Checked alone first, so that an error shows the pattern as configured.
                let plain = regex(pattern).map_err(|e| e.at("regex"))?;
                if whole {
                    // Anchoring the whole pattern makes every alternative compete for the
                    // whole string: `user|user-[0-9]+` matches `user-5`.
                    Matcher::WholeRegex(
                        regex(&format!("^(?:{pattern})$")).map_err(|e| e.at("regex"))?,
                    )
                } else {
                    Matcher::Regex(plain)
                }
            }
        })
    }
}

/// A compiled [`StringMatch`].
#[derive(Debug, Clone)]
pub enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// Matches anywhere in the string unless the regex is anchored.
    Regex(Regex),
    /// Must match the whole string: compiled as `^(?:pattern)$`.
    WholeRegex(Regex),
}

impl Matcher {
    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Matcher::Exact(want) => text == want,
            Matcher::Prefix(prefix) => text.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => text.ends_with(suffix.as_str()),
            Matcher::Regex(regex) | Matcher::WholeRegex(regex) => regex.is_match(text),
        }
    }

    /// `None` when `text` does not match; otherwise a regex's groups (`[0]` is the whole
    /// match, a group that took no part is `None`), and no groups for the other kinds.
    pub fn captures<'t>(&self, text: &'t str) -> Option<Vec<Option<&'t str>>> {
        let regex = match self {
            Matcher::Regex(regex) | Matcher::WholeRegex(regex) => regex,
            other => return other.matches(text).then(Vec::new),
        };
        let caps = regex.captures(text)?;
        Some(caps.iter().map(|group| group.map(|m| m.as_str())).collect())
    }
}

/// Compile a regular expression (the `regex-lite` syntax). The error gives the pattern and
/// the reason; the caller names the field with [`ConfigError::at`].
pub fn regex(pattern: &str) -> Result<Regex, ConfigError> {
    Regex::new(pattern).map_err(|e| ConfigError::new("", format!("invalid regex {pattern:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<StringMatch, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn reads_the_externally_tagged_shape() {
        assert_eq!(
            parse(r#"{"exact": "/a"}"#).unwrap(),
            StringMatch::Exact("/a".into())
        );
        assert_eq!(
            parse(r#"{"prefix": "/api/"}"#).unwrap(),
            StringMatch::Prefix("/api/".into())
        );
        assert_eq!(
            parse(r#"{"suffix": ".com"}"#).unwrap(),
            StringMatch::Suffix(".com".into())
        );
        assert_eq!(
            parse(r#"{"regex": "^/v1"}"#).unwrap(),
            StringMatch::Regex("^/v1".into())
        );
        let err = parse(r#"{"glob": "*"}"#).unwrap_err().to_string();
        assert!(err.contains("unknown variant `glob`"), "{err}");
        assert!(parse(r#"{"exact": "/a", "prefix": "/b"}"#).is_err());
        assert!(parse(r#""/a""#).is_err());
    }

    #[test]
    fn every_kind_matches() {
        let m = |json: &str| parse(json).unwrap().compile().unwrap();
        assert!(m(r#"{"exact": "/a"}"#).matches("/a"));
        assert!(!m(r#"{"exact": "/a"}"#).matches("/ab"));
        assert!(m(r#"{"prefix": "/a"}"#).matches("/ab"));
        assert!(!m(r#"{"prefix": "/a"}"#).matches("/b"));
        assert!(m(r#"{"suffix": ".com"}"#).matches("x.com"));
        assert!(!m(r#"{"suffix": ".com"}"#).matches("x.org"));
        assert!(
            m(r#"{"regex": "v[0-9]"}"#).matches("/api/v2/x"),
            "unanchored"
        );
        assert!(!m(r#"{"regex": "^v[0-9]"}"#).matches("/api/v2/x"));
    }

    #[test]
    fn a_whole_regex_matches_the_whole_string() {
        let m = StringMatch::Regex("user-[0-9]+".into())
            .compile_whole()
            .unwrap();
        assert!(m.matches("user-12"));
        assert!(!m.matches("xuser-12"));
        assert!(!m.matches("user-12x"));
        let prefix = StringMatch::Prefix("/a".into()).compile_whole().unwrap();
        assert!(prefix.matches("/ab"), "only regexes differ");
    }

    #[test]
    fn every_alternative_of_a_whole_regex_competes_for_the_whole_string() {
        let m = StringMatch::Regex("user|user-[0-9]+".into())
            .compile_whole()
            .unwrap();
        assert!(
            m.matches("user-5"),
            "the leftmost alternative must not win alone"
        );
        assert!(m.matches("user"));
        assert!(!m.matches("user-5x"));
        assert_eq!(m.captures("user-5"), Some(vec![Some("user-5")]));
    }

    #[test]
    fn bad_regexes_name_the_field() {
        for compiled in [
            StringMatch::Regex("(".into()).compile(),
            StringMatch::Regex("(".into()).compile_whole(),
        ] {
            let err = compiled.unwrap_err().at("match.path");
            assert_eq!(err.field(), "match.path.regex");
            assert!(err.reason().starts_with("invalid regex \"(\": "), "{err}");
        }
        let err = regex("[z-a]").unwrap_err();
        assert_eq!(err.field(), "");
        assert!(
            err.reason().starts_with("invalid regex \"[z-a]\": "),
            "{err}"
        );
    }

    #[test]
    fn captures_for_templates() {
        let m = StringMatch::Regex("^/v([0-9]+)/(a)?".into())
            .compile()
            .unwrap();
        assert_eq!(
            m.captures("/v12/b"),
            Some(vec![Some("/v12/"), Some("12"), None])
        );
        assert_eq!(m.captures("/x"), None);
        let whole = StringMatch::Regex("/v([0-9]+)".into())
            .compile_whole()
            .unwrap();
        assert_eq!(whole.captures("/v3"), Some(vec![Some("/v3"), Some("3")]));
        assert_eq!(whole.captures("/v3/x"), None);
        let exact = StringMatch::Exact("/a".into()).compile().unwrap();
        assert_eq!(exact.captures("/a"), Some(vec![]));
        assert_eq!(exact.captures("/b"), None);
    }

    #[cfg(feature = "schema")]
    #[test]
    fn the_schema_names_every_kind() {
        let schema = serde_json::to_string(&schemars::schema_for!(StringMatch)).unwrap();
        for kind in ["exact", "prefix", "suffix", "regex"] {
            assert!(
                schema.contains(&format!("\"{kind}\"")),
                "{kind} missing from {schema}"
            );
        }
    }
}
