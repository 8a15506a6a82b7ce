//! A plugin's callouts inside an Istio mesh. A WasmPlugin or TrafficExtension cannot add
//! Envoy clusters, so each callout cluster in a pluginConfig (jwt-auth's `remote_jwks`,
//! rate-limit's `rate_limit_service`) is rewritten to the cluster Istio builds for the
//! service, `outbound|PORT||HOST`, and the `ServiceEntry` (plus, for `https`, the
//! `DestinationRule` originating verified TLS) that makes Istio build it is rendered too.
//! What cannot be a mesh cluster is a warning naming the cluster, never silent.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use wasmgate_istio::mesh::{self, MeshService, Protocol, Verify};

use crate::error::{Error, Result};
use crate::render::{JwksTls, Resolved, Warning};

/// How the callouts are found and checked.
#[derive(Debug, Clone, Default)]
pub struct MeshOptions {
    /// `--cluster NAME=grpc://HOST:PORT`: where a gRPC service named in a pluginConfig is.
    pub clusters: Vec<(String, String)>,
    /// CA files for `https` JWKS (paths in the proxy's container), or no verification.
    pub jwks_tls: JwksTls,
    /// `--jwks-ca-secret`: a Secret holding the CA for every https JWKS cluster (`None` key)
    /// or for one, by the pluginConfig's cluster name.
    pub ca_secrets: BTreeMap<Option<String>, String>,
    /// The manifest can add clusters itself (an EnvoyFilter): a callout Istio cannot name
    /// keeps its cluster without a warning.
    pub adds_clusters: bool,
}

/// The plugins with their callout clusters rewritten, the services to declare, and warnings.
pub struct Mesh {
    pub plugins: Vec<Resolved>,
    pub services: Vec<MeshService>,
    pub warnings: Vec<Warning>,
}

/// What a host gives: a name Istio can declare, or why not.
fn nameable(host: &url::Host<&str>) -> std::result::Result<String, &'static str> {
    match host {
        url::Host::Domain("localhost") => Err("localhost, which is the proxy itself"),
        url::Host::Domain(name) => Ok(name.to_ascii_lowercase()),
        url::Host::Ipv4(_) | url::Host::Ipv6(_) => {
            Err("an IP address, which no ServiceEntry host can be")
        }
    }
}

struct Rewriter<'a> {
    options: &'a MeshOptions,
    plugin: &'static str,
    services: Vec<MeshService>,
    warnings: Vec<Warning>,
    used: Vec<String>,
}

