//! The configuration decoder behind [`parse_json`](crate::parse_json): a strict JSON parser
//! into a small tree ([`parse`]), and [`FromJson`], derived from the config types' own
//! `#[serde]` attributes by `#[derive(FromJson)]` (crate `wasmgate-glue-derive`).
//!
//! Why not serde: a derived `Deserialize` is generic over the deserializer and its
//! visitors; compiled for `serde_json` wrapped in `serde_path_to_error`, that machinery,
//! repeated for every field of every config type, was a third of each module (issue 14).
//! `FromJson` code finds which entry of an object is which field with one function of this
//! module ([`fields`]), decodes each field with plain functions of this module, and keeps
//! track of where it is, so an error names its field:
//! `rules[0].request[1].valeu: unknown field `valeu`, expected `name` or `value``.
//! The types keep `Deserialize` for serde users (the CLI) and `JsonSchema`: one set of
//! types, and tests check that both decoders agree.
//!
//! Messages are serde's: `missing field `x``, `unknown variant `week`, expected one of …`,
//! `invalid type: string "a", expected u32`. Paths are `serde_path_to_error`'s, except that
//! an unknown field of an internally tagged enum's variant is named after its key too. An
//! object with several faults is refused for an unknown field first, then for its fields in
//! the order the type declares them (serde: the first fault in document order).

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};

use crate::plugin::ConfigError;

/// How deep arrays and objects may nest, as in serde_json.
const MAX_DEPTH: usize = 128;

/// A parsed JSON value. Objects keep their keys in document order; a repeated key is refused
/// while parsing.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// A non-negative integer that fits `u64`.
    Unsigned(u64),
    /// A negative integer that fits `i64`.
    Signed(i64),
    /// Any other number, as written: parsed only when a float is asked for, and named in
    /// errors as written (formatting floats would cost the module ~11 KiB).
    Float(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Parse a whole document: one value, surrounded by whitespace only. A syntax error or a
/// repeated key names the object or array it is in.
pub fn parse(bytes: &[u8]) -> Result<Json, ConfigError> {
    let mut parser = Parser {
        bytes,
        at: 0,
        path: Vec::new(),
    };
    parser.whitespace();
    let value = parser.value()?;
    parser.whitespace();
    if parser.at < bytes.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

/// Where the parser is, for error messages: keys and indexes from the root.
enum Step {
    Key(String),
    Index(usize),
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
    path: Vec<Step>,
}

impl Parser<'_> {
    fn error(&self, reason: &str) -> ConfigError {
        let mut field = String::new();
        for step in &self.path {
            match step {
                Step::Index(index) => {
                    field.push('[');
                    field.push_str(&index.to_string());
                    field.push(']');
                }
                Step::Key(key) => {
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(key);
                }
            }
        }
        ConfigError::new(field, reason)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &[u8], value: Json) -> Result<Json, ConfigError> {
        match self.bytes.get(self.at..self.at + word.len()) {
            Some(found) if found == word => {
                self.at += word.len();
                Ok(value)
            }
            _ if self.at + word.len() > self.bytes.len()
                && word.starts_with(&self.bytes[self.at..]) =>
            {
                Err(self.error("EOF while parsing a value"))
            }
            _ => Err(self.error("expected value")),
        }
    }

    fn value(&mut self) -> Result<Json, ConfigError> {
        match self.peek() {
            None => Err(self.error("EOF while parsing a value")),
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => self.nested(Self::array),
            Some(b'{') => self.nested(Self::object),
            Some(_) => Err(self.error("expected value")),
        }
    }

    fn nested(
        &mut self,
        inner: fn(&mut Self) -> Result<Json, ConfigError>,
    ) -> Result<Json, ConfigError> {
        if self.path.len() >= MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        self.at += 1;
        inner(self)
    }

    fn array(&mut self) -> Result<Json, ConfigError> {
        let mut items = Vec::new();
        self.whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.path.push(Step::Index(items.len()));
            self.whitespace();
            let item = self.value()?;
            self.path.pop();
            items.push(item);
            self.whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                None => return Err(self.error("EOF while parsing a list")),
                Some(_) => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self) -> Result<Json, ConfigError> {
        let mut entries: Vec<(String, Json)> = Vec::new();
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Json::Object(entries));
        }
        loop {
            self.whitespace();
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("key must be a string")),
            }
            let key = self.string()?;
            // Derived structs refuse a repeated field, but maps and internally tagged types
            // keep the last value: a second `"rules": []` would silently drop every rule.
            // Objects in a configuration are small; a linear scan is enough.
            if entries.iter().any(|(seen, _)| *seen == key) {
                return Err(self.error(&format!("duplicate key {key:?}")));
            }
            self.whitespace();
            match self.peek() {
                Some(b':') => self.at += 1,
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("expected `:`")),
            }
            self.whitespace();
            self.path.push(Step::Key(key));
            let value = self.value()?;
            let Some(Step::Key(key)) = self.path.pop() else {
                return Err(self.error("internal error: parser path"));
            };
            entries.push((key, value));
            self.whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Json::Object(entries));
                }
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    /// A string, the opening quote next.
    fn string(&mut self) -> Result<String, ConfigError> {
        self.at += 1;
        // Most strings have no escape: one scan, one check, one copy (tokens are parsed on
        // the request path).
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        if let Some(len) = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        {
            if rest[len] == b'"' {
                let text = std::str::from_utf8(&rest[..len])
                    .map_err(|_| self.error("invalid unicode code point"))?;
                self.at += len + 1;
                return Ok(text.to_owned());
            }
        }
        let mut out = Vec::new();
        loop {
            let start = self.at;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            out.extend_from_slice(&self.bytes[start..self.at]);
            match self.peek() {
                None => return Err(self.error("EOF while parsing a string")),
                Some(b'"') => {
                    self.at += 1;
                    return String::from_utf8(out)
                        .map_err(|_| self.error("invalid unicode code point"));
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err(self
                        .error("control character (\\u0000-\\u001F) found while parsing a string"))
                }
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), ConfigError> {
        let Some(b) = self.peek() else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.at += 1;
        let simple = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let c = self.unicode_escape()?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                return Ok(());
            }
            _ => return Err(self.error("invalid escape")),
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, ConfigError> {
        let Some(digits) = self.bytes.get(self.at..self.at + 4) else {
            return Err(self.error("EOF while parsing a string"));
        };
        let mut value = 0;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("invalid escape")),
            };
            value = value * 16 + u32::from(v);
        }
        self.at += 4;
        Ok(value)
    }

    /// After `\u`: one code point, a surrogate pair taking two escapes.
    fn unicode_escape(&mut self) -> Result<char, ConfigError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone leading surrogate in hex escape")),
            other => other,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid unicode code point"))
    }

    /// A number as RFC 8259 writes it: integers that fit `u64`/`i64` stay integers.
    fn number(&mut self) -> Result<Json, ConfigError> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.at += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            None => return Err(self.error("EOF while parsing a value")),
            Some(_) => return Err(self.error("invalid number")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.at += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        // ASCII digits and signs only, so this is valid UTF-8.
        let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or_default();
        if integer {
            if let Ok(n) = text.parse::<u64>() {
                return Ok(Json::Unsigned(n));
            }
            // `-0` is a float in serde_json too.
            if let Ok(n @ ..=-1) = text.parse::<i64>() {
                return Ok(Json::Signed(n));
            }
        }
        Ok(Json::Float(text.to_owned()))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }
}

