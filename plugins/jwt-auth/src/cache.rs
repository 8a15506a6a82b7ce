//! The verified-token cache: a repeated token skips parsing and signature checks.
//!
//! Entries hold the token they verified and are served only to the same token, byte for
//! byte, and the same provider. They remember which key set verified them (a key-set change
//! drops them), and are never served past the token's `exp` plus the provider's clock skew.
//!
//! Lookup hashes only the signature segment, with SipHash under keys drawn at random when
//! the cache is made (std's `RandomState`). That is sound because the hash only picks the
//! entry: the whole token is compared before anything is served, so a token that shares a
//! hash or a signature with a verified one (a forged payload under a copied signature) is a
//! miss, never a hit. The random keys keep clients from aiming many tokens at one entry.
//! Hashing the signature rather than all of the token, or a SHA-256 of it, is what makes a
//! lookup cheap: its bytes already differ from token to token.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::rc::Rc;

use serde_json::{Map, Value};

/// How long a token without `exp` may be served from the cache, in seconds.
const NO_EXP_TTL: i64 = 300;

/// A cache key: the keyed hash of the token's signature segment, and the provider index.
pub type CacheKey = (u64, usize);

#[derive(Debug)]
struct Entry {
    /// The token this entry verified, compared in full on every lookup.
    token: Box<str>,
    claims: Rc<Map<String, Value>>,
    /// Unix seconds after which the entry must not be served.
    until: i64,
    generation: u64,
}

/// A bounded map of verified tokens; the oldest entry goes first when it is full.
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    hasher: RandomState,
    entries: HashMap<CacheKey, Entry>,
    order: VecDeque<CacheKey>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0: nothing is remembered).
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            hasher: RandomState::new(),
            entries: HashMap::with_capacity(capacity.min(4096)),
            order: VecDeque::with_capacity(capacity.min(4096)),
        }
    }

    /// The key of `token` for provider `provider`.
    pub fn key(&self, token: &str, provider: usize) -> CacheKey {
        let signature = token.rsplit('.').next().unwrap_or(token);
        (self.hasher.hash_one(signature), provider)
    }

    /// The claims of `token` (whose key is `key`) verified with key set `generation`, if
    /// still valid at `now`.
    pub fn get(
        &mut self,
        key: &CacheKey,
        token: &str,
        now: i64,
        generation: u64,
    ) -> Option<Rc<Map<String, Value>>> {
        let entry = self.entries.get(key)?;
        if *entry.token != *token {
            // Another token under the same hash: a miss, and the entry stays.
            return None;
        }
        if entry.generation == generation && now <= entry.until {
            return Some(Rc::clone(&entry.claims));
        }
        self.entries.remove(key);
        None
    }

    /// Remember a verified token: `exp` plus `skew` bounds how long it is served.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        key: CacheKey,
        token: &str,
        claims: Rc<Map<String, Value>>,
        exp: Option<i64>,
        skew: i64,
        now: i64,
        generation: u64,
    ) {
        if self.capacity == 0 {
            return;
        }
        let until = match exp {
            Some(exp) => exp.saturating_add(skew),
            None => now.saturating_add(NO_EXP_TTL),
        };
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        // `order` may hold keys already dropped by `get`; keep it from growing without bound.
        if self.order.len() >= self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
        if self
            .entries
            .insert(
                key,
                Entry {
                    token: token.into(),
                    claims,
                    until,
                    generation,
                },
            )
            .is_none()
        {
            self.order.push_back(key);
        }
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Rc<Map<String, Value>> {
        Rc::new(Map::new())
    }

    /// Remember `token` for provider `provider`.
    fn put(cache: &mut TokenCache, token: &str, provider: usize, exp: Option<i64>, skew: i64) {
        let key = cache.key(token, provider);
        cache.insert(key, token, claims(), exp, skew, 0, 1);
    }

    fn hit(cache: &mut TokenCache, token: &str, provider: usize, now: i64) -> bool {
        let key = cache.key(token, provider);
        cache.get(&key, token, now, 1).is_some()
    }

    #[test]
    fn never_serves_past_exp_plus_skew() {
        let mut cache = TokenCache::new(4);
        put(&mut cache, "h.p.s", 0, Some(100), 10);
        assert!(hit(&mut cache, "h.p.s", 0, 110));
        assert!(!hit(&mut cache, "h.p.s", 0, 111));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_new_key_set_drops_entries() {
        let mut cache = TokenCache::new(4);
        put(&mut cache, "h.p.s", 0, Some(100), 0);
        let key = cache.key("h.p.s", 0);
        assert!(cache.get(&key, "h.p.s", 60, 2).is_none());
    }

    #[test]
    fn providers_do_not_share_entries() {
        let mut cache = TokenCache::new(4);
        put(&mut cache, "h.p.s", 0, None, 0);
        assert!(!hit(&mut cache, "h.p.s", 1, 0));
        assert!(hit(&mut cache, "h.p.s", 0, NO_EXP_TTL));
        assert!(!hit(&mut cache, "h.p.s", 0, NO_EXP_TTL + 1));
    }

    #[test]
    fn only_the_same_token_is_served() {
        let mut cache = TokenCache::new(4);
        put(&mut cache, "header.payload.signature", 0, None, 0);
        // The same signature segment (the same key) under another payload or header: a
        // forged token must not get the verified one's claims.
        for forged in [
            "header.forged.signature",
            "forged.payload.signature",
            "signature",
            "header.payload.signature.",
        ] {
            assert!(!hit(&mut cache, forged, 0, 0), "{forged}");
        }
        assert_eq!(
            cache.key("header.forged.signature", 0),
            cache.key("header.payload.signature", 0)
        );
        // A miss by another token under the same key keeps the entry.
        assert!(hit(&mut cache, "header.payload.signature", 0, 0));
    }

    #[test]
    fn keys_differ_between_caches() {
        // Keyed at random: a client cannot know which tokens share an entry.
        let (a, b) = (TokenCache::new(1), TokenCache::new(1));
        assert_ne!(a.key("h.p.s", 0), b.key("h.p.s", 0));
    }

    #[test]
    fn is_bounded_dropping_the_oldest() {
        let mut cache = TokenCache::new(2);
        for i in 0..5 {
            put(&mut cache, &format!("h.p.{i}"), 0, None, 0);
        }
        assert_eq!(cache.len(), 2);
        assert!(hit(&mut cache, "h.p.4", 0, 0));
        assert!(!hit(&mut cache, "h.p.0", 0, 0));
    }

    #[test]
    fn size_zero_remembers_nothing() {
        let mut cache = TokenCache::new(0);
        put(&mut cache, "h.p.s", 0, None, 0);
        assert!(cache.is_empty());
    }
}
