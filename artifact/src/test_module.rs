//! Hand-built Wasm modules for tests (feature `test-module` for other crates' tests).

use std::io::Read;

/// The Wasm magic number and version 1.
pub use crate::wasm::WASM_HEADER as HEADER;

use crate::strip::leb;

fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len(), out);
    out.extend_from_slice(body);
}

/// A valid module exporting the given functions, each `() -> ()` doing nothing.
pub fn module_exporting(names: &[&str]) -> Vec<u8> {
    let mut module = HEADER.to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module);
    let mut functions = Vec::new();
    leb(names.len(), &mut functions);
    functions.extend(std::iter::repeat_n(0u8, names.len()));
    section(3, &functions, &mut module);
    let mut exports = Vec::new();
    leb(names.len(), &mut exports);
    for (index, name) in names.iter().enumerate() {
        leb(name.len(), &mut exports);
        exports.extend_from_slice(name.as_bytes());
        exports.push(0);
        leb(index, &mut exports);
    }
    section(7, &exports, &mut module);
    let mut code = Vec::new();
    leb(names.len(), &mut code);
    for _ in names {
        code.extend_from_slice(&[2, 0, 0x0b]);
    }
    section(10, &code, &mut module);
    module
}

/// Append a custom section `name` holding `data` to `module`.
pub fn custom_section(name: &str, data: &[u8], module: &mut Vec<u8>) {
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    section(0, &body, module);
}

/// A small valid proxy-wasm module; `tag` changes its bytes (and digest).
pub fn proxy_module(tag: &str) -> Vec<u8> {
    let mut module = module_exporting(&["proxy_abi_version_0_2_1", "proxy_on_memory_allocate"]);
    custom_section("tag", tag.as_bytes(), &mut module);
    module
}

/// A large valid proxy-wasm module produced on the fly: a small module followed by custom
/// sections of `piece` bytes each, `total` bytes in all (rounded up to whole pieces).
#[derive(Debug)]
pub struct LargeModule {
    pending: Vec<u8>,
    offset: usize,
    left: u64,
    piece: usize,
}

impl LargeModule {
    pub fn new(total: u64, piece: usize) -> LargeModule {
        let head = proxy_module("large");
        let left = total.saturating_sub(head.len() as u64);
        LargeModule {
            pending: head,
            offset: 0,
            left,
            piece,
        }
    }

    /// Its exact size.
    pub fn size(total: u64, piece: usize) -> u64 {
        let head = proxy_module("large").len() as u64;
        let pieces = total.saturating_sub(head).div_ceil(piece as u64);
        head + pieces * piece as u64
    }

    fn next_piece(&mut self) -> Vec<u8> {
        // id 0, size, name length 1, name "p", then zeros up to `piece` bytes in all.
        let mut header = vec![0u8];
        let mut body_len = self.piece - 2;
        loop {
            let mut size = Vec::new();
            leb(body_len, &mut size);
            if 1 + size.len() + body_len == self.piece {
                header.extend_from_slice(&size);
                break;
            }
            body_len -= 1;
        }
        let mut bytes = header;
        bytes.extend_from_slice(&[1, b'p']);
        bytes.resize(self.piece, 0);
        bytes
    }
}

impl Read for LargeModule {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.offset == self.pending.len() {
            if self.left == 0 {
                return Ok(0);
            }
            self.pending = self.next_piece();
            self.offset = 0;
            self.left = self.left.saturating_sub(self.piece as u64);
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}
