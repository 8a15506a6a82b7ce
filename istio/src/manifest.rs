//! The three manifests: `WasmPlugin` and its successor `TrafficExtension`
//! (`extensions.istio.io/v1alpha1`), and `EnvoyFilter` (`networking.istio.io/v1alpha3`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::{json, Value};
use wasmgate_envoy::{check_trust, Cluster, Code, Digest, HttpFilter, Trust, WasmFilter};

use crate::api::{
    EnvVar, FailStrategy, Metadata, Phase, PluginType, PullPolicy, TargetRef, TrafficSelector,
    VmConfig, WorkloadSelector,
};
use crate::validate;

/// A manifest that cannot be rendered, with the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError(pub String);

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ManifestError {}

fn fail<T>(message: String) -> Result<T, ManifestError> {
    Err(ManifestError(message))
}

/// Everything a WasmPlugin or TrafficExtension for one plugin says.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub metadata: Metadata,
    /// `pluginName`: the root id selecting the plugin in its module.
    pub plugin_name: String,
    /// `http(s)://` URL of the module, or `oci://` image.
    pub url: String,
    pub sha256: Digest,
    /// `pluginConfig`: a JSON object, already validated against the plugin's own types.
    pub plugin_config: Value,
    pub phase: Option<Phase>,
    pub priority: Option<i32>,
    /// `selector.matchLabels`; at most one of this and `target_refs`.
    pub selector: BTreeMap<String, String>,
    pub target_refs: Vec<TargetRef>,
    /// `match`.
    pub traffic: Vec<TrafficSelector>,
    pub fail_strategy: Option<FailStrategy>,
    pub image_pull_policy: Option<PullPolicy>,
    pub image_pull_secret: Option<String>,
    /// `vmConfig.env`.
    pub env: Vec<EnvVar>,
}

impl PluginSpec {
    /// The spec for `plugin_name` at `url` pinned by `sha256`, named after the plugin, with an
    /// empty configuration and Istio's defaults for everything else.
    pub fn new(plugin_name: &str, url: &str, sha256: Digest) -> Self {
        PluginSpec {
            metadata: Metadata {
                name: plugin_name.to_owned(),
                namespace: None,
            },
            plugin_name: plugin_name.to_owned(),
            url: url.to_owned(),
            sha256,
            plugin_config: Value::Object(serde_json::Map::new()),
            phase: None,
            priority: None,
            selector: BTreeMap::new(),
            target_refs: Vec::new(),
            traffic: Vec::new(),
            fail_strategy: None,
            image_pull_policy: None,
            image_pull_secret: None,
            env: Vec::new(),
        }
    }

    /// Refuse what Istio would refuse, naming the field.
    fn check(&self) -> Result<(), ManifestError> {
        if !self.selector.is_empty() && !self.target_refs.is_empty() {
            return fail("selector and targetRefs: set at most one of them".into());
        }
        if self.target_refs.len() > 16 {
            return fail(format!(
                "targetRefs: {} entries, at most 16 are allowed",
                self.target_refs.len()
            ));
        }
        check_url(&self.url, &self.sha256)?;
        if self.plugin_name.is_empty() || self.plugin_name.len() > 256 {
            return fail("pluginName: must be 1 to 256 characters".into());
        }
        if !self.plugin_config.is_object() {
            return fail("pluginConfig: must be an object".into());
        }
        if let Some(secret) = &self.image_pull_secret {
            if secret.is_empty() || secret.len() > 253 {
                return fail("imagePullSecret: must be 1 to 253 characters".into());
            }
        }
        let mut names = BTreeSet::new();
        for (i, env) in self.env.iter().enumerate() {
            if !names.insert(env.name.as_str()) {
                return fail(format!("vmConfig.env[{i}]: {} is set twice", env.name));
            }
        }
        validate::metadata(&self.metadata)?;
        validate::labels("selector.matchLabels", &self.selector)?;
        validate::target_refs(&self.target_refs, self.metadata.namespace.as_deref())?;
        validate::traffic(&self.traffic)?;
        validate::env(&self.env)
    }

