//! The `envoy.filters.http.wasm` HTTP filter, typed after Envoy's
//! `envoy.extensions.filters.http.wasm.v3.Wasm` and `envoy.extensions.wasm.v3.PluginConfig`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::duration;
use wasmgate_artifact::Digest;

/// Envoy's name for the Wasm HTTP filter.
pub const WASM_FILTER: &str = "envoy.filters.http.wasm";
/// The only Wasm runtime Wasmgate targets (Envoy's default build ships V8).
pub const RUNTIME_V8: &str = "envoy.wasm.runtime.v8";

/// Where Envoy gets a module's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// A file on the proxy's disk (`vm_config.code.local.filename`).
    Local(PathBuf),
    /// Fetched over HTTP through an Envoy cluster when the filter is created, and refused
    /// unless its digest matches (`vm_config.code.remote`).
    Remote(Remote),
}

/// A module fetched over HTTP, pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `http://` or `https://` URL of the module's bytes.
    pub uri: String,
    /// The Envoy cluster the fetch goes through; it must exist in the same configuration.
    pub cluster: String,
    pub sha256: Digest,
    /// How long one fetch may take.
    pub timeout: Duration,
    /// Fetch attempts after the first failure, with exponential back-off.
    pub retries: u32,
}

impl Remote {
    /// A fetch of `uri` through `cluster`: 10 s per attempt, 5 retries.
    pub fn new(uri: impl Into<String>, cluster: impl Into<String>, sha256: Digest) -> Self {
        Remote {
            uri: uri.into(),
            cluster: cluster.into(),
            sha256,
            timeout: Duration::from_secs(10),
            retries: 5,
        }
    }
}

/// One Wasm plugin in an HTTP filter chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmFilter {
    /// The plugin's name (Envoy's `name` of the plugin, in its logs).
    pub plugin: String,
    /// Which plugin a combined module runs; the plugin's name unless set (a module that
    /// hosts one plugin runs it for any `root_id`).
    pub root_id: String,
    pub code: Code,
    /// The plugin configuration as JSON text (`configuration`, a `StringValue`).
    pub configuration: String,
    /// Filters with the same `vm_id` and code share one VM per worker. The plugin's name
    /// unless set: Envoy 1.40 mixes up remotely fetched modules of filters that share a
    /// `vm_id` (every such filter ran the first module fetched), so each plugin gets its own.
    pub vm_id: String,
    /// When the VM cannot be loaded or has crashed: `false` (the default) answers 503,
    /// `true` lets requests skip the plugin.
    pub fail_open: bool,
}

impl WasmFilter {
    /// The filter for `plugin` with `code`, an empty configuration and its own VM.
    pub fn new(plugin: impl Into<String>, code: Code) -> Self {
        let plugin = plugin.into();
        WasmFilter {
            vm_id: plugin.clone(),
            root_id: plugin.clone(),
            plugin,
            code,
            configuration: String::new(),
            fail_open: false,
        }
    }

    /// The filter as it appears in `http_filters` (and in an Istio EnvoyFilter patch).
    pub fn to_http_filter(&self) -> HttpFilter {
        HttpFilter::Wasm {
            name: WASM_FILTER,
            typed_config: Box::new(WasmTypedConfig {
                config: PluginConfig {
                    name: self.plugin.clone(),
                    root_id: self.root_id.clone(),
                    configuration: StringValue::new(&self.configuration),
                    failure_policy: if self.fail_open {
                        "FAIL_OPEN"
                    } else {
                        "FAIL_CLOSED"
                    },
                    vm_config: VmConfig {
                        vm_id: self.vm_id.clone(),
                        runtime: RUNTIME_V8,
                        code: match &self.code {
                            Code::Local(path) => AsyncDataSource {
                                local: Some(LocalSource {
                                    filename: path.display().to_string(),
                                }),
                                remote: None,
                            },
                            Code::Remote(remote) => AsyncDataSource {
                                local: None,
                                remote: Some(RemoteSource {
                                    http_uri: HttpUri {
                                        uri: remote.uri.clone(),
                                        cluster: remote.cluster.clone(),
                                        timeout: duration(remote.timeout),
                                    },
                                    sha256: remote.sha256,
                                    retry_policy: RetryPolicy {
                                        retry_back_off: BackOff {
                                            base_interval: "1s",
                                            max_interval: "10s",
                                        },
                                        num_retries: remote.retries,
                                    },
                                }),
                            },
                        },
                    },
                },
            }),
        }
    }
}