/// Where a value is in the document: `rules[0].request[1]`.
#[derive(Clone, Copy)]
pub enum At<'a> {
    Root,
    Index(&'a At<'a>, usize),
    /// A key of an object, or the variant of an externally tagged enum.
    Key(&'a At<'a>, &'a str),
}

impl<'a> At<'a> {
    /// The value of `key` in the object here.
    pub fn key(&'a self, key: &'a str) -> At<'a> {
        At::Key(self, key)
    }

    /// The element `index` of the array here.
    pub fn index(&'a self, index: usize) -> At<'a> {
        At::Index(self, index)
    }

    fn render(&self) -> String {
        let mut steps = Vec::new();
        let mut at = self;
        loop {
            match at {
                At::Root => break,
                At::Index(parent, index) => {
                    steps.push(Err(*index));
                    at = parent;
                }
                At::Key(parent, key) => {
                    steps.push(Ok(*key));
                    at = parent;
                }
            }
        }
        let mut out = String::new();
        for step in steps.into_iter().rev() {
            match step {
                Ok(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
                Err(index) => {
                    let _ = write!(out, "[{index}]");
                }
            }
        }
        out
    }
}

/// A value that does not decode: where, and why.
///
/// One pointer (a [`ConfigError`]): every decoded field passes its `Result` up through `?`,
/// and a one-pointer error keeps each of those moves small (issue 14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(ConfigError);

impl Error {
    /// `reason` at `at`.
    pub fn new(at: &At<'_>, reason: impl Into<String>) -> Self {
        Self::at(at, reason.into())
    }

    // Out of line: `new` is generic over the reason.
    #[inline(never)]
    fn at(at: &At<'_>, reason: String) -> Self {
        Error(ConfigError::new(at.render(), reason))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Error> for ConfigError {
    fn from(err: Error) -> Self {
        err.0
    }
}

/// A type decoded from a configuration; derive it with `#[derive(FromJson)]`.
pub trait FromJson: Sized {
    /// Decode `json`, which sits at `at`.
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error>;

    /// The value of a missing field without a `default`: an error, as in serde, but `None`
    /// for an `Option`.
    fn missing(field: &str, at: &At<'_>) -> Result<Self, Error> {
        Err(Error::new(at, format!("missing field `{field}`")))
    }
}

/// Decode a whole document.
pub fn decode<T: FromJson>(json: &Json) -> Result<T, ConfigError> {
    T::from_json(json, &At::Root).map_err(ConfigError::from)
}

/// What a value is, in serde's words (`string "a"`, `integer `5``, `map`).
fn unexpected(json: &Json) -> String {
    match json {
        Json::Null => "null".to_owned(),
        Json::Bool(b) => format!("boolean `{b}`"),
        Json::Unsigned(n) => format!("integer `{n}`"),
        Json::Signed(n) => format!("integer `{n}`"),
        Json::Float(text) => format!("floating point `{text}`"),
        Json::String(s) => format!("string {s:?}"),
        Json::Array(_) => "sequence".to_owned(),
        Json::Object(_) => "map".to_owned(),
    }
}

/// `invalid type: <what json is>, expected <expected>`.
pub fn invalid_type(json: &Json, expected: &str, at: &At<'_>) -> Error {
    Error::new(
        at,
        format!("invalid type: {}, expected {expected}", unexpected(json)),
    )
}

/// serde's list of what was expected: `` `a` ``, `` `a` or `b` ``, `` one of `a`, `b`, `c` ``.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => {
            let mut out = "one of ".to_owned();
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "`{name}`");
            }
            out
        }
    }
}

