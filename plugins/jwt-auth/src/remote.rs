//! Remote JWKS shared by every worker of one Envoy through proxy-wasm shared data.
//!
//! Two shared-data entries per JWKS (prefix [`Remote::shared_key`]):
//! - `#keys`: `<fetched_at_ms>\n<JWKS document>`, the last good key set. Only a fetch that
//!   gave a usable key set writes it, so a failed or empty fetch never replaces it.
//! - `#fetch`: `<lease_until_ms> <failures> <next_attempt_ms> <kid_refetch_ms>`, written
//!   with compare-and-swap so that one worker at a time fetches (the lease), failures back
//!   off, and unknown-`kid` refetches are rate-limited across the whole Envoy.

use std::time::Duration;

use wasmgate_glue::cas::{self, Plan, Updated};
use wasmgate_glue::{Host, HostError, HttpCall};

use crate::config::Remote;

/// The largest JWKS document read from a callout response.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;
/// First retry delay after a failed fetch; doubles with each failure.
const BACKOFF_BASE_MS: u64 = 1000;
/// Longest retry delay.
const BACKOFF_MAX_MS: u64 = 60_000;
/// How many times a record update is retried when another worker wrote in between.
const CAS_TRIES: u32 = 4;

/// The fetch coordination record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchRecord {
    /// A fetch is in flight until then (Unix ms).
    pub lease_until: u64,
    /// Failed fetches in a row.
    pub failures: u32,
    /// No fetch before then, after failures (Unix ms).
    pub next_attempt: u64,
    /// The last refetch for an unknown `kid` (Unix ms).
    pub kid_refetch: u64,
}

impl FetchRecord {
    fn parse(bytes: &[u8]) -> FetchRecord {
        let text = String::from_utf8_lossy(bytes);
        let mut numbers = text.split(' ').map(|n| n.parse::<u64>().unwrap_or(0));
        let mut next = || numbers.next().unwrap_or(0);
        FetchRecord {
            lease_until: next(),
            failures: u32::try_from(next()).unwrap_or(u32::MAX),
            next_attempt: next(),
            kid_refetch: next(),
        }
    }

    fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.lease_until, self.failures, self.next_attempt, self.kid_refetch
        )
    }
}

fn keys_key(remote: &Remote) -> String {
    format!("{}#keys", remote.shared_key)
}

fn fetch_key(remote: &Remote) -> String {
    format!("{}#fetch", remote.shared_key)
}

fn read_record(host: &dyn Host, remote: &Remote) -> (FetchRecord, Option<u32>) {
    let (value, cas) = host.shared_data(&fetch_key(remote));
    (
        value.map(|v| FetchRecord::parse(&v)).unwrap_or_default(),
        cas,
    )
}

/// Change the record with `change` (which may decline by returning `false`), retrying when
/// another worker wrote in between. Whether the change was written. A missing record is
/// created only if no other worker created one meanwhile ([`cas::NEW_ENTRY`]), so two
/// workers cannot both take the lease.
fn update_record(
    host: &mut dyn Host,
    remote: &Remote,
    mut change: impl FnMut(&mut FetchRecord) -> bool,
) -> bool {
    let updated = cas::update(host, CAS_TRIES, |host| {
        let (mut record, cas) = read_record(host, remote);
        if !change(&mut record) {
            return Plan::Stop(());
        }
        Plan::Write {
            key: fetch_key(remote),
            value: record.encode().into_bytes(),
            cas,
            then: (),
        }
    });
    updated == Updated::Written(())
}

/// The shared key set: (fetched at, Unix ms; the JWKS document).
pub fn load(host: &dyn Host, remote: &Remote) -> Option<(u64, Vec<u8>)> {
    let value = host.shared_data(&keys_key(remote)).0?;
    let newline = value.iter().position(|b| *b == b'\n')?;
    let fetched_at = std::str::from_utf8(&value[..newline]).ok()?.parse().ok()?;
    Some((fetched_at, value[newline + 1..].to_vec()))
}

