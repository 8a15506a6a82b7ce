//! `envoy.service.ratelimit.v3.RateLimitService` over tonic, written by hand in the shape
//! tonic-build generates (no protoc here): one route, one unary method.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::{http, Body, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::limiter::{LimitError, Limiter};
use crate::proto::{RateLimitRequest, RateLimitResponse};

/// The gRPC path of the one method.
pub const SHOULD_RATE_LIMIT: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// The tonic service answering ShouldRateLimit with a [`Limiter`].
#[derive(Debug, Clone)]
pub struct RateLimitService {
    limiter: Arc<Limiter>,
}

impl RateLimitService {
    pub fn new(limiter: Arc<Limiter>) -> Self {
        RateLimitService { limiter }
    }
}

impl NamedService for RateLimitService {
    const NAME: &'static str = "envoy.service.ratelimit.v3.RateLimitService";
}

struct ShouldRateLimit(Arc<Limiter>);

impl UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<Response<RateLimitResponse>, Status>;

    fn call(&mut self, request: Request<RateLimitRequest>) -> Self::Future {
        let limiter = self.0.clone();
        Box::pin(async move {
            let request = request.into_inner();
            match limiter.should_rate_limit(&request).await {
                Ok(response) => Ok(Response::new(response)),
                Err(err) => Err(to_status(&request.domain, err)),
            }
        })
    }
}

fn to_status(domain: &str, err: LimitError) -> Status {
    match err {
        LimitError::Invalid(reason) => {
            tracing::debug!(domain, "invalid request: {reason}");
            Status::invalid_argument(reason)
        }
        // UNAVAILABLE lets the client apply its failure mode (Envoy: failure_mode_deny).
        LimitError::Backend(e) => {
            tracing::warn!(domain, "backend failed, answering UNAVAILABLE: {e}");
            Status::unavailable("rate-limit backend unavailable")
        }
        LimitError::Clock => {
            tracing::error!("{err}");
            Status::internal("clock error")
        }
    }
}

impl<B> Service<http::Request<B>> for RateLimitService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != SHOULD_RATE_LIMIT {
            return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
        }
        let method = ShouldRateLimit(self.limiter.clone());
        Box::pin(async move {
            let mut grpc = Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}
