//! The OCI distribution pull API. Each version is an image in the *compat* variant of the Wasm
//! image specification, the one Istio's fetcher tries first for OCI manifests: one
//! `tar+gzip` layer holding `plugin.wasm`, a standard image config, and the annotation
//! `module.wasm.image/variant: compat`. Standard media types keep skopeo, crane and docker happy.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;

use crate::download::{serve_file, Serve, IMMUTABLE, SHORT};
use crate::error::OciError;
use crate::names::{Digest, PluginName, Version};
use crate::store::{BlobRef, OciImage, Store};
use crate::Registry;

/// The manifest media type served.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The image config media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The layer media type: a gzipped tar holding `plugin.wasm`.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file name the compat variant requires inside the layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: sha2::Digest::new(),
            count: 0,
        }
    }
}

/// An image's blobs and manifest, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBlobs {
    /// The `tar+gzip` layer holding `plugin.wasm`.
    pub layer: Vec<u8>,
    /// The image config.
    pub config: Vec<u8>,
    /// The image manifest; its sha256 is the image's digest (what Istio's `sha256` pins for
    /// an `oci://` URL).
    pub manifest: Vec<u8>,
}

/// An image whose layer went to a writer.
struct Built<W> {
    layer: W,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

/// The one image builder, behind both the registry's OCI API and `wasmgate push --oci`, so a
/// module gets the same manifest digest whichever way it is published. The layer streams to
/// `layer` (a large module is never held in memory). Nothing digested depends on the clock or
/// the machine: tar entry with mtime 0, uid/gid 0, mode 0644; gzip without a timestamp at the
/// default level; JSON with sorted keys; no `created` field.
fn build<W: Write>(
    module: impl io::Read,
    module_size: u64,
    module_digest: &Digest,
    name: &str,
    version: &str,
    layer: W,
) -> io::Result<Built<W>> {
    // GzEncoder writes mtime 0 and no file name, so the layer digest is reproducible.
    let gzip = GzEncoder::new(Hashing::new(layer), Compression::default());
    let mut tar = tar::Builder::new(Hashing::new(gzip));
    let mut header = tar::Header::new_ustar();
    header.set_size(module_size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, PLUGIN_FILE, module)?;
    let uncompressed = tar.into_inner()?;
    let diff_id = Digest::from_hasher(uncompressed.hasher);
    let compressed = uncompressed.inner.finish()?;
    let layer_digest = Digest::from_hasher(compressed.hasher);

    let config = json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {
            "Labels": {
                "org.opencontainers.image.title": name,
                "org.opencontainers.image.version": version,
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
    });
    let config = serde_json::to_vec(&config).map_err(io::Error::other)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": Digest::of(&config).to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer_digest.to_string(),
            "size": compressed.count,
            "annotations": { "org.opencontainers.image.title": PLUGIN_FILE },
        }],
        "annotations": {
            "module.wasm.image/variant": "compat",
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": version,
            "io.wasmgate.module.sha256": module_digest.hex(),
        },
    });
    let manifest = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
    Ok(Built {
        layer: compressed.inner,
        config,
        manifest,
    })
}

/// Build the image of `module` (plugin `name` at `version`) in memory: what `wasmgate push
/// --oci` sends, byte for byte what the registry serves for the same module.
pub fn image(module: &[u8], name: &str, version: &str) -> io::Result<ImageBlobs> {
    let digest = Digest::of(module);
    let built = build(
        module,
        module.len() as u64,
        &digest,
        name,
        version,
        Vec::new(),
    )?;
    Ok(ImageBlobs {
        layer: built.layer,
        config: built.config,
        manifest: built.manifest,
    })
}

/// What an image is built from.
#[derive(Debug, Clone, Copy)]
pub struct ImageSource<'a> {
    pub name: &'a PluginName,
    pub version: &'a Version,
    pub module: &'a Path,
    pub module_size: u64,
    pub module_digest: &'a Digest,
}

