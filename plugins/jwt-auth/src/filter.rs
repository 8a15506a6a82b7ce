//! The plugin root (keys, cache, background JWKS refresh) and the per-stream filter.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use wasmgate_glue::{
    parse_json, Action, ConfigError, Headers, Host, HostError, HttpFilter, LocalReply, LogLevel,
    MetricId, MetricKind, Plugin,
};
use wasmgate_http::{cookie_values, cookies, is_param, query_values, split};

use crate::cache::TokenCache;
use crate::claims::{header_value, lookup, scopes};
use crate::config::{Compiled, Config, CryptoMode, Keys, Remote, Req, Source};
use crate::hostcrypto::{self, Crypto, HostCrypto};
use crate::jwk::KeySet;
use crate::remote;
use crate::token::{Reason, Token};

/// Shortest and longest tick period of the background JWKS refresh.
const MIN_TICK: Duration = Duration::from_millis(100);
const MAX_TICK: Duration = Duration::from_secs(1);

/// Counters, defined once in `configure`. A counter the host refused to define is `None`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    allowed: Option<MetricId>,
    denied: HashMap<Reason, MetricId>,
    cache_hit: Option<MetricId>,
    cache_miss: Option<MetricId>,
    fetch_ok: Option<MetricId>,
    fetch_failed: Option<MetricId>,
    /// Requests refused with 503 because the host could not tell the time.
    clock_failed: Option<MetricId>,
    /// Signatures the host was asked to verify (`verify_signature`).
    host_verify: Option<MetricId>,
    /// Host verifications that gave no verdict (an error or a malformed answer): refused.
    host_verify_failed: Option<MetricId>,
}

impl Metrics {
    pub(crate) fn define(host: &mut dyn Host) -> Metrics {
        let mut counter = |name: &str| host.define_metric(MetricKind::Counter, name).ok();
        let mut denied = HashMap::new();
        for reason in Reason::ALL {
            if let Some(id) = counter(&format!("jwt_auth.denied.{}", reason.metric())) {
                denied.insert(reason, id);
            }
        }
        Metrics {
            allowed: counter("jwt_auth.allowed"),
            cache_hit: counter("jwt_auth.cache_hit"),
            cache_miss: counter("jwt_auth.cache_miss"),
            fetch_ok: counter("jwt_auth.jwks_fetch_ok"),
            fetch_failed: counter("jwt_auth.jwks_fetch_failed"),
            clock_failed: counter("jwt_auth.clock_failed"),
            host_verify: counter("jwt_auth.host_verify"),
            host_verify_failed: counter("jwt_auth.host_verify_failed"),
            denied,
        }
    }
}

fn bump(host: &mut dyn Host, id: Option<MetricId>) {
    if let Some(id) = id {
        host.increment_metric(id, 1);
    }
}

/// One provider's current keys in this worker.
#[derive(Debug, Default)]
struct ProviderKeys {
    set: Option<Rc<KeySet>>,
    /// Changes whenever `set` does, so cached verifications by old keys are dropped.
    generation: u64,
    /// When the shared set this worker loaded was fetched (Unix ms); 0 for local keys.
    fetched_at: u64,
}

/// Mutable state of one worker, shared by the root and every stream.
#[derive(Debug)]
struct State {
    keys: Vec<ProviderKeys>,
    cache: TokenCache,
    next_generation: u64,
    /// Root callouts in flight: token → (provider, sent at in Unix ms).
    root_calls: HashMap<u32, (usize, u64)>,
}

/// What the root and the streams share.
#[derive(Debug)]
struct Shared {
    config: Compiled,
    metrics: Metrics,
    /// Where RS* and ES* signatures go (decided in `on_start`).
    crypto: Cell<CryptoPath>,
    /// Whether a decision depends on the method (a rule names methods, or CORS preflights
    /// pass): when not, `:method` is never read, one host call less per request.
    reads_method: bool,
    state: RefCell<State>,
}

