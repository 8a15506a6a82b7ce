//! The configuration of jwt-auth (shared with the CLI, so a bad `pluginConfig` is refused
//! before it reaches Envoy) and its compiled form, built once in `on_configure`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use wasmgate_glue::{ConfigError, FromJson};
use wasmgate_http::{header_name, parse_duration, Matcher, Methods, Warnings};
pub use wasmgate_http::{Pattern, RequestMatch as RouteMatch, StringMatch};

use crate::claims::{ClaimRules, RequiredClaim};
use crate::jwk::{Jwks, KeySet};

/// The plugin configuration (the `configuration` of the Envoy Wasm filter).
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
// Its decoder stays a function of its own: V8 keeps the working memory of a module's
// largest function (bench/module-memory.md).
#[from_json(inline_never)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Config {
    /// Token issuers by name.
    pub providers: BTreeMap<String, Provider>,
    /// Rules, tried in order; the first whose `match` fits the request decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// What requests that no rule matches require; when absent they pass unchecked.
    #[serde(default)]
    pub default: Option<Requirement>,
    /// Let CORS preflight requests (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) through without a token.
    #[serde(default)]
    pub bypass_cors_preflight: bool,
    /// Longest token accepted, in bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// The `realm` of `WWW-Authenticate` challenges.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// How many verified tokens each worker remembers; 0 turns the cache off.
    #[serde(default = "default_cache_size")]
    pub token_cache_size: usize,
    /// Where RS256/384/512 and ES256/384/512 signatures are verified.
    #[serde(default)]
    pub crypto: CryptoMode,
}

/// Where RS* and ES* signatures are verified (PS*, EdDSA and HS* always in the module).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, FromJson)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum CryptoMode {
    /// By the host when it offers Envoy's `verify_signature` (checked at configure), else
    /// in the module.
    #[default]
    Auto,
    /// By the host; a configuration is refused where the host cannot.
    Host,
    /// In the module (pure Rust), even where the host could.
    Module,
}

fn default_max_token_bytes() -> usize {
    8192
}

fn default_realm() -> String {
    "wasmgate".into()
}

fn default_cache_size() -> usize {
    1024
}

fn default_skew() -> u64 {
    60
}

/// One token issuer: how its tokens are checked, where they are found, what goes upstream.
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
// Its decoder stays a function of its own: V8 keeps the working memory of a module's
// largest function (bench/module-memory.md).
#[from_json(inline_never)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Provider {
    /// Required `iss`; when absent any issuer is accepted.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted audiences: the token's `aud` must name at least one. Empty: not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted `sub` values: `exact`, `prefix`, `suffix` or `regex` (which must match the
    /// whole value).
    #[serde(default)]
    pub subjects: Option<StringMatch>,
    /// Tolerance for `exp` and `nbf`, in seconds.
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    /// Refuse tokens without `exp`.
    #[serde(default)]
    pub require_expiration: bool,
    /// Longest accepted lifetime (`exp - iat`, or `exp - nbf`), e.g. `"3600s"`; implies
    /// `require_expiration`.
    #[serde(default)]
    pub max_lifetime: Option<String>,
    /// The keys, inline (a JWKS object).
    #[serde(default)]
    pub local_jwks: Option<Jwks>,
    /// The keys, fetched from the issuer through an Envoy cluster.
    #[serde(default)]
    pub remote_jwks: Option<RemoteJwks>,
    /// Headers holding the token, with a prefix such as `Bearer `.
    #[serde(default)]
    pub from_headers: Vec<HeaderSource>,
    /// Query parameters holding the token.
    #[serde(default)]
    pub from_params: Vec<String>,
    /// Cookies holding the token.
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Keep the token in the request sent upstream (it is removed otherwise).
    #[serde(default)]
    pub forward: bool,
    /// Send the verified payload (base64url, as in the token) upstream in this header.
    #[serde(default)]
    pub forward_payload_header: Option<String>,
    /// Send claims upstream in headers.
    #[serde(default)]
    pub claim_to_headers: Vec<ClaimToHeader>,
}

/// A header holding a token.
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HeaderSource {
    /// Header name.
    pub name: String,
    /// What comes before the token, matched case-insensitively (`Bearer `).
    #[serde(default)]
    pub value_prefix: Option<String>,
}

