//! The SHA-256 digest a module is pinned by, validated where it enters so a malformed digest
//! cannot be represented.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A SHA-256 digest: exactly 64 lowercase hex digits, as Envoy (`remote.sha256`) and Istio
/// (`sha256`, pattern `^[a-f0-9]{64}$`) expect it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(String);

/// Why a text is not a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestError(String);

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DigestError {}

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256(hex(&sha2::Sha256::digest(bytes)))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0
    }

    /// `sha256:<hex>`, as OCI and the registry's blob routes write it.
    pub fn oci(&self) -> String {
        format!("sha256:{}", self.0)
    }
}

impl FromStr for Sha256 {
    type Err = DigestError;

    /// Accepts the bare hex or `sha256:<hex>`, in either case; stores lowercase.
    fn from_str(text: &str) -> Result<Self, DigestError> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        if hex.is_empty() {
            return Err(DigestError("sha256 is empty".into()));
        }
        if let Some(bad) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(DigestError(format!(
                "sha256 {text:?} has {bad:?}, which is not a hex digit"
            )));
        }
        if hex.len() != 64 {
            return Err(DigestError(format!(
                "sha256 {text:?} has {} hex digits, expected 64",
                hex.len()
            )));
        }
        Ok(Sha256(hex.to_ascii_lowercase()))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_vectors() {
        assert_eq!(
            Sha256::of(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Sha256::of(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            Sha256::of(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").hex(),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            Sha256::of(&vec![b'a'; 1_000_000]).hex(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn parses_and_normalises() {
        let hex = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        let digest: Sha256 = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(digest.hex(), hex.to_ascii_lowercase());
        assert_eq!(digest.oci(), format!("sha256:{}", hex.to_ascii_lowercase()));
    }

    #[test]
    fn refuses_malformed() {
        assert_eq!(
            "".parse::<Sha256>().unwrap_err().to_string(),
            "sha256 is empty"
        );
        assert!("abc"
            .parse::<Sha256>()
            .unwrap_err()
            .to_string()
            .contains("has 3 hex digits, expected 64"));
        let bad = format!("{}g", "0".repeat(63));
        assert!(bad
            .parse::<Sha256>()
            .unwrap_err()
            .to_string()
            .contains("'g', which is not a hex digit"));
    }
}
