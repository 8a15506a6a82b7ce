//! Applying compiled rules to a stream.
//!
//! Headers are read one at a time, only when a condition, template or conditional write
//! needs them, and remembered for the rest of the phase, so a rule set costs as few host
//! calls as it can. Whole-map reads happen only for `remove` by prefix or regex and for
//! `rename`/`copy` of a header that is present (Envoy hands out one value per header read,
//! and these must carry every value).

use std::borrow::Cow;
use std::rc::Rc;
use std::time::Duration;

use regex_lite::Regex;
use wasmgate_glue::{
    parse_json, Action, Callbacks, ConfigError, Counter, Headers, Host, HttpFilter, LogLevel,
    Plugin, Warnings,
};
use wasmgate_http::{query_param, request_host, split, ClientIp, HeaderView};

use crate::config::{ClearRouteCache, Config, OnMissing};
use crate::rules::{is_protected, CompiledRule, NamePattern, Op, Rules, Write};
use crate::template::{neutralise, Template, Var};
use crate::url::{self, QueryEdit};

/// The plugin's root: rules compiled once and shared by every stream.
#[derive(Debug)]
pub struct HeaderRewrite {
    shared: Rc<Shared>,
}

#[derive(Debug)]
struct Shared {
    rules: Rules,
    metrics: Metrics,
}

/// How often counts gathered by the streams are added to Envoy's stats.
const FLUSH_PERIOD: Duration = Duration::from_secs(1);

/// Envoy stats, `wasmcustom.header_rewrite.*`. Streams only add to the pending counts (no
/// host call on the request path); the root context adds them to the stats every
/// [`FLUSH_PERIOD`].
#[derive(Debug, Default)]
struct Metrics {
    rules_matched: Counter,
    operations_applied: Counter,
    operations_skipped: Counter,
    /// `header_rewrite.rule.<name>.matched`, by rule index.
    per_rule: Vec<Counter>,
}

impl Metrics {
    fn flush(&self, host: &mut dyn Host) {
        self.rules_matched.flush(host);
        self.operations_applied.flush(host);
        self.operations_skipped.flush(host);
        for counter in &self.per_rule {
            counter.flush(host);
        }
    }
}

impl Plugin for HeaderRewrite {
    const NAME: &'static str = "header-rewrite";
    type Filter = HeaderRewriteFilter;
    // Response rules; the tick flushes the metrics counted by the streams.
    const CALLBACKS: Callbacks = Callbacks {
        response_headers: true,
        tick: true,
        ..Callbacks::NONE
    };

