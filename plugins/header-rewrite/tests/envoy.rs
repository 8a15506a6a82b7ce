//! header-rewrite loaded into a real Envoy, with real requests through it.

use std::time::Duration;

use serde_json::{json, Value};
use test_env::reqwest::blocking::Response;
use test_env::{client, get_echo, Envoy, Upstream, WasmFilter, ECHO_RESPONSE_HEADER};

fn start(config: Value, upstream: &Upstream) -> Envoy {
    Envoy::builder()
        .wasm(WasmFilter::plugin("header_rewrite").config(config))
        .upstream(upstream.addr())
        .start()
}

/// Envoy's log when it refuses to start with `config`.
fn refused(config: Value) -> String {
    let err = Envoy::builder()
        .wasm(WasmFilter::plugin("header_rewrite").config(config))
        .try_start()
        .expect_err("Envoy must refuse a plugin whose configuration is invalid");
    err.log
}

/// GET through Envoy, with headers, asking the echo upstream to add `upstream_adds` to
/// its response.
fn get(envoy: &Envoy, path: &str, headers: &[(&str, &str)], upstream_adds: &[&str]) -> Response {
    let mut request = client().get(envoy.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    for header in upstream_adds {
        request = request.header(ECHO_RESPONSE_HEADER, *header);
    }
    request.send().unwrap()
}

fn all(response: &Response, name: &str) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

#[test]
fn every_request_operation_reaches_the_upstream() {
    let upstream = Upstream::start();
    let envoy = start(
        json!({ "rules": [{ "request": [
            { "op": "set", "name": "X-Set", "value": "set" },
            { "op": "append", "name": "x-append", "value": "two" },
            { "op": "add_if_absent", "name": "x-present", "value": "not-used" },
            { "op": "add_if_absent", "name": "x-absent", "value": "added" },
            { "op": "overwrite_if_exists", "name": "x-overwrite", "value": "overwritten" },
            { "op": "overwrite_if_exists", "name": "x-not-there", "value": "never" },
            { "op": "remove", "name": "X-Remove" },
            { "op": "remove", "prefix": "x-debug-" },
            { "op": "remove", "regex": "^x-tmp-[0-9]+$" },
            { "op": "rename", "from": "x-old", "to": "x-new" },
            { "op": "copy", "from": "x-source", "to": "x-copy" },
            { "op": "set", "name": "x-skipped", "value": "${header.x-none}" },
        ] }, {
            "on_missing_variable": "empty",
            "request": [{ "op": "set", "name": "x-emptied", "value": "[${header.x-none}]" }],
        }] }),
        &upstream,
    );
    let echo = get_echo(
        &client(),
        &envoy.url("/ops"),
        &[
            ("x-set", "spoofed"),
            ("x-append", "one"),
            ("x-present", "kept"),
            ("x-overwrite", "old"),
            ("x-remove", "gone"),
            ("x-debug-a", "gone"),
            ("x-debug-b", "gone"),
            ("x-tmp-12", "gone"),
            ("x-tmp-ab", "kept"),
            ("x-old", "moved"),
            ("x-source", "copied"),
        ],
    );
    assert_eq!(echo.all("x-set"), vec!["set"]);
    assert_eq!(echo.all("x-append"), vec!["one", "two"]);
    assert_eq!(echo.all("x-present"), vec!["kept"]);
    assert_eq!(echo.all("x-absent"), vec!["added"]);
    assert_eq!(echo.all("x-overwrite"), vec!["overwritten"]);
    assert_eq!(echo.header("x-not-there"), None);
    for gone in ["x-remove", "x-debug-a", "x-debug-b", "x-tmp-12", "x-old"] {
        assert_eq!(echo.header(gone), None, "{gone} must be removed");
    }
    assert_eq!(echo.all("x-tmp-ab"), vec!["kept"]);
    assert_eq!(echo.all("x-new"), vec!["moved"]);
    assert_eq!(echo.all("x-source"), vec!["copied"]);
    assert_eq!(echo.all("x-copy"), vec!["copied"]);
    assert_eq!(echo.header("x-skipped"), None);
    assert_eq!(echo.all("x-emptied"), vec!["[]"]);
}

#[test]
fn every_response_operation_reaches_the_client() {
    let upstream = Upstream::start();
    let envoy = start(
        json!({ "rules": [{ "response": [
            { "op": "set", "name": "X-Served-By", "value": "wasmgate" },
            { "op": "append", "name": "x-append", "value": "two" },
            { "op": "add_if_absent", "name": "x-present", "value": "not-used" },
            { "op": "add_if_absent", "name": "x-absent", "value": "added" },
            { "op": "overwrite_if_exists", "name": "x-overwrite", "value": "overwritten" },
            { "op": "overwrite_if_exists", "name": "x-not-there", "value": "never" },
            { "op": "remove", "name": "x-remove" },
            { "op": "remove", "prefix": "x-debug-" },
            { "op": "remove", "regex": "^x-tmp-[0-9]+$" },
            { "op": "rename", "from": "x-old", "to": "x-new" },
            { "op": "copy", "from": "x-source", "to": "x-copy" },
        ] }] }),
        &upstream,
    );
    let response = get(
        &envoy,
        "/ops",
        &[],
        &[
            "x-served-by: upstream",
            "x-append: one",
            "x-present: kept",
            "x-overwrite: old",
            "x-remove: gone",
            "x-debug-a: gone",
            "x-tmp-7: gone",
            "x-tmp-ab: kept",
            "x-old: moved",
            "x-source: copied",
        ],
    );
    assert_eq!(response.status(), 200);
    assert_eq!(all(&response, "x-served-by"), vec!["wasmgate"]);
    assert_eq!(all(&response, "x-append"), vec!["one", "two"]);
    assert_eq!(all(&response, "x-present"), vec!["kept"]);
    assert_eq!(all(&response, "x-absent"), vec!["added"]);
    assert_eq!(all(&response, "x-overwrite"), vec!["overwritten"]);
    for gone in ["x-not-there", "x-remove", "x-debug-a", "x-tmp-7", "x-old"] {
        assert!(all(&response, gone).is_empty(), "{gone} must not be there");
    }
    assert_eq!(all(&response, "x-tmp-ab"), vec!["kept"]);
    assert_eq!(all(&response, "x-new"), vec!["moved"]);
    assert_eq!(all(&response, "x-copy"), vec!["copied"]);
}

#[test]
fn path_rewrite_query_changes_and_templates_reach_the_upstream() {
    let upstream = Upstream::start();
    let envoy = start(
        json!({ "rules": [{
            "name": "api-versions",
            "match": { "path": { "regex": "^/api/(v[0-9]+)/" }, "methods": ["GET"] },
            "request": [
                { "op": "rewrite_path", "regex": "^/api/v[0-9]+/(\\w+)/(\\d+)$", "replacement": "/${1}/by-id/${2}" },
                { "op": "set_query_param", "name": "page", "value": "1" },
                { "op": "add_query_param", "name": "tenant", "value": "${header.x-tenant}" },
                { "op": "remove_query_param", "name": "debug" },
                { "op": "set", "name": "x-api-version", "value": "${1}" },
                { "op": "set", "name": "x-vars",
                  "value": "${method} ${path} ${query.q} ${client_ip} ${header.x-tenant}" },
                { "op": "set", "name": "x-rid", "value": "${request_id}" },
            ],
            "response": [{ "op": "set", "name": "x-original-path", "value": "${path} ${1}" }],
        }] }),
        &upstream,
    );
    let target = "/api/v2/users/42?debug=1&page=9&q=caf%C3%A9&debug=2";
    let echo = get_echo(&client(), &envoy.url(target), &[("x-tenant", "a&b")]);
    assert_eq!(echo.path, "/users/by-id/42?page=1&q=caf%C3%A9&tenant=a%26b");
    assert_eq!(echo.all("x-api-version"), vec!["v2"]);
    // Templates read the request as it is after the earlier operations.
    assert_eq!(
        echo.all("x-vars"),
        vec!["GET /users/by-id/42 café 127.0.0.1 a&b"]
    );
    let rid = echo
        .header("x-request-id")
        .expect("Envoy sets x-request-id");
    assert_eq!(echo.all("x-rid"), vec![rid]);

    let response = get(&envoy, target, &[], &[]);
    assert_eq!(
        all(&response, "x-original-path"),
        vec!["/api/v2/users/42 v2"]
    );

    // The conditions do not hold: nothing changes.
    let echo = get_echo(&client(), &envoy.url("/web/v2/users/42?debug=1"), &[]);
    assert_eq!(echo.path, "/web/v2/users/42?debug=1");
    assert_eq!(echo.header("x-api-version"), None);
}

#[test]
fn conditions_ordering_protected_opt_in_and_metrics() {
    let upstream = Upstream::start();
    let envoy = start(
        json!({ "rules": [
            { "name": "tag-gold",
              "match": { "host": { "suffix": ".example.com" },
                         "headers": [{ "name": "x-tier", "exact": "gold" }, { "name": "x-block", "present": false }] },
              "request": [{ "op": "set", "name": "x-stage", "value": "gold" }] },
            { "name": "after-gold",
              "match": { "headers": [{ "name": "x-stage", "regex": "^gold$" }], "methods": ["POST", "GET"] },
              "allow_protected_headers": true,
              "request": [
                  { "op": "copy", "from": "host", "to": "x-original-host" },
                  { "op": "set", "name": "host", "value": "internal.local" },
              ] },
        ] }),
        &upstream,
    );
    let headers = [("host", "API.example.com"), ("x-tier", "gold")];
    let echo = get_echo(&client(), &envoy.url("/"), &headers);
    assert_eq!(echo.all("x-stage"), vec!["gold"]);
    assert_eq!(echo.all("x-original-host"), vec!["API.example.com"]);
    assert_eq!(echo.all("host"), vec!["internal.local"]);

    for headers in [
        vec![("host", "api.example.org"), ("x-tier", "gold")],
        vec![("host", "api.example.com"), ("x-tier", "silver")],
        vec![
            ("host", "api.example.com"),
            ("x-tier", "gold"),
            ("x-block", "1"),
        ],
    ] {
        let echo = get_echo(&client(), &envoy.url("/"), &headers);
        assert_eq!(echo.header("x-stage"), None, "{headers:?}");
        assert_eq!(echo.header("x-original-host"), None, "{headers:?}");
    }

    // Envoy flushes stats to the admin interface on its own schedule; poll a little.
    let stat = |name: &str| envoy.stat(&format!("wasmcustom.header_rewrite.{name}"));
    envoy.wait_for_stat(
        "wasmcustom.header_rewrite.operations_applied",
        Duration::from_secs(10),
        |v| v == 3,
    );
    assert_eq!(stat("rules_matched"), Some(2));
    assert_eq!(stat("operations_applied"), Some(3));
    assert_eq!(stat("rule.tag-gold.matched"), Some(1));
    assert_eq!(stat("rule.after-gold.matched"), Some(1));
}

#[test]
fn template_values_cannot_inject_headers() {
    let upstream = Upstream::start();
    let envoy = start(
        json!({ "rules": [{
            "request": [{ "op": "set", "name": "x-search", "value": "q=${query.q}" }],
            "response": [{ "op": "set", "name": "x-search", "value": "q=${query.q}" }],
        }] }),
        &upstream,
    );
    let target = "/?q=a%0D%0AX-Injected:%20yes%0D%0A%0D%0Abody%00";
    let echo = get_echo(&client(), &envoy.url(target), &[]);
    assert_eq!(echo.all("x-search"), vec!["q=a  X-Injected: yes    body"]);
    assert_eq!(echo.header("x-injected"), None);
    let response = get(&envoy, target, &[], &[]);
    assert_eq!(response.status(), 200);
    assert_eq!(
        all(&response, "x-search"),
        vec!["q=a  X-Injected: yes    body"]
    );
    assert!(all(&response, "x-injected").is_empty());
}

/// An Envoy whose route for `/v2/` goes upstream (tagging the request `x-route: v2`) while
/// every other path gets a 404 from Envoy itself.
fn two_routes(config: Value, upstream: &Upstream) -> Envoy {
    let mut bootstrap = Envoy::builder()
        .wasm(WasmFilter::plugin("header_rewrite").config(config))
        .upstream(upstream.addr())
        .to_json();
    let routes = bootstrap
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes")
        .expect("the generated bootstrap has routes");
    *routes = json!([
        { "match": { "prefix": "/v2/" },
          "route": { "cluster": "upstream", "timeout": "10s" },
          "request_headers_to_add": [{ "header": { "key": "x-route", "value": "v2" } }] },
        { "match": { "prefix": "/" },
          "direct_response": { "status": 404, "body": { "inline_string": "old route\n" } } },
    ]);
    Envoy::builder().bootstrap(bootstrap).start()
}

#[test]
fn a_path_rewrite_picks_the_route_again() {
    let upstream = Upstream::start();
    let envoy = two_routes(
        json!({ "rules": [{ "request": [
            { "op": "rewrite_path", "regex": "^/v1/", "replacement": "/v2/" },
        ] }] }),
        &upstream,
    );
    let echo = get_echo(&client(), &envoy.url("/v1/items?x=1"), &[]);
    assert_eq!(echo.path, "/v2/items?x=1");
    assert_eq!(echo.all("x-route"), vec!["v2"]);
    let response = get(&envoy, "/v3/items", &[], &[]);
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().unwrap(), "old route\n");
    assert!(
        !envoy.log().contains("clear_route_cache failed"),
        "Envoy must know the clear_route_cache foreign function"
    );
}

