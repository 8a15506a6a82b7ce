//! Filter flows on a fake host: rules, operations, metrics, host calls.

use super::*;
use serde_json::{json, Value};
use wasmgate_glue::FakeHost;

/// Configure with `config`, run the request and response phases on `host`, then one
/// tick so the counts reach the metrics.
fn run(config: Value, mut host: FakeHost) -> FakeHost {
    let mut plugin = HeaderRewrite::configure(config.to_string().as_bytes(), &mut host).unwrap();
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
    let mut plugin = HeaderRewrite::configure(config.to_string().as_bytes(), &mut host).unwrap();
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