    fn vm_config(&self) -> Option<VmConfig> {
        (!self.env.is_empty()).then(|| VmConfig {
            env: self.env.clone(),
        })
    }

    fn selector(&self) -> Option<WorkloadSelector> {
        (!self.selector.is_empty()).then(|| WorkloadSelector {
            match_labels: self.selector.clone(),
        })
    }
}

/// `url` must use a scheme Istio fetches, and a digest inside it must match `sha256`.
fn check_url(url: &str, sha256: &Digest) -> Result<(), ManifestError> {
    if url.is_empty() {
        return fail("url: is empty".into());
    }
    if let Some((scheme, _)) = url.split_once("://") {
        if !["http", "https", "oci", "file"].contains(&scheme) {
            return fail(format!(
                "url: scheme {scheme:?} is not one of http, https, oci, file"
            ));
        }
    }
    if let Some((_, pinned)) = url.rsplit_once("@sha256:") {
        match format!("sha256:{pinned}").parse::<Digest>() {
            Ok(digest) if digest == *sha256 => {}
            Ok(digest) => {
                return fail(format!(
                    "url: pins sha256 {}, but sha256 is {}; they must match",
                    digest.hex(),
                    sha256.hex()
                ))
            }
            Err(e) => return fail(format!("url: {e}")),
        }
    }
    Ok(())
}

/// An Istio `WasmPlugin`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmPlugin {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Metadata,
    pub spec: WasmPluginSpec,
}

/// `WasmPlugin.spec`, fields in the order of Istio's reference.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmPluginSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRef>,
    pub url: String,
    #[serde(with = "wasmgate_artifact::digest::hex")]
    pub sha256: Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    pub plugin_config: Value,
    pub plugin_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_strategy: Option<FailStrategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<VmConfig>,
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficSelector>,
    pub r#type: PluginType,
}

/// Render a `WasmPlugin`.
pub fn wasm_plugin(spec: &PluginSpec) -> Result<WasmPlugin, ManifestError> {
    spec.check()?;
    Ok(WasmPlugin {
        api_version: "extensions.istio.io/v1alpha1",
        kind: "WasmPlugin",
        metadata: spec.metadata.clone(),
        spec: WasmPluginSpec {
            selector: spec.selector(),
            target_refs: spec.target_refs.clone(),
            url: spec.url.clone(),
            sha256: spec.sha256,
            image_pull_policy: spec.image_pull_policy,
            image_pull_secret: spec.image_pull_secret.clone(),
            plugin_config: spec.plugin_config.clone(),
            plugin_name: spec.plugin_name.clone(),
            phase: spec.phase,
            priority: spec.priority,
            fail_strategy: spec.fail_strategy,
            vm_config: spec.vm_config(),
            traffic: spec.traffic.clone(),
            r#type: PluginType::Http,
        },
    })
}

/// An Istio `TrafficExtension` (Istio 1.30+, supersedes WasmPlugin).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficExtension {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Metadata,
    pub spec: TrafficExtensionSpec,
}

/// `TrafficExtension.spec`: targeting and ordering here, the module under `wasm`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficExtensionSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficSelector>,
    pub wasm: WasmConfig,
}

/// `TrafficExtension.spec.wasm`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    pub url: String,
    #[serde(with = "wasmgate_artifact::digest::hex")]
    pub sha256: Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    pub plugin_config: Value,
    pub plugin_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_strategy: Option<FailStrategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<VmConfig>,
    pub r#type: PluginType,
}

/// Render a `TrafficExtension`.
pub fn traffic_extension(spec: &PluginSpec) -> Result<TrafficExtension, ManifestError> {
    spec.check()?;
    Ok(TrafficExtension {
        api_version: "extensions.istio.io/v1alpha1",
        kind: "TrafficExtension",
        metadata: spec.metadata.clone(),
        spec: TrafficExtensionSpec {
            selector: spec.selector(),
            target_refs: spec.target_refs.clone(),
            phase: spec.phase,
            priority: spec.priority,
            traffic: spec.traffic.clone(),
            wasm: WasmConfig {
                url: spec.url.clone(),
                sha256: spec.sha256,
                image_pull_policy: spec.image_pull_policy,
                image_pull_secret: spec.image_pull_secret.clone(),
                plugin_config: spec.plugin_config.clone(),
                plugin_name: spec.plugin_name.clone(),
                fail_strategy: spec.fail_strategy,
                vm_config: spec.vm_config(),
                r#type: PluginType::Http,
            },
        },
    })
}

