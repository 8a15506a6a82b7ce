//! The HTTP API: publish, list, metadata, downloads, health and metrics.

use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use futures_util::StreamExt as _;
use serde_json::Value;
use wasmgate_artifact::wasm::WasmError;

use crate::body::BodyError;
use crate::download::{serve_file, Serve, IMMUTABLE, SHORT};
use crate::error::ApiError;
use crate::extract::{CanPublish, CanRead, PluginPath, VersionPath};
use crate::names::{Digest, PluginName, Version};
use crate::oci;
use crate::publish::{self, PublishError, Published, Stated, Stopped};
use crate::store::Put;
use crate::wire::{
    PluginList, PluginSummary, SchemaPut, SchemaState, VersionInfo, VersionList, VersionSummary,
};
use crate::{metrics, Registry};

/// Header: the SHA256 the client expects the upload to have (64 hex).
pub const SHA256_HEADER: &str = "x-wasmgate-sha256";
/// Header: the module's root id (metadata).
pub const ROOT_ID_HEADER: &str = "x-wasmgate-root-id";
/// Header: a one-line description (metadata).
pub const DESCRIPTION_HEADER: &str = "x-wasmgate-description";

/// The largest config JSON Schema accepted.
const MAX_SCHEMA_BYTES: usize = 1024 * 1024;
const MAX_DESCRIPTION_BYTES: usize = 1024;
/// After refusing an upload, how long, with what pauses at most, and how much of its body to
/// read and throw away (nginx's `lingering_time` and `lingering_timeout`).
const LINGER_TIME: Duration = Duration::from_secs(30);
const LINGER_PAUSE: Duration = Duration::from_secs(5);
const LINGER_BYTES: u64 = 1024 * 1024 * 1024;

/// The registry's routes, for [`crate::serve_on`] or for tests with `oneshot`.
pub fn app(registry: Registry) -> Router {
    Router::new()
        .route("/api/v1/plugins", get(list_plugins))
        .route("/api/v1/plugins/{name}", get(list_versions))
        .route(
            "/api/v1/plugins/{name}/versions/{version}",
            get(get_version).put(publish),
        )
        .route(
            "/api/v1/plugins/{name}/versions/{version}/schema",
            put(put_schema),
        )
        .route(
            "/api/v1/plugins/{name}/versions/{version}/module",
            get(download_module),
        )
        .route("/api/v1/blobs/{digest}", get(download_blob))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .merge(oci::routes())
        .route_layer(from_fn_with_state(registry.clone(), metrics::track))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(registry)
}

fn is_oci(uri: &Uri) -> bool {
    uri.path() == "/v2" || uri.path().starts_with("/v2/")
}

async fn fallback(method: Method, uri: Uri) -> Response {
    if is_oci(&uri) {
        return oci::fallback(method == Method::GET || method == Method::HEAD);
    }
    ApiError::not_found("not_found", "no such route").into_response()
}

async fn method_not_allowed(uri: Uri) -> Response {
    if is_oci(&uri) {
        return oci::fallback(false);
    }
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
    .into_response()
}

async fn readyz(State(registry): State<Registry>) -> Response {
    if registry.store().writable() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store is not writable",
        )
        .into_response()
    }
}

async fn render_metrics(State(registry): State<Registry>) -> Response {
    let (plugins, versions) = registry.store().counts();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        registry.metrics().render(plugins, versions),
    )
        .into_response()
}

async fn list_plugins(_: CanRead, State(registry): State<Registry>) -> Json<PluginList> {
    let plugins = registry
        .store()
        .plugins()
        .into_iter()
        .map(|(name, latest, versions)| PluginSummary {
            latest,
            name,
            versions,
        })
        .collect();
    Json(PluginList { plugins })
}

async fn list_versions(
    _: CanRead,
    State(registry): State<Registry>,
    PluginPath(name): PluginPath,
) -> Result<Json<VersionList>, ApiError> {
    let versions = registry
        .store()
        .versions(&name)
        .ok_or_else(|| ApiError::not_found("plugin_not_found", format!("no plugin {name}")))?;
    Ok(Json(VersionList {
        name: name.to_string(),
        versions: versions
            .iter()
            .map(|m| VersionSummary::from(&**m))
            .collect(),
    }))
}

fn version_not_found(name: &PluginName, version: &Version) -> ApiError {
    ApiError::not_found(
        "version_not_found",
        format!("no version {version} of {name}"),
    )
}

