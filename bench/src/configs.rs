//! The configurations measured: each Wasmgate plugin and the native Envoy filter doing the
//! same work, in front of the same route.
//!
//! The Wasm and native configurations of a pair are meant to do the same work; when a
//! plugin's configuration changes, change its pair here.

use serde_json::{json, Value};

pub const ISSUER: &str = "https://issuer.bench.wasmgate.local";
pub const AUDIENCE: &str = "wasmgate-bench";
const RS256_JWKS: &str = include_str!("../fixtures/rs256.jwks.json");
const ES256_JWKS: &str = include_str!("../fixtures/es256.jwks.json");
const RS256_TOKEN: &str = include_str!("../fixtures/rs256.token");
const ES256_TOKEN: &str = include_str!("../fixtures/es256.token");

/// The request every load generator sends to a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `GET /` with an `x-debug` header (which the header filters remove).
    Plain,
    /// The same with an RS256 bearer token.
    Rs256,
    /// The same with an ES256 bearer token.
    Es256,
    /// The same with a different RS256 token on every request (`cold`).
    Rs256Cold,
    /// The same with a different ES256 token on every request (`cold`).
    Es256Cold,
    /// `GET /` again, where the configuration refuses it (429): a flood from one key.
    Flood,
}

impl Request {
    /// Every kind, in the order the rounds visit them.
    pub const ALL: [Request; 6] = [
        Request::Plain,
        Request::Rs256,
        Request::Es256,
        Request::Rs256Cold,
        Request::Es256Cold,
        Request::Flood,
    ];

    /// The status the configurations measured with this request answer it with.
    pub fn status(self) -> u16 {
        match self {
            Request::Flood => 429,
            _ => 200,
        }
    }

    /// The wrk script that makes each request differ (cold tokens), if any.
    pub fn script(self) -> Option<std::path::PathBuf> {
        match self {
            Request::Rs256Cold => crate::cold::script("rs256"),
            Request::Es256Cold => crate::cold::script("es256"),
            _ => None,
        }
    }

    /// The headers of one request; cold streams' first request carries the fixture token.
    pub fn headers(self) -> Vec<(String, String)> {
        let mut headers = vec![("x-debug".to_owned(), "1".to_owned())];
        let token = match self {
            Request::Plain | Request::Flood => None,
            Request::Rs256 | Request::Rs256Cold => Some(RS256_TOKEN),
            Request::Es256 | Request::Es256Cold => Some(ES256_TOKEN),
        };
        if let Some(token) = token {
            headers.push(("authorization".into(), format!("Bearer {}", token.trim())));
        }
        headers
    }
}

/// One HTTP filter in front of the router.
#[derive(Debug, Clone)]
pub enum Filter {
    /// A native Envoy filter, as `{"name": ..., "typed_config": ...}`.
    Native(Value),
    /// A Wasmgate module (`header_rewrite` for `header_rewrite.wasm`) with a plugin config.
    Wasm {
        module: &'static str,
        root_id: &'static str,
        vm_id: &'static str,
        config: Value,
    },
}

/// What a configuration must visibly do before it is measured.
#[derive(Debug, Clone, Default)]
pub struct Check {
    /// A request without a token gets this status (an authenticating filter is active).
    pub without_token: Option<u16>,
    /// Response headers the measured request must come back with.
    pub response_headers: Vec<(&'static str, &'static str)>,
}

/// One configuration of Envoy.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name, used by `BENCH_ONLY`.
    pub id: &'static str,
    /// What the table calls it.
    pub label: &'static str,
    pub request: Request,
    pub filters: Vec<Filter>,
    /// The native configuration this one is compared with.
    pub native: Option<&'static str>,
    pub check: Check,
    /// Load-tested; otherwise only its start time and memory are measured.
    pub load: bool,
    /// Needs the rate limit service (`wasmgate-ratelimit` on Redis) as cluster [`RLS_CLUSTER`].
    pub rls: bool,
}

/// The cluster of the rate limit service, for the global rate-limit configurations.
pub const RLS_CLUSTER: &str = "ratelimit";
/// The service's limits: `bench_open` is never reached, `bench_flood` is over after one request.
pub const RLS_LIMITS: &str = "domain: bench
descriptors:
  - key: generic_key
    value: bench_open
    rate_limit: { unit: second, requests_per_unit: 1000000000 }
  - key: generic_key
    value: bench_flood
    rate_limit: { unit: hour, requests_per_unit: 1 }
