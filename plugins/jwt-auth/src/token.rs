//! Compact JWS tokens: strict parsing (RFC 7515, RFC 8725) and signature verification.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};
use wasmgate_glue::json::{self, Json};

use crate::der::{self, Curve};
use crate::hostcrypto::Crypto;
use crate::jwk::{Key, KeySet, Material};

/// The signature algorithms this plugin verifies. `none` is not one of them.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Alg {
    /// Every algorithm, for documentation and tests.
    pub const ALL: [Alg; 13] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
    ];

    /// The algorithm named `name` exactly (JWS algorithm names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// Whether this build verifies `self` in the module. ES384 and ES512 need the
    /// `portable` feature; without it only the host (`verify_signature`) verifies them.
    pub fn in_module(self) -> bool {
        cfg!(feature = "portable") || !matches!(self, Alg::ES384 | Alg::ES512)
    }

    /// The JWS name, e.g. `RS256`.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }
}

/// Why a request was refused. Each reason has a metric name and a description that is
/// safe to show to the client (it never names keys or internals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No token where the provider looks for one.
    Missing,
    /// More than one token, or an empty one.
    Duplicate,
    /// Longer than `max_token_bytes`.
    TooLarge,
    /// Not a compact JWS with JSON object header and payload in unpadded base64url.
    Malformed,
    /// `alg` is `none` (in any spelling) or unsupported.
    Algorithm,
    /// The header has `crit`: no extension is understood, so none may be critical.
    Crit,
    /// No key of the provider fits the token (unknown `kid`, or no key for its algorithm).
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// `exp` has passed (beyond the clock skew).
    Expired,
    /// `nbf` is still ahead (beyond the clock skew).
    NotYetValid,
    /// `exp` is missing while required, or the lifetime exceeds `max_lifetime`.
    Lifetime,
    /// `iss` is not the provider's issuer.
    Issuer,
    /// `aud` names none of the provider's audiences.
    Audience,
    /// `sub` does not match the provider's subjects.
    Subject,
    /// The provider's remote key set has never been fetched.
    KeysUnavailable,
    /// The token is valid but lacks a claim or scope the rule requires (403).
    InsufficientScope,
}

impl Reason {
    /// Every reason, to define one counter each.
    pub const ALL: [Reason; 16] = [
        Reason::Missing,
        Reason::Duplicate,
        Reason::TooLarge,
        Reason::Malformed,
        Reason::Algorithm,
        Reason::Crit,
        Reason::UnknownKey,
        Reason::Signature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::Lifetime,
        Reason::Issuer,
        Reason::Audience,
        Reason::Subject,
        Reason::KeysUnavailable,
        Reason::InsufficientScope,
    ];

    /// The suffix of the `jwt_auth.denied.<name>` counter.
    pub fn metric(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Duplicate => "duplicate",
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::Algorithm => "algorithm",
            Reason::Crit => "crit",
            Reason::UnknownKey => "unknown_key",
            Reason::Signature => "signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Lifetime => "lifetime",
            Reason::Issuer => "issuer",
            Reason::Audience => "audience",
            Reason::Subject => "subject",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::InsufficientScope => "insufficient_scope",
        }
    }

    /// What the client is told (`error_description`).
    pub fn description(self) -> &'static str {
        match self {
            Reason::Missing => "token is missing",
            Reason::Duplicate => "more than one token, or an empty one",
            Reason::TooLarge => "token is too large",
            Reason::Malformed => "token is malformed",
            Reason::Algorithm => "token algorithm is not accepted",
            Reason::Crit => "token has unsupported critical header parameters",
            Reason::UnknownKey => "no key fits the token",
            Reason::Signature => "token signature does not verify",
            Reason::Expired => "token is expired",
            Reason::NotYetValid => "token is not yet valid",
            Reason::Lifetime => "token lifetime is not accepted",
            Reason::Issuer => "token issuer is not accepted",
            Reason::Audience => "token audience is not accepted",
            Reason::Subject => "token subject is not accepted",
            Reason::KeysUnavailable => "keys to verify the token are unavailable",
            Reason::InsufficientScope => "token lacks a required claim or scope",
        }
    }
}

/// A token parsed strictly but not yet verified.
#[derive(Debug, Clone)]
pub struct Token<'a> {
    /// The header's `alg`.
    pub alg: Alg,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The payload.
    pub claims: Map<String, Value>,
    /// The payload segment as received (base64url), for `forward_payload_header`.
    pub payload_b64: &'a str,
    /// `header.payload`, what the signature covers.
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// A segment's JSON object: its entries in document order. The glue's strict parser refuses
/// a repeated name at any depth (RFC 7515 §4, RFC 7519 §4 make names unique; serde_json
/// would keep the last of two, and a verifier reading the first would see another `alg` or
/// `exp` in the same token), without serde_json's deserializer in the module.
fn decode_object(segment: &str) -> Result<Vec<(String, Json)>, Reason> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Reason::Malformed)?;
    match json::parse(&bytes) {
        Ok(Json::Object(entries)) => Ok(entries),
        _ => Err(Reason::Malformed),
    }
}

