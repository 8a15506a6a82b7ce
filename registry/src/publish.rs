//! Publishing a version, without HTTP: receive the module into a temp file while hashing it,
//! check it against what the publisher stated, validate it as proxy-wasm, commit the blob, build
//! its OCI image and record the version. The handler in `api` only parses and answers.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use futures_util::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncWriteExt as _, BufWriter};
use wasmgate_artifact::wasm::{self, WasmError, WASM_HEADER};

use crate::body::BodyError;
use crate::names::{Digest, PluginName, Version};
use crate::oci::{build_image, ImageSource};
use crate::store::{Put, VersionMeta};
use crate::Registry;

/// Write buffer of an upload: fewer, larger writes.
const UPLOAD_BUFFER: usize = 256 * 1024;

/// Metadata a publisher states alongside the module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stated {
    /// The SHA256 the module must have.
    pub sha256: Option<Digest>,
    /// The module's root id.
    pub root_id: Option<String>,
    /// A one-line description.
    pub description: Option<String>,
}

/// How a publish that was not refused ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The version was created.
    Created(Arc<VersionMeta>),
    /// The version already existed with the same module.
    Unchanged(Arc<VersionMeta>),
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The module is over the configured limit.
    #[error("modules are limited to {limit} bytes")]
    TooLarge { limit: u64 },
    /// The module is not Wasm, not valid Wasm, or not proxy-wasm.
    #[error(transparent)]
    Wasm(WasmError),
    /// The module's SHA256 is not the stated one.
    #[error("the upload has sha256 {}, not the {} stated", .actual.hex(), .stated.hex())]
    DigestMismatch { actual: Digest, stated: Digest },
    /// The version exists with another module; versions are immutable.
    #[error("{} {} already exists with other content (sha256 {}); versions are immutable", .0.name, .0.version, .0.sha256.hex())]
    Conflict(Arc<VersionMeta>),
    /// The client sent its body too slowly.
    #[error("{0}")]
    TooSlow(String),
    /// The body stopped before its end.
    #[error("the upload did not complete")]
    Interrupted,
    /// The store failed.
    #[error("store: {0}")]
    Io(#[from] io::Error),
    /// A blocking task failed.
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A receive that stopped: why, and whether part of the body is still unread (the caller may
/// want to drain it before closing).
#[derive(Debug)]
pub struct Stopped {
    /// Why it stopped.
    pub error: PublishError,
    /// The body was not read to its end.
    pub body_left: bool,
}

impl From<PublishError> for Stopped {
    fn from(error: PublishError) -> Self {
        Stopped {
            error,
            body_left: false,
        }
    }
}

/// A module received into the store's temp directory, hashed; the file goes away on drop
/// unless [`commit`] moved it into the store.
#[derive(Debug)]
pub struct Upload {
    path: Option<PathBuf>,
    digest: Digest,
    size: u64,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The answer for an existing version: the same module is a no-op, another one a conflict.
pub fn existing(existing: Arc<VersionMeta>, digest: &Digest) -> Result<Published, PublishError> {
    if existing.sha256 == *digest {
        Ok(Published::Unchanged(existing))
    } else {
        Err(PublishError::Conflict(existing))
    }
}

/// Read `body` into a temp file of the store, hashing it and counting its bytes, refusing it
/// from its first bytes when it is not Wasm and as soon as it passes the upload limit.
pub async fn receive<S>(registry: &Registry, mut body: S) -> Result<Upload, Stopped>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    let limit = registry.config().max_upload_bytes;
    let (temp_path, file) = registry.store().temp_file().map_err(PublishError::Io)?;
    let mut upload = Upload {
        path: Some(temp_path),
        digest: Digest::from_hasher(Sha256::new()),
        size: 0,
    };
    let mut writer = BufWriter::with_capacity(UPLOAD_BUFFER, tokio::fs::File::from_std(file));
    let mut hasher = Sha256::new();
    let left = |error| Stopped {
        error,
        body_left: true,
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            if BodyError::is_too_slow(&e) {
                PublishError::TooSlow(e.to_string())
            } else {
                PublishError::Interrupted
            }
        })?;
        let before = upload.size;
        upload.size += chunk.len() as u64;
        registry
            .metrics()
            .bytes_received
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if upload.size > limit {
            return Err(left(PublishError::TooLarge { limit }));
        }
        // Refuse anything that is not Wasm from its first bytes, not after storing it all.
        if before < WASM_HEADER.len() as u64 {
            let start = usize::try_from(before).unwrap_or(0);
            let seen = &chunk[..chunk.len().min(WASM_HEADER.len() - start)];
            if seen != &WASM_HEADER[start..start + seen.len()] {
                return Err(left(PublishError::Wasm(WasmError::NotWasm)));
            }
        }
        hasher.update(&chunk);
        writer.write_all(&chunk).await.map_err(PublishError::Io)?;
    }
    if upload.size < WASM_HEADER.len() as u64 {
        return Err(PublishError::Wasm(WasmError::NotWasm).into());
    }
    writer.flush().await.map_err(PublishError::Io)?;
    writer
        .into_inner()
        .sync_all()
        .await
        .map_err(PublishError::Io)?;
    upload.digest = Digest::from_hasher(hasher);
    Ok(upload)
}