/// `unknown field `x`, expected …`, at the field's own key.
pub fn unknown_field(field: &str, fields: &[&str], at: &At<'_>) -> Error {
    let reason = if fields.is_empty() {
        format!("unknown field `{field}`, there are no fields")
    } else {
        format!("unknown field `{field}`, expected {}", one_of(fields))
    };
    Error::new(at, reason)
}

/// `unknown variant `x`, expected …`.
pub fn unknown_variant(variant: &str, variants: &[&str], at: &At<'_>) -> Error {
    Error::new(
        at,
        format!("unknown variant `{variant}`, expected {}", one_of(variants)),
    )
}

/// The entries of an object, or an invalid type error naming `expected` (`struct Rule`).
pub fn object<'j>(
    json: &'j Json,
    expected: &str,
    at: &At<'_>,
) -> Result<&'j [(String, Json)], Error> {
    match json {
        Json::Object(entries) => Ok(entries),
        other => Err(invalid_type(other, expected, at)),
    }
}

/// Which of `entries` is which of the fields `names`: `found[i]` is the value of `names[i]`.
/// A key that names no field is refused when `deny` (`deny_unknown_fields`), unless it is
/// `skip` (an internally tagged enum's tag), and ignored otherwise.
pub fn fields<'j>(
    entries: &'j [(String, Json)],
    names: &[&str],
    deny: bool,
    skip: Option<&str>,
    at: &At<'_>,
    found: &mut [Option<&'j Json>],
) -> Result<(), Error> {
    for (key, value) in entries {
        match names.iter().position(|name| name == key) {
            Some(i) => {
                if let Some(slot) = found.get_mut(i) {
                    *slot = Some(value);
                }
            }
            None if deny && skip != Some(key.as_str()) => {
                return Err(unknown_field(key, names, &at.key(key)));
            }
            None => {}
        }
    }
    Ok(())
}

/// An externally tagged enum: a variant name alone (`"second"`), or an object of one entry
/// (`{"prefix": "/a"}`) whose value is the variant's content.
pub fn variant<'j>(
    json: &'j Json,
    expected: &str,
    at: &At<'_>,
) -> Result<(&'j str, Option<&'j Json>), Error> {
    match json {
        Json::String(name) => Ok((name, None)),
        Json::Object(entries) => match entries.as_slice() {
            [(name, content)] => Ok((name, Some(content))),
            _ => Err(Error::new(
                at,
                "invalid value: map, expected map with a single key",
            )),
        },
        other => Err(invalid_type(other, expected, at)),
    }
}

/// An externally tagged enum whose variants are all units: the index in `variants` of the
/// one `json` names (`"second"`, or `{"second": null}`).
pub fn unit_enum(
    json: &Json,
    expected: &str,
    variants: &[&str],
    at: &At<'_>,
) -> Result<usize, Error> {
    let (name, content) = variant(json, expected, at)?;
    let Some(index) = variants.iter().position(|v| *v == name) else {
        return Err(unknown_variant(name, variants, at));
    };
    unit_variant(content, &at.key(name))?;
    Ok(index)
}

/// A unit variant's content: none, or `null`.
pub fn unit_variant(content: Option<&Json>, at: &At<'_>) -> Result<(), Error> {
    match content {
        None | Some(Json::Null) => Ok(()),
        Some(other) => Err(invalid_type(other, "unit", at)),
    }
}

