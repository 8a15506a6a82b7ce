//! The plugin: rules compiled once, buckets created at start, idle keys collected on a
//! timer, and one filter per stream that asks every matching rule for tokens.

use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use wasmgate_glue::{
    parse_json, Action, ConfigError, Headers, Host, HostError, HttpFilter, LogLevel, MetricId,
    MetricKind, Plugin,
};
use wasmgate_http::{cookie, query_param_bytes};

use crate::bucket::{ceil_secs, Decision, Fingerprint, KeyHasher, Limit, Seed};
use crate::config::{
    CompiledResponse, CompiledRule, CompiledService, Config, FailureMode, HeaderTest, KeyPart,
    MissingKey, RateLimitHeaders,
};
use crate::global::{self, Memory, Verdict};
use crate::request::Request;
use crate::store::{push_decimal, Place, Table};

/// Slots examined per tick, so that collecting idle keys never holds a worker for long.
const SWEEP_BUDGET: u32 = 1024;

/// The plugin's root: compiled rules shared by every stream, and the sweep's position.
/// A Wasm VM runs on one thread, so streams share the root's state through an `Rc`.
#[derive(Debug)]
pub struct RateLimit {
    shared: Rc<Shared>,
    sweep: Sweep,
}

#[derive(Debug)]
struct Shared {
    rules: Vec<ActiveRule>,
    /// The rate limit service's domain: the configured `domain`.
    domain: String,
    /// Set when a rule is global.
    service: Option<CompiledService>,
    /// Some rule is global: its answer comes after every local rule took its tokens, so
    /// any of them may have to be refunded.
    any_global: bool,
    xff_hop: u32,
    response: CompiledResponse,
    cleanup_interval_ns: u64,
    /// `rate_limit.clock_errors`: requests refused because the host could not tell the time.
    clock_errors: MetricId,
    /// Keys the slot hash; the same in every worker, or workers would count a key apart.
    seed: Seed,
}

/// Shared-data key of the key-hash [`Seed`]: one per Envoy, for every rule and domain.
const SEED_KEY: &str = "rate_limit/seed";

