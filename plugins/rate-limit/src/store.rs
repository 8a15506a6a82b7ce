//! A rule's buckets in proxy-wasm shared data: a fixed table of slots, updated with
//! compare-and-swap.
//!
//! Shared data is one map for the whole Envoy process, so a bucket holds for every worker.
//! Entries can never be deleted, so a rule owns exactly `slots` entries named
//! `rate_limit/<domain>/<rule>/<index>`, plus one overflow bucket, all created at start:
//! Envoy's memory for the rule is fixed however many keys arrive. A key lives in the first
//! of [`PROBES`] slots from the one its fingerprint points to that holds it, is free, or
//! holds an idle key (a full bucket, which is the same as no bucket). When all of those
//! hold busy keys, the request is counted in the rule's overflow bucket.
//!
//! Creating an entry is not atomic in Envoy (a write to a missing key ignores the CAS), so
//! the entries are created before the rule serves any request, and afterwards only ever
//! replaced with compare-and-swap.

use wasmgate_glue::cas::{self, Plan, Updated};
use wasmgate_glue::{Host, HostError};

use crate::bucket::{home_slot, Decision, Fingerprint, Limit, Slot, EMPTY_SLOT};

/// Slots a key may occupy, counted from its home slot.
pub const PROBES: u32 = 4;
/// Compare-and-swap attempts before a request is decided by the rule's `failure_mode`.
pub const MAX_ATTEMPTS: u32 = 16;

/// One rule's slots.
#[derive(Debug, Clone)]
pub struct Table {
    prefix: String,
    slots: u32,
}

/// Where a request's tokens were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Slot(u32),
    /// The rule's overflow bucket, for keys that found no slot.
    Overflow,
}

/// A decision and the bucket it was made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub decision: Decision,
    pub place: Place,
}

/// A slot as read: its shared-data key, its contents (`None`: no entry) and CAS token.
struct Entry {
    key: String,
    slot: Option<Slot>,
    cas: Option<u32>,
}

/// Why the store could not decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Every compare-and-swap attempt lost against other writers.
    Contention,
    /// The host refused a write.
    Host(HostError),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Contention => write!(
                f,
                "shared data stayed contended for {MAX_ATTEMPTS} compare-and-swap attempts"
            ),
            StoreError::Host(err) => write!(f, "shared data write failed: {err}"),
        }
    }
}

