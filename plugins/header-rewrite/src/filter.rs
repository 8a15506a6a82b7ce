//! Applying compiled rules to a stream.
//!
//! Headers are read one at a time, only when a condition, template or conditional write
//! needs them, and remembered for the rest of the phase, so a rule set costs as few host
//! calls as it can. Whole-map reads happen only for `remove` by prefix or regex and for
//! `rename`/`copy` of a header that is present (Envoy hands out one value per header read,
//! and these must carry every value).

use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmgate_glue::{
    parse_json, Action, ConfigError, Headers, Host, HttpFilter, LogLevel, MetricId, MetricKind,
    Plugin,
};
use wasmgate_http::{query_param, split};

use crate::config::{ClearRouteCache, Config, OnMissing};
use crate::rules::{is_protected, CompiledRule, Op, Rules, Write};
use crate::template::{neutralise, Var};
use crate::url::{self, QueryEdit};

/// The plugin's root: rules compiled once and shared by every stream.
#[derive(Debug)]
pub struct HeaderRewrite {
    shared: Arc<Shared>,
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

/// One counter: its id (`None` when the host refused to define it, and for unnamed rules)
/// and what the streams counted since the last flush.
#[derive(Debug, Default)]
struct Counter {
    id: Option<MetricId>,
    pending: AtomicI64,
}

impl Counter {
    fn define(host: &mut dyn Host, name: &str) -> Counter {
        let id = match host.define_metric(MetricKind::Counter, name) {
            Ok(id) => Some(id),
            Err(err) => {
                host.log(
                    LogLevel::Warn,
                    &format!("header-rewrite: cannot define metric {name}: {err}"),
                );
                None
            }
        };
        Counter {
            id,
            pending: AtomicI64::new(0),
        }
    }

    fn add(&self, by: i64) {
        if self.id.is_some() && by > 0 {
            self.pending.fetch_add(by, Ordering::Relaxed);
        }
    }

    fn flush(&self, host: &mut dyn Host) {
        let by = self.pending.swap(0, Ordering::Relaxed);
        if let (Some(id), true) = (self.id, by > 0) {
            host.increment_metric(id, by);
        }
    }
}

impl Plugin for HeaderRewrite {
    const NAME: &'static str = "header-rewrite";
    type Filter = HeaderRewriteFilter;

    fn configure(config: &[u8], host: &mut dyn Host) -> Result<Self, ConfigError> {
        let rules = parse_json::<Config>(config)?.compile()?;
        let metrics = Metrics {
            rules_matched: Counter::define(host, "header_rewrite.rules_matched"),
            operations_applied: Counter::define(host, "header_rewrite.operations_applied"),
            operations_skipped: Counter::define(host, "header_rewrite.operations_skipped"),
            per_rule: rules
                .rules
                .iter()
                .map(|rule| match &rule.name {
                    Some(name) => {
                        Counter::define(host, &format!("header_rewrite.rule.{name}.matched"))
                    }
                    None => Counter::default(),
                })
                .collect(),
        };
        Ok(HeaderRewrite {
            shared: Arc::new(Shared { rules, metrics }),
        })
    }

    fn on_start(&mut self, host: &mut dyn Host) {
        host.set_tick_period(FLUSH_PERIOD);
    }

    fn on_tick(&mut self, host: &mut dyn Host) {
        self.shared.metrics.flush(host);
    }

    fn create_filter(&self, context_id: u32) -> HeaderRewriteFilter {
        HeaderRewriteFilter {
            shared: Arc::clone(&self.shared),
            context_id,
            matched: Vec::new(),
        }
    }
}

/// One stream's filter.
#[derive(Debug)]
pub struct HeaderRewriteFilter {
    shared: Arc<Shared>,
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

/// One header map being rewritten, with the values read or written so far. Names borrow
/// from the compiled rules (`'n`), so remembering a header allocates no name.
struct View<'a, 'n> {
    host: &'a mut dyn Host,
    map: Headers,
    /// Lowercased name → first value (`None`: absent), as Envoy's single-value read gives.
    /// Literal values written by the rules are borrowed too.
    cache: Vec<(Cow<'n, str>, Option<Cow<'n, str>>)>,
    changed: bool,
    /// A pseudo-header (path, query, host, method) changed.
    routing_changed: bool,
}

impl<'a, 'n> View<'a, 'n> {
    fn new(host: &'a mut dyn Host, map: Headers) -> Self {
        View {
            host,
            map,
            cache: Vec::new(),
            changed: false,
            routing_changed: false,
        }
    }

    fn get(&mut self, name: &'n str) -> Option<String> {
        if let Some((_, value)) = self.cache.iter().find(|(n, _)| n == name) {
            return value.as_deref().map(str::to_owned);
        }
        let value = self.host.header(self.map, name);
        self.cache
            .push((Cow::Borrowed(name), value.clone().map(Cow::Owned)));
        value
    }

