//! The embedded store: content-addressed blobs and one small metadata file per version.
//!
//! ```text
//! <data_dir>/blobs/sha256/<hex>                    modules, OCI layers, configs, manifests
//! <data_dir>/plugins/<name>/versions/<version>.json version metadata (points at blobs)
//! <data_dir>/plugins/<name>/schemas/<version>.json  the plugin's config JSON Schema
//! <data_dir>/tmp/                                   uploads in progress (emptied at start)
//! ```
//!
//! Crash safety comes from ordering: a blob is written to `tmp/`, fsynced, renamed into place
//! and its directory fsynced before any metadata names it; metadata is written the same way but
//! put in place with `link`, which fails when the name exists, so a version is created exactly
//! once even when two publishes race. A crash leaves at worst files in `tmp/` and blobs that no
//! version names; both are removed when the store is opened.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use wasmgate_artifact::{digest, Digest};

use crate::names::{PluginName, Version};

/// A blob a version refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Written `sha256:<hex>`.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// The OCI image a version is served as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciImage {
    /// The image manifest (what a tag resolves to).
    pub manifest: BlobRef,
    /// The image config.
    pub config: BlobRef,
    /// The `tar+gzip` layer holding `plugin.wasm`.
    pub layer: BlobRef,
}

/// What the store records for one published version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// The plugin name.
    pub name: String,
    /// The semver version (also the OCI tag).
    pub version: String,
    /// The module's SHA256, written as 64 lowercase hex characters.
    #[serde(with = "digest::hex")]
    pub sha256: Digest,
    /// The module's size in bytes.
    pub size: u64,
    /// When it was published, RFC 3339 UTC.
    pub created: String,
    /// The proxy-wasm ABI version the module exports (`0.2.1`).
    pub abi_version: String,
    /// The root id the publisher stated (`x-wasmgate-root-id`).
    pub root_id: Option<String>,
    /// A one-line description the publisher stated (`x-wasmgate-description`).
    pub description: Option<String>,
    /// The OCI image this version is served as.
    pub oci: OciImage,
}

impl VersionMeta {
    fn blob_digests(&self) -> [Digest; 4] {
        [
            self.sha256,
            self.oci.manifest.digest,
            self.oci.config.digest,
            self.oci.layer.digest,
        ]
    }
}

/// How a write of a set-once document ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put<T> {
    /// It was written.
    Created(T),
    /// The same content was already there.
    Unchanged(T),
    /// Different content was already there.
    Conflict(T),
}

type Index = BTreeMap<PluginName, BTreeMap<Version, Arc<VersionMeta>>>;

/// What opening the store found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Versions loaded.
    pub versions: usize,
    /// Files of interrupted uploads removed from `tmp/`.
    pub removed_temp_files: usize,
    /// Complete blobs no version names (a crash between blob and metadata, a lost race).
    pub removed_orphan_blobs: usize,
    /// Metadata files that could not be used (unreadable, malformed or missing a blob).
    pub skipped_metadata: usize,
}

/// The store under one data directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    index: RwLock<Index>,
    temp_counter: AtomicU64,
}

impl Store {
    /// Open (creating when needed) the store at `root`, remove what a crash left behind and
    /// load the index.
    pub fn open(root: &Path) -> io::Result<(Store, Recovery)> {
        for dir in ["blobs/sha256", "plugins", "tmp"] {
            fs::create_dir_all(root.join(dir))?;
        }
        let store = Store {
            root: root.to_path_buf(),
            index: RwLock::new(Index::new()),
            temp_counter: AtomicU64::new(0),
        };
        let mut recovery = Recovery::default();
        for entry in fs::read_dir(store.root.join("tmp"))? {
            let entry = entry?;
            remove_any(&entry.path())?;
            recovery.removed_temp_files += 1;
        }
        let mut index = Index::new();
        let mut referenced = HashSet::new();
        for plugin in fs::read_dir(store.root.join("plugins"))? {
            let plugin = plugin?;
            let Some(name) = file_name(&plugin.path()).and_then(|n| n.parse::<PluginName>().ok())
            else {
                recovery.skipped_metadata += 1;
                continue;
            };
            let versions_dir = plugin.path().join("versions");
            let Ok(entries) = fs::read_dir(&versions_dir) else {
                continue;
            };
            for entry in entries {
                let path = entry?.path();
                match store.load_meta(&name, &path) {
                    Some((version, meta)) => {
                        referenced.extend(meta.blob_digests());
                        index
                            .entry(name.clone())
                            .or_default()
                            .insert(version, Arc::new(meta));
                        recovery.versions += 1;
                    }
                    None => {
                        tracing::error!(file = %path.display(), "skipping unusable version metadata");
                        recovery.skipped_metadata += 1;
                    }
                }
            }
        }
        for entry in fs::read_dir(store.root.join("blobs/sha256"))? {
            let path = entry?.path();
            // Only the lowercase name is a blob's path; any other spelling is a stray file.
            let digest = file_name(&path)
                .and_then(|hex| hex.parse::<Digest>().ok().filter(|d| d.hex() == hex));
            if !digest.is_some_and(|d| referenced.contains(&d)) {
                remove_any(&path)?;
                recovery.removed_orphan_blobs += 1;
            }
        }
        *store.write_index() = index;
        Ok((store, recovery))
    }