/// Whether a header parameter has the type its registration gives it (RFC 7515 §4.1,
/// RFC 7797 §3); unregistered names may hold anything.
fn header_parameter_ok(name: &str, value: &Json) -> bool {
    match name {
        "alg" | "kid" | "typ" | "cty" | "jku" | "x5u" | "x5t" | "x5t#S256" => {
            matches!(value, Json::String(_))
        }
        "crit" | "x5c" => match value {
            Json::Array(items) => items.iter().all(|item| matches!(item, Json::String(_))),
            _ => false,
        },
        "jwk" => matches!(value, Json::Object(_)),
        // RFC 7797 unencoded payloads are not implemented: `false` would mean the payload
        // segment is not base64url, so only the default, `true`, is read as it is.
        "b64" => *value == Json::Bool(true),
        _ => true,
    }
}

/// Whether every number in `json` is one serde_json takes (an `f64`): the header is held to
/// what the claims are.
fn numbers_ok(json: &Json) -> bool {
    match json {
        Json::Float(text) => json::float_number(text).is_some(),
        Json::Array(items) => items.iter().all(numbers_ok),
        Json::Object(entries) => entries.iter().all(|(_, value)| numbers_ok(value)),
        _ => true,
    }
}

impl<'a> Token<'a> {
    /// Parse a compact JWS strictly: three segments of unpadded base64url (no `=`, `+` or
    /// `/`, no stray bits), a JSON object header and payload, a supported `alg` (never
    /// `none` in any spelling), no repeated names in either, registered header parameters
    /// of their registered types, no `b64` but `true`, no `crit`, and at most `max_bytes`
    /// bytes in all.
    pub fn parse(raw: &'a str, max_bytes: usize) -> Result<Token<'a>, Reason> {
        if raw.len() > max_bytes {
            return Err(Reason::TooLarge);
        }
        let mut parts = raw.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Reason::Malformed);
        };
        let header_entries = decode_object(header)?;
        let field = |name: &str| {
            header_entries
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value)
        };
        let alg = match field("alg") {
            Some(Json::String(name)) => match Alg::from_name(name) {
                Some(alg) => alg,
                None => return Err(Reason::Algorithm),
            },
            _ => return Err(Reason::Malformed),
        };
        if !header_entries
            .iter()
            .all(|(name, value)| header_parameter_ok(name, value) && numbers_ok(value))
        {
            return Err(Reason::Malformed);
        }
        if field("crit").is_some() {
            return Err(Reason::Crit);
        }
        let kid = match field("kid") {
            None => None,
            Some(Json::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(Reason::Malformed),
        };
        let claims = match json::into_value(Json::Object(decode_object(payload)?)) {
            Some(Value::Object(claims)) => claims,
            _ => return Err(Reason::Malformed),
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Reason::Malformed)?;
        if signature.is_empty() {
            return Err(Reason::Malformed);
        }
        Ok(Token {
            alg,
            kid,
            claims,
            payload_b64: payload,
            signing_input: &raw[..header.len() + 1 + payload.len()],
            signature,
        })
    }

    /// The keys of `keys` this token may be checked against: with a `kid`, only the key
    /// with that id (and only if it fits the algorithm); without one, every fitting key.
    pub fn candidates<'k>(&self, keys: &'k KeySet) -> impl Iterator<Item = &'k Key> + 'k {
        let kid = self.kid.clone();
        let alg = self.alg;
        keys.keys.iter().filter(move |key| {
            key.fits(alg)
                && match &kid {
                    Some(kid) => key.kid.as_deref() == Some(kid.as_str()),
                    None => true,
                }
        })
    }

    /// Whether a key with the token's `kid` exists at all (whatever its type).
    pub fn kid_known(&self, keys: &KeySet) -> bool {
        match &self.kid {
            Some(kid) => keys.keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
            None => true,
        }
    }

    /// Verify the signature against the fitting keys of `keys`, where `crypto` says.
    pub fn verify(&self, keys: &KeySet, crypto: &mut Crypto<'_>) -> Result<(), Reason> {
        let mut tried = false;
        for key in self.candidates(keys) {
            tried = true;
            let input = self.signing_input.as_bytes();
            let valid = match crypto {
                Crypto::Host(host) => match host_form(self.alg, key, &self.signature) {
                    HostForm::Call(hash, spki, signature) => {
                        host.verify(hash, spki, &signature, input)
                    }
                    HostForm::Refused => false,
                    HostForm::Module => {
                        verify_with(self.alg, &key.material, input, &self.signature)
                    }
                },
                Crypto::Module => verify_with(self.alg, &key.material, input, &self.signature),
            };
            if valid {
                return Ok(());
            }
        }
        if tried {
            Err(Reason::Signature)
        } else {
            Err(Reason::UnknownKey)
        }
    }
}

/// How a signature is checked when the host verifies.
enum HostForm<'k> {
    /// By the host: hash name, DER key, signature as the host takes it.
    Call(&'static str, &'k [u8], std::borrow::Cow<'k, [u8]>),
    /// Refused before any call (an ECDSA signature that cannot be valid).
    Refused,
    /// In the module (PS*, EdDSA, HS*).
    Module,
}

