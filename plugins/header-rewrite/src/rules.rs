//! Rules checked and compiled once, in `on_configure`: names lowercased and checked against
//! the protected list, regexes and templates compiled, every template variable known.

use regex_lite::Regex;
use wasmgate_glue::ConfigError;
use wasmgate_http::{
    check_header_value, check_token, is_token_char, regex as compile_regex, ClientIp,
    CompiledMatch, Matcher, Warnings,
};

use crate::config::{ClearRouteCache, Config, OnMissing, Operation, Rule};
use crate::template::{Template, Var};

/// Headers whose change could break the proxy or bypass its routing and security.
const PROTECTED: &[&str] = &["host", "content-length", "transfer-encoding"];
/// Pseudo-headers a rule may set (with `allow_protected_headers`), by direction.
const REQUEST_PSEUDO: &[&str] = &[":method", ":path", ":authority", ":scheme"];
const RESPONSE_PSEUDO: &[&str] = &[":status"];

/// The direction an operation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// Every rule, compiled.
#[derive(Debug)]
pub struct Rules {
    pub rules: Vec<CompiledRule>,
    pub clear_route_cache: ClearRouteCache,
    pub client_ip: ClientIp,
    /// Old spellings the configuration still uses, logged at configure.
    pub warnings: Warnings,
}

/// One rule, compiled.
#[derive(Debug)]
pub struct CompiledRule {
    pub name: Option<String>,
    /// The rule's `match`.
    pub when: CompiledMatch,
    pub missing: OnMissing,
    pub request: Vec<Op>,
    pub response: Vec<Op>,
    /// The request values (not headers) the response operations read; they are kept when
    /// the rule matches, since the request is gone by the time the response arrives.
    pub response_reads: Vec<Var>,
}

/// Which headers a pattern removal takes.
#[derive(Debug)]
pub enum NamePattern {
    Prefix(String),
    Regex(Regex),
}

impl NamePattern {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Prefix(prefix) => name.starts_with(prefix.as_str()),
            NamePattern::Regex(regex) => regex.is_match(name),
        }
    }
}

/// How a header write treats the values already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Set,
    Append,
    AddIfAbsent,
    OverwriteIfExists,
}

/// A compiled operation; header names are lowercased (and `host` is `:authority` on requests).
#[derive(Debug)]
pub enum Op {
    Write {
        how: Write,
        name: String,
        value: Template,
    },
    Remove(String),
    RemoveMatching {
        pattern: NamePattern,
        allow_protected: bool,
    },
    Rename {
        from: String,
        to: String,
    },
    Copy {
        from: String,
        to: String,
    },
    RewritePath {
        regex: Regex,
        replacement: Template,
    },
    SetQueryParam {
        name: String,
        value: Template,
    },
    AddQueryParam {
        name: String,
        value: Template,
    },
    RemoveQueryParam(String),
}

impl Config {
    /// Check every field and compile the rules; the error names the field at fault.
    // Not inlined into its one caller: V8 compiles every function when the module loads and
    // keeps the working memory of the largest, so no function over ~6 KB (bench/module-memory.md).
    #[inline(never)]
    pub(crate) fn compile(&self) -> Result<Rules, ConfigError> {
        let mut rules = Vec::with_capacity(self.rules.len());
        let mut warnings = Warnings::default();
        for (i, rule) in self.rules.iter().enumerate() {
            let compiled = warnings.within(&format!("rules[{i}]"), |w| compile_rule(rule, w));
            let compiled = compiled.map_err(|err| {
                let err = err.at(&format!("rules[{i}]"));
                match &rule.name {
                    Some(name) => {
                        ConfigError::new(err.field(), format!("{} (rule {name:?})", err.reason()))
                    }
                    None => err,
                }
            })?;
            rules.push(compiled);
        }
        Ok(Rules {
            rules,
            clear_route_cache: self.clear_route_cache,
            client_ip: self.client_ip,
            warnings,
        })
    }
}

