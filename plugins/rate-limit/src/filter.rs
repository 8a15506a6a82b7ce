//! The plugin: rules compiled once, buckets created at start, idle keys collected on a
//! timer, and one filter per stream that asks every matching rule for tokens.

use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use wasmgate_glue::{
    parse_json, Action, ConfigError, Headers, Host, HostError, HttpFilter, LocalReply, LogLevel,
    MetricId, MetricKind, Plugin,
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

    // `configure` needs random bytes and shared data for the key-hash seed; a configuration
    // is only parsed and compiled here.
    fn validate(config: &[u8]) -> Result<(), ConfigError> {
        parse_json::<Config>(config)?.compile().map(drop)
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
                return Action::Reply(
                    LocalReply::new(503)
                        .header("content-type", "text/plain")
                        .body("rate-limit: clock unavailable\n"),
                );
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
                match self.decide(host, &shared, pending.evaluation, pending.now) {
                    Action::Continue => host.resume_request(),
                    refused => {
                        refused.settle(host);
                    }
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
        Action::Reply(refuse(&shared.response, &refusal, &eval.add))
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

/// The answer to a refused request: the configured response and the service's headers.
fn refuse(response: &CompiledResponse, refusal: &Refusal, add: &[(String, String)]) -> LocalReply {
    let retry_after = decimal(refusal.retry_after);
    let report = refusal
        .report
        .filter(|_| response.rate_limit_headers != RateLimitHeaders::Never)
        .map(|r| r.headers());
    let mut reply = LocalReply::new(response.status).body(response.body.clone());
    reply.headers = response.headers.iter().chain(add).cloned().collect();
    reply = reply.header("retry-after", &retry_after);
    for (name, value) in report.iter().flatten() {
        reply = reply.header(name, value);
    }
    reply
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
#[path = "filter_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "global_flow_tests.rs"]
mod global_flow_tests;