/// The host's time in Unix ms. A failed clock is an error for the caller to fail closed on:
/// with a stand-in time, `exp` and `nbf` would say nothing.
fn now_ms(host: &dyn Host) -> Result<u64, HostError> {
    Ok(host
        .now()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0))
}

impl Shared {
    fn remote(&self, provider: usize) -> Option<&Remote> {
        match &self.config.providers.get(provider)?.keys {
            Keys::Remote(remote) => Some(remote),
            Keys::Local(_) => None,
        }
    }

    /// Load the Envoy-wide key set of a remote provider if it is newer than this worker's.
    fn sync(&self, host: &dyn Host, provider: usize) {
        let Some(remote) = self.remote(provider) else {
            return;
        };
        let Some((fetched_at, document)) = remote::load(host, remote) else {
            return;
        };
        let mut state = self.state.borrow_mut();
        if state.keys[provider].fetched_at >= fetched_at {
            return;
        }
        // Only good sets are shared, so this parses; a bad one is left alone all the same.
        if let Ok((set, _)) = KeySet::lenient(&document) {
            state.next_generation += 1;
            let generation = state.next_generation;
            state.keys[provider] = ProviderKeys {
                set: Some(Rc::new(set)),
                generation,
                fetched_at,
            };
        }
    }

    /// Take in a JWKS callout response for `provider`, sent at `sent` (Unix ms) by the root
    /// or a stream. A good set is shared with every worker unless a later fetch already
    /// was; anything else keeps the last good set.
    fn fetched(
        &self,
        host: &mut dyn Host,
        provider: usize,
        sent: u64,
        status: Option<u16>,
        who: &str,
    ) {
        let Some(remote) = self.remote(provider) else {
            return;
        };
        let name = &self.config.providers[provider].name;
        let outcome = match status {
            None => Err("no response (timeout or connection failure)".to_owned()),
            Some(200) => {
                let body = host
                    .call_response_body(remote::MAX_JWKS_BYTES + 1)
                    .unwrap_or_default();
                if body.len() > remote::MAX_JWKS_BYTES {
                    Err(format!(
                        "document larger than {} bytes",
                        remote::MAX_JWKS_BYTES
                    ))
                } else {
                    KeySet::lenient(&body).map(|(set, skipped)| (set, skipped, body))
                }
            }
            Some(status) => Err(format!("status {status}")),
        };
        match outcome {
            Ok((set, skipped, body)) => {
                bump(host, self.metrics.fetch_ok);
                let count = set.keys.len();
                match remote::publish(host, remote, sent, &body) {
                    // The shared set is this one or a later one: adopt it.
                    Ok(_) => self.sync(host, provider),
                    // Shared data refused: this worker still uses what it fetched.
                    Err(e) => {
                        host.log(
                            LogLevel::Warn,
                            &format!(
                                "{who}jwt-auth: provider {name}: cannot share the key set: {e}"
                            ),
                        );
                        let mut state = self.state.borrow_mut();
                        if state.keys[provider].fetched_at < sent {
                            state.next_generation += 1;
                            let generation = state.next_generation;
                            state.keys[provider] = ProviderKeys {
                                set: Some(Rc::new(set)),
                                generation,
                                fetched_at: sent,
                            };
                        }
                    }
                }
                host.log(
                    LogLevel::Info,
                    &format!("{who}jwt-auth: provider {name}: fetched {count} keys ({skipped} unusable skipped)"),
                );
            }
            Err(why) => {
                // Without the time the back-off cannot be dated; the next fetch is not held back.
                if let Ok(now) = now_ms(host) {
                    remote::record_failure(host, remote, now);
                }
                bump(host, self.metrics.fetch_failed);
                host.log(
                    LogLevel::Warn,
                    &format!("{who}jwt-auth: provider {name}: JWKS fetch failed: {why}; keeping the last good keys"),
                );
            }
        }
    }
}

/// Where RS* and ES* signatures are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CryptoPath {
    Module,
    /// By the host's `verify_signature`.
    Host,
    /// Nowhere: `crypto: host` and the host cannot; such tokens are refused.
    Refuse,
}

