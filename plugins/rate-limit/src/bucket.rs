//! Token bucket math as pure functions of a bucket and the time, and the compact binary
//! form a bucket takes in proxy-wasm shared data.
//!
//! Time is nanoseconds since the Unix epoch, passed in by the caller (the host's clock in
//! the filter, any value in tests). Refill is computed from the time elapsed since the
//! bucket's last fill, never from timers, so a bucket is right whenever it is read.

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

/// How a bucket fills: at most `max_tokens`, `tokens_per_fill` more every `fill_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Capacity: the largest burst the bucket allows.
    pub max_tokens: u32,
    /// Tokens added at each fill.
    pub tokens_per_fill: u32,
    /// Time between two fills, in nanoseconds (never 0).
    pub fill_interval_ns: u64,
}

/// The state of one key's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Tokens left.
    pub tokens: u32,
    /// When the bucket last filled; the next fill is one interval later.
    pub last_fill_ns: u64,
}

/// The answer to "may this request take `cost` tokens now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The bucket after the request: with the tokens taken when allowed, refilled either way.
    pub bucket: Bucket,
    /// Tokens left for later requests.
    pub remaining: u32,
    /// Nanoseconds until the next fill adds tokens (0 when the bucket is full).
    pub reset_ns: u64,
    /// When refused: nanoseconds until the bucket holds `cost` tokens again.
    pub retry_after_ns: u64,
}

impl Limit {
    /// A bucket first seen at `now`: full.
    pub fn fresh(&self, now: u64) -> Bucket {
        Bucket {
            tokens: self.max_tokens,
            last_fill_ns: now,
        }
    }

    /// The bucket at `now`, with every fill since its last one added.
    ///
    /// A bucket that is full again restarts its fill clock at `now`, so an idle bucket
    /// behaves exactly like a fresh one: that is what lets the store forget idle keys.
    /// A clock behind the bucket's (another worker's clock read a little later) adds nothing.
    pub fn refill(&self, bucket: Bucket, now: u64) -> Bucket {
        let fills = now.saturating_sub(bucket.last_fill_ns) / self.fill_interval_ns;
        let added = fills.saturating_mul(u64::from(self.tokens_per_fill));
        let tokens = u64::from(bucket.tokens).saturating_add(added);
        if tokens >= u64::from(self.max_tokens) {
            return self.fresh(now);
        }
        Bucket {
            // Below max_tokens, so it fits.
            tokens: tokens as u32,
            last_fill_ns: bucket.last_fill_ns + fills * self.fill_interval_ns,
        }
    }

    /// Whether the bucket is full at `now`, so forgetting it loses nothing.
    pub fn is_idle(&self, bucket: Bucket, now: u64) -> bool {
        self.refill(bucket, now).tokens >= self.max_tokens
    }

    /// Take `cost` tokens at `now` if the bucket has them.
    pub fn take(&self, bucket: Bucket, now: u64, cost: u32) -> Decision {
        let mut bucket = self.refill(bucket, now);
        let allowed = bucket.tokens >= cost;
        if allowed {
            bucket.tokens -= cost;
        }
        let next_fill = bucket.last_fill_ns.saturating_add(self.fill_interval_ns);
        let reset_ns = if bucket.tokens >= self.max_tokens {
            0
        } else {
            next_fill.saturating_sub(now)
        };
        let retry_after_ns = if allowed {
            0
        } else {
            let missing = u64::from(cost - bucket.tokens);
            let fills = missing.div_ceil(u64::from(self.tokens_per_fill));
            bucket
                .last_fill_ns
                .saturating_add(fills.saturating_mul(self.fill_interval_ns))
                .saturating_sub(now)
        };
        Decision {
            allowed,
            bucket,
            remaining: bucket.tokens,
            reset_ns,
            retry_after_ns,
        }
    }

    /// Give back `cost` tokens taken by a request that another rule then refused.
    pub fn refund(&self, bucket: Bucket, now: u64, cost: u32) -> Bucket {
        let bucket = self.refill(bucket, now);
        let tokens = bucket.tokens.saturating_add(cost);
        if tokens >= self.max_tokens {
            self.fresh(now)
        } else {
            Bucket { tokens, ..bucket }
        }
    }
}

