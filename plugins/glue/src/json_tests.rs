//! `FromJson` against serde (serde_json + serde_path_to_error, the decoder it replaces): on
//! documents derived from valid ones by swapping every value for every kind of JSON value,
//! adding and dropping keys, both accept the same documents into the same values, and refuse
//! the others with the same message at the same field. Documented differences are checked
//! as such.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::*;
use crate::FromJson;

fn default_limit() -> u32 {
    7
}

#[derive(Debug, PartialEq, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    providers: BTreeMap<String, Provider>,
    name: Option<String>,
}

// `inline_never` changes only where the decoder's code goes: this type is decoded, and its
// errors named, exactly as the others are (the comparison with serde below covers it).
#[derive(Debug, PartialEq, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
#[from_json(inline_never)]
struct Rule {
    #[serde(default, rename = "match")]
    when: Option<Match>,
    #[serde(default = "default_limit")]
    limit: u32,
    #[serde(default)]
    ops: Vec<Op>,
    #[serde(default)]
    key: Vec<KeyPart>,
    status: u16,
    #[serde(default)]
    shadow: bool,
}

#[derive(Debug, PartialEq, Deserialize, FromJson)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Match {
    Exact(String),
    Prefix(String),
}

#[derive(Debug, Default, PartialEq, Deserialize, FromJson)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Local,
    GlobalOnly,
}

#[derive(Debug, PartialEq, Deserialize, FromJson)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum KeyPart {
    ClientIp,
    Header(String),
    Any(Vec<KeyPart>),
}

#[derive(Debug, PartialEq, Deserialize, FromJson)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Op {
    Set {
        name: String,
        value: String,
    },
    Remove {
        #[serde(default)]
        prefix: Option<String>,
    },
}

/// Ignores unknown fields, keeps any JSON.
#[derive(Debug, PartialEq, Deserialize, FromJson)]
struct Provider {
    issuer: String,
    #[serde(default)]
    extra: Option<Value>,
    #[serde(default)]
    skew: i64,
}

fn valid() -> Value {
    json!({
        "name": "demo",
        "mode": "global_only",
        "rules": [
            {
                "match": {"prefix": "/api"},
                "limit": 3,
                "status": 429,
                "shadow": true,
                "ops": [{"op": "set", "name": "x", "value": "1"}, {"op": "remove"}],
                "key": ["client_ip", {"header": "x-user"}, {"any": [{"header": "a"}]}]
            },
            {"status": 200}
        ],
        "providers": {"a": {"issuer": "me", "extra": {"k": [1, -2, 2.5, null]}, "skew": -5}}
    })
}

fn by_serde(doc: &str) -> Result<Config, (String, String)> {
    let mut de = serde_json::Deserializer::from_str(doc);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let field = err.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let message = err.into_inner().to_string();
        let message = match message.rfind(" at line ") {
            Some(at) => message[..at].to_owned(),
            None => message,
        };
        (field, message)
    })
}

fn by_from_json(doc: &str) -> Result<Config, (String, String)> {
    crate::parse_json::<Config>(doc.as_bytes()).map_err(ConfigError::into_parts)
}

/// Every document one edit away from `doc`: each value replaced by each kind of value,
/// each object with one more key, each object without one of its keys.
fn neighbours(doc: &Value) -> Vec<Value> {
    let kinds = [
        json!(null),
        json!(true),
        json!(3),
        json!(-1),
        json!(70000),
        json!(1.5),
        json!("x"),
        json!("set"),
        json!("client_ip"),
        json!([]),
        json!({}),
        json!({"zz": 1}),
        json!({"header": 1}),
        json!({"op": "set"}),
        json!({"op": "nope"}),
        json!({"local": null}),
        json!({"global_only": 1}),
    ];
    let mut out = Vec::new();
    let mut paths = Vec::new();
    collect(doc, &mut Vec::new(), &mut paths);
    for path in paths {
        for kind in &kinds {
            let mut edited = doc.clone();
            *pointer(&mut edited, &path) = kind.clone();
            out.push(edited);
        }
        if let Value::Object(map) = pointer(&mut doc.clone(), &path).clone() {
            let mut added = doc.clone();
            if let Value::Object(m) = pointer(&mut added, &path) {
                m.insert("zz".into(), json!(1));
            }
            out.push(added);
            for key in map.keys() {
                let mut removed = doc.clone();
                if let Value::Object(m) = pointer(&mut removed, &path) {
                    m.remove(key);
                }
                out.push(removed);
            }
        }
    }
    out
}

fn collect(value: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(i.to_string());
                collect(item, at, out);
                at.pop();
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                at.push(key.clone());
                collect(item, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn pointer<'v>(value: &'v mut Value, path: &[String]) -> &'v mut Value {
    path.iter().fold(value, |v, step| match v {
        Value::Array(items) => &mut items[step.parse::<usize>().unwrap()],
        Value::Object(map) => map.get_mut(step).unwrap(),
        _ => unreachable!(),
    })
}

