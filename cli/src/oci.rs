//! Push a module to any OCI registry as an image in the layout Istio's `oci://` fetcher
//! accepts (the *compat* variant of the Wasm image spec), built by the registry's own image
//! builder so the same module has the same digest whichever way it is published. HTTPS with
//! the system CA store and `--ca-file`, HTTP Basic and the Docker token flow (401 with
//! `WWW-Authenticate: Bearer realm=…` → token → retry), credentials from `--username` /
//! `--password` or the Docker config file `docker login` writes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;
use wasmgate_envoy::Digest;

use crate::error::{Error, Result};
use crate::registry::root_cause;

/// The image manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Manifest types a tag may already hold, asked for when checking it.
const ACCEPTED_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// An image ready to push: its blobs and manifest.
#[derive(Debug, Clone)]
pub struct Image {
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Image {
    /// The manifest's digest: what `skopeo inspect` shows and what Istio's `sha256` pins.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    /// The layer's digest.
    pub fn layer_digest(&self) -> Digest {
        Digest::of(&self.layer)
    }
}

/// Build the image of `module` for plugin `name` at `version`, with the registry's builder
/// ([`wasmgate_registry::oci_image`]).
pub fn image(module: &[u8], name: &str, version: &str) -> Result<Image> {
    let blobs = wasmgate_registry::oci_image(module, name, version)
        .map_err(|e| Error::failed(format!("cannot build the image: {e}")))?;
    Ok(Image {
        layer: blobs.layer,
        config: blobs.config,
        manifest: blobs.manifest,
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
    /// Plain HTTP (a registry on this machine); HTTPS otherwise.
    pub plain_http: bool,
    /// More CA certificates (PEM) to trust, besides the system store.
    pub ca_file: Option<PathBuf>,
    /// Credentials given on the command line; else the Docker config file's.
    pub credentials: Option<Credentials>,
    /// The Docker config file [default: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`].
    pub docker_config: Option<PathBuf>,
    /// Move a tag that holds another image.
    pub force: bool,
}

/// A user name and password (or token) for the registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// Where `docker login` keeps credentials.
pub fn default_docker_config() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The `auths` key's host: `https://index.docker.io/v1/` → `index.docker.io`.
fn auth_key_host(key: &str) -> &str {
    let bare = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    bare.split('/').next().unwrap_or(bare)
}

/// Credentials for `host` from a Docker config file: `auths` (base64 `user:password`, as
/// `docker login` writes), else the credential helper named by `credHelpers` or `credsStore`
/// (`docker-credential-<name> get`). `None` when the file or the host is not there.
pub fn docker_credentials(config: &Path, host: &str) -> Result<Option<Credentials>> {
    let origin = || format!("Docker config {}", config.display());
    let text = match std::fs::read(config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::failed(format!("{}: {e}", origin()))),
    };
    let parsed: DockerConfig =
        serde_json::from_slice(&text).map_err(|e| Error::failed(format!("{}: {e}", origin())))?;
    // Docker Hub's credentials are filed under its v1 index.
    let hosts: Vec<&str> = match host {
        "docker.io" | "registry-1.docker.io" => vec![host, "index.docker.io"],
        _ => vec![host],
    };
    let entry = parsed
        .auths
        .iter()
        .find(|(key, _)| hosts.contains(&auth_key_host(key)));
    if let Some((key, entry)) = entry {
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    Error::failed(format!(
                        "{}: auths.{key:?}.auth is not base64 of user:password",
                        origin()
                    ))
                })?;
            let (username, password) = decoded.split_once(':').ok_or_else(|| {
                Error::failed(format!(
                    "{}: auths.{key:?}.auth has no ':' between user and password",
                    origin()
                ))
            })?;
            return Ok(Some(Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }));
        }
    }
    let helper = hosts
        .iter()
        .find_map(|h| parsed.cred_helpers.get(*h))
        .or(parsed.creds_store.as_ref());
    match helper {
        Some(helper) => credential_helper(helper, host).map(Some),
        None => Ok(None),
    }
}

