//! rate-limit's configuration checked and compiled once, in `on_configure`: every field
//! checked (the error names it), limits turned into buckets, conditions compiled by
//! `wasmgate_http`.

use wasmgate_glue::ConfigError;
use wasmgate_http::{
    check_header_value, header_name, parse_duration_ns, ClientIp, CompiledMatch, Warnings,
};

use crate::bucket::Limit;
use crate::config::{
    Config, FailureMode, KeyPart, LimitConfig, MissingKey, Mode, RateLimitHeaders,
    RateLimitService, Response, Rule,
};

/// Most slots a rule may have: each costs Envoy about 150 bytes of shared data.
pub const MAX_KEYS_LIMIT: u32 = 1_000_000;
pub(crate) const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A configuration checked and compiled once.
#[derive(Debug)]
pub struct Compiled {
    pub domain: String,
    /// Set when a rule is global.
    pub service: Option<CompiledService>,
    pub rules: Vec<CompiledRule>,
    /// How the `client_ip` key part finds the client.
    pub client_ip: ClientIp,
    pub response: CompiledResponse,
    pub cleanup_interval_ns: u64,
    /// Old spellings the configuration still uses, logged at configure.
    pub warnings: Warnings,
}

/// The rate limit service, checked.
#[derive(Debug)]
pub struct CompiledService {
    pub cluster: String,
    pub timeout_ms: u64,
}

/// Longest call timeout: a request waits that long at most before `failure_mode` decides.
const MAX_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_TIMEOUT_MS: u64 = 100;

/// The refusal, checked.
#[derive(Debug)]
pub struct CompiledResponse {
    pub status: u32,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub rate_limit_headers: RateLimitHeaders,
    pub shadow_header: Option<String>,
}

/// A rule, checked and compiled.
#[derive(Debug)]
pub struct CompiledRule {
    pub name: String,
    /// The rule's `match`.
    pub when: CompiledMatch,
    /// Lowercased header names.
    pub key: Vec<KeyPart>,
    pub missing_key: MissingKey,
    /// The local bucket: always there for a local rule, optional for a global one.
    pub limit: Option<Limit>,
    /// Asks the rate limit service.
    pub global: bool,
    pub cost: u32,
    pub shadow: bool,
    pub failure_mode: FailureMode,
    /// Slots of the rule's table: `max_keys`, or 1 for a rule with a global key.
    pub slots: u32,
}

impl Config {
    /// Check every field and compile; the error names the field at fault.
    // Not inlined into its one caller: V8 compiles every function when the module loads and
    // keeps the working memory of the largest, so no function over ~6 KB (bench/module-memory.md).
    #[inline(never)]
    pub fn compile(&self) -> Result<Compiled, ConfigError> {
        let domain = match &self.domain {
            Some(domain) => identifier(domain).map_err(|e| e.at("domain"))?,
            None => "default".to_owned(),
        };
        let service = self
            .rate_limit_service
            .as_ref()
            .map(|s| s.compile().map_err(|e| e.at("rate_limit_service")))
            .transpose()?;
        let mut rules: Vec<CompiledRule> = Vec::with_capacity(self.rules.len());
        let mut warnings = Warnings::default();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let compiled = warnings.within(&at, |w| rule.compile(i, self.mode, w));
            let compiled = compiled.map_err(|e| e.at(&at))?;
            if compiled.global {
                let why = format!("required: {at} is global");
                if service.is_none() {
                    return Err(ConfigError::new(
                        "rate_limit_service",
                        format!(
                            "{why} (set `cluster`, the Envoy cluster of the rate limit service)"
                        ),
                    ));
                }
                if self.domain.is_none() {
                    return Err(ConfigError::new(
                        "domain",
                        format!("{why} (the rate limit service's domain, as in its limits file)"),
                    ));
                }
            }
            if rules.iter().any(|r| r.name == compiled.name) {
                return Err(ConfigError::new(
                    "name",
                    format!("another rule is already named {:?}", compiled.name),
                )
                .at(&at));
            }
            rules.push(compiled);
        }
        let cleanup_interval_ns = match &self.cleanup_interval {
            Some(text) => duration(text).map_err(|e| e.at("cleanup_interval"))?,
            None => NANOS_PER_SEC,
        };
        Ok(Compiled {
            domain,
            service,
            rules,
            client_ip: self.client_ip,
            response: self.response.compile().map_err(|e| e.at("response"))?,
            cleanup_interval_ns,
            warnings,
        })
    }
}