fn compile_rule(rule: &Rule, warnings: &mut Warnings) -> Result<CompiledRule, ConfigError> {
    if let Some(name) = &rule.name {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::new(
                "name",
                format!(
                    "{name:?}: a rule name is letters, digits, `_` and `-` (it names a metric)"
                ),
            ));
        }
    }
    let when = warnings
        .within("match", |w| rule.when.compile(w))
        .map_err(|e| e.at("match"))?;
    // `${0}` is the whole match; a path regex with n groups provides `${1}`…`${n}`.
    let captures = match &when.path {
        Some(Matcher::Regex(regex) | Matcher::WholeRegex(regex)) => Some(regex.captures_len() - 1),
        _ => None,
    };
    let scope = Scope {
        allow_protected: rule.allow_protected_headers,
        captures,
    };
    let request = compile_ops(&rule.request, Side::Request, &scope, "request")?;
    let response = compile_ops(&rule.response, Side::Response, &scope, "response")?;
    let mut response_reads = Vec::new();
    for op in &response {
        if let Op::Write { value, .. } = op {
            for var in value.vars() {
                if !matches!(var, Var::Header(_)) && !response_reads.contains(var) {
                    response_reads.push(var.clone());
                }
            }
        }
    }
    Ok(CompiledRule {
        name: rule.name.clone(),
        when,
        missing: rule.on_missing_variable,
        request,
        response,
        response_reads,
    })
}

/// What the operations of one rule may use.
struct Scope {
    allow_protected: bool,
    /// Capture groups of the rule's path regex; `None` without one.
    captures: Option<usize>,
}

fn compile_ops(
    ops: &[Operation],
    side: Side,
    scope: &Scope,
    field: &str,
) -> Result<Vec<Op>, ConfigError> {
    ops.iter()
        .enumerate()
        .map(|(j, op)| compile_op(op, side, scope).map_err(|e| e.at(&format!("{field}[{j}]"))))
        .collect()
}

