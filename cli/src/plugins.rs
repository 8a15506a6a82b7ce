//! The plugins Wasmgate ships: their names, modules, default Istio phase, and their own
//! configuration types, used to validate a pluginConfig and to derive its JSON Schema.

use serde_json::Value;
use wasmgate_glue::{ConfigError, Plugin, Warnings};
use wasmgate_istio::Phase;

use crate::error::{Error, Result};

/// One plugin as the CLI knows it.
#[derive(Debug, Clone, Copy)]
pub struct PluginInfo {
    /// The plugin's name and `root_id`: `jwt-auth`.
    pub name: &'static str,
    /// The module's file stem as Cargo builds it: `jwt_auth` (`jwt_auth.wasm`).
    pub module: &'static str,
    /// Where Istio should run it unless told otherwise.
    pub phase: Option<Phase>,
    /// What the plugin does, for listings.
    pub summary: &'static str,
    validate: fn(&[u8]) -> Result<Warnings, ConfigError>,
    schema: fn() -> Value,
}

impl PluginInfo {
    /// Check a configuration (JSON) the way the plugin's `on_configure` does, with the
    /// plugin's own code; the error names the field, and so do the warnings about what it
    /// accepts but should not say (old spellings), which `on_configure` logs.
    pub fn validate(&self, config: &[u8]) -> Result<Warnings, ConfigError> {
        (self.validate)(config)
    }

    /// The JSON Schema of the plugin's configuration, derived from its config types.
    pub fn schema(&self) -> Value {
        (self.schema)()
    }
}

fn schema<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

/// Every plugin, in the order a chain usually runs them.
pub const PLUGINS: [PluginInfo; 3] = [
    PluginInfo {
        name: "jwt-auth",
        module: "jwt_auth",
        phase: Some(Phase::Authn),
        summary: "verifies JWTs (JWKS inline or fetched) and forwards claims",
        validate: jwt_auth::JwtAuth::validate,
        schema: schema::<jwt_auth::Config>,
    },
    PluginInfo {
        name: "rate-limit",
        module: "rate_limit",
        phase: Some(Phase::Authz),
        summary: "token-bucket rate limits by client, header, path or claim",
        validate: rate_limit::RateLimit::validate,
        schema: schema::<rate_limit::Config>,
    },
    PluginInfo {
        name: "header-rewrite",
        module: "header_rewrite",
        phase: None,
        summary: "sets, adds and removes request and response headers",
        validate: header_rewrite::HeaderRewrite::validate,
        schema: schema::<header_rewrite::Config>,
    },
];

/// The plugin called `name`, or a usage error listing the known ones.
pub fn find(name: &str) -> Result<&'static PluginInfo> {
    PLUGINS.iter().find(|p| p.name == name).ok_or_else(|| {
        Error::usage(format!(
            "unknown plugin {name:?}; known plugins: {}",
            PLUGINS.map(|p| p.name).join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_plugin_lists_the_known_ones() {
        let err = find("jwt").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err
            .to_string()
            .contains("known plugins: jwt-auth, rate-limit, header-rewrite"));
    }

    #[test]
    fn schemas_describe_objects() {
        for plugin in PLUGINS {
            let schema = plugin.schema();
            assert_eq!(schema["type"], "object", "{}: {schema}", plugin.name);
        }
    }

    #[test]
    fn validation_runs_the_plugins_own_checks() {
        let err = find("header-rewrite")
            .unwrap()
            .validate(br#"{"rulez":[]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("rulez"), "{err}");
    }

    #[test]
    fn validation_returns_the_plugins_warnings() {
        let warnings = find("header-rewrite")
            .unwrap()
            .validate(br#"{"rules":[{"match":{"host":{"suffix":".a"}}}]}"#)
            .unwrap();
        let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            ["rules[0].match.host: old spelling: write `hosts: [...]` with this pattern"]
        );
    }
}
