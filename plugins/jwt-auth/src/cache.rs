//! The verified-token cache: a repeated token skips parsing and signature checks.
//!
//! Entries are keyed by a SHA-256 of the token and the provider, remember which key set
//! verified them (a key-set change drops them), and are never served past the token's
//! `exp` plus the provider's clock skew.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// How long a token without `exp` may be served from the cache, in seconds.
const NO_EXP_TTL: i64 = 300;

/// A cache key: the token's hash and the provider index.
pub type CacheKey = ([u8; 32], usize);

/// The key for `token` checked by provider `provider`.
pub fn key(token: &str, provider: usize) -> CacheKey {
    (Sha256::digest(token.as_bytes()).into(), provider)
}

#[derive(Debug)]
struct Entry {
    claims: Rc<Map<String, Value>>,
    /// Unix seconds after which the entry must not be served.
    until: i64,
    generation: u64,
}

/// A bounded map of verified tokens; the oldest entry goes first when it is full.
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<CacheKey, Entry>,
    order: VecDeque<CacheKey>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0: nothing is remembered).
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::with_capacity(capacity.min(4096)),
            order: VecDeque::with_capacity(capacity.min(4096)),
        }
    }

    /// The claims of a token verified with key set `generation`, if still valid at `now`.
    pub fn get(
        &mut self,
        key: &CacheKey,
        now: i64,
        generation: u64,
    ) -> Option<Rc<Map<String, Value>>> {
        let entry = self.entries.get(key)?;
        if entry.generation == generation && now <= entry.until {
            return Some(Rc::clone(&entry.claims));
        }
        self.entries.remove(key);
        None
    }

    /// Remember a verified token: `exp` plus `skew` bounds how long it is served.
    pub fn insert(
        &mut self,
        key: CacheKey,
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

    #[test]
    fn never_serves_past_exp_plus_skew() {
        let mut cache = TokenCache::new(4);
        let k = key("t", 0);
        cache.insert(k, claims(), Some(100), 10, 50, 1);
        assert!(cache.get(&k, 110, 1).is_some());
        assert!(cache.get(&k, 111, 1).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_new_key_set_drops_entries() {
        let mut cache = TokenCache::new(4);
        let k = key("t", 0);
        cache.insert(k, claims(), Some(100), 0, 50, 1);
        assert!(cache.get(&k, 60, 2).is_none());
    }

    #[test]
    fn providers_do_not_share_entries() {
        let mut cache = TokenCache::new(4);
        cache.insert(key("t", 0), claims(), None, 0, 0, 1);
        assert!(cache.get(&key("t", 1), 0, 1).is_none());
        assert!(cache.get(&key("t", 0), NO_EXP_TTL, 1).is_some());
        assert!(cache.get(&key("t", 0), NO_EXP_TTL + 1, 1).is_none());
    }

    #[test]
    fn is_bounded_dropping_the_oldest() {
        let mut cache = TokenCache::new(2);
        for i in 0..5 {
            cache.insert(key(&i.to_string(), 0), claims(), None, 0, 0, 1);
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("4", 0), 0, 1).is_some());
        assert!(cache.get(&key("0", 0), 0, 1).is_none());
    }

    #[test]
    fn size_zero_remembers_nothing() {
        let mut cache = TokenCache::new(0);
        cache.insert(key("t", 0), claims(), None, 0, 0, 1);
        assert!(cache.is_empty());
    }
}
