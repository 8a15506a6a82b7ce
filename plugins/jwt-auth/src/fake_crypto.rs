//! Envoy's `verify_signature` for the fake host, written with RustCrypto from the DER the
//! plugin sends: an independent reader of the SPKI and ECDSA DER this crate writes.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use rsa::pkcs8::DecodePublicKey;
use sha2::{Sha256, Sha384, Sha512};
use wasmgate_glue::{FakeHost, HostError};

use crate::hostcrypto::{fields, Value, FUNCTION};

/// What Envoy's function does: parse the arguments (`BadArgument` when they or the key do
/// not parse), verify, answer a `VerifySignatureResult`.
pub fn verify_signature(arguments: &[u8]) -> Result<Vec<u8>, HostError> {
    let mut hash = "";
    let (mut key, mut signature, mut text): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    for (field, value) in fields(arguments).map_err(|_| HostError::BadArgument)? {
        match (field, value) {
            (1, Value::Bytes(v)) => {
                hash = std::str::from_utf8(v).map_err(|_| HostError::BadArgument)?
            }
            (2, Value::Bytes(v)) => key = v,
            (3, Value::Bytes(v)) => signature = v,
            (4, Value::Bytes(v)) => text = v,
            _ => return Err(HostError::BadArgument),
        }
    }
    let valid = if let Ok(rsa) = rsa::RsaPublicKey::from_public_key_der(key) {
        use rsa::Pkcs1v15Sign;
        use sha2::Digest;
        match hash {
            "sha256" => rsa.verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(text),
                signature,
            ),
            "sha384" => rsa.verify(
                Pkcs1v15Sign::new::<Sha384>(),
                &Sha384::digest(text),
                signature,
            ),
            "sha512" => rsa.verify(
                Pkcs1v15Sign::new::<Sha512>(),
                &Sha512::digest(text),
                signature,
            ),
            _ => return Ok(answer(false, "hash is not supported.")),
        }
        .is_ok()
    } else {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        use sha2::Digest;
        let digest = match hash {
            "sha256" => Sha256::digest(text).to_vec(),
            "sha384" => Sha384::digest(text).to_vec(),
            "sha512" => Sha512::digest(text).to_vec(),
            _ => return Ok(answer(false, "hash is not supported.")),
        };
        macro_rules! ecdsa {
            ($curve:ident) => {
                $curve::PublicKey::from_public_key_der(key)
                    .ok()
                    .map(|public| {
                        let point = public.to_encoded_point(false);
                        let (Ok(k), Ok(sig)) = (
                            $curve::ecdsa::VerifyingKey::from_sec1_bytes(point.as_bytes()),
                            $curve::ecdsa::Signature::from_der(signature),
                        ) else {
                            return false;
                        };
                        k.verify_prehash(&digest, &sig).is_ok()
                    })
            };
        }
        match ecdsa!(p256)
            .or_else(|| ecdsa!(p384))
            .or_else(|| ecdsa!(p521))
        {
            Some(valid) => valid,
            None => return Err(HostError::BadArgument),
        }
    };
    Ok(answer(
        valid,
        if valid {
            ""
        } else {
            "signature does not verify"
        },
    ))
}

fn answer(valid: bool, error: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if valid {
        out.extend_from_slice(&[0x08, 0x01]);
    }
    if !error.is_empty() {
        out.push(0x12);
        out.push(error.len() as u8);
        out.extend_from_slice(error.as_bytes());
    }
    out
}

/// A fake host that verifies signatures like Envoy.
pub fn host() -> FakeHost {
    FakeHost::new().with_foreign_function(FUNCTION, verify_signature)
}
