//! The DER a host's crypto library takes: public keys as SubjectPublicKeyInfo (RFC 5280,
//! RFC 3279, RFC 5480) built once when a JWKS is loaded, and ECDSA signatures as
//! `ECDSA-Sig-Value` converted from JOSE's fixed-size `r || s` (RFC 7518 §3.4) per token.

/// `rsaEncryption` (1.2.840.113549.1.1.1) with its NULL parameters.
const RSA_ALGORITHM: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// `id-ecPublicKey` (1.2.840.10045.2.1).
const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// The NIST curves JOSE names, with what the DER and the range checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// Bytes of a coordinate, and of `r` and `s` in a JOSE signature.
    pub fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// The curve's OID, DER-encoded: prime256v1, secp384r1, secp521r1.
    fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            Curve::P521 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
        }
    }

    /// The order `n` of the base point, big-endian in `size()` bytes.
    fn order(self) -> &'static [u8] {
        match self {
            Curve::P256 => &[
                0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2,
                0xfc, 0x63, 0x25, 0x51,
            ],
            Curve::P384 => &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81,
                0xf4, 0x37, 0x2d, 0xdf, 0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec,
                0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
            ],
            Curve::P521 => &[
                0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xfa, 0x51, 0x86, 0x87, 0x83, 0xbf, 0x2f, 0x96, 0x6b,
                0x7f, 0xcc, 0x01, 0x48, 0xf7, 0x09, 0xa5, 0xd0, 0x3b, 0xb5, 0xc9, 0xb8, 0x89, 0x9c,
                0x47, 0xae, 0xbb, 0x6f, 0xb7, 0x1e, 0x91, 0x38, 0x64, 0x09,
            ],
        }
    }
}

/// Append a DER length.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Append a tag-length-value.
fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    push_len(out, value.len());
    out.extend_from_slice(value);
}

/// Append a non-negative INTEGER from big-endian bytes, in DER's minimal form.
fn push_uint(out: &mut Vec<u8>, be: &[u8]) {
    let skip = be.iter().take_while(|b| **b == 0).count();
    let digits = &be[skip..];
    let mut value = Vec::with_capacity(digits.len() + 1);
    // Zero is one 0x00 byte; a set top bit would read as negative without a leading zero.
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(digits);
    push_tlv(out, 0x02, &value);
}

/// SubjectPublicKeyInfo of `algorithm` (the AlgorithmIdentifier's contents) and `key`.
fn spki(algorithm: &[&[u8]], key: &[u8]) -> Vec<u8> {
    let mut alg = Vec::new();
    for part in algorithm {
        alg.extend_from_slice(part);
    }
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(key);
    let mut body = Vec::with_capacity(alg.len() + bits.len() + 8);
    push_tlv(&mut body, 0x30, &alg);
    push_tlv(&mut body, 0x03, &bits);
    let mut out = Vec::with_capacity(body.len() + 4);
    push_tlv(&mut out, 0x30, &body);
    out
}

/// The SubjectPublicKeyInfo of an RSA key, from the big-endian modulus and exponent.
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut ints = Vec::with_capacity(n.len() + e.len() + 8);
    push_uint(&mut ints, n);
    push_uint(&mut ints, e);
    let mut key = Vec::with_capacity(ints.len() + 4);
    push_tlv(&mut key, 0x30, &ints);
    spki(&[RSA_ALGORITHM], &key)
}

/// The SubjectPublicKeyInfo of an EC key, from its uncompressed SEC1 point `04 || x || y`.
pub fn ec_spki(curve: Curve, point: &[u8]) -> Vec<u8> {
    spki(&[EC_PUBLIC_KEY, curve.oid()], point)
}

