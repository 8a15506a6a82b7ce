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
use wasmgate_envoy::SYSTEM_CA_BUNDLE;

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

fn wasmgate_envoy_sha(path: &Path) -> wasmgate_envoy::Digest {
    wasmgate_envoy::Digest::of(&std::fs::read(path).unwrap())
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

/// `wasmgate render envoy` with the JWKS flags: (exit code, bootstrap JSON, stderr).
fn render_envoy(dir: &Path, flags: &[&str]) -> (i32, serde_json::Value, String) {
    let lock = test_env::workspace_root().join("envoy/examples/wasmgate.lock.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["render", "envoy", "--format", "json", "--plugin"])
        .arg(format!("jwt-auth={}", dir.join("jwt.yaml").display()))
        .arg("--lock")
        .arg(&lock)
        .args(flags)
        .output()
        .unwrap();
    let bootstrap = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (
        out.status.code().unwrap_or(-1),
        bootstrap,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CA file of cluster `name`'s TLS, `null` when unchecked.
fn trusted_ca(bootstrap: &serde_json::Value, name: &str) -> serde_json::Value {
    let clusters = bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap();
    let cluster = clusters.iter().find(|c| c["name"] == name).unwrap();
    cluster["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
        ["trusted_ca"]["filename"]
        .clone()
}

#[test]
fn the_flags_choose_the_ca_per_cluster_and_refuse_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jwt.yaml"),
        "providers:
  a: { issuer: https://a.example, remote_jwks: { uri: https://login.example.com/jwks, cluster: a_jwks } }
  b: { issuer: https://b.example, remote_jwks: { uri: https://keys.example.org/jwks, cluster: b_jwks } }
  c: { issuer: http://c.example, remote_jwks: { uri: http://10.0.0.1/jwks, cluster: c_jwks } }
default: { provider_name: a }
",
    )
    .unwrap();
    let all = Ca::new("all").write_pem(dir.path(), "all.pem");
    let b_only = Ca::new("b").write_pem(dir.path(), "b.pem");
    let all = all.to_str().unwrap();
    let b_only = b_only.to_str().unwrap();

    // No flag: the system bundle; keys over plain http from another machine are warned about.
    let (code, bootstrap, stderr) = render_envoy(dir.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(trusted_ca(&bootstrap, "a_jwks"), SYSTEM_CA_BUNDLE);
    assert_eq!(trusted_ca(&bootstrap, "b_jwks"), SYSTEM_CA_BUNDLE);
    assert!(
        stderr.contains("JWKS cluster c_jwks fetches keys over plain http"),
        "{stderr}"
    );

    // PATH for every cluster, CLUSTER=PATH for one.
    let b_flag = format!("b_jwks={b_only}");
    let (code, bootstrap, stderr) = render_envoy(
        dir.path(),
        &["--jwks-ca-file", all, "--jwks-ca-file", &b_flag],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(trusted_ca(&bootstrap, "a_jwks"), all);
    assert_eq!(trusted_ca(&bootstrap, "b_jwks"), b_only);

    // The opt-out: unchecked, and said loudly for each cluster.
    let (code, bootstrap, stderr) = render_envoy(dir.path(), &["--insecure-jwks-tls"]);
    assert_eq!(code, 0, "{stderr}");
    for name in ["a_jwks", "b_jwks"] {
        assert_eq!(trusted_ca(&bootstrap, name), serde_json::Value::Null);
        assert!(
            stderr.contains(&format!("(cluster {name}) is NOT checked")),
            "{stderr}"
        );
    }

    // Mistakes are refused before anything is written.
    let refusals: [(&[&str], i32, &str); 4] = [
        (
            &["--jwks-ca-file", "a_jwsk=/x.pem"],
            2,
            "no remote JWKS uses a cluster \"a_jwsk\"",
        ),
        (&["--jwks-ca-file", "c_jwks=/x.pem"], 2, "plain http"),
        (
            &["--jwks-ca-file", "/nonexistent/ca.pem"],
            1,
            "/nonexistent/ca.pem",
        ),
        (
            &["--insecure-jwks-tls", "--jwks-ca-file", all],
            2,
            "cannot be used with",
        ),
    ];
    for (flags, expected, message) in refusals {
        let (code, bootstrap, stderr) = render_envoy(dir.path(), flags);
        assert_eq!(code, expected, "{flags:?}: {stderr}");
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
        assert!(bootstrap.is_null());
    }
    let not_pem = dir.path().join("jwt.yaml");
    let (code, _, stderr) =
        render_envoy(dir.path(), &["--jwks-ca-file", not_pem.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
}