";

/// The configuration without filters, every other one's baseline.
pub const NONE: &str = "none";

fn scenario(
    id: &'static str,
    label: &'static str,
    request: Request,
    filters: Vec<Filter>,
) -> Scenario {
    Scenario {
        id,
        label,
        request,
        filters,
        native: None,
        check: Check::default(),
        load: true,
        rls: false,
    }
}

impl Scenario {
    fn compared_with(mut self, native: &'static str) -> Self {
        self.native = Some(native);
        self
    }

    fn check(mut self, check: Check) -> Self {
        self.check = check;
        self
    }

    fn with_rls(mut self) -> Self {
        self.rls = true;
        self
    }

    fn memory_only(mut self) -> Self {
        self.load = false;
        self
    }

    /// The Wasm modules it loads.
    pub fn modules(&self) -> Vec<&'static str> {
        self.filters
            .iter()
            .filter_map(|f| match f {
                Filter::Wasm { module, .. } => Some(*module),
                Filter::Native(_) => None,
            })
            .collect()
    }
}

/// Every configuration, in the order of the table.
pub fn all() -> Vec<Scenario> {
    let jwt_check = Check {
        without_token: Some(401),
        response_headers: vec![],
    };
    let header_check = Check {
        without_token: None,
        response_headers: vec![
            ("x-served-by", "wasmgate"),
            ("x-upstream-saw", "team=payments debug="),
        ],
    };
    let mut out = vec![
        scenario(NONE, "no filter", Request::Plain, vec![]),
        scenario(
            "wasm-noop",
            "Wasm floor: noop.wasm, lets every request through",
            Request::Plain,
            vec![wasm(FLOOR, "noop", "", json!({}))],
        ),
    ];
    for (alg, request) in [("RS256", Request::Rs256), ("ES256", Request::Es256)] {
        let (jwks, ids) = if alg == "RS256" {
            (
                RS256_JWKS,
                [
                    "jwt-rs256-native",
                    "jwt-rs256-wasm",
                    "jwt-rs256-native-cache",
                    "jwt-rs256-wasm-cache",
                ],
            )
        } else {
            (
                ES256_JWKS,
                [
                    "jwt-es256-native",
                    "jwt-es256-wasm",
                    "jwt-es256-native-cache",
                    "jwt-es256-wasm-cache",
                ],
            )
        };
        let labels = if alg == "RS256" {
            [
                "native jwt_authn RS256",
                "jwt-auth RS256",
                "native jwt_authn RS256, jwt_cache",
                "jwt-auth RS256, token cache",
            ]
        } else {
            [
                "native jwt_authn ES256",
                "jwt-auth ES256",
                "native jwt_authn ES256, jwt_cache",
                "jwt-auth ES256, token cache",
            ]
        };
        for (i, cache) in [false, true].into_iter().enumerate() {
            out.push(
                scenario(
                    ids[2 * i],
                    labels[2 * i],
                    request,
                    vec![jwt_native(jwks, cache)],
                )
                .check(jwt_check.clone()),
            );
            out.push(
                scenario(
                    ids[2 * i + 1],
                    labels[2 * i + 1],
                    request,
                    vec![jwt_wasm(jwks, cache)],
                )
                .compared_with(ids[2 * i])
                .check(jwt_check.clone()),
            );
        }
    }
    // Cold tokens: every request verifies a signature. jwt-auth keeps its cache on (it never
    // hits), as jwt_authn with jwt_cache_config does; the two wasm rows differ only in where
    // RS256/ES256 are verified: Envoy's BoringSSL (verify_signature) or the module.
    for (alg, request, jwks) in [
        ("rs256", Request::Rs256Cold, RS256_JWKS),
        ("es256", Request::Es256Cold, ES256_JWKS),
    ] {
        let [native, native_cache, host, module] = cold_ids(alg);
        let name = alg.to_ascii_uppercase();
        out.extend([
            scenario(
                native,
                cold_label(&name, "native jwt_authn"),
                request,
                vec![jwt_native(jwks, false)],
            )
            .check(jwt_check.clone()),
            scenario(
                native_cache,
                cold_label(&name, "native jwt_authn, jwt_cache"),
                request,
                vec![jwt_native(jwks, true)],
            )
            .check(jwt_check.clone()),
            scenario(
                host,
                cold_label(&name, "jwt-auth, host crypto"),
                request,
                vec![with_crypto(jwt_wasm(jwks, true), "host")],
            )
            .compared_with(native_cache)
            .check(jwt_check.clone()),
            scenario(
                module,
                cold_label(&name, "jwt-auth, module crypto"),
                request,
                vec![with_crypto(jwt_wasm(jwks, true), "module")],
            )
            .compared_with(native_cache)
            .check(jwt_check.clone()),
        ]);
    }
    out.extend([
        scenario(
            "ratelimit-native",
            "native local_ratelimit (never reached)",
            Request::Plain,
            vec![rate_limit_native()],
        ),
        scenario(
            "ratelimit-wasm",
            "rate-limit (never reached)",
            Request::Plain,
            vec![rate_limit_wasm("rate_limit", "")],
        )
        .compared_with("ratelimit-native"),
    ]);
    // Global limits through the same service and Redis: every request asks the service
    // (never reached), or one key floods a limit it is over (the plugin's verdict memory
    // answers; the native filter asks each time).
    for (id, label, request, descriptor) in [
        (
            "ratelimit-global",
            "global, never reached",
            Request::Plain,
            "bench_open",
        ),
        (
            "ratelimit-flood",
            "global, flood from one key",
            Request::Flood,
            "bench_flood",
        ),
    ] {
        let native: &'static str = Box::leak(format!("{id}-native").into_boxed_str());
        let wasm: &'static str = Box::leak(format!("{id}-wasm").into_boxed_str());
        out.extend([
            scenario(
                native,
                Box::leak(format!("native ratelimit, {label}").into_boxed_str()),
                request,
                vec![rate_limit_global_native(descriptor)],
            )
            .with_rls(),
            scenario(
                wasm,
                Box::leak(format!("rate-limit {label}").into_boxed_str()),
                request,
                vec![rate_limit_global_wasm(descriptor)],
            )
            .compared_with(native)
            .with_rls(),
        ]);
    }
    out.extend([
        scenario(
            "headers-native",
            "native header_mutation, 3 operations",
            Request::Plain,
            vec![header_mutation_native()],
        )
        .check(header_check.clone()),
        scenario(
            "headers-lua",
            "Lua, the same 3 operations",
            Request::Plain,
            vec![header_lua()],
        )
        .compared_with("headers-native")
        .check(header_check.clone()),
        scenario(
            "headers-wasm",
            "header-rewrite, the same 3 operations",
            Request::Plain,
            vec![header_rewrite_wasm(header_rules())],
        )
        .compared_with("headers-native")
        .check(header_check),
        scenario(
            "all-separate",
            "all three plugins, one module each",
            Request::Rs256,
            vec![
                jwt_wasm_in("jwt_auth", "", RS256_JWKS, true),
                rate_limit_wasm("rate_limit", ""),
                wasm("header_rewrite", "header-rewrite", "", header_rules()),
            ],
        )
        .memory_only(),
        scenario(
            "all-shared",
            "all three plugins, wasmgate_all, one vm_id",
            Request::Rs256,
            vec![
                jwt_wasm_in("wasmgate_all", "wasmgate", RS256_JWKS, true),
                rate_limit_wasm("wasmgate_all", "wasmgate"),
                wasm("wasmgate_all", "header-rewrite", "wasmgate", header_rules()),
            ],
        )
        .memory_only(),
    ]);
    out
}

