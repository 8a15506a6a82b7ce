//! What a plugin implements: a root object built once from the configuration, and one
//! [`HttpFilter`] per HTTP stream.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::host::{Host, LocalReply};

/// What a filter callback tells the proxy to do with the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Go on to the next filter.
    Continue,
    /// Hold the stream until the filter resumes it (after a callout) or replies locally.
    Pause,
    /// Answer the downstream with this reply; the stream goes no further.
    Reply(LocalReply),
}

impl Action {
    /// Carry the action out on `host` as the glue does: a reply is sent with
    /// [`Host::reply`] and leaves the stream paused. Returns what is left for the proxy,
    /// [`Action::Continue`] or [`Action::Pause`].
    pub fn settle(self, host: &mut dyn Host) -> Action {
        match self {
            Action::Reply(reply) => {
                host.reply(reply);
                Action::Pause
            }
            other => other,
        }
    }
}

/// A configuration the plugin refuses, naming the field (`rules[2].match.path`) and the reason.
///
/// One pointer: it is moved through every `?` and `map_err(|e| e.at(..))` of the plugins'
/// configuration code, and two `String`s there cost Wasm code at each of them (issue 14).
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError(Box<Parts>);

#[derive(Clone, PartialEq, Eq)]
struct Parts {
    field: String,
    reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::from_parts(field.into(), reason.into())
    }

    // Out of line: `new` is generic over both arguments.
    #[inline(never)]
    fn from_parts(field: String, reason: String) -> Self {
        ConfigError(Box::new(Parts { field, reason }))
    }

    /// Dotted path of the offending field; empty when the whole document is at fault.
    pub fn field(&self) -> &str {
        &self.0.field
    }

    /// Why the field is refused.
    pub fn reason(&self) -> &str {
        &self.0.reason
    }

    /// The field and the reason, owned.
    pub fn into_parts(self) -> (String, String) {
        let Parts { field, reason } = *self.0;
        (field, reason)
    }

    /// The same error under a parent field: `at("rules[2]")` turns `path` into `rules[2].path`.
    #[must_use]
    pub fn at(mut self, parent: &str) -> Self {
        self.nest(parent);
        self
    }

    // Out of line: `at` is called in every `map_err` of the plugins' configuration code.
    #[inline(never)]
    fn nest(&mut self, parent: &str) {
        let field = &mut self.0.field;
        if parent.is_empty() {
            return;
        }
        if !field.is_empty() && !field.starts_with('[') {
            field.insert(0, '.');
        }
        field.insert_str(0, parent);
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigError")
            .field("field", &self.0.field)
            .field("reason", &self.0.reason)
            .finish()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.field.is_empty() {
            f.write_str(&self.0.field)?;
            f.write_str(": ")?;
        }
        f.write_str(&self.0.reason)
    }
}

impl std::error::Error for ConfigError {}

/// What a configuration may still say but should not (an old spelling): accepted, each
/// warning naming the field like an error (`rules[0].match.prefix: old spelling: …`).
/// Plugins log them at configure; [`Plugin::validate`] returns them to the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings(Vec<ConfigError>);

impl Warnings {
    /// Warn about `field` (relative to where the caller is).
    pub fn warn(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError::new(field, reason));
    }

    /// Run `f`, whose warnings are about fields under `parent` (as [`ConfigError::at`] nests
    /// errors).
    pub fn within<T>(&mut self, parent: &str, f: impl FnOnce(&mut Warnings) -> T) -> T {
        let start = self.0.len();
        let out = f(self);
        self.nest(start, parent);
        out
    }

    // Out of line: `within` is generic, and each copy would carry this loop.
    #[inline(never)]
    fn nest(&mut self, start: usize, parent: &str) {
        for warning in &mut self.0[start..] {
            warning.nest(parent);
        }
    }

    /// Every warning, in the order of the fields.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parse a JSON configuration into `T`, naming the field when it fails.
///
/// An empty document is read as `{}`, so a plugin whose fields all have defaults runs with
/// no configuration at all. An object that repeats a key is refused, naming the object and
/// the key, as [`check_duplicate_keys`] does. `T` derives [`FromJson`](crate::FromJson) (see
/// [`crate::json`]: small in Wasm, errors naming the field).
pub fn parse_json<T: crate::json::FromJson>(bytes: &[u8]) -> Result<T, ConfigError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    crate::json::decode(&crate::json::parse(bytes)?)
}

/// Refuse a JSON document in which an object repeats a key, naming the object and the key:
/// `rules[0].request[1]: duplicate key "name"`.
///
/// Derived structs refuse a repeated field, but maps, `serde_json::Value`s, flattened and
/// internally tagged types keep the last value, so a second `"rules": []` would silently
/// drop every rule. A document that is not JSON passes: the typed parse says what is wrong.
pub fn check_duplicate_keys(bytes: &[u8]) -> Result<(), ConfigError> {
    check_duplicate_keys_with(&mut serde_json::Deserializer::from_slice(bytes))
}

