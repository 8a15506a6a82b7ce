//! Signature verification by the host: Envoy's `verify_signature` foreign function, which
//! runs BoringSSL's `EVP_DigestVerify` (RSA PKCS#1 v1.5 and ECDSA) at native speed.
//!
//! Its arguments and answer are two small protobuf messages (Envoy's
//! `source/extensions/common/wasm/ext/verify_signature.proto`), encoded here by hand:
//!
//! ```text
//! VerifySignatureArguments { string hash_function = 1; bytes public_key = 2;
//!                            bytes signature = 3; bytes text = 4; string public_key_pem = 5; }
//! VerifySignatureResult    { bool result = 1; string error = 2; }
//! ```
//!
//! Envoy answers `BadArgument` (no result) when it cannot read the arguments or import the
//! key, and `Ok` with a result otherwise. Anything but a well-formed result saying `true` is
//! a failed verification.

use wasmgate_glue::{ConfigError, Host, HostError};

use crate::config::{Compiled, Keys};
use crate::jwk::host_only_reason;

/// The name under which Envoy registers the function.
pub const FUNCTION: &str = "verify_signature";

/// A P-256 public key (DER SubjectPublicKeyInfo), a message and its SHA-256 ECDSA signature
/// (DER), made once with OpenSSL: the known answer a host must give before it is trusted.
/// Its `s` is above half the group order, so a host that only takes low-S signatures (which
/// JOSE does not require) is not used.
const PROBE_KEY: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04, 0x2f, 0xb3, 0xa0, 0x51, 0x6e,
    0xbf, 0x5c, 0x2e, 0x5b, 0xe8, 0x4f, 0xb0, 0x0f, 0x5f, 0x59, 0x5b, 0x11, 0xf6, 0x92, 0x6b, 0x66,
    0x31, 0x3a, 0xb0, 0xe1, 0x2b, 0x0c, 0x93, 0x05, 0xbf, 0xb0, 0xea, 0x29, 0x6c, 0x0b, 0x3f, 0xe6,
    0x93, 0xff, 0xdc, 0x3f, 0x6e, 0xc6, 0x5e, 0x9c, 0xe1, 0x46, 0xcf, 0x6c, 0xbc, 0xc4, 0x28, 0x92,
    0xc7, 0x3d, 0x89, 0x3f, 0x11, 0x20, 0x0f, 0xd0, 0xb1, 0x72, 0x5f,
];
const PROBE_TEXT: &[u8] = b"wasmgate: does the host verify signatures?";
const PROBE_SIGNATURE: &[u8] = &[
    0x30, 0x45, 0x02, 0x20, 0x35, 0xdc, 0x55, 0xd2, 0xd6, 0x53, 0xb2, 0xec, 0x53, 0x7c, 0xac, 0x39,
    0xaf, 0xaa, 0x69, 0x3f, 0xd7, 0xac, 0x83, 0x00, 0x96, 0xe9, 0x5b, 0x44, 0xd6, 0xad, 0x7f, 0x9b,
    0x5f, 0xc3, 0xa7, 0x37, 0x02, 0x21, 0x00, 0xca, 0x21, 0xe5, 0xfd, 0xd9, 0x53, 0xa6, 0xfe, 0x96,
    0xfa, 0x65, 0xa4, 0x5d, 0x72, 0x2a, 0xb2, 0x0a, 0x8c, 0x5c, 0x95, 0x15, 0x91, 0x96, 0xca, 0x24,
    0x8b, 0xcf, 0x52, 0x78, 0x8b, 0x8e, 0xf2,
];

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Append a length-delimited field (wire type 2).
fn push_bytes(out: &mut Vec<u8>, field: u8, value: &[u8]) {
    out.push((field << 3) | 2);
    push_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// `VerifySignatureArguments` with a DER key.
pub fn encode_arguments(hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(hash.len() + public_key.len() + signature.len() + text.len() + 16);
    push_bytes(&mut out, 1, hash.as_bytes());
    push_bytes(&mut out, 2, public_key);
    push_bytes(&mut out, 3, signature);
    push_bytes(&mut out, 4, text);
    out
}

/// A protobuf field's value, by wire type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64,
    Fixed32,
}

fn read_varint(input: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first().ok_or("truncated varint")?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn take<'a>(input: &mut &'a [u8], len: u64) -> Result<&'a [u8], String> {
    let len = usize::try_from(len).map_err(|_| "field too long")?;
    if len > input.len() {
        return Err("truncated field".into());
    }
    let (value, rest) = input.split_at(len);
    *input = rest;
    Ok(value)
}

