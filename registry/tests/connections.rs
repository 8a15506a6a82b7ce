//! Connections over raw TCP: clients that send nothing, a header byte at a time, a body too
//! slowly, or stop reading are closed; header size limits and malformed heads get the API's JSON
//! error; refusals come before the body; SIGTERM with a slow client still exits within the
//! shutdown deadline; hundreds of idle connections do not stop `/healthz`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::test_module::{proxy_module, LargeModule, HEADER};
use common::{client, raw_request, Binary, Server, TOKEN};
use serde_json::Value;

/// Long enough for any answer on a loaded machine, far below what the old behaviour took
/// (for ever, or 30 s of lingering).
const PATIENCE: Duration = Duration::from_secs(10);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Whether the server closed `stream` within `PATIENCE` (reading nothing more than `drain`).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let deadline = Instant::now() + PATIENCE;
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 64 * 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Read one answer (head and a `content-length` body) without waiting for the connection to
/// close: status, lowercase head, body.
fn read_answer(stream: &mut TcpStream) -> (u16, String, String) {
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if data.len() >= end + 4 + length {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]).into_owned();
                return (status, head, body);
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&data)
            ),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "no whole answer ({e}) after {:?}",
                String::from_utf8_lossy(&data)
            ),
        }
    }
}

fn json_code(body: &str) -> String {
    let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    json["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn quick(tweak: impl FnOnce(&mut wasmgate_registry::ServerOptions)) -> Server {
    Server::with(|config| tweak(&mut config.server))
}

#[test]
fn a_silent_client_and_a_slow_loris_header_are_closed_after_the_header_timeout() {
    let server = quick(|o| o.header_timeout = Duration::from_secs(1));
    let mut silent = connect(server.addr);
    assert!(
        closed_by_server(&mut silent),
        "a silent client is kept open"
    );

    let mut loris = connect(server.addr);
    loris.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    loris
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut closed = false;
    while Instant::now() < deadline && !closed {
        closed = loris.write_all(b"x").is_err()
            || match loris.read(&mut [0u8; 1024]) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            };
    }
    assert!(closed, "a header sent a byte at a time is kept open");

    // Between requests the same timeout applies: a kept-alive idle connection is closed too.
    let mut kept = connect(server.addr);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut kept).0, 200);
    assert!(
        closed_by_server(&mut kept),
        "an idle keep-alive is kept open"
    );
}

