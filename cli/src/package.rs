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

/// `path` relative to the lock file's folder (with `..` where needed), so the lock file can
/// be committed and used from another checkout; absolute only when no relative path exists
/// (another drive on Windows).
fn relative_to(path: &Path, lock_path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect::<PathBuf>()
    };
    let path = absolute(path);
    let base = absolute(lock_path.parent().unwrap_or(Path::new(".")));
    let (to, from): (Vec<_>, Vec<_>) = (path.components().collect(), base.components().collect());
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    // Nothing in common but the root on a Unix system is still fine; a different prefix
    // (drive) is not.
    if common == 0 || from[common..].contains(&Component::ParentDir) {
        return path;
    }
    from[common..]
        .iter()
        .map(|_| Component::ParentDir)
        .chain(to[common..].iter().copied())
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(module: &str) -> LockEntry {
        LockEntry {
            version: "0.1.0".into(),
            root_id: "a".into(),
            module: PathBuf::from(module),
            sha256: None,
            size: 0,
            abi_version: "0.2.1".into(),
            url: None,
            oci: None,
        }
    }

    #[test]
    fn module_paths_are_relative_to_the_lock_file() {
        let cases = [
            (
                "/w/target/modules/a.wasm",
                "/w/wasmgate.lock.json",
                "target/modules/a.wasm",
            ),
            (
                "/w/target/modules/a.wasm",
                "/w/deploy/wasmgate.lock.json",
                "../target/modules/a.wasm",
            ),
            ("/w/a.wasm", "/x/y/wasmgate.lock.json", "../../w/a.wasm"),
            ("/w/./m/a.wasm", "/w/m/l.json", "a.wasm"),
        ];
        for (module, lock, wanted) in cases {
            assert_eq!(
                relative_to(Path::new(module), Path::new(lock)),
                Path::new(wanted)
            );
            // Resolved against the lock file's folder, it is the module again.
            let mut back = PathBuf::new();
            for part in module_path(&entry(wanted), Path::new(lock)).components() {
                match part {
                    std::path::Component::ParentDir => {
                        back.pop();
                    }
                    std::path::Component::CurDir => {}
                    other => back.push(other),
                }
            }
            assert_eq!(back, Path::new(&module.replace("/./", "/")));
        }
    }
}