/// Every field of a protobuf message, in order, as (field number, value).
pub fn fields(mut input: &[u8]) -> Result<Vec<(u64, Value<'_>)>, String> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let key = read_varint(&mut input)?;
        let value = match key & 7 {
            0 => Value::Varint(read_varint(&mut input)?),
            1 => take(&mut input, 8).map(|_| Value::Fixed64)?,
            2 => {
                let len = read_varint(&mut input)?;
                Value::Bytes(take(&mut input, len)?)
            }
            5 => take(&mut input, 4).map(|_| Value::Fixed32)?,
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

/// Read a `VerifySignatureResult`: `Ok(true)` only for `result: true`; `Ok(false)` with
/// the host's reason otherwise. A message that is not one is an error.
pub fn decode_result(answer: &[u8]) -> Result<(bool, String), String> {
    let mut result = false;
    let mut error = String::new();
    for (field, value) in fields(answer)? {
        match (field, value) {
            (1, Value::Varint(0)) => result = false,
            (1, Value::Varint(1)) => result = true,
            (2, Value::Bytes(text)) => {
                error = String::from_utf8(text.to_vec()).map_err(|_| "error is not UTF-8")?;
            }
            (1 | 2, _) => return Err(format!("field {field} has the wrong wire type")),
            // Fields added later say nothing about this verification.
            _ => {}
        }
    }
    Ok((result, error))
}

/// Why the host could not give a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostFailure {
    /// The host has no such function (another proxy-wasm host, an older Envoy).
    Missing,
    /// The call failed, or its answer was not a `VerifySignatureResult`.
    Failed(String),
}

impl std::fmt::Display for HostFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostFailure::Missing => write!(f, "the host has no {FUNCTION} function"),
            HostFailure::Failed(why) => write!(f, "{FUNCTION} failed: {why}"),
        }
    }
}

/// Ask the host whether `signature` over `text` verifies with `public_key` (DER SPKI).
/// `Ok(false)` is the host's "no"; an error is neither yes nor no.
pub fn call(
    host: &mut dyn Host,
    hash: &str,
    public_key: &[u8],
    signature: &[u8],
    text: &[u8],
) -> Result<bool, HostFailure> {
    let arguments = encode_arguments(hash, public_key, signature, text);
    match host.call_foreign_function(FUNCTION, &arguments) {
        Ok(answer) => decode_result(&answer)
            .map(|(valid, _)| valid)
            .map_err(|why| HostFailure::Failed(format!("malformed answer: {why}"))),
        Err(HostError::NotFound) => Err(HostFailure::Missing),
        Err(err) => Err(HostFailure::Failed(err.to_string())),
    }
}

/// Whether the host verifies signatures the way this plugin needs: the probe signature
/// (high S) verifies, the same signature over other text does not.
pub fn probe(host: &mut dyn Host) -> Result<(), HostFailure> {
    let (key, signature) = (PROBE_KEY, PROBE_SIGNATURE);
    if !call(host, "sha256", key, signature, PROBE_TEXT)? {
        return Err(HostFailure::Failed(
            "refused a valid (high-S) ECDSA signature".into(),
        ));
    }
    if call(host, "sha256", key, signature, b"something else")? {
        return Err(HostFailure::Failed("accepted a wrong signature".into()));
    }
    Ok(())
}

/// Host verification within one request: the host, and what it did.
pub struct HostCrypto<'h> {
    host: &'h mut dyn Host,
    /// False when the host failed the probe: nothing is asked, every answer is no.
    usable: bool,
    /// Verifications the host was asked for.
    pub calls: u64,
    /// The last failure, when the host gave no verdict (the signature counted as bad).
    pub failure: Option<HostFailure>,
}

impl<'h> HostCrypto<'h> {
    pub fn new(host: &'h mut dyn Host) -> Self {
        HostCrypto {
            host,
            usable: true,
            calls: 0,
            failure: None,
        }
    }

    /// For a host that must verify but failed the probe: every verification fails, counted
    /// as a failure, and the host is never asked (its answers cannot be trusted).
    pub fn unusable(host: &'h mut dyn Host) -> Self {
        HostCrypto {
            usable: false,
            ..HostCrypto::new(host)
        }
    }

