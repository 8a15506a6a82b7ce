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
use sha2::{Digest as _, Sha256};

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
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
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
            hasher: Sha256::new(),
            count: 0,
        }
    }
}

/// What an image is built from.
#[derive(Debug, Clone, Copy)]
pub struct ImageSource<'a> {
    pub name: &'a PluginName,
    pub version: &'a Version,
    pub module: &'a Path,
    pub module_size: u64,
    pub module_digest: &'a Digest,
    pub created: &'a str,
}

/// Build a version's image (layer, config, manifest) and store its blobs durably. The output
/// depends only on the inputs, so the same module and metadata give the same digests.
pub fn build_image(store: &Store, source: ImageSource<'_>) -> io::Result<OciImage> {
    let (temp, file) = store.temp_file()?;
    let compressed = Hashing::new(file);
    // gzip's header has no timestamp here (mtime 0) so the layer digest is reproducible.
    let gzip = GzEncoder::new(compressed, Compression::default());
    let mut tar = tar::Builder::new(Hashing::new(gzip));
    let mut header = tar::Header::new_ustar();
    header.set_size(source.module_size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, PLUGIN_FILE, File::open(source.module)?)?;
    let uncompressed = tar.into_inner()?;
    let diff_id = Digest::from_hasher(uncompressed.hasher);
    let compressed = uncompressed.inner.finish()?;
    compressed.inner.sync_all()?;
    let layer_digest = Digest::from_hasher(compressed.hasher);
    store.commit_blob(&temp, &layer_digest)?;
    let layer = BlobRef {
        digest: layer_digest.to_string(),
        size: compressed.count,
    };

    let config = json!({
        "architecture": "wasm",
        "os": "wasip1",
        "created": source.created,
        "config": {
            "Labels": {
                "org.opencontainers.image.title": source.name.as_str(),
                "org.opencontainers.image.version": source.version.as_str(),
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
        "history": [{ "created": source.created, "created_by": "wasmgate-registry" }],
    });
    let config = store.put_blob_bytes(&serde_json::to_vec(&config).map_err(io::Error::other)?)?;

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config.digest, "size": config.size },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer.digest,
            "size": layer.size,
            "annotations": { "org.opencontainers.image.title": PLUGIN_FILE },
        }],
        "annotations": {
            "module.wasm.image/variant": "compat",
            "org.opencontainers.image.title": source.name.as_str(),
            "org.opencontainers.image.version": source.version.as_str(),
            "org.opencontainers.image.created": source.created,
            "io.wasmgate.module.sha256": source.module_digest.hex(),
        },
    });
    let manifest =
        store.put_blob_bytes(&serde_json::to_vec(&manifest).map_err(io::Error::other)?)?;
    Ok(OciImage {
        manifest,
        config,
        layer,
    })
}

/// The `/v2/` routes.
pub fn routes() -> Router<Registry> {
    Router::new()
        .route("/v2", get(base))
        .route("/v2/", get(base))
        .route("/v2/_catalog", get(catalog))
        .route("/v2/{name}/manifests/{reference}", get(manifest))
        .route("/v2/{name}/blobs/{digest}", get(blob))
        .route("/v2/{name}/tags/list", get(tags))
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

fn parse_name(name: &str) -> Result<PluginName, OciError> {
    name.parse()
        .map_err(|e: String| OciError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", e))
}

fn known_name(registry: &Registry, name: &str) -> Result<PluginName, OciError> {
    let name = parse_name(name)?;
    if registry.store().versions(&name).is_none() {
        return Err(OciError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("no repository {name}"),
        ));
    }
    Ok(name)
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
    State(registry): State<Registry>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, OciError> {
    authorize(&registry, &headers)?;
    let UrlPath((name, reference)) = path.map_err(path_error)?;
    let name = known_name(&registry, &name)?;
    let store = registry.store();
    let unknown = || {
        OciError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("no manifest {reference} in {name}"),
        )
    };
    let (meta, cache_control) = if reference.starts_with("sha256:") {
        let digest: Digest = reference
            .parse()
            .map_err(|e: String| OciError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e))?;
        (
            store.by_manifest(&name, &digest).ok_or_else(unknown)?,
            IMMUTABLE,
        )
    } else {
        let version: Version = reference.parse().map_err(|_| unknown())?;
        (store.get(&name, &version).ok_or_else(unknown)?, SHORT)
    };
    let digest: Digest = meta
        .oci
        .manifest
        .digest
        .parse()
        .map_err(OciError::internal)?;
    send(
        &registry,
        &digest,
        MANIFEST_MEDIA_TYPE,
        cache_control,
        &headers,
    )
    .await
}

async fn blob(
    State(registry): State<Registry>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, OciError> {
    authorize(&registry, &headers)?;
    let UrlPath((name, digest)) = path.map_err(path_error)?;
    let name = known_name(&registry, &name)?;
    let digest: Digest = digest
        .parse()
        .map_err(|e: String| OciError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e))?;
    if !registry.store().image_blob(&name, &digest) {
        return Err(OciError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("no blob {digest} in {name}"),
        ));
    }
    send(
        &registry,
        &digest,
        "application/octet-stream",
        IMMUTABLE,
        &headers,
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

async fn tags(
    State(registry): State<Registry>,
    path: Result<UrlPath<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, OciError> {
    authorize(&registry, &headers)?;
    let UrlPath(name) = path.map_err(path_error)?;
    let name = known_name(&registry, &name)?;
    let mut tags: Vec<String> = registry
        .store()
        .versions(&name)
        .unwrap_or_default()
        .iter()
        .map(|m| m.version.clone())
        .collect();
    // The distribution spec pages tags in lexical order.
    tags.sort();
    let mut limit = None;
    let mut last = None;
    for pair in query.as_deref().unwrap_or("").split('&') {
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
    let mut response = Json(json!({ "name": name.as_str(), "tags": tags })).into_response();
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
            created: "2026-01-01T00:00:00Z",
        };
        let first = build_image(&store, source).unwrap();
        let second = build_image(&store, source).unwrap();
        assert_eq!(first, second);

        let layer = std::fs::read(store.blob_path(&first.layer.digest.parse().unwrap())).unwrap();
        assert_eq!(layer.len() as u64, first.layer.size);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()));
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some(PLUGIN_FILE));
        let mut content = Vec::new();
        io::Read::read_to_end(&mut entry, &mut content).unwrap();
        assert_eq!(content, b"\0asm\x01\0\0\0");

        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(store.blob_path(&first.manifest.digest.parse().unwrap())).unwrap(),
        )
        .unwrap();
        assert_eq!(
            manifest["annotations"]["module.wasm.image/variant"],
            "compat"
        );
        assert_eq!(manifest["layers"][0]["digest"], first.layer.digest.as_str());
        assert_eq!(manifest["config"]["digest"], first.config.digest.as_str());
    }
}
