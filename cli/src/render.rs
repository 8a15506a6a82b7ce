//! From plugins with validated configurations to manifests pinned by sha256: the module of
//! each plugin is found in the lock file or the registry, lints run, and the Envoy or Istio
//! renderers write the result.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use wasmgate_envoy::{Code, Digest, Remote, Trust, WasmFilter};
use wasmgate_istio::{
    Delivery, EnvVar, EnvoyFilterSpec, FailStrategy, MeshService, Metadata, PatchContext, Phase,
    PluginSpec, PullPolicy, TargetRef, TrafficSelector,
};

use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::mesh::{Mesh, MeshOptions};
use crate::package::module_path;
use crate::pluginconfig::Configured;
use crate::registry::Registry;

/// The name of the cluster Envoy fetches modules through.
pub const REGISTRY_CLUSTER: &str = "wasmgate-registry";

/// Where modules and their digests come from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A lock file written by `wasmgate package` (and `push`).
    Lock { lock: &'a Lock, path: &'a Path },
    /// A running Wasmgate registry.
    Registry(&'a Registry),
}

/// A plugin's module, pinned.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub sha256: Digest,
    /// Where the module is served over HTTP(S).
    pub http_url: Option<String>,
    /// The OCI image and its manifest digest.
    pub oci: Option<(String, Digest)>,
    /// The module on this machine.
    pub local: Option<PathBuf>,
}

/// A plugin with its configuration and pinned module.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub configured: Configured,
    pub pinned: Pinned,
}

impl Resolved {
    fn name(&self) -> &'static str {
        self.configured.plugin.name
    }

    /// Where Istio fetches the module and the digest it checks: the OCI image and its
    /// manifest digest with `oci`, else the HTTP URL and the module's sha256.
    fn fetched_from(&self, oci: bool) -> Result<(String, Digest)> {
        if oci {
            let (reference, digest) = self.pinned.oci.clone().ok_or_else(|| {
                Error::failed(format!(
                    "{}: no OCI image; push it with `wasmgate push --oci` or render from --registry",
                    self.name()
                ))
            })?;
            Ok((format!("oci://{reference}"), digest))
        } else {
            let url = self.pinned.http_url.clone().ok_or_else(|| {
                Error::failed(format!(
                    "{}: no URL for its module; push it (`wasmgate push`) or render from --registry",
                    self.name()
                ))
            })?;
            Ok((url, self.pinned.sha256))
        }
    }
}

/// Something worth a look that does not stop rendering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub plugin: String,
    pub message: String,
}

fn digest(text: Option<&str>, origin: &str) -> Result<Digest> {
    let text = text.ok_or_else(|| {
        Error::failed(format!(
            "{origin}: sha256 is missing; refusing to render a manifest that is not pinned by sha256"
        ))
    })?;
    text.parse()
        .map_err(|e| Error::failed(format!("{origin}: malformed sha256: {e}")))
}

/// The warnings of the plugins' own configurations (old spellings they accept), first in
/// every render's warnings.
pub fn config_warnings(plugins: &[Resolved]) -> Vec<Warning> {
    plugins
        .iter()
        .flat_map(|plugin| plugin.configured.warnings.iter().cloned())
        .collect()
}

/// A warning for each plugin whose module file, named by the lock file, is missing: the
/// manifest still pins the lock's sha256, but nobody checked that file against it.
pub fn missing_modules(plugins: &[Resolved]) -> Vec<Warning> {
    plugins
        .iter()
        .filter_map(|plugin| {
            let path = plugin.pinned.local.as_ref()?;
            (!path.exists()).then(|| Warning {
                plugin: plugin.name().to_owned(),
                message: format!(
                    "module file {} (from the lock file) is missing, so its sha256 was not checked; run `make wasm` and `wasmgate package`",
                    path.display()
                ),
            })
        })
        .collect()
}