impl RateLimitService {
    fn compile(&self) -> Result<CompiledService, ConfigError> {
        let cluster = &self.cluster;
        if cluster.is_empty()
            || cluster.len() > 255
            || cluster.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::new(
                "cluster",
                format!(
                    "{cluster:?} is not an Envoy cluster name (1 to 255 characters, no spaces)"
                ),
            ));
        }
        let timeout_ms = match &self.timeout {
            Some(text) => {
                let ms = duration(text).map_err(|e| e.at("timeout"))? / 1_000_000;
                if !(1..=MAX_TIMEOUT_MS).contains(&ms) {
                    return Err(ConfigError::new(
                        "timeout",
                        format!("{text:?} is not from 1ms to 60s"),
                    ));
                }
                ms
            }
            None => DEFAULT_TIMEOUT_MS,
        };
        Ok(CompiledService {
            cluster: cluster.clone(),
            timeout_ms,
        })
    }
}

impl Response {
    fn compile(&self) -> Result<CompiledResponse, ConfigError> {
        if !(200..=599).contains(&self.status) {
            return Err(ConfigError::new(
                "status",
                format!("{} is not an HTTP status from 200 to 599", self.status),
            ));
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for (i, header) in self.headers.iter().enumerate() {
            let at = format!("headers[{i}]");
            let name = header_name(&header.name).map_err(|e| e.at("name").at(&at))?;
            check_header_value(&header.value).map_err(|e| e.at("value").at(&at))?;
            headers.push((name, header.value.clone()));
        }
        let shadow_header = match &self.shadow_header {
            Some(name) => Some(header_name(name).map_err(|e| e.at("shadow_header"))?),
            None => None,
        };
        Ok(CompiledResponse {
            status: u32::from(self.status),
            body: self.body.as_bytes().to_vec(),
            headers,
            rate_limit_headers: self.rate_limit_headers,
            shadow_header,
        })
    }
}

impl Rule {
    // Not inlined into its one caller: V8 compiles every function when the module loads and
    // keeps the working memory of the largest, so no function over ~6 KB (bench/module-memory.md).
    #[inline(never)]
    fn compile(
        &self,
        index: usize,
        mode: Mode,
        warnings: &mut Warnings,
    ) -> Result<CompiledRule, ConfigError> {
        let name = match &self.name {
            Some(name) => identifier(name).map_err(|e| e.at("name"))?,
            None => format!("rule_{index}"),
        };
        let global = self.mode.unwrap_or(mode) == Mode::Global;
        let limit = match &self.limit {
            Some(limit) => Some(limit.compile().map_err(|e| e.at("limit"))?),
            None if global => None,
            None => {
                return Err(ConfigError::new(
                    "limit",
                    "missing: a local rule needs a limit",
                ))
            }
        };
        let capacity = limit.map_or(u32::MAX, |l| l.max_tokens);
        if self.cost == 0 || self.cost > capacity {
            return Err(ConfigError::new(
                "cost",
                format!(
                    "{} is not from 1 to the bucket's capacity ({capacity})",
                    self.cost
                ),
            ));
        }
        if self.max_keys == 0 || self.max_keys > MAX_KEYS_LIMIT {
            return Err(ConfigError::new(
                "max_keys",
                format!("{} is not from 1 to {MAX_KEYS_LIMIT}", self.max_keys),
            ));
        }
        let mut key = Vec::with_capacity(self.key.len());
        for (i, part) in self.key.iter().enumerate() {
            let at = format!("key[{i}]");
            key.push(match part {
                KeyPart::Header(name) => {
                    KeyPart::Header(header_name(name).map_err(|e| e.at("header").at(&at))?)
                }
                KeyPart::Query(name) | KeyPart::Cookie(name) if name.is_empty() => {
                    let what = if matches!(part, KeyPart::Query(_)) {
                        "query"
                    } else {
                        "cookie"
                    };
                    return Err(ConfigError::new(what, "the name is empty").at(&at));
                }
                other => other.clone(),
            });
        }
        let when = warnings
            .within("match", |w| self.matches.compile(w))
            .map_err(|e| e.at("match"))?;
        Ok(CompiledRule {
            name,
            when,
            slots: if key.is_empty() { 1 } else { self.max_keys },
            key,
            missing_key: self.missing_key,
            limit,
            global,
            cost: self.cost,
            shadow: self.shadow,
            failure_mode: self.failure_mode,
        })
    }
}

impl LimitConfig {
    fn compile(&self) -> Result<Limit, ConfigError> {
        let per_unit = self.requests_per_unit.is_some() || self.unit.is_some();
        let bucket = self.max_tokens.is_some()
            || self.tokens_per_fill.is_some()
            || self.fill_interval.is_some();
        match (per_unit, bucket) {
            (true, true) => Err(ConfigError::new(
                "",
                "set either `requests_per_unit` and `unit`, or `max_tokens`, `tokens_per_fill` and `fill_interval`, not both",
            )),
            (false, false) => Err(ConfigError::new(
                "",
                "set `requests_per_unit` and `unit`, or `max_tokens` and `fill_interval`",
            )),
            (true, false) => {
                let n = positive(self.requests_per_unit, "requests_per_unit")?;
                let unit = self
                    .unit
                    .ok_or_else(|| ConfigError::new("unit", "missing: second, minute, hour or day"))?;
                Ok(Limit {
                    max_tokens: n,
                    tokens_per_fill: n,
                    fill_interval_ns: unit.nanos(),
                })
            }
            (false, true) => {
                let max_tokens = positive(self.max_tokens, "max_tokens")?;
                let tokens_per_fill = match self.tokens_per_fill {
                    None => max_tokens,
                    Some(_) => positive(self.tokens_per_fill, "tokens_per_fill")?,
                };
                let interval = self
                    .fill_interval
                    .as_deref()
                    .ok_or_else(|| ConfigError::new("fill_interval", "missing, e.g. \"1s\""))?;
                Ok(Limit {
                    max_tokens,
                    tokens_per_fill,
                    fill_interval_ns: duration(interval).map_err(|e| e.at("fill_interval"))?,
                })
            }
        }
    }
}

fn positive(value: Option<u32>, field: &str) -> Result<u32, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::new(field, "must be at least 1")),
        Some(n) => Ok(n),
        None => Err(ConfigError::new(field, "missing")),
    }
}

