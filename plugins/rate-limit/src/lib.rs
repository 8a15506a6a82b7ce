//! rate-limit: skeleton, replaced by its issue's work.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use wasmgate_glue::{parse_json, ConfigError, Host, HttpFilter, Plugin};

/// The plugin's configuration.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// The plugin's root.
#[derive(Debug)]
pub struct RateLimit;

/// One stream's filter.
#[derive(Debug)]
pub struct RateLimitFilter;

impl HttpFilter for RateLimitFilter {}

impl Plugin for RateLimit {
    const NAME: &'static str = "rate-limit";
    type Filter = RateLimitFilter;

    fn configure(config: &[u8], _host: &mut dyn Host) -> Result<Self, ConfigError> {
        parse_json::<Config>(config)?;
        Ok(RateLimit)
    }

    fn create_filter(&self, _context_id: u32) -> RateLimitFilter {
        RateLimitFilter
    }
}

#[cfg(feature = "export")]
wasmgate_glue::export!(RateLimit);