#[test]
fn protected_headers_are_refused_at_config_time() {
    let log = refused(json!({ "rules": [
        { "request": [{ "op": "set", "name": "x-ok", "value": "1" }] },
        { "request": [{ "op": "remove", "name": "Content-Length" }] },
    ] }));
    assert!(
        log.contains("header-rewrite: invalid plugin configuration: rules[1].request[0].name: header \"content-length\" is protected"),
        "{log}"
    );
    let log = refused(
        json!({ "rules": [{ "response": [{ "op": "set", "name": "x-envoy-upstream-service-time", "value": "0" }] }] }),
    );
    assert!(
        log.contains(
            "rules[0].response[0].name: header \"x-envoy-upstream-service-time\" is protected"
        ),
        "{log}"
    );
}

#[test]
fn an_unknown_op_is_refused_naming_rule_and_field() {
    let log =
        refused(json!({ "rules": [{}, { "response": [{ "op": "explode", "name": "x-a" }] }] }));
    assert!(
        log.contains(
            "invalid plugin configuration: rules[1].response[0].op: unknown variant `explode`"
        ),
        "{log}"
    );
}

#[test]
fn a_bad_regex_is_refused_naming_rule_and_field() {
    let log = refused(
        json!({ "rules": [{ "name": "broken", "match": { "path": { "regex": "^/(a" } } }] }),
    );
    assert!(
        log.contains(
            "invalid plugin configuration: rules[0].match.path.regex: invalid regex \"^/(a\""
        ),
        "{log}"
    );
    assert!(log.contains("(rule \"broken\")"), "{log}");
}

