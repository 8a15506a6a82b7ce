//! The HTTP API over real HTTP on a loopback port.

mod common;

use std::sync::{Arc, Barrier};

use common::test_module::{module_exporting, proxy_module, HEADER};
use common::{client, error_code, files, publish, raw_request, Server, READ_TOKEN, TOKEN};
use serde_json::Value;

#[test]
fn publish_list_metadata_and_download() {
    let server = Server::start();
    let module = proxy_module("one");
    let digest = common::sha256_hex(&module);
    let response = client()
        .put(server.url("/api/v1/plugins/header-rewrite/versions/0.1.0"))
        .bearer_auth(TOKEN)
        .header("x-wasmgate-sha256", &digest)
        .header("x-wasmgate-root-id", "header-rewrite")
        .header("x-wasmgate-description", "Sets headers")
        .body(module.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["location"],
        "/api/v1/plugins/header-rewrite/versions/0.1.0"
    );
    assert_eq!(
        publish(
            &server.url(""),
            "header-rewrite",
            "0.2.0-rc.1",
            &proxy_module("two")
        )
        .status(),
        201
    );
    assert_eq!(
        publish(&server.url(""), "jwt-auth", "1.0.0", &proxy_module("three")).status(),
        201
    );

    let plugins: Value = client()
        .get(server.url("/api/v1/plugins"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        plugins["plugins"],
        serde_json::json!([
            { "name": "header-rewrite", "latest": "0.2.0-rc.1", "versions": 2 },
            { "name": "jwt-auth", "latest": "1.0.0", "versions": 1 },
        ])
    );
    let versions: Value = client()
        .get(server.url("/api/v1/plugins/header-rewrite"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let listed: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["0.1.0", "0.2.0-rc.1"]);

    let meta: Value = client()
        .get(server.url("/api/v1/plugins/header-rewrite/versions/0.1.0"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(meta["sha256"], digest.as_str());
    assert_eq!(meta["size"], module.len());
    assert_eq!(meta["abi_version"], "0.2.1");
    assert_eq!(meta["root_id"], "header-rewrite");
    assert_eq!(meta["description"], "Sets headers");
    assert!(meta["created"].as_str().unwrap().ends_with('Z'));
    assert!(meta["oci"]["manifest_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    let download = client()
        .get(server.url(meta["module_url"].as_str().unwrap()))
        .send()
        .unwrap();
    assert_eq!(download.status(), 200);
    let headers = download.headers().clone();
    assert_eq!(headers["content-type"], "application/wasm");
    assert_eq!(headers["etag"], format!("\"sha256:{digest}\"").as_str());
    assert_eq!(headers["cache-control"], "public, max-age=300");
    assert!(headers["content-digest"]
        .to_str()
        .unwrap()
        .starts_with("sha-256=:"));
    assert_eq!(download.bytes().unwrap().as_ref(), module.as_slice());

    let by_digest = client()
        .get(server.url(meta["blob_url"].as_str().unwrap()))
        .send()
        .unwrap();
    assert_eq!(by_digest.status(), 200);
    assert_eq!(
        by_digest.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(by_digest.bytes().unwrap().as_ref(), module.as_slice());

    assert_eq!(
        client()
            .get(server.url("/api/v1/plugins/nope"))
            .send()
            .map(error_code)
            .unwrap(),
        "plugin_not_found"
    );
    assert_eq!(
        client()
            .get(server.url("/api/v1/plugins/header-rewrite/versions/9.9.9"))
            .send()
            .map(error_code)
            .unwrap(),
        "version_not_found"
    );
    let unknown_blob = format!("/api/v1/blobs/sha256:{}", common::sha256_hex(b"nothing"));
    assert_eq!(
        client()
            .get(server.url(&unknown_blob))
            .send()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn head_range_and_conditional_downloads() {
    let server = Server::start();
    let module = proxy_module("ranges");
    assert_eq!(
        publish(&server.url(""), "a", "1.0.0", &module).status(),
        201
    );
    let url = server.url(&format!(
        "/api/v1/blobs/sha256:{}",
        common::sha256_hex(&module)
    ));

    let head = client().head(&url).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        module.len().to_string().as_str()
    );
    let etag = head.headers()["etag"].clone();
    assert!(head.bytes().unwrap().is_empty());

    let part = client()
        .get(&url)
        .header("range", "bytes=0-7")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 0-7/{}", module.len()).as_str()
    );
    assert!(part.headers().get("content-digest").is_none());
    assert!(part.headers().get("repr-digest").is_some());
    assert_eq!(part.bytes().unwrap().as_ref(), HEADER.as_slice());

    let tail = client()
        .get(&url)
        .header("range", "bytes=-3")
        .send()
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().unwrap().as_ref(), &module[module.len() - 3..]);

    let beyond = client()
        .get(&url)
        .header("range", format!("bytes={}-", module.len()))
        .send()
        .unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{}", module.len()).as_str()
    );

    let cached = client()
        .get(&url)
        .header("if-none-match", etag.clone())
        .send()
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert!(cached.bytes().unwrap().is_empty());
    let stale = client()
        .get(&url)
        .header("if-none-match", "\"sha256:00\"")
        .send()
        .unwrap();
    assert_eq!(stale.status(), 200);
    let module_url = server.url("/api/v1/plugins/a/versions/1.0.0/module");
    let cached = client()
        .get(&module_url)
        .header("if-none-match", etag)
        .send()
        .unwrap();
    assert_eq!(cached.status(), 304);
}

#[test]
fn publishing_needs_a_publish_token() {
    let server = Server::start();
    let url = server.url("/api/v1/plugins/a/versions/1.0.0");
    let module = proxy_module("auth");
    let anonymous = client().put(&url).body(module.clone()).send().unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(error_code(anonymous), "unauthorized");
    let wrong = client()
        .put(&url)
        .bearer_auth("publish-token-0123456780")
        .body(module.clone())
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let schema = client()
        .put(format!("{url}/schema"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(schema.status(), 401);
    assert_eq!(
        client()
            .get(server.url("/api/v1/plugins/a"))
            .send()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn read_auth_protects_reads_but_not_health() {
    let server = Server::with(|c| {
        c.read_auth = true;
        c.read_tokens = vec![READ_TOKEN.into()];
    });
    let module = proxy_module("private");
    assert_eq!(
        publish(&server.url(""), "a", "1.0.0", &module).status(),
        201
    );
    let list = server.url("/api/v1/plugins");
    assert_eq!(client().get(&list).send().unwrap().status(), 401);
    assert_eq!(
        client()
            .get(&list)
            .bearer_auth("nope")
            .send()
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client()
            .get(&list)
            .bearer_auth(READ_TOKEN)
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client()
            .get(&list)
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .status(),
        200
    );
    let blob = server.url(&format!(
        "/api/v1/blobs/sha256:{}",
        common::sha256_hex(&module)
    ));
    assert_eq!(client().get(&blob).send().unwrap().status(), 401);
    assert_eq!(
        client()
            .get(&blob)
            .bearer_auth(READ_TOKEN)
            .send()
            .unwrap()
            .status(),
        200
    );
    // A read token cannot publish.
    let refused = client()
        .put(server.url("/api/v1/plugins/a/versions/2.0.0"))
        .bearer_auth(READ_TOKEN)
        .body(proxy_module("x"))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 401);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            client().get(server.url(open)).send().unwrap().status(),
            200,
            "{open}"
        );
    }
    let v2 = client().get(server.url("/v2/")).send().unwrap();
    assert_eq!(v2.status(), 401);
    assert!(v2.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let basic = client()
        .get(server.url("/v2/"))
        .basic_auth("anyone", Some(READ_TOKEN))
        .send()
        .unwrap();
    assert_eq!(basic.status(), 200);
}

#[test]
fn traversal_attempts_never_reach_outside_the_data_directory() {
    let server = Server::start();
    let module = proxy_module("t");
    assert_eq!(
        publish(&server.url(""), "a", "1.0.0", &module).status(),
        201
    );
    let before = files(server.dir.path());
    let hostile_gets = [
        "/api/v1/plugins/../../../../etc/passwd",
        "/api/v1/plugins/%2e%2e",
        "/api/v1/plugins/%2e%2e%2f%2e%2e%2fetc/versions/1.0.0",
        "/api/v1/plugins/a/versions/..%2f..%2f..%2fetc%2fpasswd",
        "/api/v1/plugins/a/versions/1.0.0%2f..%2f..%2fx/module",
        "/api/v1/plugins/..%5c..%5cwindows/versions/1.0.0/module",
        "/api/v1/plugins/a%00/versions/1.0.0/module",
        "/api/v1/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd",
        "/api/v1/blobs/..%2f..%2fplugins%2fa%2fversions%2f1.0.0.json",
        "/v2/%2e%2e/manifests/1.0.0",
        "/v2/a/blobs/sha256:..%2f..%2fetc%2fpasswd",
        "/v2/a/manifests/..%2f..%2f1.0.0",
        "/v2/../../etc/passwd",
    ];
    for path in hostile_gets {
        let (status, answer) = raw_request(
            server.addr,
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        );
        assert!(matches!(status, 400 | 404), "{path}: {answer}");
        assert!(!answer.contains("root:"), "{path}: {answer}");
        assert!(
            !answer.contains(server.dir.path().to_str().unwrap()),
            "{path}: {answer}"
        );
    }
    let hostile_puts = [
        "/api/v1/plugins/%2e%2e/versions/1.0.0",
        "/api/v1/plugins/..%2f..%2fescape/versions/1.0.0",
        "/api/v1/plugins/a/versions/..%2f..%2f..%2fescape",
        "/api/v1/plugins/a/versions/2.0.0%2f..%2f..%2fescape/schema",
        "/api/v1/plugins/UPPER/versions/1.0.0",
        "/api/v1/plugins/a/versions/1.0.0+build",
    ];
    for path in hostile_puts {
        // Sent raw: an HTTP client library would resolve the dot segments first.
        let head = format!(
            "PUT {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            module.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(&module);
        let (status, answer) = raw_request(server.addr, &request);
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(
            answer.contains("invalid_name") || answer.contains("invalid_version"),
            "{path}: {answer}"
        );
    }
    assert_eq!(
        files(server.dir.path()),
        before,
        "no file was created or moved"
    );
}

#[test]
fn uploads_that_are_not_proxy_wasm_are_refused_and_leave_nothing() {
    let server = Server::start();
    let base = server.url("");
    let not_wasm = publish(&base, "a", "1.0.0", b"#!/bin/sh\nrm -rf /\n");
    assert_eq!(not_wasm.status(), 422);
    assert_eq!(error_code(not_wasm), "not_wasm");
    assert_eq!(
        error_code(publish(&base, "a", "1.0.0", b"\0as")),
        "not_wasm"
    );
    let wasi_command = module_exporting(&["_start"]);
    let plain = publish(&base, "a", "1.0.0", &wasi_command);
    assert_eq!(plain.status(), 422);
    let body: Value = plain.json().unwrap();
    assert_eq!(body["error"]["code"], "not_proxy_wasm");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("proxy_abi_version_"));
    let mut corrupt = proxy_module("c");
    corrupt.truncate(corrupt.len() - 4);
    assert_eq!(
        error_code(publish(&base, "a", "1.0.0", &corrupt)),
        "invalid_wasm"
    );

    let module = proxy_module("d");
    let mismatch = client()
        .put(server.url("/api/v1/plugins/a/versions/1.0.0"))
        .bearer_auth(TOKEN)
        .header("x-wasmgate-sha256", common::sha256_hex(b"something else"))
        .body(module.clone())
        .send()
        .unwrap();
    assert_eq!(mismatch.status(), 400);
    assert_eq!(error_code(mismatch), "digest_mismatch");
    let bad_header = client()
        .put(server.url("/api/v1/plugins/a/versions/1.0.0"))
        .bearer_auth(TOKEN)
        .header("x-wasmgate-root-id", "has spaces")
        .body(module)
        .send()
        .unwrap();
    assert_eq!(error_code(bad_header), "invalid_header");

    assert_eq!(
        client()
            .get(server.url("/api/v1/plugins/a"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let stored = files(&server.data());
    assert!(stored.is_empty(), "refused uploads left files: {stored:?}");
}

#[test]
fn versions_are_immutable() {
    let server = Server::start();
    let base = server.url("");
    let first = proxy_module("first");
    assert_eq!(publish(&base, "a", "1.0.0", &first).status(), 201);
    let again = publish(&base, "a", "1.0.0", &first);
    assert_eq!(again.status(), 200);
    let other = publish(&base, "a", "1.0.0", &proxy_module("second"));
    assert_eq!(other.status(), 409);
    assert_eq!(error_code(other), "version_exists");
    // With the digest stated up front the answer comes without storing the body.
    let stated = |module: &[u8]| {
        client()
            .put(server.url("/api/v1/plugins/a/versions/1.0.0"))
            .bearer_auth(TOKEN)
            .header("x-wasmgate-sha256", common::sha256_hex(module))
            .body(module.to_vec())
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(stated(&first), 200);
    assert_eq!(stated(&proxy_module("third")), 409);
    let served = client()
        .get(server.url("/api/v1/plugins/a/versions/1.0.0/module"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(served.as_ref(), first.as_slice());
}

#[test]
fn concurrent_publishes_of_one_version_have_exactly_one_winner() {
    let server = Arc::new(Server::start());
    let racers = 8;
    let barrier = Arc::new(Barrier::new(racers));
    let threads: Vec<_> = (0..racers)
        .map(|i| {
            let server = Arc::clone(&server);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let module = proxy_module(&format!("racer-{i}"));
                barrier.wait();
                (
                    publish(&server.url(""), "race", "1.0.0", &module)
                        .status()
                        .as_u16(),
                    module,
                )
            })
        })
        .collect();
    let results: Vec<(u16, Vec<u8>)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<&Vec<u8>> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 409).count(),
        racers - 1
    );
    let served = client()
        .get(server.url("/api/v1/plugins/race/versions/1.0.0/module"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(served.as_ref(), winners[0].as_slice());

    // The same bytes from everyone: one creates, the others find it already there.
    let barrier = Arc::new(Barrier::new(racers));
    let threads: Vec<_> = (0..racers)
        .map(|_| {
            let server = Arc::clone(&server);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                publish(&server.url(""), "race", "2.0.0", &proxy_module("same"))
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses[0], 200);
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 201)),
        "{statuses:?}"
    );
}

#[test]
fn oversized_uploads_get_413() {
    let server = Server::with(|c| c.max_upload_bytes = 64 * 1024);
    let mut big = proxy_module("big");
    big.resize(64 * 1024 + 1, 0);
    let declared = publish(&server.url(""), "a", "1.0.0", &big);
    assert_eq!(declared.status(), 413);
    assert_eq!(error_code(declared), "too_large");
    // Without a length up front the limit is enforced while streaming.
    let streamed = client()
        .put(server.url("/api/v1/plugins/a/versions/1.0.0"))
        .bearer_auth(TOKEN)
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(big)))
        .send()
        .unwrap();
    assert_eq!(streamed.status(), 413);
    assert_eq!(error_code(streamed), "too_large");
    assert_eq!(
        client()
            .get(server.url("/api/v1/plugins/a"))
            .send()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn a_schema_can_come_before_or_after_the_module_and_is_set_once() {
    let server = Server::start();
    let schema_url = server.url("/api/v1/plugins/a/versions/1.0.0/schema");
    let put = |body: &str| {
        client()
            .put(&schema_url)
            .bearer_auth(TOKEN)
            .body(body.to_owned())
            .send()
            .unwrap()
    };
    assert_eq!(put(r#"{"type":"object"}"#).status(), 201);
    assert_eq!(
        publish(&server.url(""), "a", "1.0.0", &proxy_module("s")).status(),
        201
    );
    let meta: Value = client()
        .get(server.url("/api/v1/plugins/a/versions/1.0.0"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(meta["schema"], serde_json::json!({ "type": "object" }));
    assert_eq!(put(r#"{ "type": "object" }"#).status(), 200);
    let conflict = put(r#"{"type":"array"}"#);
    assert_eq!(conflict.status(), 409);
    assert_eq!(error_code(conflict), "schema_exists");
    assert_eq!(error_code(put("[1,2]")), "invalid_schema");
    assert_eq!(error_code(put("not json")), "invalid_schema");
}

#[test]
fn errors_are_json_and_metrics_count_requests() {
    let server = Server::start();
    let unknown = client().get(server.url("/nothing/here")).send().unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(error_code(unknown), "not_found");
    let wrong_method = client()
        .delete(server.url("/api/v1/plugins"))
        .send()
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(error_code(wrong_method), "method_not_allowed");
    let module = proxy_module("m");
    assert_eq!(
        publish(&server.url(""), "a", "1.0.0", &module).status(),
        201
    );
    assert_eq!(
        publish(&server.url(""), "a", "1.0.0", &proxy_module("n")).status(),
        409
    );
    client()
        .get(server.url("/api/v1/plugins/a/versions/1.0.0/module"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(
        client()
            .get(server.url("/healthz"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "ok\n"
    );
    assert_eq!(
        client().get(server.url("/readyz")).send().unwrap().status(),
        200
    );
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "wasmgate_registry_publishes_total{outcome=\"created\"} 1",
        "wasmgate_registry_publishes_total{outcome=\"conflict\"} 1",
        "wasmgate_registry_versions 1",
        "wasmgate_registry_plugins 1",
        &format!("wasmgate_registry_bytes_served_total {}", module.len()),
        "wasmgate_registry_http_requests_total{route=\"/api/v1/plugins/{name}/versions/{version}/module\",method=\"GET\",status=\"200\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}