/// The Envoy's key-hash seed: the one in shared data, or a new random one stored there.
///
/// Like the slots, the seed is created before any request is served (Envoy configures the
/// plugin on its main thread before the workers), and a worker that finds one uses it. The
/// value is read back after writing so that, should two writers race anyway, both use
/// what was stored last. No randomness, no seed: a fixed one would bring back the attack.
fn shared_seed(host: &mut dyn Host) -> Result<Seed, String> {
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
struct ActiveRule {
    rule: CompiledRule,
    /// The local bucket table and its limit: every local rule, a global rule when asked.
    table: Option<(Table, Limit)>,
    memory: Option<Memory>,
    stats: Stats,
    counts: Counts,
}

/// A rule's stats, `wasmcustom.rate_limit.<domain>.<rule>.<stat>` in Envoy.
///
/// Streams count in [`Counts`] and the root adds the counts to Envoy's stats on each tick:
/// a host call per request and stat would cost as much as the rate limiting itself.
#[derive(Debug)]
struct Stats {
    allowed: MetricId,
    limited: MetricId,
    shadow_limited: MetricId,
    store_errors: MetricId,
    overflowed: MetricId,
    live_keys: MetricId,
    service_errors: MetricId,
    remembered: MetricId,
}

impl Stats {
    fn define(host: &mut dyn Host, domain: &str, rule: &str) -> Result<Stats, ConfigError> {
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
struct Counts {
    allowed: Cell<u64>,
    limited: Cell<u64>,
    shadow_limited: Cell<u64>,
    store_errors: Cell<u64>,
    overflowed: Cell<u64>,
    service_errors: Cell<u64>,
    remembered: Cell<u64>,
}

fn bump(count: &Cell<u64>) {
    count.set(count.get() + 1);
}

fn unbump(count: &Cell<u64>) {
    count.set(count.get().saturating_sub(1));
}

impl ActiveRule {
    /// Add the counts gathered since the last flush to Envoy's stats.
    fn flush(&self, host: &mut dyn Host) {
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

/// Where the idle-key collection stands: which rule, which slot, keys seen so far.
#[derive(Debug, Default)]
struct Sweep {
    rule: usize,
    next: u32,
    live: u32,
}

impl Plugin for RateLimit {
    const NAME: &'static str = "rate-limit";
    type Filter = RateLimitFilter;

    fn configure(config: &[u8], host: &mut dyn Host) -> Result<Self, ConfigError> {
        let compiled = parse_json::<Config>(config)?.compile()?;
        let clock_errors = host
            .define_metric(MetricKind::Counter, "rate_limit.clock_errors")
            .map_err(|err| {
                ConfigError::new(
                    "",
                    format!("cannot define stat rate_limit.clock_errors: {err}"),
                )
            })?;
        let seed = shared_seed(host).map_err(|why| ConfigError::new("", why))?;
        let mut rules = Vec::with_capacity(compiled.rules.len());
        for rule in compiled.rules {
            rules.push(ActiveRule {
                table: rule
                    .limit
                    .map(|limit| (Table::new(&compiled.domain, &rule.name, rule.slots), limit)),
                memory: rule
                    .global
                    .then(|| Memory::new(&compiled.domain, &rule.name, rule.slots)),
                stats: Stats::define(host, &compiled.domain, &rule.name)?,
                counts: Counts::default(),
                rule,
            });
        }
        Ok(RateLimit {
            shared: Rc::new(Shared {
                any_global: rules.iter().any(|r| r.rule.global),
                rules,
                domain: compiled.domain,
                service: compiled.service,
                xff_hop: compiled.xff_hop,
                response: compiled.response,
                cleanup_interval_ns: compiled.cleanup_interval_ns,
                clock_errors,
                seed,
            }),
            sweep: Sweep::default(),
        })
    }

    fn create_filter(&self, context_id: u32) -> RateLimitFilter {
        RateLimitFilter {
            context_id,
            shared: Rc::clone(&self.shared),
            answer: None,
            pending: None,
        }
    }

    fn on_start(&mut self, host: &mut dyn Host) {
        for active in &self.shared.rules {
            let Some((table, _)) = &active.table else {
                continue;
            };
            if let Err(err) = table.create(host) {
                // Requests still get decisions: a missing slot is created when first used.
                host.log(
                    LogLevel::Error,
                    &format!(
                        "rate-limit: cannot create the buckets of rule {}: {err}",
                        active.rule.name
                    ),
                );
            }
        }
        host.set_tick_period(Duration::from_nanos(self.shared.cleanup_interval_ns));
    }

    fn on_tick(&mut self, host: &mut dyn Host) {
        let rules = &self.shared.rules;
        for active in rules {
            active.flush(host);
        }
        let now = match host.now() {
            Ok(now) => nanos(now),
            Err(err) => {
                // Without the time, idle keys cannot be told apart: sweep on a later tick.
                host.log(
                    LogLevel::Warn,
                    &format!("rate-limit: cannot read the clock, idle keys not collected: {err}"),
                );
                return;
            }
        };
        let sweep = &mut self.sweep;
        let mut budget = SWEEP_BUDGET;
        while budget > 0 {
            let Some(active) = rules.get(sweep.rule) else {
                return;
            };
            // A global rule without a local bucket has nothing to collect.
            let (end, done) = match &active.table {
                Some((table, limit)) => {
                    let end = table.slots().min(sweep.next.saturating_add(budget));
                    sweep.live += table.sweep(host, limit, sweep.next..end, now);
                    (end, end == table.slots())
                }
                None => (sweep.next, true),
            };
            budget -= end - sweep.next;
            sweep.next = end;
            if done {
                if active.table.is_some() {
                    host.record_metric(active.stats.live_keys, u64::from(sweep.live));
                }
                sweep.live = 0;
                sweep.next = 0;
                sweep.rule = (sweep.rule + 1) % rules.len();
                if sweep.rule == 0 {
                    return;
                }
            }
        }
    }
}

/// A rule's view of its bucket, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Report {
    limit: u32,
    remaining: u32,
    reset_secs: u64,
}

impl Report {
    fn new(limit: &Limit, decision: &Decision) -> Report {
        Report {
            limit: limit.max_tokens,
            remaining: decision.remaining,
            reset_secs: ceil_secs(decision.reset_ns),
        }
    }

    /// Fewer tokens left is more restrictive; with as many, the longer wait.
    fn tighter(self, other: Option<Report>) -> Report {
        match other {
            Some(o)
                if (o.remaining, std::cmp::Reverse(o.reset_secs))
                    < (self.remaining, std::cmp::Reverse(self.reset_secs)) =>
            {
                o
            }
            _ => self,
        }
    }

    fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("x-ratelimit-limit", decimal(u64::from(self.limit))),
            ("x-ratelimit-remaining", decimal(u64::from(self.remaining))),
            ("x-ratelimit-reset", decimal(self.reset_secs)),
        ]
    }
}

/// What the response of an allowed request carries.
#[derive(Debug, Default)]
struct Answer {
    report: Option<Report>,
    /// Names of the shadow rules that would have refused the request.
    shadow: String,
    /// The rate limit service's `response_headers_to_add`.
    add: Vec<(String, String)>,
}

/// One stream's filter.
#[derive(Debug)]
pub struct RateLimitFilter {
    context_id: u32,
    shared: Rc<Shared>,
    answer: Option<Answer>,
    /// The calls to the rate limit service a paused request waits for.
    pending: Option<Pending>,
}

/// The refusal of a request: the refusing rule, what to say of its limit (nothing when the
/// store or the service failed) and the seconds to wait.
#[derive(Debug)]
struct Refusal {
    rule: usize,
    report: Option<Report>,
    retry_after: u64,
}

/// A request's decision so far; kept across the calls to the rate limit service.
#[derive(Debug, Default)]
struct Evaluation {
    /// (rule, key, where) of every local bucket this request took tokens from that a later
    /// rule may still have to refund: none for the last rule, so one rule allocates nothing.
    taken: Vec<(usize, Fingerprint, Place)>,
    /// Global rules the service allowed the request, counted as allowed until a refusal.
    allowed: Vec<usize>,
    report: Option<Report>,
    shadow: String,
    refusal: Option<Refusal>,
    add: Vec<(String, String)>,
}

impl Evaluation {
    /// The first rule in configuration order refuses, whichever answer came first.
    fn refuse(&mut self, refusal: Refusal) {
        if self.refusal.as_ref().is_none_or(|r| r.rule > refusal.rule) {
            self.refusal = Some(refusal);
        }
    }

    fn shadow_limited(&mut self, active: &ActiveRule) {
        bump(&active.counts.shadow_limited);
        if !self.shadow.is_empty() {
            self.shadow.push(',');
        }
        self.shadow.push_str(&active.rule.name);
    }
}

/// A global rule the service is asked about for this request.
#[derive(Debug)]
struct Ask {
    rule: usize,
    fingerprint: Fingerprint,
    /// The key parts' values, in the rule's order; empty for a missing key counted as shared.
    values: Vec<String>,
}

#[derive(Debug)]
struct Pending {
    /// Calls not answered yet: their token and the rules they ask about.
    calls: Vec<(u32, Vec<Ask>)>,
    evaluation: Evaluation,
    now: u64,
}

impl HttpFilter for RateLimitFilter {
    fn on_request_headers(&mut self, host: &mut dyn Host, _: bool) -> Action {
        let shared = Rc::clone(&self.shared);
        let now = match host.now() {
            Ok(now) => nanos(now),
            Err(err) => {
                // No time, no decision: refill cannot be computed, and the epoch as a stand-in
                // would hand out or withhold tokens at random. Refused whatever the rules'
                // failure_mode, which is about the shared store.
                host.increment_metric(shared.clock_errors, 1);
                host.log(
                    LogLevel::Error,
                    &format!(
                        "#{} rate-limit: cannot read the clock: {err}; refused with 503",
                        self.context_id
                    ),
                );
                host.send_local_reply(
                    503,
                    &[("content-type", "text/plain")],
                    b"rate-limit: clock unavailable\n",
                );
                return Action::Pause;
            }
        };
        let mut request = Request::default();
        let mut eval = Evaluation::default();
        let mut asks: Vec<Ask> = Vec::new();
        for (index, active) in shared.rules.iter().enumerate() {
            let rule = &active.rule;
            if !matches(rule, host, &mut request) {
                continue;
            }
            let fingerprint = match fingerprint(&shared, &rule.key, host, &mut request) {
                Some(fingerprint) => fingerprint,
                None if rule.missing_key == MissingKey::Shared => missing_fingerprint(&shared.seed),
                None => continue,
            };
            if let Some((table, limit)) = &active.table {
                self.take_local(
                    host,
                    &shared,
                    index,
                    table,
                    limit,
                    fingerprint,
                    now,
                    &mut eval,
                );
                if eval.refusal.is_some() {
                    break;
                }
            }
            let Some(memory) = &active.memory else {
                continue;
            };
            // A remembered OVER_LIMIT answers without asking the service again.
            if let Some(verdict) = memory.recall(host, fingerprint, now) {
                bump(&active.counts.remembered);
                let reset = verdict.until_ns.saturating_sub(now);
                let report = verdict.limit.map(|limit| Report {
                    limit,
                    remaining: 0,
                    reset_secs: ceil_secs(reset),
                });
                if rule.shadow {
                    eval.shadow_limited(active);
                    continue;
                }
                eval.refuse(Refusal {
                    rule: index,
                    report,
                    retry_after: ceil_secs(reset).max(1),
                });
                break;
            }
            asks.push(Ask {
                rule: index,
                fingerprint,
                values: key_values(&shared, &rule.key, host, &mut request),
            });
        }
        if eval.refusal.is_none() && !asks.is_empty() {
            let calls = self.ask(host, &shared, asks, &mut eval);
            if !calls.is_empty() {
                self.pending = Some(Pending {
                    calls,
                    evaluation: eval,
                    now,
                });
                return Action::Pause;
            }
        }
        self.decide(host, &shared, eval, now)
    }

    fn on_grpc_call_response(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        response: Result<&[u8], u32>,
    ) {
        let shared = Rc::clone(&self.shared);
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        let Some(at) = pending.calls.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, asks) = pending.calls.swap_remove(at);
        let eval = &mut pending.evaluation;
        let decoded = response
            .map_err(|code| format!("gRPC status {code} ({})", grpc_status_name(code)))
            .and_then(|bytes| {
                global::decode_response(bytes, asks.len())
                    .map_err(|why| format!("unreadable answer: {why}"))
            });
        match decoded {
            Ok(answer) => {
                for (ask, status) in asks.iter().zip(&answer.statuses) {
                    judge(&shared, ask, status, pending.now, eval, host);
                }
                for (name, value) in &answer.request_headers {
                    host.set_header(Headers::Request, name, value);
                }
                eval.add.extend(answer.response_headers);
            }
            Err(why) => {
                for ask in &asks {
                    fail(self.context_id, host, &shared, ask.rule, &why, eval);
                }
            }
        }
        if pending.calls.is_empty() {
            if let Some(pending) = self.pending.take() {
                if self.decide(host, &shared, pending.evaluation, pending.now) == Action::Continue {
                    host.resume_request();
                }
            }
        }
    }

    fn on_response_headers(&mut self, host: &mut dyn Host, _: bool) -> Action {
        if let Some(answer) = self.answer.take() {
            if let Some(report) = answer.report {
                for (name, value) in report.headers() {
                    host.set_header(Headers::Response, name, &value);
                }
            }
            if let Some(name) = &self.shared.response.shadow_header {
                if !answer.shadow.is_empty() {
                    host.set_header(Headers::Response, name, &answer.shadow);
                }
            }
            for (name, value) in &answer.add {
                host.add_header(Headers::Response, name, value);
            }
        }
        Action::Continue
    }
}

impl RateLimitFilter {
    /// Take the request's tokens from a rule's local bucket.
    #[allow(clippy::too_many_arguments)]
    fn take_local(
        &self,
        host: &mut dyn Host,
        shared: &Shared,
        index: usize,
        table: &Table,
        limit: &Limit,
        fingerprint: Fingerprint,
        now: u64,
        eval: &mut Evaluation,
    ) {
        let active = &shared.rules[index];
        let rule = &active.rule;
        match table.take(host, limit, fingerprint, rule.cost, now) {
            Err(err) => {
                bump(&active.counts.store_errors);
                failed(self.context_id, host, rule, index, &err.to_string(), eval);
            }
            Ok(t) => {
                if t.place == Place::Overflow {
                    bump(&active.counts.overflowed);
                }
                if t.decision.allowed {
                    // Counted now, and taken back if a later rule refuses the request.
                    bump(&active.counts.allowed);
                    if index + 1 < shared.rules.len() || shared.any_global {
                        eval.taken.push((index, fingerprint, t.place));
                    }
                    if !rule.shadow {
                        eval.report = Some(Report::new(limit, &t.decision).tighter(eval.report));
                    }
                } else if rule.shadow {
                    eval.shadow_limited(active);
                } else {
                    eval.refuse(Refusal {
                        rule: index,
                        report: Some(Report::new(limit, &t.decision)),
                        retry_after: ceil_secs(t.decision.retry_after_ns).max(1),
                    });
                }
            }
        }
    }

    /// Send one call per distinct cost (the protocol has one `hits_addend` per call) and
    /// return the calls sent; rules whose call could not be sent are decided at once.
    fn ask(
        &self,
        host: &mut dyn Host,
        shared: &Shared,
        mut asks: Vec<Ask>,
        eval: &mut Evaluation,
    ) -> Vec<(u32, Vec<Ask>)> {
        let mut calls = Vec::new();
        let Some(service) = &shared.service else {
            // configure refuses a global rule without a service; never reached.
            for ask in &asks {
                fail(
                    self.context_id,
                    host,
                    shared,
                    ask.rule,
                    "no rate_limit_service",
                    eval,
                );
            }
            return calls;
        };
        while let Some(cost) = asks.first().map(|a| shared.rules[a.rule].rule.cost) {
            let (group, rest): (Vec<Ask>, Vec<Ask>) = asks
                .into_iter()
                .partition(|a| shared.rules[a.rule].rule.cost == cost);
            asks = rest;
            let entries: Vec<Vec<(&str, &str)>> = group
                .iter()
                .map(|ask| descriptor(&shared.rules[ask.rule].rule, &ask.values))
                .collect();
            let message =
                global::encode_request(&shared.domain, entries.iter().map(Vec::as_slice), cost);
            let call = wasmgate_glue::GrpcCall {
                cluster: &service.cluster,
                service: global::SERVICE,
                method: global::METHOD,
                message: &message,
                timeout: Duration::from_millis(service.timeout_ms),
            };
            match host.grpc_call(&call) {
                Ok(token) => calls.push((token, group)),
                Err(err) => {
                    let why = format!("cannot call cluster {:?}: {err}", service.cluster);
                    for ask in &group {
                        fail(self.context_id, host, shared, ask.rule, &why, eval);
                    }
                }
            }
        }
        calls
    }

    /// Refuse the request, or let it go on with what its response should carry.
    fn decide(
        &mut self,
        host: &mut dyn Host,
        shared: &Shared,
        eval: Evaluation,
        now: u64,
    ) -> Action {
        let Some(refusal) = eval.refusal else {
            let report = eval
                .report
                .filter(|_| shared.response.rate_limit_headers == RateLimitHeaders::Always);
            if report.is_some() || !eval.shadow.is_empty() || !eval.add.is_empty() {
                self.answer = Some(Answer {
                    report,
                    shadow: eval.shadow,
                    add: eval.add,
                });
            }
            return Action::Continue;
        };
        // The request does not happen, so it should not count against other rules.
        for (index, fingerprint, place) in eval.taken {
            let active = &shared.rules[index];
            let rule = &active.rule;
            unbump(&active.counts.allowed);
            if let Some((table, limit)) = &active.table {
                table.refund(host, limit, fingerprint, place, rule.cost, now);
            }
        }
        // The service has counted it; only our stat can be taken back.
        for index in eval.allowed {
            unbump(&shared.rules[index].counts.allowed);
        }
        let active = &shared.rules[refusal.rule];
        bump(&active.counts.limited);
        refuse(host, &shared.response, &refusal, &eval.add);
        Action::Pause
    }
}

/// The service could not answer about a global rule.
fn fail(
    context_id: u32,
    host: &mut dyn Host,
    shared: &Shared,
    index: usize,
    why: &str,
    eval: &mut Evaluation,
) {
    let active = &shared.rules[index];
    bump(&active.counts.service_errors);
    failed(
        context_id,
        host,
        &active.rule,
        index,
        &format!("rate limit service: {why}"),
        eval,
    );
}

/// The store or the service failed for a rule: its `failure_mode` decides.
fn failed(
    context_id: u32,
    host: &mut dyn Host,
    rule: &CompiledRule,
    index: usize,
    why: &str,
    eval: &mut Evaluation,
) {
    let deny = rule.failure_mode == FailureMode::Deny && !rule.shadow;
    host.log(
        LogLevel::Warn,
        &format!(
            "#{} rate-limit: rule {}: {why}; failure_mode {}",
            context_id,
            rule.name,
            if deny {
                "deny: refused"
            } else {
                "allow: let through"
            }
        ),
    );
    if deny {
        // No bucket to describe: retry soon.
        eval.refuse(Refusal {
            rule: index,
            report: None,
            retry_after: 1,
        });
    }
}

/// Apply the service's answer about one global rule.
fn judge(
    shared: &Shared,
    ask: &Ask,
    status: &global::Status,
    now: u64,
    eval: &mut Evaluation,
    host: &mut dyn Host,
) {
    let active = &shared.rules[ask.rule];
    let reset_secs = status.reset_ns.map_or(0, ceil_secs);
    let report = status.limit.map(|limit| Report {
        limit,
        remaining: status.remaining,
        reset_secs,
    });
    if !status.over_limit {
        bump(&active.counts.allowed);
        eval.allowed.push(ask.rule);
        if let Some(report) = report.filter(|_| !active.rule.shadow) {
            eval.report = Some(report.tighter(eval.report));
        }
        return;
    }
    if let (Some(memory), Some(reset_ns)) = (&active.memory, status.reset_ns) {
        let verdict = Verdict {
            limit: status.limit,
            until_ns: now.saturating_add(reset_ns),
        };
        memory.remember(host, ask.fingerprint, verdict);
    }
    if active.rule.shadow {
        eval.shadow_limited(active);
    } else {
        eval.refuse(Refusal {
            rule: ask.rule,
            report,
            retry_after: reset_secs.max(1),
        });
    }
}

/// Names of the gRPC status codes a failed call is most likely to end with.
fn grpc_status_name(code: u32) -> &'static str {
    match code {
        1 => "cancelled",
        2 => "unknown",
        3 => "invalid argument",
        4 => "deadline exceeded",
        5 => "not found",
        12 => "unimplemented",
        13 => "internal",
        14 => "unavailable",
        _ => "error",
    }
}

