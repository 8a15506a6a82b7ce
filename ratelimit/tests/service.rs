//! The service as a process: replicas sharing Redis, restarts, shutdown, bad limits files,
//! the admin endpoints, and gRPC from a second client (tonic) with concurrent calls.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::{limits_file, service_binary, Redis, Service};
use tonic::codegen::http::uri::PathAndQuery;
use wasmgate_ratelimit::grpc::SHOULD_RATE_LIMIT;
use wasmgate_ratelimit::proto::{
    Code, Entry, RateLimitDescriptor, RateLimitRequest, RateLimitResponse,
};

const LIMITS: &str = r#"
domain: svc
descriptors:
  - key: client
    rate_limit: { unit: hour, requests_per_unit: 10 }
"#;

fn request(client: &str, hits: u32) -> RateLimitRequest {
    RateLimitRequest {
        domain: "svc".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "client".into(),
                value: client.into(),
            }],
            limit: None,
        }],
        hits_addend: hits,
    }
}

async fn call(
    addr: SocketAddr,
    request: RateLimitRequest,
) -> Result<RateLimitResponse, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc.unary(
        tonic::Request::new(request),
        PathAndQuery::from_static(SHOULD_RATE_LIMIT),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

async fn allowed(addrs: &[SocketAddr], client: &str, calls: usize) -> usize {
    let tasks: Vec<_> = (0..calls)
        .map(|i| {
            let addr = addrs[i % addrs.len()];
            let request = request(client, 0);
            tokio::spawn(async move { call(addr, request).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let response = task.await.expect("task").expect("an answer");
        if response.overall_code == Code::Ok as i32 {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_one_redis_share_counters_and_keep_them_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start();
    let limits = limits_file(dir.path(), LIMITS);
    let a = Service::start(&limits, Some(&redis.url()));
    let b = Service::start(&limits, Some(&redis.url()));
    // 40 concurrent calls over both replicas: exactly 10 fit, whoever wins the race.
    assert_eq!(allowed(&[a.grpc, b.grpc], "shared", 40).await, 10);

    // 4 hits of 10 used by replica a, then a restart of both: Redis still holds the 4.
    let response = call(a.grpc, request("restart", 4)).await.expect("answer");
    assert_eq!(response.statuses[0].limit_remaining, 6);
    drop(a);
    drop(b);
    let c = Service::start(&limits, Some(&redis.url()));
    assert_eq!(allowed(&[c.grpc], "restart", 10).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_backend_is_exact_in_one_process_and_invalid_calls_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = Service::start(&limits_file(dir.path(), LIMITS), None);
    assert_eq!(allowed(&[service.grpc], "m", 30).await, 10);
    let mut no_domain = request("m", 0);
    no_domain.domain.clear();
    let status = call(service.grpc, no_domain).await.expect_err("invalid");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let http = service.http;
    let (_, metrics) = tokio::task::spawn_blocking(move || test_env::http_get(http, "/metrics"))
        .await
        .expect("task")
        .expect("GET /metrics");
    assert!(
        metrics.contains("wasmgate_ratelimit_calls_total 31\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmgate_ratelimit_invalid_requests_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("wasmgate_ratelimit_backend_seconds_count{backend=\"memory\"} 30\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_unavailable_quickly_and_recovers_when_it_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut redis = Redis::start();
    let service = Service::start(&limits_file(dir.path(), LIMITS), Some(&redis.url()));
    assert!(call(service.grpc, request("r", 0)).await.is_ok());
    redis.stop();
    let started = std::time::Instant::now();
    let status = call(service.grpc, request("r", 0))
        .await
        .expect_err("no Redis");
    eprintln!("UNAVAILABLE after {:?}", started.elapsed());
    assert_eq!(status.code(), tonic::Code::Unavailable);
    // The service reconnects on its own once Redis is back (new, empty Redis on the same port).
    let redis = Redis::start_on(redis.port);
    let response = call(service.grpc, request("r", 0))
        .await
        .expect("answer after Redis is back");
    assert_eq!(response.overall_code, Code::Ok as i32);
    drop(redis);
}

#[test]
fn sigterm_stops_the_service_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = Service::start(&limits_file(dir.path(), LIMITS), None);
    assert_eq!(service.get("/healthz"), (200, "ok\n".into()));
    let status = service.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_bad_limits_file_is_refused_with_the_field_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = limits_file(
        dir.path(),
        "domain: svc\ndescriptors:\n  - key: a\n    rate_limit: {unit: minute, requests_per_unit: 1}\n  - key: b\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
    );
    for check in [false, true] {
        let mut command = Command::new(service_binary());
        command.arg("--limits").arg(&bad).args([
            "--grpc-bind",
            "127.0.0.1:0",
            "--http-bind",
            "127.0.0.1:0",
        ]);
        if check {
            command.arg("--check");
        }
        let out = command.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{}: descriptors[1].rate_limit.unit: unknown variant `fortnight`, expected one of `second`, `minute`, `hour`, `day`",
                bad.display()
            )),
            "{stderr}"
        );
    }
    let missing = Command::new(service_binary())
        .args(["--limits", "/nonexistent/limits.yaml", "--check"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/limits.yaml: cannot read")
    );

    let good = limits_file(dir.path(), LIMITS);
    let ok = Command::new(service_binary())
        .arg("--limits")
        .arg(&good)
        .arg("--check")
        .output()
        .expect("run");
    assert!(ok.status.success());
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ok: domains svc\n");
}

#[test]
fn help_explains_the_service() {
    let out = Command::new(service_binary())
        .arg("--help")
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--limits",
        "--redis",
        "--grpc-bind",
        "--http-bind",
        "failure_mode_deny",
        "/metrics",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}
