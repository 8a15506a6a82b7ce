//! The `header-rewrite` plugin exported as a module of its own (`header_rewrite.wasm`).

wasmgate_glue::export!(plugin::HeaderRewrite);
