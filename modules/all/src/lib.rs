//! The combined module: every Wasmgate plugin in one Wasm VM, chosen by Envoy's `root_id`.
//!
//! Every separate Wasm VM costs memory and startup time per worker; filters that set the
//! same `vm_id` and load this module share one VM.

wasmgate_glue::export!(
    jwt_auth::JwtAuth,
    rate_limit::RateLimit,
    header_rewrite::HeaderRewrite,
);
