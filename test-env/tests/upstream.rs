//! The echo upstream on its own, without Envoy.

use std::time::{Duration, Instant};

use test_env::{client, get_echo, Mode, Upstream, ECHO_RESPONSE_HEADER, ECHO_STATUS};

#[test]
fn echoes_method_path_and_headers() {
    let upstream = Upstream::start();
    let url = format!("http://{}/a/b?x=1", upstream.addr());
    let echo = get_echo(&client(), &url, &[("x-one", "1"), ("x-one", "2")]);
    assert_eq!(echo.method, "GET");
    assert_eq!(echo.path, "/a/b?x=1");
    assert_eq!(echo.all("x-one"), vec!["1", "2"]);
    assert_eq!(echo.header("X-One").as_deref(), Some("1,2"));
    assert_eq!(upstream.echoed(), 1);
}

#[test]
fn adds_response_headers_and_status_on_request() {
    let upstream = Upstream::start();
    let response = client()
        .get(format!("http://{}/", upstream.addr()))
        .header(ECHO_RESPONSE_HEADER, "x-from-upstream: yes")
        .header(ECHO_STATUS, "404")
        .send()
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-from-upstream"], "yes");
}

#[test]
fn documents_switch_between_ok_error_and_slow() {
    let upstream = Upstream::start();
    upstream.serve("/jwks.json", "application/json", r#"{"keys":[]}"#);
    let url = format!("http://{}/jwks.json", upstream.addr());
    let ok = client().get(&url).send().unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().unwrap(), r#"{"keys":[]}"#);

    upstream.set_mode("/jwks.json", Mode::Status(500));
    assert_eq!(client().get(&url).send().unwrap().status(), 500);

    upstream.set_mode("/jwks.json", Mode::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(client().get(&url).send().unwrap().status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    assert_eq!(upstream.hits("/jwks.json"), 3);
    assert_eq!(upstream.echoed(), 0);
}
