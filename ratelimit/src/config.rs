//! The limits file: one domain, its descriptors and their limits, in YAML or JSON.
//!
//! The shape is envoyproxy/ratelimit's: descriptors match request descriptor entries by key
//! and, optionally, value; nested descriptors match the following entries; the descriptor the
//! last entry lands on holds the limit. A descriptor with a key and no value is the default for
//! that key, and each distinct value still gets its own counter.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::proto;

/// A limits file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// The domain Envoy's filter sends (`domain` in its config).
    pub domain: String,
    /// The top-level descriptors, matched against a request descriptor's first entry.
    #[serde(default)]
    pub descriptors: Vec<DescriptorConfig>,
}

/// One descriptor: matches an entry by key (and value when given).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorConfig {
    pub key: String,
    /// Without a value, the descriptor matches any value of `key` that no sibling names.
    #[serde(default)]
    pub value: Option<String>,
    /// The limit for requests whose descriptor ends here.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Count and report, but never refuse: the response stays OK.
    #[serde(default)]
    pub shadow_mode: bool,
    /// Descriptors matched against the next entry.
    #[serde(default)]
    pub descriptors: Vec<DescriptorConfig>,
}

/// A limit: `requests_per_unit` hits per `unit`, counted in fixed windows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub unit: Unit,
    /// 0 refuses every request.
    pub requests_per_unit: u32,
    /// Reported back in `current_limit.name`.
    #[serde(default)]
    pub name: Option<String>,
}

/// A window length. Windows start at multiples of the unit since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    /// The window length in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
        }
    }

    /// The unit of Envoy's override (`envoy.type.v3.RateLimitUnit`), if it is one we count in.
    pub fn from_proto(unit: i32) -> Option<Unit> {
        match proto::Unit::try_from(unit).ok()? {
            proto::Unit::Second => Some(Unit::Second),
            proto::Unit::Minute => Some(Unit::Minute),
            proto::Unit::Hour => Some(Unit::Hour),
            proto::Unit::Day => Some(Unit::Day),
            _ => None,
        }
    }

    /// The unit as the response reports it.
    pub fn to_proto(self) -> proto::Unit {
        match self {
            Unit::Second => proto::Unit::Second,
            Unit::Minute => proto::Unit::Minute,
            Unit::Hour => proto::Unit::Hour,
            Unit::Day => proto::Unit::Day,
        }
    }
}

/// A compiled limit, what a request descriptor resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub requests_per_unit: u32,
    pub unit: Unit,
    pub name: String,
    pub shadow_mode: bool,
}

/// A limits file that cannot be used: which file, which field, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when the error came from one.
    pub file: Option<String>,
    /// The field path, e.g. `descriptors[1].rate_limit.unit`; empty for the whole document.
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.display().to_string());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Default)]
struct Node {
    // Keyed by (key, Some(value)) for exact descriptors and (key, None) for a key's default.
    children: HashMap<(String, Option<String>), Node>,
    limit: Option<Limit>,
}

/// Every domain's compiled descriptors: what the service looks limits up in.
#[derive(Debug, Default)]
pub struct Limits {
    domains: HashMap<String, Node>,
}

