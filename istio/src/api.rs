//! Istio API types shared by WasmPlugin and TrafficExtension, with field names and enum
//! values exactly as `extensions.istio.io/v1alpha1` and `istio.type.v1beta1` define them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Kubernetes object metadata: the parts a rendered manifest sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Where in the filter chain a plugin goes (`WasmPlugin.phase`, `TrafficExtension.phase`).
/// Left out, Istio puts the plugin at the end of the chain, right before the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Before Istio's authentication filters.
    #[serde(rename = "AUTHN")]
    Authn,
    /// After authentication, before Istio's authorization filters.
    #[serde(rename = "AUTHZ")]
    Authz,
    /// After authorization, before Istio's stats filters.
    #[serde(rename = "STATS")]
    Stats,
}

/// When a module is pulled again (`imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    IfNotPresent,
    Always,
}

/// What happens on a fatal plugin error (`failStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailStrategy {
    /// Every later request fails with a 5xx.
    FailClose,
    /// Requests skip the plugin. Not for authentication or authorization plugins.
    FailOpen,
    /// A new plugin instance is created for the next request after a runtime error.
    FailReload,
}

/// Which traffic direction a selector matches (`istio.type.v1beta1.WorkloadMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkloadMode {
    Client,
    Server,
    ClientAndServer,
}

/// `selector`: the pods (by label) a plugin applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSelector {
    #[serde(rename = "matchLabels")]
    pub match_labels: BTreeMap<String, String>,
}

/// One of `targetRefs` (`istio.type.v1beta1.PolicyTargetReference`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub namespace: Option<String>,
}

impl FromStr for TargetRef {
    type Err = String;

    /// `Kind/name` or `group/Kind/name`, e.g. `Gateway/public` or
    /// `gateway.networking.k8s.io/Gateway/public`. Without a group, a kind Istio accepts in
    /// `targetRefs` gets its own group (`Gateway` → `gateway.networking.k8s.io`, `Service` →
    /// core `""`, `ServiceEntry` → `networking.istio.io`); any other kind is refused.
    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let (group, kind, name) = match parts.as_slice() {
            [kind, name] => {
                let group = crate::validate::target_group(kind).ok_or_else(|| {
                    format!(
                        "target {text:?}: kind {kind:?} is not one Istio accepts in targetRefs ({})",
                        crate::validate::TARGET_KINDS
                            .iter()
                            .map(|(_, kind)| *kind)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
                (group, *kind, *name)
            }
            [group, kind, name] => (*group, *kind, *name),
            _ => {
                return Err(format!(
                    "target {text:?}: expected Kind/name or group/Kind/name"
                ))
            }
        };
        if kind.is_empty() || name.is_empty() {
            return Err(format!("target {text:?}: kind and name must not be empty"));
        }
        Ok(TargetRef {
            group: group.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: None,
        })
    }
}

/// One of `match`: traffic a plugin applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficSelector {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mode: Option<WorkloadMode>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub ports: Vec<PortSelector>,
}

/// `istio.type.v1beta1.PortSelector`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSelector {
    pub number: u32,
}

/// `vmConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    pub env: Vec<EnvVar>,
}

/// One of `vmConfig.env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    #[serde(rename = "valueFrom", skip_serializing_if = "Option::is_none", default)]
    pub value_from: Option<EnvValueSource>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<String>,
}

impl FromStr for EnvVar {
    type Err = String;

    /// `NAME=value` for an inline value, or `NAME` to pass the proxy's own variable (HOST).
    fn from_str(text: &str) -> Result<Self, String> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (text, None),
        };
        let c_identifier = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !c_identifier {
            return Err(format!(
                "env {text:?}: the name must be a C identifier ([A-Za-z_][A-Za-z0-9_]*)"
            ));
        }
        Ok(EnvVar {
            name: name.to_owned(),
            value_from: value.is_none().then_some(EnvValueSource::Host),
            value,
        })
    }
}

/// `valueFrom`: an inline value or the proxy's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EnvValueSource {
    Inline,
    Host,
}

/// `type`: Wasmgate plugins are HTTP filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PluginType {
    Http,
}

macro_rules! from_str_by_serde {
    ($($ty:ty),*) => {$(
        impl FromStr for $ty {
            type Err = String;
            /// The value as Istio spells it, e.g. `AUTHN`, `IfNotPresent`, `FAIL_CLOSE`.
            fn from_str(text: &str) -> Result<Self, String> {
                serde_json::from_value(serde_json::Value::String(text.to_owned()))
                    .map_err(|e| format!("{text:?}: {e}"))
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(s)) => f.write_str(&s),
                    _ => Err(fmt::Error),
                }
            }
        }
    )*};
}

from_str_by_serde!(Phase, PullPolicy, FailStrategy, WorkloadMode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_are_spelled_as_istio_spells_them() {
        assert_eq!("AUTHZ".parse::<Phase>().unwrap(), Phase::Authz);
        assert_eq!(FailStrategy::FailOpen.to_string(), "FAIL_OPEN");
        assert_eq!(PullPolicy::IfNotPresent.to_string(), "IfNotPresent");
        assert_eq!(
            WorkloadMode::ClientAndServer.to_string(),
            "CLIENT_AND_SERVER"
        );
        let err = "authn".parse::<Phase>().unwrap_err();
        assert!(err.contains("unknown variant `authn`"), "{err}");
    }

    #[test]
    fn target_refs_and_env_parse() {
        let t: TargetRef = "gateway.networking.k8s.io/Gateway/public".parse().unwrap();
        assert_eq!(
            (t.group.as_str(), t.kind.as_str(), t.name.as_str()),
            ("gateway.networking.k8s.io", "Gateway", "public")
        );
        assert!("Gateway".parse::<TargetRef>().is_err());
        let defaulted: TargetRef = "Gateway/public".parse().unwrap();
        assert_eq!(defaulted.group, "gateway.networking.k8s.io");
        let class: TargetRef = "GatewayClass/istio".parse().unwrap();
        assert_eq!(class.group, "gateway.networking.k8s.io");
        let service: TargetRef = "Service/api".parse().unwrap();
        assert_eq!(service.group, "");
        let entry: TargetRef = "ServiceEntry/login".parse().unwrap();
        assert_eq!(entry.group, "networking.istio.io");
        let err = "Deployment/api".parse::<TargetRef>().unwrap_err();
        assert!(
            err.contains("Gateway, GatewayClass, Service, ServiceEntry"),
            "{err}"
        );
        let inline: EnvVar = "TRUST_DOMAIN=cluster.local".parse().unwrap();
        assert_eq!(inline.value.as_deref(), Some("cluster.local"));
        assert_eq!(inline.value_from, None);
        let host: EnvVar = "POD_NAME".parse().unwrap();
        assert_eq!(host.value_from, Some(EnvValueSource::Host));
        assert!("1X=2".parse::<EnvVar>().is_err());
    }
}
