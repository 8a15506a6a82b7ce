//! The SHA-256 digest a module, an OCI blob or a manifest is pinned by: 32 bytes inside,
//! validated where text enters, so a malformed digest cannot be represented.
//!
//! Two spellings exist outside. `sha256:<hex>` (OCI, the registry's blob routes, `digest`
//! fields) is what [`Digest`] displays and serializes as; the bare 64 hex digits are what Envoy
//! (`remote.sha256`), Istio (`sha256`, pattern `^[a-f0-9]{64}$`) and every field named `sha256`
//! in Wasmgate's files and API carry: such fields use [`hex`] (`#[serde(with = "...::hex")]`).
//! Reading accepts both spellings in either case, so files written before either convention
//! still load; only URL paths insist on the one canonical spelling ([`Digest::parse_canonical`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// The prefix of the OCI spelling.
const PREFIX: &str = "sha256:";

/// Why a text is not a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DigestError(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(sha2::Sha256::digest(bytes).into())
    }

    /// The digest a hasher fed piece by piece holds.
    pub fn from_hasher(hasher: sha2::Sha256) -> Digest {
        Digest(hasher.finalize().into())
    }

    /// The 64 lowercase hex digits, as Envoy and Istio pin a module.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The raw 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Only `sha256:<64 lowercase hex>`: a digest in a URL path has one spelling, so each blob
    /// has one URL (and one cache entry).
    pub fn parse_canonical(text: &str) -> Result<Digest, DigestError> {
        let Some(hex) = text.strip_prefix(PREFIX) else {
            return Err(DigestError(format!(
                "digest {text:?} is not written sha256:<64 hex>"
            )));
        };
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(DigestError(format!(
                "digest {text:?} is not written in lowercase hex"
            )));
        }
        text.parse()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// The bare hex or `sha256:<hex>`, in either case.
    fn from_str(text: &str) -> Result<Digest, DigestError> {
        let hex = text.strip_prefix(PREFIX).unwrap_or(text);
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
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            *byte = (nibble(pair[0]) << 4) | nibble(pair[1]);
        }
        Ok(Digest(bytes))
    }
}

/// The value of one hex digit already checked to be one.
fn nibble(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

impl fmt::Display for Digest {
    /// `sha256:<hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for a field spelled as the bare 64 hex digits (`#[serde(with = "hex")]`); reading
/// accepts `sha256:<hex>` too.
pub mod hex {
    use super::Digest;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write the bare hex.
    pub fn serialize<S: Serializer>(digest: &Digest, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&digest.hex())
    }

    /// Read either spelling.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        Digest::deserialize(deserializer)
    }

    /// The same for an optional field (`#[serde(with = "hex::option")]`).
    pub mod option {
        use super::super::Digest;
        use serde::{Deserialize, Deserializer, Serializer};

        /// Write the bare hex, or null.
        pub fn serialize<S: Serializer>(
            digest: &Option<Digest>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match digest {
                Some(digest) => serializer.serialize_str(&digest.hex()),
                None => serializer.serialize_none(),
            }
        }

        /// Read either spelling, or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Digest>, D::Error> {
            Option::<Digest>::deserialize(deserializer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn standard_vectors() {
        assert_eq!(
            Digest::of(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Digest::of(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            Digest::of(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").hex(),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            Digest::of(&vec![b'a'; 1_000_000]).hex(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"hel");
        hasher.update(b"lo");
        assert_eq!(Digest::from_hasher(hasher), Digest::of(b"hello"));
    }

    #[test]
    fn reads_both_spellings_in_either_case_and_writes_one() {
        let digest = Digest::of(b"hello");
        for text in [
            HELLO.to_owned(),
            HELLO.to_ascii_uppercase(),
            format!("sha256:{HELLO}"),
            format!("sha256:{}", HELLO.to_ascii_uppercase()),
        ] {
            assert_eq!(text.parse::<Digest>(), Ok(digest), "{text}");
        }
        assert_eq!(digest.to_string(), format!("sha256:{HELLO}"));
        assert_eq!(digest.hex(), HELLO);
    }

    #[test]
    fn refuses_malformed_text_naming_the_reason() {
        assert_eq!(
            "".parse::<Digest>().unwrap_err().to_string(),
            "sha256 is empty"
        );
        assert!("abc"
            .parse::<Digest>()
            .unwrap_err()
            .to_string()
            .contains("has 3 hex digits, expected 64"));
        let bad = format!("{}g", "0".repeat(63));
        assert!(bad
            .parse::<Digest>()
            .unwrap_err()
            .to_string()
            .contains("'g', which is not a hex digit"));
        for bad in [
            "sha256:../../etc/passwd".to_owned(),
            format!("sha512:{HELLO}"),
            format!("sha256:{HELLO}0"),
            format!("sha256: {HELLO}"),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn url_paths_take_only_the_canonical_spelling() {
        let canonical = format!("sha256:{HELLO}");
        assert_eq!(
            Digest::parse_canonical(&canonical),
            Ok(Digest::of(b"hello"))
        );
        for bad in [
            HELLO.to_owned(),
            format!("sha256:{}", HELLO.to_ascii_uppercase()),
            "sha256:2cf24dba".to_owned(),
        ] {
            assert!(Digest::parse_canonical(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_writes_the_oci_spelling_or_the_bare_hex_and_reads_both() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Meta {
            #[serde(with = "hex")]
            sha256: Digest,
            #[serde(with = "hex::option", default)]
            pinned: Option<Digest>,
            digest: Digest,
        }
        let digest = Digest::of(b"hello");
        let meta = Meta {
            sha256: digest,
            pinned: Some(digest),
            digest,
        };
        let json = serde_json::to_value(&meta).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"sha256": HELLO, "pinned": HELLO, "digest": format!("sha256:{HELLO}")})
        );
        let old = serde_json::json!({"sha256": format!("sha256:{HELLO}"), "pinned": null, "digest": HELLO});
        let read: Meta = serde_json::from_value(old).unwrap();
        assert_eq!(
            (read.sha256, read.pinned, read.digest),
            (digest, None, digest)
        );
        let bad = serde_json::json!({"sha256": "abc", "digest": HELLO});
        let err = serde_json::from_value::<Meta>(bad).unwrap_err().to_string();
        assert!(err.contains("has 3 hex digits"), "{err}");
    }
}