    fn remember(&mut self, name: Cow<'n, str>, value: Option<Cow<'n, str>>) {
        match self.cache.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.cache.push((name, value)),
        }
    }

    fn set(&mut self, name: &'n str, value: Cow<'n, str>) {
        self.host.set_header(self.map, name, &value);
        self.changed(name);
        self.remember(Cow::Borrowed(name), Some(value));
    }

    fn changed(&mut self, name: &str) {
        self.changed = true;
        self.routing_changed |= name.starts_with(':');
    }

    fn append(&mut self, name: &'n str, value: &str) {
        self.host.add_header(self.map, name, value);
        // The first value stays first; an absent header now has this one.
        if let Some(entry) = self.cache.iter_mut().find(|(n, _)| n == name) {
            entry.1.get_or_insert_with(|| Cow::Owned(value.to_owned()));
        }
        self.changed(name);
    }

    fn remove(&mut self, name: Cow<'n, str>) {
        self.host.remove_header(self.map, &name);
        self.changed(&name);
        self.remember(name, None);
    }

    /// Every value of `name`, in order (a whole-map read).
    fn values(&mut self, name: &str) -> Vec<String> {
        self.host
            .headers(self.map)
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
    client_ip: &mut Option<Option<String>>,
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
        Var::ClientIp => client_ip
            .get_or_insert_with(|| {
                view.host
                    .property(&["source", "address"])
                    .map(|a| url::strip_port(&String::from_utf8_lossy(&a)).to_owned())
            })
            .clone(),
        Var::Capture(n) => captures.get(*n).cloned().flatten(),
    }
}

/// Whether the rule's conditions hold; its path regex captures (`${0}`, `${1}`…) when so.
fn rule_matches<'n>(
    rule: &'n CompiledRule,
    view: &mut View<'_, 'n>,
) -> Option<Vec<Option<String>>> {
    if !rule.methods.is_empty() {
        let method = view.get(":method")?;
        if !rule.methods.iter().any(|m| m.eq_ignore_ascii_case(&method)) {
            return None;
        }
    }
    let mut captures = Vec::new();
    if let Some(matcher) = &rule.path {
        let target = view.get(":path")?;
        captures = matcher
            .captures(split(&target).0)?
            .into_iter()
            .map(|group| group.map(str::to_owned))
            .collect();
    }
    if let Some(matcher) = &rule.host {
        let authority = view.get(":authority")?;
        if !matcher.matches(&url::strip_port(&authority).to_ascii_lowercase()) {
            return None;
        }
    }
    for (name, test) in &rule.headers {
        if !test.holds(view.get(name).as_deref()) {
            return None;
        }
    }
    Some(captures)
}

