//! The built `wasmgate-registry` binary: memory while large uploads stream, crash safety under
//! SIGKILL, graceful SIGTERM, tokens from a file.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::test_module::{proxy_module, LargeModule};
use common::{client, files, publish, Binary, TOKEN};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

/// A reader that sleeps between pieces, so an upload is still in flight when the test acts.
struct Slow<R>(R);

impl<R: Read> Read for Slow<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(5));
        let n = buf.len().min(64 * 1024);
        self.0.read(&mut buf[..n])
    }
}

/// Every version on disk names blobs that exist, every blob is named by a version, every blob's
/// content matches its name, and nothing is left in `tmp/`.
fn assert_consistent(data: &Path) -> Vec<Value> {
    let all = files(data);
    assert!(
        all.iter().all(|f| !f.starts_with("tmp/")),
        "tmp/ not emptied: {all:?}"
    );
    let mut referenced = std::collections::BTreeSet::new();
    let mut versions = Vec::new();
    for file in all.iter().filter(|f| f.contains("/versions/")) {
        let meta: Value = serde_json::from_slice(&std::fs::read(data.join(file)).unwrap()).unwrap();
        referenced.insert(meta["sha256"].as_str().unwrap().to_owned());
        for part in ["manifest", "config", "layer"] {
            let digest = meta["oci"][part]["digest"].as_str().unwrap();
            referenced.insert(digest.trim_start_matches("sha256:").to_owned());
        }
        versions.push(meta);
    }
    let blobs: std::collections::BTreeSet<String> = all
        .iter()
        .filter_map(|f| f.strip_prefix("blobs/sha256/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        blobs, referenced,
        "blobs on disk are exactly the referenced ones"
    );
    for blob in &blobs {
        let bytes = std::fs::read(data.join("blobs/sha256").join(blob)).unwrap();
        assert_eq!(
            &common::sha256_hex(&bytes),
            blob,
            "a blob's content matches its name"
        );
    }
    versions
}

#[test]
fn memory_stays_flat_while_a_200_mb_upload_is_refused_or_a_large_one_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 32 * MIB;
    let registry = Binary::start(
        &dir.path().join("data"),
        &["--max-upload-bytes", &limit.to_string()],
    );
    assert_eq!(
        publish(&registry.url(""), "warm", "1.0.0", &proxy_module("w")).status(),
        201
    );
    let baseline = registry.memory_kib("VmHWM");

    let refused = client()
        .put(registry.url("/api/v1/plugins/big/versions/1.0.0"))
        .bearer_auth(TOKEN)
        .body(reqwest::blocking::Body::new(LargeModule::new(
            200 * MIB,
            1024 * 1024,
        )))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 413);
    let after_refused = registry.memory_kib("VmHWM");

    let size = LargeModule::size(30 * MIB, 256 * 1024);
    let streamed = client()
        .put(registry.url("/api/v1/plugins/big/versions/1.0.0"))
        .bearer_auth(TOKEN)
        .body(reqwest::blocking::Body::new(LargeModule::new(
            30 * MIB,
            256 * 1024,
        )))
        .send()
        .unwrap();
    assert_eq!(streamed.status(), 201);
    let meta: Value = streamed.json().unwrap();
    assert_eq!(meta["size"], size);
    let after_streamed = registry.memory_kib("VmHWM");
    eprintln!(
        "peak RSS: {baseline} KiB at start, {after_refused} KiB after a refused 200 MiB upload, \
         {after_streamed} KiB after a streamed {} MiB module",
        size / MIB
    );
    // Buffering either body would add 30 to 200 MiB; streaming adds buffers only.
    assert!(
        after_refused - baseline < 16 * 1024,
        "{baseline} -> {after_refused} KiB"
    );
    assert!(
        after_streamed - baseline < 24 * 1024,
        "{baseline} -> {after_streamed} KiB"
    );

    let download = client()
        .get(registry.url("/api/v1/plugins/big/versions/1.0.0/module"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(download.len() as u64, size);
    assert_eq!(
        common::sha256_hex(&download),
        meta["sha256"].as_str().unwrap()
    );
}

#[test]
fn a_sigkill_in_the_middle_of_a_large_upload_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut registry = Binary::start(&data, &[]);
    let small = proxy_module("survivor");
    assert_eq!(
        publish(&registry.url(""), "a", "1.0.0", &small).status(),
        201
    );

    let url = registry.url("/api/v1/plugins/a/versions/2.0.0");
    let upload = std::thread::spawn(move || {
        client()
            .put(url)
            .bearer_auth(TOKEN)
            .body(reqwest::blocking::Body::new(Slow(LargeModule::new(
                48 * MIB,
                64 * 1024,
            ))))
            .send()
            .map(|r| r.status().as_u16())
    });
    let partial = test_env::wait_for(
        "the upload to reach the disk",
        Duration::from_secs(30),
        || {
            let in_flight: u64 = std::fs::read_dir(data.join("tmp"))
                .unwrap()
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum();
            (in_flight > 2 * MIB).then_some(in_flight)
        },
    );
    registry.child.kill().unwrap();
    registry.child.wait().unwrap();
    assert!(
        upload.join().unwrap().is_err(),
        "the upload cannot have completed"
    );
    assert!(partial < 48 * MIB);
    assert!(
        !files(&data.join("tmp")).is_empty(),
        "the partial upload is on disk"
    );

    let registry = Binary::start(&data, &[]);
    assert!(
        registry.log().contains("removed_temp_files=1"),
        "{}",
        registry.log()
    );
    let versions = assert_consistent(&data);
    assert_eq!(versions.len(), 1);
    let served = client()
        .get(registry.url("/api/v1/plugins/a/versions/1.0.0/module"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(served.as_ref(), small.as_slice());
    let missing = client()
        .get(registry.url("/api/v1/plugins/a/versions/2.0.0"))
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        publish(&registry.url(""), "a", "2.0.0", &proxy_module("retry")).status(),
        201
    );
}

#[test]
fn sigkill_at_any_moment_during_publishes_leaves_old_or_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for round in 0..3u64 {
        let mut registry = Binary::start(&data, &[]);
        let base = registry.url("");
        let publisher = std::thread::spawn(move || {
            for i in 0..1000 {
                let module = proxy_module(&format!("{round}-{i}"));
                if client()
                    .put(format!("{base}/api/v1/plugins/p{round}/versions/1.0.{i}"))
                    .bearer_auth(TOKEN)
                    .body(module)
                    .send()
                    .is_err()
                {
                    return i;
                }
            }
            1000
        });
        // Different moments each round, without a timing assertion.
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        registry.child.kill().unwrap();
        registry.child.wait().unwrap();
        let attempted = publisher.join().unwrap();
        assert!(
            attempted > 0,
            "round {round}: nothing was published before the kill"
        );

        let registry = Binary::start(&data, &[]);
        let versions = assert_consistent(&data);
        for meta in &versions {
            let url = registry.url(&format!(
                "/api/v1/plugins/{}/versions/{}/module",
                meta["name"].as_str().unwrap(),
                meta["version"].as_str().unwrap()
            ));
            let bytes = client().get(url).send().unwrap().bytes().unwrap();
            assert_eq!(common::sha256_hex(&bytes), meta["sha256"].as_str().unwrap());
        }
    }
}

#[test]
fn sigterm_stops_the_registry_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# publishers\nfile-token-0123456789\n").unwrap();
    let mut registry = Binary::start(
        &dir.path().join("data"),
        &["--token-file", tokens.to_str().unwrap()],
    );
    let from_file = client()
        .put(registry.url("/api/v1/plugins/a/versions/1.0.0"))
        .bearer_auth("file-token-0123456789")
        .body(proxy_module("f"))
        .send()
        .unwrap();
    assert_eq!(from_file.status(), 201);
    assert_eq!(
        publish(&registry.url(""), "a", "1.0.1", &proxy_module("g")).status(),
        201
    );

    let status = Command::new("kill")
        .args(["-TERM", &registry.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        registry.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        registry.log()
    );
    assert!(registry.log().contains("SIGTERM"), "{}", registry.log());
    assert!(
        registry.log().contains("wasmgate-registry stopped"),
        "{}",
        registry.log()
    );
}
