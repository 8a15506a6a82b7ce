//! Value templates: `x-${header.x-user}-${1}`, parsed once at configuration time.

use std::borrow::Cow;
use std::fmt;

use crate::config::OnMissing;

/// A variable a template can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `${header.NAME}`: a header of the message being changed (lowercased name).
    Header(String),
    /// `${query.NAME}`: a query parameter of the request, percent-decoded.
    Query(String),
    /// `${path}`: the request path without its query.
    Path,
    /// `${method}`: the request method.
    Method,
    /// `${host}`: the request's `:authority`, as received.
    Host,
    /// `${client_ip}`: the downstream address without its port.
    ClientIp,
    /// `${request_id}`: the `x-request-id` header.
    RequestId,
    /// `${1}`, `${2}`…: a capture group of the rule's regex (`${0}` is the whole match).
    Capture(usize),
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Header(name) => write!(f, "${{header.{name}}}"),
            Var::Query(name) => write!(f, "${{query.{name}}}"),
            Var::Path => f.write_str("${path}"),
            Var::Method => f.write_str("${method}"),
            Var::Host => f.write_str("${host}"),
            Var::ClientIp => f.write_str("${client_ip}"),
            Var::RequestId => f.write_str("${request_id}"),
            Var::Capture(n) => write!(f, "${{{n}}}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed template: literal text and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The variables a template may name, for error messages.
pub const KNOWN: &str =
    "header.NAME, query.NAME, path, method, host, client_ip, request_id, 0, 1, 2, …";

impl Template {
    /// Parse `text`. `${` opens a variable, `$$` is a literal `$`, any other `$` is literal.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                literal.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let end = body
                    .find('}')
                    .ok_or_else(|| format!("unclosed variable in {text:?}: `${{` without `}}`"))?;
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Var(parse_var(&body[..end])?));
                rest = &body[end + 1..];
            } else {
                literal.push('$');
                rest = after;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The whole text of a template without variables, which needs no rendering.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// The variables the template reads, in order.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|part| match part {
            Part::Var(var) => Some(var),
            Part::Text(_) => None,
        })
    }

    /// The literal parts, for checks on what the configuration itself writes.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Text(text) => Some(text.as_str()),
            Part::Var(_) => None,
        })
    }

    /// Render with `lookup` giving each variable's value. `None` when a variable has no
    /// value and `missing` says to skip the operation.
    pub fn render<'t>(
        &'t self,
        missing: OnMissing,
        mut lookup: impl FnMut(&'t Var) -> Option<String>,
    ) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(var) => match (lookup(var), missing) {
                    (Some(value), _) => out.push_str(&value),
                    (None, OnMissing::Empty) => {}
                    (None, OnMissing::Skip) => return None,
                },
            }
        }
        Some(out)
    }
}

fn parse_var(body: &str) -> Result<Var, String> {
    let var = match body {
        "path" => Var::Path,
        "method" => Var::Method,
        "host" => Var::Host,
        "client_ip" => Var::ClientIp,
        "request_id" => Var::RequestId,
        _ => {
            if let Some(name) = body.strip_prefix("header.") {
                if name.is_empty() || !name.chars().all(is_header_name_char) {
                    return Err(format!("${{{body}}}: {name:?} is not a header name"));
                }
                Var::Header(name.to_ascii_lowercase())
            } else if let Some(name) = body.strip_prefix("query.") {
                if name.is_empty() {
                    return Err(format!("${{{body}}}: the query parameter name is empty"));
                }
                Var::Query(name.to_owned())
            } else if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
                Var::Capture(
                    body.parse()
                        .map_err(|_| format!("${{{body}}}: capture group number too large"))?,
                )
            } else {
                return Err(format!(
                    "unknown variable ${{{body}}}; known variables: {KNOWN}"
                ));
            }
        }
    };
    Ok(var)
}

/// Characters of a header name (RFC 9110 token), or `:` for pseudo-headers.
pub fn is_header_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:".contains(c)
}

/// Replace characters that would end or split a header line (CR, LF, NUL and the other
/// control characters except tab) with a space, so a value from the request cannot inject
/// headers.
pub fn neutralise(value: Cow<'_, str>) -> Cow<'_, str> {
    if value.chars().any(is_control) {
        Cow::Owned(
            value
                .chars()
                .map(|c| if is_control(c) { ' ' } else { c })
                .collect(),
        )
    } else {
        value
    }
}

fn is_control(c: char) -> bool {
    (c.is_ascii_control() && c != '\t') || c == '\u{7f}'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, missing: OnMissing) -> Option<String> {
        Template::parse(t)
            .unwrap()
            .render(missing, |var| match var {
                Var::Header(name) if name == "x-user" => Some("ada".into()),
                Var::Capture(1) => Some("v1".into()),
                Var::Path => Some("/p".into()),
                _ => None,
            })
    }

    #[test]
    fn literals_variables_and_dollars() {
        assert_eq!(
            render("u=${header.X-User};${1}${path}", OnMissing::Skip).as_deref(),
            Some("u=ada;v1/p")
        );
        assert_eq!(
            render("$$5 and $x", OnMissing::Skip).as_deref(),
            Some("$5 and $x")
        );
        assert_eq!(
            render("$${path}", OnMissing::Skip).as_deref(),
            Some("${path}")
        );
        let texts: Vec<_> = Template::parse("a${path}b")
            .unwrap()
            .texts()
            .map(String::from)
            .collect();
        assert_eq!(texts, vec!["a", "b"]);
    }

    #[test]
    fn missing_variables_follow_the_policy() {
        assert_eq!(render("a-${header.x-none}-b", OnMissing::Skip), None);
        assert_eq!(
            render("a-${header.x-none}-b", OnMissing::Empty).as_deref(),
            Some("a--b")
        );
    }

    #[test]
    fn every_variable_parses() {
        let t = Template::parse(
            "${header.a}${query.q}${path}${method}${host}${client_ip}${request_id}${0}${12}",
        )
        .unwrap();
        let vars: Vec<_> = t.vars().cloned().collect();
        assert_eq!(
            vars,
            vec![
                Var::Header("a".into()),
                Var::Query("q".into()),
                Var::Path,
                Var::Method,
                Var::Host,
                Var::ClientIp,
                Var::RequestId,
                Var::Capture(0),
                Var::Capture(12),
            ]
        );
        assert_eq!(vars[7].to_string(), "${0}");
        assert_eq!(vars[0].to_string(), "${header.a}");
    }

    #[test]
    fn bad_templates_are_refused() {
        let err = Template::parse("${nope}").unwrap_err();
        assert!(err.contains("unknown variable ${nope}"), "{err}");
        assert!(Template::parse("${path").unwrap_err().contains("unclosed"));
        assert!(Template::parse("${header.a b}").is_err());
        assert!(Template::parse("${header.}").is_err());
        assert!(Template::parse("${query.}").is_err());
        assert!(Template::parse("${}").is_err());
        assert!(Template::parse("${99999999999999999999999}").is_err());
    }

    #[test]
    fn only_templates_without_variables_are_literal() {
        assert_eq!(Template::parse("a$$b").unwrap().literal(), Some("a$b"));
        assert_eq!(Template::parse("").unwrap().literal(), Some(""));
        assert_eq!(Template::parse("a${path}").unwrap().literal(), None);
    }

    #[test]
    fn control_characters_are_neutralised() {
        assert_eq!(neutralise("a\r\nb: c\0d\te".into()), "a  b: c d\te");
        assert_eq!(neutralise("fine".into()), "fine");
    }
}