/// Answer a refused request with the configured response and the service's headers.
fn refuse(
    host: &mut dyn Host,
    response: &CompiledResponse,
    refusal: &Refusal,
    add: &[(String, String)],
) {
    let retry_after = decimal(refusal.retry_after);
    let report = refusal
        .report
        .filter(|_| response.rate_limit_headers != RateLimitHeaders::Never)
        .map(|r| r.headers());
    let mut headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .chain(add)
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    headers.push(("retry-after", &retry_after));
    if let Some(report) = &report {
        headers.extend(report.iter().map(|(n, v)| (*n, v.as_str())));
    }
    host.send_local_reply(response.status, &headers, &response.body);
}

/// Whether every condition of the rule holds for the request.
fn matches(rule: &CompiledRule, host: &dyn Host, request: &mut Request) -> bool {
    if let Some(want) = &rule.path {
        let Some(path) = request.path(host) else {
            return false;
        };
        if !want.matches(path) {
            return false;
        }
    }
    if !rule.methods.is_empty()
        && !request
            .method(host)
            .is_some_and(|m| rule.methods.iter().any(|w| w == m))
    {
        return false;
    }
    if !rule.hosts.is_empty()
        && !request
            .host(host)
            .is_some_and(|h| rule.hosts.iter().any(|w| w == h))
    {
        return false;
    }
    rule.headers.iter().all(|want| {
        let value = request.header(host, &want.name);
        match &want.test {
            HeaderTest::Present(present) => value.is_some() == *present,
            HeaderTest::Exact(exact) => value == Some(exact.as_str()),
            HeaderTest::Regex(r) => value.is_some_and(|v| r.is_match(v)),
        }
    })
}

