//! What a plugin's callouts need inside a mesh. A WasmPlugin or TrafficExtension cannot add
//! Envoy clusters, so a callout (jwt-auth's remote JWKS, rate-limit's rate limit service) goes
//! through the cluster Istio builds for a service: `outbound|PORT||HOST`. For a host outside
//! the mesh, Istio builds that cluster only when a `ServiceEntry` declares the host and port;
//! for `https`, a `DestinationRule` makes the cluster originate TLS and check the server.

use serde::Serialize;

use crate::api::Metadata;
use crate::manifest::ManifestError;
use crate::validate;

/// The name of the cluster Istio builds for `host:port` (no subset).
pub fn outbound_cluster(host: &str, port: u16) -> String {
    format!("outbound|{port}||{host}")
}

/// `outbound|PORT|SUBSET|HOST` → (port, host); any other name is not one of Istio's clusters.
pub fn parse_outbound_cluster(name: &str) -> Option<(u16, &str)> {
    let mut parts = name.split('|');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("outbound"), Some(port), Some(_), Some(host), None) if !host.is_empty() => {
            Some((port.parse().ok().filter(|p| *p > 0)?, host))
        }
        _ => None,
    }
}

/// A Kubernetes service name (`name.namespace.svc[.cluster.local]`): Istio already has its
/// cluster, so no ServiceEntry is written for it.
pub fn in_mesh(host: &str) -> bool {
    host.ends_with(".svc.cluster.local") || host.ends_with(".svc")
}

/// The port protocol Istio gives the service (`ServiceEntry.ports[].protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Http,
    /// TLS from the proxy: with a DestinationRule originating it.
    Https,
    /// HTTP/2, as a gRPC callout needs.
    Grpc,
}

/// How the proxy checks an `https` service's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// A CA bundle file in the proxy's container (`caCertificates`).
    CaFile(String),
    /// A Secret holding the CA (`credentialName`).
    Secret(String),
    /// Nothing is checked (`insecureSkipVerify`).
    Insecure,
}

/// A service outside the mesh that a plugin calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshService {
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
    /// For [`Protocol::Https`]: how the certificate is checked.
    pub verify: Option<Verify>,
}

impl MeshService {
    /// The cluster Istio builds for it.
    pub fn cluster(&self) -> String {
        outbound_cluster(&self.host, self.port)
    }

    /// The name of its ServiceEntry and DestinationRule: `wasmgate-<host>-<port>`.
    pub fn object_name(&self) -> String {
        format!("wasmgate-{}-{}", self.host.to_ascii_lowercase(), self.port)
    }

    fn port_name(&self) -> String {
        let protocol = match self.protocol {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
        };
        format!("{protocol}-{}", self.port)
    }
}

/// A `networking.istio.io/v1` `ServiceEntry`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Metadata,
    pub spec: ServiceEntrySpec,
}

/// `ServiceEntry.spec`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceEntrySpec {
    pub hosts: Vec<String>,
    pub location: &'static str,
    pub ports: Vec<ServicePort>,
    pub resolution: &'static str,
}

/// One of `ServiceEntry.spec.ports`.
#[derive(Debug, Clone, Serialize)]
pub struct ServicePort {
    pub number: u16,
    pub name: String,
    pub protocol: Protocol,
}

/// A `networking.istio.io/v1` `DestinationRule`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRule {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Metadata,
    pub spec: DestinationRuleSpec,
}

/// `DestinationRule.spec`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    pub host: String,
    pub traffic_policy: TrafficPolicy,
}

/// `trafficPolicy`: TLS settings for the callout's port only.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

/// One of `trafficPolicy.portLevelSettings`.
#[derive(Debug, Clone, Serialize)]
pub struct PortTrafficPolicy {
    pub port: PortNumber,
    pub tls: ClientTls,
}

/// `portLevelSettings[].port`.
#[derive(Debug, Clone, Serialize)]
pub struct PortNumber {
    pub number: u16,
}

/// `ClientTLSSettings`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTls {
    pub mode: &'static str,
    pub sni: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

fn check(service: &MeshService, namespace: Option<&str>) -> Result<Metadata, ManifestError> {
    let metadata = Metadata {
        name: service.object_name(),
        namespace: namespace.map(str::to_owned),
    };
    validate::metadata(&metadata)?;
    if service.port == 0 {
        return Err(ManifestError(format!("{}: port 0", service.host)));
    }
    // Istio's hosts are names; an IP address would need `addresses` and STATIC endpoints.
    if service.host.parse::<std::net::IpAddr>().is_ok()
        || service
            .host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    {
        return Err(ManifestError(format!(
            "ServiceEntry hosts: {} is an IP address; give the service by DNS name",
            service.host
        )));
    }
    validate::dns_subdomain("ServiceEntry hosts", &service.host)?;
    Ok(metadata)
}

/// The `ServiceEntry` that makes Istio build [`MeshService::cluster`]: the host outside the
/// mesh (`MESH_EXTERNAL`), resolved by DNS, with the one port and its protocol.
pub fn service_entry(
    service: &MeshService,
    namespace: Option<&str>,
) -> Result<ServiceEntry, ManifestError> {
    let metadata = check(service, namespace)?;
    Ok(ServiceEntry {
        api_version: "networking.istio.io/v1",
        kind: "ServiceEntry",
        metadata,
        spec: ServiceEntrySpec {
            hosts: vec![service.host.clone()],
            location: "MESH_EXTERNAL",
            ports: vec![ServicePort {
                number: service.port,
                name: service.port_name(),
                protocol: service.protocol,
            }],
            resolution: "DNS",
        },
    })
}

