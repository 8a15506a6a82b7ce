//! `wasmgate push`: each plugin of the lock file to a Wasmgate registry (module and config
//! schema) or to an OCI registry, every plugin on its own; the lock records the ones pushed.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{Error, Result};
use crate::lock::{Lock, LockEntry, OciPin};
use crate::plugins::{PluginInfo, PLUGINS};
use crate::registry::Registry;
use crate::{oci, package};

/// Where to push and what.
#[derive(Debug)]
pub struct PushRequest<'a> {
    /// The lock file: read for the modules, updated with the pushed plugins.
    pub lock: &'a Path,
    /// The plugins to push; none: every plugin of the lock file.
    pub plugins: Vec<&'static PluginInfo>,
    /// A Wasmgate registry to publish to.
    pub registry: Option<Registry>,
    /// Or an OCI registry to push images to.
    pub oci: Option<OciTarget>,
}

/// An OCI registry to push to.
#[derive(Debug, Clone)]
pub struct OciTarget {
    /// `host[:port]/path`: images go to `<prefix>/<plugin>:<version>`.
    pub prefix: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// A CA bundle the registry's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// Credentials (both or neither; neither: the Docker config file's).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Move a tag that points at another image.
    pub force: bool,
}

/// What a push did: a JSON row and a text line per plugin, and the error it ends with when a
/// plugin failed (the lock file is saved either way).
#[derive(Debug)]
pub struct Outcome {
    pub rows: Vec<serde_json::Value>,
    pub text: String,
    pub error: Option<Error>,
}

/// Push the plugins of `request`, each on its own, and record the pushed ones in the lock.
pub fn push(request: &PushRequest<'_>) -> Result<Outcome> {
    let lock_path = request.lock;
    let mut lock = Lock::load(lock_path)?;
    let selected: Vec<&PluginInfo> = if request.plugins.is_empty() {
        PLUGINS
            .iter()
            .filter(|p| lock.plugins.contains_key(p.name))
            .collect()
    } else {
        request.plugins.clone()
    };
    if selected.is_empty() {
        return Err(Error::failed(format!(
            "{}: no plugin to push (the lock file has none); run `wasmgate package` first",
            lock_path.display()
        )));
    }
    let mut rows = Vec::new();
    let mut text = String::new();
    let mut failed: Vec<(&str, Error)> = Vec::new();
    // Each plugin on its own: one that fails (a conflicting version, say) does not stop the
    // others, and the lock file records every one that went out.
    for plugin in selected {
        match push_plugin(request, &lock, lock_path, plugin) {
            Ok(Pushed { row, line, entry }) => {
                rows.push(row);
                text.push_str(&line);
                lock.plugins.insert(plugin.name.to_owned(), entry);
            }
            Err(err) => {
                text.push_str(&format!("{} FAILED: {err}\n", plugin.name));
                rows.push(json!({ "plugin": plugin.name, "error": err.to_string() }));
                failed.push((plugin.name, err));
            }
        }
    }
    lock.save(lock_path)?;
    let error = outcome_error(&mut failed, rows.len(), lock_path);
    Ok(Outcome { rows, text, error })
}

/// The error a push with failures ends with: one plugin pushed alone keeps its own error (and
/// exit code), several name every failure.
fn outcome_error(failed: &mut Vec<(&str, Error)>, total: usize, lock_path: &Path) -> Option<Error> {
    if total == 1 && failed.len() == 1 {
        if let Some((_, err)) = failed.pop() {
            return Some(err);
        }
    }
    match failed.as_slice() {
        [] => None,
        _ => {
            let details: Vec<String> = failed
                .iter()
                .map(|(name, err)| format!("{name}: {err}"))
                .collect();
            let message = format!(
                "{} of {} plugins not pushed ({}); {} records the ones that were",
                failed.len(),
                total,
                details.join("; "),
                lock_path.display()
            );
            Some(if failed.iter().all(|(_, e)| e.exit_code() == 2) {
                Error::usage(message)
            } else {
                Error::failed(message)
            })
        }
    }
}

/// What one plugin's push produced: its report row and line, and its updated lock entry.
#[derive(Debug)]
struct Pushed {
    row: serde_json::Value,
    line: String,
    entry: LockEntry,
}