/// Where RS* and ES* signatures go, as `mode` asks and the host allows
/// (probed once, when the configuration starts); the choice is logged. Probed at start, not
/// in `configure`, so that validating a configuration (the CLI) needs no Envoy.
fn choose_crypto(mode: CryptoMode, host: &mut dyn Host) -> CryptoPath {
    let probed = match mode {
        CryptoMode::Module => None,
        CryptoMode::Auto | CryptoMode::Host => Some(hostcrypto::probe(host)),
    };
    let (use_host, level, message) = match probed {
        None => (
            CryptoPath::Module,
            LogLevel::Info,
            "every signature verified in the module (crypto: module)".to_owned(),
        ),
        Some(Ok(())) => (
            CryptoPath::Host,
            LogLevel::Info,
            format!(
                "RS256/384/512 and ES256/384/512 verified by the host ({}), PS*, EdDSA and HS* in the module",
                hostcrypto::FUNCTION
            ),
        ),
        // Required but unusable: RS* and ES* tokens are refused (fail closed), never
        // verified somewhere the configuration did not ask for.
        Some(Err(why)) if mode == CryptoMode::Host => (
            CryptoPath::Refuse,
            LogLevel::Critical,
            format!("crypto: \"host\" but {why}: every RS* and ES* token will be refused"),
        ),
        Some(Err(why)) => (
            CryptoPath::Module,
            LogLevel::Info,
            format!("every signature verified in the module: {why}"),
        ),
    };
    host.log(level, &format!("jwt-auth: {message}"));
    use_host
}

/// The plugin's root: configuration compiled once, keys, the token cache.
#[derive(Debug)]
pub struct JwtAuth {
    shared: Rc<Shared>,
}

impl Plugin for JwtAuth {
    const NAME: &'static str = "jwt-auth";
    type Filter = JwtAuthFilter;

    fn configure(config: &[u8], host: &mut dyn Host) -> Result<Self, ConfigError> {
        let config = parse_json::<Config>(config)?.compile()?;
        let mut keys = Vec::with_capacity(config.providers.len());
        for provider in &config.providers {
            keys.push(match &provider.keys {
                Keys::Local(set) => ProviderKeys {
                    set: Some(Rc::new(set.clone())),
                    generation: 0,
                    fetched_at: 0,
                },
                Keys::Remote(_) => ProviderKeys::default(),
            });
        }
        let state = State {
            keys,
            cache: TokenCache::new(config.token_cache_size),
            next_generation: 0,
            root_calls: HashMap::new(),
        };
        Ok(JwtAuth {
            shared: Rc::new(Shared {
                metrics: Metrics::define(host),
                crypto: Cell::new(CryptoPath::Module),
                reads_method: config.bypass_cors_preflight
                    || config.rules.iter().any(|r| !r.methods.is_empty()),
                config,
                state: RefCell::new(state),
            }),
        })
    }

    fn create_filter(&self, context_id: u32) -> JwtAuthFilter {
        JwtAuthFilter {
            shared: Rc::clone(&self.shared),
            context_id,
            call: None,
            fetched: vec![false; self.shared.config.providers.len()],
            paused: false,
        }
    }

    fn on_start(&mut self, host: &mut dyn Host) {
        self.shared
            .crypto
            .set(choose_crypto(self.shared.config.crypto, host));
        let period = self
            .shared
            .config
            .providers
            .iter()
            .filter_map(|p| match &p.keys {
                Keys::Remote(remote) => Some(remote.cache_duration / 4),
                Keys::Local(_) => None,
            })
            .min();
        if let Some(period) = period {
            host.set_tick_period(period.clamp(MIN_TICK, MAX_TICK));
        }
    }

