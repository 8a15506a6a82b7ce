//! A complete static bootstrap: one listener whose HTTP connection manager runs the chosen
//! Wasm filters in order and then the router, and the clusters it needs (the upstream, the
//! registry the modules come from, JWKS issuers, …).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::tls::{Trust, UpstreamTls};
use crate::wasm::{Code, HttpFilter, WasmFilter};

/// The name of the cluster requests are routed to.
pub const UPSTREAM_CLUSTER: &str = "upstream";

/// A configuration that cannot be rendered, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RenderError {}

/// What the bootstrap holds.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Where the listener accepts requests.
    pub listen: SocketAddr,
    /// Where the admin interface listens; none when absent.
    pub admin: Option<SocketAddr>,
    /// The Wasm filters, in the order they run.
    pub filters: Vec<WasmFilter>,
    /// `http://host:port` (or `https://`) every request is routed to.
    pub upstream: String,
    /// More clusters by name and URL: the registry, JWKS issuers, ….
    pub clusters: Vec<(String, String)>,
    /// How `https` clusters check their server, by cluster name; any other `https` cluster
    /// is verified against [`SYSTEM_CA_BUNDLE`](crate::SYSTEM_CA_BUNDLE).
    pub trust: BTreeMap<String, Trust>,
}

/// Build the bootstrap; fails on a malformed URL, a duplicate cluster, a filter fetching
/// its code through a cluster the bootstrap does not define, or a trust setting for a cluster
/// that is not an `https` cluster of the bootstrap.
pub fn render(spec: &Spec) -> Result<Bootstrap, RenderError> {
    let trust = |name: &str| spec.trust.get(name).cloned().unwrap_or_default();
    let mut clusters = vec![Cluster::for_url_trusting(
        UPSTREAM_CLUSTER,
        &spec.upstream,
        &trust(UPSTREAM_CLUSTER),
    )?];
    for (name, url) in &spec.clusters {
        clusters.push(Cluster::for_url_trusting(name, url, &trust(name))?);
    }
    check_trust(&spec.trust, &clusters)?;
    let mut names = BTreeSet::new();
    for cluster in &clusters {
        if !names.insert(cluster.name.as_str()) {
            return Err(RenderError(format!(
                "cluster {:?} is defined twice",
                cluster.name
            )));
        }
    }
    for filter in &spec.filters {
        if let Code::Remote(remote) = &filter.code {
            if !names.contains(remote.cluster.as_str()) {
                return Err(RenderError(format!(
                    "plugin {} fetches its code through cluster {:?}, which is not defined (defined: {})",
                    filter.plugin,
                    remote.cluster,
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    let http_filters = spec
        .filters
        .iter()
        .map(WasmFilter::to_http_filter)
        .collect();
    Ok(Bootstrap::new(
        spec.listen,
        spec.admin,
        http_filters,
        Action::upstream(),
        clusters,
    ))
}

/// Refuse a trust setting that would have no effect: it names no cluster, or a plain `http`
/// one (most likely a typo, and the user believes that cluster is checked).
pub fn check_trust(
    trust: &BTreeMap<String, Trust>,
    clusters: &[Cluster],
) -> Result<(), RenderError> {
    for name in trust.keys() {
        match clusters.iter().find(|c| c.name == *name) {
            Some(cluster) if cluster.transport_socket.is_some() => {}
            Some(_) => {
                return Err(RenderError(format!(
                    "cluster {name}: a TLS setting is given, but the cluster is plain http"
                )))
            }
            None => {
                return Err(RenderError(format!(
                "a TLS setting is given for cluster {name:?}, which is not defined (defined: {})",
                clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
            }
        }
    }
    Ok(())
}

/// `envoy.config.bootstrap.v3.Bootstrap`, the parts Wasmgate writes.
#[derive(Debug, Clone, Serialize)]
pub struct Bootstrap {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
    pub static_resources: StaticResources,
}

impl Bootstrap {
    /// One listener on `listen` whose connection manager runs `http_filters`, then the router,
    /// then `action` for every path; the admin interface on `admin` when given. [`render`]
    /// checks a [`Spec`] and builds this; test harnesses that need native filters or other
    /// actions build it directly.
    pub fn new(
        listen: SocketAddr,
        admin: Option<SocketAddr>,
        mut http_filters: Vec<HttpFilter>,
        action: Action,
        clusters: Vec<Cluster>,
    ) -> Bootstrap {
        http_filters.push(HttpFilter::router());
        Bootstrap {
            admin: admin.map(|addr| Admin {
                address: Address::socket(addr),
            }),
            static_resources: StaticResources {
                listeners: vec![Listener {
                    name: "wasmgate".into(),
                    address: Address::socket(listen),
                    filter_chains: vec![FilterChain {
                        filters: vec![NetworkFilter {
                            name: "envoy.filters.network.http_connection_manager",
                            typed_config: HttpConnectionManager {
                                stat_prefix: "wasmgate",
                                route_config: RouteConfig {
                                    name: "wasmgate",
                                    virtual_hosts: vec![VirtualHost {
                                        name: "all",
                                        domains: vec!["*"],
                                        routes: vec![Route {
                                            r#match: RouteMatch { prefix: "/" },
                                            action,
                                        }],
                                    }],
                                },
                                http_filters,
                            },
                        }],
                    }],
                }],
                clusters,
            },
        }
    }
}

/// `admin`: where the admin interface listens.
#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    pub address: Address,
}

/// `static_resources`.
#[derive(Debug, Clone, Serialize)]
pub struct StaticResources {
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
}

/// `envoy.config.listener.v3.Listener`.
#[derive(Debug, Clone, Serialize)]
pub struct Listener {
    pub name: String,
    pub address: Address,
    pub filter_chains: Vec<FilterChain>,
}

/// One filter chain of a listener.
#[derive(Debug, Clone, Serialize)]
pub struct FilterChain {
    pub filters: Vec<NetworkFilter>,
}

/// The network filter of a chain: the HTTP connection manager.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkFilter {
    pub name: &'static str,
    pub typed_config: HttpConnectionManager,
}

/// `envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`.
#[derive(Debug, Clone, Serialize)]
#[serde(
    tag = "@type",
    rename = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)]
pub struct HttpConnectionManager {
    pub stat_prefix: &'static str,
    pub route_config: RouteConfig,
    pub http_filters: Vec<HttpFilter>,
}

/// `envoy.config.route.v3.RouteConfiguration`.
#[derive(Debug, Clone, Serialize)]
pub struct RouteConfig {
    pub name: &'static str,
    pub virtual_hosts: Vec<VirtualHost>,
}

/// `envoy.config.route.v3.VirtualHost`.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualHost {
    pub name: &'static str,
    pub domains: Vec<&'static str>,
    pub routes: Vec<Route>,
}

/// `envoy.config.route.v3.Route`.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub r#match: RouteMatch,
    #[serde(flatten)]
    pub action: Action,
}

/// What a route does: one of `route` and `direct_response`.
#[derive(Debug, Clone, Serialize)]
pub enum Action {
    /// Forward to a cluster.
    #[serde(rename = "route")]
    Route(RouteAction),
    /// Answer from Envoy itself.
    #[serde(rename = "direct_response")]
    DirectResponse(DirectResponse),
}

impl Action {
    /// Forward to [`UPSTREAM_CLUSTER`], 15 s per request.
    pub fn upstream() -> Action {
        Action::Route(RouteAction {
            cluster: UPSTREAM_CLUSTER,
            timeout: "15s",
        })
    }

    /// Answer `status` with `body`, without an upstream.
    pub fn respond(status: u16, body: &str) -> Action {
        Action::DirectResponse(DirectResponse {
            status,
            body: InlineString {
                inline_string: body.to_owned(),
            },
        })
    }
}

/// `envoy.config.route.v3.RouteMatch` (by path prefix).
#[derive(Debug, Clone, Serialize)]
pub struct RouteMatch {
    pub prefix: &'static str,
}

/// `envoy.config.route.v3.RouteAction`.
#[derive(Debug, Clone, Serialize)]
pub struct RouteAction {
    pub cluster: &'static str,
    pub timeout: &'static str,
}

/// `envoy.config.route.v3.DirectResponseAction`.
#[derive(Debug, Clone, Serialize)]
pub struct DirectResponse {
    pub status: u16,
    pub body: InlineString,
}

/// `envoy.config.core.v3.DataSource` holding its text inline.
#[derive(Debug, Clone, Serialize)]
pub struct InlineString {
    pub inline_string: String,
}

/// `envoy.config.core.v3.Address` (socket addresses only).
#[derive(Debug, Clone, Serialize)]
pub struct Address {
    pub socket_address: SocketAddress,
}

impl Address {
    fn socket(addr: SocketAddr) -> Self {
        Address {
            socket_address: SocketAddress {
                address: addr.ip().to_string(),
                port_value: addr.port(),
            },
        }
    }
}

/// `envoy.config.core.v3.SocketAddress`.
#[derive(Debug, Clone, Serialize)]
pub struct SocketAddress {
    pub address: String,
    pub port_value: u16,
}

/// `envoy.config.cluster.v3.Cluster`: one endpoint, by IP or by DNS name, TLS for `https`
/// and `grpcs`, HTTP/2 for `grpc` and `grpcs` (a gRPC service such as a rate limit service).
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    pub connect_timeout: &'static str,
    /// `STATIC` for an IP address, `LOGICAL_DNS` for a host name.
    pub r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_lookup_family: Option<&'static str>,
    pub load_assignment: LoadAssignment,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_socket: Option<TransportSocket>,
    /// Set for HTTP/2 (gRPC) clusters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typed_extension_protocol_options: Option<ProtocolOptions>,
}

/// A cluster's `typed_extension_protocol_options`: HTTP/2 only.
#[derive(Debug, Clone, Serialize)]
pub struct ProtocolOptions {
    #[serde(rename = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions")]
    pub http: HttpProtocolOptions,
}

/// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions` with `explicit_http_config`.
#[derive(Debug, Clone, Serialize)]
#[serde(
    tag = "@type",
    rename = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)]
