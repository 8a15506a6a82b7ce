//! Push a module to any OCI registry as an image in the layout Istio's `oci://` fetcher
//! accepts: the *compat* variant of the Wasm image spec, one `tar+gzip` layer holding
//! `plugin.wasm`, built deterministically so the same module always has the same digest.

use std::io::Write;
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::json;
use wasmgate_envoy::Sha256;

use crate::error::{Error, Result};
use crate::registry::root_cause;

/// The image manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file name Istio looks for inside the layer.
const PLUGIN_FILE: &str = "plugin.wasm";

/// An image ready to push: its blobs and manifest.
#[derive(Debug, Clone)]
pub struct Image {
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Image {
    /// The manifest's digest: what `skopeo inspect` shows and what Istio's `sha256` pins.
    pub fn digest(&self) -> Sha256 {
        Sha256::of(&self.manifest)
    }

    /// The layer's digest.
    pub fn layer_digest(&self) -> Sha256 {
        Sha256::of(&self.layer)
    }
}

/// Build the image of `module`.
pub fn image(module: &[u8]) -> Result<Image> {
    let fail = |e: std::io::Error| Error::failed(format!("cannot build the image layer: {e}"));
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(module.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, PLUGIN_FILE, module)
        .map_err(fail)?;
    let tar = tar.into_inner().map_err(fail)?;
    let mut gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gzip.write_all(&tar).map_err(fail)?;
    let layer = gzip.finish().map_err(fail)?;
    let config = json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [Sha256::of(&tar).oci()] },
    })
    .to_string()
    .into_bytes();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": Sha256::of(&config).oci(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": Sha256::of(&layer).oci(),
            "size": layer.len(),
        }],
        "annotations": { "module.wasm.image/variant": "compat" },
    })
    .to_string()
    .into_bytes();
    Ok(Image {
        layer,
        config,
        manifest,
    })
}

/// `host[:port]/repository[:tag]`, with or without `oci://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub host: String,
    pub repository: String,
    pub tag: String,
}

impl Reference {
    /// Parse a reference; `default_tag` is used when it has none.
    pub fn parse(text: &str, default_tag: &str) -> Result<Reference> {
        let bare = text.strip_prefix("oci://").unwrap_or(text);
        let bad = |why: &str| Error::usage(format!("OCI reference {text:?}: {why}"));
        let (host, path) = bare
            .split_once('/')
            .ok_or_else(|| bad("expected host[:port]/repository[:tag]"))?;
        if host.is_empty() || path.is_empty() {
            return Err(bad("expected host[:port]/repository[:tag]"));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) => (repo, tag),
            None => (path, default_tag),
        };
        let valid_repo = repository.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        });
        if !valid_repo {
            return Err(bad(
                "the repository must be lowercase letters, digits, '.', '_', '-' and '/'",
            ));
        }
        let valid_tag = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !valid_tag {
            return Err(bad("the tag must be 1-128 of [A-Za-z0-9._-]"));
        }
        Ok(Reference {
            host: host.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// `host/repository:tag`.
    pub fn display(&self) -> String {
        format!("{}/{}:{}", self.host, self.repository, self.tag)
    }
}

/// How to reach the registry.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Plain HTTP (registries on this machine). HTTPS is refused: no TLS library is
    /// compiled in, to keep the workspace free of C and assembly crypto builds.
    pub plain_http: bool,
    /// HTTP basic credentials.
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Push `image` to `reference` with the OCI distribution API: blobs first (skipped when the
/// registry has them), then the manifest under the tag. Returns the manifest digest.
pub fn push(image: &Image, reference: &Reference, options: &PushOptions) -> Result<Sha256> {
    if !options.plain_http {
        return Err(Error::usage(format!(
            "{}: this build talks plain HTTP only (no TLS library is compiled in); pass --plain-http for a registry on this machine",
            reference.host
        )));
    }
    let scheme = "http";
    let base = format!("{scheme}://{}/v2/{}", reference.host, reference.repository);
    let client = Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::failed(format!("cannot build an HTTP client: {e}")))?;
    let auth = |request: reqwest::blocking::RequestBuilder| match &options.username {
        Some(user) => request.basic_auth(user, options.password.as_deref()),
        None => request,
    };
    let send = |request: reqwest::blocking::RequestBuilder, what: &str| {
        auth(request).send().map_err(|e| {
            Error::failed(format!(
                "{what}: cannot reach the OCI registry {}: {}",
                reference.host,
                root_cause(&e)
            ))
        })
    };
    let expect = |response: reqwest::blocking::Response, what: &str, ok: &[u16]| {
        let status = response.status();
        if ok.contains(&status.as_u16()) {
            Ok(response)
        } else {
            let body = response.text().unwrap_or_default();
            Err(Error::failed(format!(
                "{what}: the OCI registry answered {status}: {}",
                body.trim().chars().take(300).collect::<String>()
            )))
        }
    };
    for (what, blob) in [("layer", &image.layer), ("config", &image.config)] {
        let digest = Sha256::of(blob).oci();
        let head = send(client.head(format!("{base}/blobs/{digest}")), what)?;
        if head.status().is_success() {
            continue;
        }
        let started = expect(
            send(client.post(format!("{base}/blobs/uploads/")), what)?,
            what,
            &[202],
        )?;
        let location = started
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::failed(format!("{what}: the upload has no Location")))?;
        let mut upload = url::Url::parse(&format!("{scheme}://{}", reference.host))
            .and_then(|host| host.join(location))
            .map_err(|e| Error::failed(format!("{what}: bad upload location {location:?}: {e}")))?;
        upload.query_pairs_mut().append_pair("digest", &digest);
        expect(
            send(
                client
                    .put(upload)
                    .header("content-type", "application/octet-stream")
                    .body(blob.clone()),
                what,
            )?,
            what,
            &[201, 204],
        )?;
    }
    let what = "manifest";
    let response = expect(
        send(
            client
                .put(format!("{base}/manifests/{}", reference.tag))
                .header("content-type", MANIFEST_MEDIA_TYPE)
                .body(image.manifest.clone()),
            what,
        )?,
        what,
        &[200, 201],
    )?;
    let digest = image.digest();
    if let Some(said) = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    {
        if said != digest.oci() {
            return Err(Error::failed(format!(
                "manifest: the registry stored digest {said}, expected {}",
                digest.oci()
            )));
        }
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_deterministic() {
        let a = image(b"\0asm\x01\0\0\0").unwrap();
        let b = image(b"\0asm\x01\0\0\0").unwrap();
        assert_eq!(a.digest(), b.digest());
        let manifest: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(
            manifest["annotations"]["module.wasm.image/variant"],
            "compat"
        );
        assert_eq!(manifest["layers"][0]["digest"], a.layer_digest().oci());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&a.layer[..]));
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("plugin.wasm"));
    }

    #[test]
    fn references_parse() {
        let r = Reference::parse("oci://127.0.0.1:5000/wasmgate/jwt-auth:0.1.0", "latest").unwrap();
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("127.0.0.1:5000", "wasmgate/jwt-auth", "0.1.0")
        );
        let r = Reference::parse("localhost:5000/jwt-auth", "0.2.0").unwrap();
        assert_eq!(r.display(), "localhost:5000/jwt-auth:0.2.0");
        assert!(Reference::parse("jwt-auth", "1").is_err());
        assert!(Reference::parse("h/Upper:1", "1").is_err());
    }
}
