//! Property tests of templates and header values, through the plugin's own configuration
//! and filter: any template text is compiled or refused, and rendering it from any request
//! never panics and never writes a line break into a header. Named `prop_*` so that
//! `make fuzz` runs them with many cases (`PROPTEST_CASES` overrides the default 256).

use header_rewrite::HeaderRewrite;
use proptest::prelude::*;
use serde_json::json;
use wasmgate_glue::{FakeHost, Headers, HttpFilter, Plugin};

/// Template text rich in `$`, braces and variable names, or anything at all.
fn template() -> impl Strategy<Value = String> {
    prop_oneof![
        "([a-z ]|\\$|\\$\\$|\\$\\{|\\}|header\\.x-a|query\\.q|path|method|host|client_ip|request_id|[0-9])*",
        any::<String>(),
    ]
}

/// Request values an attacker controls, with line breaks and control characters.
fn value() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~\r\n\t\u{0}]{0,30}", any::<String>()]
}

proptest! {
    #[test]
    fn prop_templates_compile_or_are_refused_and_render_safely(
        text in template(),
        regex in prop::option::of("[a-z()|.*+?\\[\\]^$\\\\0-9]{0,12}"),
        header in value(),
        path in value(),
    ) {
        let mut rule = json!({ "request": [{ "op": "set", "name": "x-out", "value": text }] });
        if let Some(regex) = regex {
            rule["match"] = json!({ "path": { "regex": regex } });
        }
        let config = json!({ "rules": [rule] }).to_string();
        let Ok(plugin) = HeaderRewrite::configure(config.as_bytes(), &mut FakeHost::new()) else {
            return Ok(());
        };
        let mut host = FakeHost::new()
            .with_request("GET", &format!("/{path}"))
            .with_header("x-a", &header)
            .with_property(&["source", "address"], header.as_bytes());
        plugin.create_filter(1).on_request_headers(&mut host, true);
        for value in host.all(Headers::Request, "x-out") {
            prop_assert!(!value.contains(['\r', '\n', '\0']), "{value:?}");
        }
    }
}
