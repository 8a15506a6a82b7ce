//! The JSON bodies of the `/api/v1/` routes, shared by the registry (which writes them) and
//! clients such as the `wasmgate` CLI (which read them). Fields are declared in alphabetical
//! order: the order the bodies always had.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasmgate_artifact::{digest, Digest};

use crate::store::VersionMeta;

/// `GET /api/v1/plugins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginList {
    pub plugins: Vec<PluginSummary>,
}

/// One plugin of [`PluginList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSummary {
    /// Its latest version (semver order).
    pub latest: String,
    pub name: String,
    /// How many versions it has.
    pub versions: usize,
}

/// `GET /api/v1/plugins/{name}`: its versions in semver order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionList {
    pub name: String,
    pub versions: Vec<VersionSummary>,
}

/// One version of [`VersionList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSummary {
    /// RFC 3339 UTC.
    pub created: String,
    /// The module's SHA256, bare hex.
    #[serde(with = "digest::hex")]
    pub sha256: Digest,
    pub size: u64,
    pub version: String,
}

/// `GET` and `PUT /api/v1/plugins/{name}/versions/{version}`: a version's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The proxy-wasm ABI version the module exports.
    pub abi_version: String,
    /// Path of the download by digest (`/api/v1/blobs/sha256:<hex>`).
    pub blob_url: String,
    /// RFC 3339 UTC.
    pub created: String,
    pub description: Option<String>,
    /// Path of the download by name and version.
    pub module_url: String,
    pub name: String,
    /// Where the OCI API serves it.
    pub oci: OciRef,
    pub root_id: Option<String>,
    /// The config JSON Schema, on `GET` when one was published.
    pub schema: Option<Value>,
    /// The module's SHA256, bare hex.
    #[serde(with = "digest::hex")]
    pub sha256: Digest,
    pub size: u64,
    pub version: String,
}

/// The OCI image of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciRef {
    /// The image manifest's digest, `sha256:<hex>`.
    pub manifest_digest: Digest,
    /// `<name>:<version>` (prefix it with the registry's host).
    pub reference: String,
}

/// `PUT /api/v1/plugins/{name}/versions/{version}/schema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaPut {
    pub schema: SchemaState,
}

/// Whether a schema was written or already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaState {
    Created,
    Unchanged,
}

impl VersionInfo {
    /// The metadata of `meta`, with its schema when given.
    pub fn new(meta: &VersionMeta, schema: Option<Value>) -> Self {
        VersionInfo {
            abi_version: meta.abi_version.clone(),
            blob_url: format!("/api/v1/blobs/{}", meta.sha256),
            created: meta.created.clone(),
            description: meta.description.clone(),
            module_url: format!(
                "/api/v1/plugins/{}/versions/{}/module",
                meta.name, meta.version
            ),
            name: meta.name.clone(),
            oci: OciRef {
                manifest_digest: meta.oci.manifest.digest,
                reference: format!("{}:{}", meta.name, meta.version),
            },
            root_id: meta.root_id.clone(),
            schema,
            sha256: meta.sha256,
            size: meta.size,
            version: meta.version.clone(),
        }
    }
}

impl From<&VersionMeta> for VersionSummary {
    fn from(meta: &VersionMeta) -> Self {
        VersionSummary {
            created: meta.created.clone(),
            sha256: meta.sha256,
            size: meta.size,
            version: meta.version.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BlobRef, OciImage};

    #[test]
    fn a_version_is_written_as_it_always_was_and_read_back() {
        let digest = |byte: u8| format!("{byte:02x}").repeat(32).parse::<Digest>().unwrap();
        let blob = |byte: u8| BlobRef {
            digest: digest(byte),
            size: 1,
        };
        let meta = VersionMeta {
            name: "demo".into(),
            version: "1.0.0".into(),
            sha256: digest(0xab),
            size: 42,
            created: "2026-01-01T00:00:00Z".into(),
            abi_version: "0.2.1".into(),
            root_id: Some("demo".into()),
            description: None,
            oci: OciImage {
                manifest: blob(1),
                config: blob(2),
                layer: blob(3),
            },
        };
        let info = VersionInfo::new(&meta, None);
        let text = serde_json::to_string(&info).unwrap();
        let ab = "ab".repeat(32);
        let one = "01".repeat(32);
        assert_eq!(
            text,
            format!(
                concat!(
                    r#"{{"abi_version":"0.2.1","blob_url":"/api/v1/blobs/sha256:{ab}","#,
                    r#""created":"2026-01-01T00:00:00Z","description":null,"#,
                    r#""module_url":"/api/v1/plugins/demo/versions/1.0.0/module","name":"demo","#,
                    r#""oci":{{"manifest_digest":"sha256:{one}","reference":"demo:1.0.0"}},"#,
                    r#""root_id":"demo","schema":null,"sha256":"{ab}","size":42,"version":"1.0.0"}}"#
                ),
                ab = ab,
                one = one
            )
        );
        assert_eq!(serde_json::from_str::<VersionInfo>(&text).unwrap(), info);
        let schema = serde_json::to_string(&SchemaPut {
            schema: SchemaState::Unchanged,
        })
        .unwrap();
        assert_eq!(schema, r#"{"schema":"unchanged"}"#);
    }
}
