//! Wasmgate's plugin foundation.
//!
//! - [`Host`]: what a plugin may ask of the proxy, as plain Rust values.
//! - [`Plugin`] and [`HttpFilter`]: what a plugin implements.
//! - [`Counter`]: an Envoy counter counted in the VM and handed to Envoy on the root's tick.
//! - [`cas::update`]: the bounded compare-and-swap retry loop over shared data.
//! - `FakeProxy` and `FakeHost` (feature `fake`): an in-memory proxy for native tests, never
//!   built into a module or the CLI.
//! - [`proxy`]: the proxy-wasm glue, the only code that names `proxy_wasm`, and [`export!`],
//!   which turns a crate into a module hosting one or several plugins.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

// `#[derive(FromJson)]` names `::wasmgate_glue`, also in this crate's own tests.
extern crate self as wasmgate_glue;

pub mod cas;
mod counter;
mod detached;
#[cfg(any(test, feature = "fake"))]
mod fake;
mod host;
pub mod json;
mod plugin;
pub mod proxy;

pub use counter::Counter;
#[cfg(any(test, feature = "fake"))]
pub use fake::{FakeHost, FakeProxy, ForeignFunction, ProxyState, RecordedCall, RecordedGrpcCall};
pub use host::{
    GrpcCall, Headers, Host, HostError, HttpCall, LocalReply, LogLevel, MetricId, MetricKind,
};
pub use json::FromJson;
pub use plugin::{
    check_duplicate_keys, check_duplicate_keys_with, parse_json, Action, Callbacks, ConfigError,
    HttpFilter, Plugin, Warnings,
};
/// `#[derive(FromJson)]`: see [`json`].
pub use wasmgate_glue_derive::FromJson;
