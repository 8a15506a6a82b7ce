//! The one proxy-wasm module inspector: validates a module read in pieces (memory stays
//! bounded by the largest section rather than by the module) and finds its exports and the
//! proxy-wasm ABI it speaks. The registry refuses what [`Module::abi_version`] refuses; the CLI
//! reports the same answer.

use std::io::Read;

use wasmparser::{
    Chunk, Encoding, ExternalKind, FuncValidatorAllocations, Parser, Payload, ValidPayload,
    Validator,
};

/// The first 8 bytes of every core Wasm module: `\0asm` and binary format version 1.
pub const WASM_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// Every proxy-wasm module exports a function with this prefix naming its ABI version.
const ABI_EXPORT_PREFIX: &str = "proxy_abi_version_";

/// How much to read from the file at a time.
const READ_CHUNK: usize = 256 * 1024;
/// The most read at once when the parser asks for a large section.
const MAX_READ: usize = 16 * 1024 * 1024;

/// Why bytes are not an acceptable module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WasmError {
    /// The bytes do not start with the Wasm magic number and version 1.
    #[error("not a WebAssembly module (the file does not start with \\0asm and version 1)")]
    NotWasm,
    /// The module does not parse or does not validate.
    #[error("invalid WebAssembly module: {0}")]
    Invalid(String),
    /// A valid module that is not a proxy-wasm plugin.
    #[error("not a proxy-wasm module: {0}")]
    NotProxyWasm(String),
    /// Reading the module failed.
    #[error("cannot read the module")]
    Io,
}

/// What a valid core Wasm module exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Every export (functions, memories, tables, globals), in module order.
    pub exports: Vec<String>,
    /// `X.Y.Z` of each exported function `proxy_abi_version_X_Y_Z`.
    abi_versions: Vec<String>,
}

impl Module {
    /// The proxy-wasm ABI version (`0.2.1`): a proxy-wasm module exports exactly one
    /// `proxy_abi_version_*` function; none, or several, is not a proxy-wasm module.
    pub fn abi_version(&self) -> Result<&str, WasmError> {
        match self.abi_versions.as_slice() {
            [version] => Ok(version),
            [] => Err(WasmError::NotProxyWasm(format!(
                "it exports no {ABI_EXPORT_PREFIX}* function"
            ))),
            _ => Err(WasmError::NotProxyWasm(format!(
                "it exports more than one {ABI_EXPORT_PREFIX}* function"
            ))),
        }
    }
}

/// Whether `prefix` (the first bytes of an upload, however many arrived) can still be a
/// Wasm module.
pub fn header_ok(prefix: &[u8]) -> bool {
    let n = prefix.len().min(WASM_HEADER.len());
    prefix[..n] == WASM_HEADER[..n]
}