/// When the shared key set was fetched (Unix ms), if there is one.
fn shared_fetched_at(host: &dyn Host, remote: &Remote) -> Option<u64> {
    load(host, remote).map(|(at, _)| at)
}

/// Whether keys fetched at `fetched_at` should be refreshed at `now`: after four fifths of
/// `cache_duration`, so that fresh keys are in place before the old ones expire.
pub fn due(remote: &Remote, fetched_at: Option<u64>, now: u64) -> bool {
    match fetched_at {
        None => true,
        Some(at) => now >= at.saturating_add(millis(remote.cache_duration) * 4 / 5),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Try to become the one worker that refreshes this JWKS now. False when the keys are
/// fresh, another fetch is in flight, or failures are backing off.
pub fn try_lease(host: &mut dyn Host, remote: &Remote, now: u64) -> bool {
    let lease = now
        .saturating_add(millis(remote.timeout))
        .saturating_add(1000);
    let fetched_at = shared_fetched_at(host, remote);
    if !due(remote, fetched_at, now) {
        return false;
    }
    update_record(host, remote, |record| {
        if record.lease_until > now || record.next_attempt > now {
            return false;
        }
        record.lease_until = lease;
        true
    })
}

/// Whether a request waiting for a first key set may fetch one now (not while failures
/// are backing off).
pub fn may_fetch_cold(host: &dyn Host, remote: &Remote, now: u64) -> bool {
    read_record(host, remote).0.next_attempt <= now
}

/// Claim the Envoy-wide unknown-`kid` refetch slot: at most one per `refetch_interval`.
pub fn try_kid_refetch(host: &mut dyn Host, remote: &Remote, now: u64) -> bool {
    let interval = millis(remote.refetch_interval);
    update_record(host, remote, |record| {
        if record.kid_refetch != 0 && now < record.kid_refetch.saturating_add(interval) {
            return false;
        }
        if record.next_attempt > now {
            return false;
        }
        record.kid_refetch = now;
        true
    })
}

/// Store a good key set, fetched by a request sent at `sent` (Unix ms), for every worker,
/// and end the lease. A set from a request sent before the one already shared is older
/// (a slow fetch can finish after a quicker, later one) and is not stored. The stored
/// version is `sent`, or one more than the shared one when both were sent in the same
/// millisecond, so versions only grow and workers can tell a new set from the one they
/// have. Whether the shared set is now this one; `Err` when the host refused the write.
pub fn publish(
    host: &mut dyn Host,
    remote: &Remote,
    sent: u64,
    document: &[u8],
) -> Result<bool, HostError> {
    let updated = cas::update(host, CAS_TRIES, |host| {
        let (current, cas) = host.shared_data(&keys_key(remote));
        let shared_at = current.as_deref().and_then(|v| {
            let newline = v.iter().position(|b| *b == b'\n')?;
            std::str::from_utf8(&v[..newline]).ok()?.parse::<u64>().ok()
        });
        if shared_at.is_some_and(|at| at > sent) {
            return Plan::Stop(false);
        }
        let version = shared_at.map_or(sent, |at| sent.max(at + 1));
        let mut value = format!("{version}\n").into_bytes();
        value.extend_from_slice(document);
        Plan::Write {
            key: keys_key(remote),
            value,
            cas,
            then: true,
        }
    });
    let stored = match updated {
        Updated::Written(stored) | Updated::Stopped(stored) => Ok(stored),
        Updated::Contended => Ok(false),
        Updated::Failed(err) => Err(err),
    };
    // Keys first, then the record: a worker that sees the lease released also sees the keys.
    update_record(host, remote, |record| {
        record.lease_until = 0;
        record.failures = 0;
        record.next_attempt = 0;
        true
    });
    stored
}

/// Note a failed fetch: end the lease and back off (1 s, 2 s, 4 s, ... up to 60 s, and
/// never beyond `cache_duration`).
pub fn record_failure(host: &mut dyn Host, remote: &Remote, now: u64) {
    let cap = BACKOFF_MAX_MS
        .min(millis(remote.cache_duration))
        .max(BACKOFF_BASE_MS);
    update_record(host, remote, |record| {
        record.lease_until = 0;
        record.failures = record.failures.saturating_add(1);
        let delay = BACKOFF_BASE_MS
            .saturating_mul(1u64 << record.failures.saturating_sub(1).min(16))
            .min(cap);
        record.next_attempt = now.saturating_add(delay);
        true
    });
}

/// Send the JWKS request.
pub fn dispatch(host: &mut dyn Host, remote: &Remote) -> Result<u32, HostError> {
    host.http_call(&HttpCall {
        cluster: &remote.cluster,
        headers: vec![
            (":method", "GET"),
            (":path", &remote.path),
            (":authority", &remote.authority),
            ("accept", "application/json"),
        ],
        body: None,
        timeout: remote.timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate_glue::FakeHost;

    fn remote() -> Remote {
        Remote {
            cluster: "jwks".into(),
            authority: "issuer".into(),
            path: "/jwks".into(),
            timeout: Duration::from_secs(1),
            cache_duration: Duration::from_secs(10),
            refetch_interval: Duration::from_secs(5),
            shared_key: "k".into(),
        }
    }

    #[test]
    fn one_lease_at_a_time_until_published() {
        let (mut host, r) = (FakeHost::new(), remote());
        assert!(try_lease(&mut host, &r, 1000));
        assert!(!try_lease(&mut host, &r, 1001), "a fetch is in flight");
        assert_eq!(publish(&mut host, &r, 1002, b"{}"), Ok(true));
        assert_eq!(load(&host, &r), Some((1002, b"{}".to_vec())));
        assert!(!try_lease(&mut host, &r, 1003), "fresh keys need no fetch");
        assert!(
            try_lease(&mut host, &r, 1002 + 8000),
            "refreshed before expiry"
        );
    }

    #[test]
    fn a_slow_fetch_never_replaces_keys_from_a_later_request() {
        let (mut host, r) = (FakeHost::new(), remote());
        assert_eq!(publish(&mut host, &r, 2000, b"new"), Ok(true));
        assert_eq!(publish(&mut host, &r, 1000, b"old"), Ok(false));
        assert_eq!(load(&host, &r), Some((2000, b"new".to_vec())));
        // Sent in the same millisecond: stored, with a version of its own.
        assert_eq!(publish(&mut host, &r, 2000, b"same"), Ok(true));
        assert_eq!(load(&host, &r), Some((2001, b"same".to_vec())));
    }

    #[test]
    fn an_expired_lease_can_be_taken_over() {
        let (mut host, r) = (FakeHost::new(), remote());
        assert!(try_lease(&mut host, &r, 0));
        assert!(try_lease(&mut host, &r, 2001));
    }

    #[test]
    fn failures_back_off_exponentially_capped() {
        let (mut host, r) = (FakeHost::new(), remote());
        assert!(try_lease(&mut host, &r, 0));
        record_failure(&mut host, &r, 0);
        assert!(!try_lease(&mut host, &r, 999));
        assert!(!may_fetch_cold(&host, &r, 999));
        assert!(try_lease(&mut host, &r, 1000));
        record_failure(&mut host, &r, 1000);
        assert_eq!(read_record(&host, &r).0.next_attempt, 3000);
        for _ in 0..10 {
            record_failure(&mut host, &r, 1000);
        }
        assert_eq!(
            read_record(&host, &r).0.next_attempt,
            11_000,
            "capped at cache_duration"
        );
    }

    #[test]
    fn unknown_kid_refetches_are_rate_limited() {
        let (mut host, r) = (FakeHost::new(), remote());
        assert!(try_kid_refetch(&mut host, &r, 100));
        assert!(!try_kid_refetch(&mut host, &r, 5099));
        assert!(try_kid_refetch(&mut host, &r, 5100));
    }

    #[test]
    fn records_round_trip() {
        let r = FetchRecord {
            lease_until: 1,
            failures: 2,
            next_attempt: 3,
            kid_refetch: 4,
        };
        assert_eq!(FetchRecord::parse(r.encode().as_bytes()), r);
        assert_eq!(FetchRecord::parse(b"garbage"), FetchRecord::default());
    }
}
