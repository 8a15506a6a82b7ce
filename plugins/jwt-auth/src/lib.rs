//! jwt-auth: skeleton, replaced by its issue's work.
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
pub struct JwtAuth;

/// One stream's filter.
#[derive(Debug)]
pub struct JwtAuthFilter;

impl HttpFilter for JwtAuthFilter {}

impl Plugin for JwtAuth {
    const NAME: &'static str = "jwt-auth";
    type Filter = JwtAuthFilter;

    fn configure(config: &[u8], _host: &mut dyn Host) -> Result<Self, ConfigError> {
        parse_json::<Config>(config)?;
        Ok(JwtAuth)
    }

    fn create_filter(&self, _context_id: u32) -> JwtAuthFilter {
        JwtAuthFilter
    }
}

#[cfg(feature = "export")]
wasmgate_glue::export!(JwtAuth);
