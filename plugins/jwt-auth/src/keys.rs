//! What the plugin root and every stream share: the compiled configuration, counters, each
//! provider's keys in this worker (loaded from and published to the Envoy-wide shared set),
//! and where signatures are verified.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::SystemTime;

use wasmgate_glue::{ConfigError, Counter, Host, HostError, LogLevel};

use crate::cache::TokenCache;
use crate::config::{Compiled, CryptoMode, Keys, Remote};
use crate::hostcrypto;
use crate::jwk::KeySet;
use crate::remote;
use crate::token::Reason;

/// Counters, defined once in `configure`; streams count with no host call and the root's
/// tick hands the counts to Envoy ([`Counter`]).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) allowed: Counter,
    pub(crate) denied: HashMap<Reason, Counter>,
    pub(crate) cache_hit: Counter,
    pub(crate) cache_miss: Counter,
    pub(crate) fetch_ok: Counter,
    pub(crate) fetch_failed: Counter,
    /// Requests refused with 503 because the host could not tell the time.
    pub(crate) clock_failed: Counter,
    /// Signatures the host was asked to verify (`verify_signature`).
    pub(crate) host_verify: Counter,
    /// Host verifications that gave no verdict (an error or a malformed answer): refused.
    pub(crate) host_verify_failed: Counter,
    /// Keys of fetched JWKS documents left out (unusable, or usable only by a host that
    /// does not verify here).
    pub(crate) jwks_keys_skipped: Counter,
}

impl Metrics {
    pub(crate) fn define(host: &mut dyn Host) -> Result<Metrics, ConfigError> {
        let mut denied = HashMap::new();
        for reason in Reason::ALL {
            let name = format!("jwt_auth.denied.{}", reason.metric());
            denied.insert(reason, Counter::define(host, &name)?);
        }
        Ok(Metrics {
            allowed: Counter::define(host, "jwt_auth.allowed")?,
            cache_hit: Counter::define(host, "jwt_auth.cache_hit")?,
            cache_miss: Counter::define(host, "jwt_auth.cache_miss")?,
            fetch_ok: Counter::define(host, "jwt_auth.jwks_fetch_ok")?,
            fetch_failed: Counter::define(host, "jwt_auth.jwks_fetch_failed")?,
            clock_failed: Counter::define(host, "jwt_auth.clock_failed")?,
            host_verify: Counter::define(host, "jwt_auth.host_verify")?,
            host_verify_failed: Counter::define(host, "jwt_auth.host_verify_failed")?,
            jwks_keys_skipped: Counter::define(host, "jwt_auth.jwks_keys_skipped")?,
            denied,
        })
    }

    /// Hand the counts gathered since the last flush to Envoy's stats.
    pub(crate) fn flush(&self, host: &mut dyn Host) {
        for counter in [
            &self.allowed,
            &self.cache_hit,
            &self.cache_miss,
            &self.fetch_ok,
            &self.fetch_failed,
            &self.clock_failed,
            &self.host_verify,
            &self.host_verify_failed,
            &self.jwks_keys_skipped,
        ] {
            counter.flush(host);
        }
        for counter in self.denied.values() {
            counter.flush(host);
        }
    }
}

/// One provider's current keys in this worker.
#[derive(Debug, Default)]
pub(crate) struct ProviderKeys {
    pub(crate) set: Option<Rc<KeySet>>,
    /// Changes whenever `set` does, so cached verifications by old keys are dropped.
    pub(crate) generation: u64,
    /// When the shared set this worker loaded was fetched (Unix ms); 0 for local keys.
    pub(crate) fetched_at: u64,
}

/// Mutable state of one worker, shared by the root and every stream.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) keys: Vec<ProviderKeys>,
    pub(crate) cache: TokenCache,
    pub(crate) next_generation: u64,
    /// Root callouts in flight: token → (provider, sent at in Unix ms).
    pub(crate) root_calls: HashMap<u32, (usize, u64)>,
}

/// What the root and the streams share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Compiled,
    pub(crate) metrics: Metrics,
    /// Where RS* and ES* signatures go (decided in `on_start`).
    pub(crate) crypto: Cell<CryptoPath>,
    /// Whether a decision depends on the method (a rule names methods, or CORS preflights
    /// pass): when not, `:method` is never read, one host call less per request.
    pub(crate) reads_method: bool,
    pub(crate) state: RefCell<State>,
}

/// The host's time in Unix ms. A failed clock is an error for the caller to fail closed on:
/// with a stand-in time, `exp` and `nbf` would say nothing.
pub(crate) fn now_ms(host: &dyn Host) -> Result<u64, HostError> {
    Ok(host
        .now()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0))
}

impl Shared {
    /// Whether every signature is verified in the module (no host does).
    fn module_only(&self) -> bool {
        self.crypto.get() == CryptoPath::Module
    }

    pub(crate) fn remote(&self, provider: usize) -> Option<&Remote> {
        match &self.config.providers.get(provider)?.keys {
            Keys::Remote(remote) => Some(remote),
            Keys::Local(_) => None,
        }
    }

    /// Load the Envoy-wide key set of a remote provider if it is newer than this worker's.
    pub(crate) fn sync(&self, host: &dyn Host, provider: usize) {
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
        if let Ok(read) = KeySet::lenient(&document, self.module_only()) {
            let set = read.set;
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
    pub(crate) fn fetched(
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
                    KeySet::lenient(&body, self.module_only()).map(|read| (read, body))
                }
            }
            Some(status) => Err(format!("status {status}")),
        };
        match outcome {
            Ok((read, body)) => {
                let (set, skipped) = (read.set, read.skipped);
                self.metrics.fetch_ok.inc();
                self.metrics
                    .jwks_keys_skipped
                    .add(u64::try_from(skipped).unwrap_or(u64::MAX));
                for line in &read.host_only {
                    host.log(
                        LogLevel::Warn,
                        &format!("{who}jwt-auth: provider {name}: key skipped, {line}"),
                    );
                }
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
                self.metrics.fetch_failed.inc();
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
pub(crate) enum CryptoPath {
    Module,
    /// By the host's `verify_signature`.
    Host,
    /// Nowhere: `crypto: host` and the host cannot; such tokens are refused.
    Refuse,
}

/// Where RS* and ES* signatures go, as `mode` asks and the host allows (probed once, in
/// `configure`, so that keys only the host verifies with can be refused there); the choice
/// is logged. `validate` (the CLI) does not probe: it needs no Envoy.
pub(crate) fn choose_crypto(mode: CryptoMode, host: &mut dyn Host) -> CryptoPath {
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