/// Whole seconds, rounded up, as HTTP headers count them.
pub fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// A key's identity: 128 bits of hash of the key's parts. Slots store this instead of the
/// key, so a slot has a fixed size however long the key (a cookie, an API key) is.
pub type Fingerprint = u128;

/// A key's home among `slots` (at least 1): its fingerprint's low 64 bits modulo `slots`.
/// 64 bits of a SipHash are as evenly spread as 128, and `u128 %` costs the Wasm modules a
/// kilobyte of 128-bit division code (issue 14).
pub fn home_slot(fingerprint: Fingerprint, slots: u32) -> u32 {
    (fingerprint as u64 % u64::from(slots)) as u32
}

/// What one shared-data slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// No key: free for the next new key.
    Empty,
    /// A key's bucket.
    Taken {
        fingerprint: Fingerprint,
        bucket: Bucket,
    },
}

const TAG_EMPTY: u8 = 0;
const TAG_BUCKET_V1: u8 = 1;
/// tag, fingerprint, last fill, tokens.
const ENCODED_LEN: usize = 1 + 16 + 8 + 4;

/// The value of an empty slot. One byte, not zero: the host reports an empty value as absent.
pub const EMPTY_SLOT: &[u8] = &[TAG_EMPTY];

impl Slot {
    /// The slot's 29-byte form: tag, fingerprint, last fill and tokens, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Slot::Empty => EMPTY_SLOT.to_vec(),
            Slot::Taken {
                fingerprint,
                bucket,
            } => {
                let mut out = Vec::with_capacity(ENCODED_LEN);
                out.push(TAG_BUCKET_V1);
                out.extend_from_slice(&fingerprint.to_le_bytes());
                out.extend_from_slice(&bucket.last_fill_ns.to_le_bytes());
                out.extend_from_slice(&bucket.tokens.to_le_bytes());
                out
            }
        }
    }

    /// Read a slot. Anything that is not a bucket of this version reads as empty, so a slot
    /// written by another version is reused rather than trusted.
    pub fn decode(bytes: &[u8]) -> Slot {
        if bytes.len() != ENCODED_LEN || bytes[0] != TAG_BUCKET_V1 {
            return Slot::Empty;
        }
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(&bytes[1..17]);
        let mut last_fill = [0u8; 8];
        last_fill.copy_from_slice(&bytes[17..25]);
        let mut tokens = [0u8; 4];
        tokens.copy_from_slice(&bytes[25..29]);
        Slot::Taken {
            fingerprint: u128::from_le_bytes(fingerprint),
            bucket: Bucket {
                tokens: u32::from_le_bytes(tokens),
                last_fill_ns: u64::from_le_bytes(last_fill),
            },
        }
    }
}

/// The secret that keys [`KeyHasher`]: 128 random bits, one per Envoy, shared by its workers.
pub type Seed = [u8; 16];

/// Builds a key's [`Fingerprint`] from its parts without allocating: SipHash-1-3 with a
/// 128-bit output, keyed with the Envoy's [`Seed`]. The home slot is taken from the
/// fingerprint, so with an unkeyed hash whoever controls a key part (a header, a cookie)
/// could compute keys that land on a victim's slots and push its key into the overflow
/// bucket; without the seed, where a key lands cannot be predicted.
#[derive(Debug, Clone)]
pub struct KeyHasher {
    sip: SipHasher13,
}

impl KeyHasher {
    pub fn new(seed: &Seed) -> Self {
        KeyHasher {
            sip: SipHasher13::new_with_key(seed),
        }
    }

    /// Add one part: a tag saying what it is, its length and its bytes, so that no two
    /// different lists of parts hash the same stream.
    pub fn part(&mut self, tag: u8, value: &[u8]) {
        self.sip.write(&[tag]);
        self.sip.write(&(value.len() as u64).to_le_bytes());
        self.sip.write(value);
    }