/// Whether `(x, y)` (big-endian, `size()` bytes each, as `x || y`) is a point of the curve:
/// both coordinates below the field prime `p` and `y² = x³ - 3x + b (mod p)`. Used for the
/// curves whose code is not in the module (P-384 and P-521 without the `portable`
/// feature), so a key the host cannot import is refused when the JWKS is loaded, as the
/// curves' own crates refuse it. The point at infinity has no uncompressed form.
#[cfg(any(test, not(feature = "portable")))]
pub fn on_curve(curve: Curve, xy: &[u8]) -> bool {
    use rsa::BigUint;
    // The field prime and `b` of each curve (FIPS 186-4, D.1.2.4 and D.1.2.5); tests
    // check them against the curves' crates.
    let (p, b): (&[u8], &[u8]) = match curve {
        Curve::P256 => (
            &[
                0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff,
            ],
            &[
                0x5a, 0xc6, 0x35, 0xd8, 0xaa, 0x3a, 0x93, 0xe7, 0xb3, 0xeb, 0xbd, 0x55, 0x76, 0x98,
                0x86, 0xbc, 0x65, 0x1d, 0x06, 0xb0, 0xcc, 0x53, 0xb0, 0xf6, 0x3b, 0xce, 0x3c, 0x3e,
                0x27, 0xd2, 0x60, 0x4b,
            ],
        ),
        Curve::P384 => (
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0xff, 0xff, 0xff, 0xff,
            ],
            &[
                0xb3, 0x31, 0x2f, 0xa7, 0xe2, 0x3e, 0xe7, 0xe4, 0x98, 0x8e, 0x05, 0x6b, 0xe3, 0xf8,
                0x2d, 0x19, 0x18, 0x1d, 0x9c, 0x6e, 0xfe, 0x81, 0x41, 0x12, 0x03, 0x14, 0x08, 0x8f,
                0x50, 0x13, 0x87, 0x5a, 0xc6, 0x56, 0x39, 0x8d, 0x8a, 0x2e, 0xd1, 0x9d, 0x2a, 0x85,
                0xc8, 0xed, 0xd3, 0xec, 0x2a, 0xef,
            ],
        ),
        Curve::P521 => (
            &[
                0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            &[
                0x51, 0x95, 0x3e, 0xb9, 0x61, 0x8e, 0x1c, 0x9a, 0x1f, 0x92, 0x9a, 0x21, 0xa0, 0xb6,
                0x85, 0x40, 0xee, 0xa2, 0xda, 0x72, 0x5b, 0x99, 0xb3, 0x15, 0xf3, 0xb8, 0xb4, 0x89,
                0x91, 0x8e, 0xf1, 0x09, 0xe1, 0x56, 0x19, 0x39, 0x51, 0xec, 0x7e, 0x93, 0x7b, 0x16,
                0x52, 0xc0, 0xbd, 0x3b, 0xb1, 0xbf, 0x07, 0x35, 0x73, 0xdf, 0x88, 0x3d, 0x2c, 0x34,
                0xf1, 0xef, 0x45, 0x1f, 0xd4, 0x6b, 0x50, 0x3f, 0x00,
            ],
        ),
    };
    let size = curve.size();
    let (p, b) = (BigUint::from_bytes_be(p), BigUint::from_bytes_be(b));
    if xy.len() != 2 * size {
        return false;
    }
    let x = BigUint::from_bytes_be(&xy[..size]);
    let y = BigUint::from_bytes_be(&xy[size..]);
    if x >= p || y >= p {
        return false;
    }
    let three = BigUint::from(3u8);
    let right = (&x * &x % &p * &x + (&p - &three) * &x + b) % &p;
    &y * &y % &p == right
}

/// Whether `value` (big-endian, `size()` bytes) is in `1..n`.
fn in_range(curve: Curve, value: &[u8]) -> bool {
    value.iter().any(|b| *b != 0) && value < curve.order()
}

