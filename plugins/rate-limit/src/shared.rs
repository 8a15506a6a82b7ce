//! What the plugin root and every stream share: the compiled rules with their bucket
//! tables, remembered verdicts and stats, and the Envoy-wide key-hash seed.

use wasmgate_glue::{ConfigError, Counter, Host, HostError, MetricId, MetricKind};
use wasmgate_http::ClientIp;

use crate::bucket::{Limit, Seed};
use crate::global::Memory;
use crate::rules::{CompiledResponse, CompiledRule, CompiledService};
use crate::store::Table;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) rules: Vec<ActiveRule>,
    /// The rate limit service's domain: the configured `domain`.
    pub(crate) domain: String,
    /// Set when a rule is global.
    pub(crate) service: Option<CompiledService>,
    /// Some rule is global: its answer comes after every local rule took its tokens, so
    /// any of them may have to be refunded.
    pub(crate) any_global: bool,
    /// How the `client_ip` key part finds the client.
    pub(crate) client_ip: ClientIp,
    pub(crate) response: CompiledResponse,
    pub(crate) cleanup_interval_ns: u64,
    /// `rate_limit.clock_errors`: requests refused because the host could not tell the time.
    pub(crate) clock_errors: Counter,
    /// Keys the slot hash; the same in every worker, or workers would count a key apart.
    pub(crate) seed: Seed,
}

/// Shared-data key of the key-hash [`Seed`]: one per Envoy, for every rule and domain.
pub(crate) const SEED_KEY: &str = "rate_limit/seed";

/// The Envoy's key-hash seed: the one in shared data, or a new random one stored there.
///
/// Like the slots, the seed is created before any request is served (Envoy configures the
/// plugin on its main thread before the workers), and a worker that finds one uses it. The
/// value is read back after writing so that, should two writers race anyway, both use
/// what was stored last. No randomness, no seed: a fixed one would bring back the attack.
pub(crate) fn shared_seed(host: &mut dyn Host) -> Result<Seed, String> {
    let (stored, cas) = host.shared_data(SEED_KEY);
    if let Some(seed) = stored.as_deref().and_then(|v| Seed::try_from(v).ok()) {
        return Ok(seed);
    }
    let mut fresh = Seed::default();
    host.random(&mut fresh)
        .map_err(|err| format!("cannot get random bytes for the key-hash seed: {err}"))?;
    match host.set_shared_data(SEED_KEY, &fresh, cas) {
        Ok(()) | Err(HostError::CasMismatch) => {}
        Err(err) => {
            return Err(format!(
                "cannot store the key-hash seed in shared data: {err}"
            ))
        }
    }
    host.shared_data(SEED_KEY)
        .0
        .as_deref()
        .and_then(|v| Seed::try_from(v).ok())
        .ok_or_else(|| format!("the key-hash seed in shared data ({SEED_KEY}) is unreadable"))
}

/// A rule with its local buckets, its remembered verdicts when global, and its stats.
#[derive(Debug)]
pub(crate) struct ActiveRule {
    pub(crate) rule: CompiledRule,
    /// The local bucket table and its limit: every local rule, a global rule when asked.
    pub(crate) table: Option<(Table, Limit)>,
    pub(crate) memory: Option<Memory>,
    pub(crate) stats: Stats,
}

/// A rule's stats, `wasmcustom.rate_limit.<domain>.<rule>.<stat>` in Envoy.
///
/// [`Counter`]s: streams count with no host call and the root hands the counts to Envoy on
/// each tick; a host call per request and stat would cost as much as the rate limiting.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) allowed: Counter,
    pub(crate) limited: Counter,
    pub(crate) shadow_limited: Counter,
    pub(crate) store_errors: Counter,
    pub(crate) overflowed: Counter,
    /// A gauge, set by the sweep.
    pub(crate) live_keys: MetricId,
    pub(crate) service_errors: Counter,
    pub(crate) remembered: Counter,
}

impl Stats {
    pub(crate) fn define(
        host: &mut dyn Host,
        domain: &str,
        rule: &str,
    ) -> Result<Stats, ConfigError> {
        let name = |stat: &str| format!("rate_limit.{domain}.{rule}.{stat}");
        let live_keys = name("live_keys");
        let live_keys = host
            .define_metric(MetricKind::Gauge, &live_keys)
            .map_err(|err| {
                ConfigError::new("", format!("cannot define stat {live_keys}: {err}"))
            })?;
        // Naming and defining in one closure: seven call sites of it, not of both (issue 14).
        let mut counter = |stat: &str| Counter::define(host, &name(stat));
        Ok(Stats {
            allowed: counter("allowed")?,
            limited: counter("limited")?,
            shadow_limited: counter("shadow_limited")?,
            store_errors: counter("store_errors")?,
            overflowed: counter("overflowed")?,
            live_keys,
            service_errors: counter("service_errors")?,
            remembered: counter("remembered")?,
        })
    }

    /// Hand the counts gathered since the last flush to Envoy's stats.
    pub(crate) fn flush(&self, host: &mut dyn Host) {
        for counter in [
            &self.allowed,
            &self.limited,
            &self.shadow_limited,
            &self.store_errors,
            &self.overflowed,
            &self.service_errors,
            &self.remembered,
        ] {
            counter.flush(host);
        }
    }
}
