//! The Wasmgate CLI as a library: every command's work, free of command-line parsing, so
//! that tests and other tools call it directly.
//!
//! Data flows build → package (digest) → push (registry, OCI) → render (Envoy, Istio) with
//! every manifest pinned by sha256:
//!
//! - [`wasmbuild`]: the Wasm build and `wasm-opt`;
//! - [`inspect`], [`package`], [`lock`]: digest, exports and ABI of modules, the lock file;
//! - [`push`] to [`registry`] (a Wasmgate registry) or [`oci`] (any OCI registry);
//! - [`plugins`], [`pluginconfig`]: the plugins and their configurations, validated by the
//!   plugins' own code;
//! - [`render`]: Envoy bootstrap, WasmPlugin, TrafficExtension and EnvoyFilter; [`mesh`]:
//!   the ServiceEntry and DestinationRule their callouts need in a mesh;
//! - [`examples`]: the checked-in generated examples and their staleness check;
//! - [`demo`]: registry, JWKS, upstream and Envoy running the three plugins.

pub mod demo;
pub mod error;
pub mod examples;
pub mod inspect;
pub mod lock;
pub mod mesh;
pub mod oci;
pub mod package;
pub mod pluginconfig;
pub mod plugins;
pub mod push;
pub mod registry;
pub mod render;
pub mod wasmbuild;

pub use error::{Error, Result};