#[test]
fn a_client_that_stops_reading_a_download_is_closed_after_the_idle_timeout() {
    let server = Server::with(|config| {
        config.max_upload_bytes = 64 * 1024 * 1024;
        config.server.idle_timeout = Duration::from_secs(1);
    });
    // Larger than what the loopback socket buffers on both sides hold.
    let module = {
        let mut bytes = Vec::new();
        LargeModule::new(24 * 1024 * 1024, 1024 * 1024)
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    };
    let published = client()
        .put(server.url("/api/v1/plugins/big/versions/1.0.0"))
        .bearer_auth(TOKEN)
        .body(module.clone())
        .send()
        .unwrap();
    assert_eq!(published.status(), 201);

    let mut reader = connect(server.addr);
    reader
        .write_all(b"GET /api/v1/plugins/big/versions/1.0.0/module HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let mut received = Vec::new();
    let _ = reader.read_to_end(&mut received);
    assert!(
        received.len() < module.len(),
        "the whole module ({} bytes) was sent to a client that stopped reading",
        received.len()
    );
}

#[test]
fn a_slow_body_gets_408_while_a_slow_but_steady_upload_succeeds() {
    let server = quick(|o| {
        o.body_timeout = Duration::from_secs(1);
        o.body_min_bytes = 1000;
    });
    let mut trickle = connect(server.addr);
    write!(
        trickle,
        "PUT /api/v1/plugins/slow/versions/1.0.0 HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {TOKEN}\r\ncontent-length: 100000\r\n\r\n"
    )
    .unwrap();
    trickle.write_all(&HEADER).unwrap();
    let sender = {
        let mut trickle = trickle.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..100 {
                if trickle.write_all(&[0u8; 10]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (status, head, body) = read_answer(&mut trickle);
    assert_eq!(status, 408, "{head}\n{body}");
    assert_eq!(json_code(&body), "body_too_slow");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_by_server(&mut trickle));
    sender.join().unwrap();

    // 2 KB/s, above the 1000 bytes a second asked, for longer than one interval.
    let module = proxy_module(&"steady".repeat(1000));
    let mut steady = connect(server.addr);
    write!(
        steady,
        "PUT /api/v1/plugins/steady/versions/1.0.0 HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {TOKEN}\r\ncontent-length: {}\r\n\r\n",
        module.len()
    )
    .unwrap();
    let started = Instant::now();
    for piece in module.chunks(500) {
        steady.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    let (status, _, body) = read_answer(&mut steady);
    assert_eq!(status, 201, "{body}");
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the upload must outlast the interval to show a rate, not a deadline"
    );
}

#[test]
fn headers_above_the_limit_and_malformed_heads_get_the_json_error_body() {
    let server = Server::start();
    for size in [70 * 1024, 256 * 1024] {
        let (status, answer) = raw_request(
            server.addr,
            format!(
                "GET /api/v1/plugins HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
                "a".repeat(size)
            ),
        );
        assert_eq!(status, 431, "{size}: {answer}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(json_code(body), "headers_too_large");
    }
    let (status, answer) = raw_request(
        server.addr,
        "GET /api/v1/plugins HTTP/1.1\r\nhost: x\r\nx-fine: ".to_owned()
            + &"a".repeat(60 * 1024)
            + "\r\n\r\n",
    );
    assert_eq!(status, 200, "a 60 KiB header is within the limit: {answer}");

    let (status, answer) = raw_request(
        server.addr,
        "PUT /api/v1/plugins/a/versions/1.0.0 HTTP/1.1\r\nhost: x\r\ncontent-length: 12x\r\n\r\n",
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        json_code(answer.split_once("\r\n\r\n").unwrap().1),
        "bad_request"
    );

    // Above 64 KiB hyper refuses a URL with 414 (a lower header limit answers 431 first).
    let server = quick(|o| o.max_header_bytes = 256 * 1024);
    let (status, answer) = raw_request(
        server.addr,
        format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70 * 1024)),
    );
    assert_eq!(status, 414, "{answer}");
    assert_eq!(
        json_code(answer.split_once("\r\n\r\n").unwrap().1),
        "uri_too_long"
    );
}

#[test]
fn refused_uploads_are_answered_before_the_body_is_sent_then_drained() {
    let server = Server::start();
    let limit = 8 * 1024 * 1024;

    let mut too_large = connect(server.addr);
    write!(
        too_large,
        "PUT /api/v1/plugins/big/versions/1.0.0 HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {TOKEN}\r\ncontent-length: {}\r\n\r\n",
        limit + 1
    )
    .unwrap();
    let (status, head, body) = read_answer(&mut too_large);
    assert_eq!(status, 413, "{head}\n{body}");
    assert_eq!(json_code(&body), "too_large");
    assert!(head.contains("connection: close"), "{head}");

    let mut not_wasm = connect(server.addr);
    write!(
        not_wasm,
        "PUT /api/v1/plugins/text/versions/1.0.0 HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {TOKEN}\r\ncontent-length: 1048576\r\n\r\nnot wasm"
    )
    .unwrap();
    let (status, _, body) = read_answer(&mut not_wasm);
    assert_eq!(status, 422, "{body}");
    assert_eq!(json_code(&body), "not_wasm");
    // The rest is read and thrown away (no reset while the client finishes), then closed.
    for _ in 0..16 {
        not_wasm.write_all(&[0u8; 64 * 1024]).unwrap();
    }
    assert!(closed_by_server(&mut not_wasm));
}

#[test]
fn hundreds_of_idle_connections_do_not_stop_healthz() {
    let dir = tempfile::tempdir().unwrap();
    // A soft limit of 128 open files: the registry raises it to the hard limit at start.
    let registry = Binary::start_with_open_files(&dir.path().join("data"), &[], 128);
    let idle: Vec<TcpStream> = (0..300).map(|_| connect(registry.addr)).collect();
    // Let the registry accept them all.
    std::thread::sleep(Duration::from_millis(500));
    let health = client()
        .get(registry.url("/healthz"))
        .timeout(PATIENCE)
        .send();
    assert!(
        matches!(&health, Ok(r) if r.status() == 200),
        "{health:?}\n{}",
        registry.log()
    );
    drop(idle);
}

#[test]
fn sigterm_with_a_slow_upload_in_flight_exits_0_within_the_shutdown_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Binary::start(&dir.path().join("data"), &["--shutdown-timeout", "1s"]);
    let mut slow = connect(registry.addr);
    write!(
        slow,
        "PUT /api/v1/plugins/slow/versions/1.0.0 HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {TOKEN}\r\ncontent-length: 1000000\r\n\r\n"
    )
    .unwrap();
    slow.write_all(&HEADER).unwrap();
    let sender = {
        let mut slow = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..200 {
                if slow.write_all(&[0u8; 1000]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-TERM", &registry.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(registry.wait(PATIENCE), Some(0), "{}", registry.log());
    assert!(
        registry.log().contains("shutdown deadline"),
        "{}",
        registry.log()
    );
    sender.join().unwrap();
}
