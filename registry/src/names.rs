//! Validated identifiers: a malformed name, version or digest cannot be represented, so nothing
//! that reaches the store can point outside the data directory.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

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

/// A SHA256 digest, written `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest a finished hasher holds.
    pub fn from_hasher(hasher: Sha256) -> Digest {
        Digest(hasher.finalize().into())
    }

    /// Parse the bare 64 hex characters (lowercase or uppercase).
    pub fn from_hex(hex_digits: &str) -> Result<Digest, String> {
        if hex_digits.len() != 64 {
            return Err("a sha256 digest has 64 hex characters".into());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes)
            .map_err(|_| "a sha256 digest has 64 hex characters".to_owned())?;
        Ok(Digest(bytes))
    }

    /// The 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_digits = s
            .strip_prefix("sha256:")
            .ok_or_else(|| "a digest is written sha256:<64 hex>".to_owned())?;
        // The canonical form is lowercase; refusing uppercase keeps one URL per blob.
        if hex_digits.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("a digest is written in lowercase hex".into());
        }
        Digest::from_hex(hex_digits)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
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

    #[test]
    fn digests_round_trip_and_refuse_malformed_text() {
        let digest = Digest::of(b"hello");
        let text = digest.to_string();
        assert_eq!(
            text,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(text.parse::<Digest>(), Ok(digest));
        for bad in [
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
            "sha256:../../etc/passwd",
            "sha512:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "sha256:2cf24dba",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }
}
