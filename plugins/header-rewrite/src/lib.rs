//! header-rewrite: change request and response headers by rule.
//!
//! The logic lives in [`config`] (what a rule is, checked and compiled once) and [`filter`]
//! (applying compiled rules to a stream through the [`wasmgate_glue::Host`] trait).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod config;
mod filter;

pub use config::Config;
pub use filter::{HeaderRewrite, HeaderRewriteFilter};

#[cfg(feature = "export")]
wasmgate_glue::export!(HeaderRewrite);
