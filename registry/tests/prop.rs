//! Property tests of the identifiers parsed from every URL (names, versions, digests): they never
//! panic, what they accept is exactly the documented grammar and round-trips, what they refuse
//! gets a message. Named `prop_*` so that `make fuzz` runs them with many cases
//! (`PROPTEST_CASES` overrides the default 256).

use proptest::prelude::*;
use wasmgate_artifact::DigestError;
use wasmgate_registry::names::{Digest, PluginName, Version, MAX_NAME_LEN};

/// The README's name grammar, `^[a-z0-9]+([._-][a-z0-9]+)*$` up to 64 characters, written as
/// a split rather than a scan so it is not the parser's own logic twice.
fn name_grammar(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len())
        && s.split(['.', '_', '-']).all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Text near the grammars: their characters, separators, case, `+`, `/`, `%` and anything.
fn tricky() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._/%+-]{0,80}",
        "[a-z0-9]{0,10}([._-]{1,2}[a-z0-9]{0,10}){0,8}",
        "(0|[1-9][0-9]{0,3}|0[0-9])(\\.[0-9]{1,3}){0,3}(-[a-zA-Z0-9.-]{0,12})?(\\+[a-z0-9.]{0,6})?",
        "sha256:[0-9a-fA-F]{60,68}",
        any::<String>(),
    ]
}

/// A numeric semver identifier: no leading zero.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,8}"]
}

/// A canonical semver 2.0 version without build metadata, from the grammar.
fn canonical_version() -> impl Strategy<Value = String> {
    let identifier = prop_oneof![number(), "[0-9]{0,3}[a-zA-Z-][a-zA-Z0-9-]{0,6}"];
    (
        number(),
        number(),
        number(),
        proptest::collection::vec(identifier, 0..4),
    )
        .prop_map(|(major, minor, patch, pre)| {
            let mut version = format!("{major}.{minor}.{patch}");
            if !pre.is_empty() {
                version.push('-');
                version.push_str(&pre.join("."));
            }
            version
        })
}

proptest! {
    #[test]
    fn prop_names_accept_exactly_the_grammar(text in tricky()) {
        match text.parse::<PluginName>() {
            Ok(name) => {
                prop_assert!(name_grammar(&text), "accepted outside the grammar: {:?}", text);
                prop_assert_eq!(name.as_str(), text.as_str());
                prop_assert_eq!(name.to_string().parse::<PluginName>(), Ok(name));
            }
            Err(message) => {
                prop_assert!(!name_grammar(&text), "refused within the grammar: {:?}", text);
                prop_assert!(message.starts_with("a plugin name"), "{}", message);
            }
        }
    }

    #[test]
    fn prop_every_name_of_the_grammar_round_trips(
        text in "[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,8}"
    ) {
        let parsed = text.parse::<PluginName>();
        if text.len() <= MAX_NAME_LEN {
            let name = parsed.map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            prop_assert_eq!(name.to_string(), text);
        } else {
            prop_assert!(parsed.is_err());
        }
    }

    #[test]
    fn prop_versions_are_canonical_semver_without_build_metadata(text in tricky()) {
        match text.parse::<Version>() {
            Ok(version) => {
                prop_assert_eq!(version.as_str(), text.as_str());
                prop_assert!(!text.contains('+'));
                let semver = semver::Version::parse(&text)
                    .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
                prop_assert_eq!(semver.to_string(), text);
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn prop_every_canonical_version_round_trips_and_sorts_like_semver(
        a in canonical_version(),
        b in canonical_version(),
    ) {
        let va = a.parse::<Version>().map_err(|e| TestCaseError::fail(format!("{a:?}: {e}")))?;
        let vb = b.parse::<Version>().map_err(|e| TestCaseError::fail(format!("{b:?}: {e}")))?;
        prop_assert_eq!(va.to_string(), a.clone());
        let semver_order = semver::Version::parse(&a)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .cmp(&semver::Version::parse(&b).map_err(|e| TestCaseError::fail(e.to_string()))?);
        prop_assert_eq!(va.cmp(&vb), semver_order);
        let with_build = format!("{a}+build.1");
        prop_assert!(with_build.parse::<Version>().is_err());
    }

    #[test]
    fn prop_url_digests_accept_exactly_sha256_and_64_lowercase_hex(text in tricky()) {
        let grammar = text.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        match Digest::parse_canonical(&text) {
            Ok(digest) => {
                prop_assert!(grammar, "accepted outside the grammar: {:?}", text);
                prop_assert_eq!(digest.to_string(), text);
            }
            Err(error) => {
                prop_assert!(!grammar, "refused within the grammar: {:?}", text);
                let message = error.to_string();
                prop_assert!(message.starts_with("digest") || message.starts_with("sha256"), "{}", message);
            }
        }
    }

    #[test]
    fn prop_stated_digests_accept_either_spelling_in_either_case(text in tricky()) {
        let hex = text.strip_prefix("sha256:").unwrap_or(&text);
        let grammar = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        prop_assert_eq!(text.parse::<Digest>().is_ok(), grammar, "{:?}", text);
    }

    #[test]
    fn prop_every_digest_round_trips(bytes in any::<[u8; 32]>()) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let digest: Digest = hex.parse().map_err(|e: DigestError| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(digest.bytes(), &bytes);
        prop_assert_eq!(hex.to_ascii_uppercase().parse::<Digest>(), Ok(digest));
        prop_assert_eq!(Digest::parse_canonical(&digest.to_string()), Ok(digest));
        prop_assert_eq!(digest.to_string(), format!("sha256:{hex}"));
        prop_assert_eq!(digest.hex(), hex);
    }
}
