//! JSON Web Key Sets (RFC 7517): parsed and checked once, then used to verify tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::BigUint;
use serde::Deserialize;
use wasmgate_glue::FromJson;

use crate::der::{self, Curve};
use crate::token::Alg;

/// The smallest RSA modulus accepted (RFC 7518 §3.3: 2048 bits or larger).
const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted; bigger keys only cost CPU.
const MAX_RSA_BITS: usize = 8192;

/// A JWKS document as written in the configuration or served by an issuer.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, FromJson)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// One JSON Web Key. Members this plugin does not use (`x5c`, ...) are ignored.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, FromJson)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Jwk {
    /// Key type: `RSA`, `EC`, `OKP` or `oct`.
    pub kty: String,
    /// Key id; a token naming a `kid` is only checked against the key with that id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The one algorithm this key may be used with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Public key use; when present it must be `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Permitted operations; when present it must include `verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// RSA modulus (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Curve: `P-256`, `P-384`, `P-521` (EC) or `Ed25519` (OKP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Public point x coordinate (EC) or public key (OKP), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// Public point y coordinate (EC), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Symmetric key (oct), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
    /// A private key member: refused, a JWKS must never carry private keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub d: Option<serde_json::Value>,
}

/// A P-384 public key as the module verifies with it (the `portable` build).
#[cfg(feature = "portable")]
pub type P384Key = p384::ecdsa::VerifyingKey;
/// A P-521 public key as the module verifies with it (the `portable` build).
#[cfg(feature = "portable")]
pub type P521Key = Box<p521::ecdsa::VerifyingKey>;
/// Without the `portable` feature the module has no P-384 code: the key is its DER form
/// ([`Key::spki`]) alone, for the host's `verify_signature`.
#[cfg(not(feature = "portable"))]
pub type P384Key = HostOnly;
/// Without the `portable` feature the module has no P-521 code: the key is its DER form
/// ([`Key::spki`]) alone, for the host's `verify_signature`.
#[cfg(not(feature = "portable"))]
pub type P521Key = HostOnly;

/// A key only the host verifies with (its point checked on the curve when it was loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostOnly;

/// Verification material of one key.
#[derive(Clone)]
pub enum Material {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(P384Key),
    P521(P521Key),
    Ed25519(ed25519_dalek::VerifyingKey),
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key type only: key material stays out of logs.
        f.write_str(match self {
            Material::Rsa(_) => "Rsa",
            Material::P256(_) => "P256",
            Material::P384(_) => "P384",
            Material::P521(_) => "P521",
            Material::Ed25519(_) => "Ed25519",
            Material::Hmac(_) => "Hmac",
        })
    }
}

/// A checked key, ready to verify signatures.
#[derive(Debug, Clone)]
pub struct Key {
    pub kid: Option<String>,
    /// The key's own `alg`, when it names one.
    pub alg: Option<Alg>,
    pub material: Material,
    /// The public key as DER SubjectPublicKeyInfo, for the host's `verify_signature`:
    /// built once when the key set is loaded (RSA and EC keys only).
    pub spki: Option<Vec<u8>>,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`: the key type fits the
    /// algorithm, and the key's own `alg` (when present) is that algorithm.
    pub fn fits(&self, alg: Alg) -> bool {
        if self.alg.is_some_and(|own| own != alg) {
            return false;
        }
        use Alg::*;
        match &self.material {
            Material::Rsa(_) => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Material::P256(_) => alg == ES256,
            Material::P384(_) => alg == ES384,
            Material::P521(_) => alg == ES512,
            Material::Ed25519(_) => alg == EdDSA,
            Material::Hmac(_) => matches!(alg, HS256 | HS384 | HS512),
        }
    }

    /// The algorithm of this key that only the host can verify in this build: ES384 for a
    /// P-384 key and ES512 for a P-521 key unless the module is built `portable`.
    pub fn host_only(&self) -> Option<Alg> {
        match &self.material {
            Material::P384(_) if !Alg::ES384.in_module() => Some(Alg::ES384),
            Material::P521(_) if !Alg::ES512.in_module() => Some(Alg::ES512),
            _ => None,
        }
    }
}

/// Why a key is of no use where the module verifies alone: `"ES384 needs the host's
/// verify_signature or the portable build"`.
pub fn host_only_reason(alg: Alg) -> String {
    format!(
        "{} needs the host's verify_signature or the portable build of jwt-auth",
        alg.name()
    )
}

/// The keys of one provider, checked.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// The usable keys, in document order.
    pub keys: Vec<Key>,
}