/// The DER `ECDSA-Sig-Value` of a JOSE signature `r || s`, or `None` when the signature
/// cannot be valid: a length other than twice the curve size, or `r` or `s` zero or not
/// below the group order. Checked here so that what is refused does not depend on the host.
/// A high `s` is kept: JOSE does not require low-S signatures.
pub fn ecdsa_signature(curve: Curve, jose: &[u8]) -> Option<Vec<u8>> {
    let size = curve.size();
    if jose.len() != 2 * size {
        return None;
    }
    let (r, s) = jose.split_at(size);
    if !in_range(curve, r) || !in_range(curve, s) {
        return None;
    }
    let mut ints = Vec::with_capacity(2 * size + 6);
    push_uint(&mut ints, r);
    push_uint(&mut ints, s);
    let mut out = Vec::with_capacity(ints.len() + 3);
    push_tlv(&mut out, 0x30, &ints);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_positive() {
        let enc = |be: &[u8]| {
            let mut out = Vec::new();
            push_uint(&mut out, be);
            out
        };
        assert_eq!(enc(&[0, 0, 1]), [2, 1, 1]);
        assert_eq!(enc(&[0x80]), [2, 2, 0, 0x80]);
        assert_eq!(enc(&[0, 0x7f, 0xff]), [2, 2, 0x7f, 0xff]);
        assert_eq!(enc(&[0, 0]), [2, 1, 0]);
    }

    #[test]
    fn long_lengths_use_the_fewest_bytes() {
        let len = |n: usize| {
            let mut out = Vec::new();
            push_len(&mut out, n);
            out
        };
        assert_eq!(len(127), [127]);
        assert_eq!(len(128), [0x81, 128]);
        assert_eq!(len(300), [0x82, 1, 44]);
    }

    /// `on_curve` agrees with the curves' crates: their public keys are on it; a point
    /// with `y` changed, or a coordinate at or above `p`, is not.
    #[test]
    fn points_on_the_curve_are_the_ones_the_curve_crates_take() {
        fn check(curve: Curve, point: &[u8], crate_takes: impl Fn(&[u8]) -> bool) {
            let xy = &point[1..];
            assert!(crate_takes(point) && on_curve(curve, xy), "{curve:?}");
            let mut other = xy.to_vec();
            let last = other.len() - 1;
            other[last] ^= 1;
            let sec1 = [&[4u8][..], &other].concat();
            assert!(!crate_takes(&sec1) && !on_curve(curve, &other), "{curve:?}");
            // x = all ones is at or above p for every curve here.
            let mut big = vec![0xff; xy.len()];
            if curve == Curve::P521 {
                big[0] = 0x01;
            }
            big[xy.len() / 2..].copy_from_slice(&xy[xy.len() / 2..]);
            assert!(!on_curve(curve, &big), "{curve:?}");
            assert!(!on_curve(curve, &xy[1..]), "{curve:?}: short");
        }
        for seed in 1..=4u8 {
            let key = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
            let point = key.verifying_key().to_encoded_point(false);
            check(Curve::P256, point.as_bytes(), |p| {
                p256::ecdsa::VerifyingKey::from_sec1_bytes(p).is_ok()
            });
            let key = p384::ecdsa::SigningKey::from_slice(&[seed; 48]).unwrap();
            let point = key.verifying_key().to_encoded_point(false);
            check(Curve::P384, point.as_bytes(), |p| {
                p384::ecdsa::VerifyingKey::from_sec1_bytes(p).is_ok()
            });
            let mut bytes = [seed; 66];
            bytes[0] = 0;
            let key = p521::ecdsa::SigningKey::from_slice(&bytes).unwrap();
            let point = p521::ecdsa::VerifyingKey::from(&key).to_encoded_point(false);
            check(Curve::P521, point.as_bytes(), |p| {
                p521::ecdsa::VerifyingKey::from_sec1_bytes(p).is_ok()
            });
        }
    }

    /// The orders written here are the curves' own, as RustCrypto knows them: `n - 1` is
    /// a valid scalar and `n` is not.
    #[test]
    fn group_orders_match_the_curves() {
        fn minus_one(n: &[u8]) -> Vec<u8> {
            let mut v = n.to_vec();
            for b in v.iter_mut().rev() {
                let (x, borrow) = b.overflowing_sub(1);
                *b = x;
                if !borrow {
                    break;
                }
            }
            v
        }
        for curve in [Curve::P256, Curve::P384, Curve::P521] {
            let n = curve.order();
            assert_eq!(n.len(), curve.size());
            let below = minus_one(n);
            let sig = |r: &[u8]| [r, &below[..]].concat();
            let (ok, at_n) = match curve {
                Curve::P256 => (
                    p256::ecdsa::Signature::from_slice(&sig(&below)).is_ok(),
                    p256::ecdsa::Signature::from_slice(&sig(n)).is_ok(),
                ),
                Curve::P384 => (
                    p384::ecdsa::Signature::from_slice(&sig(&below)).is_ok(),
                    p384::ecdsa::Signature::from_slice(&sig(n)).is_ok(),
                ),
                Curve::P521 => (
                    p521::ecdsa::Signature::from_slice(&sig(&below)).is_ok(),
                    p521::ecdsa::Signature::from_slice(&sig(n)).is_ok(),
                ),
            };
            assert!(ok && !at_n, "{curve:?}");
            assert!(ecdsa_signature(curve, &sig(&below)).is_some());
            assert!(ecdsa_signature(curve, &sig(n)).is_none());
            assert!(ecdsa_signature(curve, &[sig(&below), vec![0]].concat()).is_none());
            let zero = vec![0; curve.size()];
            assert!(ecdsa_signature(curve, &[&zero[..], &below[..]].concat()).is_none());
            assert!(ecdsa_signature(curve, &[&below[..], &zero[..]].concat()).is_none());
        }
    }
}
