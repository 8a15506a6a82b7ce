//! A request's decision across its rules: what each rule said, the refusal that wins, and
//! what the response carries (`x-ratelimit-*`, shadow names, the service's headers).

use wasmgate_glue::{Host, LocalReply, LogLevel};

use crate::bucket::{ceil_secs, Decision, Fingerprint, Limit};
use crate::config::{FailureMode, RateLimitHeaders};
use crate::global::{self, Verdict};
use crate::rules::{CompiledResponse, CompiledRule};
use crate::shared::{ActiveRule, Shared};
use crate::store::{push_decimal, Place};

/// A rule's view of its bucket, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) reset_secs: u64,
}

impl Report {
    pub(crate) fn new(limit: &Limit, decision: &Decision) -> Report {
        Report {
            limit: limit.max_tokens,
            remaining: decision.remaining,
            reset_secs: ceil_secs(decision.reset_ns),
        }
    }

    /// Fewer tokens left is more restrictive; with as many, the longer wait.
    pub(crate) fn tighter(self, other: Option<Report>) -> Report {
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

    pub(crate) fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("x-ratelimit-limit", decimal(u64::from(self.limit))),
            ("x-ratelimit-remaining", decimal(u64::from(self.remaining))),
            ("x-ratelimit-reset", decimal(self.reset_secs)),
        ]
    }
}

/// What the response of an allowed request carries.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) report: Option<Report>,
    /// Names of the shadow rules that would have refused the request.
    pub(crate) shadow: String,
    /// The rate limit service's `response_headers_to_add`.
    pub(crate) add: Vec<(String, String)>,
}

/// The refusal of a request: the refusing rule, what to say of its limit (nothing when the
/// store or the service failed) and the seconds to wait.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) rule: usize,
    pub(crate) report: Option<Report>,
    pub(crate) retry_after: u64,
}

/// A request's decision so far; kept across the calls to the rate limit service.
#[derive(Debug, Default)]
pub(crate) struct Evaluation {
    /// (rule, key, where) of every local bucket this request took tokens from that a later
    /// rule may still have to refund: none for the last rule, so one rule allocates nothing.
    pub(crate) taken: Vec<(usize, Fingerprint, Place)>,
    /// Global rules the service allowed the request, counted as allowed until a refusal.
    pub(crate) allowed: Vec<usize>,
    pub(crate) report: Option<Report>,
    pub(crate) shadow: String,
    pub(crate) refusal: Option<Refusal>,
    pub(crate) add: Vec<(String, String)>,
}

impl Evaluation {
    /// The first rule in configuration order refuses, whichever answer came first.
    pub(crate) fn refuse(&mut self, refusal: Refusal) {
        if self.refusal.as_ref().is_none_or(|r| r.rule > refusal.rule) {
            self.refusal = Some(refusal);
        }
    }

    pub(crate) fn shadow_limited(&mut self, active: &ActiveRule) {
        active.stats.shadow_limited.inc();
        if !self.shadow.is_empty() {
            self.shadow.push(',');
        }
        self.shadow.push_str(&active.rule.name);
    }
}

/// A global rule the service is asked about for this request.
#[derive(Debug)]
pub(crate) struct Ask {
    pub(crate) rule: usize,
    pub(crate) fingerprint: Fingerprint,
    /// The key parts' values, in the rule's order; empty for a missing key counted as shared.
    pub(crate) values: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Pending {
    /// Calls not answered yet: their token and the rules they ask about.
    pub(crate) calls: Vec<(u32, Vec<Ask>)>,
    pub(crate) evaluation: Evaluation,
    pub(crate) now: u64,
}

/// The service could not answer about a global rule.
pub(crate) fn fail(
    context_id: u32,
    host: &mut dyn Host,
    shared: &Shared,
    index: usize,
    why: &str,
    eval: &mut Evaluation,
) {
    let active = &shared.rules[index];
    active.stats.service_errors.inc();
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
pub(crate) fn failed(
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
pub(crate) fn judge(
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
        active.stats.allowed.inc();
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
pub(crate) fn grpc_status_name(code: u32) -> &'static str {
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
pub(crate) fn refuse(
    response: &CompiledResponse,
    refusal: &Refusal,
    add: &[(String, String)],
) -> LocalReply {
    let retry_after = decimal(refusal.retry_after);
    let report = refusal
        .report
        .filter(|_| response.rate_limit_headers != RateLimitHeaders::Never)
        .map(|r| r.headers());
    let mut reply = LocalReply::new(response.status).body(response.body.clone());
    reply.headers = Vec::with_capacity(response.headers.len() + add.len());
    reply.headers.extend_from_slice(&response.headers);
    reply.headers.extend_from_slice(add);
    reply = reply.header("retry-after", &retry_after);
    for (name, value) in report.iter().flatten() {
        reply = reply.header(name, value);
    }
    reply
}

pub(crate) fn decimal(n: u64) -> String {
    let mut out = String::with_capacity(20);
    push_decimal(&mut out, n);
    out
}
