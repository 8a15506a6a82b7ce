//! Remote JWKS over https in a real Envoy, with the bootstrap `wasmgate render envoy` writes:
//! keys from a server whose certificate chains to the configured CA and names the URI's host
//! are used (200); a server with a certificate from another CA, or for another name, gets no
//! request at all and tokens get 401 "keys unavailable"; so does the system bundle (the
//! default) against a private CA. `--insecure-jwks-tls` fetches from anyone.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use test_env::{client, Envoy, Upstream};
use wasmgate::demo;
use wasmgate::render::{self, CodeFrom, EnvoyOptions, JwksTls, Pinned, Resolved};

/// A CA that signs server certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A server certificate for these names (DNS names or IP addresses) and its key.
    fn issue(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }
}

/// An HTTPS server answering every request with the demo JWKS; counts the requests it
/// answered (a client that refuses the certificate never sends one).
struct JwksServer {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> JwksServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let config = config.clone();
                let count = count.clone();
                std::thread::spawn(move || serve(tcp, config, &count));
            }
        });
        JwksServer { addr, served }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// One connection: requests answered until the client closes it or the handshake fails.
fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>, served: &AtomicUsize) {
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = demo::jwks().to_string();
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        // JWKS fetches are GETs without a body: a request ends at the blank line.
        while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            request.drain(..end + 4);
            served.fetch_add(1, Ordering::SeqCst);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if tls.write_all(response.as_bytes()).is_err() || tls.flush().is_err() {
                return;
            }
        }
    }
}

/// The demo's jwt-auth with its JWKS at `uri`, rendered as `wasmgate render envoy --local`
/// does, started in Envoy.
fn envoy(uri: &str, jwks_tls: JwksTls, upstream: &Upstream) -> Envoy {
    let module = test_env::wasm_module("jwt_auth");
    let mut configured = demo::plugins(uri).unwrap();
    configured.truncate(1);
    let plugins = vec![Resolved {
        configured: configured.remove(0),
        pinned: Pinned {
            sha256: wasmgate_envoy_sha(&module),
            http_url: None,
            oci: None,
            local: Some(module),
        },
    }];
    let (bootstrap, _) = render::envoy(
        &plugins,
        &EnvoyOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin: Some("127.0.0.1:0".parse().unwrap()),
            upstream: format!("http://{}", upstream.addr()),
            code: CodeFrom::Local,
            clusters: Vec::new(),
            jwks_tls,
        },
    )
    .unwrap();
    Envoy::builder()
        .bootstrap(serde_json::to_value(bootstrap).unwrap())
        .start()
}

fn wasmgate_envoy_sha(path: &Path) -> wasmgate_envoy::Sha256 {
    wasmgate_envoy::Sha256::of(&std::fs::read(path).unwrap())
}

/// The status and body of `GET /api/hello` with a valid demo token.
fn call(envoy: &Envoy) -> (u16, String) {
    let response = client()
        .get(envoy.url("/api/hello"))
        .bearer_auth(demo::token("ada"))
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

fn assert_keys_unavailable(envoy: &Envoy, server: &JwksServer, what: &str) {
    let (status, body) = call(envoy);
    assert_eq!(status, 401, "{what}: {body}\n{}", envoy.log());
    assert!(
        body.contains("keys to verify the token are unavailable"),
        "{what}: {body}"
    );
    assert_eq!(server.served(), 0, "{what}: the JWKS server answered");
}

fn ca_file(path: &Path) -> JwksTls {
    JwksTls {
        ca_file: Some(path.to_owned()),
        check_files: true,
        ..JwksTls::default()
    }
}

#[test]
fn keys_come_only_from_a_server_with_a_certificate_from_the_configured_ca_for_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = Ca::new("wasmgate test CA");
    let other = Ca::new("attacker.invalid");
    let trusted_pem = trusted.write_pem(dir.path(), "trusted-ca.pem");
    let upstream = Upstream::start();

    // Trusted CA, the certificate names localhost and 127.0.0.1: the keys are used, by
    // name (a DNS SAN) and by address (an IP SAN).
    let (cert, key) = trusted.issue(&["localhost", "127.0.0.1"]);
    let good = JwksServer::start(cert, key);
    let port = good.addr.port();
    for uri in [
        format!("https://localhost:{port}/.well-known/jwks.json"),
        format!("https://127.0.0.1:{port}/.well-known/jwks.json"),
    ] {
        let envoy = envoy(&uri, ca_file(&trusted_pem), &upstream);
        let (status, body) = call(&envoy);
        assert_eq!(status, 200, "{uri}: {body}\n{}", envoy.log());
    }
    assert!(good.served() >= 2);

    // The default, the system bundle, does not trust the test CA.
    let envoy = envoy(
        &format!("https://localhost:{port}/.well-known/jwks.json"),
        JwksTls::default(),
        &upstream,
    );
    let before = good.served();
    let (status, body) = call(&envoy);
    assert_eq!(status, 401, "system bundle: {body}\n{}", envoy.log());
    assert_eq!(
        good.served(),
        before,
        "system bundle: the JWKS server answered"
    );

    // Another CA, the right name.
    let (cert, key) = other.issue(&["localhost", "127.0.0.1"]);
    let impostor = JwksServer::start(cert, key);
    let uri = format!(
        "https://localhost:{}/.well-known/jwks.json",
        impostor.addr.port()
    );
    let envoy = self::envoy(&uri, ca_file(&trusted_pem), &upstream);
    assert_keys_unavailable(&envoy, &impostor, "untrusted CA");

    // The trusted CA, another name.
    let (cert, key) = trusted.issue(&["login.example.com"]);
    let misnamed = JwksServer::start(cert, key);
    for host in ["localhost", "127.0.0.1"] {
        let uri = format!(
            "https://{host}:{}/.well-known/jwks.json",
            misnamed.addr.port()
        );
        let envoy = self::envoy(&uri, ca_file(&trusted_pem), &upstream);
        assert_keys_unavailable(&envoy, &misnamed, &format!("wrong name, {host}"));
    }

    // The explicit opt-out takes keys from anyone: what every https JWKS did before.
    let envoy = self::envoy(
        &uri_of(&impostor),
        JwksTls {
            insecure: true,
            ..JwksTls::default()
        },
        &upstream,
    );
    let (status, body) = call(&envoy);
    assert_eq!(status, 200, "insecure: {body}\n{}", envoy.log());
    assert!(impostor.served() >= 1);
}

fn uri_of(server: &JwksServer) -> String {
    format!(
        "https://localhost:{}/.well-known/jwks.json",
        server.addr.port()
    )
}
