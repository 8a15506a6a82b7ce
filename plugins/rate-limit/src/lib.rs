//! rate-limit: token buckets in proxy-wasm shared data, so one limit holds for every
//! worker of an Envoy, keyed by anything a request carries.
//!
//! - [`bucket`]: the bucket math, pure functions of a bucket and the time, and the
//!   29-byte form a bucket takes in shared data;
//! - [`config`]: what a rule is, checked and compiled once;
//! - [`request`]: what rules read from a request, fetched once;
//! - `store`: a rule's fixed table of buckets in shared data, updated with compare-and-swap;
//! - `global`: rules kept by a rate limit service (Envoy's RLS gRPC API): its messages, and
//!   its `OVER_LIMIT` verdicts remembered in shared data;
//! - `filter`: the plugin and the per-stream filter, through the [`wasmgate_glue::Host`] trait.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bucket;
pub mod config;
mod filter;
mod global;
pub mod request;
mod store;

pub use config::Config;
pub use filter::{RateLimit, RateLimitFilter};