    fn load_meta(&self, name: &PluginName, path: &Path) -> Option<(Version, VersionMeta)> {
        let version: Version = file_name(path)?.strip_suffix(".json")?.parse().ok()?;
        let meta: VersionMeta = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
        if meta.name != name.as_str() || meta.version != version.as_str() {
            return None;
        }
        for digest in meta.blob_digests() {
            if !self.blob_path(&digest).is_file() {
                return None;
            }
        }
        let size = fs::metadata(self.blob_path(&meta.sha256)).ok()?.len();
        (size == meta.size).then_some((version, meta))
    }

    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the store can be written: the temp folder is there.
    pub fn writable(&self) -> bool {
        self.root.join("tmp").is_dir()
    }

    /// A fresh file in `tmp/` for an upload.
    pub fn temp_file(&self) -> io::Result<(PathBuf, File)> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        let file = File::options().write(true).create_new(true).open(&path)?;
        Ok((path, file))
    }

    /// Move a complete, fsynced temp file into the blob store under its digest, durably.
    pub fn commit_blob(&self, temp: &Path, digest: &Digest) -> io::Result<()> {
        // The same digest means the same bytes, so replacing an existing blob is harmless.
        fs::rename(temp, self.blob_path(digest))?;
        sync_dir(&self.root.join("blobs/sha256"))
    }

    /// Store `bytes` as a blob, durably.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> io::Result<BlobRef> {
        let digest = Digest::of(bytes);
        if !self.blob_path(&digest).is_file() {
            let (temp, mut file) = self.temp_file()?;
            file.write_all(bytes)?;
            file.sync_all()?;
            self.commit_blob(&temp, &digest)?;
        }
        Ok(BlobRef {
            digest,
            size: bytes.len() as u64,
        })
    }

    /// One version's metadata.
    pub fn get(&self, name: &PluginName, version: &Version) -> Option<Arc<VersionMeta>> {
        self.read_index().get(name)?.get(version).cloned()
    }

    /// Every version of a plugin in semver order; `None` when the plugin is unknown.
    pub fn versions(&self, name: &PluginName) -> Option<Vec<Arc<VersionMeta>>> {
        Some(self.read_index().get(name)?.values().cloned().collect())
    }

    /// Every plugin with its latest version and number of versions.
    pub fn plugins(&self) -> Vec<(String, String, usize)> {
        self.read_index()
            .iter()
            .filter_map(|(name, versions)| {
                let (latest, _) = versions.last_key_value()?;
                Some((name.to_string(), latest.to_string(), versions.len()))
            })
            .collect()
    }

    /// How many plugins and versions the store holds.
    pub fn counts(&self) -> (usize, usize) {
        let index = self.read_index();
        (index.len(), index.values().map(BTreeMap::len).sum())
    }

    /// Whether a blob belongs to one of the plugin's images (manifest, config or layer).
    pub fn image_blob(&self, name: &PluginName, digest: &Digest) -> bool {
        self.read_index().get(name).is_some_and(|versions| {
            versions.values().any(|m| {
                m.oci.manifest.digest == *digest
                    || m.oci.config.digest == *digest
                    || m.oci.layer.digest == *digest
            })
        })
    }

    /// The version whose image manifest has this digest.
    pub fn by_manifest(&self, name: &PluginName, digest: &Digest) -> Option<Arc<VersionMeta>> {
        self.read_index()
            .get(name)?
            .values()
            .find(|m| m.oci.manifest.digest == *digest)
            .cloned()
    }

    /// Whether some version's module has this digest.
    pub fn has_module(&self, digest: &Digest) -> bool {
        self.read_index()
            .values()
            .any(|versions| versions.values().any(|m| m.sha256 == *digest))
    }

    /// Record a version whose blobs are all durable. Exactly one of racing writers creates it;
    /// the others see `Unchanged` (same module) or `Conflict` (another module).
    pub fn put_version(&self, meta: VersionMeta) -> io::Result<Put<Arc<VersionMeta>>> {
        let (name, version) = parse_ids(&meta.name, &meta.version)?;
        let dir = self.plugin_dir(&name, "versions")?;
        let path = dir.join(format!("{version}.json"));
        let bytes = serde_json::to_vec_pretty(&meta).map_err(io::Error::other)?;
        match self.link_new(&bytes, &dir, &path)? {
            true => {
                let meta = Arc::new(meta);
                self.write_index()
                    .entry(name)
                    .or_default()
                    .insert(version, Arc::clone(&meta));
                Ok(Put::Created(meta))
            }
            false => {
                let existing: VersionMeta =
                    serde_json::from_slice(&fs::read(&path)?).map_err(io::Error::other)?;
                let existing = Arc::new(existing);
                if existing.sha256 == meta.sha256 {
                    Ok(Put::Unchanged(existing))
                } else {
                    Ok(Put::Conflict(existing))
                }
            }
        }
    }

    /// A version's config JSON Schema, when one was sent.
    pub fn schema(&self, name: &PluginName, version: &Version) -> io::Result<Option<Vec<u8>>> {
        let path = self
            .root
            .join("plugins")
            .join(name.as_str())
            .join("schemas")
            .join(format!("{version}.json"));
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Set a version's schema once; the version itself may come before or after.
    pub fn put_schema(
        &self,
        name: &PluginName,
        version: &Version,
        schema: &[u8],
    ) -> io::Result<Put<()>> {
        let dir = self.plugin_dir(name, "schemas")?;
        let path = dir.join(format!("{version}.json"));
        if self.link_new(schema, &dir, &path)? {
            return Ok(Put::Created(()));
        }
        let existing: serde_json::Value =
            serde_json::from_slice(&fs::read(&path)?).map_err(io::Error::other)?;
        let new: serde_json::Value = serde_json::from_slice(schema).map_err(io::Error::other)?;
        Ok(if existing == new {
            Put::Unchanged(())
        } else {
            Put::Conflict(())
        })
    }

    /// `plugins/<name>/<kind>`, created durably when missing.
    fn plugin_dir(&self, name: &PluginName, kind: &str) -> io::Result<PathBuf> {
        let plugins = self.root.join("plugins");
        let plugin = plugins.join(name.as_str());
        let dir = plugin.join(kind);
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            sync_dir(&plugins)?;
            sync_dir(&plugin)?;
        }
        Ok(dir)
    }

    /// Write `bytes` durably at `path` unless something is there already: `false` then.
    fn link_new(&self, bytes: &[u8], dir: &Path, path: &Path) -> io::Result<bool> {
        let (temp, mut file) = self.temp_file()?;
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        let linked = written.and_then(|()| fs::hard_link(&temp, path));
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                sync_dir(dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn parse_ids(name: &str, version: &str) -> io::Result<(PluginName, Version)> {
    let name = name.parse().map_err(io::Error::other)?;
    let version = version.parse().map_err(io::Error::other)?;
    Ok((name, version))
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()
}

fn remove_any(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Make a directory's entries (a rename, a link) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(store: &Store, name: &str, version: &str, module: &[u8]) -> VersionMeta {
        let digest = Digest::of(module);
        let (temp, mut file) = store.temp_file().unwrap();
        file.write_all(module).unwrap();
        store.commit_blob(&temp, &digest).unwrap();
        let small = store.put_blob_bytes(b"{}").unwrap();
        VersionMeta {
            name: name.into(),
            version: version.into(),
            sha256: digest,
            size: module.len() as u64,
            created: "2026-01-01T00:00:00Z".into(),
            abi_version: "0.2.1".into(),
            root_id: None,
            description: None,
            oci: OciImage {
                manifest: small.clone(),
                config: small.clone(),
                layer: small,
            },
        }
    }

    #[test]
    fn a_version_is_created_once_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let first = meta(&store, "a", "1.0.0", b"one");
        assert!(matches!(
            store.put_version(first.clone()).unwrap(),
            Put::Created(_)
        ));
        assert!(matches!(
            store.put_version(first).unwrap(),
            Put::Unchanged(_)
        ));
        let other = meta(&store, "a", "1.0.0", b"two");
        assert!(matches!(
            store.put_version(other).unwrap(),
            Put::Conflict(_)
        ));

        let (reopened, recovery) = Store::open(dir.path()).unwrap();
        assert_eq!(recovery.versions, 1);
        // The module of the refused publish is named by no version.
        assert_eq!(recovery.removed_orphan_blobs, 1);
        let name = "a".parse().unwrap();
        let got = reopened.get(&name, &"1.0.0".parse().unwrap()).unwrap();
        assert_eq!(got.sha256, Digest::of(b"one"));
    }

    #[test]
    fn opening_removes_temp_files_and_metadata_without_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let m = meta(&store, "a", "1.0.0", b"one");
        store.put_version(m).unwrap();
        store.temp_file().unwrap();
        fs::remove_file(store.blob_path(&Digest::of(b"one"))).unwrap();
        let (reopened, recovery) = Store::open(dir.path()).unwrap();
        assert_eq!(recovery.removed_temp_files, 1);
        assert_eq!(recovery.skipped_metadata, 1);
        assert_eq!(reopened.counts(), (0, 0));
    }

    #[test]
    fn a_schema_is_set_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let name = "a".parse().unwrap();
        let version = "1.0.0".parse().unwrap();
        assert_eq!(store.schema(&name, &version).unwrap(), None);
        assert_eq!(
            store
                .put_schema(&name, &version, br#"{"type":"object"}"#)
                .unwrap(),
            Put::Created(())
        );
        assert_eq!(
            store
                .put_schema(&name, &version, br#"{ "type": "object" }"#)
                .unwrap(),
            Put::Unchanged(())
        );
        assert_eq!(
            store
                .put_schema(&name, &version, br#"{"type":"array"}"#)
                .unwrap(),
            Put::Conflict(())
        );
    }
}
