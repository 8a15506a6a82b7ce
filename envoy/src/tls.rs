//! TLS to an `https` cluster: which CAs Envoy trusts and which name the server's certificate
//! must carry. Envoy verifies nothing unless told to: an `UpstreamTlsContext` without a
//! `validation_context` accepts any certificate, so every `https` cluster gets one unless the
//! user opted out explicitly ([`Trust::Insecure`]).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

/// The CA bundle an `https` cluster trusts unless told otherwise: the system bundle of Debian
/// and Ubuntu (and of the Istio proxy image, which is Ubuntu).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How an `https` cluster checks the server it connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The certificate chain must lead to a CA in this PEM file (a path on the machine running
    /// Envoy), and the certificate must name the URL's host.
    Verify(PathBuf),
    /// No check at all: anyone on the path can impersonate the server. Only on explicit request.
    Insecure,
}

impl Trust {
    /// Verified against [`SYSTEM_CA_BUNDLE`].
    pub fn system() -> Trust {
        Trust::Verify(PathBuf::from(SYSTEM_CA_BUNDLE))
    }
}

impl Default for Trust {
    fn default() -> Self {
        Trust::system()
    }
}

/// `UpstreamTlsContext`: SNI for a host name, and the validation [`Trust`] asks for.
#[derive(Debug, Clone, Serialize)]
#[serde(
    tag = "@type",
    rename = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
)]
pub struct UpstreamTls {
    /// Absent for an IP address: SNI carries host names only (RFC 6066).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_tls_context: Option<CommonTlsContext>,
}

impl UpstreamTls {
    /// TLS to `host` (a DNS name or an IP address), checked as `trust` says.
    pub fn new(host: &str, trust: &Trust) -> UpstreamTls {
        let ip = host.parse::<IpAddr>().is_ok();
        UpstreamTls {
            sni: (!ip).then(|| host.to_owned()),
            common_tls_context: match trust {
                Trust::Insecure => None,
                Trust::Verify(ca_file) => Some(CommonTlsContext {
                    validation_context: ValidationContext {
                        trusted_ca: DataSource {
                            filename: ca_file.display().to_string(),
                        },
                        // Envoy matches an IP address only against IP SANs, a name only
                        // against DNS SANs.
                        match_typed_subject_alt_names: vec![SanMatcher {
                            san_type: if ip { "IP_ADDRESS" } else { "DNS" },
                            matcher: StringMatcher {
                                exact: host.to_owned(),
                            },
                        }],
                    },
                }),
            },
        }
    }

    /// The CA file the server's certificate is checked against; none when unchecked.
    pub fn trusted_ca(&self) -> Option<&str> {
        self.common_tls_context
            .as_ref()
            .map(|c| c.validation_context.trusted_ca.filename.as_str())
    }
}

/// `envoy.extensions.transport_sockets.tls.v3.CommonTlsContext`, the part Wasmgate writes.
#[derive(Debug, Clone, Serialize)]
pub struct CommonTlsContext {
    pub validation_context: ValidationContext,
}

/// `CertificateValidationContext`: trusted CAs and the name the certificate must carry.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationContext {
    pub trusted_ca: DataSource,
    pub match_typed_subject_alt_names: Vec<SanMatcher>,
}

/// `envoy.config.core.v3.DataSource` (a file).
#[derive(Debug, Clone, Serialize)]
pub struct DataSource {
    pub filename: String,
}

/// `SubjectAltNameMatcher`.
#[derive(Debug, Clone, Serialize)]
pub struct SanMatcher {
    /// `DNS` or `IP_ADDRESS`.
    pub san_type: &'static str,
    pub matcher: StringMatcher,
}

/// `envoy.type.matcher.v3.StringMatcher` (exact).
#[derive(Debug, Clone, Serialize)]
pub struct StringMatcher {
    pub exact: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_name_is_verified_by_default_against_the_system_bundle() {
        let tls =
            serde_json::to_value(UpstreamTls::new("login.example.com", &Trust::default())).unwrap();
        assert_eq!(tls["sni"], "login.example.com");
        assert_eq!(
            tls["common_tls_context"]["validation_context"],
            json!({
                "trusted_ca": { "filename": "/etc/ssl/certs/ca-certificates.crt" },
                "match_typed_subject_alt_names": [
                    { "san_type": "DNS", "matcher": { "exact": "login.example.com" } }
                ],
            })
        );
    }

    #[test]
    fn an_ip_address_is_matched_as_an_ip_san_without_sni() {
        let tls = serde_json::to_value(UpstreamTls::new(
            "127.0.0.1",
            &Trust::Verify("/tmp/ca.pem".into()),
        ))
        .unwrap();
        assert!(tls.get("sni").is_none());
        let validation = &tls["common_tls_context"]["validation_context"];
        assert_eq!(validation["trusted_ca"]["filename"], "/tmp/ca.pem");
        assert_eq!(
            validation["match_typed_subject_alt_names"][0],
            json!({ "san_type": "IP_ADDRESS", "matcher": { "exact": "127.0.0.1" } })
        );
    }

    #[test]
    fn insecure_has_no_validation_context() {
        let tls = UpstreamTls::new("login.example.com", &Trust::Insecure);
        assert_eq!(tls.trusted_ca(), None);
        let json = serde_json::to_value(tls).unwrap();
        assert!(json.get("common_tls_context").is_none(), "{json}");
    }
}
