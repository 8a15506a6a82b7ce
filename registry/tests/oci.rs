//! The OCI pull API, checked by hand and by skopeo (the containers/image client).

mod common;

use std::io::Read;
use std::process::Command;

use common::test_module::proxy_module;
use common::{client, publish, Server};
use serde_json::Value;
fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", common::sha256_hex(bytes))
}

fn oci_error(response: reqwest::blocking::Response) -> String {
    let body: Value = response.json().unwrap();
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn skopeo(args: &[&str]) -> (bool, String) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is missing: `make apt` installs it");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The `plugin.wasm` inside a compat layer.
fn plugin_wasm(layer: &[u8]) -> Vec<u8> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("plugin.wasm") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("no plugin.wasm in the layer");
}

#[test]
fn each_version_is_a_compat_wasm_image_with_correct_digests() {
    let server = Server::start();
    let module = proxy_module("oci");
    assert_eq!(
        publish(&server.url(""), "header-rewrite", "0.1.0", &module).status(),
        201
    );
    assert_eq!(
        publish(
            &server.url(""),
            "header-rewrite",
            "0.2.0",
            &proxy_module("b")
        )
        .status(),
        201
    );

    let base = client().get(server.url("/v2/")).send().unwrap();
    assert_eq!(base.status(), 200);
    assert_eq!(
        base.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    let manifest_url = server.url("/v2/header-rewrite/manifests/0.1.0");
    let head = client().head(&manifest_url).send().unwrap();
    assert_eq!(head.status(), 200);
    let digest = head.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let response = client().get(&manifest_url).send().unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let raw = response.bytes().unwrap();
    assert_eq!(
        sha256(&raw),
        digest,
        "the digest header is the manifest's digest"
    );
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let by_digest = client()
        .get(server.url(&format!("/v2/header-rewrite/manifests/{digest}")))
        .send()
        .unwrap();
    assert_eq!(by_digest.status(), 200);
    assert_eq!(by_digest.bytes().unwrap(), raw);

    let layer_digest = layers[0]["digest"].as_str().unwrap();
    let layer = client()
        .get(server.url(&format!("/v2/header-rewrite/blobs/{layer_digest}")))
        .send()
        .unwrap();
    assert_eq!(layer.status(), 200);
    assert_eq!(layer.headers()["docker-content-digest"], layer_digest);
    let layer = layer.bytes().unwrap();
    assert_eq!(sha256(&layer), layer_digest);
    assert_eq!(layers[0]["size"], layer.len());
    assert_eq!(plugin_wasm(&layer), module);

    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: Value = client()
        .get(server.url(&format!("/v2/header-rewrite/blobs/{config_digest}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(config["os"], "wasip1");

    let tags: Value = client()
        .get(server.url("/v2/header-rewrite/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        tags,
        serde_json::json!({ "name": "header-rewrite", "tags": ["0.1.0", "0.2.0", "latest"] })
    );
    // `latest` is the newest version, under a nested repository name too.
    let digest_of = |path: &str| {
        let response = client().get(server.url(path)).send().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.headers()["docker-content-digest"].clone()
    };
    let newest = digest_of("/v2/header-rewrite/manifests/0.2.0");
    assert_eq!(digest_of("/v2/header-rewrite/manifests/latest"), newest);
    assert_eq!(
        digest_of("/v2/wasmgate/header-rewrite/manifests/latest"),
        newest
    );
    assert_ne!(digest_of("/v2/header-rewrite/manifests/0.1.0"), newest);
    let nested = client()
        .get(server.url("/v2/wasmgate/header-rewrite/tags/list"))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(nested["name"], "wasmgate/header-rewrite");
    let bad_prefix = client()
        .get(server.url("/v2/Wasmgate/header-rewrite/manifests/latest"))
        .send()
        .unwrap();
    assert_eq!(bad_prefix.status(), 400);
    assert_eq!(oci_error(bad_prefix), "NAME_INVALID");
    let page = client()
        .get(server.url("/v2/header-rewrite/tags/list?n=1"))
        .send()
        .unwrap();
    assert!(page.headers()["link"]
        .to_str()
        .unwrap()
        .contains("last=0.1.0"));
    let page: Value = page.json().unwrap();
    assert_eq!(page["tags"], serde_json::json!(["0.1.0"]));

    let catalog: Value = client()
        .get(server.url("/v2/_catalog"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        catalog,
        serde_json::json!({ "repositories": ["header-rewrite"] })
    );
}

#[test]
fn oci_errors_use_the_distribution_error_body() {
    let server = Server::start();
    assert_eq!(
        publish(&server.url(""), "a", "1.0.0", &proxy_module("e")).status(),
        201
    );
    let get = |path: &str| client().get(server.url(path)).send().unwrap();
    let unknown_tag = get("/v2/a/manifests/9.9.9");
    assert_eq!(unknown_tag.status(), 404);
    assert_eq!(oci_error(unknown_tag), "MANIFEST_UNKNOWN");
    assert_eq!(oci_error(get("/v2/nobody/manifests/1.0.0")), "NAME_UNKNOWN");
    assert_eq!(oci_error(get("/v2/Bad_Name!/tags/list")), "NAME_INVALID");
    let missing_blob = format!("/v2/a/blobs/{}", sha256(b"missing"));
    assert_eq!(oci_error(get(&missing_blob)), "BLOB_UNKNOWN");
    assert_eq!(oci_error(get("/v2/a/blobs/sha256:xyz")), "DIGEST_INVALID");
    // A module blob is not one of the image's blobs: the OCI API only serves image content.
    let module_blob = format!("/v2/a/blobs/{}", sha256(&proxy_module("e")));
    assert_eq!(oci_error(get(&module_blob)), "BLOB_UNKNOWN");
    let push = client()
        .post(server.url("/v2/a/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(push.status(), 405);
    assert_eq!(oci_error(push), "UNSUPPORTED");
    let put = client()
        .put(server.url("/v2/a/manifests/2.0.0"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(oci_error(put), "UNSUPPORTED");
}

#[test]
fn skopeo_inspects_lists_and_copies_a_published_plugin() {
    let server = Server::start();
    let module = proxy_module("skopeo");
    let created = publish(&server.url(""), "header-rewrite", "1.2.3", &module);
    assert_eq!(created.status(), 201);
    let meta: Value = created.json().unwrap();
    let manifest_digest = meta["oci"]["manifest_digest"].as_str().unwrap();
    let image = format!("docker://{}/header-rewrite:1.2.3", server.addr);

    let (ok, out) = skopeo(&["inspect", "--tls-verify=false", &image]);
    assert!(ok, "skopeo inspect: {out}");
    let inspected: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["Digest"], manifest_digest);
    assert_eq!(inspected["Os"], "wasip1");
    assert_eq!(inspected["Architecture"], "wasm");
    assert_eq!(inspected["Name"], format!("{}/header-rewrite", server.addr));

    let (ok, out) = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/header-rewrite", server.addr),
    ]);
    assert!(ok, "skopeo list-tags: {out}");
    assert!(out.contains("1.2.3"), "{out}");

    let dest = tempfile::tempdir().unwrap();
    let dir = dest.path().join("image");
    let (ok, out) = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &image,
        &format!("dir:{}", dir.display()),
    ]);
    assert!(ok, "skopeo copy: {out}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let layer = std::fs::read(dir.join(layer_digest.trim_start_matches("sha256:"))).unwrap();
    assert_eq!(
        plugin_wasm(&layer),
        module,
        "the copied image holds the published module"
    );

    let (ok, out) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/header-rewrite:9.9.9", server.addr),
    ]);
    assert!(!ok, "an unknown tag must fail: {out}");
    assert!(out.contains("manifest unknown"), "{out}");
}