#[test]
fn agrees_with_serde_one_edit_away_from_a_valid_config() {
    let text = valid().to_string();
    assert_eq!(by_from_json(&text), by_serde(&text));
    assert!(by_from_json(&text).is_ok());
    let mut checked = 0;
    let mut differ = Vec::new();
    for doc in neighbours(&valid()) {
        let doc = doc.to_string();
        let (ours, theirs) = (by_from_json(&doc), by_serde(&doc));
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{doc}"),
            (Err((our_field, our_reason)), Err((field, reason))) => {
                if field.contains(".ops[") && our_field.starts_with(field.as_str()) {
                    // Inside an internally tagged enum serde buffers the object and loses
                    // the path; FromJson names the key. (serde also reads such an enum from
                    // an array, tag first; FromJson from objects only.)
                    if !our_reason.contains("sequence") {
                        assert_eq!(our_reason, reason, "{doc}");
                    }
                } else if reason == "expected value" && field == our_field {
                    // serde_json's enums say this of a value of the wrong kind (`null`, `{}`);
                    // FromJson says what it found.
                    assert!(our_reason.starts_with("invalid "), "{our_reason} / {doc}");
                } else if reason.starts_with("invalid length") {
                    // serde also takes a struct from an array of its fields in order;
                    // FromJson takes objects only.
                    assert_eq!(our_field, field, "{doc}");
                    assert!(our_reason.contains("sequence"), "{our_reason} / {doc}");
                } else if ours != theirs {
                    differ.push(format!("{doc}\n  FromJson {ours:?}\n  serde    {theirs:?}"));
                }
            }
            _ => differ.push(format!("{doc}\n  FromJson {ours:?}\n  serde    {theirs:?}")),
        }
        checked += 1;
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(checked > 500, "{checked}");
}

#[test]
fn refuses_what_json_refuses_naming_where() {
    let cases: [(&str, &str, &str); 10] = [
        ("", "", "EOF while parsing a value"),
        ("{} x", "", "trailing characters"),
        (r#"{"rules":[{"status":1},]}"#, "rules[1]", "expected value"),
        (
            r#"{"rules":[{"status":01}]}"#,
            "rules[0].status",
            "invalid number",
        ),
        (r#"{"name":"a\x"}"#, "name", "invalid escape"),
        (
            "{\"name\":\"a\u{1}\"}",
            "name",
            "control character (\\u0000-\\u001F) found while parsing a string",
        ),
        (
            r#"{"name":"\ud800"}"#,
            "name",
            "lone leading surrogate in hex escape",
        ),
        (
            r#"{"rules":[{"status":1,"status":2}]}"#,
            "rules[0]",
            r#"duplicate key "status""#,
        ),
        (r#"{"name":"a""#, "", "EOF while parsing an object"),
        (r#"{name:1}"#, "", "key must be a string"),
    ];
    for (doc, field, reason) in cases {
        let err = parse(doc.as_bytes()).unwrap_err();
        assert_eq!((err.field(), err.reason()), (field, reason), "{doc}");
    }
    assert!(parse(&[b'"', 0xff, b'"']).is_err());
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert_eq!(
        parse(deep.as_bytes()).unwrap_err().reason(),
        "recursion limit exceeded"
    );
}

#[test]
fn strings_and_numbers_read_as_serde_json_reads_them() {
    let doc = r#"["a\"\\\/\b\f\n\r\tb", "\u00e9\ud83d\ude00", 0, -0, 18446744073709551615, -9223372036854775808, 18446744073709551616, 1e3, -1.25E-2]"#;
    let ours = serde_json::Value::from_json(&parse(doc.as_bytes()).unwrap(), &At::Root).unwrap();
    let theirs: Value = serde_json::from_str(doc).unwrap();
    assert_eq!(ours, theirs);
    // Moved instead of decoded: the same tree, objects and arrays included.
    let doc = format!(r#"{{"a": {doc}, "b": {{"c": [null, true, {{}}]}}}}"#);
    let moved = into_value(parse(doc.as_bytes()).unwrap()).unwrap();
    assert_eq!(moved, serde_json::from_str::<Value>(&doc).unwrap());
    // A number no `f64` holds is refused both ways.
    assert_eq!(into_value(parse(b"[1e999]").unwrap()), None);
    assert!(Value::from_json(&parse(b"[1e999]").unwrap(), &At::Root).is_err());
}

#[test]
fn several_faults_refuse_an_unknown_field_first_then_in_declaration_order() {
    let unknown_last = r#"{"rules":[{"status":"x","zz":1}]}"#;
    assert_eq!(
        by_from_json(unknown_last).unwrap_err(),
        (
            "rules[0].zz".to_owned(),
            "unknown field `zz`, expected one of `match`, `limit`, `ops`, `key`, `status`, `shadow`"
                .to_owned()
        )
    );
    // `limit` is declared before `status`, though written after it.
    let two_bad = r#"{"rules":[{"status":"x","limit":-1}]}"#;
    assert_eq!(
        by_from_json(two_bad).unwrap_err(),
        (
            "rules[0].limit".to_owned(),
            "invalid value: integer `-1`, expected u32".to_owned()
        )
    );
}
