//! Keep only the exports a module's plugins use, as `make wasm` and `wasmgate build` do
//! between Cargo and `wasm-opt`.
//!
//! The proxy-wasm SDK exports every callback of the ABI. Envoy checks whether an export exists
//! before calling into the VM, so each unused one that is left costs a VM entry per request
//! (response headers, body chunks, trailers, log). `wasmgate_glue::export!` lists in a custom
//! section ([`KEEP_SECTION`]) what the module's plugins declare they use plus what every
//! module needs; [`strip_exports`] drops the other exports and the section itself, and
//! `wasm-opt -Oz` then removes the code only they reached.

use std::collections::BTreeSet;

use wasmparser::BinaryReader;

use crate::wasm::{inspect, WasmError, WASM_HEADER};

/// The custom section `wasmgate_glue::export!` writes: the names of the exports to keep, one
/// a line (`wasmgate_glue::proxy::KEEP_SECTION`).
pub const KEEP_SECTION: &str = "wasmgate.exports";

const CUSTOM: u8 = 0;
const EXPORT: u8 = 7;

/// Why a module's exports cannot be stripped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StripError {
    /// The bytes are not a valid module, before or after stripping.
    #[error(transparent)]
    Wasm(#[from] WasmError),
    /// No list of exports to keep: the module was not built with `wasmgate_glue::export!`.
    #[error("the module has no `{KEEP_SECTION}` section listing the exports to keep (is it built with wasmgate_glue::export!?)")]
    NoKeepList,
    /// The list names exports the module does not have (a changed SDK, a misspelt name).
    #[error("the module is to keep exports it does not have: {}", .0.join(", "))]
    Missing(Vec<String>),
}

/// One top-level section: its id, its contents, and all its bytes (id and size included).
struct Section<'a> {
    id: u8,
    body: &'a [u8],
    bytes: &'a [u8],
}

fn invalid(err: wasmparser::BinaryReaderError) -> StripError {
    StripError::Wasm(WasmError::Invalid(err.message().to_owned()))
}

fn sections(module: &[u8]) -> Result<Vec<Section<'_>>, StripError> {
    if module.len() < WASM_HEADER.len() || module[..WASM_HEADER.len()] != WASM_HEADER {
        return Err(WasmError::NotWasm.into());
    }
    let mut reader = BinaryReader::new(&module[WASM_HEADER.len()..], WASM_HEADER.len() as u64);
    let mut sections = Vec::new();
    while !reader.eof() {
        let start = WASM_HEADER.len() + reader.current_position();
        let id = reader.read_u8().map_err(invalid)?;
        let size = reader.read_var_u32().map_err(invalid)? as usize;
        let body = reader.read_bytes(size).map_err(invalid)?;
        let end = WASM_HEADER.len() + reader.current_position();
        sections.push(Section {
            id,
            body,
            bytes: &module[start..end],
        });
    }
    Ok(sections)
}

/// The name of a custom section, and its data.
fn custom(body: &[u8]) -> Result<(&str, &[u8]), StripError> {
    let mut reader = BinaryReader::new(body, 0);
    let name = reader.read_string().map_err(invalid)?;
    Ok((name, &body[reader.current_position()..]))
}

/// The names [`KEEP_SECTION`] lists (the linker concatenates sections of one name).
fn keep_list<'a>(sections: &[Section<'a>]) -> Result<BTreeSet<&'a str>, StripError> {
    let mut keep = None;
    for section in sections.iter().filter(|s| s.id == CUSTOM) {
        let (name, data) = custom(section.body)?;
        if name == KEEP_SECTION {
            let text = std::str::from_utf8(data).map_err(|_| {
                WasmError::Invalid(format!("the `{KEEP_SECTION}` section is not UTF-8"))
            })?;
            keep.get_or_insert_with(BTreeSet::new)
                .extend(text.lines().filter(|l| !l.is_empty()));
        }
    }
    keep.ok_or(StripError::NoKeepList)
}

pub(crate) fn leb(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The export section with only the kept entries, each copied as it was.
fn kept_exports<'a>(
    body: &[u8],
    keep: &BTreeSet<&'a str>,
    found: &mut BTreeSet<&'a str>,
) -> Result<Vec<u8>, StripError> {
    let mut reader = BinaryReader::new(body, 0);
    let count = reader.read_var_u32().map_err(invalid)?;
    let mut entries = Vec::new();
    let mut kept = 0;
    for _ in 0..count {
        let start = reader.current_position();
        let name = reader.read_string().map_err(invalid)?;
        reader.read_u8().map_err(invalid)?;
        reader.read_var_u32().map_err(invalid)?;
        if let Some(&name) = keep.get(name) {
            found.insert(name);
            entries.extend_from_slice(&body[start..reader.current_position()]);
            kept += 1;
        }
    }
    let mut section = Vec::with_capacity(entries.len() + 5);
    leb(kept, &mut section);
    section.extend_from_slice(&entries);
    Ok(section)
}