pub struct HttpProtocolOptions {
    pub explicit_http_config: ExplicitHttpConfig,
}

/// `explicit_http_config: { http2_protocol_options: {} }`.
#[derive(Debug, Clone, Serialize)]
pub struct ExplicitHttpConfig {
    pub http2_protocol_options: serde_json::Map<String, serde_json::Value>,
}

impl Cluster {
    /// The cluster reaching the host and port of an `http://`, `https://`, `grpc://` or
    /// `grpcs://` URL (a gRPC URL must name its port); TLS is verified against
    /// [`SYSTEM_CA_BUNDLE`](crate::SYSTEM_CA_BUNDLE) and the URL's host.
    pub fn for_url(name: &str, url: &str) -> Result<Cluster, RenderError> {
        Cluster::for_url_trusting(name, url, &Trust::default())
    }

    /// Like [`Cluster::for_url`], TLS checked as `trust` says.
    pub fn for_url_trusting(name: &str, url: &str, trust: &Trust) -> Result<Cluster, RenderError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| RenderError(format!("cluster {name}: URL {url:?}: {e}")))?;
        let scheme = match parsed.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "grpc" => Scheme::Grpc,
            "grpcs" => Scheme::Grpcs,
            other => {
                return Err(RenderError(format!(
                    "cluster {name}: URL {url:?} has scheme {other:?}; expected http, https, grpc or grpcs"
                )))
            }
        };
        if scheme.http2() && parsed.port().is_none() {
            return Err(RenderError(format!(
                "cluster {name}: URL {url:?} has no port; a gRPC URL must name one"
            )));
        }
        let host = match parsed.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => {
                return Err(RenderError(format!(
                    "cluster {name}: URL {url:?} has no host"
                )))
            }
        };
        let port = parsed.port_or_known_default().unwrap_or(80);
        Ok(Cluster::endpoint(name, scheme, host, port, trust))
    }

    /// The cluster reaching `addr` as `scheme` says, as [`Cluster::for_url`] renders
    /// `scheme://addr`.
    pub fn for_socket(name: &str, scheme: Scheme, addr: SocketAddr) -> Cluster {
        Cluster::endpoint(
            name,
            scheme,
            addr.ip().to_string(),
            addr.port(),
            &Trust::default(),
        )
    }

    fn endpoint(name: &str, scheme: Scheme, host: String, port: u16, trust: &Trust) -> Cluster {
        let is_ip = host.parse::<IpAddr>().is_ok();
        Cluster {
            name: name.to_owned(),
            connect_timeout: "5s",
            r#type: if is_ip { "STATIC" } else { "LOGICAL_DNS" },
            dns_lookup_family: (!is_ip).then_some("V4_PREFERRED"),
            load_assignment: LoadAssignment {
                cluster_name: name.to_owned(),
                endpoints: vec![LocalityEndpoints {
                    lb_endpoints: vec![LbEndpoint {
                        endpoint: Endpoint {
                            address: Address {
                                socket_address: SocketAddress {
                                    address: host.clone(),
                                    port_value: port,
                                },
                            },
                        },
                    }],
                }],
            },
            transport_socket: scheme.tls().then(|| TransportSocket {
                name: "envoy.transport_sockets.tls",
                typed_config: UpstreamTls::new(&host, trust),
            }),
            typed_extension_protocol_options: scheme.http2().then(|| ProtocolOptions {
                http: HttpProtocolOptions {
                    explicit_http_config: ExplicitHttpConfig {
                        http2_protocol_options: serde_json::Map::new(),
                    },
                },
            }),
        }
    }
}