/// The no-op module every other module is compared with in the module-cost table.
pub const FLOOR: &str = "noop";

/// One shipped module as the module-cost table starts it: alone in front of the route.
#[derive(Debug, Clone)]
pub struct ModuleCost {
    /// The module's file name without `.wasm`.
    pub module: &'static str,
    /// One plugin, held to issue 14's target against the floor; `wasmgate_all` hosts three.
    pub plugin: bool,
    /// No filter (`module` empty) or the module with a typical configuration.
    pub scenario: Scenario,
}

/// The module-cost configurations: no filter, the floor, each plugin's module with the
/// configuration its load row uses, and `wasmgate_all` hosting all three on one `vm_id`.
pub fn module_costs() -> Vec<ModuleCost> {
    let cost = |module, plugin, id, filters| ModuleCost {
        module,
        plugin,
        scenario: scenario(id, module, Request::Plain, filters).memory_only(),
    };
    vec![
        cost("", false, NONE, vec![]),
        cost(
            FLOOR,
            false,
            "module-noop",
            vec![wasm(FLOOR, "noop", "", json!({}))],
        ),
        cost(
            "header_rewrite",
            true,
            "module-header-rewrite",
            vec![header_rewrite_wasm(header_rules())],
        ),
        cost(
            "jwt_auth",
            true,
            "module-jwt-auth",
            vec![jwt_wasm(RS256_JWKS, true)],
        ),
        cost(
            "rate_limit",
            true,
            "module-rate-limit",
            vec![rate_limit_wasm("rate_limit", "")],
        ),
        cost(
            "wasmgate_all",
            false,
            "module-all",
            vec![
                jwt_wasm_in("wasmgate_all", "wasmgate", RS256_JWKS, true),
                rate_limit_wasm("wasmgate_all", "wasmgate"),
                wasm("wasmgate_all", "header-rewrite", "wasmgate", header_rules()),
            ],
        ),
    ]
}

