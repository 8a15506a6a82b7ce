//! Applying compiled rules to a stream.

use std::sync::Arc;

use wasmgate_glue::{parse_json, Action, ConfigError, Headers, Host, HttpFilter, Plugin};

use crate::config::{Compiled, CompiledRules, Config};

/// The plugin's root: rules compiled once and shared by every stream.
#[derive(Debug)]
pub struct HeaderRewrite {
    rules: Arc<CompiledRules>,
}

impl Plugin for HeaderRewrite {
    const NAME: &'static str = "header-rewrite";
    type Filter = HeaderRewriteFilter;

    fn configure(config: &[u8], _host: &mut dyn Host) -> Result<Self, ConfigError> {
        let rules = parse_json::<Config>(config)?.compile()?;
        Ok(HeaderRewrite {
            rules: Arc::new(rules),
        })
    }

    fn create_filter(&self, _context_id: u32) -> HeaderRewriteFilter {
        HeaderRewriteFilter {
            rules: Arc::clone(&self.rules),
        }
    }
}

/// One stream's filter.
#[derive(Debug)]
pub struct HeaderRewriteFilter {
    rules: Arc<CompiledRules>,
}

fn apply(host: &mut dyn Host, map: Headers, ops: &[Compiled]) {
    for op in ops {
        match op {
            Compiled::Set { name, value } => host.set_header(map, name, value),
        }
    }
}

impl HttpFilter for HeaderRewriteFilter {
    fn on_request_headers(&mut self, host: &mut dyn Host, _: bool) -> Action {
        apply(host, Headers::Request, &self.rules.request);
        Action::Continue
    }

    fn on_response_headers(&mut self, host: &mut dyn Host, _: bool) -> Action {
        apply(host, Headers::Response, &self.rules.response);
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate_glue::FakeHost;

    #[test]
    fn sets_request_and_response_headers() {
        let mut host = FakeHost::new()
            .with_header("x-a", "old")
            .with_header("x-a", "older");
        let plugin = HeaderRewrite::configure(
            br#"{"rules":[{"request":[{"op":"set","name":"X-A","value":"new"}],
                           "response":[{"op":"set","name":"x-b","value":"2"}]}]}"#,
            &mut host,
        )
        .unwrap();
        let mut filter = plugin.create_filter(1);
        assert_eq!(filter.on_request_headers(&mut host, true), Action::Continue);
        assert_eq!(host.all(Headers::Request, "x-a"), vec!["new"]);
        assert_eq!(
            filter.on_response_headers(&mut host, true),
            Action::Continue
        );
        assert_eq!(host.header(Headers::Response, "x-b").as_deref(), Some("2"));
    }
}
