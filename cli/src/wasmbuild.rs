//! `wasmgate build`: the Wasm build `make wasm` runs (Cargo, then the unused exports
//! stripped), then optionally `wasm-opt`.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmgate_artifact::strip::strip_exports;

use crate::error::{Error, Result};
use crate::plugins::PLUGINS;

/// The Rust target every module is built for.
pub const WASM_TARGET: &str = "wasm32-wasip1";

/// Where the shipped modules are (`make wasm` and `wasmgate build` write them):
/// `$CARGO_TARGET_DIR/modules`, else `<workspace>/target/modules`.
pub fn module_dir(workspace: &Path) -> PathBuf {
    target_dir(workspace).join("modules")
}

/// Where Cargo writes the modules with the size profile (`[profile.wasm]`), before wasm-opt.
fn build_dir(workspace: &Path) -> PathBuf {
    target_dir(workspace).join(WASM_TARGET).join("wasm")
}

fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from)
}

/// The workspace root, found by Cargo from the current folder.
pub fn workspace_root() -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .output()
        .map_err(|e| Error::failed(format!("cannot run cargo: {e}")))?;
    if !out.status.success() {
        return Err(Error::failed(
            "not inside the Wasmgate workspace (cargo locate-project failed)",
        ));
    }
    let manifest = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(manifest.parent().map(Path::to_path_buf).unwrap_or_default())
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Build every module under `modules/` (one per plugin, and the combined module) with the
/// `wasm` profile for wasm32-wasip1, as `make wasm` does, and write them to [`module_dir`] with
/// only the exports their plugins use ([`strip_exports`]).
pub fn build(workspace: &Path) -> Result<Vec<PathBuf>> {
    let crates: Vec<String> = PLUGINS
        .iter()
        .map(|p| format!("{}-module", p.name))
        .chain(["wasmgate-all".to_owned()])
        .collect();
    let mut args = vec!["build", "--profile", "wasm", "--target", WASM_TARGET];
    for name in &crates {
        args.extend(["-p", name]);
    }
    run(workspace, &args)?;
    let (built, shipped) = (build_dir(workspace), module_dir(workspace));
    std::fs::create_dir_all(&shipped)
        .map_err(|e| Error::failed(format!("cannot create {}: {e}", shipped.display())))?;
    let stems = PLUGINS.iter().map(|p| p.module).chain(["wasmgate_all"]);
    let mut modules = Vec::new();
    for stem in stems {
        let file = format!("{stem}.wasm");
        let (from, to) = (built.join(&file), shipped.join(&file));
        if !from.is_file() {
            return Err(Error::failed(format!(
                "the build did not produce {}",
                from.display()
            )));
        }
        let built = std::fs::read(&from)
            .map_err(|e| Error::failed(format!("cannot read {}: {e}", from.display())))?;
        // The step `make wasm` runs too (wasmgate-strip), so both ship the same bytes.
        let stripped =
            strip_exports(&built).map_err(|e| Error::failed(format!("{}: {e}", from.display())))?;
        std::fs::write(&to, stripped)
            .map_err(|e| Error::failed(format!("cannot write {}: {e}", to.display())))?;
        modules.push(to);
    }
    Ok(modules)
}

fn run(workspace: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new(cargo())
        .args(args)
        .current_dir(workspace)
        .status()
        .map_err(|e| Error::failed(format!("cannot run cargo: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::failed(format!(
            "cargo {} failed ({status})",
            args.join(" ")
        )))
    }
}

/// `wasm-opt`'s arguments, the Makefile's `WASM_OPT` (a test keeps them equal): `-Oz` without
/// binaryen's inlining (`-aimfs`/`-fimfs`/`-ocimfs 0`: V8 compiles the functions it grows at
/// start-up, see the Makefile), and the Wasm features rustc enables by default for
/// wasm32-wasip1, which binaryen must accept (it refuses `memory.copy` and sign extension
/// otherwise). V8 in Envoy supports them all.
const WASM_OPT_ARGS: [&str; 14] = [
    "-Oz",
    "-aimfs",
    "0",
    "-fimfs",
    "0",
    "-ocimfs",
    "0",
    "--strip-debug",
    "--enable-bulk-memory",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-multivalue",
    "--enable-reference-types",
];

/// Shrink a module in place with binaryen's `wasm-opt -Oz`, keeping it a valid proxy-wasm
/// module. Returns (size before, size after).
pub fn wasm_opt(module: &Path) -> Result<(u64, u64)> {
    let before = size(module)?;
    let optimized = module.with_extension("opt.wasm");
    let out = Command::new("wasm-opt")
        .args(WASM_OPT_ARGS)
        .arg(module)
        .arg("-o")
        .arg(&optimized)
        .output()
        .map_err(|e| {
            Error::failed(format!(
                "cannot run wasm-opt: {e} (install Debian's binaryen: `make setup`)"
            ))
        })?;
    if !out.status.success() {
        // wasm-opt prints one line per offending instruction: the first few say enough.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first: Vec<&str> = stderr.lines().take(3).collect();
        return Err(Error::failed(format!(
            "wasm-opt {} failed: {}",
            module.display(),
            first.join("\n")
        )));
    }
    std::fs::rename(&optimized, module)
        .map_err(|e| Error::failed(format!("cannot replace {}: {e}", module.display())))?;
    Ok((before, size(module)?))
}

fn size(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| Error::failed(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wasmgate build --wasm-opt` ships the bytes `make wasm` does only with the same flags.
    #[test]
    fn wasm_opt_runs_with_the_makefiles_flags() {
        let makefile = include_str!("../../Makefile");
        let start = makefile.find("WASM_OPT     :=").unwrap();
        let mut command = String::new();
        for line in makefile[start..].lines() {
            command.push_str(line.trim_end_matches('\\'));
            command.push(' ');
            if !line.ends_with('\\') {
                break;
            }
        }
        let words: Vec<&str> = command.split_whitespace().skip(3).collect();
        assert_eq!(words, WASM_OPT_ARGS, "Makefile: {command}");
    }
}
