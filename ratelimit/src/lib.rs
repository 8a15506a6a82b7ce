//! Wasmgate's rate-limit service: Envoy's RLS protocol
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, gRPC) with limits from
//! YAML or JSON files and counters in Redis (shared by every replica) or in memory.
//!
//! - [`config`]: the limits file, parsed with field-path errors and compiled into a tree;
//! - [`limiter`]: the decision for one request, transport-free;
//! - [`store`]: counters, atomically incremented (a Lua script on Redis);
//! - [`grpc`]: the tonic service; [`server`]: the process, admin endpoints, shutdown;
//! - [`proto`]: the protocol's messages; [`metrics`]: Prometheus counters.

pub mod config;
pub mod grpc;
pub mod limiter;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod store;

pub use config::{ConfigError, Limits};
pub use limiter::Limiter;
pub use server::{run, Error, Options, Server, ABOUT};