    fn configure(config: &[u8], host: &mut dyn Host) -> Result<Self, ConfigError> {
        let rules = parse_json::<Config>(config)?.compile()?;
        for warning in rules.warnings.iter() {
            host.log(
                LogLevel::Warn,
                &format!("header-rewrite: configuration: {warning}"),
            );
        }
        let metrics = Metrics {
            rules_matched: Counter::define(host, "header_rewrite.rules_matched")?,
            operations_applied: Counter::define(host, "header_rewrite.operations_applied")?,
            operations_skipped: Counter::define(host, "header_rewrite.operations_skipped")?,
            per_rule: rules
                .rules
                .iter()
                .map(|rule| match &rule.name {
                    Some(name) => {
                        Counter::define(host, &format!("header_rewrite.rule.{name}.matched"))
                    }
                    None => Ok(Counter::none()),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(HeaderRewrite {
            shared: Rc::new(Shared { rules, metrics }),
        })
    }

    // `configure` adds only counter definitions, which a proxy alone can refuse.
    fn validate(config: &[u8]) -> Result<Warnings, ConfigError> {
        Ok(parse_json::<Config>(config)?.compile()?.warnings)
    }

    fn on_start(&mut self, host: &mut dyn Host) {
        host.set_tick_period(FLUSH_PERIOD);
    }

    fn on_tick(&mut self, host: &mut dyn Host) {
        self.shared.metrics.flush(host);
    }

    fn create_filter(&self, context_id: u32) -> HeaderRewriteFilter {
        HeaderRewriteFilter {
            shared: Rc::clone(&self.shared),
            context_id,
            matched: Vec::new(),
        }
    }
}

/// One stream's filter.
#[derive(Debug)]
pub struct HeaderRewriteFilter {
    shared: Rc<Shared>,
    context_id: u32,
    /// Rules that matched the request and have response operations.
    matched: Vec<Matched>,
}

/// A rule that matched, with the request values its response operations read
/// (in the order of [`CompiledRule::response_reads`]).
#[derive(Debug)]
struct Matched {
    rule: usize,
    reads: Vec<Option<String>>,
}

/// One header map being rewritten: reads and writes go through a [`HeaderView`], so each
/// header costs one host call at most and later reads see what the rules wrote.
struct View<'a, 'n> {
    host: &'a mut dyn Host,
    headers: HeaderView<'n>,
    changed: bool,
    /// A pseudo-header (path, query, host, method) changed.
    routing_changed: bool,
}

impl<'a, 'n> View<'a, 'n> {
    fn new(host: &'a mut dyn Host, map: Headers) -> Self {
        View {
            host,
            headers: HeaderView::new(map),
            changed: false,
            routing_changed: false,
        }
    }

    fn map(&self) -> Headers {
        self.headers.map()
    }

    fn get(&mut self, name: &'n str) -> Option<String> {
        self.headers.get(&*self.host, name).map(str::to_owned)
    }

    fn set(&mut self, name: &'n str, value: Cow<'n, str>) {
        self.host.set_header(self.map(), name, &value);
        self.changed(name);
        self.headers.remember(Cow::Borrowed(name), Some(value));
    }

    fn changed(&mut self, name: &str) {
        self.changed = true;
        self.routing_changed |= name.starts_with(':');
    }

    fn append(&mut self, name: &'n str, value: &str) {
        self.host.add_header(self.map(), name, value);
        self.headers.appended(name, value);
        self.changed(name);
    }

    fn remove(&mut self, name: Cow<'n, str>) {
        self.host.remove_header(self.map(), &name);
        self.changed(&name);
        self.headers.remember(name, None);
    }

    /// Every value of `name`, in order (a whole-map read).
    fn values(&mut self, name: &str) -> Vec<String> {
        self.host
            .headers(self.map())
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }
}

/// What one operation did.
enum Outcome {
    Applied,
    /// A template variable had no value and the rule says to skip.
    Skipped,
    /// Nothing to do: a condition of the operation itself did not hold.
    Idle,
    /// Refused at run time, with the reason to log.
    Refused(String),
}

type Lookup<'l, 'n> = dyn FnMut(&mut View<'_, 'n>, &'n Var) -> Option<String> + 'l;

/// A request value for a template: from the (possibly already rewritten) request headers,
/// the client address, or the rule's captures.
fn request_var<'n>(
    view: &mut View<'_, 'n>,
    client_ip: ClientIp,
    captures: &[Option<String>],
    var: &'n Var,
) -> Option<String> {
    match var {
        // Envoy keeps the request's host as `:authority`.
        Var::Header(name) if name == "host" => view.get(":authority"),
        Var::Header(name) => view.get(name),
        Var::Query(name) => {
            let target = view.get(":path")?;
            query_param(split(&target).1?, name).map(Cow::into_owned)
        }
        Var::Path => view.get(":path").map(|t| split(&t).0.to_owned()),
        Var::Method => view.get(":method"),
        Var::Host => view.get(":authority"),
        Var::RequestId => view.get("x-request-id"),
        Var::ClientIp => view
            .headers
            .client_ip(&*view.host, client_ip)
            .map(str::to_owned),
        Var::Capture(n) => captures.get(*n).cloned().flatten(),
    }
}

/// Whether the rule's conditions hold; its path regex captures (`${0}`, `${1}`…) when so.
fn rule_matches<'n>(
    rule: &'n CompiledRule,
    view: &mut View<'_, 'n>,
) -> Option<Vec<Option<String>>> {
    let when = &rule.when;
    if !when.methods.is_empty() && !when.methods.matches(view.get(":method").as_deref()) {
        return None;
    }
    let mut captures = Vec::new();
    if let Some(matcher) = &when.path {
        let target = view.get(":path")?;
        captures = matcher
            .captures(split(&target).0)?
            .into_iter()
            .map(|group| group.map(str::to_owned))
            .collect();
    }
    if when.reads_host() {
        let authority = view.get(":authority");
        if !when.matches_host(authority.as_deref().map(request_host).as_deref()) {
            return None;
        }
    }
    for condition in &when.headers {
        if !condition.test.holds(view.get(&condition.name).as_deref()) {
            return None;
        }
    }
    Some(captures)
}

/// Apply one operation: each kind has its own function below.
fn apply<'n>(
    op: &'n Op,
    view: &mut View<'_, 'n>,
    missing: OnMissing,
    lookup: &mut Lookup<'_, 'n>,
) -> Outcome {
    match op {
        Op::Write { how, name, value } => write(*how, name, value, view, missing, lookup),
        Op::Remove(name) => {
            view.remove(Cow::Borrowed(name));
            Outcome::Applied
        }
        Op::RemoveMatching {
            pattern,
            allow_protected,
        } => remove_matching(pattern, *allow_protected, view),
        Op::Rename { from, to } => transfer(from, to, true, view),
        Op::Copy { from, to } => transfer(from, to, false, view),
        Op::RewritePath { regex, replacement } => {
            rewrite_path(regex, replacement, view, missing, lookup)
        }
        Op::SetQueryParam { name, value } => match value.render(missing, |var| lookup(view, var)) {
            Some(value) => edit_query(view, QueryEdit::Set(name, &value)),
            None => Outcome::Skipped,
        },
        Op::AddQueryParam { name, value } => match value.render(missing, |var| lookup(view, var)) {
            Some(value) => edit_query(view, QueryEdit::Add(name, &value)),
            None => Outcome::Skipped,
        },
        Op::RemoveQueryParam(name) => edit_query(view, QueryEdit::Remove(name)),
    }
}

/// `set`, `append`, `add_if_absent`, `overwrite_if_exists`.
fn write<'n>(
    how: Write,
    name: &'n str,
    value: &'n Template,
    view: &mut View<'_, 'n>,
    missing: OnMissing,
    lookup: &mut Lookup<'_, 'n>,
) -> Outcome {
    let present = match how {
        Write::AddIfAbsent | Write::OverwriteIfExists => view.get(name).is_some(),
        Write::Set | Write::Append => false,
    };
    if (how == Write::AddIfAbsent && present) || (how == Write::OverwriteIfExists && !present) {
        return Outcome::Idle;
    }
    let rendered = match value.literal() {
        Some(text) => Cow::Borrowed(text),
        None => match value.render(missing, |var| lookup(view, var)) {
            Some(rendered) => Cow::Owned(rendered),
            None => return Outcome::Skipped,
        },
    };
    let rendered = neutralise(rendered);
    match how {
        Write::Append => view.append(name, &rendered),
        _ => view.set(name, rendered),
    }
    Outcome::Applied
}

