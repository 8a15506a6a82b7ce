//! `wasmgate push --oci` against real registries: the Debian `docker-registry` (CNCF
//! Distribution) over plain HTTP and over TLS with htpasswd (Basic) auth, the Wasmgate
//! registry's OCI API (same manifest digest, `latest`, nested names), and the Docker token
//! flow against a small HTTP server run by the test.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use serde_json::Value;
use wasmgate::oci::{self, Credentials, PushOptions, Reference};

mod common;
use common::{free_port, serve_registry, Process};

fn wasmgate(args: &[&str], dir: &Path) -> Output {
    wasmgate_env(args, dir, &[])
}

fn wasmgate_env(args: &[&str], dir: &Path, env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmgate"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("WASMGATE_TOKEN")
        .env_remove("WASMGATE_OCI_USERNAME")
        .env_remove("WASMGATE_OCI_PASSWORD")
        // No credentials from the machine's own `docker login`.
        .env("DOCKER_CONFIG", dir.join("no-docker-config"));
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let modules: PathBuf = test_env::wasm_module("jwt_auth").parent().unwrap().into();
    let out = wasmgate(
        &["package", "--modules", modules.to_str().unwrap()],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

/// Wait until `addr` accepts connections.
fn wait_for_port(addr: &str, process: &mut Process) {
    test_env::wait_until(
        &format!("{addr} to accept connections"),
        Duration::from_secs(30),
        || {
            if let Ok(Some(status)) = process.0.try_wait() {
                panic!("{addr}: the server exited ({status})");
            }
            TcpStream::connect(addr).is_ok()
        },
    );
}

/// Debian's `docker-registry` on a free port; `extra` is YAML appended under `http:` and at
/// the top level (TLS, auth).
fn docker_registry(dir: &Path, http_extra: &str, extra: &str) -> (Process, String) {
    let port = free_port();
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{http_extra}{extra}",
            dir.join("oci").display()
        ),
    )
    .unwrap();
    let mut process = Process(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry, `make setup`)"),
    );
    let addr = format!("127.0.0.1:{port}");
    wait_for_port(&addr, &mut process);
    (process, addr)
}

fn push_oci(dir: &Path, plugin: &str, prefix: &str, flags: &[&str]) -> Output {
    let mut args = vec!["--output", "json", "push", plugin, "--oci", prefix];
    args.extend_from_slice(flags);
    wasmgate(&args, dir)
}