/// Ask `docker-credential-<helper>` for `host`'s credentials (the helper protocol: the
/// server on stdin, `{"Username", "Secret"}` on stdout).
fn credential_helper(helper: &str, host: &str) -> Result<Credentials> {
    let program = format!("docker-credential-{helper}");
    let fail = |why: String| Error::failed(format!("{program} get {host}: {why}"));
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(host.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stdout).trim().to_owned()));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&out.stdout).map_err(|e| fail(e.to_string()))?;
    Ok(Credentials {
        username: answer.username,
        password: answer.secret,
    })
}

/// A `WWW-Authenticate` challenge: its scheme (lowercase) and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"`.
    pub fn parse(text: &str) -> Option<Challenge> {
        let text = text.trim();
        let (scheme, mut rest) = match text.split_once(' ') {
            Some((scheme, rest)) => (scheme, rest.trim_start()),
            None => (text, ""),
        };
        if scheme.is_empty() {
            return None;
        }
        let mut params = BTreeMap::new();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let key = key.trim().to_ascii_lowercase();
            let after = after.trim_start();
            let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                // A quoted value may hold commas (`scope="repository:a:pull,push"`).
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.insert(key, value);
            rest = remaining.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

/// How requests are authorized once the registry has said what it wants.
#[derive(Debug, Clone)]
enum Auth {
    Anonymous,
    Basic,
    Bearer(String),
}

/// One registry conversation: the client, the credentials, and the authorization learnt
/// from the first 401.
struct Session<'a> {
    client: Client,
    reference: &'a Reference,
    credentials: Option<Credentials>,
    auth: RefCell<Auth>,
}

impl Session<'_> {
    fn attempt(&self, what: &str, make: &dyn Fn(&Client) -> RequestBuilder) -> Result<Response> {
        let request = make(&self.client);
        let request = match (&*self.auth.borrow(), &self.credentials) {
            (Auth::Basic, Some(c)) => request.basic_auth(&c.username, Some(&c.password)),
            (Auth::Bearer(token), _) => request.bearer_auth(token),
            _ => request,
        };
        request.send().map_err(|e| {
            Error::failed(format!(
                "{what}: cannot reach the OCI registry {}: {}",
                self.reference.host,
                root_cause(&e)
            ))
        })
    }

    /// Send a request; on 401 follow the challenge (Basic, or the token flow) and retry once.
    fn send(&self, what: &str, make: &dyn Fn(&Client) -> RequestBuilder) -> Result<Response> {
        let response = self.attempt(what, make)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
            .ok_or_else(|| {
                Error::failed(format!(
                    "{what}: the OCI registry {} answered 401 without a WWW-Authenticate challenge",
                    self.reference.host
                ))
            })?;
        let auth = match challenge.scheme.as_str() {
            "basic" => {
                self.credentials.as_ref().ok_or_else(|| self.no_credentials())?;
                Auth::Basic
            }
            "bearer" => Auth::Bearer(self.token(&challenge)?),
            other => {
                return Err(Error::failed(format!(
                    "{what}: the OCI registry {} asks for {other:?} authentication; only Basic and Bearer are supported",
                    self.reference.host
                )))
            }
        };
        *self.auth.borrow_mut() = auth;
        let response = self.attempt(what, make)?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(match &self.credentials {
                None => self.no_credentials(),
                Some(c) => Error::failed(format!(
                    "{what}: the OCI registry {} refused the credentials of {} (401)",
                    self.reference.host, c.username
                )),
            });
        }
        Ok(response)
    }

    fn no_credentials(&self) -> Error {
        Error::failed(format!(
            "the OCI registry {} requires credentials: pass --username and --password (or WASMGATE_OCI_USERNAME / WASMGATE_OCI_PASSWORD), or `docker login {}`",
            self.reference.host, self.reference.host
        ))
    }

    /// The Docker token flow: GET the realm with the service and a pull,push scope for the
    /// repository (with Basic credentials when there are some), answer `{token}` or
    /// `{access_token}`.
    fn token(&self, challenge: &Challenge) -> Result<String> {
        let realm = challenge.params.get("realm").ok_or_else(|| {
            Error::failed(format!(
                "the OCI registry {} asks for a Bearer token without a realm",
                self.reference.host
            ))
        })?;
        let mut url = url::Url::parse(realm)
            .map_err(|e| Error::failed(format!("token realm {realm:?} is not a URL: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.params.get("service") {
                query.append_pair("service", service);
            }
            query.append_pair(
                "scope",
                &format!("repository:{}:pull,push", self.reference.repository),
            );
        }
        let mut request = self.client.get(url);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request
            .send()
            .map_err(|e| Error::failed(format!("token service {realm}: {}", root_cause(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(match (status, &self.credentials) {
                (StatusCode::UNAUTHORIZED, None) => self.no_credentials(),
                _ => Error::failed(format!("token service {realm} answered {status}")),
            });
        }
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = response
            .json()
            .map_err(|e| Error::failed(format!("token service {realm}: {}", root_cause(&e))))?;
        token
            .token
            .or(token.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::failed(format!("token service {realm} answered no token")))
    }
}

fn expect(response: Response, what: &str, ok: &[u16]) -> Result<Response> {
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
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest digest now under the tag.
    pub digest: Digest,
    /// The tag already held this image: nothing was written.
    pub unchanged: bool,
    /// The digest the tag held before, when `--force` moved it.
    pub moved_from: Option<String>,
}

fn client(options: &PushOptions) -> Result<Client> {
    let mut builder = Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120));
    if let Some(path) = &options.ca_file {
        let pem = crate::error::read(path).map_err(|e| e.context("--ca-file"))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::failed(format!("--ca-file {}: {}", path.display(), root_cause(&e)))
        })?;
        if certificates.is_empty() {
            return Err(Error::failed(format!(
                "--ca-file {}: no PEM certificate in it",
                path.display()
            )));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| Error::failed(format!("cannot build an HTTP client: {}", root_cause(&e))))
}