impl Rewriter<'_> {
    fn warn(&mut self, message: String) {
        self.warnings.push(Warning {
            plugin: self.plugin.to_owned(),
            message,
        });
    }

    fn add(&mut self, service: MeshService) -> Result<()> {
        match self
            .services
            .iter()
            .find(|s| s.host == service.host && s.port == service.port)
        {
            Some(existing) if existing.protocol != service.protocol => Err(Error::failed(format!(
                "{}: {}:{} is called as {:?} and as {:?}; one port has one protocol",
                self.plugin, service.host, service.port, existing.protocol, service.protocol
            ))),
            Some(_) => Ok(()),
            None => {
                self.services.push(service);
                Ok(())
            }
        }
    }

    fn verify(&mut self, cluster: &str, uri: &str) -> Verify {
        let tls = &self.options.jwks_tls;
        if tls.insecure {
            self.warn(format!(
                "--insecure-jwks-tls: the certificate of {uri} (cluster {cluster}) is NOT checked; anyone on the path can swap the keys and mint tokens that pass"
            ));
            return Verify::Insecure;
        }
        let secrets = &self.options.ca_secrets;
        if let Some(secret) = secrets
            .get(&Some(cluster.to_owned()))
            .or_else(|| secrets.get(&None))
        {
            return Verify::Secret(secret.clone());
        }
        let path: Option<&PathBuf> = tls.cluster_ca_files.get(cluster).or(tls.ca_file.as_ref());
        Verify::CaFile(path.map_or_else(
            || wasmgate_envoy::SYSTEM_CA_BUNDLE.to_owned(),
            |p| p.display().to_string(),
        ))
    }

    /// jwt-auth's `remote_jwks {uri, cluster}`.
    fn jwks(&mut self, map: &mut serde_json::Map<String, Value>) -> Result<()> {
        let (Some(Value::String(uri)), Some(Value::String(cluster))) =
            (map.get("uri").cloned(), map.get("cluster").cloned())
        else {
            return Ok(());
        };
        self.used.push(cluster.clone());
        let parsed = url::Url::parse(&uri)
            .map_err(|e| Error::failed(format!("{}: uri {uri:?}: {e}", self.plugin)))?;
        let (Some(host), Some(port)) = (parsed.host(), parsed.port_or_known_default()) else {
            return Err(Error::failed(format!(
                "{}: uri {uri:?}: no host or port",
                self.plugin
            )));
        };
        let host = match nameable(&host) {
            Ok(host) => host,
            Err(why) => {
                if !self.options.adds_clusters {
                    self.warn(format!(
                        "cluster {cluster:?} cannot exist in a mesh: {uri} is on {why}, and a WasmPlugin cannot add clusters; the proxy will answer every fetch with no keys (give the JWKS by DNS name)"
                    ));
                }
                return Ok(());
            }
        };
        let protocol = match parsed.scheme() {
            "https" => Protocol::Https,
            _ => Protocol::Http,
        };
        let outbound = mesh::outbound_cluster(&host, port);
        if let Some((p, h)) = mesh::parse_outbound_cluster(&cluster) {
            if (p, h) != (port, host.as_str()) {
                self.warn(format!(
                    "cluster {cluster:?} is not the one Istio builds for {uri}; using {outbound:?}"
                ));
            }
        }
        if protocol == Protocol::Http && !mesh::in_mesh(&host) {
            self.warn(format!(
                "JWKS cluster {outbound} fetches keys over plain http ({uri}): anyone on the path can swap them and mint tokens that pass; use https"
            ));
        }
        let verify = (protocol == Protocol::Https).then(|| self.verify(&cluster, &uri));
        map.insert("cluster".into(), Value::String(outbound));
        // A Kubernetes service already has its cluster; only TLS origination is added.
        if !mesh::in_mesh(&host) || protocol == Protocol::Https {
            self.add(MeshService {
                host,
                port,
                protocol,
                verify,
            })?;
        }
        Ok(())
    }

    /// rate-limit's `rate_limit_service.cluster`: the address comes from `--cluster`, or the
    /// name is already Istio's.
    fn grpc(&mut self, config: &mut Value) -> Result<()> {
        let Some(Value::String(cluster)) = config.pointer("/rate_limit_service/cluster").cloned()
        else {
            return Ok(());
        };
        self.used.push(cluster.clone());
        let given = self
            .options
            .clusters
            .iter()
            .find(|(name, _)| *name == cluster)
            .map(|(_, url)| url.clone());
        let (host, port) = match &given {
            Some(url) => {
                let parsed = url::Url::parse(url)
                    .ok()
                    .filter(|u| u.scheme() == "grpc")
                    .ok_or_else(|| {
                        Error::usage(format!(
                            "--cluster {cluster}={url}: expected grpc://HOST:PORT (TLS to the rate limit service is not rendered for Istio; use the mesh's mTLS)"
                        ))
                    })?;
                let (Some(host), Some(port)) = (parsed.host(), parsed.port()) else {
                    return Err(Error::usage(format!(
                        "--cluster {cluster}={url}: expected grpc://HOST:PORT"
                    )));
                };
                match nameable(&host) {
                    Ok(host) => (host, port),
                    Err(why) => {
                        return Err(Error::usage(format!(
                            "--cluster {cluster}={url}: the host is {why}; give the rate limit service by DNS name"
                        )))
                    }
                }
            }
            None => match mesh::parse_outbound_cluster(&cluster) {
                Some((port, host)) => (host.to_owned(), port),
                None => {
                    if !self.options.adds_clusters {
                        self.warn(format!(
                            "rate_limit_service.cluster {cluster:?} cannot exist in a mesh (Istio names clusters outbound|PORT||HOST); give --cluster {cluster}=grpc://HOST:PORT, or every global rule follows its failure_mode"
                        ));
                    }
                    return Ok(());
                }
            },
        };
        if let Some(slot) = config.pointer_mut("/rate_limit_service/cluster") {
            *slot = Value::String(mesh::outbound_cluster(&host, port));
        }
        if !mesh::in_mesh(&host) {
            self.add(MeshService {
                host,
                port,
                protocol: Protocol::Grpc,
                verify: None,
            })?;
        }
        Ok(())
    }
}

fn walk(value: &mut Value, rewriter: &mut Rewriter<'_>) -> Result<()> {
    match value {
        Value::Object(map) => {
            rewriter.jwks(map)?;
            for child in map.values_mut() {
                walk(child, rewriter)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, rewriter)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Rewrite every callout cluster of `plugins` to Istio's and list the services to declare.
pub fn rewrite(plugins: &[Resolved], options: &MeshOptions) -> Result<Mesh> {
    let mut rewriter = Rewriter {
        options,
        plugin: "",
        services: Vec::new(),
        warnings: Vec::new(),
        used: Vec::new(),
    };
    let mut out = Vec::new();
    for plugin in plugins {
        let mut plugin = plugin.clone();
        rewriter.plugin = plugin.configured.plugin.name;
        rewriter.grpc(&mut plugin.configured.config)?;
        walk(&mut plugin.configured.config, &mut rewriter)?;
        out.push(plugin);
    }
    for (name, _) in &options.clusters {
        if !rewriter.used.contains(name) {
            return Err(Error::usage(format!(
                "--cluster {name}=…: no pluginConfig calls a cluster {name:?}"
            )));
        }
    }
    let tls = &options.jwks_tls;
    let named = tls
        .cluster_ca_files
        .keys()
        .chain(options.ca_secrets.keys().flatten());
    for name in named {
        if !rewriter.used.contains(name) {
            return Err(Error::usage(format!(
                "a CA for cluster {name:?}: no remote JWKS uses that cluster"
            )));
        }
    }
    if tls.insecure && (tls.ca_file.is_some() || !tls.cluster_ca_files.is_empty()) {
        return Err(Error::usage(
            "--insecure-jwks-tls turns verification off; it cannot go with --jwks-ca-file",
        ));
    }
    Ok(Mesh {
        plugins: out,
        services: rewriter.services,
        warnings: rewriter.warnings,
    })
}
