//! The decision: a ShouldRateLimit request in, a response (or a gRPC error) out.
//! Knows nothing of gRPC transport or HTTP, so it is tested with plain values.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Limit, Limits, Unit};
use crate::metrics::{Event, Metrics};
use crate::proto::{self, Code, DescriptorStatus, RateLimitRequest, RateLimitResponse};
use crate::store::{Hit, Store, StoreError};

/// Why a request got no decision.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The request is malformed (gRPC INVALID_ARGUMENT).
    #[error("{0}")]
    Invalid(&'static str),
    /// The counters could not be read (gRPC UNAVAILABLE): the client's failure mode decides.
    #[error("{0}")]
    Backend(#[from] StoreError),
    /// The clock is before 1970: refuse rather than count in a wrong window.
    #[error("system clock before the Unix epoch")]
    Clock,
}

/// Limits, counters and metrics: everything a decision needs.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    store: Store,
    metrics: Arc<Metrics>,
}

impl Limiter {
    pub fn new(limits: Limits, store: Store) -> Limiter {
        Limiter {
            limits,
            store,
            metrics: Arc::new(Metrics::default()),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Decide on a request at the current time.
    pub async fn should_rate_limit(
        &self,
        request: &RateLimitRequest,
    ) -> Result<RateLimitResponse, LimitError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| LimitError::Clock)?;
        self.decide(request, now).await
    }

    /// Decide on a request at `now` (since the Unix epoch).
    pub async fn decide(
        &self,
        request: &RateLimitRequest,
        now: Duration,
    ) -> Result<RateLimitResponse, LimitError> {
        self.metrics.count(Event::Call);
        let result = self.decide_counted(request, now).await;
        match &result {
            Ok(response) if response.overall_code == Code::OverLimit as i32 => {
                self.metrics.count(Event::OverLimit);
            }
            Ok(_) | Err(LimitError::Clock) => {}
            Err(LimitError::Invalid(_)) => self.metrics.count(Event::Invalid),
            Err(LimitError::Backend(_)) => self.metrics.count(Event::BackendError),
        }
        result
    }

    async fn decide_counted(
        &self,
        request: &RateLimitRequest,
        now: Duration,
    ) -> Result<RateLimitResponse, LimitError> {
        if request.domain.is_empty() {
            return Err(LimitError::Invalid("domain must not be empty"));
        }
        if request.descriptors.is_empty() {
            return Err(LimitError::Invalid("descriptors must not be empty"));
        }
        if request.descriptors.iter().any(|d| d.entries.is_empty()) {
            return Err(LimitError::Invalid("a descriptor has no entries"));
        }
        // Envoy sends 0 when it did not set a value: one hit.
        let hits = u64::from(request.hits_addend.max(1));
        let now_secs = now.as_secs();
        let limits: Vec<Option<Limit>> = request
            .descriptors
            .iter()
            .map(|descriptor| self.limit_for(&request.domain, descriptor))
            .collect();
        let keyed: Vec<(usize, Hit)> = limits
            .iter()
            .enumerate()
            .filter_map(|(i, limit)| {
                let limit = limit.as_ref()?;
                let key = counter_key(
                    &request.domain,
                    &request.descriptors[i],
                    limit.unit,
                    now_secs,
                );
                let ttl_secs = seconds_until_reset(limit.unit, now_secs) + 1;
                Some((
                    i,
                    Hit {
                        key,
                        hits,
                        ttl_secs,
                    },
                ))
            })
            .collect();
        let counts = if keyed.is_empty() {
            Vec::new()
        } else {
            let hits: Vec<Hit> = keyed.iter().map(|(_, hit)| hit.clone()).collect();
            let started = Instant::now();
            let counts = self.store.increment(&hits, now_secs).await;
            self.metrics.backend_latency(started.elapsed());
            counts?
        };
        let mut counted = vec![None; limits.len()];
        for ((i, _), count) in keyed.iter().zip(counts) {
            counted[*i] = Some(count);
        }
        let mut overall = Code::Ok;
        let statuses = limits
            .iter()
            .zip(counted)
            .map(|(limit, count)| match (limit, count) {
                (Some(limit), Some(count)) => {
                    let status = self.status(limit, count, now_secs);
                    if status.code == Code::OverLimit as i32 {
                        overall = Code::OverLimit;
                    }
                    status
                }
                _ => {
                    self.metrics.count(Event::NoLimit);
                    DescriptorStatus {
                        code: Code::Ok as i32,
                        ..DescriptorStatus::default()
                    }
                }
            })
            .collect();
        Ok(RateLimitResponse {
            overall_code: overall as i32,
            statuses,
        })
    }

