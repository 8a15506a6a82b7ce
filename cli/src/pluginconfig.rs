//! A plugin named on the command line (`NAME[@VERSION][=CONFIG]`) with its configuration
//! loaded from YAML or JSON and validated by the plugin's own code before anything is written.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{read, Error, Result};
use crate::plugins::{self, PluginInfo};
use crate::render::Warning;

/// One plugin of a chain, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginArg {
    pub name: String,
    /// A registry version; the latest when absent.
    pub version: Option<String>,
    /// The pluginConfig file; an empty configuration when absent.
    pub config: Option<PathBuf>,
}

impl std::str::FromStr for PluginArg {
    type Err = String;

    /// `jwt-auth`, `jwt-auth@0.1.0`, `jwt-auth=jwt.yaml`, `jwt-auth@0.1.0=jwt.yaml`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (spec, config) = match text.split_once('=') {
            Some((spec, file)) if !file.is_empty() => (spec, Some(PathBuf::from(file))),
            Some(_) => return Err(format!("{text:?}: the config file after '=' is empty")),
            None => (text, None),
        };
        let (name, version) = match spec.split_once('@') {
            Some((name, version)) if !version.is_empty() => (name, Some(version.to_owned())),
            Some(_) => return Err(format!("{text:?}: the version after '@' is empty")),
            None => (spec, None),
        };
        if name.is_empty() {
            return Err(format!("{text:?}: expected NAME[@VERSION][=CONFIG]"));
        }
        Ok(PluginArg {
            name: name.to_owned(),
            version,
            config,
        })
    }
}

/// A known plugin with a configuration its own code accepts.
#[derive(Debug, Clone)]
pub struct Configured {
    pub plugin: &'static PluginInfo,
    pub version: Option<String>,
    /// The configuration as a JSON object.
    pub config: Value,
    /// What the plugin accepts in it but warns about (old spellings), each naming where the
    /// configuration came from and the field.
    pub warnings: Vec<Warning>,
}

impl Configured {
    /// The configuration as compact JSON, as the Envoy filter receives it.
    pub fn config_json(&self) -> String {
        self.config.to_string()
    }
}

/// Resolve the plugin and load and validate its configuration.
pub fn configure(arg: &PluginArg) -> Result<Configured> {
    let plugin = plugins::find(&arg.name)?;
    let config = match &arg.config {
        Some(path) => load(path)?,
        None => Value::Object(serde_json::Map::new()),
    };
    let origin = arg.config.as_ref().map_or_else(
        || "the empty configuration".to_owned(),
        |p| p.display().to_string(),
    );
    let warnings = check(plugin, &config, &origin).map_err(|e| e.context(&origin))?;
    Ok(Configured {
        plugin,
        version: arg.version.clone(),
        config,
        warnings,
    })
}

/// Validate `config` (read from `origin`) with the plugin's own `configure`; the warnings
/// it would log in Envoy name the plugin, `origin` and the field.
pub fn check(plugin: &PluginInfo, config: &Value, origin: &str) -> Result<Vec<Warning>> {
    if !config.is_object() {
        return Err(Error::failed(format!(
            "invalid pluginConfig for {}: the configuration must be an object",
            plugin.name
        )));
    }
    let warnings = plugin
        .validate(config.to_string().as_bytes())
        .map_err(|e| Error::failed(format!("invalid pluginConfig for {}: {e}", plugin.name)))?;
    Ok(warnings
        .iter()
        .map(|warning| Warning {
            plugin: plugin.name.to_owned(),
            message: format!("{origin}: {warning}"),
        })
        .collect())
}

/// Read a YAML or JSON document (JSON is YAML) into a JSON value; an empty file is `{}`.
pub fn load(path: &Path) -> Result<Value> {
    let bytes = read(path)?;
    let value = parse(&bytes).map_err(|e| e.context(&path.display().to_string()))?;
    // An empty file is more likely a mistake (the wrong file, a failed write) than a wish
    // for an empty configuration, which `{}` says.
    let empty = bytes.iter().all(u8::is_ascii_whitespace) || value.is_null();
    if empty {
        return Err(Error::failed(format!(
            "{}: the file is empty (no YAML or JSON document); write {{}} for an empty configuration",
            path.display()
        )));
    }
    Ok(value)
}

/// Parse YAML or JSON text into a JSON value; an empty document is `{}`. An object that
/// repeats a key is refused, naming where: the parser would keep the last value silently,
/// and a second `rules: []` would drop every rule.
pub fn parse(bytes: &[u8]) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    // The same check the plugins run on their JSON, here on the YAML before it is merged.
    wasmgate_glue::check_duplicate_keys_with(serde_norway::Deserializer::from_slice(bytes))
        .map_err(|e| Error::failed(format!("invalid YAML or JSON: {e}")))?;
    serde_norway::from_slice::<Value>(bytes)
        .map_err(|e| Error::failed(format!("not valid YAML or JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_args_parse() {
        let arg: PluginArg = "jwt-auth@0.1.0=conf/jwt.yaml".parse().unwrap();
        assert_eq!(arg.name, "jwt-auth");
        assert_eq!(arg.version.as_deref(), Some("0.1.0"));
        assert_eq!(arg.config, Some(PathBuf::from("conf/jwt.yaml")));
        let bare: PluginArg = "rate-limit".parse().unwrap();
        assert_eq!((bare.version, bare.config), (None, None));
        assert!("jwt-auth@=x".parse::<PluginArg>().is_err());
        assert!("=x".parse::<PluginArg>().is_err());
    }

    #[test]
    fn yaml_and_json_load_alike() {
        let yaml = parse(b"rules:\n- request:\n  - {op: set, name: x-a, value: '1'}\n").unwrap();
        let json =
            parse(br#"{"rules":[{"request":[{"op":"set","name":"x-a","value":"1"}]}]}"#).unwrap();
        assert_eq!(yaml, json);
        assert_eq!(parse(b"  \n").unwrap(), serde_json::json!({}));
    }

    #[test]
    fn duplicate_keys_are_refused_in_yaml_and_json() {
        let yaml = parse(
            b"rules:\n- request:\n  - {op: set, name: x-a, value: '1', name: x-b}\nrules: []\n",
        );
        assert_eq!(
            yaml.unwrap_err().to_string(),
            r#"invalid YAML or JSON: rules[0].request[0]: duplicate key "name""#
        );
        let json = parse(br#"{"rules":[{"request":[]}],"rules":[]}"#);
        assert_eq!(
            json.unwrap_err().to_string(),
            r#"invalid YAML or JSON: duplicate key "rules""#
        );
        assert!(parse(b"a: {k: 1}\nb: {k: 1}\n").is_ok());
    }

    #[test]
    fn bad_config_names_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hr.yaml");
        std::fs::write(
            &path,
            "rules:\n- request:\n  - {op: set, name: x-a, valeu: '1'}\n",
        )
        .unwrap();
        let err = configure(&PluginArg {
            name: "header-rewrite".into(),
            version: None,
            config: Some(path.clone()),
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        assert!(
            text.contains("invalid pluginConfig for header-rewrite: rules[0].request[0]"),
            "{text}"
        );
        assert!(text.contains("valeu"), "{text}");
    }
}