    pub fn finish(&self) -> Fingerprint {
        self.sip.finish128().as_u128()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_767_225_600 * SEC;

    fn per_minute(n: u32) -> Limit {
        Limit {
            max_tokens: n,
            tokens_per_fill: n,
            fill_interval_ns: 60 * SEC,
        }
    }

    /// Run `count` requests of `cost` at `now`, returning how many were allowed.
    fn run(limit: &Limit, bucket: &mut Bucket, now: u64, count: u32, cost: u32) -> u32 {
        let mut allowed = 0;
        for _ in 0..count {
            let d = limit.take(*bucket, now, cost);
            *bucket = d.bucket;
            allowed += u32::from(d.allowed);
        }
        allowed
    }

    #[test]
    fn a_fresh_bucket_allows_exactly_its_burst() {
        let limit = per_minute(5);
        let mut bucket = limit.fresh(T0);
        assert_eq!(run(&limit, &mut bucket, T0, 20, 1), 5);
        let d = limit.take(bucket, T0 + 10 * SEC, 1);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_ns, 50 * SEC);
        assert_eq!(d.reset_ns, 50 * SEC);
    }

    #[test]
    fn refill_comes_from_elapsed_time_in_whole_fills() {
        let limit = Limit {
            max_tokens: 10,
            tokens_per_fill: 2,
            fill_interval_ns: SEC,
        };
        let mut bucket = limit.fresh(T0);
        assert_eq!(run(&limit, &mut bucket, T0, 10, 1), 10);
        // 2.5 intervals later: two fills of 2 tokens, and the half interval is kept.
        let now = T0 + 2 * SEC + SEC / 2;
        let d = limit.take(bucket, now, 1);
        assert!(d.allowed);
        assert_eq!(d.remaining, 3);
        assert_eq!(d.bucket.last_fill_ns, T0 + 2 * SEC);
        assert_eq!(d.reset_ns, SEC / 2);
        assert_eq!(run(&limit, &mut { d.bucket }, now, 10, 1), 3);
    }

    #[test]
    fn burst_above_the_fill_rate() {
        // 1 token a second on average, bursts of up to 5.
        let limit = Limit {
            max_tokens: 5,
            tokens_per_fill: 1,
            fill_interval_ns: SEC,
        };
        let mut bucket = limit.fresh(T0);
        assert_eq!(run(&limit, &mut bucket, T0, 9, 1), 5);
        assert_eq!(run(&limit, &mut bucket, T0 + SEC, 9, 1), 1);
        assert_eq!(run(&limit, &mut bucket, T0 + 4 * SEC, 9, 1), 3);
    }

