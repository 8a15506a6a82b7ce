//! The `jwt-auth` plugin exported as a module of its own (`jwt_auth.wasm`).

wasmgate_glue::export!(plugin::JwtAuth);