/// Which proxies' listeners an EnvoyFilter patches (`match.context`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatchContext {
    /// Requests arriving at a workload's sidecar.
    SidecarInbound,
    /// Requests a workload sends out through its sidecar.
    SidecarOutbound,
    /// Requests through an Istio gateway.
    Gateway,
}

impl std::str::FromStr for PatchContext {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "SIDECAR_INBOUND" => Ok(PatchContext::SidecarInbound),
            "SIDECAR_OUTBOUND" => Ok(PatchContext::SidecarOutbound),
            "GATEWAY" => Ok(PatchContext::Gateway),
            other => Err(format!(
                "{other:?}: expected SIDECAR_INBOUND, SIDECAR_OUTBOUND or GATEWAY"
            )),
        }
    }
}

/// Everything an EnvoyFilter for a chain of plugins says.
#[derive(Debug, Clone)]
pub struct EnvoyFilterSpec {
    pub metadata: Metadata,
    /// `workloadSelector.labels`; empty applies to every workload in the namespace.
    pub selector: BTreeMap<String, String>,
    pub context: PatchContext,
    /// The plugins, in the order they run, each inserted before the router.
    pub filters: Vec<WasmFilter>,
    /// Clusters to add by name and URL: the registry the modules are fetched from, JWKS
    /// issuers.
    pub clusters: Vec<(String, String)>,
    /// How `https` clusters check their server, by cluster name; any other `https` cluster
    /// is verified against [`SYSTEM_CA_BUNDLE`](wasmgate_envoy::SYSTEM_CA_BUNDLE).
    pub trust: BTreeMap<String, Trust>,
    /// How the proxy gets the plugins.
    pub delivery: Delivery,
    /// `spec.priority`: the order Istio applies EnvoyFilters in (lower first).
    pub priority: Option<i32>,
    /// `spec.targetRefs` (a Gateway or GatewayClass); at most one of this and `selector`.
    pub target_refs: Vec<TargetRef>,
    /// Each plugin's `failure_policy` [default: `FAIL_CLOSED`].
    pub fail_strategy: Option<FailStrategy>,
}

/// How an EnvoyFilter hands the plugins to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Istio's documented form for Wasm: each plugin is an `EXTENSION_CONFIG` named
    /// [`extension_name`] and a filter inserted before the router that discovers it
    /// (`config_discovery`, ECDS). istio-agent fetches the module (`http`, `https` or `oci`
    /// URL, with the pull secret), checks its sha256 and hands Envoy a local file; no
    /// cluster is needed for the registry, and a later EnvoyFilter can target the filter by
    /// name.
    Ecds {
        /// A Secret in the proxy's namespace holding registry credentials
        /// (`ISTIO_META_WASM_IMAGE_PULL_SECRET`).
        image_pull_secret: Option<String>,
        /// `ISTIO_META_WASM_IMAGE_PULL_POLICY`.
        image_pull_policy: Option<PullPolicy>,
    },
    /// The Wasm filters inline, `vm_config.code.remote` fetched by Envoy through a cluster
    /// the EnvoyFilter adds.
    Inline,
}

/// The name of a plugin's extension config and filter in the ECDS form:
/// `<EnvoyFilter name>.<plugin>`.
pub fn extension_name(envoy_filter: &str, plugin: &str) -> String {
    format!("{envoy_filter}.{plugin}")
}

/// The type URL of the Wasm HTTP filter's configuration.
const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// An Istio `EnvoyFilter`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyFilter {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Metadata,
    pub spec: EnvoyFilterBody,
}

/// `EnvoyFilter.spec`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyFilterBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<LabelSelector>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRef>,
    pub config_patches: Vec<ConfigPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// `EnvoyFilter.spec.workloadSelector`.