/// An entry of `http_filters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HttpFilter {
    Wasm {
        name: &'static str,
        typed_config: Box<WasmTypedConfig>,
    },
    Router {
        name: &'static str,
        typed_config: TypedRouter,
    },
    /// Any other filter, e.g. a native one a Wasm plugin is compared with.
    Other {
        name: String,
        typed_config: serde_json::Value,
    },
}

impl HttpFilter {
    /// `envoy.filters.http.router`, which must end every HTTP filter chain.
    pub fn router() -> Self {
        HttpFilter::Router {
            name: "envoy.filters.http.router",
            typed_config: TypedRouter {
                type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            },
        }
    }
}

/// `typed_config` of the router filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypedRouter {
    #[serde(rename = "@type")]
    type_url: &'static str,
}

/// `typed_config` of the Wasm filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "@type",
    rename = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
)]
pub struct WasmTypedConfig {
    pub config: PluginConfig,
}

/// `envoy.extensions.wasm.v3.PluginConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginConfig {
    pub name: String,
    pub root_id: String,
    pub configuration: StringValue,
    pub failure_policy: &'static str,
    pub vm_config: VmConfig,
}

/// `google.protobuf.StringValue` inside an `Any`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "@type",
    rename = "type.googleapis.com/google.protobuf.StringValue"
)]
pub struct StringValue {
    pub value: String,
}

impl StringValue {
    fn new(value: &str) -> Self {
        StringValue {
            value: value.to_owned(),
        }
    }
}

/// `envoy.extensions.wasm.v3.VmConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vm_id: String,
    pub runtime: &'static str,
    pub code: AsyncDataSource,
}

/// `envoy.config.core.v3.AsyncDataSource`: exactly one of `local` and `remote` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsyncDataSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteSource>,
}

/// `envoy.config.core.v3.DataSource` naming a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalSource {
    pub filename: String,
}

/// `envoy.config.core.v3.RemoteDataSource`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteSource {
    pub http_uri: HttpUri,
    #[serde(with = "wasmgate_artifact::digest::hex")]
    pub sha256: Digest,
    pub retry_policy: RetryPolicy,
}

/// `envoy.config.core.v3.HttpUri`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpUri {
    pub uri: String,
    pub cluster: String,
    pub timeout: String,
}

/// `envoy.config.core.v3.RetryPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    pub retry_back_off: BackOff,
    pub num_retries: u32,
}

/// `envoy.config.core.v3.BackoffStrategy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackOff {
    pub base_interval: &'static str,
    pub max_interval: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn remote_code_is_pinned_and_retried() {
        let sha = Digest::of(b"module");
        let mut filter = WasmFilter::new(
            "jwt-auth",
            Code::Remote(Remote::new("http://r/m.wasm", "registry", sha)),
        );
        filter.configuration = "{}".into();
        let json = serde_json::to_value(filter.to_http_filter()).unwrap();
        assert_eq!(json["name"], "envoy.filters.http.wasm");
        let config = &json["typed_config"]["config"];
        assert_eq!(config["root_id"], "jwt-auth");
        assert_eq!(config["failure_policy"], "FAIL_CLOSED");
        assert_eq!(
            config["vm_config"]["code"]["remote"],
            json!({
                "http_uri": { "uri": "http://r/m.wasm", "cluster": "registry", "timeout": "10s" },
                "sha256": sha.hex(),
                "retry_policy": { "retry_back_off": { "base_interval": "1s", "max_interval": "10s" }, "num_retries": 5 },
            })
        );
        assert_eq!(
            config["configuration"],
            json!({ "@type": "type.googleapis.com/google.protobuf.StringValue", "value": "{}" })
        );
    }

    #[test]
    fn local_code_names_the_file() {
        let mut filter = WasmFilter::new("rate-limit", Code::Local("/m/rate_limit.wasm".into()));
        filter.fail_open = true;
        filter.vm_id = "wasmgate".into();
        filter.root_id = String::new();
        let json = serde_json::to_value(filter.to_http_filter()).unwrap();
        let config = &json["typed_config"]["config"];
        assert_eq!(config["name"], "rate-limit");
        assert_eq!(config["root_id"], "");
        assert_eq!(config["failure_policy"], "FAIL_OPEN");
        assert_eq!(config["vm_config"]["vm_id"], "wasmgate");
        assert_eq!(
            config["vm_config"]["code"],
            json!({ "local": { "filename": "/m/rate_limit.wasm" } })
        );
    }
}
