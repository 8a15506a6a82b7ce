//! Where counters live: Redis for production (shared by every replica), memory for demos.
//!
//! Both count the same way: a counter per (descriptor, window), incremented by the request's
//! hits and read back in one atomic step, so concurrent requests never both see the last slot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// One counter to add to: its key, the hits to add, and when it may be forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub key: String,
    pub hits: u64,
    /// Seconds until the key can expire (the rest of its window, plus slack).
    pub ttl_secs: u64,
}

/// The backend failed; the request gets UNAVAILABLE and its client decides.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: unexpected answer: {0}")]
    Answer(String),
    #[error("memory store: {0}")]
    Memory(String),
}

/// The counters' home.
#[derive(Debug)]
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Store {
    /// Add each hit to its counter, all at once, and return the counters' new values.
    pub async fn increment(&self, hits: &[Hit], now_secs: u64) -> Result<Vec<u64>, StoreError> {
        match self {
            Store::Memory(store) => store.increment(hits, now_secs),
            Store::Redis(store) => store.increment(hits).await,
        }
    }

    /// Whether the backend answers (for the readiness endpoint).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Redis(store) => store.ping().await,
        }
    }

    /// `memory` or `redis`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }
}

/// Counters in this process: exact for one replica, lost on restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryCounters>,
}

#[derive(Debug, Default)]
struct MemoryCounters {
    counts: HashMap<String, (u64, u64)>,
    next_sweep: u64,
}

impl MemoryStore {
    fn increment(&self, hits: &[Hit], now_secs: u64) -> Result<Vec<u64>, StoreError> {
        // A poisoned lock means a panic mid-update elsewhere; refuse rather than count on
        // half-written state.
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| StoreError::Memory("counter lock poisoned".into()))?;
        // Expired windows are dropped once a second at most, so memory follows the live keys.
        if now_secs >= inner.next_sweep {
            inner.counts.retain(|_, (_, expires)| *expires > now_secs);
            inner.next_sweep = now_secs + 1;
        }
        Ok(hits
            .iter()
            .map(|hit| {
                let entry = inner
                    .counts
                    .entry(hit.key.clone())
                    .or_insert((0, now_secs + hit.ttl_secs));
                entry.0 = entry.0.saturating_add(hit.hits);
                entry.0
            })
            .collect())
    }
}

// INCRBY then EXPIRE on a key per descriptor and window, as envoyproxy/ratelimit does, but in
// one script: Redis runs it atomically, so replicas sharing this Redis count exactly. The TTL
// is set only on a key that has none, so a busy key still expires at its window's end.
const INCREMENT_SCRIPT: &str = r"
local counts = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCRBY', key, ARGV[2 * i - 1])
  if redis.call('TTL', key) == -1 then
    redis.call('EXPIRE', key, ARGV[2 * i])
  end
  counts[i] = count
end
return counts
";

/// Counters in Redis, shared by every replica and kept across restarts.
pub struct RedisStore {
    client: redis::Client,
    script: redis::Script,
    timeout: Duration,
    // One multiplexed connection carries every request; dropped on error and reopened by the
    // next request, so a restarted Redis is picked up without restarting the service.
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for `url` (`redis://host:port/db`); connects on first use. `timeout` bounds
    /// connecting and each answer, so a dead Redis fails requests quickly.
    pub fn new(url: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        Ok(RedisStore {
            client: redis::Client::open(url)?,
            script: redis::Script::new(INCREMENT_SCRIPT),
            timeout,
            connection: tokio::sync::Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        let connection = tokio::time::timeout(
            self.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| StoreError::Timeout(self.timeout))??;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    async fn forget_connection(&self) {
        *self.connection.lock().await = None;
    }

    async fn increment(&self, hits: &[Hit]) -> Result<Vec<u64>, StoreError> {
        let result = self.try_increment(hits).await;
        if result.is_err() {
            self.forget_connection().await;
        }
        result
    }

    async fn try_increment(&self, hits: &[Hit]) -> Result<Vec<u64>, StoreError> {
        let mut connection = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        for hit in hits {
            invocation
                .key(&hit.key)
                .arg(hit.hits)
                .arg(hit.ttl_secs.max(1));
        }
        let counts: Vec<u64> =
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| StoreError::Timeout(self.timeout))??;
        if counts.len() != hits.len() {
            return Err(StoreError::Answer(format!(
                "{} counters for {} keys",
                counts.len(),
                hits.len()
            )));
        }
        Ok(counts)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let result = async {
            let mut connection = self.connection().await?;
            tokio::time::timeout(
                self.timeout,
                redis::cmd("PING").query_async::<String>(&mut connection),
            )
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))??;
            Ok(())
        }
        .await;
        if result.is_err() {
            self.forget_connection().await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(key: &str, hits: u64, ttl_secs: u64) -> Hit {
        Hit {
            key: key.into(),
            hits,
            ttl_secs,
        }
    }

    #[test]
    fn memory_counts_per_key_and_forgets_expired_windows() {
        let store = MemoryStore::default();
        let counts = store
            .increment(&[hit("a", 1, 10), hit("b", 3, 10)], 100)
            .expect("counts");
        assert_eq!(counts, [1, 3]);
        assert_eq!(
            store.increment(&[hit("a", 2, 10)], 105).expect("counts"),
            [3]
        );
        // At 110 the window of "a" has ended: swept, and a new count starts.
        assert_eq!(
            store.increment(&[hit("a", 1, 10)], 110).expect("counts"),
            [1]
        );
    }
}