/// A duration (`wasmgate_http::parse_duration`) in nanoseconds.
pub fn duration(text: &str) -> Result<u64, ConfigError> {
    parse_duration_ns(text)
}

/// A name used in shared-data keys and stat names.
fn identifier(name: &str) -> Result<String, ConfigError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConfigError::new(
            "",
            format!("{name:?} must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -"),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wasmgate_glue::parse_json;

    fn compile(config: serde_json::Value) -> Result<Compiled, ConfigError> {
        parse_json::<Config>(config.to_string().as_bytes())?.compile()
    }

    fn refused(config: serde_json::Value) -> ConfigError {
        match compile(config) {
            Ok(_) => panic!("the configuration should be refused"),
            Err(err) => err,
        }
    }

    #[test]
    fn an_empty_config_has_no_rules_and_defaults() {
        let c = parse_json::<Config>(b"").unwrap().compile().unwrap();
        assert!(c.rules.is_empty());
        assert_eq!(c.domain, "default");
        assert_eq!(c.response.status, 429);
        assert_eq!(c.cleanup_interval_ns, NANOS_PER_SEC);
    }

    #[test]
    fn compiles_both_kinds_of_limit() {
        let c = compile(json!({"rules": [
            {"limit": {"requests_per_unit": 100, "unit": "hour"}, "key": ["client_ip"]},
            {"name": "burst", "limit": {"max_tokens": 20, "tokens_per_fill": 5, "fill_interval": "250ms"}, "cost": 4},
            {"limit": {"max_tokens": 3, "fill_interval": "1d"}},
        ]}))
        .unwrap();
        assert_eq!(c.rules[0].name, "rule_0");
        assert_eq!(
            c.rules[0].limit.unwrap(),
            Limit {
                max_tokens: 100,
                tokens_per_fill: 100,
                fill_interval_ns: 3_600 * NANOS_PER_SEC
            }
        );
        assert_eq!(c.rules[0].slots, 10_000);
        assert_eq!(c.rules[1].limit.unwrap().fill_interval_ns, 250_000_000);
        assert_eq!(c.rules[1].slots, 1, "a global key needs one slot");
        assert_eq!(c.rules[2].limit.unwrap().tokens_per_fill, 3);
    }

    #[test]
    fn every_unit() {
        for (unit, secs) in [
            ("second", 1),
            ("minute", 60),
            ("hour", 3600),
            ("day", 86400),
        ] {
            let c = compile(json!({"rules": [{"limit": {"requests_per_unit": 1, "unit": unit}}]}))
                .unwrap();
            assert_eq!(
                c.rules[0].limit.unwrap().fill_interval_ns,
                secs * NANOS_PER_SEC
            );
        }
    }

    #[test]
    fn bad_limits_name_the_field() {
        let cases = [
            (
                json!({"requests_per_unit": 1, "unit": "week"}),
                "rules[0].limit.unit",
                "unknown variant `week`",
            ),
            (
                json!({"requests_per_unit": 0, "unit": "second"}),
                "rules[0].limit.requests_per_unit",
                "at least 1",
            ),
            (
                json!({"requests_per_unit": 5}),
                "rules[0].limit.unit",
                "missing",
            ),
            (
                json!({"max_tokens": 5}),
                "rules[0].limit.fill_interval",
                "missing",
            ),
            (
                json!({"max_tokens": 5, "fill_interval": "soon"}),
                "rules[0].limit.fill_interval",
                "not a duration",
            ),
            (
                json!({"max_tokens": 5, "fill_interval": "0s"}),
                "rules[0].limit.fill_interval",
                "from 1ms",
            ),
            (
                json!({"max_tokens": 5, "fill_interval": "1s", "unit": "second"}),
                "rules[0].limit",
                "not both",
            ),
            (json!({}), "rules[0].limit", "set `requests_per_unit`"),
            (
                json!({"max_tokens": 5, "fill_interval": "1s", "burst": 3}),
                "rules[0].limit.burst",
                "unknown field",
            ),
        ];
        for (limit, field, reason) in cases {
            let err = refused(json!({"rules": [{"limit": limit}]}));
            assert_eq!(err.field(), field, "{err}");
            assert!(err.reason().contains(reason), "{err}");
        }
    }

    #[test]
    fn bad_rules_name_the_field() {
        let limit = json!({"requests_per_unit": 5, "unit": "second"});
        let cases = [
            (
                json!({"limit": limit, "match": {"path": {"regex": "("}}}),
                "rules[0].match.path.regex",
                "invalid regex",
            ),
            (
                json!({"limit": limit, "match": {"path": {"glob": "*"}}}),
                "rules[0].match.path",
                "unknown variant `glob`",
            ),
            (
                json!({"limit": limit, "match": {"headers": [{"name": "x", "exact": "a", "regex": "b"}]}}),
                "rules[0].match.headers[0]",
                "at most one",
            ),
            (
                json!({"limit": limit, "match": {"headers": [{"name": "x", "regex": "[z-a]"}]}}),
                "rules[0].match.headers[0].regex",
                "invalid regex",
            ),
            (
                json!({"limit": limit, "match": {"methods": ["GE T"]}}),
                "rules[0].match.methods[0]",
                "not an HTTP method",
            ),
            (
                json!({"limit": limit, "match": {"hosts": ["a/b"]}}),
                "rules[0].match.hosts[0]",
                "not a host",
            ),
            (
                json!({"limit": limit, "key": [{"header": "bad header"}]}),
                "rules[0].key[0].header",
                "not a header name",
            ),
            (
                json!({"limit": limit, "key": [{"cookie": ""}]}),
                "rules[0].key[0].cookie",
                "empty",
            ),
            (
                json!({"limit": limit, "key": ["ip"]}),
                "rules[0].key[0]",
                "unknown variant `ip`",
            ),
            (
                json!({"limit": limit, "cost": 6}),
                "rules[0].cost",
                "capacity (5)",
            ),
            (
                json!({"limit": limit, "cost": 0}),
                "rules[0].cost",
                "not from 1",
            ),
            (
                json!({"limit": limit, "max_keys": 0}),
                "rules[0].max_keys",
                "not from 1",
            ),
            (
                json!({"limit": limit, "name": "a.b"}),
                "rules[0].name",
                "must be",
            ),
            (
                json!({"limit": limit, "missing_key": "count"}),
                "rules[0].missing_key",
                "unknown variant",
            ),
            (
                json!({"limit": limit, "failure_mode": "open"}),
                "rules[0].failure_mode",
                "unknown variant",
            ),
            (
                json!({"limit": limit, "shadwo": true}),
                "rules[0].shadwo",
                "unknown field",
            ),
        ];
        for (rule, field, reason) in cases {
            let err = refused(json!({"rules": [rule]}));
            assert_eq!(err.field(), field, "{err}");
            assert!(err.reason().contains(reason), "{err}");
        }
        let err = refused(json!({"rules": [{"limit": limit}, {"name": "rule_0", "limit": limit}]}));
        assert_eq!(err.field(), "rules[1].name");
    }

    #[test]
    fn global_rules_need_the_service_and_a_domain_and_may_have_a_local_bucket() {
        let c = compile(json!({
        "mode": "global", "domain": "api",
        "rate_limit_service": {"cluster": "outbound|8081||rls.default.svc.cluster.local"},
        "rules": [
            {"name": "g", "key": ["client_ip"], "cost": 3},
            {"name": "g_bucket", "limit": {"requests_per_unit": 50, "unit": "second"}},
            {"name": "l", "mode": "local", "limit": {"requests_per_unit": 5, "unit": "second"}},
        ]}))
        .unwrap();
        let service = c.service.unwrap();
        assert_eq!(
            service.cluster,
            "outbound|8081||rls.default.svc.cluster.local"
        );
        assert_eq!(service.timeout_ms, 100);
        let kinds: Vec<_> = c
            .rules
            .iter()
            .map(|r| (r.global, r.limit.is_some()))
            .collect();
        assert_eq!(kinds, [(true, false), (true, true), (false, true)]);

        let global = json!({"name": "g", "mode": "global"});
        let service = json!({"cluster": "rls"});
        let cases = [
            (
                json!({"domain": "api", "rules": [global]}),
                "rate_limit_service",
                "required: rules[0] is global",
            ),
            (
                json!({"rate_limit_service": service, "rules": [global]}),
                "domain",
                "required: rules[0] is global",
            ),
            (
                json!({"domain": "api", "rate_limit_service": {"cluster": "rate limit"}, "rules": [global]}),
                "rate_limit_service.cluster",
                "not an Envoy cluster name",
            ),
            (
                json!({"domain": "api", "rate_limit_service": {"cluster": ""}}),
                "rate_limit_service.cluster",
                "not an Envoy cluster name",
            ),
            (
                json!({"domain": "api", "rate_limit_service": {"cluster": "rls", "timeout": "2m"}}),
                "rate_limit_service.timeout",
                "not from 1ms to 60s",
            ),
            (
                json!({"domain": "api", "rate_limit_service": {"clustre": "rls"}}),
                "rate_limit_service.clustre",
                "unknown field",
            ),
            (
                json!({"domain": "api", "rate_limit_service": service,
                       "rules": [{"mode": "global", "failure_mode": "closed"}]}),
                "rules[0].failure_mode",
                "unknown variant `closed`",
            ),
            (
                json!({"rules": [{"name": "l"}]}),
                "rules[0].limit",
                "a local rule needs a limit",
            ),
        ];
        for (config, field, reason) in cases {
            let err = refused(config);
            assert_eq!(err.field(), field, "{err}");
            assert!(err.reason().contains(reason), "{err}");
        }
    }

    #[test]
    fn bad_top_level_fields_name_the_field() {
        let cases = [
            (
                json!({"mode": "remote"}),
                "mode",
                "unknown variant `remote`, expected `local` or `global`",
            ),
            (json!({"domain": "a b"}), "domain", "must be"),
            (
                json!({"cleanup_interval": "1 s"}),
                "cleanup_interval",
                "not a duration",
            ),
            (
                json!({"client_ip": {"xff_hops": 1}}),
                "client_ip.xff_hops",
                "unknown field",
            ),
            (
                json!({"response": {"status": 99}}),
                "response.status",
                "not an HTTP status",
            ),
            (
                json!({"response": {"headers": [{"name": "x", "value": "a\nb"}]}}),
                "response.headers[0].value",
                "CR, LF",
            ),
            (
                json!({"response": {"shadow_header": "a:b"}}),
                "response.shadow_header",
                "not a header name",
            ),
            (
                json!({"response": {"rate_limit_headers": "sometimes"}}),
                "response.rate_limit_headers",
                "unknown variant",
            ),
        ];
        for (config, field, reason) in cases {
            let err = refused(config);
            assert_eq!(err.field(), field, "{err}");
            assert!(err.reason().contains(reason), "{err}");
        }
    }

    #[cfg(feature = "schema")]
    #[test]
    fn the_schema_describes_every_field() {
        let schema = serde_json::to_string(&schemars::schema_for!(Config)).unwrap();
        for field in [
            "rules",
            "max_keys",
            "xff_hop",
            "rate_limit_headers",
            "fill_interval",
        ] {
            assert!(schema.contains(field), "{field} missing from {schema}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("250ms").unwrap(), 250_000_000);
        assert_eq!(duration("2m").unwrap(), 120 * NANOS_PER_SEC);
        assert_eq!(duration("1d").unwrap(), 86_400 * NANOS_PER_SEC);
        assert!(duration("s").is_err());
        assert!(duration("-1s").is_err());
        assert!(duration("99999999999999999999d").is_err());
    }

    #[test]
    fn conditions_are_the_shared_ones_and_old_spellings_warn() {
        let limit = json!({"requests_per_unit": 5, "unit": "second"});
        let c = compile(json!({"rules": [{"limit": limit, "match": {
            "path": "/exact", "methods": ["get"], "hosts": ["API.example.com", {"suffix": ".example.org"}],
            "headers": [{"name": "x-a", "suffix": "-beta"}, {"name": "x-b", "prefix": "v"}]}}]}))
        .unwrap();
        let when = &c.rules[0].when;
        assert!(when.path.as_ref().unwrap().matches("/exact"));
        assert!(when.methods.matches(Some("GET")));
        assert!(when.matches_host(Some("api.example.com")));
        assert!(when.matches_host(Some("a.example.org")));
        assert!(when.headers[0].test.holds(Some("v2-beta")));
        assert!(!when.headers[0].test.holds(Some("v2")));
        let warnings: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("rules[0].match.methods[0]: \"get\" is read as"));
    }
}