#[test]
fn an_unknown_variable_is_refused_naming_rule_and_field() {
    let log = refused(json!({ "rules": [{ "request": [
        { "op": "set", "name": "x-a", "value": "${header.x-b}" },
        { "op": "set", "name": "x-b", "value": "${user}" },
    ] }] }));
    assert!(
        log.contains(
            "invalid plugin configuration: rules[0].request[1].value: unknown variable ${user}"
        ),
        "{log}"
    );
}

#[test]
fn a_malformed_config_is_refused_naming_the_field() {
    let log = refused(json!({
        "rules": [{ "request": [{ "op": "set", "name": "x-a", "valeu": "1" }] }]
    }));
    assert!(
        log.contains("header-rewrite: invalid plugin configuration: rules[0].request[0]"),
        "the log must name the field: {log}"
    );
    assert!(log.contains("valeu"), "{log}");
}

#[test]
fn the_combined_module_hosts_header_rewrite_by_root_id() {
    let upstream = Upstream::start();
    let envoy = Envoy::builder()
        .wasm(
            WasmFilter::plugin("wasmgate_all")
                .root_id("header-rewrite")
                .vm_id("wasmgate")
                .config(json!({
                    "rules": [{ "request": [{ "op": "set", "name": "x-combined", "value": "yes" }] }]
                })),
        )
        .upstream(upstream.addr())
        .start();
    let echo = get_echo(&client(), &envoy.url("/"), &[]);
    assert_eq!(echo.header("x-combined").as_deref(), Some("yes"));
    assert!(envoy.wait_for_log(
        "this module hosts: jwt-auth, rate-limit, header-rewrite",
        Duration::from_secs(15)
    ));
}