/// Find the module of each plugin and its digest.
pub fn resolve(source: Source<'_>, plugins: Vec<Configured>) -> Result<Vec<Resolved>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for configured in plugins {
        let name = configured.plugin.name;
        if !seen.insert(name) {
            return Err(Error::usage(format!("plugin {name} is given twice")));
        }
        let pinned = match source {
            Source::Lock { lock, path } => pin_from_lock(lock, path, &configured)?,
            Source::Registry(registry) => pin_from_registry(registry, &configured)?,
        };
        out.push(Resolved { configured, pinned });
    }
    Ok(out)
}

fn pin_from_lock(lock: &Lock, path: &Path, configured: &Configured) -> Result<Pinned> {
    let name = configured.plugin.name;
    let entry = lock.entry(name, path)?;
    let origin = format!("{}: plugins.{name}", path.display());
    if let Some(wanted) = &configured.version {
        if *wanted != entry.version {
            return Err(Error::failed(format!(
                "{origin}: locked at version {}, not {wanted}",
                entry.version
            )));
        }
    }
    let sha256 = digest(entry.sha256.as_deref(), &origin)?;
    let local = module_path(entry, path);
    // A missing module is refused where the file itself is needed (`--local`) and warned
    // about otherwise ([`missing_modules`]): its digest cannot be checked.
    match std::fs::read(&local) {
        Ok(bytes) => {
            let actual = Digest::of(&bytes);
            if actual != sha256 {
                return Err(Error::failed(format!(
                    "{origin}: {} has sha256 {}, the lock says {}; run `wasmgate package` again",
                    local.display(),
                    actual.hex(),
                    sha256.hex()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::failed(format!("{origin}: {}: {e}", local.display()))),
    }
    let oci = match &entry.oci {
        Some(pin) => Some((
            pin.reference.clone(),
            digest(
                Some(&pin.manifest_digest),
                &format!("{origin}.oci.manifest_digest"),
            )?,
        )),
        None => None,
    };
    Ok(Pinned {
        sha256,
        http_url: entry.url.clone(),
        oci,
        local: Some(local),
    })
}

fn pin_from_registry(registry: &Registry, configured: &Configured) -> Result<Pinned> {
    let name = configured.plugin.name;
    let version = match &configured.version {
        Some(version) => version.clone(),
        None => registry.latest(name)?,
    };
    let meta = registry.metadata(name, &version)?;
    let sha256 = meta.sha256;
    // The registry's OCI API is on the same host and port as its HTTP API.
    let host = url::Url::parse(registry.base())
        .ok()
        .and_then(|u| match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => Some(format!("{host}:{port}")),
            (Some(host), None) => Some(host.to_owned()),
            (None, _) => None,
        });
    let oci = host.map(|host| {
        (
            format!("{host}/{}", meta.oci.reference),
            meta.oci.manifest_digest,
        )
    });
    Ok(Pinned {
        http_url: Some(registry.module_url(name, &version)),
        sha256,
        oci,
        local: None,
    })
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> Result<String> {
    let parsed = url::Url::parse(url).map_err(|e| Error::failed(format!("URL {url:?}: {e}")))?;
    Ok(parsed.origin().ascii_serialization())
}

/// Clusters the configurations call out to: every object with a string `uri` and a string
/// `cluster` (jwt-auth's `remote_jwks`), as (cluster, origin of the URI).
pub fn callout_clusters(plugins: &[Resolved]) -> Result<Vec<(String, String)>> {
    fn walk(value: &Value, found: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                if let (Some(Value::String(uri)), Some(Value::String(cluster))) =
                    (map.get("uri"), map.get("cluster"))
                {
                    found.push((cluster.clone(), uri.clone()));
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for plugin in plugins {
        let mut found = Vec::new();
        walk(&plugin.configured.config, &mut found);
        for (cluster, uri) in found {
            let origin = origin(&uri).map_err(|e| e.context(plugin.name()))?;
            match by_name.get(&cluster) {
                Some(existing) if *existing != origin => {
                    return Err(Error::failed(format!(
                        "cluster {cluster} is used for both {existing} and {origin}"
                    )))
                }
                _ => {
                    by_name.insert(cluster, origin);
                }
            }
        }
    }
    Ok(by_name.into_iter().collect())
}

/// Each plugin's module URL and fetch cluster, and the clusters by name and origin: one per
/// registry origin, the first named [`REGISTRY_CLUSTER`].
type Fetches = (Vec<(String, String)>, Clusters);

/// Clusters by name and URL.
type Clusters = Vec<(String, String)>;

fn registry_clusters(plugins: &[Resolved]) -> Result<Fetches> {
    let mut clusters: Vec<(String, String)> = Vec::new();
    let mut fetches = Vec::new();
    for plugin in plugins {
        let url = plugin.pinned.http_url.clone().ok_or_else(|| {
            Error::failed(format!(
                "{}: no HTTP URL for its module; push it to a registry (`wasmgate push`) or render from --registry",
                plugin.name()
            ))
        })?;
        let origin = origin(&url)?;
        let cluster = match clusters.iter().find(|(_, o)| *o == origin) {
            Some((name, _)) => name.clone(),
            None => {
                let name = match clusters.len() {
                    0 => REGISTRY_CLUSTER.to_owned(),
                    n => format!("{REGISTRY_CLUSTER}-{n}"),
                };
                clusters.push((name.clone(), origin));
                name
            }
        };
        fetches.push((url, cluster));
    }
    Ok((fetches, clusters))
}

/// How the Envoy bootstrap loads the modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeFrom {
    /// From the files on this machine (`code.local`).
    Local,
    /// Fetched from the registry over HTTP with sha256 (`code.remote`).
    Remote,
}

/// The Envoy bootstrap's settings besides the plugins.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub upstream: String,
    pub code: CodeFrom,
    /// More clusters by name and URL.
    pub clusters: Vec<(String, String)>,
    /// How the JWKS clusters check the issuer's server.
    pub jwks_tls: JwksTls,
}

/// How the clusters of remote JWKS (every pluginConfig object with a `uri` and a `cluster`)
/// check the server they fetch keys from. An `https` JWKS cluster is always verified (CA
/// chain and the URI's host in the certificate) unless `insecure` says otherwise.
#[derive(Debug, Clone, Default)]
pub struct JwksTls {
    /// The CA bundle for every `https` JWKS cluster [default:
    /// [`SYSTEM_CA_BUNDLE`](wasmgate_envoy::SYSTEM_CA_BUNDLE)].
    pub ca_file: Option<PathBuf>,
    /// A CA bundle for one cluster, by name; wins over `ca_file`.
    pub cluster_ca_files: BTreeMap<String, PathBuf>,
    /// Check nothing: anyone on the path can swap the keys. Rendered with a loud warning.
    pub insecure: bool,
    /// Refuse a CA file that is not a readable PEM file with a certificate here (for a
    /// bootstrap run on this machine; an Istio proxy reads the path in its own container).
    pub check_files: bool,
}

/// The JWKS clusters the pluginConfigs use, by name, each with the (first) plugin using it.
fn jwks_clusters(plugins: &[Resolved]) -> Result<BTreeMap<String, &'static str>> {
    let mut found = BTreeMap::new();
    for plugin in plugins {
        for (cluster, _) in callout_clusters(std::slice::from_ref(plugin))? {
            found.entry(cluster).or_insert(plugin.name());
        }
    }
    Ok(found)
}

/// The trust setting of each `https` JWKS cluster, and the warnings: no verification, or
/// keys fetched over plain `http` from another machine.
fn jwks_trust(
    plugins: &[Resolved],
    clusters: &[(String, String)],
    tls: &JwksTls,
) -> Result<(BTreeMap<String, Trust>, Vec<Warning>)> {
    let jwks = jwks_clusters(plugins)?;
    if tls.insecure && (tls.ca_file.is_some() || !tls.cluster_ca_files.is_empty()) {
        return Err(Error::usage(
            "--insecure-jwks-tls turns verification off; it cannot go with --jwks-ca-file",
        ));
    }
    for name in tls.cluster_ca_files.keys() {
        if !jwks.contains_key(name) {
            return Err(Error::usage(format!(
                "--jwks-ca-file {name}=…: no remote JWKS uses a cluster {name:?} (JWKS clusters: {})",
                jwks.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let mut trust = BTreeMap::new();
    let mut warnings = Vec::new();
    for (name, plugin) in &jwks {
        let Some((_, url)) = clusters.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::failed(format!("cluster {name}: {url:?}: {e}")))?;
        let warn = |message: String| Warning {
            plugin: (*plugin).to_owned(),
            message,
        };
        if parsed.scheme() != "https" {
            if tls.cluster_ca_files.contains_key(name) {
                return Err(Error::usage(format!(
                    "--jwks-ca-file {name}=…: cluster {name} is {url}, plain http"
                )));
            }
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(host)) => host == "localhost",
                None => false,
            };
            if !loopback {
                warnings.push(warn(format!(
                    "JWKS cluster {name} fetches keys over plain http ({url}): anyone on the path can swap them and mint tokens that pass; use https"
                )));
            }
            continue;
        }
        let setting = if tls.insecure {
            warnings.push(warn(format!(
                "--insecure-jwks-tls: the certificate of {url} (cluster {name}) is NOT checked; anyone on the path can swap the keys and mint tokens that pass"
            )));
            Trust::Insecure
        } else {
            match tls.cluster_ca_files.get(name).or(tls.ca_file.as_ref()) {
                Some(path) => {
                    if tls.check_files {
                        check_ca_file(path)?;
                    }
                    Trust::Verify(path.clone())
                }
                None => Trust::system(),
            }
        };
        trust.insert(name.clone(), setting);
    }
    Ok((trust, warnings))
}

/// A CA file Envoy would refuse, or that trusts nothing, is refused before rendering.
fn check_ca_file(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::failed(format!("--jwks-ca-file {}: {e}", path.display())))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::failed(format!(
            "--jwks-ca-file {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        )));
    }
    Ok(())
}

/// The Wasm filters for `plugins`, with the clusters their code and callouts need.
fn wasm_filters(plugins: &[Resolved], code: CodeFrom) -> Result<(Vec<WasmFilter>, Clusters)> {
    let (fetches, mut clusters) = match code {
        CodeFrom::Remote => registry_clusters(plugins)?,
        CodeFrom::Local => (Vec::new(), Vec::new()),
    };
    let mut filters = Vec::new();
    for (i, plugin) in plugins.iter().enumerate() {
        let code = match (code, fetches.get(i)) {
            (CodeFrom::Remote, Some((url, cluster))) => Code::Remote(Remote::new(
                url.clone(),
                cluster.clone(),
                plugin.pinned.sha256,
            )),
            _ => {
                let path = plugin.pinned.local.clone().ok_or_else(|| {
                    Error::failed(format!(
                        "{}: no local module; render from a lock file (--lock) for local code",
                        plugin.name()
                    ))
                })?;
                if !path.exists() {
                    return Err(Error::failed(format!(
                        "{}: module file {} (from the lock file) is missing; run `make wasm` and `wasmgate package`",
                        plugin.name(),
                        path.display()
                    )));
                }
                Code::Local(std::path::absolute(&path).unwrap_or(path))
            }
        };
        let mut filter = WasmFilter::new(plugin.name(), code);
        filter.configuration = plugin.configured.config_json();
        filters.push(filter);
    }
    clusters.extend(callout_clusters(plugins)?);
    Ok((filters, clusters))
}

/// A pluginConfig names the cluster of its gRPC service (rate-limit's `rate_limit_service`)
/// but not the service's address: it must come from `--cluster NAME=grpc://HOST:PORT`, which
/// makes an HTTP/2 cluster. Refused here, or Envoy would start and every call would fail.
fn check_grpc_clusters(plugins: &[Resolved], clusters: &[(String, String)]) -> Result<()> {
    for plugin in plugins {
        let config = &plugin.configured.config;
        let Some(cluster) = config
            .pointer("/rate_limit_service/cluster")
            .and_then(Value::as_str)
        else {
            continue;
        };
        let hint =
            format!("give the service's gRPC address with --cluster {cluster}=grpc://HOST:PORT");
        let problem = match clusters.iter().find(|(name, _)| name == cluster) {
            None => "is not defined",
            Some((_, url)) if url.starts_with("grpc://") || url.starts_with("grpcs://") => continue,
            Some(_) => "is not an HTTP/2 (grpc://) cluster",
        };
        return Err(Error::failed(format!(
            "{}: rate_limit_service.cluster {cluster:?} {problem}; {hint}",
            plugin.name()
        )));
    }
    Ok(())
}

/// Render the Envoy static bootstrap, with the warnings (see [`JwksTls`]).
pub fn envoy(
    plugins: &[Resolved],
    options: &EnvoyOptions,
) -> Result<(wasmgate_envoy::Bootstrap, Vec<Warning>)> {
    let (filters, mut clusters) = wasm_filters(plugins, options.code)?;
    // A cluster given explicitly replaces the one derived from a pluginConfig of that name
    // (say, to reach the JWKS issuer through a local proxy).
    for (name, url) in &options.clusters {
        match clusters.iter_mut().find(|(n, _)| n == name) {
            Some(existing) => existing.1 = url.clone(),
            None => clusters.push((name.clone(), url.clone())),
        }
    }
    check_grpc_clusters(plugins, &clusters)?;
    let (trust, trust_warnings) = jwks_trust(plugins, &clusters, &options.jwks_tls)?;
    let mut warnings = config_warnings(plugins);
    warnings.extend(trust_warnings);
    if options.code == CodeFrom::Remote {
        warnings.extend(missing_modules(plugins));
    }
    let bootstrap = wasmgate_envoy::render(&wasmgate_envoy::Spec {
        listen: options.listen,
        admin: options.admin,
        filters,
        upstream: options.upstream.clone(),
        clusters,
        trust,
    })
    .map_err(|e| Error::failed(e.0))?;
    Ok((bootstrap, warnings))
}

/// The Istio settings shared by WasmPlugin and TrafficExtension.
#[derive(Debug, Clone, Default)]
pub struct IstioOptions {
    pub namespace: Option<String>,
    pub selector: BTreeMap<String, String>,
    pub target_refs: Vec<TargetRef>,
    pub traffic: Vec<TrafficSelector>,
    /// Overrides each plugin's default phase.
    pub phase: Option<Phase>,
    pub priority: Option<i32>,
    pub fail_strategy: Option<FailStrategy>,
    pub image_pull_policy: Option<PullPolicy>,
    pub image_pull_secret: Option<String>,
    pub env: Vec<EnvVar>,
    /// Reference the OCI image (`oci://`) instead of the HTTP download.
    pub oci: bool,
    /// `--cluster NAME=grpc://HOST:PORT`: where a gRPC service named in a pluginConfig is.
    pub clusters: Vec<(String, String)>,
    /// How `https` JWKS are checked (CA paths in the proxy's container).
    pub jwks_tls: JwksTls,
    /// `--jwks-ca-secret`: see [`MeshOptions::ca_secrets`].
    pub ca_secrets: BTreeMap<Option<String>, String>,
}

/// Which Istio kind to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IstioKind {
    WasmPlugin,
    TrafficExtension,
}

/// Lints that do not stop rendering.
fn lints(plugin: &Resolved, options: &IstioOptions, phase: Option<Phase>) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if options.fail_strategy == Some(FailStrategy::FailOpen) {
        let guards =
            plugin.name() == "jwt-auth" || matches!(phase, Some(Phase::Authn | Phase::Authz));
        if guards {
            warnings.push(Warning {
                plugin: plugin.name().to_owned(),
                message: format!(
                    "failStrategy FAIL_OPEN: if {} fails to load or crashes, requests go through unchecked",
                    plugin.name()
                ),
            });
        }
    }
    warnings
}

/// A rendered Istio manifest.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum IstioManifest {
    WasmPlugin(Box<wasmgate_istio::WasmPlugin>),
    TrafficExtension(Box<wasmgate_istio::TrafficExtension>),
    EnvoyFilter(Box<wasmgate_istio::EnvoyFilter>),
    ServiceEntry(Box<wasmgate_istio::ServiceEntry>),
    DestinationRule(Box<wasmgate_istio::DestinationRule>),
}

/// The ServiceEntry (and for https the DestinationRule) of each service the callouts reach.
fn mesh_documents(services: &[MeshService], namespace: Option<&str>) -> Result<Vec<IstioManifest>> {
    let mut documents = Vec::new();
    for service in services {
        let fail =
            |e: wasmgate_istio::ManifestError| Error::failed(format!("{}: {e}", service.cluster()));
        documents.push(IstioManifest::ServiceEntry(Box::new(
            wasmgate_istio::mesh::service_entry(service, namespace).map_err(fail)?,
        )));
        if let Some(rule) =
            wasmgate_istio::mesh::destination_rule(service, namespace).map_err(fail)?
        {
            documents.push(IstioManifest::DestinationRule(Box::new(rule)));
        }
    }
    Ok(documents)
}

/// Labels from `--selector KEY=VALUE` flags; a key given twice is a usage error.
pub fn selector(pairs: &[(String, String)]) -> Result<BTreeMap<String, String>> {
    wasmgate_istio::validate::label_map("--selector", pairs).map_err(|e| Error::usage(e.0))
}

/// The priority of each plugin. Istio runs higher priorities first and orders equal ones by
/// creation time, so when several plugins share a phase and no priority is given, they get
/// 10, 0 (…) in the order of the `--plugin` flags: the first runs first. A plugin alone in its
/// phase keeps Istio's default.
fn priorities(phases: &[Option<Phase>], explicit: Option<i32>) -> Vec<Option<i32>> {
    if explicit.is_some() {
        return vec![explicit; phases.len()];
    }
    phases
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let same: Vec<usize> = (0..phases.len()).filter(|j| phases[*j] == *phase).collect();
            let rank = same.iter().position(|j| *j == i).unwrap_or(0);
            let later = same.len() - 1 - rank;
            (same.len() > 1).then(|| i32::try_from(later * 10).unwrap_or(i32::MAX))
        })
        .collect()
}