fn wasm(module: &'static str, root_id: &'static str, vm_id: &'static str, config: Value) -> Filter {
    Filter::Wasm {
        module,
        root_id,
        vm_id,
        config,
    }
}

fn jwt_native(jwks: &str, cache: bool) -> Filter {
    let mut provider = json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": { "inline_string": jwks },
        "forward": true,
    });
    if cache {
        provider["jwt_cache_config"] = json!({ "jwt_cache_size": 100 });
    }
    Filter::Native(json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "bench": provider },
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "bench" } }],
        },
    }))
}

fn cold_ids(alg: &str) -> [&'static str; 4] {
    match alg {
        "rs256" => [
            "jwt-rs256-cold-native",
            "jwt-rs256-cold-native-cache",
            "jwt-rs256-cold-wasm",
            "jwt-rs256-cold-wasm-module",
        ],
        _ => [
            "jwt-es256-cold-native",
            "jwt-es256-cold-native-cache",
            "jwt-es256-cold-wasm",
            "jwt-es256-cold-wasm-module",
        ],
    }
}

fn cold_label(alg: &str, what: &str) -> &'static str {
    // Labels live as long as the table; a handful of them, made once.
    Box::leak(format!("{what} {alg}, cold tokens").into_boxed_str())
}

/// jwt-auth with `crypto` set: `host` (refused where Envoy cannot) or `module`.
fn with_crypto(filter: Filter, crypto: &str) -> Filter {
    match filter {
        Filter::Wasm {
            module,
            root_id,
            vm_id,
            mut config,
        } => {
            config["crypto"] = json!(crypto);
            Filter::Wasm {
                module,
                root_id,
                vm_id,
                config,
            }
        }
        native => native,
    }
}

fn jwt_wasm(jwks: &str, cache: bool) -> Filter {
    jwt_wasm_in("jwt_auth", "", jwks, cache)
}

fn jwt_wasm_in(module: &'static str, vm_id: &'static str, jwks: &str, cache: bool) -> Filter {
    let jwks: Value = serde_json::from_str(jwks).unwrap_or(Value::Null);
    // The same provider as the native filter's; jwt-auth caches by default, 0 turns it off.
    let config = json!({
        "providers": { "bench": {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "local_jwks": jwks,
            "forward": true,
        }},
        "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "bench" } }],
        "token_cache_size": if cache { 100 } else { 0 },
    });
    wasm(module, "jwt-auth", vm_id, config)
}

fn rate_limit_native() -> Filter {
    let always = json!({ "numerator": 100, "denominator": "HUNDRED" });
    Filter::Native(json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "bench",
            "token_bucket": { "max_tokens": 1_000_000_000u64, "tokens_per_fill": 1_000_000_000u64, "fill_interval": "1s" },
            "filter_enabled": { "runtime_key": "bench_rl_enabled", "default_value": always },
            "filter_enforced": { "runtime_key": "bench_rl_enforced", "default_value": always },
        },
    }))
}

fn rate_limit_wasm(module: &'static str, vm_id: &'static str) -> Filter {
    // One bucket for every request (no key), like local_ratelimit's.
    let config = json!({ "rules": [{ "limit": {
        "max_tokens": 1_000_000_000u64,
        "tokens_per_fill": 1_000_000_000u64,
        "fill_interval": "1s",
    }}]});
    wasm(module, "rate-limit", vm_id, config)
}

