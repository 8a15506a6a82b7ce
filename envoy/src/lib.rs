//! Typed Envoy configuration for Wasmgate: the Wasm HTTP filter with its code loaded from a
//! file or fetched by URL and pinned by SHA-256, and a complete static bootstrap around it.
//!
//! ```
//! use wasmgate_envoy::{render, Code, Remote, Digest, Spec, WasmFilter};
//! let sha: Digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
//! let filter = WasmFilter::new(
//!     "header-rewrite",
//!     Code::Remote(Remote::new("http://127.0.0.1:5000/m.wasm", "registry", sha)),
//! );
//! let bootstrap = render(&Spec {
//!     listen: "127.0.0.1:10000".parse().unwrap(),
//!     admin: None,
//!     filters: vec![filter],
//!     upstream: "http://127.0.0.1:8000".into(),
//!     clusters: vec![("registry".into(), "http://127.0.0.1:5000".into())],
//!     trust: Default::default(),
//! })
//! .unwrap();
//! assert_eq!(bootstrap.static_resources.clusters.len(), 2);
//! ```

mod binary;
mod bootstrap;
mod tls;
mod wasm;

use std::time::Duration;

pub use binary::find_binary;
pub use bootstrap::{
    check_trust, render, Action, Address, Admin, Bootstrap, Cluster, RenderError, Scheme, Spec,
    StaticResources, UPSTREAM_CLUSTER,
};
pub use tls::{
    CommonTlsContext, DataSource, SanMatcher, StringMatcher, Trust, UpstreamTls, ValidationContext,
    SYSTEM_CA_BUNDLE,
};
pub use wasm::{
    AsyncDataSource, Code, HttpFilter, LocalSource, PluginConfig, Remote, RemoteSource,
    RetryPolicy, VmConfig, WasmFilter, RUNTIME_V8, WASM_FILTER,
};
pub use wasmgate_artifact::{Digest, DigestError};

/// A protobuf JSON duration: `10s`, `1.500s`.
fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
    }
}