    #[test]
    fn a_cost_above_one_takes_several_tokens_and_waits_for_enough() {
        let limit = Limit {
            max_tokens: 10,
            tokens_per_fill: 2,
            fill_interval_ns: SEC,
        };
        let mut bucket = limit.fresh(T0);
        assert_eq!(run(&limit, &mut bucket, T0, 5, 3), 3);
        assert_eq!(bucket.tokens, 1);
        let d = limit.take(bucket, T0, 3);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 1, "a refusal takes nothing");
        // 2 more tokens are needed: one fill.
        assert_eq!(d.retry_after_ns, SEC);
        let d = limit.take(bucket, T0, 9);
        // 8 more: four fills.
        assert_eq!(d.retry_after_ns, 4 * SEC);
        assert!(limit.take(bucket, T0 + SEC, 3).allowed);
    }

    #[test]
    fn a_long_idle_bucket_is_full_and_fresh_without_overflowing() {
        let limit = Limit {
            max_tokens: u32::MAX,
            tokens_per_fill: u32::MAX,
            fill_interval_ns: 1,
        };
        let bucket = Bucket {
            tokens: 0,
            last_fill_ns: 0,
        };
        let now = u64::MAX - 5;
        assert_eq!(limit.refill(bucket, now), limit.fresh(now));
        let day = per_minute(100);
        let used = Bucket {
            tokens: 3,
            last_fill_ns: T0,
        };
        assert!(!day.is_idle(used, T0 + 59 * SEC));
        assert!(day.is_idle(used, T0 + 365 * 86_400 * SEC));
        let d = day.take(used, T0 + 365 * 86_400 * SEC, 1);
        assert_eq!(d.remaining, 99);
        assert_eq!(
            d.reset_ns,
            60 * SEC,
            "the fill clock restarts at the first request"
        );
    }

    #[test]
    fn a_clock_behind_the_bucket_adds_nothing() {
        let limit = per_minute(3);
        let bucket = Bucket {
            tokens: 1,
            last_fill_ns: T0 + SEC,
        };
        let d = limit.take(bucket, T0, 1);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.bucket.last_fill_ns, T0 + SEC);
    }

    #[test]
    fn refund_gives_tokens_back_up_to_the_capacity() {
        let limit = per_minute(3);
        let d = limit.take(limit.fresh(T0), T0, 2);
        assert_eq!(limit.refund(d.bucket, T0, 1).tokens, 2);
        assert_eq!(limit.refund(d.bucket, T0, 5), limit.fresh(T0));
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(0), 0);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(SEC), 1);
        assert_eq!(ceil_secs(SEC + 1), 2);
    }

    #[test]
    fn slots_round_trip_in_29_bytes() {
        let slot = Slot::Taken {
            fingerprint: u128::MAX - 7,
            bucket: Bucket {
                tokens: 42,
                last_fill_ns: T0 + 3,
            },
        };
        let bytes = slot.encode();
        assert_eq!(bytes.len(), 29);
        assert_eq!(Slot::decode(&bytes), slot);
        assert_eq!(Slot::Empty.encode(), EMPTY_SLOT);
        assert_eq!(Slot::decode(EMPTY_SLOT), Slot::Empty);
        assert_eq!(Slot::decode(b""), Slot::Empty);
        assert_eq!(Slot::decode(&bytes[..28]), Slot::Empty);
        let mut future = bytes.clone();
        future[0] = 9;
        assert_eq!(Slot::decode(&future), Slot::Empty);
    }

    #[test]
    fn fingerprints_separate_parts() {
        let fp = |parts: &[(u8, &str)]| {
            let mut h = KeyHasher::new(&[7; 16]);
            for (tag, value) in parts {
                h.part(*tag, value.as_bytes());
            }
            h.finish()
        };
        assert_eq!(fp(&[(1, "a")]), fp(&[(1, "a")]));
        assert_ne!(fp(&[(1, "a")]), fp(&[(2, "a")]));
        assert_ne!(fp(&[(1, "ab"), (1, "c")]), fp(&[(1, "a"), (1, "bc")]));
        assert_ne!(fp(&[]), fp(&[(1, "")]));
        let distinct: std::collections::HashSet<_> = (0..10_000)
            .map(|i| fp(&[(1, &i.to_string())]) as u64 % 1024)
            .collect();
        assert_eq!(distinct.len(), 1024, "low bits spread over every slot");
    }

    #[test]
    fn the_seed_decides_where_a_key_lands() {
        let fp = |seed: &Seed, key: &str| {
            let mut h = KeyHasher::new(seed);
            h.part(1, key.as_bytes());
            h.finish()
        };
        assert_eq!(fp(&[1; 16], "victim"), fp(&[1; 16], "victim"));
        // Keys that share a home slot under one seed are spread out under another, so
        // collisions found offline (or under another Envoy's seed) do not carry over.
        let home = |seed: &Seed, key: &str| fp(seed, key) as u64 % 1024;
        let target = home(&[1; 16], "victim");
        let aimed: Vec<String> = (0..200_000)
            .map(|i| format!("attacker-{i}"))
            .filter(|k| home(&[1; 16], k) == target)
            .collect();
        assert!(aimed.len() > 100, "{}", aimed.len());
        let target = home(&[2; 16], "victim");
        let still = aimed.iter().filter(|k| home(&[2; 16], k) == target).count();
        assert!(
            still < 10,
            "{still} of {} aimed keys still collide",
            aimed.len()
        );
    }
}