/// A claim sent upstream as a header.
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClaimToHeader {
    /// The header to set; any copy the client sent is removed first.
    pub header_name: String,
    /// The claim, with `.` for nested objects (`realm.tier`).
    pub claim_name: String,
}

/// Keys fetched with an HTTP callout.
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RemoteJwks {
    /// `http(s)://host[:port]/path` of the JWKS; host and path go in the request.
    pub uri: String,
    /// The Envoy cluster the request is sent to.
    pub cluster: String,
    /// How long one fetch may take, e.g. `"5s"`; also how long a request waits for keys.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// How long fetched keys are fresh; they are refreshed before that.
    #[serde(default = "default_cache_duration")]
    pub cache_duration: String,
    /// At most one refetch per this interval for tokens with an unknown `kid`.
    #[serde(default = "default_refetch_interval")]
    pub unknown_kid_refetch_interval: String,
}

fn default_timeout() -> String {
    "5s".into()
}

fn default_cache_duration() -> String {
    "600s".into()
}

fn default_refetch_interval() -> String {
    "30s".into()
}

/// One rule.
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
// Its decoder stays a function of its own: V8 keeps the working memory of a module's
// largest function (bench/module-memory.md).
#[from_json(inline_never)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rule {
    /// Which requests this rule is for: `path` and `methods` (see `plugins/MATCHING.md`;
    /// `hosts` and `headers` are refused here). The query string is not part of the path.
    #[serde(default, rename = "match")]
    pub match_: RouteMatch,
    /// What they need; when absent they pass unchecked.
    #[serde(default)]
    pub requires: Option<Requirement>,
    /// Scopes that a verified token must all grant (`scope` or `scp`); 403 otherwise.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Claims that a verified token must all have; 403 otherwise.
    #[serde(default)]
    pub required_claims: Vec<ClaimRequirement>,
}

/// A claim a rule requires: one of its values (a string, or strings in an array) equals
/// one of `exact` or starts with one of `prefix`.
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClaimRequirement {
    /// The claim, with `.` for nested objects.
    pub claim: String,
    /// Accepted values.
    #[serde(default)]
    pub exact: Vec<String>,
    /// Accepted value prefixes.
    #[serde(default)]
    pub prefix: Vec<String>,
}

/// What a request needs (as in jwt_authn's `JwtRequirement`).
#[derive(Debug, Clone, Deserialize, FromJson)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Requirement {
    /// A valid token of this provider.
    ProviderName(String),
    /// At least one of these.
    RequiresAny(Vec<Requirement>),
    /// All of these.
    RequiresAll(Vec<Requirement>),
    /// No token at all is fine, but a token that is there must be valid.
    AllowMissing(Empty),
    /// Always passes; valid tokens are still forwarded as configured.
    AllowMissingOrFailed(Empty),
}

/// An empty object, `{}`.
#[derive(Debug, Clone, Default, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Empty {}

/// Where a provider finds its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A header (lowercase name) and a prefix matched case-insensitively.
    Header {
        /// Lowercase header name.
        name: String,
        /// What comes before the token; empty for the whole value.
        prefix: String,
    },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

/// A remote JWKS, checked.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The Envoy cluster of the callout.
    pub cluster: String,
    /// `:authority` of the callout, from the URI.
    pub authority: String,
    /// `:path` of the callout, from the URI.
    pub path: String,
    /// Callout timeout.
    pub timeout: Duration,
    /// Freshness of fetched keys.
    pub cache_duration: Duration,
    /// Minimum interval between unknown-`kid` refetches.
    pub refetch_interval: Duration,
    /// Prefix of this JWKS's shared-data keys, the same in every worker.
    pub shared_key: String,
}

/// Where a provider's keys come from.
#[derive(Debug, Clone)]
pub enum Keys {
    /// Configured inline.
    Local(KeySet),
    /// Fetched.
    Remote(Remote),
}