async fn get_version(
    _: CanRead,
    State(registry): State<Registry>,
    VersionPath(name, version): VersionPath,
) -> Result<Json<VersionInfo>, ApiError> {
    let meta = registry
        .store()
        .get(&name, &version)
        .ok_or_else(|| version_not_found(&name, &version))?;
    let schema = registry
        .store()
        .schema(&name, &version)
        .map_err(ApiError::internal)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    Ok(Json(VersionInfo::new(&meta, schema)))
}

async fn download_module(
    _: CanRead,
    State(registry): State<Registry>,
    VersionPath(name, version): VersionPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let meta = registry
        .store()
        .get(&name, &version)
        .ok_or_else(|| version_not_found(&name, &version))?;
    send_module(&registry, &meta.sha256, SHORT, &headers).await
}

async fn download_blob(
    _: CanRead,
    State(registry): State<Registry>,
    path: Result<UrlPath<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let UrlPath(digest) =
        path.map_err(|_| ApiError::bad_request("invalid_path", "malformed path"))?;
    let digest = Digest::parse_canonical(&digest)
        .map_err(|e| ApiError::bad_request("invalid_digest", e.to_string()))?;
    if !registry.store().has_module(&digest) {
        return Err(ApiError::not_found(
            "blob_not_found",
            format!("no module {digest}"),
        ));
    }
    send_module(&registry, &digest, IMMUTABLE, &headers).await
}

async fn send_module(
    registry: &Registry,
    digest: &Digest,
    cache_control: &'static str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let serve = Serve {
        digest,
        content_type: "application/wasm",
        cache_control,
        extra: Vec::new(),
        bytes_served: registry.metrics().bytes_served.clone(),
    };
    match serve_file(&registry.store().blob_path(digest), serve, headers).await {
        Ok(Some(response)) => Ok(response),
        Ok(None) => Err(ApiError::internal(format!("blob {digest} is missing"))),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Metadata sent with a publish, from its headers.
fn publish_headers(headers: &HeaderMap) -> Result<Stated, ApiError> {
    let text = |name: &'static str| -> Result<Option<String>, ApiError> {
        headers
            .get(name)
            .map(|v| {
                String::from_utf8(v.as_bytes().to_vec())
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| {
                        ApiError::bad_request("invalid_header", format!("{name} is not UTF-8"))
                    })
            })
            .transpose()
    };
    let sha256 = text(SHA256_HEADER)?
        .map(|value| {
            value.parse::<Digest>().map_err(|e| {
                ApiError::bad_request("invalid_header", format!("{SHA256_HEADER}: {e}"))
            })
        })
        .transpose()?;
    let root_id = text(ROOT_ID_HEADER)?;
    if let Some(root_id) = &root_id {
        let ok = (1..=128).contains(&root_id.len())
            && root_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(ApiError::bad_request(
                "invalid_header",
                format!("{ROOT_ID_HEADER}: 1 to 128 of A-Z a-z 0-9 . _ -"),
            ));
        }
    }
    let description = text(DESCRIPTION_HEADER)?;
    if let Some(description) = &description {
        if description.len() > MAX_DESCRIPTION_BYTES || description.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_header",
                format!("{DESCRIPTION_HEADER}: one line of at most {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
    }
    Ok(Stated {
        sha256,
        root_id,
        description,
    })
}

/// Refuse an upload at once and read what is left of its body in the background, within limits,
/// so the client reads the answer instead of a reset connection (nginx's lingering close); the
/// connection closes after it. A client waiting for `100-continue` has sent nothing: nothing to
/// read.
fn refuse_upload(error: ApiError, stream: BodyDataStream, headers: &HeaderMap) -> ApiError {
    if !headers.contains_key(header::EXPECT) {
        tokio::spawn(linger(stream));
    }
    error.closing()
}

async fn linger(mut stream: BodyDataStream) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut total = 0u64;
    loop {
        let next = tokio::time::timeout(LINGER_PAUSE, stream.next());
        match tokio::time::timeout_at(deadline, next).await {
            Ok(Ok(Some(Ok(chunk)))) => {
                total += chunk.len() as u64;
                if total > LINGER_BYTES {
                    break;
                }
            }
            _ => break,
        }
    }
}

/// The answer when a body stops before its end.
fn body_error(error: &axum::Error) -> ApiError {
    if BodyError::is_too_slow(error) {
        publish_error(PublishError::TooSlow(error.to_string()))
    } else {
        publish_error(PublishError::Interrupted)
    }
}

