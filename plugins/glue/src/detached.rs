//! A host with no proxy behind it, for checking configurations ([`crate::Plugin::validate`]).
//!
//! It has no effects and answers nothing: a `configure` that only defines metrics and logs
//! runs to the same verdict as in Envoy; one that needs the clock, random bytes or shared
//! data gets errors or nothing, and its plugin overrides `validate`.

use std::time::{Duration, SystemTime};

use crate::host::{
    GrpcCall, Headers, Host, HostError, HttpCall, LocalReply, LogLevel, MetricId, MetricKind,
};

/// The host of [`crate::Plugin::validate`]'s default: no proxy, no effects.
pub(crate) struct Detached;

fn detached() -> HostError {
    HostError::Failed("no proxy: checking the configuration only".into())
}

impl Host for Detached {
    fn header(&self, _: Headers, _: &str) -> Option<String> {
        None
    }

    fn headers(&self, _: Headers) -> Vec<(String, String)> {
        Vec::new()
    }

    fn set_header(&mut self, _: Headers, _: &str, _: &str) {}

    fn add_header(&mut self, _: Headers, _: &str, _: &str) {}

    fn remove_header(&mut self, _: Headers, _: &str) {}

    fn property(&self, _: &[&str]) -> Option<Vec<u8>> {
        None
    }

    fn shared_data(&self, _: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (None, None)
    }

    fn set_shared_data(&mut self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), HostError> {
        Err(detached())
    }

    fn now(&self) -> Result<SystemTime, HostError> {
        Err(detached())
    }

    fn random(&mut self, _: &mut [u8]) -> Result<(), HostError> {
        Err(detached())
    }

    fn reply(&mut self, _: LocalReply) {}

    fn resume_request(&mut self) {}

    fn clear_route_cache(&mut self) {}

    fn http_call(&mut self, _: &HttpCall<'_>) -> Result<u32, HostError> {
        Err(detached())
    }

    fn call_response_body(&self, _: usize) -> Option<Vec<u8>> {
        None
    }

    fn grpc_call(&mut self, _: &GrpcCall<'_>) -> Result<u32, HostError> {
        Err(detached())
    }

    fn set_tick_period(&mut self, _: Duration) {}

    // Every metric is the same discarded one: defining must succeed for `configure` to.
    fn define_metric(&mut self, _: MetricKind, _: &str) -> Result<MetricId, HostError> {
        Ok(MetricId(0))
    }

    fn increment_metric(&mut self, _: MetricId, _: i64) {}

    fn record_metric(&mut self, _: MetricId, _: u64) {}

    fn log(&mut self, _: LogLevel, _: &str) {}
}