impl Table {
    /// The table of rule `rule` in `domain`, with `slots` slots (at least 1).
    pub fn new(domain: &str, rule: &str, slots: u32) -> Table {
        Table {
            prefix: format!("rate_limit/{domain}/{rule}/"),
            slots: slots.max(1),
        }
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// The shared-data key of a slot.
    pub fn key(&self, place: Place) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 10);
        key.push_str(&self.prefix);
        match place {
            Place::Slot(index) => push_decimal(&mut key, u64::from(index)),
            Place::Overflow => key.push_str("overflow"),
        }
        key
    }

    /// Create every entry that does not exist yet; existing ones (from another worker, or
    /// from before a configuration reload) keep their buckets.
    pub fn create(&self, host: &mut dyn Host) -> Result<(), HostError> {
        let places = (0..self.slots)
            .map(Place::Slot)
            .chain(std::iter::once(Place::Overflow));
        for place in places {
            let key = self.key(place);
            if host.shared_data(&key).0.is_none() {
                host.set_shared_data(&key, EMPTY_SLOT, None)?;
            }
        }
        Ok(())
    }

    /// A slot's entry, with its key so that writing it back builds no second key.
    fn read(&self, host: &dyn Host, place: Place) -> Entry {
        let key = self.key(place);
        let (value, cas) = host.shared_data(&key);
        Entry {
            key,
            slot: value.map(|v| Slot::decode(&v)),
            cas,
        }
    }

    /// Take `cost` tokens from the bucket of `fingerprint` at `now`, if it has them.
    pub fn take(
        &self,
        host: &mut dyn Host,
        limit: &Limit,
        fingerprint: Fingerprint,
        cost: u32,
        now: u64,
    ) -> Result<Taken, StoreError> {
        let updated = cas::update(host, MAX_ATTEMPTS, |host| {
            let (place, bucket, Entry { key, cas, .. }) = self.find(host, limit, fingerprint, now);
            let decision = limit.take(bucket.unwrap_or_else(|| limit.fresh(now)), now, cost);
            if !decision.allowed {
                // A refusal changes nothing: the read was the bucket's state at that moment.
                return Plan::Stop(Taken { decision, place });
            }
            let slot = Slot::Taken {
                fingerprint,
                bucket: decision.bucket,
            };
            Plan::Write {
                key,
                value: slot.encode(),
                cas,
                then: Taken { decision, place },
            }
        });
        match updated {
            Updated::Written(taken) | Updated::Stopped(taken) => Ok(taken),
            Updated::Contended => Err(StoreError::Contention),
            Updated::Failed(err) => Err(StoreError::Host(err)),
        }
    }

    /// Where the key's bucket is: its slot, a slot it may take, or the overflow bucket;
    /// with the bucket (`None` for a new one) and the entry (key and CAS token) to write it
    /// back to.
    fn find(
        &self,
        host: &dyn Host,
        limit: &Limit,
        fingerprint: Fingerprint,
        now: u64,
    ) -> (Place, Option<crate::bucket::Bucket>, Entry) {
        let home = home_slot(fingerprint, self.slots);
        let mut free: Option<(Place, Entry)> = None;
        for probe in 0..PROBES.min(self.slots) {
            let place = Place::Slot((home + probe) % self.slots);
            let entry = self.read(host, place);
            match entry.slot {
                Some(Slot::Taken {
                    fingerprint: held,
                    bucket,
                }) if held == fingerprint => return (place, Some(bucket), entry),
                Some(Slot::Taken { bucket, .. }) if !limit.is_idle(bucket, now) => {}
                // Free, idle, or (never, since entries are created first) missing. The key
                // may still sit further on, so keep looking before taking this one.
                _ => {
                    free.get_or_insert((place, entry));
                }
            }
        }
        if let Some((place, entry)) = free {
            return (place, None, entry);
        }
        let entry = self.read(host, Place::Overflow);
        match entry.slot {
            Some(Slot::Taken { bucket, .. }) => (Place::Overflow, Some(bucket), entry),
            _ => (Place::Overflow, None, entry),
        }
    }

    /// Give back tokens taken by a request that a later rule refused. Best effort: when
    /// the slot changed hands or stays contended, the tokens stay taken.
    pub fn refund(
        &self,
        host: &mut dyn Host,
        limit: &Limit,
        fingerprint: Fingerprint,
        place: Place,
        cost: u32,
        now: u64,
    ) {
        // Whatever the outcome, the request is decided: nothing to report.
        let _ = cas::update(host, MAX_ATTEMPTS, |host| {
            let Entry { key, slot, cas } = self.read(host, place);
            let Some(Slot::Taken {
                fingerprint: held,
                bucket,
            }) = slot
            else {
                return Plan::Stop(());
            };
            if held != fingerprint && place != Place::Overflow {
                return Plan::Stop(());
            }
            let slot = Slot::Taken {
                fingerprint: held,
                bucket: limit.refund(bucket, now, cost),
            };
            Plan::Write {
                key,
                value: slot.encode(),
                cas,
                then: (),
            }
        });
    }

    /// Empty the idle slots among `range` and count the ones still holding a key.
    pub fn sweep(
        &self,
        host: &mut dyn Host,
        limit: &Limit,
        range: std::ops::Range<u32>,
        now: u64,
    ) -> u32 {
        let mut live = 0;
        for index in range {
            let place = Place::Slot(index);
            let Entry { key, slot, cas } = self.read(host, place);
            let Some(Slot::Taken { bucket, .. }) = slot else {
                continue;
            };
            // Losing the CAS means a request just used the key: it stays.
            let freed =
                limit.is_idle(bucket, now) && host.set_shared_data(&key, EMPTY_SLOT, cas).is_ok();
            if !freed {
                live += 1;
            }
        }
        live
    }
}