/// Push one plugin's module to the registry or the OCI registry.
fn push_plugin(
    request: &PushRequest<'_>,
    lock: &Lock,
    lock_path: &Path,
    plugin: &PluginInfo,
) -> Result<Pushed> {
    let entry = lock.entry(plugin.name, lock_path)?.clone();
    let module_file = package::module_path(&entry, lock_path);
    let module = crate::error::read(&module_file)?;
    let sha256 = wasmgate_envoy::Digest::of(&module);
    if entry.sha256.as_deref() != Some(sha256.hex().as_str()) {
        return Err(Error::failed(format!(
            "{}: {} has sha256 {}, not the one in {}; run `wasmgate package` again",
            plugin.name,
            sha256.hex(),
            module_file.display(),
            lock_path.display()
        )));
    }
    let mut updated = entry.clone();
    let (row, line) = if let Some(registry) = &request.registry {
        let meta = registry.publish(
            plugin.name,
            &entry.version,
            module,
            &entry.root_id,
            plugin.summary,
        )?;
        if meta.sha256 != sha256 {
            return Err(Error::failed(format!(
                "{}: the registry stored sha256 {}, expected {}",
                plugin.name,
                meta.sha256.hex(),
                sha256.hex()
            )));
        }
        registry.publish_schema(plugin.name, &entry.version, &plugin.schema())?;
        let url = registry.module_url(plugin.name, &entry.version);
        let line = format!("{} {} -> {url}  {sha256}\n", plugin.name, entry.version);
        let row = json!({ "plugin": plugin.name, "version": entry.version, "url": url, "sha256": sha256.hex() });
        updated.url = Some(url);
        (row, line)
    } else if let Some(target) = &request.oci {
        let prefix = &target.prefix;
        let reference = oci::Reference::parse(
            &format!(
                "{}/{}:{}",
                prefix.trim_end_matches('/'),
                plugin.name,
                entry.version
            ),
            &entry.version,
        )?;
        let image = oci::image(&module, plugin.name, &entry.version)?;
        let credentials = match (&target.username, &target.password) {
            (Some(username), Some(password)) => Some(oci::Credentials {
                username: username.clone(),
                password: password.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(Error::usage(
                    "--username and --password go together (or neither: the Docker config file's credentials are used)",
                ))
            }
        };
        let pushed = oci::push(
            &image,
            &reference,
            &oci::PushOptions {
                plain_http: target.plain_http,
                ca_file: target.ca_file.clone(),
                credentials,
                docker_config: None,
                force: target.force,
            },
        )?;
        let digest = pushed.digest;
        let note = match (&pushed.moved_from, pushed.unchanged) {
            (_, true) => "  (already there)".to_owned(),
            (Some(from), _) => format!("  (tag moved from {from})"),
            (None, false) => String::new(),
        };
        let line = format!(
            "{} {} -> oci://{}  manifest {digest}{note}\n",
            plugin.name,
            entry.version,
            reference.display()
        );
        let row = json!({
            "plugin": plugin.name, "version": entry.version,
            "oci": reference.display(), "manifest_digest": digest.to_string(),
            "layer_digest": image.layer_digest().to_string(),
            "unchanged": pushed.unchanged, "moved_from": pushed.moved_from,
        });
        updated.oci = Some(OciPin {
            reference: reference.display(),
            manifest_digest: digest.to_string(),
        });
        (row, line)
    } else {
        return Err(Error::usage("push needs --registry or --oci"));
    };
    Ok(Pushed {
        row,
        line,
        entry: updated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lock: &Path) -> PushRequest<'_> {
        PushRequest {
            lock,
            plugins: Vec::new(),
            registry: None,
            oci: None,
        }
    }

    #[test]
    fn an_empty_lock_has_nothing_to_push() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("wasmgate.lock");
        Lock::default().save(&lock).unwrap();
        let err = push(&request(&lock)).unwrap_err();
        assert!(err.to_string().contains("no plugin to push"), "{err}");
    }

    #[test]
    fn each_plugin_fails_on_its_own_and_the_outcome_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let lock_path = dir.path().join("wasmgate.lock");
        let module = dir.path().join("m.wasm");
        std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
        let entry = LockEntry {
            version: "1.0.0".into(),
            root_id: "r".into(),
            module: "m.wasm".into(),
            sha256: Some(wasmgate_envoy::Digest::of(b"\0asm\x01\0\0\0").hex()),
            size: 8,
            abi_version: "0.2.1".into(),
            url: None,
            oci: None,
        };
        let mut lock = Lock::default();
        for plugin in PLUGINS.iter().take(2) {
            lock.plugins.insert(plugin.name.to_owned(), entry.clone());
        }
        lock.save(&lock_path).unwrap();
        // Neither a registry nor an OCI target: every plugin fails with a usage error.
        let outcome = push(&request(&lock_path)).unwrap();
        assert_eq!(outcome.rows.len(), 2);
        assert!(outcome.rows.iter().all(|row| row["error"].is_string()));
        let error = outcome.error.unwrap();
        assert_eq!(error.exit_code(), 2);
        assert!(
            error.to_string().contains("2 of 2 plugins not pushed"),
            "{error}"
        );
    }
}
