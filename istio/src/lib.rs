//! Istio manifests for Wasmgate plugins, pinned by sha256:
//!
//! - [`wasm_plugin`]: `extensions.istio.io/v1alpha1` `WasmPlugin`;
//! - [`traffic_extension`]: its successor `TrafficExtension` (Istio 1.30+);
//! - [`envoy_filter`]: `networking.istio.io/v1alpha3` `EnvoyFilter` inserting the Wasm filters
//!   (code fetched over HTTP with sha256) before the router, plus the cluster they fetch from;
//! - [`mesh`]: the `ServiceEntry` and `DestinationRule` a plugin's callouts need in a mesh.
//!
//! Field names and enum values are Istio's own; every renderer refuses what Istio would refuse,
//! naming the field.

mod api;
mod manifest;
pub mod mesh;
pub mod validate;

pub use api::{
    EnvValueSource, EnvVar, FailStrategy, Metadata, Phase, PluginType, PortSelector, PullPolicy,
    TargetRef, TrafficSelector, VmConfig, WorkloadMode, WorkloadSelector,
};
pub use manifest::{
    envoy_filter, extension_name, traffic_extension, wasm_plugin, ConfigPatch, Delivery,
    EnvoyFilter, EnvoyFilterSpec, ManifestError, PatchContext, PatchValue, PluginSpec,
    TrafficExtension, WasmPlugin,
};
pub use mesh::{DestinationRule, MeshService, ServiceEntry};
pub use wasmgate_envoy::Digest;
