//! Cold tokens: a stream of distinct valid tokens, one per request and never repeated within
//! `COUNT` requests, so no verified-token cache (jwt-auth's or jwt_authn's) ever hits and
//! every request pays a signature verification. Signed at start with the fixture keys; wrk
//! sends them in turn through a Lua script.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::configs::{AUDIENCE, ISSUER};

/// Tokens per algorithm: far more than any cache measured (100 entries).
pub const COUNT: usize = 10_000;

const RS256_KEY: &str = include_str!("../fixtures/rs256.key.pem");
const ES256_KEY: &str = include_str!("../fixtures/es256.key.pem");

/// Where [`write`] put the scripts.
static DIR: OnceLock<PathBuf> = OnceLock::new();

/// The wrk script sending `alg`'s cold tokens (`"rs256"`, `"es256"`), once [`write`] ran.
pub fn script(alg: &str) -> Option<PathBuf> {
    DIR.get().map(|dir| dir.join(format!("{alg}.lua")))
}

/// Signs a token's signing input.
type Sign = dyn Fn(&[u8]) -> Result<Vec<u8>, String>;

/// `COUNT` tokens like the fixture token of `alg`, each with its own `jti`.
pub fn tokens(alg: &str) -> Result<Vec<String>, String> {
    let header =
        json!({ "alg": alg.to_ascii_uppercase(), "typ": "JWT", "kid": format!("bench-{alg}") });
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let sign: Box<Sign> = match alg {
        "rs256" => {
            use rsa::pkcs8::DecodePrivateKey;
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(RS256_KEY)
                .map_err(|e| format!("fixtures/rs256.key.pem: {e}"))?;
            Box::new(move |input| {
                key.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input))
                    .map_err(|e| format!("RS256 signing: {e}"))
            })
        }
        _ => {
            use p256::ecdsa::signature::Signer;
            use p256::pkcs8::DecodePrivateKey;
            let key = p256::ecdsa::SigningKey::from_pkcs8_pem(ES256_KEY)
                .map_err(|e| format!("fixtures/es256.key.pem: {e}"))?;
            Box::new(move |input| {
                let sig: p256::ecdsa::Signature = key.sign(input);
                Ok(sig.to_bytes().to_vec())
            })
        }
    };
    (0..COUNT)
        .map(|i| {
            let claims = json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": "bench-user",
                "iat": 1_764_000_000u64, "exp": 4_102_444_800u64, "jti": format!("cold-{i}"),
            });
            let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
            let sig = sign(input.as_bytes())?;
            Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
        })
        .collect()
}

/// The wrk script: each request takes the next token, round and round.
fn lua(tokens: &Path) -> String {
    let mut script = String::new();
    let _ = write!(
        script,
        "-- wasmgate-bench: a different token on every request\n\
         local tokens = {{}}\n\
         for line in io.lines({:?}) do tokens[#tokens + 1] = line end\n\
         local n = 0\n\
         request = function()\n  \
           n = n % #tokens + 1\n  \
           return wrk.format(nil, nil, {{ [\"x-debug\"] = \"1\", [\"authorization\"] = \"Bearer \" .. tokens[n] }})\n\
         end\n",
        tokens.display().to_string()
    );
    script
}

/// Sign the cold tokens of both algorithms into `dir`, with their wrk scripts.
pub fn write(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for alg in ["rs256", "es256"] {
        let tokens_file = dir.join(format!("{alg}.tokens"));
        let tokens = tokens(alg)?;
        fs::write(&tokens_file, tokens.join("\n") + "\n")
            .and_then(|()| fs::write(dir.join(format!("{alg}.lua")), lua(&tokens_file)))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = DIR.set(dir.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_reads_the_tokens_file_and_rotates() {
        let script = lua(Path::new("/tmp/x/es256.tokens"));
        assert!(script.contains("io.lines(\"/tmp/x/es256.tokens\")"));
        assert!(script.contains("n = n % #tokens + 1"));
        assert!(script.contains("\"Bearer \" .. tokens[n]"));
    }

    #[test]
    fn the_fixture_keys_load() {
        use rsa::pkcs8::DecodePrivateKey;
        assert!(rsa::RsaPrivateKey::from_pkcs8_pem(RS256_KEY).is_ok());
        assert!(p256::ecdsa::SigningKey::from_pkcs8_pem(ES256_KEY).is_ok());
    }
}