impl KeySet {
    /// Parse a JWKS refusing any key that is not usable; the error names the key
    /// (`keys[1].n: ...`). Used for configured keys, where a mistake must be loud.
    pub fn strict(jwks: &Jwks) -> Result<KeySet, (String, String)> {
        if jwks.keys.is_empty() {
            return Err(("keys".into(), "a JWKS needs at least one key".into()));
        }
        let mut keys = Vec::with_capacity(jwks.keys.len());
        for (i, jwk) in jwks.keys.iter().enumerate() {
            let key = parse_key(jwk).map_err(|(field, why)| {
                let at = if field.is_empty() {
                    format!("keys[{i}]")
                } else {
                    format!("keys[{i}].{field}")
                };
                (at, why)
            })?;
            keys.push(key);
        }
        Ok(KeySet { keys })
    }

    /// Parse a fetched JWKS document, skipping keys this plugin cannot use (an issuer may
    /// publish encryption keys or new key types next to its signing keys), and, when
    /// `module_only` (no host verifies), the keys only the host could verify with. The
    /// error says why the document as a whole is unusable; a set with no usable key is an
    /// error.
    pub fn lenient(document: &[u8], module_only: bool) -> Result<Lenient, String> {
        // Decoded as the configuration's inline JWKS is: one decoder, one behaviour.
        let jwks: Jwks = wasmgate_glue::json::parse(document)
            .and_then(|json| wasmgate_glue::json::decode(&json))
            .map_err(|e| format!("not a JWKS document: {e}"))?;
        let total = jwks.keys.len();
        let mut keys = Vec::with_capacity(total);
        let mut skipped = 0;
        let mut host_only = Vec::new();
        for (i, jwk) in jwks.keys.iter().enumerate() {
            match parse_key(jwk) {
                Ok(key) => match key.host_only() {
                    Some(alg) if module_only => {
                        skipped += 1;
                        host_only.push(format!(
                            "keys[{i}]{}: {}",
                            kid_note(&key),
                            host_only_reason(alg)
                        ));
                    }
                    _ => keys.push(key),
                },
                Err(_) => skipped += 1,
            }
        }
        if keys.is_empty() {
            let mut why = format!("no usable signing key among {total} keys");
            if let Some(first) = host_only.first() {
                why.push_str(&format!(" ({first})"));
            }
            return Err(why);
        }
        Ok(Lenient {
            set: KeySet { keys },
            skipped,
            host_only,
        })
    }

    /// The first key only the host can verify with (its index and algorithm).
    pub fn first_host_only(&self) -> Option<(usize, Alg)> {
        self.keys
            .iter()
            .enumerate()
            .find_map(|(i, key)| key.host_only().map(|alg| (i, alg)))
    }
}

/// ` (kid "k1")` for a key with an id, nothing without.
fn kid_note(key: &Key) -> String {
    match &key.kid {
        Some(kid) => format!(" (kid \"{kid}\")"),
        None => String::new(),
    }
}

/// A fetched JWKS document, read leniently.
#[derive(Debug)]
pub struct Lenient {
    /// The usable keys.
    pub set: KeySet,
    /// How many keys of the document were left out, for whatever reason.
    pub skipped: usize,
    /// The keys among them left out because only the host could verify with them and no
    /// host does, each as `keys[1] (kid "k"): ES384 needs ...`, for the log.
    pub host_only: Vec<String>,
}

type KeyError = (String, String);

fn err(field: &str, why: impl Into<String>) -> KeyError {
    (field.to_owned(), why.into())
}

fn b64(field: &str, value: Option<&String>) -> Result<Vec<u8>, KeyError> {
    let value = value.ok_or_else(|| err(field, "missing"))?;
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|e| err(field, format!("not unpadded base64url: {e}")))
}

fn parse_key(jwk: &Jwk) -> Result<Key, KeyError> {
    if jwk.d.is_some() {
        return Err(err("d", "private key material must not be in a JWKS"));
    }
    if let Some(use_) = &jwk.use_ {
        if use_ != "sig" {
            return Err(err(
                "use",
                format!("\"{use_}\" is not a signing key (\"sig\")"),
            ));
        }
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|op| op == "verify") {
            return Err(err("key_ops", "does not permit \"verify\""));
        }
    }
    let alg = match &jwk.alg {
        None => None,
        Some(name) => Some(
            Alg::from_name(name)
                .ok_or_else(|| err("alg", format!("unsupported algorithm \"{name}\"")))?,
        ),
    };
    let (material, spki) = match jwk.kty.as_str() {
        "RSA" => rsa_key(jwk).map(|(m, spki)| (m, Some(spki)))?,
        "EC" => ec_key(jwk).map(|(m, spki)| (m, Some(spki)))?,
        "OKP" => (okp_key(jwk)?, None),
        "oct" => {
            let k = b64("k", jwk.k.as_ref())?;
            if k.len() < 32 {
                return Err(err("k", "an HMAC key needs at least 32 bytes"));
            }
            (Material::Hmac(k), None)
        }
        other => return Err(err("kty", format!("unsupported key type \"{other}\""))),
    };
    let key = Key {
        kid: jwk.kid.clone(),
        alg,
        material,
        spki,
    };
    if let Some(alg) = alg {
        if !key.fits(alg) {
            return Err(err(
                "alg",
                format!("{} does not fit a {} key", alg.name(), jwk.kty),
            ));
        }
    }
    Ok(key)
}