/// A provider, checked.
#[derive(Debug, Clone)]
pub struct CompiledProvider {
    /// The provider's name in `providers`.
    pub name: String,
    /// Claim checks.
    pub claims: ClaimRules,
    /// Where the keys come from.
    pub keys: Keys,
    /// Where tokens are looked for, in order.
    pub sources: Vec<Source>,
    /// Keep the token upstream.
    pub forward: bool,
    /// Header for the payload, lowercase.
    pub forward_payload_header: Option<String>,
    /// (header, claim path)
    pub claim_to_headers: Vec<(String, String)>,
}

/// A requirement, with provider names resolved to indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Req {
    /// A valid token of provider `n`.
    Provider(usize),
    /// At least one.
    Any(Vec<Req>),
    /// All.
    All(Vec<Req>),
    /// Only directly inside `Any`, next to the providers it applies to.
    AllowMissing,
    /// Only directly inside `Any`.
    AllowMissingOrFailed,
}

/// A rule, checked.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// Path matcher; `None` matches every path.
    pub path: Option<Matcher>,
    /// Methods; empty matches every method.
    pub methods: Methods,
    /// What matching requests need; `None` lets them through.
    pub requires: Option<Req>,
    /// Scopes one verified token must all grant.
    pub required_scopes: Vec<String>,
    /// Claims one verified token must all have.
    pub required_claims: Vec<RequiredClaim>,
}

impl CompiledRule {
    /// Whether the rule is for `method` `path` (path without its query).
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.methods.matches(Some(method)) && self.path.as_ref().is_none_or(|m| m.matches(path))
    }
}

/// The whole configuration, checked and compiled.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Providers, in name order; requirements refer to them by index.
    pub providers: Vec<CompiledProvider>,
    /// Rules, in order.
    pub rules: Vec<CompiledRule>,
    /// Requirement of unmatched requests.
    pub default: Option<Req>,
    /// Let CORS preflights through.
    pub bypass_cors_preflight: bool,
    /// Longest token accepted.
    pub max_token_bytes: usize,
    /// `WWW-Authenticate` realm.
    pub realm: String,
    /// Verified tokens remembered per worker.
    pub token_cache_size: usize,
    /// Headers this plugin writes upstream: removed from every request first.
    pub output_headers: Vec<String>,
    /// Where RS* and ES* signatures are verified.
    pub crypto: CryptoMode,
    /// Old spellings the configuration still uses, logged at configure.
    pub warnings: Warnings,
}

