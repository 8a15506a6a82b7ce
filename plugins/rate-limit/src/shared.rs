//! What the plugin root and every stream share: the compiled rules with their bucket
//! tables, remembered verdicts and stats, and the Envoy-wide key-hash seed.

use std::cell::Cell;

use wasmgate_glue::{ConfigError, Host, HostError, MetricId, MetricKind};

use crate::bucket::Limit;
use crate::bucket::Seed;
use crate::config::{CompiledResponse, CompiledRule, CompiledService};
use crate::global::Memory;
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
    pub(crate) xff_hop: u32,
    pub(crate) response: CompiledResponse,
    pub(crate) cleanup_interval_ns: u64,
    /// `rate_limit.clock_errors`: requests refused because the host could not tell the time.
    pub(crate) clock_errors: MetricId,
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
    pub(crate) counts: Counts,
}

/// A rule's stats, `wasmcustom.rate_limit.<domain>.<rule>.<stat>` in Envoy.
///
/// Streams count in [`Counts`] and the root adds the counts to Envoy's stats on each tick:
/// a host call per request and stat would cost as much as the rate limiting itself.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) allowed: MetricId,
    pub(crate) limited: MetricId,
    pub(crate) shadow_limited: MetricId,
    pub(crate) store_errors: MetricId,
    pub(crate) overflowed: MetricId,
    pub(crate) live_keys: MetricId,
    pub(crate) service_errors: MetricId,
    pub(crate) remembered: MetricId,
}

impl Stats {
    pub(crate) fn define(
        host: &mut dyn Host,
        domain: &str,
        rule: &str,
    ) -> Result<Stats, ConfigError> {
        let mut define = |kind, stat: &str| {
            let name = format!("rate_limit.{domain}.{rule}.{stat}");
            host.define_metric(kind, &name)
                .map_err(|err| ConfigError::new("", format!("cannot define stat {name}: {err}")))
        };
        Ok(Stats {
            allowed: define(MetricKind::Counter, "allowed")?,
            limited: define(MetricKind::Counter, "limited")?,
            shadow_limited: define(MetricKind::Counter, "shadow_limited")?,
            store_errors: define(MetricKind::Counter, "store_errors")?,
            overflowed: define(MetricKind::Counter, "overflowed")?,
            live_keys: define(MetricKind::Gauge, "live_keys")?,
            service_errors: define(MetricKind::Counter, "service_errors")?,
            remembered: define(MetricKind::Counter, "remembered")?,
        })
    }
}

/// Counts of a rule not yet added to Envoy's stats.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) allowed: Cell<u64>,
    pub(crate) limited: Cell<u64>,
    pub(crate) shadow_limited: Cell<u64>,
    pub(crate) store_errors: Cell<u64>,
    pub(crate) overflowed: Cell<u64>,
    pub(crate) service_errors: Cell<u64>,
    pub(crate) remembered: Cell<u64>,
}

pub(crate) fn bump(count: &Cell<u64>) {
    count.set(count.get() + 1);
}

pub(crate) fn unbump(count: &Cell<u64>) {
    count.set(count.get().saturating_sub(1));
}

impl ActiveRule {
    /// Add the counts gathered since the last flush to Envoy's stats.
    pub(crate) fn flush(&self, host: &mut dyn Host) {
        let (counts, stats) = (&self.counts, &self.stats);
        for (count, id) in [
            (&counts.allowed, stats.allowed),
            (&counts.limited, stats.limited),
            (&counts.shadow_limited, stats.shadow_limited),
            (&counts.store_errors, stats.store_errors),
            (&counts.overflowed, stats.overflowed),
            (&counts.service_errors, stats.service_errors),
            (&counts.remembered, stats.remembered),
        ] {
            let delta = count.replace(0);
            if delta > 0 {
                host.increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX));
            }
        }
    }
}