/// Push `image` to `reference` with the OCI distribution API: the tag is checked first (a
/// tag holding another image is refused unless `force`), then blobs (skipped when the
/// registry has them), then the manifest under the tag.
pub fn push(image: &Image, reference: &Reference, options: &PushOptions) -> Result<Pushed> {
    let credentials = match &options.credentials {
        Some(c) => Some(c.clone()),
        None => match options.docker_config.clone().or_else(default_docker_config) {
            Some(config) => docker_credentials(&config, &reference.host)?,
            None => None,
        },
    };
    let scheme = if options.plain_http { "http" } else { "https" };
    let session = Session {
        client: client(options)?,
        reference,
        credentials,
        auth: RefCell::new(Auth::Anonymous),
    };
    let base = format!("{scheme}://{}/v2/{}", reference.host, reference.repository);
    let digest = image.digest();
    let manifest_url = format!("{base}/manifests/{}", reference.tag);

    let what = "tag";
    let existing = session.send(what, &|c| {
        c.head(&manifest_url).header(ACCEPT, ACCEPTED_MANIFESTS)
    })?;
    let held = match existing.status() {
        StatusCode::NOT_FOUND => None,
        status if status.is_success() => match existing
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(held) => Some(held.to_owned()),
            None => {
                let body = expect(
                    session.send(what, &|c| {
                        c.get(&manifest_url).header(ACCEPT, ACCEPTED_MANIFESTS)
                    })?,
                    what,
                    &[200],
                )?
                .bytes()
                .map_err(|e| Error::failed(format!("{what}: {}", root_cause(&e))))?;
                Some(Digest::of(&body).to_string())
            }
        },
        _ => {
            expect(existing, what, &[200, 404])?;
            None
        }
    };
    if held.as_deref() == Some(digest.to_string().as_str()) {
        return Ok(Pushed {
            digest,
            unchanged: true,
            moved_from: None,
        });
    }
    if let (Some(held), false) = (&held, options.force) {
        return Err(Error::failed(format!(
            "{}: the tag already holds {held}, not this module's image {}; refusing to move it (pass --force to move the tag)",
            reference.display(),
            digest
        )));
    }

    for (what, blob) in [("layer", &image.layer), ("config", &image.config)] {
        let blob_digest = Digest::of(blob).to_string();
        let blob_url = format!("{base}/blobs/{blob_digest}");
        let head = session.send(what, &|c| c.head(&blob_url))?;
        if head.status().is_success() {
            continue;
        }
        let uploads = format!("{base}/blobs/uploads/");
        let started = expect(session.send(what, &|c| c.post(&uploads))?, what, &[202])?;
        let location = started
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::failed(format!("{what}: the upload has no Location")))?;
        let mut upload = url::Url::parse(&format!("{scheme}://{}", reference.host))
            .and_then(|host| host.join(location))
            .map_err(|e| Error::failed(format!("{what}: bad upload location {location:?}: {e}")))?;
        upload.query_pairs_mut().append_pair("digest", &blob_digest);
        expect(
            session.send(what, &|c| {
                c.put(upload.clone())
                    .header("content-type", "application/octet-stream")
                    .body(blob.clone())
            })?,
            what,
            &[201, 204],
        )?;
    }
    let what = "manifest";
    let response = expect(
        session.send(what, &|c| {
            c.put(&manifest_url)
                .header("content-type", MANIFEST_MEDIA_TYPE)
                .body(image.manifest.clone())
        })?,
        what,
        &[200, 201],
    )?;
    if let Some(said) = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    {
        if said != digest.to_string() {
            return Err(Error::failed(format!(
                "manifest: the registry stored digest {said}, expected {}",
                digest
            )));
        }
    }
    Ok(Pushed {
        digest,
        unchanged: false,
        moved_from: held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_deterministic() {
        let a = image(b"\0asm\x01\0\0\0", "jwt-auth", "0.1.0").unwrap();
        let b = image(b"\0asm\x01\0\0\0", "jwt-auth", "0.1.0").unwrap();
        assert_eq!(a.digest(), b.digest());
        let manifest: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(
            manifest["annotations"]["module.wasm.image/variant"],
            "compat"
        );
        assert_eq!(
            manifest["layers"][0]["digest"],
            a.layer_digest().to_string()
        );
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

    #[test]
    fn challenges_parse() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let basic = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(basic.scheme, "basic");
        assert_eq!(basic.params["realm"], "Registry Realm");
        let bare = Challenge::parse("Bearer realm=http://a/t, service=s").unwrap();
        assert_eq!(bare.params["realm"], "http://a/t");
        assert_eq!(bare.params["service"], "s");
        assert!(Challenge::parse(r#"Bearer realm="unterminated"#).is_none());
    }

    #[test]
    fn docker_config_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cret:with:colons");
        std::fs::write(
            &config,
            serde_json::json!({
                "auths": {
                    "registry.example:5000": { "auth": auth },
                    "https://index.docker.io/v1/": { "auth": base64::engine::general_purpose::STANDARD.encode("hub:pw") },
                    "broken.example": { "auth": "%%%" },
                },
            })
            .to_string(),
        )
        .unwrap();
        let found = docker_credentials(&config, "registry.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("ci", "s3cret:with:colons")
        );
        let hub = docker_credentials(&config, "docker.io").unwrap().unwrap();
        assert_eq!(hub.username, "hub");
        assert_eq!(docker_credentials(&config, "other.example").unwrap(), None);
        assert!(docker_credentials(&config, "broken.example").is_err());
        assert_eq!(
            docker_credentials(&dir.path().join("missing.json"), "x").unwrap(),
            None
        );
        assert!(!format!("{found:?}").contains("s3cret"));
    }
}