fn compile_op(op: &Operation, side: Side, scope: &Scope) -> Result<Op, ConfigError> {
    let write = |how: Write, name: &str, value: &str| -> Result<Op, ConfigError> {
        let name = header_name(name, side).map_err(|e| e.at("name"))?;
        writable(
            &name,
            side,
            scope.allow_protected,
            how == Write::Set || how == Write::OverwriteIfExists,
        )
        .map_err(|e| e.at("name"))?;
        let value = header_template(value, scope.captures).map_err(|e| e.at("value"))?;
        Ok(Op::Write { how, name, value })
    };
    let request_only = |what: &str| {
        if side == Side::Response {
            return Err(ConfigError::new(
                "op",
                format!("{what} changes the request; it cannot be a response operation"),
            ));
        }
        Ok(())
    };
    match op {
        Operation::Set { name, value } => write(Write::Set, name, value),
        Operation::Append { name, value } => write(Write::Append, name, value),
        Operation::AddIfAbsent { name, value } => write(Write::AddIfAbsent, name, value),
        Operation::OverwriteIfExists { name, value } => {
            write(Write::OverwriteIfExists, name, value)
        }
        Operation::Remove {
            name,
            prefix,
            regex,
        } => match (name, prefix, regex) {
            (Some(name), None, None) => {
                let name = header_name(name, side).map_err(|e| e.at("name"))?;
                writable(&name, side, scope.allow_protected, false).map_err(|e| e.at("name"))?;
                Ok(Op::Remove(name))
            }
            (None, Some(prefix), None) => {
                let prefix = prefix.to_ascii_lowercase();
                if prefix.is_empty() || !prefix.chars().all(is_token_char) {
                    return Err(ConfigError::new(
                        "prefix",
                        format!("{prefix:?} is not the start of a header name"),
                    ));
                }
                if !scope.allow_protected && is_protected(&prefix) {
                    return Err(protected_error(&prefix).at("prefix"));
                }
                Ok(Op::RemoveMatching {
                    pattern: NamePattern::Prefix(prefix),
                    allow_protected: scope.allow_protected,
                })
            }
            (None, None, Some(regex)) => Ok(Op::RemoveMatching {
                pattern: NamePattern::Regex(compile_regex(regex).map_err(|e| e.at("regex"))?),
                allow_protected: scope.allow_protected,
            }),
            _ => Err(ConfigError::new(
                "",
                "remove takes exactly one of `name`, `prefix` or `regex`",
            )),
        },
        Operation::Rename { from, to } | Operation::Copy { from, to } => {
            let renaming = matches!(op, Operation::Rename { .. });
            let from = header_name(from, side).map_err(|e| e.at("from"))?;
            let to = header_name(to, side).map_err(|e| e.at("to"))?;
            if from == to {
                return Err(ConfigError::new(
                    "to",
                    "`from` and `to` name the same header",
                ));
            }
            if renaming {
                // A rename removes `from`, so it is a write to both headers.
                writable(&from, side, scope.allow_protected, false).map_err(|e| e.at("from"))?;
                writable(&to, side, scope.allow_protected, false).map_err(|e| e.at("to"))?;
                Ok(Op::Rename { from, to })
            } else {
                writable(&to, side, scope.allow_protected, true).map_err(|e| e.at("to"))?;
                Ok(Op::Copy { from, to })
            }
        }
        Operation::RewritePath { regex, replacement } => {
            request_only("rewrite_path")?;
            let regex = compile_regex(regex).map_err(|e| e.at("regex"))?;
            let replacement =
                Template::parse(replacement).map_err(|e| ConfigError::new("replacement", e))?;
            check_captures(&replacement, Some(regex.captures_len() - 1), "regex")
                .map_err(|e| e.at("replacement"))?;
            if let Some(bad) = replacement.texts().find(|t| t.contains(['?', '#'])) {
                return Err(ConfigError::new(
                    "replacement",
                    format!("{bad:?}: a path replacement cannot hold `?` or `#`; change the query with set_query_param"),
                ));
            }
            Ok(Op::RewritePath { regex, replacement })
        }
        Operation::SetQueryParam { name, value } | Operation::AddQueryParam { name, value } => {
            let setting = matches!(op, Operation::SetQueryParam { .. });
            request_only(if setting {
                "set_query_param"
            } else {
                "add_query_param"
            })?;
            let name = query_name(name)?;
            let value = Template::parse(value).map_err(|e| ConfigError::new("value", e))?;
            check_captures(&value, scope.captures, "match.path.regex")
                .map_err(|e| e.at("value"))?;
            Ok(if setting {
                Op::SetQueryParam { name, value }
            } else {
                Op::AddQueryParam { name, value }
            })
        }
        Operation::RemoveQueryParam { name } => {
            request_only("remove_query_param")?;
            Ok(Op::RemoveQueryParam(query_name(name)?))
        }
    }
}

fn query_name(name: &str) -> Result<String, ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new("name", "query parameter name is empty"));
    }
    Ok(name.to_owned())
}

/// A header value template: variables checked, literal text free of CR, LF and NUL.
fn header_template(value: &str, captures: Option<usize>) -> Result<Template, ConfigError> {
    let template = Template::parse(value).map_err(|e| ConfigError::new("", e))?;
    for text in template.texts() {
        check_header_value(text)?;
    }
    check_captures(&template, captures, "match.path.regex")?;
    Ok(template)
}