#[derive(Debug, Clone, Serialize)]
pub struct LabelSelector {
    pub labels: BTreeMap<String, String>,
}

/// One of `configPatches`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPatch {
    /// `CLUSTER`, `HTTP_FILTER` or `EXTENSION_CONFIG`.
    pub apply_to: &'static str,
    /// Left out for `EXTENSION_CONFIG`, which is not bound to a listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#match: Option<PatchMatch>,
    pub patch: Patch,
}

/// `configPatches[].match`.
#[derive(Debug, Clone, Serialize)]
pub struct PatchMatch {
    pub context: PatchContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerMatch>,
}

/// `match.listener`: the HTTP connection manager's router, before which plugins go.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerMatch {
    pub filter_chain: FilterChainMatch,
}

/// `match.listener.filterChain`.
#[derive(Debug, Clone, Serialize)]
pub struct FilterChainMatch {
    pub filter: FilterMatch,
}

/// `match.listener.filterChain.filter`: the HTTP connection manager.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterMatch {
    pub name: &'static str,
    pub sub_filter: SubFilterMatch,
}

/// `filter.subFilter`: the filter the plugins go before.
#[derive(Debug, Clone, Serialize)]
pub struct SubFilterMatch {
    pub name: &'static str,
}

/// `configPatches[].patch`.
#[derive(Debug, Clone, Serialize)]
pub struct Patch {
    /// `ADD` (a cluster) or `INSERT_BEFORE` (a filter before the router).
    pub operation: &'static str,
    pub value: PatchValue,
}

/// The Envoy object a patch adds.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PatchValue {
    Cluster(Box<Cluster>),
    HttpFilter(HttpFilter),
    /// An extension config, or a filter discovering it.
    Json(Value),
}

