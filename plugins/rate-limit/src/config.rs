//! The configuration of rate-limit as users write it, shared with the CLI so that a bad
//! `pluginConfig` is refused before it reaches Envoy. The `rules` module checks and
//! compiles it once, in `on_configure`. Conditions (`match`) and `client_ip` are the
//! vocabulary every plugin shares (`wasmgate_http`, `plugins/MATCHING.md`).

use serde::Deserialize;
use wasmgate_glue::FromJson;
pub use wasmgate_http::{ClientIp, HeaderMatch, Pattern, RequestMatch as Match, StringMatch};

/// The plugin configuration (the `configuration` of the Envoy Wasm filter).
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
// Its decoder stays a function of its own: V8 keeps the working memory of a module's
// largest function (bench/module-memory.md).
#[from_json(inline_never)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Config {
    /// Where the rules' limits are kept unless a rule says otherwise: `local` (default, this
    /// Envoy's shared data) or `global` (a rate limit service shared by every Envoy).
    #[serde(default)]
    pub mode: Mode,
    /// Namespace of this filter's buckets and stats, so that two filters in one VM keep
    /// their own buckets; the rate limit service's domain for global rules (required then).
    /// `[A-Za-z0-9_-]`, `default` unless set.
    #[serde(default)]
    pub domain: Option<String>,
    /// The rate limit service that global rules ask (Envoy's RLS gRPC API).
    #[serde(default)]
    pub rate_limit_service: Option<RateLimitService>,
    /// The limits. A request must be allowed by every rule that matches it.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// How the `client_ip` key part finds the client.
    #[serde(default)]
    pub client_ip: ClientIp,
    /// The answer to a refused request.
    #[serde(default)]
    pub response: Response,
    /// How often idle keys are collected, a duration (`"1s"`, `"500ms"`). `1s` unless set.
    #[serde(default)]
    pub cleanup_interval: Option<String>,
}

/// Where a rule's limit is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, FromJson)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Mode {
    /// In this Envoy's proxy-wasm shared data: one limit for all of its workers.
    #[default]
    Local,
    /// In a rate limit service (`envoy.service.ratelimit.v3.RateLimitService`), asked over
    /// gRPC: one limit for every Envoy that asks it.
    Global,
}

/// The rate limit service global rules ask.
#[derive(Debug, Clone, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RateLimitService {
    /// The Envoy cluster of the service; it must speak HTTP/2 (gRPC).
    pub cluster: String,
    /// How long one call may take, `"100ms"` unless set; a call that takes longer has
    /// failed, and the rule's `failure_mode` decides.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// The answer to a refused request.
#[derive(Debug, Clone, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Response {
    /// HTTP status, 429 unless set.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Body, `rate limited\n` unless set.
    #[serde(default = "default_body")]
    pub body: String,
    /// Extra headers on the refusal.
    #[serde(default)]
    pub headers: Vec<HeaderValue>,
    /// When to send `x-ratelimit-limit`, `-remaining` and `-reset`: `never`, `refused`
    /// (default) or `always` (on allowed responses too).
    #[serde(default)]
    pub rate_limit_headers: RateLimitHeaders,
    /// When set, a response this header is added to a response whose request a shadow rule
    /// would have refused; its value lists those rules.
    #[serde(default)]
    pub shadow_header: Option<String>,
}

impl Default for Response {
    fn default() -> Self {
        Response {
            status: default_status(),
            body: default_body(),
            headers: Vec::new(),
            rate_limit_headers: RateLimitHeaders::default(),
            shadow_header: None,
        }
    }
}

fn default_status() -> u16 {
    429
}

fn default_body() -> String {
    "rate limited\n".to_owned()
}

/// A header name and value.
#[derive(Debug, Clone, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HeaderValue {
    pub name: String,
    pub value: String,
}

/// When the `x-ratelimit-*` headers are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, FromJson)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum RateLimitHeaders {
    Never,
    #[default]
    Refused,
    Always,
}