/// Build a version's image with the shared builder, the layer streamed to a blob file, and
/// store its blobs durably.
pub fn build_image(store: &Store, source: ImageSource<'_>) -> io::Result<OciImage> {
    let (temp, file) = store.temp_file()?;
    let built = build(
        File::open(source.module)?,
        source.module_size,
        source.module_digest,
        source.name.as_str(),
        source.version.as_str(),
        Hashing::new(file),
    )?;
    built.layer.inner.sync_all()?;
    let layer_digest = Digest::from_hasher(built.layer.hasher);
    store.commit_blob(&temp, &layer_digest)?;
    Ok(OciImage {
        layer: BlobRef {
            digest: layer_digest,
            size: built.layer.count,
        },
        config: store.put_blob_bytes(&built.config)?,
        manifest: store.put_blob_bytes(&built.manifest)?,
    })
}

/// The `/v2/` routes. Repository names may be nested (`wasmgate/header-rewrite`, as in
/// `wasmgate push --oci HOST/wasmgate`): the last component names the plugin, a prefix is
/// accepted and ignored.
pub fn routes() -> Router<Registry> {
    Router::new()
        .route("/v2", get(base))
        .route("/v2/", get(base))
        .route("/v2/_catalog", get(catalog))
        .route("/v2/{*path}", get(dispatch))
}

/// What a `/v2/<name>/...` path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    Tags { name: &'a str },
}

/// Split `<name>/manifests/<reference>`, `<name>/blobs/<digest>` or `<name>/tags/list`,
/// `<name>` holding any number of `/`.
fn target(path: &str) -> Option<Target<'_>> {
    if let Some(name) = path.strip_suffix("/tags/list") {
        return Some(Target::Tags { name });
    }
    let (rest, last) = path.rsplit_once('/')?;
    let (name, kind) = rest.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Target::Manifest {
            name,
            reference: last,
        }),
        "blobs" => Some(Target::Blob { name, digest: last }),
        _ => None,
    }
}

/// The tag that resolves to a plugin's newest version (highest in semver order).
pub const LATEST: &str = "latest";

async fn dispatch(
    State(registry): State<Registry>,
    path: Result<UrlPath<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, OciError> {
    authorize(&registry, &headers)?;
    let UrlPath(path) = path.map_err(path_error)?;
    match target(&path) {
        Some(Target::Manifest { name, reference }) => {
            manifest(&registry, name, reference, &headers).await
        }
        Some(Target::Blob { name, digest }) => blob(&registry, name, digest, &headers).await,
        Some(Target::Tags { name }) => tags(&registry, name, query.as_deref()),
        None => Ok(fallback(true)),
    }
}

/// Answer for `/v2/` paths no route matches: reads are unknown names, writes unsupported.
pub fn fallback(read: bool) -> Response {
    if read {
        OciError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "no such repository or route",
        )
        .into_response()
    } else {
        OciError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "this registry is read-only over the OCI API; publish with the HTTP API",
        )
        .into_response()
    }
}

fn api_version(mut response: Response) -> Response {
    response.headers_mut().insert(
        "docker-distribution-api-version",
        header::HeaderValue::from_static("registry/2.0"),
    );
    response
}

fn authorize(registry: &Registry, headers: &HeaderMap) -> Result<(), OciError> {
    if registry.can_read(headers) {
        Ok(())
    } else {
        Err(OciError::unauthorized())
    }
}

/// The plugin a repository name stands for: its last component; a prefix must be
/// lowercase path components.
fn parse_name(name: &str) -> Result<PluginName, OciError> {
    let invalid = |e: String| OciError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", e);
    let (prefix, plugin) = match name.rsplit_once('/') {
        Some((prefix, plugin)) => (Some(prefix), plugin),
        None => (None, name),
    };
    if let Some(prefix) = prefix {
        for part in prefix.split('/') {
            part.parse::<PluginName>()
                .map_err(|e| invalid(format!("repository {name:?}: prefix {part:?}: {e}")))?;
        }
    }
    plugin.parse().map_err(invalid)
}