/// A refused publish as the client sees it.
fn publish_error(error: PublishError) -> ApiError {
    let message = error.to_string();
    match error {
        PublishError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
        }
        PublishError::Wasm(error) => {
            let code = match error {
                WasmError::NotWasm => "not_wasm",
                WasmError::Invalid(_) => "invalid_wasm",
                WasmError::NotProxyWasm(_) => "not_proxy_wasm",
                WasmError::Io => return ApiError::internal("cannot read an upload back"),
            };
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
        }
        PublishError::DigestMismatch { .. } => {
            ApiError::bad_request("digest_mismatch", format!("{message} in {SHA256_HEADER}"))
        }
        PublishError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "version_exists", message),
        PublishError::TooSlow(_) => {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_too_slow", message).closing()
        }
        PublishError::Interrupted => ApiError::bad_request("upload_interrupted", message),
        PublishError::Io(_) | PublishError::Task(_) => ApiError::internal(message),
    }
}

fn published_answer(published: Published) -> Response {
    match published {
        Published::Created(meta) => {
            let location = format!("/api/v1/plugins/{}/versions/{}", meta.name, meta.version);
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(VersionInfo::new(&meta, None)),
            )
                .into_response()
        }
        Published::Unchanged(meta) => {
            (StatusCode::OK, Json(VersionInfo::new(&meta, None))).into_response()
        }
    }
}

async fn publish(
    auth: Result<CanPublish, ApiError>,
    State(registry): State<Registry>,
    path: Result<VersionPath, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let result = match (auth, path) {
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        (Ok(CanPublish), Ok(VersionPath(name, version))) => {
            publish_module(&registry, name, version, &headers, body).await
        }
    };
    let outcome = match &result {
        Ok(response) if response.status() == StatusCode::CREATED => "created",
        Ok(_) => "unchanged",
        Err(e) if e.status == StatusCode::CONFLICT => "conflict",
        Err(_) => "refused",
    };
    registry.metrics().publish(outcome);
    result
}

async fn publish_module(
    registry: &Registry,
    name: PluginName,
    version: Version,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let stated = publish_headers(headers)?;
    let limit = registry.config().max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    let known = stated
        .sha256
        .and_then(|digest| Some((registry.store().get(&name, &version)?, digest)));
    // The version exists and the client said which bytes it sends: no need to read them.
    if let Some((meta, digest)) = known {
        return match publish::existing(meta, &digest) {
            Ok(published) => {
                if !headers.contains_key(header::EXPECT) {
                    tokio::spawn(linger(stream));
                }
                let mut response = published_answer(published);
                response.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                Ok(response)
            }
            Err(e) => Err(refuse_upload(publish_error(e), stream, headers)),
        };
    }
    if declared.is_some_and(|n| n > limit) {
        let error = publish_error(PublishError::TooLarge { limit });
        return Err(refuse_upload(error, stream, headers));
    }
    let upload = match publish::receive(registry, &mut stream).await {
        Ok(upload) => upload,
        Err(Stopped {
            error,
            body_left: true,
        }) => return Err(refuse_upload(publish_error(error), stream, headers)),
        Err(Stopped { error, .. }) => return Err(publish_error(error)),
    };
    publish::commit(registry, name, version, upload, stated)
        .await
        .map(published_answer)
        .map_err(publish_error)
}

async fn put_schema(
    _: CanPublish,
    State(registry): State<Registry>,
    VersionPath(name, version): VersionPath,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_SCHEMA_BYTES)
        .await
        .map_err(|e| {
            if BodyError::is_too_slow(&e) {
                return body_error(&e);
            }
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a schema is limited to {MAX_SCHEMA_BYTES} bytes"),
            )
            .closing()
        })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(_)) => {}
        _ => {
            return Err(ApiError::bad_request(
                "invalid_schema",
                "the schema must be a JSON object",
            ))
        }
    }
    let put =
        tokio::task::spawn_blocking(move || registry.store().put_schema(&name, &version, &bytes))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
    match put {
        Put::Created(()) => Ok((
            StatusCode::CREATED,
            Json(SchemaPut {
                schema: SchemaState::Created,
            }),
        )
            .into_response()),
        Put::Unchanged(()) => Ok((
            StatusCode::OK,
            Json(SchemaPut {
                schema: SchemaState::Unchanged,
            }),
        )
            .into_response()),
        Put::Conflict(()) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "schema_exists",
            "this version already has another schema",
        )),
    }
}