/// Render an `EnvoyFilter` adding the registry cluster and inserting each plugin, in order,
/// before the router. Fails when a plugin fetches its code through a cluster not added here.
pub fn envoy_filter(spec: &EnvoyFilterSpec) -> Result<EnvoyFilter, ManifestError> {
    if spec.filters.is_empty() {
        return fail("an EnvoyFilter needs at least one plugin".into());
    }
    validate::metadata(&spec.metadata)?;
    validate::labels("workloadSelector.labels", &spec.selector)?;
    if !spec.selector.is_empty() && !spec.target_refs.is_empty() {
        return fail("workloadSelector and targetRefs: set at most one of them".into());
    }
    validate::envoy_filter_target_refs(&spec.target_refs)?;
    if let Delivery::Ecds {
        image_pull_secret: Some(secret),
        ..
    } = &spec.delivery
    {
        dns_secret(secret)?;
    }
    let names: BTreeSet<&str> = spec.clusters.iter().map(|(n, _)| n.as_str()).collect();
    if names.len() != spec.clusters.len() {
        return fail("clusters: a cluster name is given twice".into());
    }
    for filter in &spec.filters {
        if let (Code::Remote(remote), Delivery::Inline) = (&filter.code, &spec.delivery) {
            if !names.contains(remote.cluster.as_str()) {
                return fail(format!(
                    "plugin {} fetches its code through cluster {:?}, which the EnvoyFilter does not add",
                    filter.plugin, remote.cluster
                ));
            }
        }
    }
    // Clusters are global to the proxy; sidecars build them in the outbound pass.
    let cluster_context = match spec.context {
        PatchContext::Gateway => PatchContext::Gateway,
        PatchContext::SidecarInbound | PatchContext::SidecarOutbound => {
            PatchContext::SidecarOutbound
        }
    };
    let mut clusters = Vec::new();
    for (name, url) in &spec.clusters {
        let trust = spec.trust.get(name).cloned().unwrap_or_default();
        clusters
            .push(Cluster::for_url_trusting(name, url, &trust).map_err(|e| ManifestError(e.0))?);
    }
    check_trust(&spec.trust, &clusters).map_err(|e| ManifestError(e.0))?;
    let mut patches = Vec::new();
    for cluster in clusters {
        patches.push(ConfigPatch {
            apply_to: "CLUSTER",
            r#match: Some(PatchMatch {
                context: cluster_context,
                listener: None,
            }),
            patch: Patch {
                operation: "ADD",
                value: PatchValue::Cluster(Box::new(cluster)),
            },
        });
    }
    // Each INSERT_BEFORE the router lands after the plugins inserted before it, so the
    // chain keeps the order given.
    for filter in &spec.filters {
        let inline = wasm_config(filter, spec)?;
        let value = match &spec.delivery {
            Delivery::Inline => PatchValue::Json(inline),
            Delivery::Ecds { .. } => {
                let name = extension_name(&spec.metadata.name, &filter.plugin);
                patches.push(ConfigPatch {
                    apply_to: "EXTENSION_CONFIG",
                    r#match: None,
                    patch: Patch {
                        operation: "ADD",
                        value: PatchValue::Json(json!({
                            "name": name,
                            "typed_config": inline["typed_config"],
                        })),
                    },
                });
                // `initial_fetch_timeout: 0s`: the listener waits for the plugin rather
                // than serving requests without it.
                PatchValue::Json(json!({
                    "name": name,
                    "config_discovery": {
                        "config_source": {
                            "ads": {},
                            "initial_fetch_timeout": "0s",
                            "resource_api_version": "V3",
                        },
                        "type_urls": [WASM_TYPE_URL],
                    },
                }))
            }
        };
        patches.push(ConfigPatch {
            apply_to: "HTTP_FILTER",
            r#match: Some(PatchMatch {
                context: spec.context,
                listener: Some(ListenerMatch {
                    filter_chain: FilterChainMatch {
                        filter: FilterMatch {
                            name: "envoy.filters.network.http_connection_manager",
                            sub_filter: SubFilterMatch {
                                name: "envoy.filters.http.router",
                            },
                        },
                    },
                }),
            }),
            patch: Patch {
                operation: "INSERT_BEFORE",
                value,
            },
        });
    }
    Ok(EnvoyFilter {
        api_version: "networking.istio.io/v1alpha3",
        kind: "EnvoyFilter",
        metadata: spec.metadata.clone(),
        spec: EnvoyFilterBody {
            workload_selector: (!spec.selector.is_empty()).then(|| LabelSelector {
                labels: spec.selector.clone(),
            }),
            target_refs: spec.target_refs.clone(),
            config_patches: patches,
            priority: spec.priority,
        },
    })
}

/// An image pull secret names a Secret: a DNS-1123 subdomain.
fn dns_secret(secret: &str) -> Result<(), ManifestError> {
    validate::dns_subdomain("imagePullSecret", secret)
}