fn known_name(registry: &Registry, name: &str) -> Result<PluginName, OciError> {
    let plugin = parse_name(name)?;
    if registry.store().versions(&plugin).is_none() {
        return Err(OciError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("no repository {name}"),
        ));
    }
    Ok(plugin)
}

fn path_error(_: PathRejection) -> OciError {
    OciError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", "malformed path")
}

async fn base(State(registry): State<Registry>, headers: HeaderMap) -> Result<Response, OciError> {
    authorize(&registry, &headers)?;
    Ok(api_version(Json(json!({})).into_response()))
}

async fn catalog(
    State(registry): State<Registry>,
    headers: HeaderMap,
) -> Result<Response, OciError> {
    authorize(&registry, &headers)?;
    let repositories: Vec<String> = registry
        .store()
        .plugins()
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    Ok(api_version(
        Json(json!({ "repositories": repositories })).into_response(),
    ))
}

async fn manifest(
    registry: &Registry,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
) -> Result<Response, OciError> {
    let plugin = known_name(registry, name)?;
    let store = registry.store();
    let unknown = || {
        OciError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("no manifest {reference} in {name}"),
        )
    };
    let (meta, cache_control) = if reference.starts_with("sha256:") {
        let digest = Digest::parse_canonical(reference)
            .map_err(|e| OciError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string()))?;
        (
            store.by_manifest(&plugin, &digest).ok_or_else(unknown)?,
            IMMUTABLE,
        )
    } else if reference == LATEST {
        // Versions come in semver order; `latest` moves with every publish, so it is
        // cached as briefly as a version tag.
        let newest = store
            .versions(&plugin)
            .and_then(|versions| versions.last().cloned());
        (newest.ok_or_else(unknown)?, SHORT)
    } else {
        let version: Version = reference.parse().map_err(|_| unknown())?;
        (store.get(&plugin, &version).ok_or_else(unknown)?, SHORT)
    };
    send(
        registry,
        &meta.oci.manifest.digest,
        MANIFEST_MEDIA_TYPE,
        cache_control,
        headers,
    )
    .await
}

async fn blob(
    registry: &Registry,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
) -> Result<Response, OciError> {
    let plugin = known_name(registry, name)?;
    let digest = Digest::parse_canonical(digest)
        .map_err(|e| OciError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string()))?;
    if !registry.store().image_blob(&plugin, &digest) {
        return Err(OciError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("no blob {digest} in {name}"),
        ));
    }
    send(
        registry,
        &digest,
        "application/octet-stream",
        IMMUTABLE,
        headers,
    )
    .await
}

async fn send(
    registry: &Registry,
    digest: &Digest,
    content_type: &'static str,
    cache_control: &'static str,
    headers: &HeaderMap,
) -> Result<Response, OciError> {
    let serve = Serve {
        digest,
        content_type,
        cache_control,
        extra: vec![(
            HeaderName::from_static("docker-content-digest"),
            digest.to_string(),
        )],
        bytes_served: registry.metrics().bytes_served.clone(),
    };
    match serve_file(&registry.store().blob_path(digest), serve, headers).await {
        Ok(Some(response)) => Ok(api_version(response)),
        Ok(None) => Err(OciError::internal(format!("blob {digest} is missing"))),
        Err(e) => Err(OciError::internal(e)),
    }
}

