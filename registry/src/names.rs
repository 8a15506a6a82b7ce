//! Validated identifiers: a malformed name, version or digest cannot be represented, so nothing
//! that reaches the store can point outside the data directory. The digest is the artifact
//! model's, shared with the CLI and the renderers.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

pub use wasmgate_artifact::Digest;

/// The longest plugin name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// A plugin name: `^[a-z0-9]+([._-][a-z0-9]+)*$`, at most [`MAX_NAME_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PluginName(String);

impl PluginName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PluginName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return Err(format!("a plugin name has 1 to {MAX_NAME_LEN} characters"));
        }
        let mut previous_separator = true;
        for c in s.chars() {
            let separator = matches!(c, '.' | '_' | '-');
            let valid = c.is_ascii_lowercase() || c.is_ascii_digit() || separator;
            // A separator first, last or doubled would allow `.`, `..` and friends.
            if !valid || (separator && previous_separator) {
                return Err(
                    "a plugin name is lowercase letters and digits, separated by single '.', '_' or '-'"
                        .into(),
                );
            }
            previous_separator = separator;
        }
        if previous_separator {
            return Err("a plugin name cannot end with '.', '_' or '-'".into());
        }
        Ok(PluginName(s.to_owned()))
    }
}

impl fmt::Display for PluginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A semver 2.0 version without build metadata, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    text: String,
    parsed: semver::Version,
}

impl Version {
    /// The version as text (also its OCI tag).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Version {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = semver::Version::parse(s)
            .map_err(|e| format!("not a semver version (like 1.2.3 or 1.2.3-rc.1): {e}"))?;
        // OCI tags cannot hold '+', and semver ignores build metadata for precedence, so
        // 1.0.0+a and 1.0.0+b would be two modules nobody could tell apart.
        if !parsed.build.is_empty() {
            return Err("build metadata (+...) is not accepted in versions".into());
        }
        if parsed.to_string() != s {
            return Err("the version is not in canonical form".into());
        }
        Ok(Version {
            text: s.to_owned(),
            parsed,
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parsed.cmp(&other.parsed)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_lowercase_words_with_single_separators() {
        for ok in [
            "a",
            "header-rewrite",
            "jwt_auth",
            "v1.filter",
            "a1-b2.c3_d4",
        ] {
            assert!(ok.parse::<PluginName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_refuse_traversal_case_and_odd_characters() {
        let too_long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "", ".", "..", "../etc", "a/b", "a\\b", "A", "-a", "a-", "a--b", "a..b", "a b",
            "a%2fb", "é", "a\0", &too_long,
        ] {
            assert!(bad.parse::<PluginName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_are_canonical_semver_without_build_metadata() {
        for ok in ["0.1.0", "1.2.3-rc.1", "10.20.30-alpha-1"] {
            assert_eq!(ok.parse::<Version>().map(|v| v.to_string()), Ok(ok.into()));
        }
        for bad in [
            "1",
            "1.0",
            "01.0.0",
            "1.0.0+build",
            "v1.0.0",
            "1.0.0/..",
            "..",
            "1.0.0 ",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_sort_by_semver_precedence() {
        let mut versions: Vec<Version> = ["1.10.0", "1.2.0", "1.2.0-rc.1"]
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        versions.sort();
        let texts: Vec<&str> = versions.iter().map(Version::as_str).collect();
        assert_eq!(texts, ["1.2.0-rc.1", "1.2.0", "1.10.0"]);
    }
}