/// `remove` by prefix or regex: every matching header but pseudo-headers (and protected
/// ones unless allowed), found with one whole-map read.
fn remove_matching(
    pattern: &NamePattern,
    allow_protected: bool,
    view: &mut View<'_, '_>,
) -> Outcome {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in view.host.headers(view.map()) {
        let name = name.to_ascii_lowercase();
        if !name.starts_with(':')
            && (allow_protected || !is_protected(&name))
            && pattern.matches(&name)
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Outcome::Idle;
    }
    for name in names {
        view.remove(Cow::Owned(name));
    }
    Outcome::Applied
}

/// `copy`, and `rename` (`remove_source`): every value of `from` to `to`.
fn transfer<'n>(
    from: &'n str,
    to: &'n str,
    remove_source: bool,
    view: &mut View<'_, 'n>,
) -> Outcome {
    if view.get(from).is_none() {
        return Outcome::Idle;
    }
    let mut values = view.values(from).into_iter();
    let Some(first) = values.next() else {
        return Outcome::Idle;
    };
    view.set(to, Cow::Owned(first));
    // A pseudo-header holds one value.
    if !to.starts_with(':') {
        for value in values {
            view.append(to, &value);
        }
    }
    if remove_source {
        view.remove(Cow::Borrowed(from));
    }
    Outcome::Applied
}

/// `rewrite_path`: every match of `regex` in the path replaced, the query kept.
fn rewrite_path<'n>(
    regex: &'n Regex,
    replacement: &'n Template,
    view: &mut View<'_, 'n>,
    missing: OnMissing,
    lookup: &mut Lookup<'_, 'n>,
) -> Outcome {
    let Some(target) = view.get(":path") else {
        return Outcome::Idle;
    };
    let (path, query) = split(&target);
    let mut rewritten = String::with_capacity(path.len() + 16);
    let mut last = 0;
    let mut any = false;
    for caps in regex.captures_iter(path) {
        let Some(whole) = caps.get(0) else { continue };
        let rendered = replacement.render(missing, |var| match var {
            Var::Capture(n) => caps.get(*n).map(|m| m.as_str().to_owned()),
            other => lookup(view, other),
        });
        let Some(rendered) = rendered else {
            return Outcome::Skipped;
        };
        rewritten.push_str(&path[last..whole.start()]);
        rewritten.push_str(&url::encode_path(&rendered));
        last = whole.end();
        any = true;
    }
    if !any {
        return Outcome::Idle;
    }
    rewritten.push_str(&path[last..]);
    if !rewritten.starts_with('/') {
        return Outcome::Refused(format!(
            "rewrite_path turned {path:?} into {rewritten:?}, which does not start with `/`; path left unchanged"
        ));
    }
    if rewritten == path {
        return Outcome::Idle;
    }
    view.set(":path", Cow::Owned(url::join(&rewritten, query)));
    Outcome::Applied
}

