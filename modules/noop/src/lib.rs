//! The no-op module (`noop.wasm`): one plugin that lets every request through untouched.
//!
//! It is built exactly as the shipped modules are (same glue, `[profile.wasm]`, `wasm-opt -Oz`),
//! so `make bench` can report what each shipped module costs in size, memory and start-up above
//! this floor: what any Wasmgate module pays is the floor, what a plugin adds is the difference.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use wasmgate_glue::{Callbacks, ConfigError, Host, HttpFilter, Plugin};

/// The plugin: no configuration, no state, no host calls.
#[derive(Debug)]
pub struct Noop;

/// Its per-stream filter: every callback keeps the default, [`Action::Continue`](wasmgate_glue::Action).
#[derive(Debug)]
pub struct Pass;

impl HttpFilter for Pass {}

impl Plugin for Noop {
    const NAME: &'static str = "noop";
    type Filter = Pass;
    // Request headers only, as every module has them: the floor is what any plugin pays.
    const CALLBACKS: Callbacks = Callbacks::NONE;

    /// Only an empty configuration (nothing, or `{}`) is taken: the floor must not grow a JSON
    /// parser, and a configuration meant for another plugin should not load silently.
    fn configure(config: &[u8], _host: &mut dyn Host) -> Result<Self, ConfigError> {
        let meaningful: Vec<u8> = config
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        match meaningful.as_slice() {
            b"" | b"{}" => Ok(Noop),
            _ => Err(ConfigError::new(
                "",
                "the noop plugin takes no configuration (leave it empty or {})",
            )),
        }
    }

    fn create_filter(&self, _context_id: u32) -> Pass {
        Pass
    }
}

wasmgate_glue::export!(Noop);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate_glue::{Action, FakeHost};

    #[test]
    fn empty_configurations_are_taken_others_refused() {
        let mut host = FakeHost::new();
        for config in [&b""[..], b"  ", b"{}", b" { \n} "] {
            assert!(Noop::configure(config, &mut host).is_ok(), "{config:?}");
        }
        for config in [&b"{\"rules\":[]}"[..], b"[]", b"null", b"{"] {
            let err = Noop::configure(config, &mut host).unwrap_err();
            assert!(err.reason().contains("no configuration"), "{err}");
        }
    }

    #[test]
    fn every_request_goes_through() {
        let mut host = FakeHost::new();
        let mut filter = Noop::configure(b"", &mut host).unwrap().create_filter(1);
        assert_eq!(filter.on_request_headers(&mut host, true), Action::Continue);
        assert_eq!(
            filter.on_response_headers(&mut host, true),
            Action::Continue
        );
    }
}