    /// Whether the host says the signature verifies; a failure is a no (fail closed).
    pub fn verify(&mut self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> bool {
        if !self.usable {
            self.failure = Some(HostFailure::Failed(
                "the host failed the check at start (crypto: host)".into(),
            ));
            return false;
        }
        self.calls += 1;
        match call(self.host, hash, public_key, signature, text) {
            Ok(valid) => valid,
            Err(failure) => {
                self.failure = Some(failure);
                false
            }
        }
    }
}

/// Where signatures are checked.
pub enum Crypto<'h> {
    /// Every algorithm in the module (pure Rust).
    Module,
    /// RS256/384/512 and ES256/384/512 by the host; PS*, EdDSA and HS* in the module.
    Host(HostCrypto<'h>),
}

/// Refuse a configuration whose inline keys only the host could verify with, for a module
/// that verifies every signature itself (`crypto: module`, or a host without
/// `verify_signature`): a P-384 or P-521 key without the `portable` feature. The error
/// names the key (`providers.main.local_jwks.keys[1]`) and what it needs.
pub fn check_module_only(config: &Compiled) -> Result<(), ConfigError> {
    for provider in &config.providers {
        let Keys::Local(set) = &provider.keys else {
            continue;
        };
        if let Some((i, alg)) = set.first_host_only() {
            return Err(ConfigError::new(
                format!("providers.{}.local_jwks.keys[{i}]", provider.name),
                format!(
                    "{}; here every signature is verified in the module",
                    host_only_reason(alg)
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate_glue::FakeHost;

    #[test]
    fn arguments_are_the_four_fields_in_order() {
        let text = vec![b'x'; 200];
        let args = encode_arguments("sha256", b"KEY", b"SIG", &text);
        assert_eq!(&args[..8], b"\x0a\x06sha256");
        assert_eq!(&args[8..13], b"\x12\x03KEY");
        assert_eq!(&args[13..18], b"\x1a\x03SIG");
        // 200 needs a two-byte varint.
        assert_eq!(&args[18..21], b"\x22\xc8\x01");
        assert_eq!(args.len(), 21 + 200);
        let parsed = fields(&args).unwrap();
        assert_eq!(parsed[3], (4, Value::Bytes(&text)));
    }

    #[test]
    fn results_are_read_strictly() {
        assert_eq!(decode_result(b"\x08\x01"), Ok((true, String::new())));
        assert_eq!(decode_result(b""), Ok((false, String::new())));
        assert_eq!(decode_result(b"\x12\x03bad"), Ok((false, "bad".to_owned())));
        // Unknown fields are skipped; later values win, as protobuf says.
        assert_eq!(
            decode_result(b"\x18\x05\x08\x01"),
            Ok((true, String::new()))
        );
        assert_eq!(
            decode_result(b"\x08\x01\x08\x00"),
            Ok((false, String::new()))
        );
        for bad in [
            &b"\x08"[..],
            b"\x08\x02",
            b"\x0a\x01\x01",
            b"\x12\x05ab",
            b"\x12\x01\xff",
            b"\x0b",
            b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        ] {
            assert!(decode_result(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_failures_are_neither_yes_nor_no() {
        let mut host = FakeHost::new();
        assert_eq!(
            call(&mut host, "sha256", b"k", b"s", b"t"),
            Err(HostFailure::Missing)
        );
        let mut host =
            FakeHost::new().with_foreign_function(FUNCTION, |_| Err(HostError::BadArgument));
        assert!(matches!(
            call(&mut host, "sha256", b"k", b"s", b"t"),
            Err(HostFailure::Failed(_))
        ));
        let mut host = FakeHost::new().with_foreign_function(FUNCTION, |_| Ok(b"\x08".to_vec()));
        let mut crypto = HostCrypto::new(&mut host);
        assert!(!crypto.verify("sha256", b"k", b"s", b"t"));
        assert_eq!(crypto.calls, 1);
        assert!(matches!(crypto.failure, Some(HostFailure::Failed(_))));
    }

    #[test]
    fn a_host_that_says_yes_to_everything_fails_the_probe() {
        let mut host =
            FakeHost::new().with_foreign_function(FUNCTION, |_| Ok(b"\x08\x01".to_vec()));
        assert!(probe(&mut host).is_err());
        let mut host = FakeHost::new().with_foreign_function(FUNCTION, |_| Ok(Vec::new()));
        assert!(probe(&mut host).is_err());
        assert_eq!(probe(&mut FakeHost::new()), Err(HostFailure::Missing));
    }
}