fn apply<'n>(
    op: &'n Op,
    view: &mut View<'_, 'n>,
    missing: OnMissing,
    lookup: &mut Lookup<'_, 'n>,
) -> Outcome {
    match op {
        Op::Write { how, name, value } => {
            let present = match how {
                Write::AddIfAbsent | Write::OverwriteIfExists => view.get(name).is_some(),
                Write::Set | Write::Append => false,
            };
            if (*how == Write::AddIfAbsent && present)
                || (*how == Write::OverwriteIfExists && !present)
            {
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
        Op::Remove(name) => {
            view.remove(Cow::Borrowed(name));
            Outcome::Applied
        }
        Op::RemoveMatching {
            pattern,
            allow_protected,
        } => {
            let mut names: Vec<String> = Vec::new();
            for (name, _) in view.host.headers(view.map) {
                let name = name.to_ascii_lowercase();
                if !name.starts_with(':')
                    && (*allow_protected || !is_protected(&name))
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
        Op::Rename { from, to } | Op::Copy { from, to } => {
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
            if matches!(op, Op::Rename { .. }) {
                view.remove(Cow::Borrowed(from));
            }
            Outcome::Applied
        }
        Op::RewritePath { regex, replacement } => {
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
        Op::SetQueryParam { name, value } | Op::AddQueryParam { name, value } => {
            let Some(value) = value.render(missing, |var| lookup(view, var)) else {
                return Outcome::Skipped;
            };
            let edit = if matches!(op, Op::SetQueryParam { .. }) {
                QueryEdit::Set(name, &value)
            } else {
                QueryEdit::Add(name, &value)
            };
            edit_query(view, edit)
        }
        Op::RemoveQueryParam(name) => edit_query(view, QueryEdit::Remove(name)),
    }
}

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
    applied: i64,
    skipped: i64,
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
        let mut client_ip = None;
        let mut tally = Tally::default();
        let mut matched = 0;
        for (index, rule) in shared.rules.rules.iter().enumerate() {
            let Some(captures) = rule_matches(rule, &mut view) else {
                continue;
            };
            matched += 1;
            if let Some(counter) = shared.metrics.per_rule.get(index) {
                counter.add(1);
            }
            let lookup: &mut Lookup<'_, '_> =
                &mut |view, var| request_var(view, &mut client_ip, &captures, var);
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
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use wasmgate_glue::FakeHost;

    /// Configure with `config`, run the request and response phases on `host`, then one
    /// tick so the counts reach the metrics.
    fn run(config: Value, mut host: FakeHost) -> FakeHost {
        let mut plugin =
            HeaderRewrite::configure(config.to_string().as_bytes(), &mut host).unwrap();
        let mut filter = plugin.create_filter(7);
        assert_eq!(filter.on_request_headers(&mut host, true), Action::Continue);
        assert_eq!(
            filter.on_response_headers(&mut host, true),
            Action::Continue
        );
        plugin.on_tick(&mut host);
        host
    }

    fn request(ops: Value, host: FakeHost) -> FakeHost {
        run(json!({ "rules": [{ "request": ops }] }), host)
    }

    fn response(ops: Value, host: FakeHost) -> FakeHost {
        run(json!({ "rules": [{ "response": ops }] }), host)
    }

    fn req(host: &FakeHost, name: &str) -> Vec<String> {
        host.all(Headers::Request, name)
    }

    fn resp(host: &FakeHost, name: &str) -> Vec<String> {
        host.all(Headers::Response, name)
    }

    fn path(host: &FakeHost) -> String {
        host.header(Headers::Request, ":path").unwrap_or_default()
    }

    #[test]
    fn set_replaces_every_value_case_insensitively() {
        let host = FakeHost::new()
            .with_header("x-a", "1")
            .with_header("X-A", "2");
        let host = request(json!([{ "op": "set", "name": "X-A", "value": "3" }]), host);
        assert_eq!(req(&host, "x-a"), vec!["3"]);
        let host = response(
            json!([{ "op": "set", "name": "X-B", "value": "b" }]),
            FakeHost::new().with_response_header("x-b", "old"),
        );
        assert_eq!(resp(&host, "x-b"), vec!["b"]);
    }

    #[test]
    fn append_keeps_existing_values() {
        let ops = json!([{ "op": "append", "name": "x-a", "value": "2" }]);
        let host = request(ops.clone(), FakeHost::new().with_header("x-a", "1"));
        assert_eq!(req(&host, "x-a"), vec!["1", "2"]);
        let host = response(ops, FakeHost::new());
        assert_eq!(resp(&host, "x-a"), vec!["2"]);
    }

    #[test]
    fn add_if_absent_and_overwrite_if_exists() {
        let ops = json!([
            { "op": "add_if_absent", "name": "x-a", "value": "new" },
            { "op": "overwrite_if_exists", "name": "x-b", "value": "new" },
        ]);
        let host = request(ops.clone(), FakeHost::new().with_header("x-a", "old"));
        assert_eq!(req(&host, "x-a"), vec!["old"]);
        assert!(req(&host, "x-b").is_empty());
        let host = request(ops.clone(), FakeHost::new().with_header("x-b", "old"));
        assert_eq!(req(&host, "x-a"), vec!["new"]);
        assert_eq!(req(&host, "x-b"), vec!["new"]);
        let host = response(ops, FakeHost::new().with_response_header("x-b", "old"));
        assert_eq!(resp(&host, "x-a"), vec!["new"]);
        assert_eq!(resp(&host, "x-b"), vec!["new"]);
    }

    #[test]
    fn remove_by_name_prefix_and_regex_spares_protected_headers() {
        let host = FakeHost::new()
            .with_header("x-a", "1")
            .with_header("x-debug-one", "1")
            .with_header("X-Debug-Two", "2")
            .with_header("x-tmp-12", "1")
            .with_header("x-tmp-ab", "1")
            .with_header("x-envoy-original-path", "/")
            .with_header("x-keep", "1");
        let host = request(
            json!([
                { "op": "remove", "name": "X-A" },
                { "op": "remove", "prefix": "x-debug-" },
                { "op": "remove", "regex": "^x-tmp-\\d+$" },
                { "op": "remove", "prefix": "x-" },
            ]),
            host,
        );
        let names: Vec<_> = host.request.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec![
                ":method",
                ":path",
                ":authority",
                ":scheme",
                "x-envoy-original-path"
            ]
        );
        let host = response(
            json!([{ "op": "remove", "regex": "^server$" }]),
            FakeHost::new().with_response_header("server", "upstream"),
        );
        assert!(resp(&host, "server").is_empty());
        assert_eq!(resp(&host, ":status"), vec!["200"]);
    }

    #[test]
    fn remove_with_the_opt_in_takes_protected_headers_but_never_pseudo_headers() {
        let host = run(
            json!({ "rules": [{ "allow_protected_headers": true,
                "request": [{ "op": "remove", "regex": ".*" }] }] }),
            FakeHost::new()
                .with_header("x-envoy-a", "1")
                .with_header("x-b", "1"),
        );
        let names: Vec<_> = host.request.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec![":method", ":path", ":authority", ":scheme"]);
    }

    #[test]
    fn rename_and_copy_carry_every_value() {
        let host = FakeHost::new()
            .with_header("x-old", "1")
            .with_header("x-old", "2")
            .with_header("x-new", "stale");
        let host = request(
            json!([{ "op": "rename", "from": "X-Old", "to": "x-new" }]),
            host,
        );
        assert!(req(&host, "x-old").is_empty());
        assert_eq!(req(&host, "x-new"), vec!["1", "2"]);

        let host = FakeHost::new()
            .with_header("x-src", "a")
            .with_header("x-src", "b");
        let host = request(
            json!([{ "op": "copy", "from": "x-src", "to": "x-dst" }]),
            host,
        );
        assert_eq!(req(&host, "x-src"), vec!["a", "b"]);
        assert_eq!(req(&host, "x-dst"), vec!["a", "b"]);

        let host = response(
            json!([
                { "op": "rename", "from": "server", "to": "x-server" },
                { "op": "copy", "from": "x-missing", "to": "x-dst" },
            ]),
            FakeHost::new().with_response_header("server", "up"),
        );
        assert_eq!(resp(&host, "x-server"), vec!["up"]);
        assert!(resp(&host, "server").is_empty());
        assert!(resp(&host, "x-dst").is_empty());
    }

    #[test]
    fn host_means_authority_and_needs_the_opt_in() {
        let host = run(
            json!({ "rules": [{ "allow_protected_headers": true,
                "request": [
                    { "op": "copy", "from": "host", "to": "x-original-host" },
                    { "op": "set", "name": "x-template-host", "value": "${header.host}" },
                    { "op": "set", "name": "Host", "value": "internal.local" },
                ] }] }),
            FakeHost::new(),
        );
        assert_eq!(req(&host, "x-original-host"), vec!["example.com"]);
        assert_eq!(req(&host, "x-template-host"), vec!["example.com"]);
        assert_eq!(req(&host, ":authority"), vec!["internal.local"]);
        assert!(req(&host, "host").is_empty());
    }

    #[test]
    fn every_template_variable() {
        let host = FakeHost::new()
            .with_request("POST", "/users/42?q=a%20b&flag")
            .with_header("x-user", "ada")
            .with_header("x-request-id", "rid-1")
            .with_property(&["source", "address"], b"10.1.2.3:5555");
        let host = run(
            json!({ "rules": [{
                "match": { "path": { "regex": "^/users/(\\d+)$" } },
                "request": [{ "op": "set", "name": "x-out", "value":
                    "${header.X-User}|${query.q}|${query.flag}|${path}|${method}|${host}|${client_ip}|${request_id}|${0}|${1}|$$" }]
            }] }),
            host,
        );
        assert_eq!(
            req(&host, "x-out"),
            vec!["ada|a b||/users/42|POST|example.com|10.1.2.3|rid-1|/users/42|42|$"]
        );
    }

    #[test]
    fn ipv6_client_addresses_lose_their_port() {
        let host = FakeHost::new().with_property(&["source", "address"], b"[::1]:5555");
        let host = request(
            json!([{ "op": "set", "name": "x-ip", "value": "${client_ip}" }]),
            host,
        );
        assert_eq!(req(&host, "x-ip"), vec!["::1"]);
    }

    #[test]
    fn missing_variables_skip_or_use_empty() {
        let ops = json!([
            { "op": "set", "name": "x-a", "value": "u-${header.x-user}" },
            { "op": "set", "name": "x-b", "value": "q-${query.none}" },
            { "op": "set", "name": "x-c", "value": "ip-${client_ip}" },
        ]);
        let host = run(json!({ "rules": [{ "request": ops }] }), FakeHost::new());
        assert!(req(&host, "x-a").is_empty() && req(&host, "x-b").is_empty());
        assert_eq!(host.metric("header_rewrite.operations_skipped"), Some(3));
        assert_eq!(host.metric("header_rewrite.operations_applied"), Some(0));
        let host = run(
            json!({ "rules": [{ "on_missing_variable": "empty", "request": ops }] }),
            FakeHost::new(),
        );
        assert_eq!(req(&host, "x-a"), vec!["u-"]);
        assert_eq!(req(&host, "x-b"), vec!["q-"]);
        assert_eq!(req(&host, "x-c"), vec!["ip-"]);
    }

    #[test]
    fn injected_line_breaks_are_neutralised() {
        let host = FakeHost::new().with_request("GET", "/?q=a%0D%0AX-Injected:%20yes%00");
        let host = request(
            json!([{ "op": "set", "name": "x-q", "value": "${query.q}" }]),
            host,
        );
        assert_eq!(req(&host, "x-q"), vec!["a  X-Injected: yes "]);
        assert!(req(&host, "x-injected").is_empty());
    }

    fn matches(when: Value, host: FakeHost) -> bool {
        let host = run(
            json!({ "rules": [{ "match": when,
                "request": [{ "op": "set", "name": "x-hit", "value": "1" }] }] }),
            host,
        );
        !req(&host, "x-hit").is_empty()
    }

    #[test]
    fn path_conditions_ignore_the_query() {
        let on = |p: &str| FakeHost::new().with_request("GET", p);
        assert!(matches(json!({ "path": { "exact": "/a" } }), on("/a?x=1")));
        assert!(!matches(json!({ "path": { "exact": "/a" } }), on("/ab")));
        assert!(matches(
            json!({ "path": { "prefix": "/api/" } }),
            on("/api/x")
        ));
        assert!(!matches(
            json!({ "path": { "prefix": "/api/" } }),
            on("/apix")
        ));
        assert!(matches(
            json!({ "path": { "suffix": ".png" } }),
            on("/i.png?s=1")
        ));
        assert!(matches(
            json!({ "path": { "regex": "^/v[0-9]+/" } }),
            on("/v2/x")
        ));
        assert!(matches(
            json!({ "path": { "regex": "^/v[0-9]+/$" } }),
            on("/v2/?a")
        ));
    }

    #[test]
    fn method_and_host_conditions() {
        let post = FakeHost::new().with_request("POST", "/");
        assert!(matches(json!({ "methods": ["get", "POST"] }), post.clone()));
        assert!(!matches(json!({ "methods": ["GET"] }), post));
        let host = |h: &str| {
            let mut host = FakeHost::new();
            host.set_header(Headers::Request, ":authority", h);
            host
        };
        assert!(matches(
            json!({ "host": { "exact": "api.example.com" } }),
            host("API.example.com:8443")
        ));
        assert!(matches(
            json!({ "host": { "suffix": ".example.com" } }),
            host("a.example.com")
        ));
        assert!(!matches(
            json!({ "host": { "prefix": "api." } }),
            host("www.example.com")
        ));
    }

    #[test]
    fn header_conditions() {
        let with = |v: &str| FakeHost::new().with_header("x-tier", v);
        assert!(matches(
            json!({ "headers": [{ "name": "X-Tier", "present": true }] }),
            with("")
        ));
        assert!(!matches(
            json!({ "headers": [{ "name": "x-tier", "present": true }] }),
            FakeHost::new()
        ));
        assert!(matches(
            json!({ "headers": [{ "name": "x-tier", "present": false }] }),
            FakeHost::new()
        ));
        assert!(!matches(
            json!({ "headers": [{ "name": "x-tier", "present": false }] }),
            with("gold")
        ));
        assert!(matches(
            json!({ "headers": [{ "name": "x-tier", "exact": "gold" }] }),
            with("gold")
        ));
        assert!(!matches(
            json!({ "headers": [{ "name": "x-tier", "exact": "gold" }] }),
            with("Gold")
        ));
        assert!(matches(
            json!({ "headers": [{ "name": "x-tier", "regex": "^(gold|silver)$" }] }),
            with("silver")
        ));
        assert!(!matches(
            json!({ "headers": [{ "name": "x-tier", "regex": "^gold$" }] }),
            FakeHost::new()
        ));
    }

    #[test]
    fn every_condition_must_hold() {
        let when = json!({
            "path": { "prefix": "/api" }, "methods": ["GET"], "host": { "exact": "example.com" },
            "headers": [{ "name": "x-a", "present": true }, { "name": "x-b", "present": false }],
        });
        let good = FakeHost::new()
            .with_request("GET", "/api/x")
            .with_header("x-a", "1");
        assert!(matches(when.clone(), good.clone()));
        assert!(!matches(when.clone(), good.clone().with_header("x-b", "1")));
        assert!(!matches(
            when.clone(),
            FakeHost::new()
                .with_request("POST", "/api/x")
                .with_header("x-a", "1")
        ));
        assert!(!matches(
            when,
            FakeHost::new()
                .with_request("GET", "/web")
                .with_header("x-a", "1")
        ));
    }

    #[test]
    fn later_rules_see_earlier_changes() {
        let host = run(
            json!({ "rules": [
                { "request": [
                    { "op": "set", "name": "x-stage", "value": "one" },
                    { "op": "rewrite_path", "regex": "^/old/", "replacement": "/new/" },
                ] },
                { "match": { "path": { "prefix": "/new/" },
                             "headers": [{ "name": "x-stage", "exact": "one" }] },
                  "request": [{ "op": "set", "name": "x-stage", "value": "${header.x-stage}-two ${path}" }] },
                { "match": { "headers": [{ "name": "x-stage", "prefix": "one" }] },
                  "request": [{ "op": "remove", "name": "x-stage" }, { "op": "add_if_absent", "name": "x-gone", "value": "yes" }] },
                { "match": { "headers": [{ "name": "x-gone", "present": true }] },
                  "request": [{ "op": "set", "name": "x-last", "value": "${header.x-stage}" }] },
            ] }),
            FakeHost::new().with_request("GET", "/old/x"),
        );
        assert!(req(&host, "x-stage").is_empty());
        assert_eq!(req(&host, "x-gone"), vec!["yes"]);
        // The last rule matched but its value read a removed header: skipped.
        assert!(req(&host, "x-last").is_empty());
        assert_eq!(host.metric("header_rewrite.rules_matched"), Some(4));
        assert_eq!(host.metric("header_rewrite.operations_skipped"), Some(1));
        assert_eq!(path(&host), "/new/x");
    }

    #[test]
    fn operations_in_a_rule_apply_in_order() {
        let host = request(
            json!([
                { "op": "set", "name": "x-a", "value": "1" },
                { "op": "set", "name": "x-b", "value": "${header.x-a}2" },
                { "op": "append", "name": "x-a", "value": "${header.x-b}" },
            ]),
            FakeHost::new(),
        );
        assert_eq!(req(&host, "x-a"), vec!["1", "12"]);
    }

    #[test]
    fn path_rewrite_with_captures_keeps_the_query() {
        let host = run(
            json!({ "rules": [{
                "match": { "path": { "regex": "^/api/(v\\d+)/" } },
                "request": [
                    { "op": "rewrite_path", "regex": "^/api/v\\d+/(\\w+)/(\\d+)$", "replacement": "/${1}/id-${2}/${header.x-tenant}" },
                    { "op": "set", "name": "x-api-version", "value": "${1}" },
                ] }] }),
            FakeHost::new()
                .with_request("GET", "/api/v2/users/42?page=2&q=%20")
                .with_header("x-tenant", "a b?#"),
        );
        assert_eq!(path(&host), "/users/id-42/a%20b%3F%23?page=2&q=%20");
        assert_eq!(req(&host, "x-api-version"), vec!["v2"]);
        assert_eq!(host.route_cache_cleared, 1);
    }

    #[test]
    fn path_rewrite_replaces_every_match_and_refuses_a_non_path() {
        let host = request(
            json!([{ "op": "rewrite_path", "regex": "//+", "replacement": "/" }]),
            FakeHost::new().with_request("GET", "/a//b///c"),
        );
        assert_eq!(path(&host), "/a/b/c");
        let host = request(
            json!([{ "op": "rewrite_path", "regex": "^/", "replacement": "${header.x-p}" }]),
            FakeHost::new()
                .with_request("GET", "/a")
                .with_header("x-p", "evil.com/"),
        );
        assert_eq!(path(&host), "/a");
        assert!(host.logged(LogLevel::Warn, "#7 header-rewrite: rules[0]: rewrite_path"));
        assert_eq!(host.metric("header_rewrite.operations_skipped"), Some(1));
        let host = request(
            json!([{ "op": "rewrite_path", "regex": "^/nomatch", "replacement": "/x" }]),
            FakeHost::new().with_request("GET", "/a"),
        );
        assert_eq!(path(&host), "/a");
        assert_eq!(host.route_cache_cleared, 0);
    }

    #[test]
    fn query_parameters_are_set_added_and_removed() {
        let host = request(
            json!([
                { "op": "set_query_param", "name": "page", "value": "1" },
                { "op": "add_query_param", "name": "tag", "value": "a&b=c" },
                { "op": "remove_query_param", "name": "debug" },
                { "op": "set_query_param", "name": "user", "value": "${header.x-user}" },
            ]),
            FakeHost::new()
                .with_request("GET", "/s?debug=1&page=9&q=caf%C3%A9+au+lait&debug&page=8")
                .with_header("x-user", "zoë"),
        );
        assert_eq!(
            path(&host),
            "/s?page=1&q=caf%C3%A9+au+lait&tag=a%26b%3Dc&user=zo%C3%AB"
        );
        let host = request(
            json!([{ "op": "remove_query_param", "name": "only" }]),
            FakeHost::new().with_request("GET", "/s?only=1"),
        );
        assert_eq!(path(&host), "/s");
        let host = request(
            json!([{ "op": "add_query_param", "name": "a", "value": "1" }]),
            FakeHost::new().with_request("GET", "/s"),
        );
        assert_eq!(path(&host), "/s?a=1");
    }

    #[test]
    fn response_operations_read_the_request_as_it_matched() {
        let mut host = FakeHost::new()
            .with_request("GET", "/orders/7")
            .with_header("x-request-id", "rid-9")
            .with_response_header("server", "up");
        let plugin = HeaderRewrite::configure(
            json!({ "rules": [
                { "match": { "path": { "regex": "^/orders/(\\d+)$" } },
                  "request": [{ "op": "rewrite_path", "regex": ".*", "replacement": "/internal" }],
                  "response": [{ "op": "set", "name": "x-order",
                                 "value": "${1} ${path} ${request_id} ${header.server}" }] },
                { "match": { "path": { "prefix": "/nope" } },
                  "response": [{ "op": "set", "name": "x-never", "value": "1" }] },
            ] })
            .to_string()
            .as_bytes(),
            &mut host,
        )
        .unwrap();
        let mut filter = plugin.create_filter(1);
        filter.on_request_headers(&mut host, true);
        // The request is gone by the time the response arrives.
        host.request.clear();
        filter.on_response_headers(&mut host, true);
        assert_eq!(resp(&host, "x-order"), vec!["7 /orders/7 rid-9 up"]);
        assert!(resp(&host, "x-never").is_empty());
    }

    #[test]
    fn route_cache_is_cleared_once_when_routing_can_change() {
        let headers = json!([
            { "op": "set", "name": "x-a", "value": "1" },
            { "op": "set", "name": "x-b", "value": "1" },
        ]);
        let routing = json!([
            { "op": "set_query_param", "name": "a", "value": "1" },
            { "op": "rewrite_path", "regex": "^/$", "replacement": "/x" },
        ]);
        let cleared = |policy: &str, ops: &Value| {
            run(
                json!({ "clear_route_cache": policy, "rules": [{ "request": ops }] }),
                FakeHost::new(),
            )
            .route_cache_cleared
        };
        assert_eq!(cleared("on_routing_change", &headers), 0);
        assert_eq!(cleared("on_routing_change", &routing), 1);
        assert_eq!(cleared("on_any_change", &headers), 1);
        assert_eq!(cleared("on_any_change", &routing), 1);
        assert_eq!(cleared("never", &routing), 0);
        let host = run(
            json!({ "rules": [{ "allow_protected_headers": true,
                "request": [{ "op": "set", "name": "host", "value": "b.example" }] }] }),
            FakeHost::new(),
        );
        assert_eq!(host.route_cache_cleared, 1);
        let host = request(
            json!([{ "op": "add_if_absent", "name": "x-a", "value": "1" }]),
            FakeHost::new().with_header("x-a", "0"),
        );
        assert_eq!(host.route_cache_cleared, 0);
        let host = run(
            json!({ "rules": [{ "allow_protected_headers": true,
                "response": [{ "op": "set", "name": ":status", "value": "201" }] }] }),
            FakeHost::new(),
        );
        assert_eq!(host.route_cache_cleared, 0);
    }

    #[test]
    fn metrics_count_rules_and_operations() {
        let host = run(
            json!({ "rules": [
                { "name": "always", "request": [{ "op": "set", "name": "x-a", "value": "1" }],
                  "response": [{ "op": "set", "name": "x-b", "value": "1" }] },
                { "name": "never", "match": { "methods": ["DELETE"] } },
                { "request": [{ "op": "overwrite_if_exists", "name": "x-none", "value": "1" }] },
            ] }),
            FakeHost::new(),
        );
        assert_eq!(host.metric("header_rewrite.rules_matched"), Some(2));
        assert_eq!(host.metric("header_rewrite.operations_applied"), Some(2));
        assert_eq!(host.metric("header_rewrite.operations_skipped"), Some(0));
        assert_eq!(host.metric("header_rewrite.rule.always.matched"), Some(1));
        assert_eq!(host.metric("header_rewrite.rule.never.matched"), Some(0));
    }

    #[test]
    fn counts_reach_the_metrics_on_the_tick() {
        let mut host = FakeHost::new();
        let mut plugin = HeaderRewrite::configure(
            br#"{"rules":[{"request":[{"op":"set","name":"x-a","value":"1"}]}]}"#,
            &mut host,
        )
        .unwrap();
        plugin.on_start(&mut host);
        assert_eq!(host.proxy.peek().tick_period, Some(FLUSH_PERIOD));
        for _ in 0..3 {
            plugin.create_filter(1).on_request_headers(&mut host, true);
        }
        assert_eq!(host.metric("header_rewrite.operations_applied"), Some(0));
        plugin.on_tick(&mut host);
        assert_eq!(host.metric("header_rewrite.operations_applied"), Some(3));
        assert_eq!(host.metric("header_rewrite.rules_matched"), Some(3));
        plugin.on_tick(&mut host);
        assert_eq!(host.metric("header_rewrite.operations_applied"), Some(3));
    }

    #[test]
    fn protected_status_can_be_set_with_the_opt_in() {
        let host = run(
            json!({ "rules": [{ "allow_protected_headers": true,
                "response": [{ "op": "set", "name": ":status", "value": "203" }] }] }),
            FakeHost::new(),
        );
        assert_eq!(resp(&host, ":status"), vec!["203"]);
    }

    #[test]
    fn only_the_headers_the_rules_need_are_read_and_only_once() {
        let mut host = FakeHost::new().with_request("GET", "/a?x=1");
        let reads = |host: &FakeHost, method| host.host_calls().get(method).copied().unwrap_or(0);
        let plugin = HeaderRewrite::configure(
            json!({ "rules": [
                { "match": { "path": { "prefix": "/" }, "headers": [{ "name": "x-a", "present": false }] },
                  "request": [
                      { "op": "set", "name": "x-p", "value": "${path}" },
                      { "op": "set", "name": "x-q", "value": "${path}${query.x}" },
                      { "op": "remove", "name": "x-c" },
                      { "op": "add_if_absent", "name": "x-p", "value": "never" },
                  ] },
                { "match": { "path": { "exact": "/a" } },
                  "request": [{ "op": "set", "name": "x-r", "value": "${header.x-p}" }] },
            ] })
            .to_string()
            .as_bytes(),
            &mut host,
        )
        .unwrap();
        let mut filter = plugin.create_filter(1);
        filter.on_request_headers(&mut host, true);
        assert_eq!(host.all(Headers::Request, "x-r"), vec!["/a"]);
        assert_eq!(reads(&host, "header"), 2, "one read each of :path and x-a");
        assert_eq!(reads(&host, "headers"), 0);
        filter.on_response_headers(&mut host, true);
        assert_eq!(
            reads(&host, "header") + reads(&host, "headers"),
            2,
            "no response rules, no reads"
        );
    }

    /// The host calls one request costs, by phase, after `configure` and `on_start`.
    fn calls_per_request(config: Value, mut host: FakeHost) -> (FakeHost, FakeHost) {
        let mut plugin =
            HeaderRewrite::configure(config.to_string().as_bytes(), &mut host).unwrap();
        plugin.on_start(&mut host);
        host.reset_host_calls();
        let mut filter = plugin.create_filter(3);
        filter.on_request_headers(&mut host, true);
        let request = host.clone();
        host.reset_host_calls();
        filter.on_response_headers(&mut host, true);
        (request, host)
    }

    #[test]
    fn the_bench_rules_cost_one_host_call_per_operation() {
        // bench/src/configs.rs: header_rules(), sent a request with `x-debug`.
        let (request, response) = calls_per_request(
            json!({ "rules": [{
                "request": [
                    { "op": "set", "name": "x-team", "value": "payments" },
                    { "op": "remove", "name": "x-debug" },
                ],
                "response": [{ "op": "set", "name": "x-served-by", "value": "wasmgate" }],
            }]}),
            FakeHost::new().with_header("x-debug", "1"),
        );
        assert_eq!(req(&request, "x-team"), vec!["payments"]);
        assert!(req(&request, "x-debug").is_empty());
        assert_eq!(resp(&response, "x-served-by"), vec!["wasmgate"]);
        assert_eq!(
            request.host_calls(),
            [("set_header", 1), ("remove_header", 1)].into()
        );
        assert_eq!(response.host_calls(), [("set_header", 1)].into());
    }

    #[test]
    fn no_rules_cost_no_host_call() {
        let (request, response) = calls_per_request(json!({ "rules": [] }), FakeHost::new());
        assert_eq!(request.calls_made() + response.calls_made(), 0);
    }

    #[test]
    fn a_rule_that_does_not_match_costs_its_reads_only() {
        let (request, response) = calls_per_request(
            json!({ "rules": [{
                "match": { "methods": ["POST"] },
                "request": [{ "op": "set", "name": "x-a", "value": "1" }],
                "response": [{ "op": "set", "name": "x-b", "value": "1" }],
            }]}),
            FakeHost::new(),
        );
        assert_eq!(request.host_calls(), [("header", 1)].into());
        assert_eq!(response.calls_made(), 0);
    }
}
