//! header-rewrite: change request and response headers, the path and the query by rule.
//!
//! The logic lives in [`config`] (what a rule is), `rules` (checking and compiling it once),
//! `template` and `url` (pure helpers), and `filter` (applying compiled rules to a stream
//! through the [`wasmgate_glue::Host`] trait). Splitting and decoding the path and query,
//! and the string matchers, are [`wasmgate_http`]'s.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod config;
mod filter;
mod rules;
mod template;
mod url;

pub use config::Config;
pub use filter::{HeaderRewrite, HeaderRewriteFilter};