/// One WasmPlugin or TrafficExtension per plugin, and the warnings.
pub fn istio(
    kind: IstioKind,
    plugins: &[Resolved],
    options: &IstioOptions,
) -> Result<(Vec<IstioManifest>, Vec<Warning>)> {
    let mut warnings = config_warnings(plugins);
    let Mesh {
        plugins,
        services,
        warnings: mesh_warnings,
    } = crate::mesh::rewrite(
        plugins,
        &MeshOptions {
            clusters: options.clusters.clone(),
            jwks_tls: options.jwks_tls.clone(),
            ca_secrets: options.ca_secrets.clone(),
            adds_clusters: false,
        },
    )?;
    warnings.extend(mesh_warnings);
    warnings.extend(missing_modules(&plugins));
    let plugins = plugins.as_slice();
    let mut documents = Vec::new();
    let phases: Vec<Option<Phase>> = plugins
        .iter()
        .map(|p| options.phase.or(p.configured.plugin.phase))
        .collect();
    let priorities = priorities(&phases, options.priority);
    if let Some(priority) = options.priority {
        for (i, plugin) in plugins.iter().enumerate() {
            if phases[..i].contains(&phases[i]) {
                warnings.push(Warning {
                    plugin: plugin.name().to_owned(),
                    message: format!(
                        "--priority {priority} is given to every plugin, and another one shares its phase: Istio will order them by creation time; leave --priority out to order them as the --plugin flags are"
                    ),
                });
            }
        }
    }
    for (plugin, priority) in plugins.iter().zip(priorities) {
        let (url, sha256) = plugin.fetched_from(options.oci)?;
        let phase = options.phase.or(plugin.configured.plugin.phase);
        warnings.extend(lints(plugin, options, phase));
        let spec = PluginSpec {
            metadata: Metadata {
                name: plugin.name().to_owned(),
                namespace: options.namespace.clone(),
            },
            plugin_config: plugin.configured.config.clone(),
            phase,
            priority,
            selector: options.selector.clone(),
            target_refs: options.target_refs.clone(),
            traffic: options.traffic.clone(),
            fail_strategy: options.fail_strategy,
            image_pull_policy: options.image_pull_policy,
            image_pull_secret: options.image_pull_secret.clone(),
            env: options.env.clone(),
            ..PluginSpec::new(plugin.name(), &url, sha256)
        };
        let document = match kind {
            IstioKind::WasmPlugin => {
                wasmgate_istio::wasm_plugin(&spec).map(|m| IstioManifest::WasmPlugin(Box::new(m)))
            }
            IstioKind::TrafficExtension => wasmgate_istio::traffic_extension(&spec)
                .map(|m| IstioManifest::TrafficExtension(Box::new(m))),
        }
        .map_err(|e| Error::failed(format!("{}: {e}", plugin.name())))?;
        documents.push(document);
    }
    documents.extend(mesh_documents(&services, options.namespace.as_deref())?);
    Ok((documents, warnings))
}