/// Tags of key parts in the fingerprint, so `path=/a` and `header=/a` differ.
const TAG_MISSING: u8 = 0;
const TAG_CLIENT_IP: u8 = 1;
const TAG_PATH: u8 = 2;
const TAG_METHOD: u8 = 3;
const TAG_HOST: u8 = 4;
const TAG_HEADER: u8 = 5;
const TAG_QUERY: u8 = 6;
const TAG_COOKIE: u8 = 7;

/// One key part's value in the request (`None` when the request lacks it), with the tag
/// that sets it apart in the fingerprint.
fn part_value<'r>(
    part: &'r KeyPart,
    xff_hop: u32,
    host: &dyn Host,
    request: &'r mut Request,
) -> Option<(u8, Cow<'r, [u8]>)> {
    let text = |s: &'r str| Cow::Borrowed(s.as_bytes());
    Some(match part {
        KeyPart::ClientIp => (TAG_CLIENT_IP, text(request.client_ip(host, xff_hop)?)),
        KeyPart::Path => (TAG_PATH, text(request.path(host)?)),
        KeyPart::Method => (TAG_METHOD, text(request.method(host)?)),
        KeyPart::Host => (TAG_HOST, text(request.host(host)?)),
        KeyPart::Header(name) => (TAG_HEADER, text(request.header(host, name)?)),
        KeyPart::Query(name) => (TAG_QUERY, query_param_bytes(request.query(host)?, name)?),
        KeyPart::Cookie(name) => (
            TAG_COOKIE,
            text(cookie(request.header(host, "cookie")?, name)?),
        ),
    })
}

