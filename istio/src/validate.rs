//! What Kubernetes and Istio's admission refuse, checked before a manifest is written: object
//! names and namespaces, label keys and values, `targetRefs` kinds, `match` ports and
//! `vmConfig.env` sizes. Every error names the field.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{EnvVar, Metadata, TargetRef, TrafficSelector};
use crate::manifest::ManifestError;

/// The Istio API group of `ServiceEntry`.
pub const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";
/// The Gateway API group.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// The (group, kind) pairs Istio accepts in a WasmPlugin's or TrafficExtension's
/// `targetRefs`; the core group is `""`.
pub const TARGET_KINDS: [(&str, &str); 4] = [
    (GATEWAY_API_GROUP, "Gateway"),
    (GATEWAY_API_GROUP, "GatewayClass"),
    ("", "Service"),
    (ISTIO_NETWORKING_GROUP, "ServiceEntry"),
];

/// The group of a kind Istio accepts in `targetRefs`, or `None` for any other kind.
pub fn target_group(kind: &str) -> Option<&'static str> {
    TARGET_KINDS
        .iter()
        .find(|(_, k)| *k == kind)
        .map(|(group, _)| *group)
}

fn target_kinds() -> String {
    TARGET_KINDS
        .iter()
        .map(|(group, kind)| match *group {
            "" => format!("core/{kind}"),
            group => format!("{group}/{kind}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn fail<T>(message: String) -> Result<T, ManifestError> {
    Err(ManifestError(message))
}

/// A DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters): namespaces.
pub fn dns_label(field: &str, text: &str) -> Result<(), ManifestError> {
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if valid {
        Ok(())
    } else {
        fail(format!(
            "{field}: {text:?} is not a DNS-1123 label (1-63 of a-z, 0-9 and '-', starting and ending with a letter or digit)"
        ))
    }
}

/// A DNS-1123 subdomain (dot-separated DNS-1123 labels, at most 253 characters): object names.
pub fn dns_subdomain(field: &str, text: &str) -> Result<(), ManifestError> {
    let valid = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| dns_label(field, label).is_ok());
    if valid {
        Ok(())
    } else {
        fail(format!(
            "{field}: {text:?} is not a DNS-1123 subdomain (at most 253 of a-z, 0-9, '-' and '.', each part starting and ending with a letter or digit)"
        ))
    }
}

/// The name part of a label key, and a label value: at most 63 of `[A-Za-z0-9_.-]`, starting
/// and ending with a letter or digit.
fn label_name(text: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && edge(text.chars().next())
        && edge(text.chars().last())
}

/// A label key (`[prefix/]name`) and value as Kubernetes accepts them; Istio's selectors take
/// no wildcards.
pub fn label(field: &str, key: &str, value: &str) -> Result<(), ManifestError> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if key.contains('*') || value.contains('*') {
        return fail(format!(
            "{field}: {key}={value}: wildcards are not allowed in a label selector"
        ));
    }
    if let Some(prefix) = prefix {
        dns_subdomain(&format!("{field}: key {key:?} prefix"), prefix)?;
    }
    if !label_name(name) {
        return fail(format!(
            "{field}: key {key:?}: the name must be 1-63 of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    if !value.is_empty() && !label_name(value) {
        return fail(format!(
            "{field}: {key}={value:?}: a value must be empty or 1-63 of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Every label of a selector; `field` is the selector's path (`selector.matchLabels`).
pub fn labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), ManifestError> {
    labels
        .iter()
        .try_for_each(|(key, value)| label(field, key, value))
}

/// Labels from `KEY=VALUE` pairs in the order given: a key given twice is refused (a map
/// would keep the last one silently).
pub fn label_map(
    field: &str,
    pairs: &[(String, String)],
) -> Result<BTreeMap<String, String>, ManifestError> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        if let Some(first) = map.insert(key.clone(), value.clone()) {
            return fail(format!(
                "{field}: label {key} is given twice ({key}={first} and {key}={value})"
            ));
        }
    }
    Ok(map)
}

/// `metadata.name` and `metadata.namespace`.
pub fn metadata(metadata: &Metadata) -> Result<(), ManifestError> {
    dns_subdomain("metadata.name", &metadata.name)?;
    if let Some(namespace) = &metadata.namespace {
        dns_label("metadata.namespace", namespace)?;
    }
    Ok(())
}

/// `targetRefs`: kinds Istio accepts, with their group, names, and no cross-namespace
/// reference.
pub fn target_refs(refs: &[TargetRef], namespace: Option<&str>) -> Result<(), ManifestError> {
    for (i, target) in refs.iter().enumerate() {
        let field = format!("targetRefs[{i}]");
        let allowed = TARGET_KINDS
            .iter()
            .any(|(group, kind)| *group == target.group && *kind == target.kind);
        if !allowed {
            let group = match target.group.as_str() {
                "" => "core",
                group => group,
            };
            return fail(format!(
                "{field}: {group}/{}: Istio accepts only {}",
                target.kind,
                target_kinds()
            ));
        }
        dns_subdomain(&format!("{field}.name"), &target.name)?;
        if let Some(ns) = &target.namespace {
            if Some(ns.as_str()) != namespace {
                return fail(format!(
                    "{field}.namespace: {ns}: cross-namespace references are not supported; it must be the manifest's own namespace"
                ));
            }
        }
    }
    Ok(())
}

/// An EnvoyFilter's `targetRefs`: Istio attaches EnvoyFilters to a Gateway API `Gateway`
/// (same namespace) or `GatewayClass` only.
pub fn envoy_filter_target_refs(refs: &[TargetRef]) -> Result<(), ManifestError> {
    for (i, target) in refs.iter().enumerate() {
        let field = format!("targetRefs[{i}]");
        if target.group != GATEWAY_API_GROUP
            || !["Gateway", "GatewayClass"].contains(&target.kind.as_str())
        {
            let group = match target.group.as_str() {
                "" => "core",
                group => group,
            };
            return fail(format!(
                "{field}: {group}/{}: an EnvoyFilter attaches only to {GATEWAY_API_GROUP}/Gateway or GatewayClass; use --selector for workloads",
                target.kind
            ));
        }
        dns_subdomain(&format!("{field}.name"), &target.name)?;
    }
    Ok(())
}

/// `match`: a port given twice in one selector is refused, like Istio does.
pub fn traffic(selectors: &[TrafficSelector]) -> Result<(), ManifestError> {
    for (i, selector) in selectors.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for (j, port) in selector.ports.iter().enumerate() {
            if !(1..=65535).contains(&port.number) {
                return fail(format!(
                    "match[{i}].ports[{j}]: {} is not a port (1-65535)",
                    port.number
                ));
            }
            if !seen.insert(port.number) {
                return fail(format!(
                    "match[{i}].ports[{j}]: port {} is given twice",
                    port.number
                ));
            }
        }
    }
    Ok(())
}

/// The longest `vmConfig.env[].value` Istio's CRD accepts.
pub const ENV_VALUE_MAX: usize = 2048;
/// The longest `vmConfig.env[].name`.
pub const ENV_NAME_MAX: usize = 256;

/// `vmConfig.env`: names and values within Istio's limits.
pub fn env(env: &[EnvVar]) -> Result<(), ManifestError> {
    for (i, var) in env.iter().enumerate() {
        if var.name.is_empty() || var.name.len() > ENV_NAME_MAX {
            return fail(format!(
                "vmConfig.env[{i}].name: must be 1 to {ENV_NAME_MAX} characters"
            ));
        }
        if let Some(value) = &var.value {
            if value.len() > ENV_VALUE_MAX {
                return fail(format!(
                    "vmConfig.env[{i}].value ({}): {} characters, at most {ENV_VALUE_MAX} are allowed",
                    var.name,
                    value.len()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortSelector;

    #[test]
    fn names_follow_dns_1123() {
        assert!(dns_label("metadata.namespace", "prod-1").is_ok());
        for bad in ["", "Prod", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            let err = dns_label("metadata.namespace", bad).unwrap_err().0;
            assert!(err.starts_with("metadata.namespace: "), "{err}");
        }
        assert!(dns_subdomain("metadata.name", "jwt-auth.v1").is_ok());
        for bad in ["jwt_auth", "JWT", "a..b", ".a", &"a".repeat(254)] {
            assert!(dns_subdomain("metadata.name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_follow_kubernetes_rules_without_wildcards() {
        assert!(label("s", "app", "api").is_ok());
        assert!(label("s", "app.kubernetes.io/name", "api_v1.2").is_ok());
        assert!(label("s", "app", "").is_ok());
        let wildcard = label("selector.matchLabels", "app", "*").unwrap_err().0;
        assert!(wildcard.contains("wildcards"), "{wildcard}");
        assert!(label("s", "app*", "x").is_err());
        assert!(label("s", &"k".repeat(64), "x").is_err());
        assert!(label("s", "app", &"v".repeat(64)).is_err());
        assert!(label("s", "app", "-v").is_err());
        assert!(label("s", "Bad_Prefix/app", "v").is_err());
        assert!(label("s", "/app", "v").is_err());
    }

    #[test]
    fn a_selector_key_given_twice_is_refused() {
        let pairs = [
            ("app".to_owned(), "a".to_owned()),
            ("app".into(), "b".into()),
        ];
        let err = label_map("--selector", &pairs).unwrap_err().0;
        assert_eq!(
            err,
            "--selector: label app is given twice (app=a and app=b)"
        );
    }

    #[test]
    fn target_kinds_are_istios() {
        let refs = |group: &str, kind: &str| {
            vec![TargetRef {
                group: group.into(),
                kind: kind.into(),
                name: "public".into(),
                namespace: None,
            }]
        };
        assert!(target_refs(&refs(GATEWAY_API_GROUP, "Gateway"), None).is_ok());
        assert!(target_refs(&refs("", "Service"), None).is_ok());
        assert!(target_refs(&refs(ISTIO_NETWORKING_GROUP, "ServiceEntry"), None).is_ok());
        let no_group = target_refs(&refs("", "Gateway"), None).unwrap_err().0;
        assert!(
            no_group.starts_with("targetRefs[0]: core/Gateway: Istio accepts only"),
            "{no_group}"
        );
        assert!(target_refs(&refs("apps", "Deployment"), None).is_err());
        let mut cross = refs("", "Service");
        cross[0].namespace = Some("other".into());
        assert!(target_refs(&cross, Some("prod"))
            .unwrap_err()
            .0
            .contains("cross-namespace"));
        cross[0].namespace = Some("prod".into());
        assert!(target_refs(&cross, Some("prod")).is_ok());
    }

    #[test]
    fn ports_and_env_are_within_istios_limits() {
        let twice = TrafficSelector {
            mode: None,
            ports: vec![PortSelector { number: 80 }, PortSelector { number: 80 }],
        };
        assert_eq!(
            traffic(&[twice]).unwrap_err().0,
            "match[0].ports[1]: port 80 is given twice"
        );
        let long: EnvVar = format!("TOKEN={}", "x".repeat(ENV_VALUE_MAX + 1))
            .parse()
            .unwrap();
        assert!(env(&[long])
            .unwrap_err()
            .0
            .starts_with("vmConfig.env[0].value (TOKEN)"));
        let fits: EnvVar = format!("TOKEN={}", "x".repeat(ENV_VALUE_MAX))
            .parse()
            .unwrap();
        assert!(env(&[fits]).is_ok());
    }
}