/// [`check_duplicate_keys`] for a document of any self-describing format (the CLI reads YAML
/// with it: a YAML parser may keep the last of two equal keys as well).
pub fn check_duplicate_keys_with<'de, D: de::Deserializer<'de>>(
    deserializer: D,
) -> Result<(), ConfigError> {
    let found = RefCell::new(None);
    let walked = Walk {
        path: String::new(),
        found: &found,
    }
    .deserialize(deserializer);
    match (walked, found.into_inner()) {
        (Err(_), Some(duplicate)) => Err(duplicate),
        _ => Ok(()),
    }
}

/// Walks a JSON document without building it, stopping at the first repeated key.
/// serde_json's recursion limit bounds the depth.
struct Walk<'a> {
    /// Where the value being walked sits, in `parse_json`'s field notation.
    path: String,
    found: &'a RefCell<Option<ConfigError>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        while seq
            .next_element_seed(Walk {
                path: format!("{}[{index}]", self.path),
                found: self.found,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                *self.found.borrow_mut() = Some(ConfigError::new(
                    &self.path,
                    format!("duplicate key {key:?}"),
                ));
                return Err(de::Error::custom("duplicate key"));
            }
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            seen.insert(key);
            map.next_value_seed(Walk {
                path,
                found: self.found,
            })?;
        }
        Ok(())
    }
}

/// The proxy callbacks a plugin uses beyond request headers, which every plugin gets.
///
/// A shipped module exports only the callbacks its plugins declare here (the build strips
/// the others, see [`crate::proxy::exports`]), and Envoy skips a callback the module does not
/// export instead of calling into the Wasm VM for nothing: each one saved is a VM entry
/// per request. A callback left out is never called, even if the plugin implements it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Callbacks {
    /// [`HttpFilter::on_response_headers`].
    pub response_headers: bool,
    /// [`Plugin::on_tick`].
    pub tick: bool,
    /// [`Plugin::on_http_call_response`] and [`HttpFilter::on_http_call_response`].
    pub http_call_response: bool,
    /// [`Plugin::on_grpc_call_response`] and [`HttpFilter::on_grpc_call_response`].
    pub grpc_call_response: bool,
}

impl Callbacks {
    /// Request headers only.
    pub const NONE: Callbacks = Callbacks {
        response_headers: false,
        tick: false,
        http_call_response: false,
        grpc_call_response: false,
    };
    /// Every callback the glue delivers: the default, so a plugin that declares nothing
    /// loses nothing.
    pub const ALL: Callbacks = Callbacks {
        response_headers: true,
        tick: true,
        http_call_response: true,
        grpc_call_response: true,
    };

    /// The callbacks either uses: what a module hosting both plugins must export.
    #[must_use]
    pub const fn union(self, other: Callbacks) -> Callbacks {
        Callbacks {
            response_headers: self.response_headers || other.response_headers,
            tick: self.tick || other.tick,
            http_call_response: self.http_call_response || other.http_call_response,
            grpc_call_response: self.grpc_call_response || other.grpc_call_response,
        }
    }
}

/// A plugin: the root state compiled once from the configuration and shared by every stream.
///
/// `configure` runs in `on_configure`; anything that can be checked or compiled (regexes,
/// keys, templates, metric ids) is done there, so per-request work stays small.
pub trait Plugin: Sized + 'static {
    /// The plugin's name; in a module that hosts several plugins, the `root_id` that selects it.
    const NAME: &'static str;
    /// The per-stream filter.
    type Filter: HttpFilter;
    /// The callbacks its code implements (beyond request headers): the module exports these
    /// and no others. Every callback by default.
    const CALLBACKS: Callbacks = Callbacks::ALL;

    /// Build the plugin from its raw configuration; the error names the field at fault.
    fn configure(config: &[u8], host: &mut dyn Host) -> Result<Self, ConfigError>;

    /// Check a configuration without a proxy (the CLI does, before writing a manifest):
    /// the same errors as [`configure`](Self::configure) for the configuration itself, and
    /// the warnings `configure` logs about what it accepts (old spellings).
    /// By default `configure` runs against a host that has no effects and answers nothing
    /// (no headers, no shared data, no clock, no random bytes, metrics discarded) and no
    /// warning is returned; a plugin that warns, or whose `configure` needs more of the
    /// host, overrides this to parse and compile only.
    fn validate(config: &[u8]) -> Result<Warnings, ConfigError> {
        Self::configure(config, &mut crate::detached::Detached).map(|_| Warnings::default())
    }

    /// A new filter for the HTTP stream `context_id`.
    fn create_filter(&self, context_id: u32) -> Self::Filter;

    /// Called once after a successful `configure` on the root context, for timers and
    /// background work such as fetching keys.
    fn on_start(&mut self, _host: &mut dyn Host) {}

    /// Called on the root context every tick period set with [`Host::set_tick_period`].
    fn on_tick(&mut self, _host: &mut dyn Host) {}

    /// A callout sent from the root context has been answered (or failed: `status` is `None`).
    fn on_http_call_response(&mut self, _host: &mut dyn Host, _token: u32, _status: Option<u16>) {}

    /// A gRPC call sent from the root context has been answered: the response message, or
    /// the gRPC status code it failed with (14 unavailable, 4 deadline exceeded, ...).
    fn on_grpc_call_response(
        &mut self,
        _host: &mut dyn Host,
        _token: u32,
        _response: Result<&[u8], u32>,
    ) {
    }
}