    fn on_tick(&mut self, host: &mut dyn Host) {
        let now = match now_ms(host) {
            Ok(now) => now,
            Err(err) => {
                // Leases and fetch times need the time: refresh on a later tick.
                host.log(
                    LogLevel::Warn,
                    &format!("jwt-auth: cannot read the clock, JWKS refresh skipped: {err}"),
                );
                return;
            }
        };
        for (i, provider) in self.shared.config.providers.iter().enumerate() {
            let Keys::Remote(remote) = &provider.keys else {
                continue;
            };
            self.shared.sync(host, i);
            let in_flight = self
                .shared
                .state
                .borrow()
                .root_calls
                .values()
                .any(|(p, _)| *p == i);
            if in_flight || !remote::try_lease(host, remote, now) {
                continue;
            }
            match remote::dispatch(host, remote) {
                Ok(token) => {
                    self.shared
                        .state
                        .borrow_mut()
                        .root_calls
                        .insert(token, (i, now));
                }
                Err(e) => {
                    remote::record_failure(host, remote, now);
                    bump(host, self.shared.metrics.fetch_failed);
                    host.log(
                        LogLevel::Warn,
                        &format!(
                            "jwt-auth: provider {}: cannot send the JWKS request to cluster {}: {e}",
                            provider.name, remote.cluster
                        ),
                    );
                }
            }
        }
    }

    fn on_http_call_response(&mut self, host: &mut dyn Host, token: u32, status: Option<u16>) {
        let call = self.shared.state.borrow_mut().root_calls.remove(&token);
        if let Some((provider, sent)) = call {
            self.shared.fetched(host, provider, sent, status, "");
        }
    }
}

/// Verify a token's signature where the configuration chose; a host that gives no verdict
/// refuses the token, and is counted and logged.
fn verify(
    shared: &Shared,
    host: &mut dyn Host,
    token: &Token<'_>,
    keys: &KeySet,
) -> Result<(), Reason> {
    let mut crypto = match shared.crypto.get() {
        CryptoPath::Module => return token.verify(keys, &mut Crypto::Module),
        CryptoPath::Host => Crypto::Host(HostCrypto::new(host)),
        CryptoPath::Refuse => Crypto::Host(HostCrypto::unusable(host)),
    };
    let result = token.verify(keys, &mut crypto);
    let Crypto::Host(done) = crypto else {
        return result;
    };
    let (calls, failure) = (done.calls, done.failure);
    if calls > 0 {
        if let Some(id) = shared.metrics.host_verify {
            host.increment_metric(id, i64::try_from(calls).unwrap_or(i64::MAX));
        }
    }
    if let Some(failure) = failure {
        bump(host, shared.metrics.host_verify_failed);
        host.log(
            LogLevel::Warn,
            &format!(
                "jwt-auth: host signature verification gave no verdict, token refused: {failure}"
            ),
        );
    }
    result
}

/// One provider's outcome for the current request.
#[derive(Debug, Clone)]
enum Outcome {
    Missing,
    Failed(Reason),
    Verified(Rc<Verified>),
    /// The provider's remote keys must be fetched before a decision.
    NeedKeys(usize),
    /// The host could not tell the time: no decision at all.
    NoClock(HostError),
}

/// A verified token.
#[derive(Debug)]
struct Verified {
    provider: usize,
    /// Which of the provider's sources held it.
    source: usize,
    token: String,
    claims: Rc<Map<String, Value>>,
}

/// A requirement's result.
#[derive(Debug)]
enum Decision {
    Allow(Vec<Rc<Verified>>),
    Deny(Reason),
    NeedKeys(usize),
    NoClock(HostError),
}

/// A found token, or why there is none.
enum Found {
    None,
    Bad,
    One(String, usize),
}

/// One request's evaluation: header reads and provider outcomes are done at most once.
struct Eval<'a> {
    shared: &'a Shared,
    fetched: &'a [bool],
    path: &'a str,
    /// Request headers read so far: providers often share a source.
    headers: Vec<(String, Option<String>)>,
    outcomes: Vec<Option<Outcome>>,
}