/// How a cluster speaks to its endpoint: the scheme of its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP/1.1.
    Http,
    /// HTTP over TLS.
    Https,
    /// HTTP/2 without TLS, as a gRPC service (a rate limit service) needs.
    Grpc,
    /// HTTP/2 over TLS.
    Grpcs,
}

impl Scheme {
    fn tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Grpcs)
    }

    fn http2(self) -> bool {
        matches!(self, Scheme::Grpc | Scheme::Grpcs)
    }
}

/// `envoy.config.endpoint.v3.ClusterLoadAssignment`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadAssignment {
    pub cluster_name: String,
    pub endpoints: Vec<LocalityEndpoints>,
}

/// `envoy.config.endpoint.v3.LocalityLbEndpoints`.
#[derive(Debug, Clone, Serialize)]
pub struct LocalityEndpoints {
    pub lb_endpoints: Vec<LbEndpoint>,
}

/// `envoy.config.endpoint.v3.LbEndpoint`.
#[derive(Debug, Clone, Serialize)]
pub struct LbEndpoint {
    pub endpoint: Endpoint,
}

/// `envoy.config.endpoint.v3.Endpoint`.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub address: Address,
}

/// `envoy.config.core.v3.TransportSocket`: TLS to the upstream.
#[derive(Debug, Clone, Serialize)]
pub struct TransportSocket {
    pub name: &'static str,
    pub typed_config: UpstreamTls,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::Remote;
    use crate::Digest;