/// Append `n` in decimal, without the formatting machinery.
pub fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for digit in &digits[at..] {
        out.push(char::from(*digit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::Bucket;
    use wasmgate_glue::{FakeHost, ProxyState};

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_767_225_600 * SEC;
    const LIMIT: Limit = Limit {
        max_tokens: 2,
        tokens_per_fill: 2,
        fill_interval_ns: 60 * SEC,
    };

    fn table(host: &mut FakeHost, slots: u32) -> Table {
        let table = Table::new("d", "r", slots);
        table.create(host).unwrap();
        table
    }

    /// A fingerprint whose home slot is `home`.
    fn fp(id: u128, home: u128, slots: u128) -> Fingerprint {
        (id << 64) | (home + slots * id)
    }

    #[test]
    fn entries_are_created_once_and_then_kept() {
        let mut host = FakeHost::new();
        let table = table(&mut host, 3);
        assert_eq!(host.proxy.peek().shared.len(), 4);
        assert!(host.proxy.peek().shared.contains_key("rate_limit/d/r/2"));
        assert!(host
            .proxy
            .peek()
            .shared
            .contains_key("rate_limit/d/r/overflow"));
        let taken = table.take(&mut host, &LIMIT, 7, 1, T0).unwrap();
        table.create(&mut host).unwrap();
        let again = table.take(&mut host, &LIMIT, 7, 1, T0).unwrap();
        assert_eq!(again.place, taken.place);
        assert_eq!(
            again.decision.remaining, 0,
            "creating again kept the bucket"
        );
    }

    #[test]
    fn a_key_keeps_its_bucket_and_keys_do_not_share() {
        let mut host = FakeHost::new();
        let table = table(&mut host, 16);
        let a = fp(1, 5, 16);
        let b = fp(2, 5, 16);
        let take = |host: &mut FakeHost, key| table.take(host, &LIMIT, key, 1, T0).unwrap();
        assert_eq!(take(&mut host, a).place, Place::Slot(5));
        assert_eq!(take(&mut host, b).place, Place::Slot(6), "b probes past a");
        assert!(take(&mut host, a).decision.allowed);
        assert!(!take(&mut host, a).decision.allowed);
        assert!(take(&mut host, b).decision.allowed);
        assert!(!take(&mut host, b).decision.allowed);
    }

    #[test]
    fn a_key_is_found_past_a_freed_slot_instead_of_getting_a_second_bucket() {
        let mut host = FakeHost::new();
        let table = table(&mut host, 16);
        let (a, b) = (fp(1, 3, 16), fp(2, 3, 16));
        table.take(&mut host, &LIMIT, a, 2, T0).unwrap();
        assert_eq!(
            table.take(&mut host, &LIMIT, b, 2, T0).unwrap().place,
            Place::Slot(4)
        );
        host.set_shared_data("rate_limit/d/r/3", EMPTY_SLOT, None)
            .unwrap();
        let again = table.take(&mut host, &LIMIT, b, 1, T0).unwrap();
        assert_eq!(again.place, Place::Slot(4));
        assert!(!again.decision.allowed);
    }

    #[test]
    fn a_full_neighbourhood_sends_new_keys_to_the_overflow_bucket() {
        let mut host = FakeHost::new();
        let table = table(&mut host, 8);
        for id in 1..=4 {
            let t = table.take(&mut host, &LIMIT, fp(id, 0, 8), 1, T0).unwrap();
            assert_eq!(t.place, Place::Slot(id as u32 - 1));
        }
        let new = |id| fp(id, 0, 8);
        let t = table.take(&mut host, &LIMIT, new(10), 1, T0).unwrap();
        assert_eq!(t.place, Place::Overflow);
        // The overflow bucket is one bucket for every overflowing key.
        assert!(
            table
                .take(&mut host, &LIMIT, new(11), 1, T0)
                .unwrap()
                .decision
                .allowed
        );
        assert!(
            !table
                .take(&mut host, &LIMIT, new(12), 1, T0)
                .unwrap()
                .decision
                .allowed
        );
        // An idle key's slot is free again: its bucket was full, so nothing is lost.
        let later = T0 + 60 * SEC;
        let t = table.take(&mut host, &LIMIT, new(13), 1, later).unwrap();
        assert_eq!(t.place, Place::Slot(0));
        assert!(t.decision.allowed);
    }

    #[test]
    fn a_lost_compare_and_swap_is_retried_on_the_new_value() {
        /// Another worker takes one token from the bucket in `key` between our read and write.
        fn other_worker_takes_one(
            key: &str,
        ) -> impl FnMut(&mut ProxyState) -> Result<(), HostError> {
            let key = key.to_owned();
            move |state| {
                if let Some(Slot::Taken {
                    fingerprint,
                    bucket,
                }) = state.shared_value(&key).map(Slot::decode)
                {
                    let other = Slot::Taken {
                        fingerprint,
                        bucket: Bucket {
                            tokens: bucket.tokens - 1,
                            ..bucket
                        },
                    };
                    state.write_shared(&key, &other.encode());
                }
                Ok(())
            }
        }
        let limit = Limit {
            max_tokens: 3,
            ..LIMIT
        };
        let mut host = FakeHost::new();
        let table = table(&mut host, 1);
        table.take(&mut host, &limit, 0, 1, T0).unwrap();
        // The other worker takes one token first; ours is taken on top of it.
        let slot = table.key(Place::Slot(0));
        host.proxy
            .race_writes(&slot, 1, other_worker_takes_one(&slot));
        let t = table.take(&mut host, &limit, 0, 1, T0).unwrap();
        assert_eq!(t.decision.remaining, 0);
        assert!(
            !table
                .take(&mut host, &limit, 0, 1, T0)
                .unwrap()
                .decision
                .allowed
        );
        // Another worker wins every time: the store gives up after MAX_ATTEMPTS.
        let plenty = Limit {
            max_tokens: 100,
            tokens_per_fill: 100,
            ..LIMIT
        };
        let other = Table::new("d", "q", 1);
        other.create(&mut host).unwrap();
        other.take(&mut host, &plenty, 0, 1, T0).unwrap();
        let slot = other.key(Place::Slot(0));
        host.proxy
            .race_writes(&slot, MAX_ATTEMPTS, other_worker_takes_one(&slot));
        assert_eq!(
            other.take(&mut host, &plenty, 0, 1, T0),
            Err(StoreError::Contention)
        );
        assert_eq!(host.proxy.races_left(), 0);
    }

    #[test]
    fn refunds_go_back_to_the_same_key_only() {
        let mut host = FakeHost::new();
        let table = table(&mut host, 4);
        let t = table.take(&mut host, &LIMIT, 1, 2, T0).unwrap();
        table.refund(&mut host, &LIMIT, 2, t.place, 1, T0);
        assert!(
            !table
                .take(&mut host, &LIMIT, 1, 1, T0)
                .unwrap()
                .decision
                .allowed
        );
        table.refund(&mut host, &LIMIT, 1, t.place, 1, T0);
        assert!(
            table
                .take(&mut host, &LIMIT, 1, 1, T0)
                .unwrap()
                .decision
                .allowed
        );
    }

    #[test]
    fn sweeping_frees_idle_slots_and_counts_live_ones() {
        let mut host = FakeHost::new();
        let table = table(&mut host, 8);
        table.take(&mut host, &LIMIT, fp(1, 1, 8), 1, T0).unwrap();
        table
            .take(&mut host, &LIMIT, fp(2, 2, 8), 1, T0 + 30 * SEC)
            .unwrap();
        assert_eq!(table.sweep(&mut host, &LIMIT, 0..8, T0 + 30 * SEC), 2);
        assert_eq!(table.sweep(&mut host, &LIMIT, 0..8, T0 + 60 * SEC), 1);
        assert_eq!(host.proxy.shared("rate_limit/d/r/1").unwrap(), EMPTY_SLOT);
        assert_eq!(table.sweep(&mut host, &LIMIT, 0..2, T0 + 90 * SEC), 0);
        assert_eq!(
            host.proxy.peek().shared.len(),
            9,
            "sweeping never adds entries"
        );
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 4_294_967_295, u64::MAX] {
            let mut s = String::new();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }
}