/// Parse and validate a core module read from `reader`, and list what it exports.
pub fn inspect(mut reader: impl Read) -> Result<Module, WasmError> {
    let mut parser = Parser::new(0);
    let mut validator = Validator::new();
    let mut allocations = FuncValidatorAllocations::default();
    let mut exports: Vec<String> = Vec::new();
    let mut abi_versions: Vec<String> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut eof = false;
    let mut header_checked = false;
    loop {
        if !header_checked && buf.len() >= WASM_HEADER.len() {
            if !header_ok(&buf) {
                return Err(WasmError::NotWasm);
            }
            header_checked = true;
        }
        let chunk = parser
            .parse(&buf, eof)
            .map_err(|e| WasmError::Invalid(e.message().to_owned()))?;
        let (consumed, payload) = match chunk {
            Chunk::NeedMoreData(hint) => {
                if eof {
                    return Err(WasmError::Invalid("unexpected end of module".into()));
                }
                // The hint comes from the module's own size fields: never trust it for an allocation.
                let want = hint.clamp(READ_CHUNK, MAX_READ);
                let start = buf.len();
                buf.resize(start + want, 0);
                let n = reader.read(&mut buf[start..]).map_err(|_| WasmError::Io)?;
                buf.truncate(start + n);
                eof = n == 0;
                if eof && !header_checked && buf.len() < WASM_HEADER.len() {
                    return Err(WasmError::NotWasm);
                }
                continue;
            }
            Chunk::Parsed { consumed, payload } => (consumed, payload),
        };
        if let Payload::Version { encoding, .. } = &payload {
            if *encoding != Encoding::Module {
                return Err(WasmError::NotProxyWasm(
                    "a component, not a core module".into(),
                ));
            }
        }
        if let Payload::ExportSection(section) = &payload {
            for export in section.clone() {
                let export = export.map_err(|e| WasmError::Invalid(e.message().to_owned()))?;
                exports.push(export.name.to_owned());
                if export.kind == ExternalKind::Func {
                    if let Some(version) = export.name.strip_prefix(ABI_EXPORT_PREFIX) {
                        abi_versions.push(version.replace('_', "."));
                    }
                }
            }
        }
        let valid = validator
            .payload(&payload)
            .map_err(|e| WasmError::Invalid(e.message().to_owned()))?;
        match valid {
            ValidPayload::Func(func, body) => {
                let mut func = func.into_validator(allocations);
                func.validate(&body)
                    .map_err(|e| WasmError::Invalid(e.message().to_owned()))?;
                allocations = func.into_allocations();
            }
            ValidPayload::End(_) => break,
            ValidPayload::Ok | ValidPayload::Parser(_) => {}
        }
        buf.drain(..consumed);
    }
    Ok(Module {
        exports,
        abi_versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_module::module_exporting;

    #[test]
    fn a_proxy_wasm_module_reports_its_abi_version() {
        let module = module_exporting(&["proxy_abi_version_0_2_1", "proxy_on_memory_allocate"]);
        let found = inspect(module.as_slice()).unwrap();
        assert_eq!(found.abi_version(), Ok("0.2.1"));
        assert_eq!(
            found.exports,
            ["proxy_abi_version_0_2_1", "proxy_on_memory_allocate"]
        );
    }

    #[test]
    fn a_module_without_one_abi_export_is_not_proxy_wasm() {
        let plain = inspect(module_exporting(&["_start"]).as_slice()).unwrap();
        assert_eq!(plain.exports, ["_start"]);
        assert!(matches!(
            plain.abi_version(),
            Err(WasmError::NotProxyWasm(_))
        ));
        let two = module_exporting(&["proxy_abi_version_0_2_1", "proxy_abi_version_0_1_0"]);
        assert!(matches!(
            inspect(two.as_slice()).unwrap().abi_version(),
            Err(WasmError::NotProxyWasm(_))
        ));
    }

    #[test]
    fn other_bytes_are_not_wasm() {
        assert_eq!(
            inspect(&b"#!/bin/sh\necho hi\n"[..]),
            Err(WasmError::NotWasm)
        );
        assert_eq!(inspect(&b"\0as"[..]), Err(WasmError::NotWasm));
        assert!(!header_ok(b"\0asm\x02"));
        assert!(header_ok(b"\0as"));
    }

    #[test]
    fn a_truncated_or_corrupt_module_is_invalid() {
        let module = module_exporting(&["proxy_abi_version_0_2_1"]);
        let truncated = &module[..module.len() - 2];
        assert!(matches!(inspect(truncated), Err(WasmError::Invalid(_))));
        let mut corrupt = module.clone();
        let last = corrupt.len() - 1;
        corrupt[last] = 0xff;
        assert!(matches!(
            inspect(corrupt.as_slice()),
            Err(WasmError::Invalid(_))
        ));
    }

    #[test]
    fn a_large_module_is_read_in_pieces() {
        use crate::test_module::LargeModule;
        let total = 3 * 1024 * 1024;
        let piece = 64 * 1024;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut LargeModule::new(total, piece), &mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, LargeModule::size(total, piece));
        assert_eq!(
            inspect(bytes.as_slice()).unwrap().abi_version(),
            Ok("0.2.1")
        );
    }
}
