//! The plugin root (configuration, background JWKS refresh) and the per-stream filter:
//! which rule applies, the decision, forwarding what was verified, and the replies.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use wasmgate_glue::{
    parse_json, Action, ConfigError, Headers, Host, HostError, HttpFilter, LocalReply, LogLevel,
    Plugin, Warnings,
};
use wasmgate_http::{cookies, is_param, split, HeaderView};

use crate::cache::TokenCache;
use crate::claims::{header_value, lookup, scopes};
use crate::config::{Config, CryptoMode, Keys, Source};
use crate::eval::{without_fragment, Decision, Eval, Verified};
use crate::hostcrypto;
use crate::keys::{choose_crypto, now_ms, CryptoPath, Metrics, ProviderKeys, Shared, State};
use crate::remote;
use crate::token::Reason;

/// Shortest and longest tick period: the background JWKS refresh, and the counters
/// handed to Envoy.
const MIN_TICK: Duration = Duration::from_millis(100);
const MAX_TICK: Duration = Duration::from_secs(1);

/// The plugin's root: configuration compiled once, keys, the token cache.
#[derive(Debug)]
pub struct JwtAuth {
    shared: Rc<Shared>,
}

impl Plugin for JwtAuth {
    const NAME: &'static str = "jwt-auth";
    type Filter = JwtAuthFilter;
    // Ticks refresh remote JWKS, whose fetches answer on the root; a stream paused for keys
    // is answered on its own callout. Nothing is done on responses.
    const CALLBACKS: wasmgate_glue::Callbacks = wasmgate_glue::Callbacks {
        tick: true,
        http_call_response: true,
        ..wasmgate_glue::Callbacks::NONE
    };

    fn configure(config: &[u8], host: &mut dyn Host) -> Result<Self, ConfigError> {
        let config = parse_json::<Config>(config)?.compile()?;
        for warning in config.warnings.iter() {
            host.log(
                LogLevel::Warn,
                &format!("jwt-auth: configuration: {warning}"),
            );
        }
        let crypto = choose_crypto(config.crypto, host);
        if crypto == CryptoPath::Module {
            hostcrypto::check_module_only(&config)?;
        }
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
                metrics: Metrics::define(host)?,
                crypto: Cell::new(crypto),
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

    /// The configuration's own checks, without a host to probe: keys only a host verifies
    /// with are refused for `crypto: module` alone (with `auto` or `host`, Envoy decides).
    fn validate(config: &[u8]) -> Result<Warnings, ConfigError> {
        let config = parse_json::<Config>(config)?.compile()?;
        if config.crypto == CryptoMode::Module {
            hostcrypto::check_module_only(&config)?;
        }
        Ok(config.warnings)
    }

    fn on_start(&mut self, host: &mut dyn Host) {
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
        // Every second at least, so the counters reach Envoy's stats.
        host.set_tick_period(period.map_or(MAX_TICK, |p| p.clamp(MIN_TICK, MAX_TICK)));
    }

    fn on_tick(&mut self, host: &mut dyn Host) {
        self.shared.metrics.flush(host);
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
                    self.shared.metrics.fetch_failed.inc();
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

#[cfg(test)]
impl JwtAuth {
    /// What the tick does for the counters: hand them to `host`.
    pub(crate) fn flush_metrics(&self, host: &mut dyn Host) {
        self.shared.metrics.flush(host);
    }
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
        let mut request = HeaderView::request();
        if shared.reads_method {
            request.method(host);
        }
        if config.bypass_cors_preflight
            && request.cached(":method") == Some("OPTIONS")
            && request.get(host, "origin").is_some()
            && request.get(host, "access-control-request-method").is_some()
        {
            return self.allow(host);
        }
        request.target(host);
        // A rule without methods matches any, so the empty method stands for the unread one.
        let method = request.cached(":method").unwrap_or("");
        let bare_path = without_fragment(split(request.cached(":path").unwrap_or("")).0);
        let rule = config.rules.iter().find(|r| r.matches(method, bare_path));
        let requirement = match rule {
            Some(rule) => rule.requires.as_ref(),
            None => config.default.as_ref(),
        };
        let Some(requirement) = requirement else {
            return self.allow(host);
        };
        let mut eval = Eval::new(&shared, &self.fetched, &mut request);
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
        self.forward(host, &mut request, &verified);
        shared.metrics.allowed.inc();
        self.allow(host)
    }

    /// Put what the providers want upstream, and strip tokens that are not forwarded.
    fn forward(
        &self,
        host: &mut dyn Host,
        request: &mut HeaderView<'_>,
        verified: &[Rc<Verified>],
    ) {
        // Copied only when a token is taken out of the query.
        let mut new_path: Option<String> = None;
        for v in verified {
            let provider = &self.shared.config.providers[v.provider];
            if !provider.forward {
                match &provider.sources[v.source] {
                    Source::Header { name, .. } => host.remove_header(Headers::Request, name),
                    Source::Param(name) => {
                        let current = match &new_path {
                            Some(path) => path.as_str(),
                            None => request.target(host).unwrap_or(""),
                        };
                        let next = remove_param(current, name);
                        new_path = Some(next);
                    }
                    Source::Cookie(name) => {
                        // Read with the token (no second host call), and as left by the
                        // removal of another provider's cookie.
                        let rest = remove_cookie(request.get(host, "cookie").unwrap_or(""), name);
                        if rest.is_empty() {
                            host.remove_header(Headers::Request, "cookie");
                            request.remember(Cow::Borrowed("cookie"), None);
                        } else {
                            host.set_header(Headers::Request, "cookie", &rest);
                            request.remember(Cow::Borrowed("cookie"), Some(Cow::Owned(rest)));
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
        self.shared.metrics.clock_failed.inc();
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
        if let Some(counter) = self.shared.metrics.denied.get(&reason) {
            counter.inc();
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