#[test]
fn the_registry_and_push_oci_give_the_same_digest_and_latest_and_nested_names_resolve() {
    let dir = workdir();
    let (_server, registry) = serve_registry(&dir.path().join("data"));
    ok(wasmgate(
        &[
            "--output",
            "json",
            "push",
            "jwt-auth",
            "--registry",
            &registry,
            "--token",
            "s3cret",
        ],
        dir.path(),
    ));
    let from_registry: Value = test_env::client()
        .get(format!("{registry}/api/v1/plugins/jwt-auth/versions/0.1.0"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let registry_digest = from_registry["oci"]["manifest_digest"].as_str().unwrap();

    // `latest` and a nested repository name answer the same manifest.
    for path in [
        "jwt-auth/manifests/latest",
        "wasmgate/jwt-auth/manifests/latest",
        "wasmgate/jwt-auth/manifests/0.1.0",
    ] {
        let response = test_env::client()
            .get(format!("{registry}/v2/{path}"))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["docker-content-digest"],
            registry_digest,
            "{path}"
        );
    }
    let tags: Value = test_env::client()
        .get(format!("{registry}/v2/wasmgate/jwt-auth/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["name"], "wasmgate/jwt-auth");
    assert_eq!(tags["tags"], serde_json::json!(["0.1.0", "latest"]));
    // skopeo (containers/image) reads `oci://host/wasmgate/jwt-auth` without a tag.
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!(
            "docker://{}/wasmgate/jwt-auth",
            registry.trim_start_matches("http://")
        ))
        .output()
        .expect("skopeo (Debian package skopeo, `make setup`)");
    assert!(out.status.success(), "{}", stderr(&out));
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Digest"], registry_digest);

    // The same module pushed with push --oci to Distribution: the same manifest digest.
    let (_distribution, addr) = docker_registry(dir.path(), "", "");
    let pushed = ok(push_oci(
        dir.path(),
        "jwt-auth",
        &format!("{addr}/wasmgate"),
        &["--plain-http"],
    ));
    assert_eq!(pushed["pushed"][0]["manifest_digest"], registry_digest);
}

#[test]
fn push_oci_refuses_to_move_a_tag_unless_forced() {
    let dir = workdir();
    let (_registry, addr) = docker_registry(dir.path(), "", "");
    let prefix = format!("{addr}/wasmgate");
    let first = ok(push_oci(dir.path(), "jwt-auth", &prefix, &["--plain-http"]));
    let first_digest = first["pushed"][0]["manifest_digest"].clone();
    let again = ok(push_oci(dir.path(), "jwt-auth", &prefix, &["--plain-http"]));
    assert_eq!(again["pushed"][0]["unchanged"], true);

    // Another module under the same name and version: the tag would move.
    let lock_path = dir.path().join("wasmgate.lock.json");
    let mut lock: Value = serde_json::from_slice(&std::fs::read(&lock_path).unwrap()).unwrap();
    let other = lock["plugins"]["rate-limit"].clone();
    for field in ["module", "sha256", "size"] {
        lock["plugins"]["jwt-auth"][field] = other[field].clone();
    }
    std::fs::write(&lock_path, serde_json::to_vec(&lock).unwrap()).unwrap();
    let refused = push_oci(dir.path(), "jwt-auth", &prefix, &["--plain-http"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    assert!(
        err.contains(&format!(
            "the tag already holds {}",
            first_digest.as_str().unwrap()
        )),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");

    let forced = ok(push_oci(
        dir.path(),
        "jwt-auth",
        &prefix,
        &["--plain-http", "--force"],
    ));
    assert_eq!(forced["pushed"][0]["moved_from"], first_digest);
    assert_ne!(forced["pushed"][0]["manifest_digest"], first_digest);
}

/// A private CA, a certificate for 127.0.0.1 signed by it, and both written as PEM.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wasmgate test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn push_oci_over_tls_with_basic_auth_and_docker_credentials() {
    let dir = workdir();
    let (ca, cert, key) = tls_files(dir.path());
    let htpasswd = dir.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "ci", "s3cret"])
        .output()
        .expect("htpasswd (Debian package apache2-utils, `make setup`)");
    assert!(out.status.success());
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    let (_registry, addr) = docker_registry(
        dir.path(),
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
        &format!(
            "auth:\n  htpasswd:\n    realm: wasmgate-test\n    path: {}\n",
            htpasswd.display()
        ),
    );
    let prefix = format!("{addr}/wasmgate");
    let ca_flag = ca.to_str().unwrap();

    // The private CA is not in the system store: refused, saying why.
    let untrusted = push_oci(
        dir.path(),
        "jwt-auth",
        &prefix,
        &["--username", "ci", "--password", "s3cret"],
    );
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(
        stderr(&untrusted).to_lowercase().contains("certificate"),
        "{}",
        stderr(&untrusted)
    );

    let anonymous = push_oci(dir.path(), "jwt-auth", &prefix, &["--ca-file", ca_flag]);
    assert_eq!(anonymous.status.code(), Some(1));
    assert!(
        stderr(&anonymous).contains("requires credentials"),
        "{}",
        stderr(&anonymous)
    );

    let wrong = push_oci(
        dir.path(),
        "jwt-auth",
        &prefix,
        &[
            "--ca-file",
            ca_flag,
            "--username",
            "ci",
            "--password",
            "nope",
        ],
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("refused the credentials of ci"),
        "{}",
        stderr(&wrong)
    );

    let pushed = ok(push_oci(
        dir.path(),
        "jwt-auth",
        &prefix,
        &[
            "--ca-file",
            ca_flag,
            "--username",
            "ci",
            "--password",
            "s3cret",
        ],
    ));
    assert_eq!(
        pushed["pushed"][0]["oci"],
        format!("{prefix}/jwt-auth:0.1.0")
    );

    // Credentials from the file `docker login` writes.
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cret");
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({ "auths": { addr.clone(): { "auth": auth } } }).to_string(),
    )
    .unwrap();
    let from_config = wasmgate_env(
        &[
            "--output",
            "json",
            "push",
            "rate-limit",
            "--oci",
            &prefix,
            "--ca-file",
            ca_flag,
        ],
        dir.path(),
        &[("DOCKER_CONFIG", &docker)],
    );
    let from_config = ok(from_config);
    assert_eq!(
        from_config["pushed"][0]["oci"],
        format!("{prefix}/rate-limit:0.1.0")
    );

    // skopeo, trusting the same CA and with the same credentials, reads it back.
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let out = Command::new("skopeo")
        .args(["inspect", "--creds", "ci:s3cret", "--cert-dir"])
        .arg(&certs)
        .arg(format!("docker://{prefix}/rate-limit:0.1.0"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        inspected["Digest"],
        from_config["pushed"][0]["manifest_digest"]
    );
}

/// What the token-flow server saw: each request's method, path and Authorization.
type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

/// A registry that wants a Bearer token from its `/token` realm (which wants Basic
/// `ci:s3cret`), and accepts uploads without storing them. One request per connection.
fn token_registry() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, addr, &log);
        }
    });
    (addr, seen)
}

