//! Envoy counters as plugins keep them: defined once, counted without a host call.

use std::cell::Cell;

use crate::host::{Host, MetricId, MetricKind};
use crate::plugin::ConfigError;

/// One Envoy counter (`wasmcustom.<name>`), defined once when the plugin is configured.
///
/// Streams [`add`](Counter::add) to a count kept in the Wasm VM, which costs no host call
/// and no allocation; the plugin root hands the count to Envoy on each tick
/// ([`flush`](Counter::flush), one `increment_metric` per counter that moved). A host call
/// per count would cost more than some filters' whole work, so Envoy's stats trail the
/// traffic by at most the tick period. A VM runs on one thread, hence a `Cell`.
#[derive(Debug, Default)]
pub struct Counter {
    /// `None` for a counter that counts nothing (an unnamed rule's).
    id: Option<MetricId>,
    pending: Cell<u64>,
}

impl Counter {
    /// Define the counter `name`; a host that refuses makes the configuration fail, naming
    /// the stat, rather than leaving it silently at zero.
    pub fn define(host: &mut dyn Host, name: &str) -> Result<Counter, ConfigError> {
        match host.define_metric(MetricKind::Counter, name) {
            Ok(id) => Ok(Counter {
                id: Some(id),
                pending: Cell::new(0),
            }),
            Err(err) => Err(ConfigError::new(
                "",
                format!("cannot define stat {name}: {err}"),
            )),
        }
    }

    /// A counter that counts nothing, for something without a stat.
    pub fn none() -> Counter {
        Counter::default()
    }

    /// Count one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Count `by`.
    pub fn add(&self, by: u64) {
        if self.id.is_some() {
            self.pending.set(self.pending.get().saturating_add(by));
        }
    }

    /// Take back one count not handed to Envoy yet (a request counted, then undone).
    /// Once flushed, a count stays: Envoy counters only go up.
    pub fn take_back(&self) {
        self.pending.set(self.pending.get().saturating_sub(1));
    }

    /// What was counted since the last flush.
    pub fn pending(&self) -> u64 {
        self.pending.get()
    }

    /// Hand what was counted since the last flush to Envoy: one host call, none when
    /// nothing was counted.
    pub fn flush(&self, host: &mut dyn Host) {
        let by = self.pending.replace(0);
        if let (Some(id), true) = (self.id, by > 0) {
            host.increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeHost;

    #[test]
    fn counts_reach_envoy_on_flush_with_one_call() {
        let mut host = FakeHost::new();
        let counter = Counter::define(&mut host, "p.allowed").unwrap();
        host.reset_host_calls();
        counter.inc();
        counter.add(2);
        counter.inc();
        counter.take_back();
        assert_eq!(host.calls_made(), 0);
        assert_eq!(host.metric("p.allowed"), Some(0));
        counter.flush(&mut host);
        assert_eq!(host.metric("p.allowed"), Some(3));
        assert_eq!(host.host_calls(), [("increment_metric", 1)].into());
        // Nothing new: no call.
        counter.flush(&mut host);
        assert_eq!(host.calls_made(), 1);
        assert_eq!(counter.pending(), 0);
    }

    #[test]
    fn a_counter_without_a_stat_counts_nothing() {
        let mut host = FakeHost::new();
        let counter = Counter::none();
        counter.inc();
        counter.flush(&mut host);
        assert_eq!(counter.pending(), 0);
        assert_eq!(host.calls_made(), 0);
    }
}
