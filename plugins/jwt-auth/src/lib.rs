//! jwt-auth: JWT verification for Envoy, on par with `envoy.filters.http.jwt_authn`.
//!
//! - [`token`]: strict compact-JWS parsing (RFC 8725) and signature checks;
//! - [`jwk`]: JWKS parsing into checked keys, with their DER form for the host ([`der`]);
//! - [`hostcrypto`]: RS* and ES* verified by Envoy (`verify_signature`) when it offers it;
//! - [`claims`]: `exp`/`nbf`/`iss`/`aud`/`sub` checks, required claims and scopes;
//! - [`config`]: the configuration and its compiled form;
//! - [`remote`]: remote JWKS shared by all workers through proxy-wasm shared data;
//! - `keys`: what the root and the streams share: each provider's keys, counters, where
//!   signatures are verified;
//! - `eval`: one request's evaluation: token sources, the verified-token [`cache`], requirements;
//! - `filter`: the plugin root and the stream filter: rules, forwarding, responses.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cache;
pub mod claims;
pub mod config;
pub mod der;
mod eval;
mod filter;
pub mod hostcrypto;
pub mod jwk;
mod keys;
pub mod remote;
pub mod token;

#[cfg(test)]
mod crypto_flow_tests;
#[cfg(test)]
mod fake_crypto;
#[cfg(test)]
mod flow_tests;
#[cfg(test)]
#[path = "../tests/support/mint.rs"]
mod mint;
#[cfg(test)]
mod speed_tests;
#[cfg(test)]
mod tests;

pub use config::Config;
pub use filter::{JwtAuth, JwtAuthFilter};