impl Limits {
    /// Read and compile limits files, one domain each; a domain in two files is refused.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Limits, ConfigError> {
        let mut files = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new("", format!("cannot read: {e}")).in_file(path))?;
            let file = parse(&text).map_err(|e| e.in_file(path))?;
            files.push((path, file));
        }
        let mut limits = Limits::default();
        for (path, file) in files {
            limits.add(file).map_err(|e| e.in_file(path))?;
        }
        Ok(limits)
    }

    /// Compile parsed files (for tests and embedding).
    pub fn from_files(files: Vec<LimitsFile>) -> Result<Limits, ConfigError> {
        let mut limits = Limits::default();
        for file in files {
            limits.add(file)?;
        }
        Ok(limits)
    }

    fn add(&mut self, file: LimitsFile) -> Result<(), ConfigError> {
        if file.domain.is_empty() {
            return Err(ConfigError::new("domain", "must not be empty"));
        }
        if self.domains.contains_key(&file.domain) {
            return Err(ConfigError::new(
                "domain",
                format!(
                    "`{}` is already defined by another limits file",
                    file.domain
                ),
            ));
        }
        let root = compile(&file.descriptors, "descriptors")?;
        self.domains.insert(file.domain, root);
        Ok(())
    }

    /// The domains configured, sorted.
    pub fn domains(&self) -> Vec<&str> {
        let mut domains: Vec<&str> = self.domains.keys().map(String::as_str).collect();
        domains.sort_unstable();
        domains
    }

    /// The limit for one request descriptor: walk its entries down the tree, each by exact
    /// value first, then by the key's default; the node the last entry reaches holds it.
    pub fn find(&self, domain: &str, entries: &[proto::Entry]) -> Option<&Limit> {
        let mut node = self.domains.get(domain)?;
        if entries.is_empty() {
            return None;
        }
        for entry in entries {
            let exact = (entry.key.clone(), Some(entry.value.clone()));
            node = match node.children.get(&exact) {
                Some(child) => child,
                None => node.children.get(&(entry.key.clone(), None))?,
            };
        }
        node.limit.as_ref()
    }
}

/// Parse one limits file's YAML or JSON text; errors name the field.
pub fn parse(text: &str) -> Result<LimitsFile, ConfigError> {
    let value: serde_json::Value = serde_norway::from_str(text)
        .map_err(|e| ConfigError::new("", format!("not valid YAML or JSON: {e}")))?;
    serde_path_to_error::deserialize(value).map_err(|err| {
        let field = err.path().to_string();
        let field = if field == "." { String::new() } else { field };
        ConfigError::new(field, err.into_inner().to_string())
    })
}

fn compile(descriptors: &[DescriptorConfig], path: &str) -> Result<Node, ConfigError> {
    let mut node = Node::default();
    let mut seen: HashMap<(String, Option<String>), usize> = HashMap::new();
    for (i, descriptor) in descriptors.iter().enumerate() {
        let here = format!("{path}[{i}]");
        if descriptor.key.is_empty() {
            return Err(ConfigError::new(format!("{here}.key"), "must not be empty"));
        }
        if descriptor.value.as_deref() == Some("") {
            return Err(ConfigError::new(
                format!("{here}.value"),
                "must not be empty (leave it out to match any value)",
            ));
        }
        let id = (descriptor.key.clone(), descriptor.value.clone());
        if let Some(first) = seen.insert(id, i) {
            return Err(ConfigError::new(
                here,
                format!("same key and value as {path}[{first}]: only one of them could ever match"),
            ));
        }
        if descriptor.rate_limit.is_none() && descriptor.descriptors.is_empty() {
            return Err(ConfigError::new(
                here,
                "has neither `rate_limit` nor `descriptors`: it would match and limit nothing",
            ));
        }
        let mut child = compile(&descriptor.descriptors, &format!("{here}.descriptors"))?;
        child.limit = descriptor.rate_limit.as_ref().map(|limit| Limit {
            requests_per_unit: limit.requests_per_unit,
            unit: limit.unit,
            name: limit.name.clone().unwrap_or_default(),
            shadow_mode: descriptor.shadow_mode,
        });
        node.children
            .insert((descriptor.key.clone(), descriptor.value.clone()), child);
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &str)]) -> Vec<proto::Entry> {
        pairs
            .iter()
            .map(|(key, value)| proto::Entry {
                key: (*key).into(),
                value: (*value).into(),
            })
            .collect()
    }

    fn limits(yaml: &str) -> Limits {
        Limits::from_files(vec![parse(yaml).expect("parses")]).expect("compiles")
    }

    const NESTED: &str = r#"
domain: api
descriptors:
  - key: generic_key
    value: everything
    rate_limit: { unit: minute, requests_per_unit: 3 }
  - key: remote_address
    rate_limit: { unit: second, requests_per_unit: 10, name: per-ip }
  - key: user
    descriptors:
      - key: path
        value: /login
        shadow_mode: true
        rate_limit: { unit: hour, requests_per_unit: 5 }
      - key: path
        rate_limit: { unit: day, requests_per_unit: 1000 }
