//! The configuration of header-rewrite, shared with the CLI so that a bad `pluginConfig`
//! is refused before it reaches Envoy. The `rules` module checks and compiles it.

use serde::Deserialize;
use wasmgate_glue::FromJson;
pub use wasmgate_http::{ClientIp, HeaderMatch, Pattern, RequestMatch as Match, StringMatch};

/// The plugin configuration (the `configuration` of the Envoy Wasm filter).
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rules, applied in order; each sees the changes of the rules before it.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// When to ask Envoy to pick the route again after the request changed:
    /// `on_routing_change` (default: the path, query, host or method changed),
    /// `on_any_change` (also any other header: for routes that match on headers) or `never`.
    #[serde(default)]
    pub clear_route_cache: ClearRouteCache,
    /// How `${client_ip}` finds the client: `xff_hop` trusted proxies in front of Envoy, as in
    /// rate-limit (see `plugins/MATCHING.md`).
    #[serde(default)]
    pub client_ip: ClientIp,
}

/// When the route cache is cleared after the request changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, FromJson)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClearRouteCache {
    /// When the path, query, host or method changed.
    #[default]
    OnRoutingChange,
    /// When anything in the request headers changed.
    OnAnyChange,
    /// Never: the request keeps the route chosen before this filter ran.
    Never,
}

/// One rule: conditions on the request, then operations on the request and on its response.
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
// Its decoder stays a function of its own, out of `configure` (bench/module-memory.md).
#[from_json(inline_never)]
pub struct Rule {
    /// A name for logs and for the counter `header_rewrite.rule.<name>.matched`
    /// (letters, digits, `_` and `-`).
    #[serde(default)]
    pub name: Option<String>,
    /// Conditions on the request (`path`, `methods`, `hosts`, `headers`; see
    /// `plugins/MATCHING.md`); all must hold. No conditions: the rule always applies. A
    /// `path` regex provides `${1}`, `${2}`… to templates.
    #[serde(default, rename = "match")]
    pub when: Match,
    /// When a template variable has no value: `skip` the operation (default) or use `empty`.
    #[serde(default)]
    pub on_missing_variable: OnMissing,
    /// Let this rule change protected headers: pseudo-headers, `host`, `content-length`,
    /// `transfer-encoding` and `x-envoy-*`.
    #[serde(default)]
    pub allow_protected_headers: bool,
    /// Operations on the request, in order, before it goes upstream.
    #[serde(default)]
    pub request: Vec<Operation>,
    /// Operations on the response, in order, before it goes downstream. They run when the
    /// rule matched the request.
    #[serde(default)]
    pub response: Vec<Operation>,
}

/// What a rule does when a template variable has no value in the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, FromJson)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// Skip the operation, so no half-filled value is ever written.
    #[default]
    Skip,
    /// Use the empty string for the variable.
    Empty,
}

/// One operation. `value` and `replacement` are templates (see the README).
#[derive(Debug, Clone, Deserialize, FromJson)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    /// Set `name` to `value`, replacing any values it had, adding it when absent.
    Set { name: String, value: String },
    /// Add one more `name: value`, keeping the values already there.
    Append { name: String, value: String },
    /// Set `name` to `value` only when the header is absent.
    AddIfAbsent { name: String, value: String },
    /// Set `name` to `value` only when the header is present.
    OverwriteIfExists { name: String, value: String },
    /// Remove headers: give exactly one of `name`, `prefix` or `regex` (on the lowercased name).
    Remove {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        prefix: Option<String>,
        #[serde(default)]
        regex: Option<String>,
    },
    /// Move every value of `from` to `to` (replacing `to`); nothing when `from` is absent.
    Rename { from: String, to: String },
    /// Copy every value of `from` to `to` (replacing `to`); nothing when `from` is absent.
    Copy { from: String, to: String },
    /// Request only: replace every match of `regex` in the path (not the query) with
    /// `replacement`, where `${1}`… are this regex's capture groups.
    RewritePath { regex: String, replacement: String },
    /// Request only: set query parameter `name` to `value` (replacing all of that name).
    SetQueryParam { name: String, value: String },
    /// Request only: add one more query parameter `name=value`.
    AddQueryParam { name: String, value: String },
    /// Request only: remove every query parameter `name`.
    RemoveQueryParam { name: String },
}

#[cfg(all(test, feature = "schema"))]
mod tests {
    use super::*;

    #[test]
    fn the_schema_names_every_operation() {
        let schema = serde_json::to_string(&schemars::schema_for!(Config)).unwrap();
        for op in [
            "set",
            "append",
            "add_if_absent",
            "overwrite_if_exists",
            "remove",
            "rename",
            "copy",
            "rewrite_path",
            "set_query_param",
            "add_query_param",
            "remove_query_param",
            "on_routing_change",
            "allow_protected_headers",
            "on_missing_variable",
        ] {
            assert!(
                schema.contains(&format!("\"{op}\"")),
                "{op} missing from {schema}"
            );
        }
    }
}
