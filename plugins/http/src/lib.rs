//! Request helpers and the request-and-config vocabulary shared by the Wasmgate plugins, one
//! implementation of each (users' documentation: `plugins/MATCHING.md`):
//!
//! - [`split`] a request target (`:path`) into path and query, [`decode`] percent-encoding,
//!   and read query parameters by their decoded name ([`query_param`], [`query_values`],
//!   [`query_param_bytes`], [`is_param`]);
//! - read cookies of a `cookie` header ([`cookie`], [`cookie_values`], [`cookies`]);
//! - [`StringMatch`], the `exact` / `prefix` / `suffix` / `regex` condition of the plugin
//!   configurations, compiled once into a [`Matcher`], [`Pattern`] (the same or a bare
//!   string) and [`regex`] for the other regexes;
//! - [`RequestMatch`], the `match` of every plugin's rules (path, [`Methods`], hosts,
//!   [`HeaderMatch`]), compiled into a [`CompiledMatch`];
//! - [`parse_duration`], [`header_name`] and [`check_header_value`] for configured values;
//! - [`strip_port`] and [`ClientIp`] (the client behind trusted proxies);
//! - [`Warnings`] about old spellings a configuration may still use;
//! - [`HeaderView`], a request's (or response's) headers read from the host at most once.
//!
//! Pure functions of plain values, but for [`HeaderView`], which reads through the
//! [`wasmgate_glue::Host`] trait: no proxy-wasm, so everything here is tested on the build
//! machine.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod address;
mod conditions;
mod cookie;
mod duration;
mod header;
mod matcher;
mod request;
mod target;

pub use address::{strip_port, xff_hop_from_right, ClientIp};
pub use conditions::{
    request_host, CompiledMatch, HeaderCondition, HeaderMatch, HeaderTest, Methods, Pattern,
    RequestMatch,
};
pub use cookie::{cookie, cookie_values, cookies};
pub use duration::{parse_duration, parse_duration_ns};
pub use header::{
    breaks_header, check_header_value, check_token, header_name, is_token_char, request_header_name,
};
pub use matcher::{regex, Matcher, StringMatch};
pub use request::HeaderView;
pub use target::{
    decode, decode_bytes, is_param, query_param, query_param_bytes, query_values, split,
};
/// Defined in the glue, whose [`wasmgate_glue::Plugin::validate`] returns them.
pub use wasmgate_glue::Warnings;