"#;

    #[test]
    fn exact_value_then_key_default_then_nested() {
        let limits = limits(NESTED);
        let everything = limits.find("api", &entries(&[("generic_key", "everything")]));
        assert_eq!(everything.map(|l| l.requests_per_unit), Some(3));
        assert_eq!(
            limits.find("api", &entries(&[("generic_key", "other")])),
            None
        );
        let ip = limits.find("api", &entries(&[("remote_address", "10.0.0.1")]));
        assert_eq!(ip.map(|l| l.name.as_str()), Some("per-ip"));
        let login = limits.find("api", &entries(&[("user", "a"), ("path", "/login")]));
        assert_eq!(
            login.map(|l| (l.unit, l.shadow_mode)),
            Some((Unit::Hour, true))
        );
        let other = limits.find("api", &entries(&[("user", "a"), ("path", "/x")]));
        assert_eq!(other.map(|l| l.requests_per_unit), Some(1000));
        // `user` alone has no limit of its own, and more entries than the tree is deep match nothing.
        assert_eq!(limits.find("api", &entries(&[("user", "a")])), None);
        assert_eq!(
            limits.find("api", &entries(&[("remote_address", "x"), ("path", "/")])),
            None
        );
        assert_eq!(
            limits.find("other", &entries(&[("remote_address", "x")])),
            None
        );
        assert_eq!(limits.find("api", &[]), None);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "domain: api\ndescriptors:\n  - key: a\n    rate_limit: {unit: minute, requests_per_unit: 1}\n  - key: b\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
                "descriptors[1].rate_limit.unit: unknown variant `fortnight`, expected one of `second`, `minute`, `hour`, `day`",
            ),
            (
                "domain: api\ndescriptors:\n  - key: a\n    rate_limt: {unit: minute, requests_per_unit: 1}\n",
                "descriptors[0].rate_limt: unknown field `rate_limt`, expected one of `key`, `value`",
            ),
            (
                "domain: api\ndescriptors:\n  - key: a\n    rate_limit: {unit: minute, requests_per_unit: -1}\n",
                "descriptors[0].rate_limit.requests_per_unit: invalid value: integer `-1`",
            ),
            ("descriptors: []\n", "missing field `domain`"),
            ("domain: ''\n", "domain: must not be empty"),
            (
                "domain: api\ndescriptors:\n  - key: a\n    descriptors:\n      - key: ''\n        rate_limit: {unit: minute, requests_per_unit: 1}\n",
                "descriptors[0].descriptors[0].key: must not be empty",
            ),
            (
                "domain: api\ndescriptors:\n  - {key: a, value: x, rate_limit: {unit: minute, requests_per_unit: 1}}\n  - {key: a, value: x, rate_limit: {unit: hour, requests_per_unit: 1}}\n",
                "descriptors[1]: same key and value as descriptors[0]",
            ),
            (
                "domain: api\ndescriptors:\n  - {key: a}\n",
                "descriptors[0]: has neither `rate_limit` nor `descriptors`",
            ),
            ("domain: [", "not valid YAML or JSON"),
        ];
        for (yaml, expected) in cases {
            let err = parse(yaml)
                .and_then(|file| Limits::from_files(vec![file]))
                .expect_err(yaml);
            assert!(
                err.to_string().starts_with(expected),
                "{yaml}\n got: {err}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn a_domain_in_two_files_is_refused() {
        let a = parse("domain: api\n").expect("parses");
        let err = Limits::from_files(vec![a.clone(), a]).expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "domain: `api` is already defined by another limits file"
        );
    }

    #[test]
    fn the_shipped_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/limits.yaml");
        let limits = Limits::load(&[path]).expect("example loads");
        assert!(!limits.domains().is_empty());
    }

    #[test]
    fn json_loads_like_yaml() {
        let json = r#"{"domain":"api","descriptors":[{"key":"a","rate_limit":{"unit":"second","requests_per_unit":2}}]}"#;
        let limits = limits(json);
        assert!(limits.find("api", &entries(&[("a", "1")])).is_some());
    }
}
