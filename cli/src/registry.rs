//! A client of the Wasmgate registry's HTTP API: publish a module and its config schema, read
//! a version's metadata (its sha256 above all).

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use serde_json::Value;
use wasmgate_registry::wire::{SchemaPut, VersionInfo, VersionList};

use crate::error::{Error, Result};

/// A Wasmgate registry at a base URL (`http://127.0.0.1:8787`).
#[derive(Debug, Clone)]
pub struct Registry {
    base: String,
    token: Option<String>,
    client: Client,
}

impl Registry {
    /// A client for the registry at `base`; `token` authorizes publishing (and reading, when
    /// the registry requires it).
    pub fn new(base: &str, token: Option<String>) -> Result<Registry> {
        crate::error::check_url_scheme("registry URL", base)?;
        let parsed = url::Url::parse(base)
            .map_err(|e| Error::usage(format!("registry URL {base:?}: {e}")))?;
        if parsed.scheme() != "http" {
            return Err(Error::usage(format!(
                "registry URL {base:?}: expected http:// (this build has no TLS library; manifests may still point Envoy and Istio at https:// URLs)"
            )));
        }
        let client = Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::failed(format!("cannot build an HTTP client: {e}")))?;
        Ok(Registry {
            base: base.trim_end_matches('/').to_owned(),
            token,
            client,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The download URL of a version's module.
    pub fn module_url(&self, name: &str, version: &str) -> String {
        format!(
            "{}/api/v1/plugins/{name}/versions/{version}/module",
            self.base
        )
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder, what: &str) -> Result<Response> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send().map_err(|e| {
            Error::failed(format!(
                "{what}: cannot reach the registry at {}: {}",
                self.base,
                root_cause(&e)
            ))
        })
    }

    /// The latest version of `name` (semver order, as the registry lists them).
    pub fn latest(&self, name: &str) -> Result<String> {
        let what = format!("{name}: latest version");
        let response = self.send(
            self.client
                .get(format!("{}/api/v1/plugins/{name}", self.base)),
            &what,
        )?;
        let versions: VersionList = json(response, &what)?;
        versions
            .versions
            .last()
            .map(|v| v.version.clone())
            .ok_or_else(|| Error::failed(format!("{what}: the registry has no version of it")))
    }

    /// A version's metadata.
    pub fn metadata(&self, name: &str, version: &str) -> Result<VersionInfo> {
        let what = format!("{name} {version}");
        let response = self.send(
            self.client.get(format!(
                "{}/api/v1/plugins/{name}/versions/{version}",
                self.base
            )),
            &what,
        )?;
        json(response, &what)
    }

    /// Publish a module; publishing the same bytes again is not an error.
    pub fn publish(
        &self,
        name: &str,
        version: &str,
        module: Vec<u8>,
        root_id: &str,
        description: &str,
    ) -> Result<VersionInfo> {
        let what = format!("publish {name} {version}");
        let sha256 = wasmgate_envoy::Digest::of(&module);
        let response = self.send(
            self.client
                .put(format!(
                    "{}/api/v1/plugins/{name}/versions/{version}",
                    self.base
                ))
                .header("content-type", "application/wasm")
                .header("x-wasmgate-sha256", sha256.hex())
                .header("x-wasmgate-root-id", root_id)
                .header("x-wasmgate-description", description)
                .body(module),
            &what,
        )?;
        json(response, &what)
    }

    /// Publish a version's config JSON Schema; the same document again is not an error.
    pub fn publish_schema(&self, name: &str, version: &str, schema: &Value) -> Result<()> {
        let what = format!("publish the schema of {name} {version}");
        let response = self.send(
            self.client
                .put(format!(
                    "{}/api/v1/plugins/{name}/versions/{version}/schema",
                    self.base
                ))
                .header("content-type", "application/json")
                .body(schema.to_string()),
            &what,
        )?;
        json::<SchemaPut>(response, &what).map(drop)
    }
}

/// Decode a JSON answer, or turn an error answer into a message with the registry's words.
fn json<T: serde::de::DeserializeOwned>(response: Response, what: &str) -> Result<T> {
    let status = response.status();
    let body = response.text().unwrap_or_default();
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| body.trim().chars().take(200).collect());
        return Err(Error::failed(format!(
            "{what}: the registry answered {status}: {message}"
        )));
    }
    serde_json::from_str(&body)
        .map_err(|e| Error::failed(format!("{what}: unexpected answer from the registry: {e}")))
}

/// The innermost error's words: "Connection refused (os error 111)", not reqwest's wrapping.
pub fn root_cause(error: &dyn std::error::Error) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
