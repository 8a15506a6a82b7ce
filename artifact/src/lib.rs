//! The artifact model Wasmgate's registry, CLI and renderers share: a module's SHA-256
//! [`Digest`] and what [`wasm::inspect`] finds in it (the proxy-wasm ABI version, its exports),
//! and the build step that keeps only the exports a module uses ([`strip::strip_exports`]).
//!
//! ```
//! use wasmgate_artifact::Digest;
//! let digest = Digest::of(b"");
//! assert_eq!(
//!     digest.to_string(),
//!     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
//! );
//! assert_eq!(digest.hex().parse::<Digest>(), Ok(digest));
//! ```

pub mod digest;
pub mod strip;
#[cfg(any(test, feature = "test-module"))]
pub mod test_module;
pub mod wasm;

pub use digest::{Digest, DigestError};