/// The EnvoyFilter's settings besides the plugins.
#[derive(Debug, Clone)]
pub struct EnvoyFilterOptions {
    pub name: String,
    pub namespace: Option<String>,
    pub selector: BTreeMap<String, String>,
    pub context: PatchContext,
    /// How the JWKS clusters check the issuer's server.
    pub jwks_tls: JwksTls,
    /// Istio's ECDS form (the default) or the filters inline.
    pub delivery: Delivery,
    /// ECDS form: reference the OCI image instead of the HTTP download.
    pub oci: bool,
    pub priority: Option<i32>,
    pub target_refs: Vec<TargetRef>,
    pub fail_strategy: Option<FailStrategy>,
    /// `--cluster NAME=URL`: inline, one more cluster added; ECDS, where a gRPC service
    /// named in a pluginConfig is (`grpc://HOST:PORT`).
    pub clusters: Vec<(String, String)>,
    /// ECDS: `--jwks-ca-secret`, see [`MeshOptions::ca_secrets`].
    pub ca_secrets: BTreeMap<Option<String>, String>,
}

/// ECDS: each plugin's code from its HTTP URL or OCI image, fetched by istio-agent (no
/// registry cluster); the JWKS clusters the configurations call out to.
fn ecds_filters(plugins: &[Resolved], oci: bool) -> Result<(Vec<WasmFilter>, Clusters)> {
    let mut filters = Vec::new();
    for plugin in plugins {
        let (url, sha256) = plugin.fetched_from(oci)?;
        // istio-agent downloads the module itself and hands Envoy a local file: the
        // cluster named here is never used.
        let mut filter = WasmFilter::new(
            plugin.name(),
            Code::Remote(Remote::new(url, REGISTRY_CLUSTER, sha256)),
        );
        filter.configuration = plugin.configured.config_json();
        filters.push(filter);
    }
    Ok((filters, callout_clusters(plugins)?))
}