fn compile_remote(remote: &RemoteJwks) -> Result<Remote, ConfigError> {
    let rest = remote
        .uri
        .strip_prefix("http://")
        .or_else(|| remote.uri.strip_prefix("https://"))
        .ok_or_else(|| ConfigError::new("uri", "must start with http:// or https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) {
        return Err(ConfigError::new("uri", "needs a host"));
    }
    if remote.cluster.is_empty() {
        return Err(ConfigError::new("cluster", "must not be empty"));
    }
    let duration = |field: &str, text: &str| parse_duration(text).map_err(|e| e.at(field));
    Ok(Remote {
        cluster: remote.cluster.clone(),
        authority: authority.to_owned(),
        path: path.to_owned(),
        timeout: duration("timeout", &remote.timeout)?,
        cache_duration: duration("cache_duration", &remote.cache_duration)?,
        refetch_interval: duration(
            "unknown_kid_refetch_interval",
            &remote.unknown_kid_refetch_interval,
        )?,
        shared_key: format!("wasmgate.jwt-auth.jwks.{}.{}", remote.cluster, remote.uri),
    })
}

// Not inlined into its one caller: V8 compiles every function when the module loads and
// keeps the working memory of the largest, so no function over ~6 KB (bench/module-memory.md).
#[inline(never)]
fn compile_provider(name: &str, p: &Provider) -> Result<CompiledProvider, ConfigError> {
    let max_lifetime = match &p.max_lifetime {
        None => None,
        Some(text) => Some(
            parse_duration(text)
                .map_err(|e| e.at("max_lifetime"))?
                .as_secs() as i64,
        ),
    };
    let subjects = match &p.subjects {
        None => None,
        // Reported on `subjects`, the documented field, not `subjects.regex`.
        Some(m) => Some(
            m.compile_whole()
                .map_err(|e| ConfigError::new("subjects", e.reason()))?,
        ),
    };
    let keys = match (&p.local_jwks, &p.remote_jwks) {
        (Some(jwks), None) => Keys::Local(
            KeySet::strict(jwks)
                .map_err(|(field, why)| ConfigError::new(field, why).at("local_jwks"))?,
        ),
        (None, Some(remote)) => {
            Keys::Remote(compile_remote(remote).map_err(|e| e.at("remote_jwks"))?)
        }
        _ => {
            return Err(ConfigError::new(
                "",
                "needs exactly one of local_jwks and remote_jwks",
            ))
        }
    };
    let mut sources = Vec::new();
    for (i, h) in p.from_headers.iter().enumerate() {
        let name =
            header_name(&h.name).map_err(|e| e.at("name").at(&format!("from_headers[{i}]")))?;
        sources.push(Source::Header {
            name,
            prefix: h.value_prefix.clone().unwrap_or_default(),
        });
    }
    for (i, param) in p.from_params.iter().enumerate() {
        if param.is_empty() || param.contains(['&', '=', '?', '#']) {
            return Err(ConfigError::new(
                format!("from_params[{i}]"),
                "not a query parameter name",
            ));
        }
        sources.push(Source::Param(param.clone()));
    }
    for (i, cookie) in p.from_cookies.iter().enumerate() {
        if cookie.is_empty() || cookie.contains([';', '=', ' ', ',']) {
            return Err(ConfigError::new(
                format!("from_cookies[{i}]"),
                "not a cookie name",
            ));
        }
        sources.push(Source::Cookie(cookie.clone()));
    }
    if sources.is_empty() {
        // jwt_authn's default: `Authorization: Bearer <token>` or `?access_token=<token>`.
        sources.push(Source::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        });
        sources.push(Source::Param("access_token".into()));
    }
    let forward_payload_header = match &p.forward_payload_header {
        None => None,
        Some(h) => Some(header_name(h).map_err(|e| e.at("forward_payload_header"))?),
    };
    let mut claim_to_headers = Vec::new();
    for (i, c) in p.claim_to_headers.iter().enumerate() {
        let at = format!("claim_to_headers[{i}]");
        let header = header_name(&c.header_name).map_err(|e| e.at("header_name").at(&at))?;
        if c.claim_name.is_empty() || c.claim_name.split('.').any(str::is_empty) {
            return Err(ConfigError::new("claim_name", "not a claim path like \"a.b\"").at(&at));
        }
        claim_to_headers.push((header, c.claim_name.clone()));
    }
    let mut audiences = p.audiences.clone();
    audiences.retain(|a| !a.is_empty());
    Ok(CompiledProvider {
        name: name.to_owned(),
        claims: ClaimRules {
            issuer: p.issuer.clone(),
            audiences,
            subjects,
            clock_skew_seconds: i64::try_from(p.clock_skew_seconds).unwrap_or(i64::MAX),
            require_expiration: p.require_expiration,
            max_lifetime,
        },
        keys,
        sources,
        forward: p.forward,
        forward_payload_header,
        claim_to_headers,
    })
}

/// Resolve a requirement. `allow_missing` outside `requires_any` means "any provider, or
/// no token at all", as in jwt_authn.
fn compile_req(
    req: &Requirement,
    names: &BTreeMap<String, usize>,
    in_any: bool,
) -> Result<Req, ConfigError> {
    let all_providers = || -> Vec<Req> { (0..names.len()).map(Req::Provider).collect() };
    Ok(match req {
        Requirement::ProviderName(name) => Req::Provider(*names.get(name).ok_or_else(|| {
            ConfigError::new("provider_name", format!("no provider is named \"{name}\""))
        })?),
        Requirement::RequiresAny(list) | Requirement::RequiresAll(list) => {
            let any = matches!(req, Requirement::RequiresAny(_));
            let field = if any { "requires_any" } else { "requires_all" };
            if list.is_empty() {
                return Err(ConfigError::new(field, "needs at least one requirement"));
            }
            let mut out = Vec::with_capacity(list.len());
            for (i, r) in list.iter().enumerate() {
                out.push(compile_req(r, names, any).map_err(|e| e.at(&format!("{field}[{i}]")))?);
            }
            if any {
                Req::Any(out)
            } else {
                Req::All(out)
            }
        }
        Requirement::AllowMissing(_) if in_any => Req::AllowMissing,
        Requirement::AllowMissingOrFailed(_) if in_any => Req::AllowMissingOrFailed,
        Requirement::AllowMissing(_) => Req::Any(
            all_providers()
                .into_iter()
                .chain([Req::AllowMissing])
                .collect(),
        ),
        Requirement::AllowMissingOrFailed(_) => Req::Any(
            all_providers()
                .into_iter()
                .chain([Req::AllowMissingOrFailed])
                .collect(),
        ),
    })
}

