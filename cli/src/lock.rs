//! The lock file (`wasmgate.lock.json`): each plugin's module, digest and metadata, and where
//! it was published. Manifests are rendered from it so that every one is pinned by sha256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{read, write, Error, Result};

/// The default lock file name.
pub const LOCK_FILE: &str = "wasmgate.lock.json";

/// Every packaged plugin by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub plugins: BTreeMap<String, LockEntry>,
}

/// One plugin's module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    pub version: String,
    /// The root id selecting the plugin in its module.
    pub root_id: String,
    /// The `.wasm` file, relative to the lock file's folder when not absolute.
    pub module: PathBuf,
    /// Kept as text so a hand-edited lock with a missing or malformed digest is refused by
    /// name when a manifest is rendered, not when the file is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub size: u64,
    /// The proxy-wasm ABI the module exports (`0.2.1`).
    pub abi_version: String,
    /// Where a Wasmgate registry serves the module over HTTP, once pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where an OCI registry holds the module as an image, once pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciPin>,
}

/// An OCI image reference and its manifest digest (what Istio checks `sha256` against).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciPin {
    pub reference: String,
    pub manifest_digest: String,
}

impl Lock {
    /// Read a lock file.
    pub fn load(path: &Path) -> Result<Lock> {
        let bytes = read(path)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::failed(format!("{}: not a Wasmgate lock file: {e}", path.display()))
        })
    }

    /// Read a lock file, or start an empty one when there is none.
    pub fn load_or_default(path: &Path) -> Result<Lock> {
        if path.exists() {
            Lock::load(path)
        } else {
            Ok(Lock::default())
        }
    }

    /// Write the lock file (pretty JSON, stable order).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::failed(format!("cannot encode the lock file: {e}")))?;
        text.push('\n');
        write(path, text.as_bytes())
    }

    /// The entry for `name`, or an error naming the lock file.
    pub fn entry(&self, name: &str, path: &Path) -> Result<&LockEntry> {
        self.plugins.get(name).ok_or_else(|| {
            Error::failed(format!(
                "{}: no entry for plugin {name}; run `wasmgate package` first",
                path.display()
            ))
        })
    }
}
