//! rate-limit: token buckets in proxy-wasm shared data, so one limit holds for every
//! worker of an Envoy, keyed by anything a request carries.
//!
//! - [`bucket`]: the bucket math, pure functions of a bucket and the time, and the
//!   29-byte form a bucket takes in shared data;
//! - [`config`]: the configuration as users write it; [`rules`]: checked and compiled once;
//! - `store`: a rule's fixed table of buckets in shared data, updated with compare-and-swap;
//! - `global`: rules kept by a rate limit service (Envoy's RLS gRPC API): its messages, and
//!   its `OVER_LIMIT` verdicts remembered in shared data;
//! - `shared`: what the root and the streams share (rules with their tables, stats, seed);
//! - `key`: which rules apply to a request and the key it counts under, read through
//!   [`wasmgate_http::HeaderView`];
//! - `decision`: a request's decision across its rules, and the reply or response headers;
//! - `filter`: the plugin and the per-stream filter, through the [`wasmgate_glue::Host`] trait.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bucket;
pub mod config;
mod decision;
mod filter;
mod global;
mod key;
pub mod rules;
mod shared;
mod store;

pub use config::Config;
pub use filter::{RateLimit, RateLimitFilter};