/// For an `https` service, the `DestinationRule` that makes its cluster originate TLS
/// (`SIMPLE`) with the host as SNI, checking the certificate against the CA and the host in
/// its names (unless [`Verify::Insecure`]). `None` for other protocols.
pub fn destination_rule(
    service: &MeshService,
    namespace: Option<&str>,
) -> Result<Option<DestinationRule>, ManifestError> {
    if service.protocol != Protocol::Https {
        return Ok(None);
    }
    let metadata = check(service, namespace)?;
    let verify = service.verify.clone().ok_or_else(|| {
        ManifestError(format!(
            "{}: an https service needs a CA file, a CA Secret or insecure",
            service.host
        ))
    })?;
    let mut tls = ClientTls {
        mode: "SIMPLE",
        sni: service.host.clone(),
        ca_certificates: None,
        credential_name: None,
        subject_alt_names: vec![service.host.clone()],
        insecure_skip_verify: false,
    };
    match verify {
        Verify::CaFile(path) => tls.ca_certificates = Some(path),
        Verify::Secret(secret) => {
            validate::dns_subdomain("credentialName", &secret)?;
            tls.credential_name = Some(secret);
        }
        Verify::Insecure => {
            tls.subject_alt_names.clear();
            tls.insecure_skip_verify = true;
        }
    }
    Ok(Some(DestinationRule {
        api_version: "networking.istio.io/v1",
        kind: "DestinationRule",
        metadata,
        spec: DestinationRuleSpec {
            host: service.host.clone(),
            traffic_policy: TrafficPolicy {
                port_level_settings: vec![PortTrafficPolicy {
                    port: PortNumber {
                        number: service.port,
                    },
                    tls,
                }],
            },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwks(verify: Verify) -> MeshService {
        MeshService {
            host: "login.example.com".into(),
            port: 443,
            protocol: Protocol::Https,
            verify: Some(verify),
        }
    }

    #[test]
    fn outbound_cluster_names_round_trip() {
        let name = outbound_cluster("login.example.com", 443);
        assert_eq!(name, "outbound|443||login.example.com");
        assert_eq!(
            parse_outbound_cluster(&name),
            Some((443, "login.example.com"))
        );
        assert_eq!(
            parse_outbound_cluster("outbound|8081|v1|rls.default.svc.cluster.local"),
            Some((8081, "rls.default.svc.cluster.local"))
        );
        for bad in [
            "rls",
            "inbound|8081||rls",
            "outbound|0||rls",
            "outbound|x||rls",
            "outbound|80||",
            "outbound|80||a|b",
        ] {
            assert_eq!(parse_outbound_cluster(bad), None, "{bad}");
        }
        assert!(in_mesh("rls.default.svc.cluster.local"));
        assert!(!in_mesh("login.example.com"));
    }

    #[test]
    fn an_https_service_gets_a_service_entry_and_tls_origination() {
        let service = jwks(Verify::CaFile("/etc/ssl/certs/ca-certificates.crt".into()));
        let entry =
            serde_json::to_value(service_entry(&service, Some("default")).unwrap()).unwrap();
        assert_eq!(entry["metadata"]["name"], "wasmgate-login.example.com-443");
        assert_eq!(entry["spec"]["hosts"][0], "login.example.com");
        assert_eq!(entry["spec"]["location"], "MESH_EXTERNAL");
        assert_eq!(entry["spec"]["resolution"], "DNS");
        assert_eq!(
            entry["spec"]["ports"][0],
            serde_json::json!({"number": 443, "name": "https-443", "protocol": "HTTPS"})
        );
        let rule = destination_rule(&service, Some("default"))
            .unwrap()
            .unwrap();
        let rule = serde_json::to_value(rule).unwrap();
        let tls = &rule["spec"]["trafficPolicy"]["portLevelSettings"][0];
        assert_eq!(tls["port"]["number"], 443);
        assert_eq!(
            tls["tls"],
            serde_json::json!({
                "mode": "SIMPLE",
                "sni": "login.example.com",
                "caCertificates": "/etc/ssl/certs/ca-certificates.crt",
                "subjectAltNames": ["login.example.com"],
            })
        );
        let secret = destination_rule(&jwks(Verify::Secret("issuer-ca".into())), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            secret.spec.traffic_policy.port_level_settings[0]
                .tls
                .credential_name
                .as_deref(),
            Some("issuer-ca")
        );
        let insecure = destination_rule(&jwks(Verify::Insecure), None)
            .unwrap()
            .unwrap();
        let tls = &insecure.spec.traffic_policy.port_level_settings[0].tls;
        assert!(tls.insecure_skip_verify && tls.subject_alt_names.is_empty());
    }

    #[test]
    fn plain_and_grpc_services_get_no_destination_rule() {
        let grpc = MeshService {
            host: "rls.example.com".into(),
            port: 8081,
            protocol: Protocol::Grpc,
            verify: None,
        };
        assert!(destination_rule(&grpc, None).unwrap().is_none());
        let entry = service_entry(&grpc, None).unwrap();
        assert_eq!(entry.spec.ports[0].protocol, Protocol::Grpc);
        assert_eq!(entry.spec.ports[0].name, "grpc-8081");
    }

    #[test]
    fn ip_hosts_and_bad_names_are_refused() {
        for host in ["10.0.0.7", "[::1]", "Login_Example"] {
            let service = MeshService {
                host: host.into(),
                port: 443,
                protocol: Protocol::Http,
                verify: None,
            };
            assert!(service_entry(&service, None).is_err(), "{host}");
        }
        let err = destination_rule(&jwks(Verify::Secret("Bad Secret".into())), None).unwrap_err();
        assert!(err.0.contains("credentialName"), "{err}");
    }
}