/// One HTTP stream's filter. Every callback has a default that lets the stream through.
pub trait HttpFilter: 'static {
    fn on_request_headers(&mut self, _host: &mut dyn Host, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn on_response_headers(&mut self, _host: &mut dyn Host, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    /// A callout sent by this stream has been answered (or failed: `status` is `None`).
    /// A paused request must be resumed or answered here.
    fn on_http_call_response(&mut self, _host: &mut dyn Host, _token: u32, _status: Option<u16>) {}

    /// A gRPC call sent by this stream has been answered: the response message, or the gRPC
    /// status code it failed with. A paused request must be resumed or answered here.
    fn on_grpc_call_response(
        &mut self,
        _host: &mut dyn Host,
        _token: u32,
        _response: Result<&[u8], u32>,
    ) {
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FromJson;

    #[derive(Debug, FromJson)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        #[allow(dead_code)]
        name: String,
    }

    #[derive(Debug, FromJson)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        rules: Vec<Rule>,
    }

    #[test]
    fn names_the_field() {
        let err = parse_json::<Config>(br#"{"rules":[{"name":"a"},{"nme":"b"}]}"#).unwrap_err();
        assert_eq!(err.field(), "rules[1].nme");
        assert!(err.reason().starts_with("unknown field `nme`"), "{err}");
    }

    #[test]
    fn empty_config_means_defaults() {
        assert!(parse_json::<Config>(b"  ").unwrap().rules.is_empty());
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert!(parse_json::<Config>(b"{} x").is_err());
    }

    #[test]
    fn duplicate_keys_are_refused_naming_where() {
        let err = parse_json::<Config>(br#"{"rules":[{"name":"a"}],"rules":[]}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"duplicate key "rules""#);
        let err = check_duplicate_keys(
            br#"{"rules":[{"request":[{}, {"name":"a","x":{"name":1},"name":"b"}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "rules[0].request[1]");
        assert_eq!(err.reason(), r#"duplicate key "name""#);
        // A map type keeps the last value on its own: the check runs before it.
        let err = parse_json::<std::collections::HashMap<String, u8>>(br#"{"a.b":1,"a.b":2}"#)
            .unwrap_err();
        assert_eq!(err.to_string(), r#"duplicate key "a.b""#);
        // Same key in different objects, and malformed documents, are not its business.
        assert!(
            check_duplicate_keys(br#"{"a":{"k":1},"b":{"k":1},"k":[{"k":1},{"k":2}]}"#).is_ok()
        );
        assert!(check_duplicate_keys(br#"{"a":1,"b""#).is_ok());
        assert!(parse_json::<Config>(br#"{"a":1,"b""#).is_err());
    }

    #[test]
    fn nested_warnings_name_the_whole_field() {
        let mut warnings = Warnings::default();
        warnings.warn("mode", "old");
        warnings.within("rules[1]", |w| {
            w.within("match", |w| w.warn("prefix", "use match.path.prefix"))
        });
        let all: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            all,
            ["mode: old", "rules[1].match.prefix: use match.path.prefix"]
        );
        assert!(!warnings.is_empty());
        assert!(Warnings::default().is_empty());
    }

    #[test]
    fn nests_fields() {
        let err = ConfigError::new("path", "bad").at("match").at("rules[2]");
        assert_eq!(err.to_string(), "rules[2].match.path: bad");
        assert_eq!(
            ConfigError::new("[0]", "bad").at("rules").field(),
            "rules[0]"
        );
        // The whole of `rules[2]` is at fault; an empty parent changes nothing.
        let err = ConfigError::new("", "bad").at("rules[2]");
        assert_eq!((err.field(), err.reason()), ("rules[2]", "bad"));
        assert_eq!(ConfigError::new("path", "bad").at("").field(), "path");
        assert_eq!(ConfigError::new("", "bad").to_string(), "bad");
        assert_eq!(
            format!("{:?}", ConfigError::new("path", "bad")),
            r#"ConfigError { field: "path", reason: "bad" }"#
        );
        let (field, reason) = ConfigError::new("a", "b").at("x").into_parts();
        assert_eq!((field.as_str(), reason.as_str()), ("x.a", "b"));
    }
}