/// A plugin's Wasm filter as JSON, with the fail strategy and, in the ECDS form, the pull
/// settings istio-agent reads from the VM's environment.
fn wasm_config(filter: &WasmFilter, spec: &EnvoyFilterSpec) -> Result<Value, ManifestError> {
    let mut value = serde_json::to_value(filter.to_http_filter())
        .map_err(|e| ManifestError(format!("plugin {}: {e}", filter.plugin)))?;
    let config = &mut value["typed_config"]["config"];
    if let Some(strategy) = spec.fail_strategy {
        config["failure_policy"] = json!(match strategy {
            FailStrategy::FailClose => "FAIL_CLOSED",
            FailStrategy::FailOpen => "FAIL_OPEN",
            FailStrategy::FailReload => "FAIL_RELOAD",
        });
    }
    if let Delivery::Ecds {
        image_pull_secret,
        image_pull_policy,
    } = &spec.delivery
    {
        let mut env = serde_json::Map::new();
        if let Some(secret) = image_pull_secret {
            env.insert("ISTIO_META_WASM_IMAGE_PULL_SECRET".into(), json!(secret));
        }
        if let Some(policy) = image_pull_policy {
            env.insert(
                "ISTIO_META_WASM_IMAGE_PULL_POLICY".into(),
                json!(policy.to_string()),
            );
        }
        if !env.is_empty() {
            config["vm_config"]["environment_variables"] = json!({ "key_values": env });
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wasmgate_envoy::Remote;

    fn sha() -> Digest {
        Digest::of(b"module")
    }

    fn spec() -> PluginSpec {
        let mut spec = PluginSpec::new("jwt-auth", "http://registry:5000/m.wasm", sha());
        spec.plugin_config = json!({"issuers": []});
        spec.phase = Some(Phase::Authn);
        spec
    }

    #[test]
    fn wasm_plugin_fields_are_istios() {
        let mut spec = spec();
        spec.selector.insert("app".into(), "api".into());
        spec.env.push("POD_NAME".parse().unwrap());
        spec.traffic.push(TrafficSelector {
            mode: Some(crate::WorkloadMode::Server),
            ports: vec![crate::PortSelector { number: 8080 }],
        });
        let json = serde_json::to_value(wasm_plugin(&spec).unwrap()).unwrap();
        assert_eq!(json["apiVersion"], "extensions.istio.io/v1alpha1");
        assert_eq!(json["kind"], "WasmPlugin");
        assert_eq!(
            json["spec"]["selector"],
            json!({"matchLabels": {"app": "api"}})
        );
        assert_eq!(json["spec"]["sha256"], sha().hex());
        assert_eq!(json["spec"]["pluginName"], "jwt-auth");
        assert_eq!(json["spec"]["phase"], "AUTHN");
        assert_eq!(json["spec"]["type"], "HTTP");
        assert_eq!(
            json["spec"]["vmConfig"],
            json!({"env": [{"name": "POD_NAME", "valueFrom": "HOST"}]})
        );
        assert_eq!(
            json["spec"]["match"],
            json!([{"mode": "SERVER", "ports": [{"number": 8080}]}])
        );
    }

    #[test]
    fn traffic_extension_nests_the_module_under_wasm() {
        let mut spec = spec();
        spec.fail_strategy = Some(FailStrategy::FailClose);
        spec.image_pull_policy = Some(PullPolicy::IfNotPresent);
        let json = serde_json::to_value(traffic_extension(&spec).unwrap()).unwrap();
        assert_eq!(json["kind"], "TrafficExtension");
        assert_eq!(json["spec"]["phase"], "AUTHN");
        assert_eq!(json["spec"]["wasm"]["url"], "http://registry:5000/m.wasm");
        assert_eq!(json["spec"]["wasm"]["failStrategy"], "FAIL_CLOSE");
        assert_eq!(json["spec"]["wasm"]["imagePullPolicy"], "IfNotPresent");
        assert!(json["spec"].get("url").is_none());
    }

    #[test]
    fn refusals_name_the_field() {
        let mut both = spec();
        both.selector.insert("app".into(), "api".into());
        both.target_refs.push("Gateway/public".parse().unwrap());
        assert!(wasm_plugin(&both)
            .unwrap_err()
            .0
            .starts_with("selector and targetRefs"));

        let mut scheme = spec();
        scheme.url = "ftp://x/m.wasm".into();
        assert!(wasm_plugin(&scheme)
            .unwrap_err()
            .0
            .starts_with("url: scheme \"ftp\""));

        let mut pinned = spec();
        pinned.url = format!("oci://registry/jwt@sha256:{}", Digest::of(b"other").hex());
        assert!(traffic_extension(&pinned)
            .unwrap_err()
            .0
            .contains("they must match"));
        pinned.url = format!("oci://registry/jwt@sha256:{}", sha().hex());
        assert!(traffic_extension(&pinned).is_ok());

        let mut admission = spec();
        admission.metadata.namespace = Some("Prod".into());
        assert!(wasm_plugin(&admission)
            .unwrap_err()
            .0
            .starts_with("metadata.namespace: \"Prod\""));
        admission.metadata.namespace = None;
        admission.selector.insert("app".into(), "*".into());
        assert!(traffic_extension(&admission)
            .unwrap_err()
            .0
            .starts_with("selector.matchLabels: "));

        let mut config = spec();
        config.plugin_config = json!([1]);
        assert_eq!(
            wasm_plugin(&config).unwrap_err().0,
            "pluginConfig: must be an object"
        );
    }

    #[test]
    fn envoy_filter_adds_cluster_then_filters_in_order() {
        let filters = ["jwt-auth", "rate-limit"]
            .map(|p| {
                WasmFilter::new(
                    p,
                    Code::Remote(Remote::new(
                        format!("http://registry:5000/{p}"),
                        "wasmgate-registry",
                        sha(),
                    )),
                )
            })
            .to_vec();
        let spec = EnvoyFilterSpec {
            metadata: Metadata {
                name: "wasmgate".into(),
                namespace: Some("istio-system".into()),
            },
            selector: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
            context: PatchContext::Gateway,
            filters,
            clusters: vec![("wasmgate-registry".into(), "http://registry:5000".into())],
            trust: BTreeMap::new(),
            delivery: Delivery::Inline,
            priority: None,
            target_refs: Vec::new(),
            fail_strategy: None,
        };
        let json = serde_json::to_value(envoy_filter(&spec).unwrap()).unwrap();
        assert_eq!(json["apiVersion"], "networking.istio.io/v1alpha3");
        assert_eq!(
            json["spec"]["workloadSelector"],
            json!({"labels": {"istio": "ingressgateway"}})
        );
        let patches = json["spec"]["configPatches"].as_array().unwrap();
        assert_eq!(patches[0]["applyTo"], "CLUSTER");
        assert_eq!(patches[0]["patch"]["operation"], "ADD");
        assert_eq!(patches[0]["patch"]["value"]["name"], "wasmgate-registry");
        assert_eq!(
            patches[1]["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
            "envoy.filters.http.router"
        );
        assert_eq!(patches[1]["patch"]["operation"], "INSERT_BEFORE");
        assert_eq!(
            patches[1]["patch"]["value"]["typed_config"]["config"]["root_id"],
            "jwt-auth"
        );
        assert_eq!(
            patches[2]["patch"]["value"]["typed_config"]["config"]["root_id"],
            "rate-limit"
        );

        let mut missing = spec.clone();
        missing.clusters.clear();
        assert!(envoy_filter(&missing)
            .unwrap_err()
            .0
            .contains("does not add"));
    }

    #[test]
    fn envoy_filter_jwks_clusters_are_verified() {
        let mut spec = EnvoyFilterSpec {
            metadata: Metadata {
                name: "wasmgate".into(),
                namespace: None,
            },
            selector: BTreeMap::new(),
            context: PatchContext::SidecarInbound,
            filters: vec![WasmFilter::new("jwt-auth", Code::Local("/m.wasm".into()))],
            clusters: vec![
                (
                    "login_example_com".into(),
                    "https://login.example.com".into(),
                ),
                ("other".into(), "https://other.example.com".into()),
            ],
            trust: BTreeMap::from([(
                "other".into(),
                Trust::Verify("/etc/istio/jwks-ca.pem".into()),
            )]),
            delivery: Delivery::Inline,
            priority: None,
            target_refs: Vec::new(),
            fail_strategy: None,
        };
        let validation = |spec: &EnvoyFilterSpec, i: usize| {
            let json = serde_json::to_value(envoy_filter(spec).unwrap()).unwrap();
            json["spec"]["configPatches"][i]["patch"]["value"]["transport_socket"]["typed_config"]
                ["common_tls_context"]["validation_context"]
                .clone()
        };
        assert_eq!(
            validation(&spec, 0),
            json!({
                "trusted_ca": { "filename": wasmgate_envoy::SYSTEM_CA_BUNDLE },
                "match_typed_subject_alt_names": [
                    { "san_type": "DNS", "matcher": { "exact": "login.example.com" } }
                ],
            })
        );
        assert_eq!(
            validation(&spec, 1)["trusted_ca"]["filename"],
            "/etc/istio/jwks-ca.pem"
        );
        spec.trust.insert("other".into(), Trust::Insecure);
        assert_eq!(validation(&spec, 1), serde_json::Value::Null);
        spec.trust.insert("typo".into(), Trust::Insecure);
        assert!(envoy_filter(&spec).unwrap_err().0.contains("\"typo\""));
    }

    #[test]
    fn envoy_filter_ecds_form() {
        let oci = Digest::of(b"manifest");
        let filters = vec![
            WasmFilter::new(
                "jwt-auth",
                Code::Remote(Remote::new(
                    "oci://ghcr.io/acme/wasm/jwt-auth:0.1.0",
                    "unused",
                    oci,
                )),
            ),
            WasmFilter::new(
                "rate-limit",
                Code::Remote(Remote::new("https://r/m", "unused", sha())),
            ),
        ];
        let mut spec = EnvoyFilterSpec {
            metadata: Metadata {
                name: "wasmgate".into(),
                namespace: Some("istio-system".into()),
            },
            selector: BTreeMap::new(),
            context: PatchContext::Gateway,
            filters,
            clusters: Vec::new(),
            trust: BTreeMap::new(),
            delivery: Delivery::Ecds {
                image_pull_secret: Some("ghcr-pull".into()),
                image_pull_policy: Some(PullPolicy::Always),
            },
            priority: Some(-10),
            target_refs: vec!["Gateway/public".parse().unwrap()],
            fail_strategy: Some(FailStrategy::FailReload),
        };
        let json = serde_json::to_value(envoy_filter(&spec).unwrap()).unwrap();
        assert_eq!(json["spec"]["priority"], -10);
        assert_eq!(
            json["spec"]["targetRefs"],
            json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}])
        );
        let patches = json["spec"]["configPatches"].as_array().unwrap();
        // No registry cluster: istio-agent fetches the modules.
        let kinds: Vec<&str> = patches
            .iter()
            .map(|p| p["applyTo"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "EXTENSION_CONFIG",
                "HTTP_FILTER",
                "EXTENSION_CONFIG",
                "HTTP_FILTER"
            ]
        );
        let extension = &patches[0];
        assert!(extension.get("match").is_none());
        assert_eq!(extension["patch"]["operation"], "ADD");
        assert_eq!(extension["patch"]["value"]["name"], "wasmgate.jwt-auth");
        let config = &extension["patch"]["value"]["typed_config"];
        assert_eq!(
            config["@type"],
            "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
        );
        assert_eq!(config["config"]["failure_policy"], "FAIL_RELOAD");
        assert_eq!(
            config["config"]["vm_config"]["code"]["remote"]["http_uri"]["uri"],
            "oci://ghcr.io/acme/wasm/jwt-auth:0.1.0"
        );
        assert_eq!(
            config["config"]["vm_config"]["code"]["remote"]["sha256"],
            oci.hex()
        );
        assert_eq!(
            config["config"]["vm_config"]["environment_variables"]["key_values"],
            json!({
                "ISTIO_META_WASM_IMAGE_PULL_SECRET": "ghcr-pull",
                "ISTIO_META_WASM_IMAGE_PULL_POLICY": "Always",
            })
        );
        let filter = &patches[1]["patch"]["value"];
        assert_eq!(filter["name"], "wasmgate.jwt-auth");
        assert_eq!(
            filter["config_discovery"]["type_urls"],
            json!(["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"])
        );
        assert_eq!(
            filter["config_discovery"]["config_source"]["initial_fetch_timeout"],
            "0s"
        );
        assert_eq!(patches[1]["patch"]["operation"], "INSERT_BEFORE");
        assert_eq!(patches[3]["patch"]["value"]["name"], "wasmgate.rate-limit");

        spec.selector.insert("app".into(), "api".into());
        assert!(envoy_filter(&spec)
            .unwrap_err()
            .0
            .starts_with("workloadSelector and targetRefs"));
        spec.selector.clear();
        spec.target_refs = vec!["Service/api".parse().unwrap()];
        assert!(envoy_filter(&spec)
            .unwrap_err()
            .0
            .contains("an EnvoyFilter attaches only to"));
        spec.target_refs.clear();
        spec.delivery = Delivery::Ecds {
            image_pull_secret: Some("Bad_Secret".into()),
            image_pull_policy: None,
        };
        assert!(envoy_filter(&spec)
            .unwrap_err()
            .0
            .starts_with("imagePullSecret: "));
    }
}