/// `set_query_param`, `add_query_param`, `remove_query_param`.
fn edit_query(view: &mut View<'_, '_>, edit: QueryEdit<'_>) -> Outcome {
    let Some(target) = view.get(":path") else {
        return Outcome::Idle;
    };
    let (path, query) = split(&target);
    match url::edit_query(query.unwrap_or(""), edit) {
        Some(query) => {
            view.set(":path", Cow::Owned(url::join(path, Some(&query))));
            Outcome::Applied
        }
        None => Outcome::Idle,
    }
}

/// Counts for the metrics, added up over one phase so each costs one host call at most.
#[derive(Default)]
struct Tally {
    applied: u64,
    skipped: u64,
}

impl Tally {
    fn count(
        &mut self,
        outcome: Outcome,
        view: &mut View<'_, '_>,
        context_id: u32,
        rule: (&CompiledRule, usize),
    ) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Idle => {}
            Outcome::Refused(why) => {
                self.skipped += 1;
                view.host.log(
                    LogLevel::Warn,
                    &format!(
                        "#{context_id} header-rewrite: {}: {why}",
                        label(rule.0, rule.1)
                    ),
                );
            }
        }
    }

    fn report(self, metrics: &Metrics) {
        metrics.operations_applied.add(self.applied);
        metrics.operations_skipped.add(self.skipped);
    }
}

fn label(rule: &CompiledRule, index: usize) -> String {
    match &rule.name {
        Some(name) => format!("rule {name:?}"),
        None => format!("rules[{index}]"),
    }
}

impl HttpFilter for HeaderRewriteFilter {
    fn on_request_headers(&mut self, host: &mut dyn Host, _: bool) -> Action {
        let shared = &*self.shared;
        let mut view = View::new(host, Headers::Request);
        let client_ip = shared.rules.client_ip;
        let mut tally = Tally::default();
        let mut matched: u64 = 0;
        for (index, rule) in shared.rules.rules.iter().enumerate() {
            let Some(captures) = rule_matches(rule, &mut view) else {
                continue;
            };
            matched += 1;
            if let Some(counter) = shared.metrics.per_rule.get(index) {
                counter.inc();
            }
            let lookup: &mut Lookup<'_, '_> =
                &mut |view, var| request_var(view, client_ip, &captures, var);
            // Response operations see the request as the rule matched it.
            if !rule.response.is_empty() {
                let reads = rule
                    .response_reads
                    .iter()
                    .map(|var| lookup(&mut view, var))
                    .collect();
                self.matched.push(Matched { rule: index, reads });
            }
            for op in &rule.request {
                let outcome = apply(op, &mut view, rule.missing, lookup);
                tally.count(outcome, &mut view, self.context_id, (rule, index));
            }
        }
        let clear = match shared.rules.clear_route_cache {
            ClearRouteCache::OnRoutingChange => view.routing_changed,
            ClearRouteCache::OnAnyChange => view.changed,
            ClearRouteCache::Never => false,
        };
        if clear {
            host.clear_route_cache();
        }
        shared.metrics.rules_matched.add(matched);
        tally.report(&shared.metrics);
        Action::Continue
    }

    fn on_response_headers(&mut self, host: &mut dyn Host, _: bool) -> Action {
        if self.matched.is_empty() {
            return Action::Continue;
        }
        let shared = &*self.shared;
        let mut view = View::new(host, Headers::Response);
        let mut tally = Tally::default();
        for matched in &self.matched {
            let Some(rule) = shared.rules.rules.get(matched.rule) else {
                continue;
            };
            let lookup: &mut Lookup<'_, '_> = &mut |view, var| match var {
                Var::Header(name) => view.get(name),
                other => rule
                    .response_reads
                    .iter()
                    .position(|read| read == other)
                    .and_then(|at| matched.reads.get(at).cloned().flatten()),
            };
            for op in &rule.response {
                let outcome = apply(op, &mut view, rule.missing, lookup);
                tally.count(outcome, &mut view, self.context_id, (rule, matched.rule));
            }
        }
        tally.report(&shared.metrics);
        Action::Continue
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