impl<'a> Eval<'a> {
    fn header(&mut self, host: &dyn Host, name: &str) -> Option<&str> {
        let at = match self.headers.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                let value = host.header(Headers::Request, name);
                self.headers.push((name.to_owned(), value));
                self.headers.len() - 1
            }
        };
        self.headers[at].1.as_deref()
    }

    fn find(&mut self, host: &dyn Host, provider: usize) -> Found {
        let shared = self.shared;
        let sources = &shared.config.providers[provider].sources;
        let mut found: Option<(String, usize)> = None;
        for (index, source) in sources.iter().enumerate() {
            let token = match source {
                Source::Header { name, prefix } => {
                    let Some(value) = self.header(host, name) else {
                        continue;
                    };
                    match strip_prefix(value, prefix) {
                        Some(token) => token.to_owned(),
                        None => continue,
                    }
                }
                Source::Param(name) => {
                    match query_values(query(self.path), name)
                        .collect::<Vec<_>>()
                        .as_slice()
                    {
                        [] => continue,
                        [one] => one.clone().into_owned(),
                        _ => return Found::Bad,
                    }
                }
                Source::Cookie(name) => {
                    let Some(value) = self.header(host, "cookie") else {
                        continue;
                    };
                    match cookie_values(value, name).collect::<Vec<_>>().as_slice() {
                        [] => continue,
                        [one] => (*one).to_owned(),
                        _ => return Found::Bad,
                    }
                }
            };
            // A repeated header arrives joined with ','; no JWT has one.
            if token.is_empty() || token.contains(',') || found.is_some() {
                return Found::Bad;
            }
            found = Some((token, index));
        }
        match found {
            Some((token, source)) => Found::One(token, source),
            None => Found::None,
        }
    }

    fn provider(&mut self, host: &mut dyn Host, provider: usize) -> Outcome {
        if let Some(outcome) = &self.outcomes[provider] {
            return outcome.clone();
        }
        let outcome = self.check(host, provider);
        self.outcomes[provider] = Some(outcome.clone());
        outcome
    }

    fn check(&mut self, host: &mut dyn Host, provider: usize) -> Outcome {
        let shared = self.shared;
        let config = &shared.config.providers[provider];
        let (token, source) = match self.find(host, provider) {
            Found::None => return Outcome::Missing,
            Found::Bad => return Outcome::Failed(Reason::Duplicate),
            Found::One(token, source) => (token, source),
        };
        if token.len() > shared.config.max_token_bytes {
            return Outcome::Failed(Reason::TooLarge);
        }
        let now_ms = match now_ms(host) {
            Ok(now_ms) => now_ms,
            Err(err) => return Outcome::NoClock(err),
        };
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let mut key = None;
        if shared.config.token_cache_size > 0 {
            let mut state = shared.state.borrow_mut();
            let generation = state.keys[provider].generation;
            let k = state.cache.key(&token, provider);
            key = Some(k);
            if let Some(claims) = state.cache.get(&k, &token, now, generation) {
                drop(state);
                bump(host, shared.metrics.cache_hit);
                return Outcome::Verified(Rc::new(Verified {
                    provider,
                    source,
                    token,
                    claims,
                }));
            }
        }
        let parsed = match Token::parse(&token, shared.config.max_token_bytes) {
            Ok(parsed) => parsed,
            Err(reason) => return Outcome::Failed(reason),
        };
        let remote = shared.remote(provider);
        let first_try = !self.fetched[provider];
        if let Some(remote) = remote.filter(|_| first_try) {
            let known = |shared: &Shared| {
                let state = shared.state.borrow();
                state.keys[provider]
                    .set
                    .as_ref()
                    .map(|set| parsed.kid_known(set))
            };
            if known(shared) != Some(true) {
                // Another worker may have fetched what this one lacks.
                shared.sync(host, provider);
                match known(shared) {
                    None if remote::may_fetch_cold(host, remote, now_ms) => {
                        return Outcome::NeedKeys(provider)
                    }
                    Some(false) if remote::try_kid_refetch(host, remote, now_ms) => {
                        return Outcome::NeedKeys(provider)
                    }
                    _ => {}
                }
            }
        }
        let (set, generation) = {
            let state = shared.state.borrow();
            (
                state.keys[provider].set.clone(),
                state.keys[provider].generation,
            )
        };
        let Some(set) = set else {
            return Outcome::Failed(Reason::KeysUnavailable);
        };
        if let Err(reason) = verify(shared, host, &parsed, &set) {
            return Outcome::Failed(reason);
        }
        let exp = match config.claims.check(&parsed.claims, now) {
            Ok(exp) => exp,
            Err(reason) => return Outcome::Failed(reason),
        };
        let claims = Rc::new(parsed.claims);
        if let Some(key) = key {
            shared.state.borrow_mut().cache.insert(
                key,
                &token,
                Rc::clone(&claims),
                exp,
                config.claims.clock_skew_seconds,
                now,
                generation,
            );
            bump(host, shared.metrics.cache_miss);
        }
        Outcome::Verified(Rc::new(Verified {
            provider,
            source,
            token,
            claims,
        }))
    }

    fn requirement(&mut self, host: &mut dyn Host, req: &Req) -> Decision {
        match req {
            Req::Provider(i) => match self.provider(host, *i) {
                Outcome::Verified(v) => Decision::Allow(vec![v]),
                Outcome::Missing => Decision::Deny(Reason::Missing),
                Outcome::Failed(reason) => Decision::Deny(reason),
                Outcome::NeedKeys(i) => Decision::NeedKeys(i),
                Outcome::NoClock(err) => Decision::NoClock(err),
            },
            Req::All(list) => {
                let mut verified = Vec::new();
                for r in list {
                    match self.requirement(host, r) {
                        Decision::Allow(v) => verified.extend(v),
                        other => return other,
                    }
                }
                Decision::Allow(verified)
            }
            Req::Any(list) => {
                let mut first_failure = None;
                let mut all_missing = true;
                for r in list {
                    match r {
                        Req::AllowMissing | Req::AllowMissingOrFailed => continue,
                        _ => {}
                    }
                    match self.requirement(host, r) {
                        Decision::Allow(v) => return Decision::Allow(v),
                        Decision::NeedKeys(i) => return Decision::NeedKeys(i),
                        // Not a failed token that allow_missing_or_failed may excuse.
                        Decision::NoClock(err) => return Decision::NoClock(err),
                        Decision::Deny(Reason::Missing) => {}
                        Decision::Deny(reason) => {
                            all_missing = false;
                            first_failure.get_or_insert(reason);
                        }
                    }
                }
                if list.contains(&Req::AllowMissingOrFailed)
                    || (all_missing && list.contains(&Req::AllowMissing))
                {
                    return Decision::Allow(Vec::new());
                }
                Decision::Deny(first_failure.unwrap_or(Reason::Missing))
            }
            Req::AllowMissing | Req::AllowMissingOrFailed => Decision::Allow(Vec::new()),
        }
    }
}