#[test]
fn client_ip_takes_the_trusted_xff_hop_and_the_old_host_spelling_still_matches() {
    let upstream = Upstream::start();
    let envoy = start(
        json!({ "client_ip": { "xff_hop": 2 }, "rules": [{
            "match": { "host": { "suffix": ".Example.com" } },
            "request": [{ "op": "set", "name": "x-client", "value": "${client_ip}" }],
        }] }),
        &upstream,
    );
    let client_of = |host: &str, xff: Option<&str>| {
        let mut headers = vec![("host", host)];
        headers.extend(xff.map(|xff| ("x-forwarded-for", xff)));
        get_echo(&client(), &envoy.url("/"), &headers).header("x-client")
    };
    // Envoy's default connection manager passes x-forwarded-for on as the client sent it;
    // the proxy in front of Envoy appended 10.0.0.9, the one before it 203.0.113.5.
    assert_eq!(
        client_of(
            "api.example.com",
            Some("198.51.100.1, 203.0.113.5, 10.0.0.9")
        )
        .as_deref(),
        Some("203.0.113.5")
    );
    assert_eq!(
        client_of("API.EXAMPLE.COM:8080", Some("203.0.113.6 ,10.0.0.9")).as_deref(),
        Some("203.0.113.6")
    );
    // Fewer hops than trusted: the source address. (Envoy's default connection manager
    // takes that from the last x-forwarded-for entry when there is one.)
    assert_eq!(
        client_of("a.example.com", None).as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(client_of("example.com", Some("1.2.3.4, 10.0.0.9")), None);
    assert_eq!(
        client_of("a.example.com.test", Some("1.2.3.4, 10.0.0.9")),
        None
    );
    assert!(
        envoy.wait_for_log(
            "header-rewrite: configuration: rules[0].match.host: old spelling",
            Duration::from_secs(5)
        ),
        "the old spelling is warned about in Envoy's log"
    );
}
