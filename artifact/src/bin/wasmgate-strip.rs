//! `wasmgate-strip IN OUT`: write module IN to OUT with only the exports its plugins use
//! ([`wasmgate_artifact::strip::strip_exports`]); `make wasm` runs it before `wasm-opt -Oz`.
//! `wasmgate build` calls the same function.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: wasmgate-strip IN.wasm OUT.wasm");
        return ExitCode::from(2);
    };
    let stripped = std::fs::read(input)
        .map_err(|e| format!("cannot read {input}: {e}"))
        .and_then(|module| {
            wasmgate_artifact::strip::strip_exports(&module).map_err(|e| format!("{input}: {e}"))
        })
        .and_then(|module| {
            std::fs::write(output, module).map_err(|e| format!("cannot write {output}: {e}"))
        });
    match stripped {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("wasmgate-strip: {why}");
            ExitCode::FAILURE
        }
    }
}