/// A one-field variant's content, which must be there.
pub fn newtype_variant<'j>(content: Option<&'j Json>, at: &At<'_>) -> Result<&'j Json, Error> {
    content.ok_or_else(|| Error::new(at, "invalid type: unit variant, expected newtype variant"))
}

/// An internally tagged enum's tag: the string value of `tag` in `entries`.
pub fn tag<'j>(entries: &'j [(String, Json)], tag: &str, at: &At<'_>) -> Result<&'j str, Error> {
    match entries.iter().find(|(key, _)| key == tag) {
        Some((_, Json::String(name))) => Ok(name),
        Some((key, other)) => Err(invalid_type(other, "variant identifier", &at.key(key))),
        None => Err(Error::new(at, format!("missing field `{tag}`"))),
    }
}

impl FromJson for String {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        match json {
            Json::String(s) => Ok(s.clone()),
            other => Err(invalid_type(other, "a string", at)),
        }
    }
}

impl FromJson for bool {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        match json {
            Json::Bool(b) => Ok(*b),
            other => Err(invalid_type(other, "a boolean", at)),
        }
    }
}

/// An integer of type `name` within `T`'s range.
fn integer<T: TryFrom<u64> + TryFrom<i64>>(
    json: &Json,
    name: &str,
    at: &At<'_>,
) -> Result<T, Error> {
    let fits = match json {
        Json::Unsigned(n) => T::try_from(*n).ok(),
        Json::Signed(n) => T::try_from(*n).ok(),
        other => return Err(invalid_type(other, name, at)),
    };
    fits.ok_or_else(|| {
        Error::new(
            at,
            format!("invalid value: {}, expected {name}", unexpected(json)),
        )
    })
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl FromJson for $t {
            fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
                integer(json, stringify!($t), at)
            }
        }
    )*};
}

integers!(u8, u16, u32, u64, usize, i8, i16, i32, i64);

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        match json {
            Json::Null => Ok(None),
            other => T::from_json(other, at).map(Some),
        }
    }

    fn missing(_field: &str, _at: &At<'_>) -> Result<Self, Error> {
        Ok(None)
    }
}

impl<T: FromJson> FromJson for Box<T> {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        T::from_json(json, at).map(Box::new)
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        match json {
            // A loop, not `collect` into a `Result`: its adapters cost more than the loop,
            // once per element type.
            Json::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(T::from_json(item, &at.index(i))?);
                }
                Ok(out)
            }
            other => Err(invalid_type(other, "a sequence", at)),
        }
    }
}

impl<T: FromJson> FromJson for BTreeMap<String, T> {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        let mut out = BTreeMap::new();
        for (key, value) in object(json, "a map", at)? {
            out.insert(key.clone(), T::from_json(value, &at.key(key))?);
        }
        Ok(out)
    }
}

impl<T: FromJson, S: std::hash::BuildHasher + Default> FromJson for HashMap<String, T, S> {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        let entries = object(json, "a map", at)?;
        let mut out = HashMap::with_capacity_and_hasher(entries.len(), S::default());
        for (key, value) in entries {
            out.insert(key.clone(), T::from_json(value, &at.key(key))?);
        }
        Ok(out)
    }
}

/// Any JSON, as serde_json's tree (for fields a plugin reads itself).
impl FromJson for serde_json::Value {
    fn from_json(json: &Json, at: &At<'_>) -> Result<Self, Error> {
        use serde_json::Value;
        Ok(match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Unsigned(n) => Value::from(*n),
            Json::Signed(n) => Value::from(*n),
            Json::Float(text) => match float_number(text) {
                Some(n) => Value::Number(n),
                None => return Err(Error::new(at, "number out of range")),
            },
            Json::String(s) => Value::String(s.clone()),
            Json::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Self::from_json(item, &at.index(i)))
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(key, value)| Ok((key.clone(), Self::from_json(value, &at.key(key))?)))
                    .collect::<Result<_, Error>>()?,
            ),
        })
    }
}

/// serde_json's number for a float as written; `None` when no finite `f64` holds it (as
/// serde_json refuses it).
pub fn float_number(text: &str) -> Option<serde_json::Number> {
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
}

/// `json` as serde_json's tree, moved rather than copied (no string is cloned, unlike
/// [`FromJson`] for `Value`, which decodes from a borrowed tree); `None` for a number
/// [`float_number`] refuses.
pub fn into_value(json: Json) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::Unsigned(n) => Value::from(n),
        Json::Signed(n) => Value::from(n),
        Json::Float(text) => Value::Number(float_number(&text)?),
        Json::String(s) => Value::String(s),
        Json::Array(items) => {
            Value::Array(items.into_iter().map(into_value).collect::<Option<_>>()?)
        }
        Json::Object(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(name, value)| Some((name, into_value(value)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
