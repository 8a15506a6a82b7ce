//! What a module is: its digest, size, exports and the proxy-wasm ABI it speaks.

use std::path::Path;

use serde::Serialize;
use wasmgate_envoy::Sha256;

use crate::error::{read, Error, Result};

/// The export that names a proxy-wasm ABI version: `proxy_abi_version_0_2_1`.
const ABI_EXPORT_PREFIX: &str = "proxy_abi_version_";

/// A module's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleReport {
    pub path: String,
    pub size: u64,
    pub sha256: Sha256,
    /// The proxy-wasm ABI (`0.2.1`); `None` when the module is not a proxy-wasm module.
    pub abi_version: Option<String>,
    /// Exported functions, memories, tables and globals, in module order.
    pub exports: Vec<String>,
}

/// Inspect a `.wasm` file.
pub fn inspect_file(path: &Path) -> Result<ModuleReport> {
    let bytes = read(path)?;
    inspect(&bytes, &path.display().to_string())
}

/// Inspect module bytes; `path` only names them in the report and in errors.
pub fn inspect(bytes: &[u8], path: &str) -> Result<ModuleReport> {
    wasmparser::Validator::new()
        .validate_all(bytes)
        .map_err(|e| Error::failed(format!("{path}: not a valid Wasm module: {e}")))?;
    let mut exports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| Error::failed(format!("{path}: {e}")))?;
        if let wasmparser::Payload::ExportSection(reader) = payload {
            for export in reader {
                let export = export.map_err(|e| Error::failed(format!("{path}: {e}")))?;
                exports.push(export.name.to_owned());
            }
        }
    }
    let abi_version = exports
        .iter()
        .filter_map(|e| e.strip_prefix(ABI_EXPORT_PREFIX))
        .map(|v| v.replace('_', "."))
        .max();
    Ok(ModuleReport {
        path: path.to_owned(),
        size: bytes.len() as u64,
        sha256: Sha256::of(bytes),
        abi_version,
        exports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module exporting one function named `name` (hand-assembled binary format).
    fn module_exporting(name: &str) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend([0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // type section: () -> ()
        m.extend([0x03, 0x02, 0x01, 0x00]); // function section: one function of type 0
        let mut export = vec![0x01, name.len() as u8];
        export.extend(name.as_bytes());
        export.extend([0x00, 0x00]); // function 0
        m.push(0x07);
        m.push(export.len() as u8);
        m.extend(export);
        m.extend([0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b]); // code section: empty body
        m
    }

    #[test]
    fn reads_the_abi_version_from_the_exports() {
        let bytes = module_exporting("proxy_abi_version_0_2_1");
        let report = inspect(&bytes, "m.wasm").unwrap();
        assert_eq!(report.abi_version.as_deref(), Some("0.2.1"));
        assert_eq!(report.exports, ["proxy_abi_version_0_2_1"]);
        assert_eq!(report.sha256, Sha256::of(&bytes));
        assert_eq!(report.size, bytes.len() as u64);
    }

    #[test]
    fn plain_modules_have_no_abi_and_garbage_is_refused() {
        assert_eq!(
            inspect(&module_exporting("run"), "m").unwrap().abi_version,
            None
        );
        let err = inspect(b"not wasm", "x.wasm").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x.wasm: not a valid Wasm module"),
            "{err}"
        );
    }
}