fn host_form<'k>(alg: Alg, key: &'k Key, sig: &'k [u8]) -> HostForm<'k> {
    use std::borrow::Cow;
    let Some(spki) = key.spki.as_deref() else {
        return HostForm::Module;
    };
    let ecdsa = |hash, curve| match der::ecdsa_signature(curve, sig) {
        Some(der) => HostForm::Call(hash, spki, Cow::Owned(der)),
        None => HostForm::Refused,
    };
    // The key fits the algorithm (`candidates`); the pairs below say so once more.
    match (alg, &key.material) {
        (Alg::RS256, Material::Rsa(_)) => HostForm::Call("sha256", spki, Cow::Borrowed(sig)),
        (Alg::RS384, Material::Rsa(_)) => HostForm::Call("sha384", spki, Cow::Borrowed(sig)),
        (Alg::RS512, Material::Rsa(_)) => HostForm::Call("sha512", spki, Cow::Borrowed(sig)),
        (Alg::ES256, Material::P256(_)) => ecdsa("sha256", Curve::P256),
        (Alg::ES384, Material::P384(_)) => ecdsa("sha384", Curve::P384),
        (Alg::ES512, Material::P521(_)) => ecdsa("sha512", Curve::P521),
        _ => HostForm::Module,
    }
}

fn hmac_ok<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8], sig: &[u8]) -> bool {
    match <M as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(input);
            // verify_slice compares in constant time.
            mac.verify_slice(sig).is_ok()
        }
        Err(_) => false,
    }
}

/// Whether `sig` is a valid `alg` signature of `input` by `material`. The caller has
/// already checked that the key fits the algorithm; a mismatch here is simply `false`, and
/// so is a key whose curve is not in this build (configurations are refused before that).
fn verify_with(alg: Alg, material: &Material, input: &[u8], sig: &[u8]) -> bool {
    match (alg, material) {
        (Alg::RS256, Material::Rsa(key)) => rsa_pkcs1::<Sha256>(key, input, sig),
        (Alg::RS384, Material::Rsa(key)) => rsa_pkcs1::<Sha384>(key, input, sig),
        (Alg::RS512, Material::Rsa(key)) => rsa_pkcs1::<Sha512>(key, input, sig),
        (Alg::PS256, Material::Rsa(key)) => rsa_pss::<Sha256>(key, input, sig),
        (Alg::PS384, Material::Rsa(key)) => rsa_pss::<Sha384>(key, input, sig),
        (Alg::PS512, Material::Rsa(key)) => rsa_pss::<Sha512>(key, input, sig),
        (Alg::ES256, Material::P256(key)) => es256(key, input, sig),
        #[cfg(feature = "portable")]
        (Alg::ES384, Material::P384(key)) => {
            use p256::ecdsa::signature::Verifier;
            p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| key.verify(input, &s).is_ok())
        }
        #[cfg(feature = "portable")]
        (Alg::ES512, Material::P521(key)) => {
            use p256::ecdsa::signature::Verifier;
            p521::ecdsa::Signature::from_slice(sig).is_ok_and(|s| key.verify(input, &s).is_ok())
        }
        (Alg::EdDSA, Material::Ed25519(key)) => eddsa(key, input, sig),
        (Alg::HS256, Material::Hmac(key)) => hmac_ok::<Hmac<Sha256>>(key, input, sig),
        (Alg::HS384, Material::Hmac(key)) if key.len() >= 48 => {
            hmac_ok::<Hmac<Sha384>>(key, input, sig)
        }
        (Alg::HS512, Material::Hmac(key)) if key.len() >= 64 => {
            hmac_ok::<Hmac<Sha512>>(key, input, sig)
        }
        _ => false,
    }
}

// One function per algorithm family, never inlined into `verify_with`: folded together they
// made one 10.7 KB function, and Envoy's V8 keeps the compiler's memory for the largest
// functions of a module (bench/module-memory.md, issue 14).

#[inline(never)]
fn rsa_pkcs1<D: Digest + rsa::pkcs8::AssociatedOid>(
    key: &rsa::RsaPublicKey,
    input: &[u8],
    sig: &[u8],
) -> bool {
    key.verify(rsa::Pkcs1v15Sign::new::<D>(), &D::digest(input), sig)
        .is_ok()
}

#[inline(never)]
fn rsa_pss<D: Digest + sha2::digest::DynDigest + Send + Sync + 'static>(
    key: &rsa::RsaPublicKey,
    input: &[u8],
    sig: &[u8],
) -> bool {
    key.verify(rsa::Pss::new::<D>(), &D::digest(input), sig)
        .is_ok()
}

#[inline(never)]
fn es256(key: &p256::ecdsa::VerifyingKey, input: &[u8], sig: &[u8]) -> bool {
    use p256::ecdsa::signature::Verifier;
    p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| key.verify(input, &s).is_ok())
}

#[inline(never)]
fn eddsa(key: &ed25519_dalek::VerifyingKey, input: &[u8], sig: &[u8]) -> bool {
    ed25519_dalek::Signature::from_slice(sig).is_ok_and(|s| key.verify_strict(input, &s).is_ok())
}