    /// The client's override when it names a unit we count in, else the configured limit.
    fn limit_for(&self, domain: &str, descriptor: &proto::RateLimitDescriptor) -> Option<Limit> {
        if let Some(over) = &descriptor.limit {
            if let Some(unit) = Unit::from_proto(over.unit) {
                return Some(Limit {
                    requests_per_unit: over.requests_per_unit,
                    unit,
                    name: String::new(),
                    shadow_mode: false,
                });
            }
        }
        self.limits.find(domain, &descriptor.entries).cloned()
    }

    fn status(&self, limit: &Limit, count: u64, now_secs: u64) -> DescriptorStatus {
        let allowed = u64::from(limit.requests_per_unit);
        let over = count > allowed;
        if over && limit.shadow_mode {
            self.metrics.count(Event::ShadowOverLimit);
        }
        let code = if over && !limit.shadow_mode {
            Code::OverLimit
        } else {
            Code::Ok
        };
        let remaining = u32::try_from(allowed.saturating_sub(count)).unwrap_or(u32::MAX);
        let reset = i64::try_from(seconds_until_reset(limit.unit, now_secs)).unwrap_or(i64::MAX);
        DescriptorStatus {
            code: code as i32,
            current_limit: Some(proto::RateLimit {
                requests_per_unit: limit.requests_per_unit,
                unit: limit.unit.to_proto() as i32,
                name: limit.name.clone(),
            }),
            limit_remaining: remaining,
            duration_until_reset: Some(proto::Duration {
                seconds: reset,
                nanos: 0,
            }),
        }
    }
}

/// Seconds from `now_secs` to the end of its window (at least 1).
fn seconds_until_reset(unit: Unit, now_secs: u64) -> u64 {
    unit.seconds() - now_secs % unit.seconds()
}

