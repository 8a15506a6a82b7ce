//! `wasmgate package`: digest and metadata of each built module into the lock file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::inspect::inspect_file;
use crate::lock::{Lock, LockEntry};
use crate::plugins::PluginInfo;

/// Record `plugins`' modules from `module_dir` at `version` in `lock`, whose file is
/// `lock_path`. An entry whose digest is unchanged keeps where it was published.
pub fn package(
    lock: &mut Lock,
    lock_path: &Path,
    module_dir: &Path,
    plugins: &[&PluginInfo],
    version: &str,
) -> Result<()> {
    for plugin in plugins {
        let path = module_dir.join(format!("{}.wasm", plugin.module));
        let report = inspect_file(&path)?;
        let abi_version = report.abi_version.clone().ok_or_else(|| {
            Error::failed(format!(
                "{}: exports no proxy_abi_version_*: not a proxy-wasm module",
                path.display()
            ))
        })?;
        let sha256 = report.sha256.hex();
        let previous = lock.plugins.get(plugin.name);
        let unchanged = previous
            .is_some_and(|p| p.sha256.as_deref() == Some(sha256.as_str()) && p.version == version);
        let entry = LockEntry {
            version: version.to_owned(),
            root_id: plugin.name.to_owned(),
            module: relative_to(&path, lock_path),
            sha256: Some(sha256),
            size: report.size,
            abi_version,
            url: previous.filter(|_| unchanged).and_then(|p| p.url.clone()),
            oci: previous.filter(|_| unchanged).and_then(|p| p.oci.clone()),
        };
        lock.plugins.insert(plugin.name.to_owned(), entry);
    }
    Ok(())
}

/// `path` relative to the lock file's folder when it lies under it, else absolute.
fn relative_to(path: &Path, lock_path: &Path) -> PathBuf {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let path = absolute(path);
    let base = absolute(lock_path.parent().unwrap_or(Path::new(".")));
    path.strip_prefix(&base)
        .map_or(path.clone(), Path::to_path_buf)
}

/// The module file of a lock entry, resolved against the lock file's folder.
pub fn module_path(entry: &LockEntry, lock_path: &Path) -> PathBuf {
    if entry.module.is_absolute() {
        entry.module.clone()
    } else {
        lock_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&entry.module)
    }
}
