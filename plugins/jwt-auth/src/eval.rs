//! One request's evaluation: finding each provider's token, verifying it (with the cache),
//! and combining providers into a requirement's decision.

use std::rc::Rc;

use serde_json::{Map, Value};
use wasmgate_glue::{Host, HostError, LogLevel};
use wasmgate_http::{cookie_values, query_values, split, HeaderView};

use crate::config::{Req, Source};
use crate::hostcrypto::{Crypto, HostCrypto};
use crate::jwk::KeySet;
use crate::keys::{now_ms, CryptoPath, Shared};
use crate::remote;
use crate::token::{Reason, Token};

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
    shared.metrics.host_verify.add(calls);
    if let Some(failure) = failure {
        shared.metrics.host_verify_failed.inc();
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
pub(crate) struct Verified {
    pub(crate) provider: usize,
    /// Which of the provider's sources held it.
    pub(crate) source: usize,
    pub(crate) token: String,
    pub(crate) claims: Rc<Map<String, Value>>,
}

/// A requirement's result.
#[derive(Debug)]
pub(crate) enum Decision {
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

/// One request's evaluation: header reads (through the request's [`HeaderView`]: providers
/// often share a source) and provider outcomes are done at most once.
pub(crate) struct Eval<'a, 'r> {
    shared: &'a Shared,
    fetched: &'a [bool],
    request: &'r mut HeaderView<'a>,
    outcomes: Vec<Option<Outcome>>,
}

impl<'a, 'r> Eval<'a, 'r> {
    /// An evaluation of `request`; `fetched` tells the providers whose keys this stream
    /// already fetched.
    pub(crate) fn new(
        shared: &'a Shared,
        fetched: &'a [bool],
        request: &'r mut HeaderView<'a>,
    ) -> Eval<'a, 'r> {
        Eval {
            shared,
            fetched,
            request,
            outcomes: vec![None; shared.config.providers.len()],
        }
    }

    #[inline(never)] // kept out of `check`, for the same reason as `check` itself
    fn find(&mut self, host: &dyn Host, provider: usize) -> Found {
        let shared = self.shared;
        let sources = &shared.config.providers[provider].sources;
        let mut found: Option<(String, usize)> = None;
        for (index, source) in sources.iter().enumerate() {
            let token = match source {
                Source::Header { name, prefix } => {
                    let Some(value) = self.request.get(host, name) else {
                        continue;
                    };
                    match strip_prefix(value, prefix) {
                        Some(token) => token.to_owned(),
                        None => continue,
                    }
                }
                Source::Param(name) => {
                    let target = self.request.target(host).unwrap_or("");
                    match query_values(query(target), name)
                        .collect::<Vec<_>>()
                        .as_slice()
                    {
                        [] => continue,
                        [one] => one.clone().into_owned(),
                        _ => return Found::Bad,
                    }
                }
                Source::Cookie(name) => {
                    let Some(value) = self.request.get(host, "cookie") else {
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

    // Never inlined into `requirement` (with it, one 8.4 KB function): Envoy's V8 keeps the
    // compiler's memory for a module's largest functions (bench/module-memory.md, issue 14).
    #[inline(never)]
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
                shared.metrics.cache_hit.inc();
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
            shared.metrics.cache_miss.inc();
        }
        Outcome::Verified(Rc::new(Verified {
            provider,
            source,
            token,
            claims,
        }))
    }

    pub(crate) fn requirement(&mut self, host: &mut dyn Host, req: &Req) -> Decision {
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
pub(crate) fn without_fragment(text: &str) -> &str {
    text.split_once('#').map_or(text, |(before, _)| before)
}

/// The query of a request target, without a fragment.
fn query(path: &str) -> &str {
    without_fragment(split(path).1.unwrap_or(""))
}