// Not inlined into its one caller: V8 compiles every function when the module loads and
// keeps the working memory of the largest, so no function over ~6 KB (bench/module-memory.md).
#[inline(never)]
fn compile_rule(
    rule: &Rule,
    names: &BTreeMap<String, usize>,
    warnings: &mut Warnings,
) -> Result<CompiledRule, ConfigError> {
    let m = &rule.match_;
    // jwt-auth decides on the path and method alone, before reading anything else.
    if !m.hosts.is_empty() || m.host.is_some() {
        return Err(ConfigError::new(
            "match.hosts",
            "jwt-auth rules match on path and methods only; route by host in Envoy (one filter config per virtual host)",
        ));
    }
    if !m.headers.is_empty() {
        return Err(ConfigError::new(
            "match.headers",
            "jwt-auth rules match on path and methods only",
        ));
    }
    let when = warnings
        .within("match", |w| m.compile(w))
        .map_err(|e| e.at("match"))?;
    let requires = match &rule.requires {
        None => None,
        Some(r) => Some(compile_req(r, names, false).map_err(|e| e.at("requires"))?),
    };
    let mut required_claims = Vec::new();
    for (i, c) in rule.required_claims.iter().enumerate() {
        let at = format!("required_claims[{i}]");
        if c.claim.is_empty() || c.claim.split('.').any(str::is_empty) {
            return Err(ConfigError::new("claim", "not a claim path like \"a.b\"").at(&at));
        }
        if c.exact.is_empty() && c.prefix.is_empty() {
            return Err(ConfigError::new("", "needs values in exact or prefix").at(&at));
        }
        required_claims.push(RequiredClaim {
            claim: c.claim.clone(),
            exact: c.exact.clone(),
            prefix: c.prefix.clone(),
        });
    }
    if (!rule.required_scopes.is_empty() || !required_claims.is_empty()) && rule.requires.is_none()
    {
        return Err(ConfigError::new(
            "requires",
            "required_scopes and required_claims need a requirement that verifies a token",
        ));
    }
    if let Some(bad) = rule
        .required_scopes
        .iter()
        .position(|s| s.is_empty() || s.contains(' '))
    {
        return Err(ConfigError::new(
            format!("required_scopes[{bad}]"),
            "a scope is one non-empty word",
        ));
    }
    Ok(CompiledRule {
        path: when.path,
        methods: when.methods,
        requires,
        required_scopes: rule.required_scopes.clone(),
        required_claims,
    })
}

