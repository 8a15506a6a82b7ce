//! Extractors for what every API handler checks first: the caller's access and the plugin name
//! and version in the path. Put the access extractor first: a caller without access learns
//! nothing about names.

use axum::extract::{FromRequestParts, Path as UrlPath};
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::names::{PluginName, Version};
use crate::Registry;

/// The request may read (no read auth, or a read or publish token).
#[derive(Debug, Clone, Copy)]
pub struct CanRead;

/// The request carries a publish token.
#[derive(Debug, Clone, Copy)]
pub struct CanPublish;

/// `{name}` of the path, a valid plugin name.
#[derive(Debug, Clone)]
pub struct PluginPath(pub PluginName);

/// `{name}/versions/{version}` of the path, a valid plugin name and semver version.
#[derive(Debug, Clone)]
pub struct VersionPath(pub PluginName, pub Version);

impl FromRequestParts<Registry> for CanRead {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, registry: &Registry) -> Result<Self, ApiError> {
        if registry.can_read(&parts.headers) {
            Ok(CanRead)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

impl FromRequestParts<Registry> for CanPublish {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, registry: &Registry) -> Result<Self, ApiError> {
        if registry.can_publish(&parts.headers) {
            Ok(CanPublish)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

fn path_error() -> ApiError {
    ApiError::bad_request("invalid_path", "malformed path")
}

fn parse_name(name: &str) -> Result<PluginName, ApiError> {
    name.parse()
        .map_err(|e: String| ApiError::bad_request("invalid_name", e))
}

impl<S: Send + Sync> FromRequestParts<S> for PluginPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let UrlPath(name) = UrlPath::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| path_error())?;
        parse_name(&name).map(PluginPath)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VersionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let UrlPath((name, version)) =
            UrlPath::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|_| path_error())?;
        let name = parse_name(&name)?;
        let version = version
            .parse()
            .map_err(|e: String| ApiError::bad_request("invalid_version", e))?;
        Ok(VersionPath(name, version))
    }
}