/// `module` without the exports its [`KEEP_SECTION`] does not list, and without that section.
/// Every other byte is kept as it was, so the same input always gives the same output. The
/// result is validated as [`inspect`] does; every listed export must exist.
pub fn strip_exports(module: &[u8]) -> Result<Vec<u8>, StripError> {
    let sections = sections(module)?;
    let keep = keep_list(&sections)?;
    let mut found = BTreeSet::new();
    let mut out = Vec::with_capacity(module.len());
    out.extend_from_slice(&WASM_HEADER);
    for section in &sections {
        match section.id {
            CUSTOM if custom(section.body)?.0 == KEEP_SECTION => {}
            EXPORT => {
                let body = kept_exports(section.body, &keep, &mut found)?;
                out.push(EXPORT);
                leb(body.len(), &mut out);
                out.extend_from_slice(&body);
            }
            _ => out.extend_from_slice(section.bytes),
        }
    }
    let missing: Vec<String> = keep.difference(&found).map(|s| (*s).to_owned()).collect();
    if !missing.is_empty() {
        return Err(StripError::Missing(missing));
    }
    inspect(out.as_slice())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_module::{custom_section, module_exporting};

    const SDK: [&str; 5] = [
        "proxy_abi_version_0_2_1",
        "proxy_on_memory_allocate",
        "proxy_on_request_headers",
        "proxy_on_request_body",
        "proxy_on_log",
    ];

    fn with_keep_list(mut module: Vec<u8>, list: &str) -> Vec<u8> {
        custom_section(KEEP_SECTION, list.as_bytes(), &mut module);
        module
    }

    #[test]
    fn only_the_listed_exports_stay_and_the_list_goes() {
        let module = with_keep_list(
            module_exporting(&SDK),
            "proxy_abi_version_0_2_1\nproxy_on_memory_allocate\nproxy_on_request_headers\n",
        );
        let stripped = strip_exports(&module).unwrap();
        let found = inspect(stripped.as_slice()).unwrap();
        assert_eq!(
            found.exports,
            [
                "proxy_abi_version_0_2_1",
                "proxy_on_memory_allocate",
                "proxy_on_request_headers"
            ]
        );
        assert_eq!(found.abi_version(), Ok("0.2.1"));
        let names: Vec<&str> = sections(&stripped)
            .unwrap()
            .iter()
            .filter(|s| s.id == CUSTOM)
            .map(|s| custom(s.body).unwrap().0)
            .collect();
        assert!(!names.contains(&KEEP_SECTION), "{names:?}");
        // Stripping what is already stripped fails: the list went with the first pass.
        assert_eq!(strip_exports(&stripped), Err(StripError::NoKeepList));
    }

    #[test]
    fn the_same_module_strips_to_the_same_bytes() {
        let module = with_keep_list(module_exporting(&SDK), "proxy_abi_version_0_2_1\n");
        assert_eq!(strip_exports(&module), strip_exports(&module));
    }

    #[test]
    fn lists_in_several_sections_add_up() {
        let module = with_keep_list(
            with_keep_list(module_exporting(&SDK), "proxy_abi_version_0_2_1\n"),
            "proxy_on_log\n",
        );
        let found = inspect(strip_exports(&module).unwrap().as_slice()).unwrap();
        assert_eq!(found.exports, ["proxy_abi_version_0_2_1", "proxy_on_log"]);
    }

    #[test]
    fn a_module_without_a_list_or_missing_a_listed_export_is_refused() {
        assert_eq!(
            strip_exports(&module_exporting(&SDK)),
            Err(StripError::NoKeepList)
        );
        let module = with_keep_list(
            module_exporting(&SDK),
            "proxy_abi_version_0_2_1\nproxy_on_tick\n",
        );
        assert_eq!(
            strip_exports(&module),
            Err(StripError::Missing(vec!["proxy_on_tick".into()]))
        );
    }

    #[test]
    fn other_bytes_are_refused() {
        assert_eq!(
            strip_exports(b"#!/bin/sh\n"),
            Err(StripError::Wasm(WasmError::NotWasm))
        );
        let module = with_keep_list(module_exporting(&SDK), "proxy_on_log\n");
        assert!(matches!(
            strip_exports(&module[..module.len() - 3]),
            Err(StripError::Wasm(WasmError::Invalid(_)))
        ));
    }
}