fn answer(mut stream: TcpStream, addr: SocketAddr, seen: &Seen) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut authorization = None;
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.trim().to_owned()),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let path = target.split('?').next().unwrap_or_default().to_owned();
    seen.lock()
        .unwrap()
        .push((method.clone(), target.clone(), authorization.clone()));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ci:s3cret")
    );
    let (status, headers, body): (&str, Vec<String>, String) = if path == "/token" {
        if authorization.as_deref() == Some(basic.as_str()) {
            ("200 OK", vec![], r#"{"token":"t0ken"}"#.to_owned())
        } else {
            ("401 Unauthorized", vec![], String::new())
        }
    } else if authorization.as_deref() != Some("Bearer t0ken") {
        (
            "401 Unauthorized",
            vec![format!(
                "WWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"test-registry\",scope=\"repository:wasmgate/jwt-auth:pull\""
            )],
            String::new(),
        )
    } else {
        match method.as_str() {
            "HEAD" => ("404 Not Found", vec![], String::new()),
            "POST" => (
                "202 Accepted",
                vec!["Location: /v2/wasmgate/jwt-auth/blobs/uploads/1".to_owned()],
                String::new(),
            ),
            "PUT" if path.contains("/manifests/") => (
                "201 Created",
                vec![format!(
                    "Docker-Content-Digest: sha256:{}",
                    wasmgate_envoy::Digest::of(&body).hex()
                )],
                String::new(),
            ),
            "PUT" => ("201 Created", vec![], String::new()),
            _ => ("405 Method Not Allowed", vec![], String::new()),
        }
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for header in headers {
        response.push_str(&header);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

#[test]
fn the_docker_token_flow_gets_a_token_with_basic_credentials_and_retries() {
    let (addr, seen) = token_registry();
    let reference = Reference::parse(&format!("{addr}/wasmgate/jwt-auth:0.1.0"), "x").unwrap();
    let image = oci::image(b"\0asm\x01\0\0\0", "jwt-auth", "0.1.0").unwrap();
    let options = PushOptions {
        plain_http: true,
        credentials: Some(Credentials {
            username: "ci".into(),
            password: "s3cret".into(),
        }),
        ..PushOptions::default()
    };
    let pushed = oci::push(&image, &reference, &options).unwrap();
    assert_eq!(pushed.digest, image.digest());
    let seen = seen.lock().unwrap().clone();
    // The first request is anonymous and challenged; the token request carries Basic
    // credentials and asks for the repository's pull,push scope; every later request
    // carries the token.
    assert_eq!(seen[0].2, None);
    assert_eq!(seen[1].0, "GET");
    assert!(
        seen[1].1.starts_with(
            "/token?service=test-registry&scope=repository%3Awasmgate%2Fjwt-auth%3Apull%2Cpush"
        ),
        "{:?}",
        seen[1]
    );
    assert!(seen[1].2.as_deref().unwrap().starts_with("Basic "));
    assert!(seen[2..]
        .iter()
        .all(|(_, _, auth)| auth.as_deref() == Some("Bearer t0ken")));
    assert!(seen
        .iter()
        .any(|(m, p, _)| m == "PUT" && p.ends_with("/manifests/0.1.0")));
    // The token is fetched once for the whole push.
    assert_eq!(
        seen.iter()
            .filter(|(_, p, _)| p.starts_with("/token"))
            .count(),
        1
    );

    // Without credentials the token service refuses, and the error says what to pass.
    let anonymous = PushOptions {
        plain_http: true,
        docker_config: Some(PathBuf::from("/nonexistent/config.json")),
        ..PushOptions::default()
    };
    let err = oci::push(&image, &reference, &anonymous).unwrap_err();
    assert!(err.to_string().contains("requires credentials"), "{err}");
}