/// Envoy's ratelimit filter asking the service about one `generic_key` descriptor.
fn rate_limit_global_native(descriptor: &str) -> Filter {
    Filter::Native(json!({
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": "bench",
            "timeout": "1s",
            "rate_limits": [{ "actions": [{ "generic_key": { "descriptor_value": descriptor } }] }],
            "rate_limit_service": {
                "grpc_service": { "envoy_grpc": { "cluster_name": RLS_CLUSTER } },
                "transport_api_version": "V3",
            },
        },
    }))
}

/// rate-limit with one global rule, named so that its descriptor is the native filter's.
fn rate_limit_global_wasm(descriptor: &str) -> Filter {
    let config = json!({
        "mode": "global",
        "domain": "bench",
        "rate_limit_service": { "cluster": RLS_CLUSTER, "timeout": "1s" },
        "rules": [{ "name": descriptor }],
    });
    wasm("rate_limit", "rate-limit", "", config)
}

/// The three header operations every header configuration performs.
fn header_rules() -> Value {
    json!({ "rules": [{
        "request": [
            { "op": "set", "name": "x-team", "value": "payments" },
            { "op": "remove", "name": "x-debug" },
        ],
        "response": [
            { "op": "set", "name": "x-served-by", "value": "wasmgate" },
        ],
    }]})
}

fn header_rewrite_wasm(config: Value) -> Filter {
    wasm("header_rewrite", "header-rewrite", "", config)
}

fn header_mutation_native() -> Filter {
    let set = |key: &str, value: &str| {
        json!({ "append": {
            "header": { "key": key, "value": value },
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }})
    };
    Filter::Native(json!({
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {
                "request_mutations": [set("x-team", "payments"), { "remove": "x-debug" }],
                "response_mutations": [set("x-served-by", "wasmgate")],
            },
        },
    }))
}

fn header_lua() -> Filter {
    let source = "\
function envoy_on_request(handle)
  local headers = handle:headers()
  headers:replace(\"x-team\", \"payments\")
  headers:remove(\"x-debug\")
end
function envoy_on_response(handle)
  handle:headers():replace(\"x-served-by\", \"wasmgate\")
end
";
    Filter::Native(json!({
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": { "inline_string": source },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_pairs_point_at_native_configurations() {
        let all = all();
        let ids: Vec<&str> = all.iter().map(|s| s.id).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(!ids[i + 1..].contains(id), "{id} twice");
        }
        for s in &all {
            if let Some(native) = s.native {
                let pair = all.iter().find(|n| n.id == native).unwrap();
                assert!(
                    pair.modules().is_empty(),
                    "{} compared with Wasm {native}",
                    s.id
                );
                assert_eq!(
                    pair.request, s.request,
                    "{} and {native} get different requests",
                    s.id
                );
            }
        }
        assert_eq!(all[0].id, NONE);
    }

    #[test]
    fn module_costs_start_from_no_filter_then_the_floor() {
        let costs = module_costs();
        assert_eq!(costs[0].scenario.id, NONE);
        assert!(costs[0].scenario.modules().is_empty());
        assert_eq!(costs[1].module, FLOOR);
        for cost in &costs[1..] {
            assert!(!cost.scenario.load, "{} is load-tested", cost.module);
            assert!(
                cost.scenario.modules().iter().all(|m| *m == cost.module),
                "{} loads another module",
                cost.module
            );
        }
        let plugins: Vec<&str> = costs
            .iter()
            .filter(|c| c.plugin)
            .map(|c| c.module)
            .collect();
        assert_eq!(plugins, ["header_rewrite", "jwt_auth", "rate_limit"]);
    }

    #[test]
    fn fixtures_are_embedded() {
        for request in [Request::Rs256, Request::Es256] {
            let headers = request.headers();
            let (_, value) = headers.iter().find(|(n, _)| n == "authorization").unwrap();
            assert_eq!(value.matches('.').count(), 2, "{value}");
            assert!(!value.ends_with('\n'));
        }
        for jwks in [RS256_JWKS, ES256_JWKS] {
            let jwks: Value = serde_json::from_str(jwks).unwrap();
            assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        }
    }
}
