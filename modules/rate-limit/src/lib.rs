//! The `rate-limit` plugin exported as a module of its own (`rate_limit.wasm`).

wasmgate_glue::export!(plugin::RateLimit);
