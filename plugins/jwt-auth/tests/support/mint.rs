//! Test keys and token minting, shared by the unit tests (`src/tests.rs`) and the
//! real-Envoy tests. RSA keys are committed fixtures (generating them is slow in debug
//! builds); EC, Ed25519 and HMAC keys are derived from fixed bytes.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// A signing key of any supported type.
#[derive(Clone)]
pub enum Signer {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Hmac(Vec<u8>),
}

/// The committed RSA fixture key `n` (1 or 2).
pub fn rsa(n: u8) -> Signer {
    let pem = match n {
        1 => include_str!("../keys/rsa1.pem"),
        _ => include_str!("../keys/rsa2.pem"),
    };
    Signer::Rsa(Box::new(RsaPrivateKey::from_pkcs8_pem(pem).unwrap()))
}

pub fn p256(seed: u8) -> Signer {
    Signer::P256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
}

pub fn p384(seed: u8) -> Signer {
    Signer::P384(p384::ecdsa::SigningKey::from_slice(&[seed; 48]).unwrap())
}

pub fn p521(seed: u8) -> Signer {
    let mut bytes = [seed; 66];
    bytes[0] = 0;
    Signer::P521(p521::ecdsa::SigningKey::from_slice(&bytes).unwrap())
}

pub fn ed25519(seed: u8) -> Signer {
    Signer::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
}

pub fn hmac(seed: u8, len: usize) -> Signer {
    Signer::Hmac(vec![seed; len])
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key for `alg` used across tests.
pub fn key_for(alg: &str) -> Signer {
    match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => rsa(1),
        "ES256" => p256(1),
        "ES384" => p384(1),
        "ES512" => p521(1),
        "EdDSA" => ed25519(1),
        _ => hmac(1, 64),
    }
}

impl Signer {
    /// The public JWK (for HMAC, the secret `oct` key).
    pub fn jwk(&self, kid: &str) -> Value {
        let mut jwk = match self {
            Signer::Rsa(key) => json!({
                "kty": "RSA",
                "n": b64(&key.n().to_bytes_be()),
                "e": b64(&key.e().to_bytes_be()),
            }),
            Signer::P256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
            }
            Signer::P384(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-384", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
            }
            Signer::P521(key) => {
                let point = p521::ecdsa::VerifyingKey::from(key).to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-521", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
            }
            Signer::Ed25519(key) => json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().as_bytes()),
            }),
            Signer::Hmac(k) => json!({"kty": "oct", "k": b64(k)}),
        };
        if !kid.is_empty() {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    /// The raw signature of `input` with `alg`.
    pub fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        match (self, alg) {
            (Signer::Rsa(key), "RS256") => key
                .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input))
                .unwrap(),
            (Signer::Rsa(key), "RS384") => key
                .sign(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(input))
                .unwrap(),
            (Signer::Rsa(key), "RS512") => key
                .sign(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(input))
                .unwrap(),
            (Signer::Rsa(key), "PS256") => key
                .sign_with_rng(
                    &mut rand_core::OsRng,
                    Pss::new::<Sha256>(),
                    &Sha256::digest(input),
                )
                .unwrap(),
            (Signer::Rsa(key), "PS384") => key
                .sign_with_rng(
                    &mut rand_core::OsRng,
                    Pss::new::<Sha384>(),
                    &Sha384::digest(input),
                )
                .unwrap(),
            (Signer::Rsa(key), "PS512") => key
                .sign_with_rng(
                    &mut rand_core::OsRng,
                    Pss::new::<Sha512>(),
                    &Sha512::digest(input),
                )
                .unwrap(),
            (Signer::P256(key), _) => {
                let sig: p256::ecdsa::Signature = key.sign(input);
                sig.to_bytes().to_vec()
            }
            (Signer::P384(key), _) => {
                let sig: p384::ecdsa::Signature = key.sign(input);
                sig.to_bytes().to_vec()
            }
            (Signer::P521(key), _) => {
                let sig: p521::ecdsa::Signature = key.sign(input);
                sig.to_bytes().to_vec()
            }
            (Signer::Ed25519(key), _) => key.sign(input).to_bytes().to_vec(),
            (Signer::Hmac(k), "HS256") => mac::<Hmac<Sha256>>(k, input),
            (Signer::Hmac(k), "HS384") => mac::<Hmac<Sha384>>(k, input),
            (Signer::Hmac(k), _) => mac::<Hmac<Sha512>>(k, input),
            (_, alg) => panic!("cannot sign {alg} with this key"),
        }
    }
}

/// The other form of an ECDSA signature (`r || s`, JOSE): `(r, n - s)` verifies just as
/// `(r, s)` does, and exactly one of the two has a high `s` (above `n / 2`). JOSE takes both.
/// Also says whether the returned one is the high one.
pub fn negated_s(alg: &str, sig: &[u8]) -> (Vec<u8>, bool) {
    macro_rules! negate {
        ($curve:ident) => {{
            use $curve::elliptic_curve::scalar::IsHigh;
            let sig = $curve::ecdsa::Signature::from_slice(sig).unwrap();
            let (r, s) = sig.split_scalars();
            let s = -*s;
            let high = bool::from(s.is_high());
            let sig = $curve::ecdsa::Signature::from_scalars(r.to_bytes(), s.to_bytes()).unwrap();
            (sig.to_bytes().to_vec(), high)
        }};
    }
    match alg {
        "ES256" => negate!(p256),
        "ES384" => negate!(p384),
        "ES512" => negate!(p521),
        other => panic!("{other} is not ECDSA"),
    }
}

/// Replace a token's signature.
pub fn with_signature(token: &str, sig: &[u8]) -> String {
    let input = &token[..token.rfind('.').unwrap()];
    format!("{input}.{}", b64(sig))
}

/// A token's raw signature.
pub fn signature(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(&token[token.rfind('.').unwrap() + 1..])
        .unwrap()
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8]) -> Vec<u8> {
    let mut mac = <M as Mac>::new_from_slice(key).unwrap();
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// A JWKS of `(kid, key)` pairs.
pub fn jwks(keys: &[(&str, &Signer)]) -> Value {
    json!({ "keys": keys.iter().map(|(kid, key)| key.jwk(kid)).collect::<Vec<_>>() })
}

/// A token with this exact header and claims, signed with `alg` by `key`.
pub fn token_with_header(header: &Value, claims: &Value, alg: &str, key: &Signer) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(alg, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// A token `{"alg": alg, "kid": kid}` over `claims`.
pub fn token(alg: &str, kid: &str, key: &Signer, claims: &Value) -> String {
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if !kid.is_empty() {
        header["kid"] = json!(kid);
    }
    token_with_header(&header, claims, alg, key)
}