fn tags(registry: &Registry, name: &str, query: Option<&str>) -> Result<Response, OciError> {
    let plugin = known_name(registry, name)?;
    let mut tags: Vec<String> = registry
        .store()
        .versions(&plugin)
        .unwrap_or_default()
        .iter()
        .map(|m| m.version.clone())
        .collect();
    tags.push(LATEST.to_owned());
    // The distribution spec pages tags in lexical order.
    tags.sort();
    let mut limit = None;
    let mut last = None;
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("n", n)) => {
                limit = Some(n.parse::<usize>().map_err(|_| {
                    OciError::new(
                        StatusCode::BAD_REQUEST,
                        "PAGINATION_NUMBER_INVALID",
                        "n is a number",
                    )
                })?);
            }
            Some(("last", l)) => last = Some(l.to_owned()),
            _ => {}
        }
    }
    if let Some(last) = &last {
        tags.retain(|t| t > last);
    }
    let mut link = None;
    if let Some(limit) = limit {
        if tags.len() > limit {
            tags.truncate(limit);
            if let Some(last) = tags.last() {
                link = Some(format!(
                    "</v2/{name}/tags/list?n={limit}&last={last}>; rel=\"next\""
                ));
            }
        }
    }
    let mut response = Json(json!({ "name": name, "tags": tags })).into_response();
    if let Some(link) = link {
        if let Ok(value) = header::HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(api_version(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_is_reproducible_and_holds_the_module() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let module = dir.path().join("m.wasm");
        std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
        let name = "a".parse().unwrap();
        let version = "1.0.0".parse().unwrap();
        let digest = Digest::of(b"\0asm\x01\0\0\0");
        let source = ImageSource {
            name: &name,
            version: &version,
            module: &module,
            module_size: 8,
            module_digest: &digest,
        };
        let first = build_image(&store, source).unwrap();
        let second = build_image(&store, source).unwrap();
        assert_eq!(first, second);

        let layer = std::fs::read(store.blob_path(&first.layer.digest)).unwrap();
        assert_eq!(layer.len() as u64, first.layer.size);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()));
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some(PLUGIN_FILE));
        let mut content = Vec::new();
        io::Read::read_to_end(&mut entry, &mut content).unwrap();
        assert_eq!(content, b"\0asm\x01\0\0\0");

        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(store.blob_path(&first.manifest.digest)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            manifest["annotations"]["module.wasm.image/variant"],
            "compat"
        );
        assert_eq!(
            manifest["layers"][0]["digest"],
            first.layer.digest.to_string()
        );
        assert_eq!(
            manifest["config"]["digest"],
            first.config.digest.to_string()
        );
        // The stored image is the shared builder's, byte for byte.
        let blobs = image(b"\0asm\x01\0\0\0", "a", "1.0.0").unwrap();
        assert_eq!(first.manifest.digest, Digest::of(&blobs.manifest));
    }

    #[test]
    fn nothing_digested_depends_on_the_clock() {
        let blobs = image(b"\0asm\x01\0\0\0", "jwt-auth", "0.1.0").unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&blobs.config),
            String::from_utf8_lossy(&blobs.manifest)
        );
        assert!(!text.contains("created"), "{text}");
        // gzip's MTIME (bytes 4..8) is zero.
        assert_eq!(blobs.layer[4..8], [0, 0, 0, 0]);
        assert_eq!(
            image(b"\0asm\x01\0\0\0", "jwt-auth", "0.1.0").unwrap(),
            blobs
        );
    }

    #[test]
    fn paths_split_with_nested_names() {
        assert_eq!(
            target("wasmgate/header-rewrite/manifests/latest"),
            Some(Target::Manifest {
                name: "wasmgate/header-rewrite",
                reference: "latest"
            })
        );
        assert_eq!(
            target("a/b/c/blobs/sha256:00"),
            Some(Target::Blob {
                name: "a/b/c",
                digest: "sha256:00"
            })
        );
        assert_eq!(target("x/tags/list"), Some(Target::Tags { name: "x" }));
        assert_eq!(target("x/other/y"), None);
        assert_eq!(target("manifests"), None);
        assert_eq!(
            parse_name("wasmgate/header-rewrite").unwrap().as_str(),
            "header-rewrite"
        );
        assert!(parse_name("Wasmgate/header-rewrite").is_err());
        assert!(parse_name("a//header-rewrite").is_err());
        assert!(parse_name("../header-rewrite").is_err());
    }
}
