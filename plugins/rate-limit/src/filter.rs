//! The plugin: rules compiled once, buckets created at start, idle keys collected on a
//! timer, and one filter per stream that asks every matching rule for tokens (which rules
//! and keys: `key`; the decision across rules: `decision`; shared state: `shared`).

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use wasmgate_glue::{
    parse_json, Action, Callbacks, ConfigError, Counter, Headers, Host, HttpFilter, LocalReply,
    LogLevel, Plugin, Warnings,
};
use wasmgate_http::HeaderView;

use crate::bucket::{ceil_secs, Fingerprint, Limit};
use crate::config::{Config, MissingKey, RateLimitHeaders};
use crate::decision::{
    fail, failed, grpc_status_name, judge, refuse, Answer, Ask, Evaluation, Pending, Refusal,
    Report,
};
use crate::global::{self, Memory};
use crate::key::{descriptor, fingerprint, key_values, matches, missing_fingerprint};
use crate::shared::{shared_seed, ActiveRule, Shared, Stats};
use crate::store::{Place, Table};

/// Slots examined per tick, so that collecting idle keys never holds a worker for long.
const SWEEP_BUDGET: u32 = 1024;

/// The plugin's root: compiled rules shared by every stream, and the sweep's position.
/// A Wasm VM runs on one thread, so streams share the root's state through an `Rc`.
#[derive(Debug)]
pub struct RateLimit {
    shared: Rc<Shared>,
    sweep: Sweep,
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
    // Limit headers on responses; ticks flush the metrics and sweep idle buckets; the rate
    // limit service answers over gRPC in global mode.
    const CALLBACKS: Callbacks = Callbacks {
        response_headers: true,
        tick: true,
        grpc_call_response: true,
        ..Callbacks::NONE
    };

    fn configure(config: &[u8], host: &mut dyn Host) -> Result<Self, ConfigError> {
        let compiled = parse_json::<Config>(config)?.compile()?;
        for warning in compiled.warnings.iter() {
            host.log(
                LogLevel::Warn,
                &format!("rate-limit: configuration: {warning}"),
            );
        }
        let clock_errors = Counter::define(host, "rate_limit.clock_errors")?;
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
                rule,
            });
        }
        Ok(RateLimit {
            shared: Rc::new(Shared {
                any_global: rules.iter().any(|r| r.rule.global),
                rules,
                domain: compiled.domain,
                service: compiled.service,
                client_ip: compiled.client_ip,
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
    fn validate(config: &[u8]) -> Result<Warnings, ConfigError> {
        parse_json::<Config>(config)?
            .compile()
            .map(|compiled| compiled.warnings)
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
        self.shared.clock_errors.flush(host);
        for active in rules {
            active.stats.flush(host);
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

/// One stream's filter.
#[derive(Debug)]
pub struct RateLimitFilter {
    context_id: u32,
    shared: Rc<Shared>,
    answer: Option<Answer>,
    /// The calls to the rate limit service a paused request waits for.
    pending: Option<Pending>,
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
                shared.clock_errors.inc();
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
        let mut request = HeaderView::request();
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
                active.stats.remembered.inc();
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
    // Kept out of `on_request_headers` (as are `key::matches` and `key::fingerprint`): Envoy's
    // V8 keeps the compiler's memory for a module's largest functions (bench/module-memory.md).
    #[inline(never)]
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
                active.stats.store_errors.inc();
                failed(self.context_id, host, rule, index, &err.to_string(), eval);
            }
            Ok(t) => {
                if t.place == Place::Overflow {
                    active.stats.overflowed.inc();
                }
                if t.decision.allowed {
                    // Counted now, and taken back if a later rule refuses the request.
                    active.stats.allowed.inc();
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
            let mut entries = Vec::with_capacity(group.len());
            for ask in &group {
                entries.push(descriptor(&shared.rules[ask.rule].rule, &ask.values));
            }
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
            active.stats.allowed.take_back();
            if let Some((table, limit)) = &active.table {
                table.refund(host, limit, fingerprint, place, rule.cost, now);
            }
        }
        // The service has counted it; only our stat can be taken back.
        for index in eval.allowed {
            shared.rules[index].stats.allowed.take_back();
        }
        let active = &shared.rules[refusal.rule];
        active.stats.limited.inc();
        Action::Reply(refuse(&shared.response, &refusal, &eval.add))
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        // Saturating u64 arithmetic, not `as_nanos`: its u128 costs Wasm code (issue 14).
        .map_or(0, |d| {
            d.as_secs()
                .saturating_mul(crate::rules::NANOS_PER_SEC)
                .saturating_add(u64::from(d.subsec_nanos()))
        })
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "global_flow_tests.rs"]
mod global_flow_tests;