/// The fingerprint of the request's key, or `None` when a part is missing.
fn fingerprint(
    shared: &Shared,
    key: &[KeyPart],
    host: &dyn Host,
    request: &mut Request,
) -> Option<Fingerprint> {
    let mut hasher = KeyHasher::new(&shared.seed);
    for part in key {
        let (tag, value) = part_value(part, shared.xff_hop, host, request)?;
        hasher.part(tag, &value);
    }
    Some(hasher.finish())
}

/// The values of a global rule's key parts for its descriptor; empty when a part is missing
/// (the rule counts it as shared, or the request would not be asked about).
fn key_values(
    shared: &Shared,
    key: &[KeyPart],
    host: &dyn Host,
    request: &mut Request,
) -> Vec<String> {
    let mut values = Vec::with_capacity(key.len());
    for part in key {
        match part_value(part, shared.xff_hop, host, request) {
            Some((_, value)) => values.push(String::from_utf8_lossy(&value).into_owned()),
            None => return Vec::new(),
        }
    }
    values
}

/// The entry key of a key part in a rate limit descriptor. `client_ip` is Envoy's own
/// `remote_address`, so a limits file written for Envoy's native filter applies as well.
fn entry_key(part: &KeyPart) -> &str {
    match part {
        KeyPart::ClientIp => "remote_address",
        KeyPart::Path => "path",
        KeyPart::Method => "method",
        KeyPart::Host => "host",
        KeyPart::Header(name) | KeyPart::Query(name) | KeyPart::Cookie(name) => name,
    }
}

/// A global rule's descriptor: `generic_key` = the rule's name, so that each rule has its
/// own limits in the service, then one entry per key part (none for a missing key).
fn descriptor<'a>(rule: &'a CompiledRule, values: &'a [String]) -> Vec<(&'a str, &'a str)> {
    std::iter::once(("generic_key", rule.name.as_str()))
        .chain(
            rule.key
                .iter()
                .map(entry_key)
                .zip(values.iter().map(String::as_str)),
        )
        .collect()
}