/// One limit: which requests it counts, under which key, and how many it allows.
#[derive(Debug, Clone, Deserialize, FromJson)]
// Its decoder stays a function of its own: V8 keeps the working memory of a module's
// largest function (bench/module-memory.md).
#[from_json(inline_never)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rule {
    /// Names the rule's stats and buckets: `[A-Za-z0-9_-]`, unique. `rule_<index>` unless set.
    #[serde(default)]
    pub name: Option<String>,
    /// Which requests the rule counts (`path`, `methods`, `hosts`, `headers`; see
    /// `plugins/MATCHING.md`); every condition must hold. All requests unless set.
    #[serde(default, rename = "match")]
    pub matches: Match,
    /// What a bucket belongs to: a list of parts, all of which make the key. Empty or unset:
    /// one bucket for every request the rule matches (a fixed, global key).
    #[serde(default)]
    pub key: Vec<KeyPart>,
    /// What to do with a request that lacks a key part: `skip` the rule (default) or count
    /// it in one `shared` bucket with every other such request.
    #[serde(default)]
    pub missing_key: MissingKey,
    /// `local` or `global`; the top-level `mode` unless set.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// How many requests the rule allows. Required for a local rule; on a global rule
    /// (whose limit is the service's), an optional local bucket asked before the service.
    #[serde(default)]
    pub limit: Option<LimitConfig>,
    /// Tokens one request takes, 1 unless set; at most the bucket's capacity.
    #[serde(default = "default_cost")]
    pub cost: u32,
    /// Count and report refusals, but let the request through.
    #[serde(default)]
    pub shadow: bool,
    /// When the shared data cannot be read or updated, or the rate limit service cannot
    /// answer: `allow` (default) or `deny`.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Most keys with a bucket of their own at once, 10000 unless set; see the README for
    /// what happens to a new key when they are all in use.
    #[serde(default = "default_max_keys")]
    pub max_keys: u32,
}

fn default_cost() -> u32 {
    1
}

fn default_max_keys() -> u32 {
    10_000
}

/// One part of a key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, FromJson)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum KeyPart {
    /// The client's IP address (see `client_ip`).
    ClientIp,
    /// The path without its query.
    Path,
    /// The method.
    Method,
    /// The host, lowercased, without its port.
    Host,
    /// The value of this request header.
    Header(String),
    /// The value of this query parameter, percent-decoded.
    Query(String),
    /// The value of this cookie.
    Cookie(String),
}

/// What to do with a request lacking a key part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, FromJson)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum MissingKey {
    /// The rule does not apply to the request.
    #[default]
    Skip,
    /// Count the request in one bucket shared by every request lacking the key.
    Shared,
}

/// What happens when the shared data fails (or compare-and-swap keeps losing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, FromJson)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum FailureMode {
    /// Let the request through.
    #[default]
    Allow,
    /// Refuse it.
    Deny,
}

/// A limit: either `requests_per_unit` and `unit`, or a token bucket (`max_tokens`,
/// `tokens_per_fill`, `fill_interval`).
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LimitConfig {
    /// Requests allowed per `unit`; all of them come back when the unit has passed since
    /// the first request of the unit.
    #[serde(default)]
    pub requests_per_unit: Option<u32>,
    #[serde(default)]
    pub unit: Option<Unit>,
    /// The bucket's capacity (the largest burst).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Tokens added each `fill_interval`; `max_tokens` unless set.
    #[serde(default)]
    pub tokens_per_fill: Option<u32>,
    /// Time between fills, a duration: `"100ms"`, `"1s"`, `"5m"`, `"1h"`, `"1d"`.
    #[serde(default)]
    pub fill_interval: Option<String>,
}

/// The unit of `requests_per_unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, FromJson)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    pub(crate) fn nanos(self) -> u64 {
        crate::rules::NANOS_PER_SEC
            * match self {
                Unit::Second => 1,
                Unit::Minute => 60,
                Unit::Hour => 3_600,
                Unit::Day => 86_400,
            }
    }
}