// Not inlined into its one caller: V8 compiles every function when the module loads and
// keeps the working memory of the largest, so no function over ~6 KB (bench/module-memory.md).
#[inline(never)]
fn rsa_key(jwk: &Jwk) -> Result<(Material, Vec<u8>), KeyError> {
    let n = BigUint::from_bytes_be(&b64("n", jwk.n.as_ref())?);
    let e = BigUint::from_bytes_be(&b64("e", jwk.e.as_ref())?);
    let bits = n.bits();
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(err(
            "n",
            format!(
                "RSA modulus of {bits} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} bits are accepted"
            ),
        ));
    }
    // From the checked numbers, so leading zeros in the JWK do not reach the DER.
    let spki = der::rsa_spki(&n.to_bytes_be(), &e.to_bytes_be());
    rsa::RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
        .map(|key| (Material::Rsa(key), spki))
        // Named here rather than by the error's Display, which would bring the formatting
        // of every DER and PKCS error the `rsa` crate can wrap into the module.
        .map_err(|e| {
            let why = match e {
                rsa::Error::PublicExponentTooSmall => "public exponent too small",
                rsa::Error::PublicExponentTooLarge => "public exponent too large",
                rsa::Error::ModulusTooLarge => "modulus too large",
                _ => "invalid modulus or exponent",
            };
            err("", format!("invalid RSA key: {why}"))
        })
}

/// An uncompressed SEC1 point `04 || x || y`, with each coordinate of exactly `size` bytes.
fn sec1_point(jwk: &Jwk, size: usize) -> Result<Vec<u8>, KeyError> {
    let x = b64("x", jwk.x.as_ref())?;
    let y = b64("y", jwk.y.as_ref())?;
    if x.len() != size {
        return Err(err("x", format!("expected {size} bytes, got {}", x.len())));
    }
    if y.len() != size {
        return Err(err("y", format!("expected {size} bytes, got {}", y.len())));
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

// Not inlined into its one caller: V8 compiles every function when the module loads and
// keeps the working memory of the largest, so no function over ~6 KB (bench/module-memory.md).
#[inline(never)]
fn ec_key(jwk: &Jwk) -> Result<(Material, Vec<u8>), KeyError> {
    let not_on_curve = |_| err("", "the point is not on the curve");
    let curve = match jwk.crv.as_deref() {
        Some("P-256") => Curve::P256,
        Some("P-384") => Curve::P384,
        Some("P-521") => Curve::P521,
        Some(other) => return Err(err("crv", format!("unsupported curve \"{other}\""))),
        None => return Err(err("crv", "missing")),
    };
    let point = sec1_point(jwk, curve.size())?;
    // The point is checked on the curve here, so the host gets no key the module refuses.
    let material = match curve {
        Curve::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map(Material::P256)
            .map_err(not_on_curve)?,
        #[cfg(feature = "portable")]
        Curve::P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map(Material::P384)
            .map_err(not_on_curve)?,
        #[cfg(feature = "portable")]
        Curve::P521 => p521::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map(|k| Material::P521(Box::new(k)))
            .map_err(not_on_curve)?,
        #[cfg(not(feature = "portable"))]
        Curve::P384 | Curve::P521 => {
            if !der::on_curve(curve, &point[1..]) {
                return Err(err("", "the point is not on the curve"));
            }
            match curve {
                Curve::P384 => Material::P384(HostOnly),
                _ => Material::P521(HostOnly),
            }
        }
    };
    Ok((material, der::ec_spki(curve, &point)))
}

fn okp_key(jwk: &Jwk) -> Result<Material, KeyError> {
    match jwk.crv.as_deref() {
        Some("Ed25519") => {
            let x = b64("x", jwk.x.as_ref())?;
            let bytes: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| err("x", format!("expected 32 bytes, got {}", x.len())))?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map(Material::Ed25519)
                .map_err(|_| err("x", "not an Ed25519 public key"))
        }
        Some(other) => Err(err("crv", format!("unsupported curve \"{other}\""))),
        None => Err(err("crv", "missing")),
    }
}
