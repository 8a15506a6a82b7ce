//! Request helpers shared by the Wasmgate plugins, one implementation of each:
//!
//! - [`split`] a request target (`:path`) into path and query, [`decode`] percent-encoding,
//!   and read query parameters by their decoded name ([`query_param`], [`query_values`],
//!   [`query_param_bytes`], [`is_param`]);
//! - read cookies of a `cookie` header ([`cookie`], [`cookie_values`], [`cookies`]);
//! - [`StringMatch`], the `exact` / `prefix` / `suffix` / `regex` condition of the plugin
//!   configurations, compiled once into a [`Matcher`], and [`regex`] for the other regexes.
//!
//! Pure functions of plain values: no host calls and no proxy-wasm, so everything here is
//! tested on the build machine.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cookie;
mod matcher;
mod target;

pub use cookie::{cookie, cookie_values, cookies};
pub use matcher::{regex, Matcher, StringMatch};
pub use target::{
    decode, decode_bytes, is_param, query_param, query_param_bytes, query_values, split,
};
