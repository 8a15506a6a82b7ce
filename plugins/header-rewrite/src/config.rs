//! The configuration of header-rewrite, shared with the CLI so that a bad `pluginConfig`
//! is refused before it reaches Envoy.

use serde::Deserialize;
use wasmgate_glue::ConfigError;

/// The plugin configuration (the `configuration` of the Envoy Wasm filter).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rules, applied in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One rule: operations on the request headers and on the response headers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Operations applied to the request headers before the request goes upstream.
    #[serde(default)]
    pub request: Vec<Operation>,
    /// Operations applied to the response headers before the response goes downstream.
    #[serde(default)]
    pub response: Vec<Operation>,
}

/// One header operation.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    /// Set `name` to `value`, replacing any values it had.
    Set { name: String, value: String },
}

/// A header operation checked and ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compiled {
    Set { name: String, value: String },
}

/// Rules checked and compiled once in `on_configure`.
#[derive(Debug, Clone, Default)]
pub struct CompiledRules {
    pub request: Vec<Compiled>,
    pub response: Vec<Compiled>,
}

impl Config {
    /// Check every field and compile the rules; the error names the field at fault.
    pub fn compile(&self) -> Result<CompiledRules, ConfigError> {
        let mut out = CompiledRules::default();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = |side: &str, j: usize| format!("rules[{i}].{side}[{j}]");
            for (j, op) in rule.request.iter().enumerate() {
                out.request
                    .push(compile_op(op).map_err(|e| e.at(&at("request", j)))?);
            }
            for (j, op) in rule.response.iter().enumerate() {
                out.response
                    .push(compile_op(op).map_err(|e| e.at(&at("response", j)))?);
            }
        }
        Ok(out)
    }
}

fn compile_op(op: &Operation) -> Result<Compiled, ConfigError> {
    match op {
        Operation::Set { name, value } => Ok(Compiled::Set {
            name: header_name(name).map_err(|e| e.at("name"))?,
            value: header_value(value).map_err(|e| e.at("value"))?,
        }),
    }
}

/// Headers whose change could break the proxy or bypass its routing.
const PROTECTED: &[&str] = &["host", "content-length", "transfer-encoding"];

/// A valid, lowercased, unprotected header name.
fn header_name(name: &str) -> Result<String, ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new("", "header name is empty"));
    }
    if let Some(bad) = name.chars().find(|c| !is_token_char(*c)) {
        return Err(ConfigError::new(
            "",
            format!("header name {name:?} has the character {bad:?}, which is not allowed in a header name"),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if PROTECTED.contains(&lower.as_str()) || lower.starts_with("x-envoy-") {
        return Err(ConfigError::new(
            "",
            format!("header {lower:?} is protected and cannot be changed"),
        ));
    }
    Ok(lower)
}

/// RFC 9110 token characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn header_value(value: &str) -> Result<String, ConfigError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(ConfigError::new(
            "",
            "header value contains CR, LF or NUL, which would split or truncate the header",
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate_glue::parse_json;

    fn compile(json: &str) -> Result<CompiledRules, ConfigError> {
        parse_json::<Config>(json.as_bytes())?.compile()
    }

    #[test]
    fn compiles_and_lowercases_names() {
        let rules =
            compile(r#"{"rules":[{"request":[{"op":"set","name":"X-A","value":"1"}]}]}"#).unwrap();
        assert_eq!(
            rules.request,
            vec![Compiled::Set {
                name: "x-a".into(),
                value: "1".into()
            }]
        );
    }

    #[test]
    fn unknown_op_names_the_field() {
        let err = compile(r#"{"rules":[{"request":[{"op":"explode","name":"a"}]}]}"#).unwrap_err();
        assert_eq!(err.field, "rules[0].request[0].op");
        assert!(err.reason.contains("unknown variant `explode`"), "{err}");
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        let err = compile(r#"{"rules":[{},{"response":[{"op":"set","name":"a b","value":"1"}]}]}"#)
            .unwrap_err();
        assert_eq!(err.field, "rules[1].response[0].name");
        let err =
            compile(r#"{"rules":[{"request":[{"op":"set","name":"a","value":"1\r\nx: y"}]}]}"#)
                .unwrap_err();
        assert_eq!(err.field, "rules[0].request[0].value");
        let err = compile(r#"{"rules":[{"request":[{"op":"set","name":"Host","value":"x"}]}]}"#)
            .unwrap_err();
        assert!(err.reason.contains("protected"), "{err}");
        let err =
            compile(r#"{"rules":[{"request":[{"op":"set","name":"x-envoy-foo","value":"x"}]}]}"#)
                .unwrap_err();
        assert!(err.reason.contains("protected"), "{err}");
    }
}