impl Config {
    /// Check every field and compile; the error names the field at fault.
    // Not inlined into its one caller: V8 compiles every function when the module loads and
    // keeps the working memory of the largest, so no function over ~6 KB (bench/module-memory.md).
    #[inline(never)]
    pub fn compile(&self) -> Result<Compiled, ConfigError> {
        if self.providers.is_empty() {
            return Err(ConfigError::new("providers", "needs at least one provider"));
        }
        let mut names = BTreeMap::new();
        let mut providers = Vec::new();
        for (i, (name, p)) in self.providers.iter().enumerate() {
            if name.is_empty() {
                return Err(ConfigError::new(
                    "providers",
                    "a provider name must not be empty",
                ));
            }
            names.insert(name.clone(), i);
            providers
                .push(compile_provider(name, p).map_err(|e| e.at(&format!("providers.{name}")))?);
        }
        let mut rules = Vec::new();
        let mut warnings = Warnings::default();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let compiled = warnings.within(&at, |w| compile_rule(rule, &names, w));
            rules.push(compiled.map_err(|e| e.at(&at))?);
        }
        let default = match &self.default {
            None => None,
            Some(r) => Some(compile_req(r, &names, false).map_err(|e| e.at("default"))?),
        };
        if self.max_token_bytes < 16 {
            return Err(ConfigError::new("max_token_bytes", "must be at least 16"));
        }
        if self.realm.contains(['"', '\\']) || self.realm.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "realm",
                "must not contain quotes, backslashes or control characters",
            ));
        }
        let mut seen = HashSet::new();
        let mut output_headers = Vec::new();
        for p in &providers {
            let outputs = p
                .forward_payload_header
                .iter()
                .chain(p.claim_to_headers.iter().map(|(h, _)| h));
            for header in outputs {
                if seen.insert(header.clone()) {
                    output_headers.push(header.clone());
                }
            }
        }
        for p in &providers {
            for source in &p.sources {
                if let Source::Header { name, .. } = source {
                    if seen.contains(name) {
                        return Err(ConfigError::new(
                            format!("providers.{}.from_headers", p.name),
                            format!("\"{name}\" is also an output header of this plugin"),
                        ));
                    }
                }
            }
        }
        Ok(Compiled {
            providers,
            rules,
            default,
            bypass_cors_preflight: self.bypass_cors_preflight,
            max_token_bytes: self.max_token_bytes,
            realm: self.realm.clone(),
            token_cache_size: self.token_cache_size,
            output_headers,
            crypto: self.crypto,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate_glue::parse_json;

    fn compile(rules: &str) -> Compiled {
        let json = format!(
            r#"{{"providers": {{"main": {{"remote_jwks": {{"uri": "https://a/", "cluster": "c"}}}}}}, "rules": {rules}}}"#
        );
        parse_json::<Config>(json.as_bytes())
            .and_then(|c| c.compile())
            .unwrap_or_else(|e| panic!("{rules}: {e}"))
    }

    fn warnings(compiled: &Compiled) -> Vec<String> {
        compiled.warnings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn match_path_is_the_shared_pattern() {
        let c = compile(
            r#"[{"match": {"path": {"prefix": "/api/"}, "methods": ["GET"]}},
                {"match": {"path": "/exact"}},
                {"match": {"path": {"regex": "^/v[0-9]+/"}}}]"#,
        );
        assert!(warnings(&c).is_empty(), "{:?}", warnings(&c));
        assert!(c.rules[0].matches("GET", "/api/x"));
        assert!(!c.rules[0].matches("POST", "/api/x"));
        assert!(
            !c.rules[0].matches("get", "/api/x"),
            "methods are case-sensitive"
        );
        assert!(c.rules[1].matches("GET", "/exact"));
        assert!(!c.rules[1].matches("GET", "/exact/no"));
        assert!(c.rules[2].matches("GET", "/v2/x"));
    }

    #[test]
    fn old_spellings_still_work_and_are_warned_about() {
        let c = compile(
            r#"[{"match": {"prefix": "/public"}}, {"match": {"regex": "/v[0-9]+", "methods": ["post"]}}]"#,
        );
        assert!(c.rules[0].matches("GET", "/public/a"));
        assert!(c.rules[1].matches("POST", "/v1"));
        assert!(
            !c.rules[1].matches("POST", "/x/v1"),
            "the old regex matches the whole path"
        );
        let warnings = warnings(&c);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].starts_with("rules[0].match.prefix: old spelling"));
        assert!(warnings[1].starts_with("rules[1].match.regex: old spelling"));
        assert!(warnings[2].starts_with("rules[1].match.methods[0]: \"post\" is read as \"POST\""));
    }

    #[test]
    fn durations_take_days_like_everywhere_else() {
        let json = r#"{"providers": {"main": {"max_lifetime": "1d",
            "remote_jwks": {"uri": "https://a/jwks", "cluster": "c", "cache_duration": "1d"}}}}"#;
        let c = parse_json::<Config>(json.as_bytes())
            .and_then(|c| c.compile())
            .unwrap();
        assert_eq!(c.providers[0].claims.max_lifetime, Some(86_400));
        match &c.providers[0].keys {
            Keys::Remote(remote) => assert_eq!(remote.cache_duration, Duration::from_secs(86_400)),
            Keys::Local(_) => panic!("remote keys expected"),
        }
    }
}
