//! The demo flow end to end: registry → render envoy → Envoy fetches the three modules over
//! HTTP with sha256 → real requests show every plugin at work; a tampered sha256 makes Envoy
//! refuse the module.

use std::time::Duration;

use test_env::reqwest::blocking::Client;
use test_env::{client, Envoy};
use wasmgate::demo::{self, Demo, Options};

fn start() -> Demo {
    let modules = test_env::wasm_module("jwt_auth")
        .parent()
        .unwrap()
        .to_path_buf();
    // Fail the test with the demo's own message, which carries Envoy's log.
    match demo::start(&Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: "127.0.0.1:0".parse().unwrap(),
        global: [
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ],
        modules,
        envoy: test_env::envoy_binary(),
    }) {
        Ok(demo) => demo,
        Err(e) => panic!("{e}"),
    }
}

fn get(client: &Client, url: &str, token: Option<&str>) -> (u16, Vec<(String, String)>, String) {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    (status, headers, response.text().unwrap())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn every_plugin_works_with_modules_fetched_by_sha256() {
    let demo = start();
    let client = client();
    let base = format!("http://{}", demo.listener);

    // jwt-auth: no token, a tampered token, a valid one (claim forwarded upstream).
    let (status, headers, _) = get(&client, &format!("{base}/api/hello"), None);
    assert_eq!(status, 401, "{}", demo.envoy_log());
    assert!(header(&headers, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
    let (status, _, _) = get(
        &client,
        &format!("{base}/api/hello"),
        Some(&demo::tampered_token("ada")),
    );
    assert_eq!(status, 401);
    let (status, headers, body) = get(
        &client,
        &format!("{base}/api/hello"),
        Some(&demo::token("ada")),
    );
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sent: Vec<(String, String)> = serde_json::from_value(echo["headers"].clone()).unwrap();
    assert_eq!(header(&sent, "x-user"), Some("ada"));

    // header-rewrite: a request header the upstream saw, a response header we see.
    assert_eq!(
        header(&sent, "x-wasmgate-demo"),
        Some("rewritten-by-header-rewrite")
    );
    assert_eq!(header(&headers, "x-wasmgate"), Some("header-rewrite"));

    // rate-limit: 3 a minute under /limited, the 4th is refused.
    let statuses: Vec<u16> = (0..4)
        .map(|_| get(&client, &format!("{base}/limited"), None).0)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);

    // The curl commands printed for people point at this Envoy.
    let text = demo::instructions(&demo);
    assert!(
        text.contains(&format!("curl -i {base}/api/hello")),
        "{text}"
    );
    assert!(text.contains(&demo.registry));
}

#[test]
fn a_tampered_sha256_makes_envoy_refuse_the_module() {
    let demo = start();
    let yaml = std::fs::read_to_string(&demo.bootstrap).unwrap();
    let mut bootstrap: serde_json::Value = serde_norway_from(&yaml);
    let chain = bootstrap
        .pointer_mut(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .unwrap()
        .as_array_mut()
        .unwrap();
    let sha = chain[2]
        .pointer_mut("/typed_config/config/vm_config/code/remote/sha256")
        .unwrap();
    let good = sha.as_str().unwrap().to_owned();
    let tampered = format!(
        "{}{}",
        if good.starts_with('0') { "1" } else { "0" },
        &good[1..]
    );
    *sha = serde_json::Value::String(tampered);
    // Envoy treats a digest mismatch like a failed fetch and retries with back-off; no
    // retries keeps the test short. The first test runs the same bootstrap untampered.
    *chain[2]
        .pointer_mut("/typed_config/config/vm_config/code/remote/retry_policy/num_retries")
        .unwrap() = serde_json::json!(0);

    let envoy = Envoy::builder().bootstrap(bootstrap).try_start();
    let refused = "Plugin header-rewrite failed to load";
    match envoy {
        // Envoy came up: the filter whose module failed its digest fails closed, so every
        // request gets 503.
        Ok(envoy) => {
            let (status, _, _) = get(&client(), &envoy.url("/public"), None);
            assert_eq!(status, 503, "{}", envoy.log());
            assert!(
                envoy.wait_for_log(refused, Duration::from_secs(10)),
                "{}",
                envoy.log()
            );
        }
        Err(e) => assert!(e.log.contains(refused), "{e}"),
    }
}

fn serde_norway_from(yaml: &str) -> serde_json::Value {
    wasmgate::pluginconfig::parse(yaml.as_bytes()).unwrap()
}

#[test]
fn two_listeners_share_one_global_limit_through_the_rate_limit_service() {
    let demo = start();
    let client = client();
    let [a, b] = demo.global;
    assert_ne!(a, b);
    assert_ne!(a, demo.listener);
    // Alternating between the listeners: each one alone is under the limit, together they
    // use it up, and both refuse once it is.
    let statuses: Vec<u16> = (0..8)
        .map(|i| {
            let listener = if i % 2 == 0 { a } else { b };
            get(&client, &format!("http://{listener}/"), None).0
        })
        .collect();
    let limit = demo::global::LIMIT as usize;
    let mut wanted = vec![200; limit];
    wanted.resize(8, 429);
    assert_eq!(statuses, wanted, "{}", demo.envoy_log());
    // The main listener has no global rule: it is not limited by the shared counter.
    let (status, _, _) = get(&client, &format!("http://{}/public", demo.listener), None);
    assert_eq!(status, 200);
    assert!(demo::instructions(&demo).contains(&format!("http://{a}")));
}