/// The one key of every request that lacks its rule's key (`missing_key: shared`).
fn missing_fingerprint(seed: &Seed) -> Fingerprint {
    let mut hasher = KeyHasher::new(seed);
    hasher.part(TAG_MISSING, b"");
    hasher.finish()
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn decimal(n: u64) -> String {
    let mut out = String::with_capacity(20);
    push_decimal(&mut out, n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PROBES;
    use serde_json::{json, Value};
    use wasmgate_glue::{FakeHost, HostError, LocalReply};

    /// A configured and started plugin, and the host every request runs on.
    struct Fixture {
        plugin: RateLimit,
        host: FakeHost,
    }

    impl Fixture {
        fn new(config: Value) -> Fixture {
            let mut host = FakeHost::new();
            let mut plugin =
                RateLimit::configure(config.to_string().as_bytes(), &mut host).unwrap();
            plugin.on_start(&mut host);
            Fixture { plugin, host }
        }

        /// Run one request through a new filter: the local reply if it was refused, and
        /// the response headers the filter added otherwise.
        fn send(&mut self, request: FakeHost) -> Result<Vec<(String, String)>, LocalReply> {
            let mut host = request;
            host.shared = std::mem::take(&mut self.host.shared);
            host.metrics = std::mem::take(&mut self.host.metrics);
            host.now = self.host.now;
            host.fail_clock = self.host.fail_clock.clone();
            host.fail_shared_writes = self.host.fail_shared_writes.clone();
            let mut filter = self.plugin.create_filter(7);
            let action = filter.on_request_headers(&mut host, true);
            let result = match host.local_reply.take() {
                Some(reply) => {
                    assert_eq!(action, Action::Pause);
                    Err(reply)
                }
                None => {
                    assert_eq!(action, Action::Continue);
                    host.response.clear();
                    filter.on_response_headers(&mut host, true);
                    Ok(host.response.clone())
                }
            };
            self.host.shared = host.shared;
            self.host.metrics = host.metrics;
            self.host.logs.extend(host.logs);
            result
        }

        fn allowed(&mut self, request: FakeHost, count: usize) -> usize {
            (0..count)
                .filter(|_| self.send(request.clone()).is_ok())
                .count()
        }

        fn stat(&mut self, rule: &str, stat: &str) -> i64 {
            for active in &self.plugin.shared.rules {
                active.flush(&mut self.host);
            }
            self.host
                .metric(&format!("rate_limit.default.{rule}.{stat}"))
                .unwrap_or_else(|| panic!("no stat {rule}.{stat}"))
        }
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn get(path: &str) -> FakeHost {
        FakeHost::new()
            .with_request("GET", path)
            .with_property(&["source", "address"], b"10.0.0.1:1234")
    }

    #[test]
    fn allows_exactly_the_limit_then_refuses_with_retry_after_and_headers() {
        let mut f = Fixture::new(json!({"rules": [{
            "name": "per_ip", "key": ["client_ip"],
            "limit": {"requests_per_unit": 3, "unit": "minute"},
        }]}));
        assert_eq!(f.allowed(get("/"), 10), 3);
        f.host.advance(Duration::from_secs(20));
        let reply = f.send(get("/")).unwrap_err();
        assert_eq!(reply.status, 429);
        assert_eq!(reply.body, b"rate limited\n");
        assert_eq!(header(&reply.headers, "retry-after"), Some("40"));
        assert_eq!(header(&reply.headers, "x-ratelimit-limit"), Some("3"));
        assert_eq!(header(&reply.headers, "x-ratelimit-remaining"), Some("0"));
        assert_eq!(header(&reply.headers, "x-ratelimit-reset"), Some("40"));
        assert_eq!(
            (f.stat("per_ip", "allowed"), f.stat("per_ip", "limited")),
            (3, 8)
        );
        f.host.advance(Duration::from_secs(40));
        assert_eq!(f.allowed(get("/"), 10), 3, "refilled after the minute");
    }

    #[test]
    fn a_failing_clock_refuses_every_request_even_with_failure_mode_allow() {
        let mut f = Fixture::new(json!({"rules": [{
            "name": "per_ip", "key": ["client_ip"], "failure_mode": "allow",
            "limit": {"requests_per_unit": 3, "unit": "minute"},
        }]}));
        f.host.fail_clock = Some(HostError::Failed("clock".into()));
        for _ in 0..2 {
            let reply = f.send(get("/")).unwrap_err();
            assert_eq!(reply.status, 503);
            assert_eq!(reply.body, b"rate-limit: clock unavailable\n");
        }
        assert_eq!(f.host.metric("rate_limit.clock_errors"), Some(2));
        assert!(f
            .host
            .logged(LogLevel::Error, "#7 rate-limit: cannot read the clock"));
        assert_eq!(f.stat("per_ip", "allowed"), 0);
        // The tick skips the sweep instead of collecting keys as of 1970.
        f.plugin.on_tick(&mut f.host);
        assert!(f.host.logged(LogLevel::Warn, "idle keys not collected"));
        f.host.fail_clock = None;
        assert_eq!(f.allowed(get("/"), 5), 3, "no tokens were taken meanwhile");
    }

    /// The shared-data slot that holds the bucket of `x-api-key: victim` after one request.
    fn slot_of_victim(mut host: FakeHost) -> String {
        let config = json!({"rules": [{"name": "k", "key": [{"header": "x-api-key"}],
            "limit": {"requests_per_unit": 5, "unit": "minute"}}]});
        let mut plugin = RateLimit::configure(config.to_string().as_bytes(), &mut host).unwrap();
        plugin.on_start(&mut host);
        let mut request = get("/").with_header("x-api-key", "victim");
        request.shared = std::mem::take(&mut host.shared);
        plugin
            .create_filter(1)
            .on_request_headers(&mut request, true);
        let mut taken: Vec<_> = request
            .shared
            .iter()
            .filter(|(_, (value, _))| value.len() > 1)
            .map(|(key, _)| key.clone())
            .collect();
        taken.retain(|k| k != SEED_KEY);
        assert_eq!(taken.len(), 1, "{taken:?}");
        taken.remove(0)
    }

    #[test]
    fn the_slot_hash_is_keyed_by_a_random_seed_shared_through_shared_data() {
        // Two Envoys draw different seeds: where a key lands cannot be computed in advance.
        let slots: std::collections::HashSet<_> = (0..4)
            .map(|i| {
                let mut host = FakeHost::new();
                host.random_drawn = i * 1_000;
                slot_of_victim(host)
            })
            .collect();
        assert!(slots.len() > 1, "the seed must move the key: {slots:?}");
        // Workers of one Envoy share the seed the first one stored, whatever they draw.
        let mut first = FakeHost::new();
        RateLimit::configure(b"{}", &mut first).unwrap();
        let stored = first.shared[SEED_KEY].0.clone();
        assert_eq!(stored.len(), 16);
        let mut worker = FakeHost::new();
        worker.shared = first.shared.clone();
        worker.random_drawn = 5_000;
        RateLimit::configure(b"{}", &mut worker).unwrap();
        assert_eq!(worker.shared[SEED_KEY].0, stored);
        assert_eq!(slot_of_victim(worker), slot_of_victim(first));
    }

    #[test]
    fn no_randomness_refuses_the_configuration() {
        let mut host = FakeHost::new();
        host.fail_random = Some(HostError::Failed("random_get".into()));
        let err = RateLimit::configure(b"{}", &mut host).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot get random bytes for the key-hash seed"),
            "{err}"
        );
        assert!(!host.shared.contains_key(SEED_KEY), "no fixed seed stored");
    }

    #[test]
    fn keys_do_not_share_buckets_and_missing_keys_follow_the_rule() {
        let mut f = Fixture::new(json!({"rules": [
            {"name": "skip", "key": [{"header": "x-api-key"}], "match": {"path": {"prefix": "/skip"}},
             "limit": {"requests_per_unit": 2, "unit": "hour"}},
            {"name": "shared", "key": [{"query": "key"}, {"cookie": "sid"}], "missing_key": "shared",
             "match": {"path": {"prefix": "/shared"}}, "limit": {"requests_per_unit": 2, "unit": "hour"}},
        ]}));
        let with_key = |path: &str, key: &str| get(path).with_header("x-api-key", key);
        assert_eq!(f.allowed(with_key("/skip", "a"), 5), 2);
        assert_eq!(f.allowed(with_key("/skip", "b"), 5), 2);
        assert_eq!(f.allowed(get("/skip"), 5), 5, "no key: the rule is skipped");
        let composite = |q: &str, c: &str| get(&format!("/shared?{q}")).with_header("cookie", c);
        assert_eq!(f.allowed(composite("key=1", "sid=x"), 5), 2);
        assert_eq!(
            f.allowed(composite("key=%31", "a=b; sid=x"), 5),
            0,
            "same key, decoded"
        );
        assert_eq!(f.allowed(composite("key=1", "sid=y"), 5), 2);
        assert_eq!(
            f.allowed(composite("key=2", "other=1"), 5),
            2,
            "the shared missing key"
        );
        assert_eq!(f.allowed(get("/shared"), 5), 0, "same missing key");
    }

    #[test]
    fn conditions_select_requests_and_every_matching_rule_must_allow() {
        let mut f = Fixture::new(json!({"rules": [
            {"name": "all", "limit": {"requests_per_unit": 5, "unit": "minute"}},
            {"name": "posts", "limit": {"requests_per_unit": 1, "unit": "minute"},
             "match": {"methods": ["post"], "path": {"regex": "^/api/v[0-9]+/"},
                       "hosts": ["api.example.com"], "headers": [{"name": "x-tier", "exact": "free"}]}},
        ]}));
        let post = |authority: &str, tier: &str| {
            let mut host = get("/api/v2/items?x=1")
                .with_request("POST", "/api/v2/items")
                .with_header("x-tier", tier);
            host.set_header(Headers::Request, ":authority", authority);
            host
        };
        // Not matched by "posts": a GET, a paid tier.
        assert!(f.send(get("/api/v2/items")).is_ok());
        assert!(f.send(post("API.example.com:8443", "paid")).is_ok());
        assert!(f.send(post("other.example.com", "free")).is_ok());
        assert!(f.send(post("API.example.com:8443", "free")).is_ok());
        // "posts" refuses, and "all" gets its token back.
        let reply = f.send(post("api.example.com", "free")).unwrap_err();
        assert_eq!(header(&reply.headers, "x-ratelimit-limit"), Some("1"));
        assert_eq!(f.stat("posts", "limited"), 1);
        assert_eq!(
            f.allowed(get("/"), 10),
            1,
            "5 - 4 allowed, the refused one refunded"
        );
        assert_eq!(f.stat("all", "allowed"), 5);
    }

    #[test]
    fn a_cost_above_one_and_a_raw_bucket() {
        let mut f = Fixture::new(json!({"rules": [{"name": "b", "cost": 2,
            "limit": {"max_tokens": 5, "tokens_per_fill": 1, "fill_interval": "10s"}}]}));
        assert_eq!(f.allowed(get("/"), 5), 2);
        let reply = f.send(get("/")).unwrap_err();
        assert_eq!(header(&reply.headers, "retry-after"), Some("10"));
        assert_eq!(header(&reply.headers, "x-ratelimit-remaining"), Some("1"));
        f.host.advance(Duration::from_secs(10));
        assert_eq!(f.allowed(get("/"), 5), 1);
    }

    #[test]
    fn shadow_rules_let_everything_through_count_and_report() {
        let mut f = Fixture::new(json!({
        "response": {"shadow_header": "x-shadow-limited"},
        "rules": [
            {"name": "trial", "shadow": true, "limit": {"requests_per_unit": 2, "unit": "minute"}},
            {"name": "trial2", "shadow": true, "limit": {"requests_per_unit": 3, "unit": "minute"}},
        ]}));
        let answers: Vec<_> = (0..5).map(|_| f.send(get("/")).unwrap()).collect();
        assert_eq!(header(&answers[1], "x-shadow-limited"), None);
        assert_eq!(header(&answers[2], "x-shadow-limited"), Some("trial"));
        assert_eq!(
            header(&answers[4], "x-shadow-limited"),
            Some("trial,trial2")
        );
        assert_eq!(f.stat("trial", "shadow_limited"), 3);
        assert_eq!(f.stat("trial2", "shadow_limited"), 2);
        assert_eq!(f.stat("trial", "limited"), 0);
    }

    #[test]
    fn allowed_responses_describe_the_most_restrictive_rule_when_asked() {
        let config = |when: &str| {
            json!({"response": {"rate_limit_headers": when}, "rules": [
                {"name": "wide", "limit": {"requests_per_unit": 100, "unit": "minute"}},
                {"name": "narrow", "limit": {"max_tokens": 10, "tokens_per_fill": 1, "fill_interval": "2s"}},
                {"name": "quiet", "shadow": true, "limit": {"requests_per_unit": 1, "unit": "minute"}},
            ]})
        };
        let mut f = Fixture::new(config("always"));
        let headers = f.send(get("/")).unwrap();
        assert_eq!(header(&headers, "x-ratelimit-limit"), Some("10"));
        assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("9"));
        assert_eq!(header(&headers, "x-ratelimit-reset"), Some("2"));
        let mut f = Fixture::new(config("refused"));
        assert_eq!(f.send(get("/")).unwrap(), Vec::new());
    }

    #[test]
    fn custom_refusals_and_never_sending_rate_limit_headers() {
        let mut f = Fixture::new(json!({
            "response": {"status": 503, "body": "slow down", "rate_limit_headers": "never",
                         "headers": [{"name": "Content-Type", "value": "text/plain"}]},
            "rules": [{"limit": {"requests_per_unit": 1, "unit": "second"}}]}));
        f.send(get("/")).unwrap();
        let reply = f.send(get("/")).unwrap_err();
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, b"slow down");
        assert_eq!(header(&reply.headers, "content-type"), Some("text/plain"));
        assert_eq!(header(&reply.headers, "retry-after"), Some("1"));
        assert_eq!(header(&reply.headers, "x-ratelimit-limit"), None);
    }

    #[test]
    fn store_failures_follow_the_failure_mode_and_are_counted() {
        let mut f = Fixture::new(json!({"rules": [
            {"name": "open", "limit": {"requests_per_unit": 1, "unit": "minute"}},
            {"name": "closed", "failure_mode": "deny", "match": {"path": {"exact": "/closed"}},
             "limit": {"requests_per_unit": 1, "unit": "minute"}},
        ]}));
        f.host.fail_shared_writes = Some(HostError::Failed("boom".into()));
        assert_eq!(f.allowed(get("/"), 3), 3);
        assert_eq!(f.stat("open", "store_errors"), 3);
        let reply = f.send(get("/closed")).unwrap_err();
        assert_eq!(reply.status, 429);
        assert_eq!(header(&reply.headers, "retry-after"), Some("1"));
        assert_eq!(f.stat("closed", "store_errors"), 1);
        assert!(f.host.logged(
            LogLevel::Warn,
            "#7 rate-limit: rule closed: shared data write failed"
        ));
    }

    #[test]
    fn the_client_is_found_through_trusted_xff_hops() {
        let mut f = Fixture::new(json!({"client_ip": {"xff_hop": 2}, "rules": [{
            "key": ["client_ip"], "limit": {"requests_per_unit": 1, "unit": "minute"}}]}));
        let via = |xff: &str| get("/").with_header("x-forwarded-for", xff);
        assert!(f.send(via("spoofed, 198.51.100.1, 10.0.0.9")).is_ok());
        assert!(f.send(via("other-spoof, 198.51.100.1, 10.0.0.9")).is_err());
        assert!(f.send(via("198.51.100.2, 10.0.0.9")).is_ok());
        // Too few hops: the connection's address.
        assert!(f.send(via("10.0.0.9")).is_ok());
        assert!(f.send(get("/")).is_err());
    }

    #[test]
    fn the_cap_holds_and_idle_keys_are_collected_on_ticks() {
        let mut f = Fixture::new(json!({"cleanup_interval": "100ms", "rules": [{
            "name": "capped", "key": [{"header": "x-api-key"}], "max_keys": 16,
            "limit": {"requests_per_unit": 1000, "unit": "minute"}}]}));
        assert_eq!(f.host.tick_period, Some(Duration::from_millis(100)));
        let entries = f.host.shared.len();
        assert_eq!(
            entries,
            16 + 1 + 1,
            "slots, the overflow bucket, the key-hash seed"
        );
        let allowed = (0..20_000)
            .filter(|i| {
                f.send(get("/").with_header("x-api-key", &i.to_string()))
                    .is_ok()
            })
            .count();
        // 16 keys with a slot each; the rest share the overflow bucket and its 1000 tokens.
        assert_eq!(allowed, 16 + 1000);
        assert_eq!(
            f.host.shared.len(),
            entries,
            "a flood of keys adds no entries"
        );
        assert_eq!(f.stat("capped", "overflowed"), 20_000 - 16);
        f.plugin.on_tick(&mut f.host);
        assert_eq!(f.stat("capped", "live_keys"), 16);
        f.host.advance(Duration::from_secs(60));
        f.plugin.on_tick(&mut f.host);
        assert_eq!(f.stat("capped", "live_keys"), 0);
        assert!(f
            .host
            .shared
            .iter()
            .filter(|(key, _)| !key.ends_with("/overflow") && *key != SEED_KEY)
            .all(|(_, (value, _))| value == crate::bucket::EMPTY_SLOT));
    }

    #[test]
    fn sweeps_spread_over_ticks() {
        let mut f = Fixture::new(json!({"rules": [
            {"name": "big", "key": ["path"], "max_keys": 1500, "limit": {"requests_per_unit": 5, "unit": "minute"}},
            {"name": "small", "key": ["path"], "max_keys": 10, "limit": {"requests_per_unit": 5, "unit": "minute"}},
        ]}));
        f.send(get("/a")).unwrap();
        f.plugin.on_tick(&mut f.host);
        assert_eq!(
            f.host.metric("rate_limit.default.big.live_keys"),
            Some(0),
            "not yet swept"
        );
        f.plugin.on_tick(&mut f.host);
        assert_eq!(f.stat("big", "live_keys"), 1);
        assert_eq!(f.stat("small", "live_keys"), 1);
    }

    #[test]
    fn a_config_error_names_the_field() {
        let err = RateLimit::configure(
            br#"{"rules":[{"limit":{"requests_per_unit":1,"unit":"minute"},"match":{"path":{"regex":"("}}}]}"#,
            &mut FakeHost::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("rules[0].match.path.regex: invalid regex"),
            "{err}"
        );
    }

    /// The host calls of one request through a started plugin, by phase.
    fn calls_per_request(f: &mut Fixture, request: FakeHost) -> (FakeHost, FakeHost) {
        let mut host = request;
        host.shared = std::mem::take(&mut f.host.shared);
        host.now = f.host.now;
        let mut filter = f.plugin.create_filter(3);
        assert_eq!(filter.on_request_headers(&mut host, true), Action::Continue);
        let request = host.clone();
        host.reset_host_calls();
        filter.on_response_headers(&mut host, true);
        f.host.shared = std::mem::take(&mut host.shared);
        (request, host)
    }

    #[test]
    fn a_global_limit_costs_the_clock_one_read_and_one_write() {
        // bench/src/configs.rs: rate_limit_wasm(), a bucket never emptied.
        let mut f = Fixture::new(json!({ "rules": [{ "limit": {
            "max_tokens": 1_000_000_000u64,
            "tokens_per_fill": 1_000_000_000u64,
            "fill_interval": "1s",
        }}]}));
        for _ in 0..2 {
            let (request, response) = calls_per_request(&mut f, get("/"));
            assert_eq!(
                request.host_calls(),
                [("now", 1), ("shared_data", 1), ("set_shared_data", 1)].into()
            );
            assert_eq!(response.calls_made(), 0);
        }
    }

    #[test]
    fn a_client_ip_key_adds_one_property_read() {
        let mut f = Fixture::new(json!({ "rules": [{
            "key": ["client_ip"],
            "limit": { "requests_per_unit": 100, "unit": "second" },
        }]}));
        // A new key looks at every slot it may sit in before taking its home slot.
        let (first, _) = calls_per_request(&mut f, get("/"));
        assert_eq!(
            first.host_calls(),
            [
                ("now", 1),
                ("property", 1),
                ("shared_data", PROBES),
                ("set_shared_data", 1)
            ]
            .into()
        );
        // A known key is found in its home slot.
        let (again, _) = calls_per_request(&mut f, get("/"));
        assert_eq!(again.host_calls()["property"], 1);
        assert_eq!(again.calls_made(), 4);
    }
}

#[cfg(test)]
#[path = "global_flow_tests.rs"]
mod global_flow_tests;