/// The counter's key: the domain, every entry and the window. The parts are JSON strings, so
/// no key or value can make two descriptors share a key (`a_b`+`c` vs `a`+`b_c`).
fn counter_key(
    domain: &str,
    descriptor: &proto::RateLimitDescriptor,
    unit: Unit,
    now_secs: u64,
) -> String {
    let window = now_secs - now_secs % unit.seconds();
    let mut parts = Vec::with_capacity(1 + 2 * descriptor.entries.len());
    parts.push(domain);
    for entry in &descriptor.entries {
        parts.push(&entry.key);
        parts.push(&entry.value);
    }
    let parts = serde_json::to_string(&parts).unwrap_or_default();
    format!("wasmgate-rl:{}:{window}:{parts}", unit.seconds())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::proto::{Entry, RateLimitDescriptor, RateLimitOverride};
    use crate::store::MemoryStore;

    const LIMITS: &str = r#"
domain: api
descriptors:
  - key: k
    value: three
    rate_limit: { unit: minute, requests_per_unit: 3, name: three }
  - key: k
    value: shadow
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: ip
    rate_limit: { unit: second, requests_per_unit: 1 }
"#;

    fn limiter() -> Limiter {
        let limits = Limits::from_files(vec![parse(LIMITS).expect("parses")]).expect("compiles");
        Limiter::new(limits, Store::Memory(MemoryStore::default()))
    }

    fn request(descriptors: &[&[(&str, &str)]], hits: u32) -> RateLimitRequest {
        RateLimitRequest {
            domain: "api".into(),
            descriptors: descriptors
                .iter()
                .map(|entries| RateLimitDescriptor {
                    entries: entries
                        .iter()
                        .map(|(key, value)| Entry {
                            key: (*key).into(),
                            value: (*value).into(),
                        })
                        .collect(),
                    limit: None,
                })
                .collect(),
            hits_addend: hits,
        }
    }

    async fn codes(limiter: &Limiter, request: &RateLimitRequest, now: u64) -> Vec<i32> {
        let response = limiter
            .decide(request, Duration::from_secs(now))
            .await
            .expect("decides");
        let mut codes = vec![response.overall_code];
        codes.extend(response.statuses.iter().map(|s| s.code));
        codes
    }

    const OK: i32 = Code::Ok as i32;
    const OVER: i32 = Code::OverLimit as i32;

    #[tokio::test]
    async fn exactly_the_limit_then_over_until_the_window_ends() {
        let limiter = limiter();
        let three = request(&[&[("k", "three")]], 0);
        let now = 6000 + 10; // 10 s into a minute window
        for _ in 0..3 {
            assert_eq!(codes(&limiter, &three, now).await, [OK, OK]);
        }
        let response = limiter
            .decide(&three, Duration::from_secs(now))
            .await
            .expect("decides");
        assert_eq!(response.overall_code, OVER);
        let status = &response.statuses[0];
        assert_eq!(status.limit_remaining, 0);
        assert_eq!(status.duration_until_reset.map(|d| d.seconds), Some(50));
        let limit = status.current_limit.clone().expect("limit");
        assert_eq!(
            (limit.requests_per_unit, limit.unit, limit.name.as_str()),
            (3, proto::Unit::Minute as i32, "three")
        );
        // The next window counts from zero.
        assert_eq!(codes(&limiter, &three, 6060).await, [OK, OK]);
    }

    #[tokio::test]
    async fn hits_addend_counts_that_many() {
        let limiter = limiter();
        let response = limiter
            .decide(&request(&[&[("k", "three")]], 2), Duration::from_secs(0))
            .await
            .expect("decides");
        assert_eq!(response.statuses[0].limit_remaining, 1);
        assert_eq!(
            codes(&limiter, &request(&[&[("k", "three")]], 2), 0).await,
            [OVER, OVER]
        );
    }

    #[tokio::test]
    async fn any_descriptor_over_makes_the_call_over_and_unmatched_ones_are_ok() {
        let limiter = limiter();
        let both = request(&[&[("ip", "10.0.0.1")], &[("nothing", "x")]], 0);
        assert_eq!(codes(&limiter, &both, 0).await, [OK, OK, OK]);
        assert_eq!(codes(&limiter, &both, 0).await, [OVER, OVER, OK]);
        // Another value of a key-only descriptor has its own counter.
        let other_ip = request(&[&[("ip", "10.0.0.2")]], 0);
        assert_eq!(codes(&limiter, &other_ip, 0).await, [OK, OK]);
        let response = limiter
            .decide(&request(&[&[("nothing", "x")]], 0), Duration::ZERO)
            .await
            .expect("decides");
        assert_eq!(response.statuses[0].current_limit, None);
    }

    #[tokio::test]
    async fn shadow_mode_counts_but_answers_ok() {
        let limiter = limiter();
        let shadow = request(&[&[("k", "shadow")]], 0);
        assert_eq!(codes(&limiter, &shadow, 0).await, [OK, OK]);
        assert_eq!(codes(&limiter, &shadow, 0).await, [OK, OK]);
        let metrics = limiter.metrics().render("memory");
        assert!(metrics.contains("wasmgate_ratelimit_shadow_over_limit_total 1\n"));
        assert!(metrics.contains("wasmgate_ratelimit_over_limit_total 0\n"));
    }

    #[tokio::test]
    async fn a_client_override_replaces_the_configured_limit() {
        let limiter = limiter();
        let mut req = request(&[&[("unconfigured", "x")]], 0);
        req.descriptors[0].limit = Some(RateLimitOverride {
            requests_per_unit: 1,
            unit: proto::Unit::Hour as i32,
        });
        assert_eq!(codes(&limiter, &req, 0).await, [OK, OK]);
        assert_eq!(codes(&limiter, &req, 0).await, [OVER, OVER]);
    }

    #[tokio::test]
    async fn malformed_requests_are_invalid() {
        let limiter = limiter();
        let mut no_domain = request(&[&[("k", "three")]], 0);
        no_domain.domain.clear();
        for bad in [no_domain, request(&[], 0), request(&[&[]], 0)] {
            let err = limiter
                .decide(&bad, Duration::ZERO)
                .await
                .expect_err("invalid");
            assert!(matches!(err, LimitError::Invalid(_)), "{err}");
        }
    }

    #[test]
    fn keys_cannot_collide_through_separators() {
        let d = |pairs: &[(&str, &str)]| RateLimitDescriptor {
            entries: pairs
                .iter()
                .map(|(k, v)| Entry {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            limit: None,
        };
        let a = counter_key("d", &d(&[("a_b", "c")]), Unit::Minute, 0);
        let b = counter_key("d", &d(&[("a", "b_c")]), Unit::Minute, 0);
        assert_ne!(a, b);
        assert_eq!(a, counter_key("d", &d(&[("a_b", "c")]), Unit::Minute, 59));
        assert_ne!(a, counter_key("d", &d(&[("a_b", "c")]), Unit::Minute, 60));
    }
}

// Property tests (`prop_*`, picked up by `make fuzz`): the request is untrusted input.
#[cfg(test)]
mod prop_limiter {
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;
    use crate::config::parse;
    use crate::proto::{Entry, RateLimitDescriptor};
    use crate::store::MemoryStore;

    fn descriptor(pairs: Vec<(String, String)>) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: pairs
                .into_iter()
                .map(|(key, value)| Entry { key, value })
                .collect(),
            limit: None,
        }
    }

    fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec(("[a-c_:\\\\\"]{0,3}", "[a-c_:\\\\\"]{0,3}"), 0..3)
    }

    proptest! {
        #[test]
        fn prop_counter_keys_differ_when_descriptors_differ(
            domain_a in "[a_:]{0,3}", a in pairs(), domain_b in "[a_:]{0,3}", b in pairs()
        ) {
            let same = domain_a == domain_b && a == b;
            let key_a = counter_key(&domain_a, &descriptor(a), Unit::Hour, 0);
            let key_b = counter_key(&domain_b, &descriptor(b), Unit::Hour, 0);
            prop_assert_eq!(key_a == key_b, same);
        }

        #[test]
        fn prop_any_request_bytes_get_a_decision_or_a_clear_error(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            hits in any::<u32>(),
        ) {
            let limits = Limits::from_files(vec![parse(
                "domain: api\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 2}\n",
            ).expect("parses")]).expect("compiles");
            let limiter = Limiter::new(limits, Store::Memory(MemoryStore::default()));
            let Ok(mut request) = RateLimitRequest::decode(&bytes[..]) else {
                return Ok(());
            };
            request.hits_addend = hits;
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            match runtime.block_on(limiter.decide(&request, Duration::from_secs(1))) {
                Ok(response) => prop_assert_eq!(response.statuses.len(), request.descriptors.len()),
                Err(err) => prop_assert!(matches!(err, LimitError::Invalid(_)), "{}", err),
            }
        }

        #[test]
        fn prop_a_limit_admits_exactly_its_hits(limit in 0u32..8, hits in prop::collection::vec(0u32..4, 1..12)) {
            let yaml = format!("domain: api\ndescriptors:\n  - key: k\n    rate_limit: {{unit: day, requests_per_unit: {limit}}}\n");
            let limits = Limits::from_files(vec![parse(&yaml).expect("parses")]).expect("compiles");
            let limiter = Limiter::new(limits, Store::Memory(MemoryStore::default()));
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let mut used = 0u64;
            for hit in hits {
                let request = RateLimitRequest {
                    domain: "api".into(),
                    descriptors: vec![descriptor(vec![("k".into(), "v".into())])],
                    hits_addend: hit,
                };
                let response = runtime.block_on(limiter.decide(&request, Duration::from_secs(5))).expect("decides");
                used += u64::from(hit.max(1));
                let ok = response.overall_code == Code::Ok as i32;
                prop_assert_eq!(ok, used <= u64::from(limit));
                prop_assert_eq!(
                    u64::from(response.statuses[0].limit_remaining),
                    u64::from(limit).saturating_sub(used)
                );
            }
        }
    }
}