/// `${n}` must name a group of the regex that provides captures (`source`).
fn check_captures(
    template: &Template,
    captures: Option<usize>,
    source: &str,
) -> Result<(), ConfigError> {
    for var in template.vars() {
        if let Var::Capture(n) = var {
            match captures {
                None => {
                    return Err(ConfigError::new(
                        "",
                        format!(
                        "{var} reads a capture group, but the rule has no {source} to capture from"
                    ),
                    ))
                }
                Some(groups) if *n > groups => {
                    return Err(ConfigError::new(
                        "",
                        format!("{var}: {source} has only {groups} capture group(s)"),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// A valid header name, lowercased; on requests `host` is `:authority`, the name Envoy
/// keeps it under.
fn header_name(name: &str, side: Side) -> Result<String, ConfigError> {
    let bare = name.strip_prefix(':').unwrap_or(name);
    if bare.is_empty() {
        return Err(ConfigError::new("", "header name is empty"));
    }
    check_token(name, bare)?;
    let lower = name.to_ascii_lowercase();
    Ok(if side == Side::Request && lower == "host" {
        ":authority".to_owned()
    } else {
        lower
    })
}

/// Whether a rule may write header `name` (lowercased). Pseudo-headers always exist, so
/// they can only be given a value (`can_be_pseudo`), never added or removed.
fn writable(
    name: &str,
    side: Side,
    allow_protected: bool,
    can_be_pseudo: bool,
) -> Result<(), ConfigError> {
    if name.starts_with(':') {
        let known = match side {
            Side::Request => REQUEST_PSEUDO,
            Side::Response => RESPONSE_PSEUDO,
        };
        if !known.contains(&name) {
            return Err(ConfigError::new(
                "",
                format!(
                    "{name:?} is not a pseudo-header of the {} (known: {})",
                    if side == Side::Request {
                        "request"
                    } else {
                        "response"
                    },
                    known.join(", ")
                ),
            ));
        }
        if !can_be_pseudo {
            return Err(ConfigError::new(
                "",
                format!("pseudo-header {name:?} can only be given a new value (set, overwrite_if_exists or copy to it)"),
            ));
        }
    }
    if !allow_protected && is_protected(name) {
        return Err(protected_error(name));
    }
    Ok(())
}

/// Pseudo-headers, `host`, `content-length`, `transfer-encoding` and `x-envoy-*`.
pub fn is_protected(name: &str) -> bool {
    name.starts_with(':') || PROTECTED.contains(&name) || name.starts_with("x-envoy-")
}

fn protected_error(name: &str) -> ConfigError {
    ConfigError::new(
        "",
        format!("header {name:?} is protected; set `allow_protected_headers: true` on the rule to change it"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate_glue::parse_json;

    fn compile(json: &str) -> Result<Rules, ConfigError> {
        parse_json::<Config>(json.as_bytes())?.compile()
    }

    fn refused(json: &str) -> ConfigError {
        match compile(json) {
            Ok(_) => panic!("accepted: {json}"),
            Err(err) => err,
        }
    }

    #[test]
    fn compiles_every_feature() {
        let rules = compile(
            r#"{"clear_route_cache": "never", "rules": [{
                "name": "api-v1",
                "match": {"path": {"regex": "^/api/v(\\d+)/(.*)$"}, "methods": ["GET", "post"],
                          "host": {"suffix": ".Example.com"},
                          "headers": [{"name": "X-A", "present": true}, {"name": "x-b", "present": false},
                                      {"name": "x-c", "exact": "1"}, {"name": "x-d", "prefix": "a"},
                                      {"name": "x-e", "suffix": "z"}, {"name": "x-f", "regex": "^\\d+$"}]},
                "on_missing_variable": "empty",
                "request": [
                    {"op": "set", "name": "X-Version", "value": "v${1}"},
                    {"op": "append", "name": "x-a", "value": "${header.x-b}"},
                    {"op": "add_if_absent", "name": "x-c", "value": "${query.q}"},
                    {"op": "overwrite_if_exists", "name": "x-d", "value": "${path}${method}${host}"},
                    {"op": "remove", "name": "x-e"},
                    {"op": "remove", "prefix": "X-Debug-"},
                    {"op": "remove", "regex": "^x-tmp-\\d+$"},
                    {"op": "rename", "from": "x-old", "to": "x-new"},
                    {"op": "copy", "from": "x-request-id", "to": "x-trace"},
                    {"op": "rewrite_path", "regex": "^/api/v1/(.*)$", "replacement": "/v1/${1}"},
                    {"op": "set_query_param", "name": "v", "value": "${2}"},
                    {"op": "add_query_param", "name": "ip", "value": "${client_ip}"},
                    {"op": "remove_query_param", "name": "debug"}
                ],
                "response": [{"op": "set", "name": "x-request-path", "value": "${path} ${request_id} ${1} ${header.server}"}]
            }]}"#,
        )
        .unwrap();
        assert_eq!(rules.clear_route_cache, ClearRouteCache::Never);
        let rule = &rules.rules[0];
        assert_eq!(rule.request.len(), 13);
        assert_eq!(rule.when.headers[0].name, "x-a");
        assert!(matches!(&rule.when.hosts[..], [Matcher::Suffix(s)] if s == ".example.com"));
        let warnings: Vec<String> = rules.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("rules[0].match.methods[1]: \"post\" is read as \"POST\""),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("rules[0].match.host: old spelling"),
            "{warnings:?}"
        );
        assert!(
            matches!(&rule.request[0], Op::Write { how: Write::Set, name, .. } if name == "x-version")
        );
        assert!(
            matches!(&rule.request[5], Op::RemoveMatching { pattern: NamePattern::Prefix(p), .. } if p == "x-debug-")
        );
        assert_eq!(
            rule.response_reads,
            vec![Var::Path, Var::RequestId, Var::Capture(1)]
        );
        assert_eq!(rule.missing, OnMissing::Empty);
        assert_eq!(
            compile("").unwrap().clear_route_cache,
            ClearRouteCache::OnRoutingChange
        );
    }

    #[test]
    fn unknown_op_names_the_field() {
        let err = refused(r#"{"rules":[{"request":[{"op":"explode","name":"a"}]}]}"#);
        assert_eq!(err.field(), "rules[0].request[0].op");
        assert!(err.reason().contains("unknown variant `explode`"), "{err}");
        let err = refused(r#"{"rules":[{"request":[{"op":"set","name":"a","valeu":"1"}]}]}"#);
        // Named after the key itself, as in every other object (issue 14).
        assert_eq!(err.field(), "rules[0].request[0].valeu");
        assert_eq!(
            err.reason(),
            "unknown field `valeu`, expected `name` or `value`"
        );
    }

    #[test]
    fn bad_regexes_name_the_field() {
        let err = refused(r#"{"rules":[{},{"match":{"path":{"regex":"("}}}]}"#);
        assert_eq!(err.field(), "rules[1].match.path.regex");
        assert!(err.reason().starts_with("invalid regex \"(\""), "{err}");
        let err = refused(r#"{"rules":[{"match":{"headers":[{"name":"a","regex":"[z-a]"}]}}]}"#);
        assert_eq!(err.field(), "rules[0].match.headers[0].regex");
        let err = refused(r#"{"rules":[{"request":[{"op":"remove","regex":"*"}]}]}"#);
        assert_eq!(err.field(), "rules[0].request[0].regex");
        let err = refused(
            r#"{"rules":[{"request":[{"op":"rewrite_path","regex":"(","replacement":"/"}]}]}"#,
        );
        assert_eq!(err.field(), "rules[0].request[0].regex");
    }

    #[test]
    fn unknown_variables_name_rule_and_field() {
        let err = refused(
            r#"{"rules":[{"name":"tag","response":[{"op":"set","name":"a","value":"${nope}"}]}]}"#,
        );
        assert_eq!(err.field(), "rules[0].response[0].value");
        assert!(err.reason().contains("unknown variable ${nope}"), "{err}");
        assert!(err.reason().ends_with("(rule \"tag\")"), "{err}");
        let err = refused(
            r#"{"rules":[{"request":[{"op":"set_query_param","name":"a","value":"${header.}"}]}]}"#,
        );
        assert_eq!(err.field(), "rules[0].request[0].value");
    }

    #[test]
    fn captures_must_exist() {
        let err = refused(r#"{"rules":[{"request":[{"op":"set","name":"a","value":"${1}"}]}]}"#);
        assert!(err.reason().contains("no match.path.regex"), "{err}");
        let err = refused(
            r#"{"rules":[{"match":{"path":{"prefix":"/"}},"request":[{"op":"set","name":"a","value":"${1}"}]}]}"#,
        );
        assert!(err.reason().contains("no match.path.regex"), "{err}");
        let err = refused(
            r#"{"rules":[{"match":{"path":{"regex":"^/(a)"}},"request":[{"op":"set","name":"a","value":"${2}"}]}]}"#,
        );
        assert!(err.reason().contains("only 1 capture group"), "{err}");
        let err = refused(
            r#"{"rules":[{"request":[{"op":"rewrite_path","regex":"^/a","replacement":"/${1}"}]}]}"#,
        );
        assert_eq!(err.field(), "rules[0].request[0].replacement");
        compile(r#"{"rules":[{"match":{"path":{"regex":"^/(a)"}},"request":[{"op":"set","name":"a","value":"${0}${1}"}]}]}"#).unwrap();
    }

    #[test]
    fn protected_headers_need_the_opt_in() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "x-envoy-foo",
            ":path",
        ] {
            let json = format!(
                r#"{{"rules":[{{"request":[{{"op":"set","name":"{name}","value":"x"}}]}}]}}"#
            );
            let err = refused(&json);
            assert_eq!(err.field(), "rules[0].request[0].name");
            assert!(err.reason().contains("protected"), "{err}");
            let allowed = json.replace(
                r#"[{"request""#,
                r#"[{"allow_protected_headers":true,"request""#,
            );
            compile(&allowed).unwrap();
        }
        let err = refused(r#"{"rules":[{"request":[{"op":"remove","prefix":"x-envoy-"}]}]}"#);
        assert_eq!(err.field(), "rules[0].request[0].prefix");
        let err = refused(
            r#"{"rules":[{"request":[{"op":"rename","from":"content-length","to":"x-a"}]}]}"#,
        );
        assert_eq!(err.field(), "rules[0].request[0].from");
        let err =
            refused(r#"{"rules":[{"request":[{"op":"copy","from":"x-a","to":"x-envoy-a"}]}]}"#);
        assert_eq!(err.field(), "rules[0].request[0].to");
        // Reading a protected header is fine.
        compile(r#"{"rules":[{"request":[{"op":"copy","from":"host","to":"x-original-host"}]}]}"#)
            .unwrap();
    }

    #[test]
    fn pseudo_headers_can_only_be_given_a_value() {
        let err = refused(
            r#"{"rules":[{"allow_protected_headers":true,"request":[{"op":"remove","name":":path"}]}]}"#,
        );
        assert!(
            err.reason().contains("can only be given a new value"),
            "{err}"
        );
        let err = refused(
            r#"{"rules":[{"allow_protected_headers":true,"request":[{"op":"append","name":":method","value":"x"}]}]}"#,
        );
        assert!(
            err.reason().contains("can only be given a new value"),
            "{err}"
        );
        let err = refused(
            r#"{"rules":[{"allow_protected_headers":true,"response":[{"op":"set","name":":path","value":"/"}]}]}"#,
        );
        assert!(
            err.reason().contains("not a pseudo-header of the response"),
            "{err}"
        );
        compile(r#"{"rules":[{"allow_protected_headers":true,"response":[{"op":"set","name":":status","value":"201"}]}]}"#).unwrap();
    }

    #[test]
    fn bad_shapes_are_refused() {
        let err = refused(r#"{"rules":[{"request":[{"op":"remove","name":"a","prefix":"b"}]}]}"#);
        assert!(err.reason().contains("exactly one"), "{err}");
        let err = refused(r#"{"rules":[{"request":[{"op":"remove"}]}]}"#);
        assert_eq!(err.field(), "rules[0].request[0]");
        // A name alone means present, as in Envoy's HeaderMatcher (it was refused before the
        // conditions were shared with rate-limit).
        let rules = compile(r#"{"rules":[{"match":{"headers":[{"name":"a"}]}}]}"#).unwrap();
        assert!(rules.rules[0].when.headers[0].test.holds(Some("")));
        let err = refused(
            r#"{"rules":[{"match":{"headers":[{"name":"a","present":true,"exact":"b"}]}}]}"#,
        );
        assert_eq!(err.field(), "rules[0].match.headers[0]");
        assert!(err.reason().contains("at most one"), "{err}");
        let err = refused(r#"{"rules":[{"match":{"methods":["G T"]}}]}"#);
        assert_eq!(err.field(), "rules[0].match.methods[0]");
        let err = refused(r#"{"rules":[{"name":"a b"}]}"#);
        assert_eq!(err.field(), "rules[0].name");
        let err = refused(r#"{"rules":[{"request":[{"op":"rename","from":"a","to":"A"}]}]}"#);
        assert_eq!(err.field(), "rules[0].request[0].to");
        let err = refused(r#"{"rules":[{"on_missing_variable":"explode"}]}"#);
        assert_eq!(err.field(), "rules[0].on_missing_variable");
        let err = refused(r#"{"rules":[{"match":{"path":{"prefx":"/"}}}]}"#);
        assert_eq!(err.field(), "rules[0].match.path");
    }

    #[test]
    fn request_only_ops_are_refused_on_responses() {
        for op in [
            r#"{"op":"rewrite_path","regex":"a","replacement":"/b"}"#,
            r#"{"op":"set_query_param","name":"a","value":"b"}"#,
            r#"{"op":"add_query_param","name":"a","value":"b"}"#,
            r#"{"op":"remove_query_param","name":"a"}"#,
        ] {
            let err = refused(&format!(r#"{{"rules":[{{"response":[{op}]}}]}}"#));
            assert_eq!(err.field(), "rules[0].response[0].op");
            assert!(err.reason().contains("changes the request"), "{err}");
        }
    }

    #[test]
    fn values_are_checked() {
        let err =
            refused(r#"{"rules":[{"request":[{"op":"set","name":"a","value":"1\r\nx: y"}]}]}"#);
        assert_eq!(err.field(), "rules[0].request[0].value");
        assert!(err.reason().contains("CR, LF or NUL"), "{err}");
        let err = refused(r#"{"rules":[{},{"response":[{"op":"set","name":"a b","value":"1"}]}]}"#);
        assert_eq!(err.field(), "rules[1].response[0].name");
        let err = refused(
            r#"{"rules":[{"request":[{"op":"rewrite_path","regex":"a","replacement":"/b?c=d"}]}]}"#,
        );
        assert!(err.reason().contains("set_query_param"), "{err}");
        let err = refused(r#"{"rules":[{"request":[{"op":"remove_query_param","name":""}]}]}"#);
        assert_eq!(err.field(), "rules[0].request[0].name");
    }

    #[test]
    fn client_ip_trusts_the_configured_hops() {
        assert_eq!(compile("").unwrap().client_ip.xff_hop, 0);
        let rules = compile(r#"{"client_ip":{"xff_hop":2}}"#).unwrap();
        assert_eq!(rules.client_ip.xff_hop, 2);
        let err = refused(r#"{"client_ip":{"xff_hops":2}}"#);
        assert_eq!(err.field(), "client_ip.xff_hops");
    }

    #[test]
    fn matchers_and_header_tests() {
        use wasmgate_http::HeaderTest;
        assert!(Matcher::Exact("/a".into()).matches("/a"));
        assert!(!Matcher::Exact("/a".into()).matches("/ab"));
        assert!(Matcher::Prefix("/a".into()).matches("/ab"));
        assert!(Matcher::Suffix(".com".into()).matches("x.com"));
        assert!(Matcher::Regex(Regex::new("^/v[0-9]$").unwrap()).matches("/v2"));
        assert!(HeaderTest::Present.holds(Some("")));
        assert!(!HeaderTest::Present.holds(None));
        assert!(HeaderTest::Absent.holds(None));
        assert!(!HeaderTest::Value(Matcher::Exact("a".into())).holds(None));
        assert!(NamePattern::Prefix("x-".into()).matches("x-a"));
    }
}
