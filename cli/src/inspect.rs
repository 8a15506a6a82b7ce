//! What a module is: its digest, size, exports and the proxy-wasm ABI it speaks.

use std::path::Path;

use serde::Serialize;
use wasmgate_artifact::{wasm, Digest};

use crate::error::{read, Error, Result};

/// A module's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleReport {
    pub path: String,
    pub size: u64,
    #[serde(with = "wasmgate_artifact::digest::hex")]
    pub sha256: Digest,
    /// The proxy-wasm ABI (`0.2.1`); `None` when the module is not a proxy-wasm module (it
    /// exports no `proxy_abi_version_*` function, or several: the registry refuses both).
    pub abi_version: Option<String>,
    /// Exported functions, memories, tables and globals, in module order.
    pub exports: Vec<String>,
}

/// Inspect a `.wasm` file.
pub fn inspect_file(path: &Path) -> Result<ModuleReport> {
    let bytes = read(path)?;
    inspect(&bytes, &path.display().to_string())
}

/// Inspect module bytes with the registry's inspector; `path` only names them in the report
/// and in errors.
pub fn inspect(bytes: &[u8], path: &str) -> Result<ModuleReport> {
    // Checked here, whatever the file's length: one line for the common mistake, where the
    // parser's own message for a short file spans several.
    if !bytes.starts_with(b"\0asm") {
        return Err(Error::failed(format!(
            "{path}: not a WebAssembly module (it does not start with \\0asm)"
        )));
    }
    let module = wasm::inspect(bytes).map_err(|e| {
        let message = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Error::failed(format!("{path}: {message}"))
    })?;
    Ok(ModuleReport {
        path: path.to_owned(),
        size: bytes.len() as u64,
        sha256: Digest::of(bytes),
        abi_version: module.abi_version().ok().map(str::to_owned),
        exports: module.exports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_exporting(name: &str) -> Vec<u8> {
        wasmgate_artifact::test_module::module_exporting(&[name])
    }

    #[test]
    fn reads_the_abi_version_from_the_exports() {
        let bytes = module_exporting("proxy_abi_version_0_2_1");
        let report = inspect(&bytes, "m.wasm").unwrap();
        assert_eq!(report.abi_version.as_deref(), Some("0.2.1"));
        assert_eq!(report.exports, ["proxy_abi_version_0_2_1"]);
        assert_eq!(report.sha256, Digest::of(&bytes));
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
                .starts_with("x.wasm: not a WebAssembly module"),
            "{err}"
        );
    }
}