/// Check a received module against what was stated, validate it as proxy-wasm and record it as
/// `name` `version` with its OCI image. An existing version answers as [`existing`] does.
pub async fn commit(
    registry: &Registry,
    name: PluginName,
    version: Version,
    mut upload: Upload,
    stated: Stated,
) -> Result<Published, PublishError> {
    let digest = upload.digest;
    if let Some(expected) = stated.sha256 {
        if expected != digest {
            return Err(PublishError::DigestMismatch {
                actual: digest,
                stated: expected,
            });
        }
    }
    if let Some(meta) = registry.store().get(&name, &version) {
        return existing(meta, &digest);
    }
    let Some(temp_path) = upload.path.clone() else {
        return Err(PublishError::Io(io::Error::other(
            "upload already committed",
        )));
    };

    let inspected = temp_path.clone();
    let abi_version = tokio::task::spawn_blocking(move || {
        std::fs::File::open(&inspected)
            .map_err(|_| WasmError::Io)
            .and_then(wasm::inspect)
            .and_then(|module| module.abi_version().map(str::to_owned))
    })
    .await?
    .map_err(PublishError::Wasm)?;

    let created = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let size = upload.size;
    let registry = registry.clone();
    // From here the blocking task owns the temp file: it moves it into the store or removes it.
    upload.path = None;
    let put = tokio::task::spawn_blocking(move || {
        let store = registry.store();
        if let Err(e) = store.commit_blob(&temp_path, &digest) {
            let _ = std::fs::remove_file(&temp_path);
            return Err(e);
        }
        let module = store.blob_path(&digest);
        let oci = build_image(
            store,
            ImageSource {
                name: &name,
                version: &version,
                module: &module,
                module_size: size,
                module_digest: &digest,
            },
        )?;
        store.put_version(VersionMeta {
            name: name.to_string(),
            version: version.to_string(),
            sha256: digest,
            size,
            created,
            abi_version,
            root_id: stated.root_id,
            description: stated.description,
            oci,
        })
    })
    .await??;
    match put {
        Put::Created(meta) => {
            tracing::info!(name = %meta.name, version = %meta.version, sha256 = %meta.sha256, size = meta.size, "published");
            Ok(Published::Created(meta))
        }
        Put::Unchanged(meta) | Put::Conflict(meta) => existing(meta, &digest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use futures_util::stream;
    use wasmgate_artifact::test_module::proxy_module;

    fn registry(dir: &tempfile::TempDir, limit: u64) -> Registry {
        Registry::open(Config {
            data_dir: dir.path().to_path_buf(),
            max_upload_bytes: limit,
            ..Config::default()
        })
        .unwrap()
    }

    fn chunks(bytes: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, axum::Error>> + Unpin {
        let pieces: Vec<_> = bytes
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(pieces)
    }

    fn ids(name: &str, version: &str) -> (PluginName, Version) {
        (name.parse().unwrap(), version.parse().unwrap())
    }

    #[tokio::test]
    async fn a_module_is_received_committed_and_then_unchanged_or_in_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(&dir, 1 << 20);
        let module = proxy_module("a");
        let upload = receive(&registry, chunks(&module, 3)).await.unwrap();
        assert_eq!(upload.size, module.len() as u64);
        assert_eq!(
            upload.digest,
            Digest::from_hasher(Sha256::new_with_prefix(&module))
        );
        let (name, version) = ids("demo", "1.0.0");
        let stated = Stated {
            sha256: Some(upload.digest),
            ..Stated::default()
        };
        let created = commit(&registry, name.clone(), version.clone(), upload, stated)
            .await
            .unwrap();
        let Published::Created(meta) = created else {
            panic!("not created: {created:?}")
        };
        assert_eq!(meta.abi_version, "0.2.1");
        assert!(registry.store().blob_path(&meta.sha256).exists());

        let again = receive(&registry, chunks(&module, 64)).await.unwrap();
        let unchanged = commit(
            &registry,
            name.clone(),
            version.clone(),
            again,
            Stated::default(),
        );
        assert!(matches!(unchanged.await, Ok(Published::Unchanged(_))));

        let other = receive(&registry, chunks(&proxy_module("b"), 64))
            .await
            .unwrap();
        let conflict = commit(&registry, name, version, other, Stated::default()).await;
        assert!(matches!(conflict, Err(PublishError::Conflict(_))));
    }

    #[tokio::test]
    async fn refusals_name_the_reason_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(&dir, 64);
        let temp_files = || std::fs::read_dir(dir.path().join("tmp")).unwrap().count();

        let stopped = receive(&registry, chunks(b"GIF89a and more", 2))
            .await
            .unwrap_err();
        assert!(matches!(
            stopped.error,
            PublishError::Wasm(WasmError::NotWasm)
        ));
        assert!(stopped.body_left);

        let stopped = receive(&registry, chunks(b"\0as", 2)).await.unwrap_err();
        assert!(matches!(
            stopped.error,
            PublishError::Wasm(WasmError::NotWasm)
        ));
        assert!(!stopped.body_left);

        let big = [WASM_HEADER.as_slice(), &[0u8; 100]].concat();
        let stopped = receive(&registry, chunks(&big, 16)).await.unwrap_err();
        assert!(matches!(
            stopped.error,
            PublishError::TooLarge { limit: 64 }
        ));
        assert!(stopped.body_left);

        let plain = wasmgate_artifact::test_module::module_exporting(&["memory"]);
        let upload = receive(&registry, chunks(&plain, 8)).await.unwrap();
        let (name, version) = ids("demo", "1.0.0");
        let stated = Stated {
            sha256: Some(Digest::from_hasher(Sha256::new_with_prefix(b"other"))),
            ..Stated::default()
        };
        let mismatch = commit(&registry, name.clone(), version.clone(), upload, stated).await;
        assert!(matches!(mismatch, Err(PublishError::DigestMismatch { .. })));

        let upload = receive(&registry, chunks(&plain, 8)).await.unwrap();
        let refused = commit(&registry, name, version, upload, Stated::default()).await;
        assert!(matches!(
            refused,
            Err(PublishError::Wasm(WasmError::NotProxyWasm(_)))
        ));
        assert_eq!(temp_files(), 0);
    }
}