/// The token after a case-insensitive `prefix`, or `None` when the value has another prefix.
fn strip_prefix<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    if prefix.is_empty() {
        return Some(value.trim());
    }
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| value[prefix.len()..].trim())
}

/// `text` before any `#`: a fragment is part of neither the path nor the query.
fn without_fragment(text: &str) -> &str {
    text.split_once('#').map_or(text, |(before, _)| before)
}

/// The query of a request target, without a fragment.
fn query(path: &str) -> &str {
    without_fragment(split(path).1.unwrap_or(""))
}

/// `path` without query parameter `name` (compared decoded, as when it was found).
fn remove_param(path: &str, name: &str) -> String {
    let (base, rest) = split(path);
    let rest = rest.unwrap_or("");
    let (query, fragment) = rest
        .split_once('#')
        .map_or((rest, None), |(q, f)| (q, Some(f)));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !is_param(pair, name))
        .collect();
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// A `cookie` header without cookie `name`.
fn remove_cookie(header: &str, name: &str) -> String {
    cookies(header)
        .filter(|(k, _)| *k != name)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One stream's filter.
#[derive(Debug)]
pub struct JwtAuthFilter {
    shared: Rc<Shared>,
    context_id: u32,
    /// The JWKS callout this stream waits for: (token, provider, sent at in Unix ms).
    call: Option<(u32, usize, u64)>,
    /// Providers this stream already fetched keys for; never twice.
    fetched: Vec<bool>,
    paused: bool,
}

impl JwtAuthFilter {
    /// Decide, or start a JWKS fetch and pause.
    fn decide(&mut self, host: &mut dyn Host) -> Action {
        let shared = Rc::clone(&self.shared);
        let config = &shared.config;
        // A rule without methods matches any, so the empty method stands for the unread one.
        let method = if shared.reads_method {
            host.header(Headers::Request, ":method").unwrap_or_default()
        } else {
            String::new()
        };
        let path = host.header(Headers::Request, ":path").unwrap_or_default();
        if config.bypass_cors_preflight
            && method == "OPTIONS"
            && host.header(Headers::Request, "origin").is_some()
            && host
                .header(Headers::Request, "access-control-request-method")
                .is_some()
        {
            return self.allow(host);
        }
        let bare_path = without_fragment(split(&path).0);
        let rule = config.rules.iter().find(|r| r.matches(&method, bare_path));
        let requirement = match rule {
            Some(rule) => rule.requires.as_ref(),
            None => config.default.as_ref(),
        };
        let Some(requirement) = requirement else {
            return self.allow(host);
        };
        let mut eval = Eval {
            shared: &shared,
            fetched: &self.fetched,
            path: &path,
            headers: Vec::new(),
            outcomes: vec![None; config.providers.len()],
        };
        let verified = match eval.requirement(host, requirement) {
            Decision::Allow(verified) => verified,
            Decision::Deny(reason) => return self.deny(host, reason, &[]),
            Decision::NeedKeys(provider) => return self.fetch(host, provider),
            Decision::NoClock(err) => return self.no_clock(host, &err),
        };
        if let Some(rule) = rule {
            if !rule.required_scopes.is_empty() || !rule.required_claims.is_empty() {
                if verified.is_empty() {
                    return self.deny(host, Reason::Missing, &[]);
                }
                let fits = verified.iter().any(|v| {
                    let granted = scopes(&v.claims);
                    rule.required_scopes
                        .iter()
                        .all(|s| granted.contains(&s.as_str()))
                        && rule.required_claims.iter().all(|c| c.satisfied(&v.claims))
                });
                if !fits {
                    return self.deny(host, Reason::InsufficientScope, &rule.required_scopes);
                }
            }
        }
        self.forward(host, &path, &verified);
        bump(host, shared.metrics.allowed);
        self.allow(host)
    }

    /// Put what the providers want upstream, and strip tokens that are not forwarded.
    fn forward(&self, host: &mut dyn Host, path: &str, verified: &[Rc<Verified>]) {
        // Copied only when a token is taken out of the query.
        let mut new_path: Option<String> = None;
        for v in verified {
            let provider = &self.shared.config.providers[v.provider];
            if !provider.forward {
                match &provider.sources[v.source] {
                    Source::Header { name, .. } => host.remove_header(Headers::Request, name),
                    Source::Param(name) => {
                        new_path = Some(remove_param(new_path.as_deref().unwrap_or(path), name));
                    }
                    Source::Cookie(name) => {
                        let header = host.header(Headers::Request, "cookie").unwrap_or_default();
                        let rest = remove_cookie(&header, name);
                        if rest.is_empty() {
                            host.remove_header(Headers::Request, "cookie");
                        } else {
                            host.set_header(Headers::Request, "cookie", &rest);
                        }
                    }
                }
            }
            if let Some(header) = &provider.forward_payload_header {
                if let Some(payload) = v.token.split('.').nth(1) {
                    host.set_header(Headers::Request, header, payload);
                }
            }
            for (header, claim) in &provider.claim_to_headers {
                if let Some(value) = lookup(&v.claims, claim).and_then(header_value) {
                    host.set_header(Headers::Request, header, &value);
                }
            }
        }
        if let Some(path) = new_path {
            host.set_header(Headers::Request, ":path", &path);
        }
    }

    fn fetch(&mut self, host: &mut dyn Host, provider: usize) -> Action {
        self.fetched[provider] = true;
        let Some(remote) = self.shared.remote(provider) else {
            return self.decide(host);
        };
        match remote::dispatch(host, remote) {
            Ok(token) => {
                host.log(
                    LogLevel::Debug,
                    &format!(
                        "#{} jwt-auth: waiting for the keys of provider {}",
                        self.context_id, self.shared.config.providers[provider].name
                    ),
                );
                match now_ms(host) {
                    Ok(sent) => {
                        self.call = Some((token, provider, sent));
                        self.paused = true;
                        Action::Pause
                    }
                    Err(err) => self.no_clock(host, &err),
                }
            }
            Err(e) => {
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "#{} jwt-auth: cannot send the JWKS request to cluster {}: {e}",
                        self.context_id, remote.cluster
                    ),
                );
                self.decide(host)
            }
        }
    }

    /// The host could not tell the time, so `exp` and `nbf` cannot be checked: 503, since the
    /// fault is the proxy's and a client retrying the same token may well succeed.
    fn no_clock(&mut self, host: &mut dyn Host, err: &HostError) -> Action {
        bump(host, self.shared.metrics.clock_failed);
        host.log(
            LogLevel::Error,
            &format!(
                "#{} jwt-auth: cannot read the clock: {err}; refused with 503",
                self.context_id
            ),
        );
        let body = serde_json::json!({
            "error": "temporarily_unavailable",
            "error_description": "the proxy cannot tell the time to check the token",
        })
        .to_string();
        self.paused = false;
        Action::Reply(
            LocalReply::new(503)
                .header("content-type", "application/json")
                .body(body),
        )
    }

    fn allow(&mut self, host: &mut dyn Host) -> Action {
        if std::mem::take(&mut self.paused) {
            host.resume_request();
        }
        Action::Continue
    }

    fn deny(&mut self, host: &mut dyn Host, reason: Reason, scopes: &[String]) -> Action {
        if let Some(id) = self.shared.metrics.denied.get(&reason) {
            host.increment_metric(*id, 1);
        }
        host.log(
            LogLevel::Debug,
            &format!(
                "#{} jwt-auth: denied: {}",
                self.context_id,
                reason.description()
            ),
        );
        let realm = &self.shared.config.realm;
        let description = reason.description();
        let (status, challenge, error) = match reason {
            // RFC 6750 §3.1: a request without credentials gets no error code.
            Reason::Missing => (401, format!("Bearer realm=\"{realm}\""), "unauthorized"),
            Reason::InsufficientScope => {
                let mut challenge = format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{description}\""
                );
                if !scopes.is_empty() {
                    challenge.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
                }
                (403, challenge, "insufficient_scope")
            }
            _ => (
                401,
                format!("Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{description}\""),
                "invalid_token",
            ),
        };
        let body =
            serde_json::json!({ "error": error, "error_description": description }).to_string();
        self.paused = false;
        Action::Reply(
            LocalReply::new(status)
                .header("www-authenticate", &challenge)
                .header("content-type", "application/json")
                .body(body),
        )
    }
}

impl HttpFilter for JwtAuthFilter {
    fn on_request_headers(&mut self, host: &mut dyn Host, _end_of_stream: bool) -> Action {
        // Whatever happens next, a client never gets to set what this plugin vouches for.
        for header in &self.shared.config.output_headers {
            host.remove_header(Headers::Request, header);
        }
        self.decide(host)
    }

    fn on_http_call_response(&mut self, host: &mut dyn Host, token: u32, status: Option<u16>) {
        let Some((expected, provider, sent)) = self.call else {
            return;
        };
        if expected != token {
            return;
        }
        self.call = None;
        let who = format!("#{} ", self.context_id);
        self.shared.fetched(host, provider, sent, status, &who);
        // A decision, never a hang: keys or not, the stream is answered or resumed here
        // (or waits for the keys of another provider, under that callout's timeout).
        self.decide(host).settle(host);
    }
}