/// One EnvoyFilter inserting every plugin, in order, with code fetched with sha256, with the
/// warnings (see [`JwksTls`]). In the ECDS form, callouts go through Istio's clusters and
/// the ServiceEntry and DestinationRule documents for them follow the EnvoyFilter.
pub fn envoy_filter(
    plugins: &[Resolved],
    options: &EnvoyFilterOptions,
) -> Result<(Vec<IstioManifest>, Vec<Warning>)> {
    let mut warnings = config_warnings(plugins);
    warnings.extend(missing_modules(plugins));
    let mut documents = Vec::new();
    let (filters, clusters) = match options.delivery {
        Delivery::Inline => {
            let (filters, mut clusters) = wasm_filters(plugins, CodeFrom::Remote)?;
            for (name, url) in &options.clusters {
                match clusters.iter_mut().find(|(n, _)| n == name) {
                    Some(existing) => existing.1 = url.clone(),
                    None => clusters.push((name.clone(), url.clone())),
                }
            }
            check_grpc_clusters(plugins, &clusters)?;
            (filters, clusters)
        }
        Delivery::Ecds { .. } => {
            let mesh = crate::mesh::rewrite(
                plugins,
                &MeshOptions {
                    clusters: options.clusters.clone(),
                    jwks_tls: options.jwks_tls.clone(),
                    ca_secrets: options.ca_secrets.clone(),
                    adds_clusters: true,
                },
            )?;
            warnings.extend(mesh.warnings);
            documents = mesh_documents(&mesh.services, options.namespace.as_deref())?;
            let (filters, mut clusters) = ecds_filters(&mesh.plugins, options.oci)?;
            // Istio builds the outbound clusters; a callout Istio cannot name keeps a
            // cluster the EnvoyFilter adds.
            clusters
                .retain(|(name, _)| wasmgate_istio::mesh::parse_outbound_cluster(name).is_none());
            (filters, clusters)
        }
    };
    let jwks_tls = match options.delivery {
        Delivery::Inline => options.jwks_tls.clone(),
        // Per-cluster settings were taken by the mesh rewrite.
        Delivery::Ecds { .. } => JwksTls {
            cluster_ca_files: options
                .jwks_tls
                .cluster_ca_files
                .iter()
                .filter(|(name, _)| clusters.iter().any(|(n, _)| n == *name))
                .map(|(n, p)| (n.clone(), p.clone()))
                .collect(),
            ..options.jwks_tls.clone()
        },
    };
    let (trust, trust_warnings) = jwks_trust(plugins, &clusters, &jwks_tls)?;
    for warning in trust_warnings {
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    if options.fail_strategy == Some(FailStrategy::FailOpen) {
        for plugin in plugins
            .iter()
            .filter(|p| p.configured.plugin.phase.is_some())
        {
            warnings.push(Warning {
                plugin: plugin.name().to_owned(),
                message: format!(
                    "failStrategy FAIL_OPEN: if {} fails to load or crashes, requests go through unchecked",
                    plugin.name()
                ),
            });
        }
    }
    let manifest = wasmgate_istio::envoy_filter(&EnvoyFilterSpec {
        metadata: Metadata {
            name: options.name.clone(),
            namespace: options.namespace.clone(),
        },
        selector: options.selector.clone(),
        context: options.context,
        filters,
        clusters,
        trust,
        delivery: options.delivery.clone(),
        priority: options.priority,
        target_refs: options.target_refs.clone(),
        fail_strategy: options.fail_strategy,
    })
    .map_err(|e| Error::failed(e.0))?;
    documents.insert(0, IstioManifest::EnvoyFilter(Box::new(manifest)));
    Ok((documents, warnings))
}

/// Serialize documents as YAML (separated by `---`) or JSON (one per document, or an array).
pub fn encode<T: Serialize>(documents: &[T], format: Format) -> Result<String> {
    let fail = |e: String| Error::failed(format!("cannot encode the output: {e}"));
    match format {
        Format::Yaml => {
            let mut out = String::new();
            for (i, document) in documents.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_norway::to_string(document).map_err(|e| fail(e.to_string()))?);
            }
            Ok(out)
        }
        Format::Json => {
            let text = match documents {
                [one] => serde_json::to_string_pretty(one),
                many => serde_json::to_string_pretty(many),
            };
            text.map(|t| t + "\n").map_err(|e| fail(e.to_string()))
        }
    }
}

/// How a manifest is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_sharing_a_phase_run_in_flag_order() {
        let phases = [
            Some(Phase::Authn),
            Some(Phase::Authz),
            None,
            Some(Phase::Authn),
            None,
            Some(Phase::Authn),
        ];
        assert_eq!(
            priorities(&phases, None),
            [Some(20), None, Some(10), Some(10), Some(0), Some(0)]
        );
        assert_eq!(priorities(&phases[..2], None), [None, None]);
        assert_eq!(priorities(&phases[..2], Some(5)), [Some(5), Some(5)]);
    }
}