    fn spec() -> Spec {
        Spec {
            listen: "127.0.0.1:8080".parse().unwrap(),
            admin: Some("127.0.0.1:9901".parse().unwrap()),
            filters: vec![WasmFilter::new(
                "header-rewrite",
                Code::Remote(Remote::new(
                    "http://127.0.0.1:5000/m",
                    "registry",
                    Digest::of(b"m"),
                )),
            )],
            upstream: "http://127.0.0.1:8000".into(),
            clusters: vec![("registry".into(), "http://127.0.0.1:5000".into())],
            trust: BTreeMap::new(),
        }
    }

    #[test]
    fn filters_run_in_order_before_the_router() {
        let mut spec = spec();
        spec.filters
            .push(WasmFilter::new("rate-limit", Code::Local("/x.wasm".into())));
        let json = serde_json::to_value(render(&spec).unwrap()).unwrap();
        let filters = &json["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"];
        let roots: Vec<_> = filters
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                f["typed_config"]["config"]["root_id"]
                    .as_str()
                    .unwrap_or("")
            })
            .collect();
        assert_eq!(roots, ["header-rewrite", "rate-limit", ""]);
        assert_eq!(filters[2]["name"], "envoy.filters.http.router");
    }

    #[test]
    fn missing_fetch_cluster_is_refused() {
        let mut spec = spec();
        spec.clusters.clear();
        let err = render(&spec).unwrap_err();
        assert!(
            err.0.contains("cluster \"registry\", which is not defined"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_cluster_is_refused() {
        let mut spec = spec();
        spec.clusters
            .push(("upstream".into(), "http://127.0.0.1:1".into()));
        assert!(render(&spec).unwrap_err().0.contains("defined twice"));
    }

    #[test]
    fn clusters_follow_the_url() {
        let dns = Cluster::for_url("jwks", "https://issuer.example.com/keys").unwrap();
        assert_eq!(dns.r#type, "LOGICAL_DNS");
        assert_eq!(
            dns.load_assignment.endpoints[0].lb_endpoints[0]
                .endpoint
                .address
                .socket_address
                .port_value,
            443
        );
        let tls = dns.transport_socket.unwrap().typed_config;
        assert_eq!(tls.sni.as_deref(), Some("issuer.example.com"));
        assert_eq!(tls.trusted_ca(), Some(crate::SYSTEM_CA_BUNDLE));
        let ip = Cluster::for_url("r", "http://[::1]:5000").unwrap();
        assert_eq!(ip.r#type, "STATIC");
        assert_eq!(
            ip.load_assignment.endpoints[0].lb_endpoints[0]
                .endpoint
                .address
                .socket_address
                .address,
            "::1"
        );
        assert!(Cluster::for_url("r", "ftp://x")
            .unwrap_err()
            .0
            .contains("expected http, https, grpc or grpcs"));
        assert!(Cluster::for_url("r", "not a url").is_err());
        let grpc =
            serde_json::to_value(Cluster::for_url("rls", "grpc://10.0.0.5:8081").unwrap()).unwrap();
        assert_eq!(
            grpc["typed_extension_protocol_options"]
                ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"],
            serde_json::json!({
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            })
        );
        assert!(grpc.get("transport_socket").is_none());
        assert!(
            serde_json::to_value(Cluster::for_url("j", "https://a.example").unwrap())
                .unwrap()
                .get("typed_extension_protocol_options")
                .is_none()
        );
        assert!(Cluster::for_url("rls", "grpc://rls.example")
            .unwrap_err()
            .0
            .contains("no port"));
    }

    #[test]
    fn a_socket_cluster_is_its_url_cluster() {
        let addr: SocketAddr = "[::1]:8081".parse().unwrap();
        for (scheme, name) in [
            (Scheme::Http, "http"),
            (Scheme::Https, "https"),
            (Scheme::Grpc, "grpc"),
            (Scheme::Grpcs, "grpcs"),
        ] {
            assert_eq!(
                serde_json::to_value(Cluster::for_socket("c", scheme, addr)).unwrap(),
                serde_json::to_value(Cluster::for_url("c", &format!("{name}://{addr}")).unwrap())
                    .unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_route_forwards_or_answers_itself() {
        let routes = |action| {
            let bootstrap = Bootstrap::new(
                "127.0.0.1:0".parse().unwrap(),
                None,
                vec![HttpFilter::Other {
                    name: "envoy.filters.http.buffer".into(),
                    typed_config: serde_json::json!({"max_request_bytes": 1}),
                }],
                action,
                Vec::new(),
            );
            let json = serde_json::to_value(bootstrap).unwrap();
            let hcm = &json["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"];
            assert_eq!(hcm["http_filters"][0]["name"], "envoy.filters.http.buffer");
            assert_eq!(
                hcm["http_filters"][0]["typed_config"]["max_request_bytes"],
                1
            );
            assert_eq!(hcm["http_filters"][1]["name"], "envoy.filters.http.router");
            assert!(json.get("admin").is_none());
            hcm["route_config"]["virtual_hosts"][0]["routes"][0].clone()
        };
        assert_eq!(
            routes(Action::upstream()),
            serde_json::json!({"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "15s"}})
        );
        assert_eq!(
            routes(Action::respond(200, "ok\n")),
            serde_json::json!({"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}})
        );
    }

    #[test]
    fn trust_applies_by_cluster_name() {
        let mut spec = spec();
        spec.clusters
            .push(("jwks".into(), "https://login.example.com/keys".into()));
        spec.trust
            .insert("jwks".into(), Trust::Verify("/etc/wasmgate/ca.pem".into()));
        let bootstrap = render(&spec).unwrap();
        let jwks = &bootstrap.static_resources.clusters[2];
        let tls = &jwks.transport_socket.as_ref().unwrap().typed_config;
        assert_eq!(tls.trusted_ca(), Some("/etc/wasmgate/ca.pem"));

        spec.trust.insert("jwks".into(), Trust::Insecure);
        let bootstrap = render(&spec).unwrap();
        let jwks = &bootstrap.static_resources.clusters[2];
        assert_eq!(
            jwks.transport_socket
                .as_ref()
                .unwrap()
                .typed_config
                .trusted_ca(),
            None
        );
    }

    #[test]
    fn trust_for_an_unknown_or_plain_http_cluster_is_refused() {
        let mut spec = spec();
        spec.trust.insert("jwsk".into(), Trust::Insecure);
        let err = render(&spec).unwrap_err();
        assert!(err.0.contains("\"jwsk\", which is not defined"), "{err}");
        let mut spec = self::spec();
        spec.trust.insert("registry".into(), Trust::default());
        let err = render(&spec).unwrap_err();
        assert!(err.0.contains("plain http"), "{err}");
    }
}
