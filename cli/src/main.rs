//! `wasmgate`: parses the command line, runs one `cmd_*`, reports errors and sets the exit
//! code (0 ok, 1 failure, 2 usage).

mod cli;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Parser as _;
use serde_json::json;
use wasmgate::error::{write, Error, Result};
use wasmgate::lock::Lock;
use wasmgate::pluginconfig::{configure, Configured};
use wasmgate::render::{self, CodeFrom, IstioKind, Resolved, Source, Warning};
use wasmgate::{inspect, package, plugins, push, registry, wasmbuild};

use crate::cli::{Cli, Command, CommonRenderArgs, Output, RenderTarget};

/// `--output json` among raw arguments that clap could not parse.
fn json_requested(args: &[String]) -> bool {
    args.iter().any(|a| a == "--output=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--output" && w[1] == "json")
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            let args: Vec<String> = std::env::args().collect();
            let asked = matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            );
            if asked || !json_requested(&args) {
                err.exit();
            }
            // An argument error is an error like any other for a machine reading JSON.
            let usage = err.render().to_string();
            let message = usage
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned();
            eprintln!(
                "{}",
                json!({ "error": { "message": message, "usage": usage, "exit_code": 2 } })
            );
            std::process::exit(2);
        }
    };
    // The registry and the rate-limit service log through `tracing`: their requests and
    // lifecycle under `serve` and `ratelimit`, only trouble otherwise.
    let default_filter = match cli.command {
        Command::Serve(_) | Command::Ratelimit(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let output = cli.output;
    let result = match cli.command {
        Command::Build(args) => cmd_build(&args, output),
        Command::Package(args) => cmd_package(&args, output),
        Command::Inspect(args) => cmd_inspect(&args, output),
        Command::Schema(args) => cmd_schema(&args),
        Command::Serve(args) => cmd_serve(&args),
        Command::Push(args) => cmd_push(&args, output),
        Command::Render(args) => cmd_render(&args.target, output),
        Command::Examples(args) => cmd_examples(&args, output),
        Command::Demo(args) => cmd_demo(&args),
        Command::Ratelimit(args) => cmd_ratelimit(&args),
    };
    if let Err(err) = result {
        match output {
            Output::Text => eprintln!("wasmgate: error: {err}"),
            Output::Json => eprintln!(
                "{}",
                json!({ "error": { "message": err.to_string(), "exit_code": err.exit_code() } })
            ),
        }
        std::process::exit(err.exit_code());
    }
}

/// Print a result: JSON for machines, the text for people.
fn report(output: Output, value: &serde_json::Value, text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = match output {
        Output::Json => writeln!(stdout, "{value}"),
        Output::Text => write!(stdout, "{text}"),
    };
}

fn warn(output: Output, warnings: &[Warning]) {
    for warning in warnings {
        match output {
            Output::Text => eprintln!("wasmgate: warning: {}: {}", warning.plugin, warning.message),
            Output::Json => eprintln!("{}", json!({ "warning": warning })),
        }
    }
}

fn cmd_build(args: &cli::BuildArgs, output: Output) -> Result<()> {
    let root = wasmbuild::workspace_root()?;
    let modules = wasmbuild::build(&root)?;
    let mut rows = Vec::new();
    let mut text = String::new();
    for module in &modules {
        let (before, after) = if args.wasm_opt {
            wasmbuild::wasm_opt(module)?
        } else {
            let size = std::fs::metadata(module).map(|m| m.len()).unwrap_or(0);
            (size, size)
        };
        text.push_str(&format!("{}  {after} bytes", module.display()));
        if args.wasm_opt {
            text.push_str(&format!(" (wasm-opt: {before} -> {after})"));
        }
        text.push('\n');
        rows.push(json!({ "module": module, "size": after, "size_before_wasm_opt": before }));
    }
    report(output, &json!({ "modules": rows }), &text);
    Ok(())
}

fn cmd_package(args: &cli::PackageArgs, output: Output) -> Result<()> {
    let selected = select_plugins(&args.plugins)?;
    let dir = match &args.modules {
        Some(dir) => dir.clone(),
        None => wasmbuild::module_dir(&wasmbuild::workspace_root()?),
    };
    let version = args
        .module_version
        .clone()
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
    let mut lock = Lock::load_or_default(&args.lock.lock)?;
    package::package(&mut lock, &args.lock.lock, &dir, &selected, &version)?;
    lock.save(&args.lock.lock)?;
    let mut text = String::new();
    for plugin in &selected {
        if let Some(entry) = lock.plugins.get(plugin.name) {
            text.push_str(&format!(
                "{} {}  sha256:{}  {} bytes  abi {}\n",
                plugin.name,
                entry.version,
                entry.sha256.as_deref().unwrap_or("-"),
                entry.size,
                entry.abi_version
            ));
        }
    }
    text.push_str(&format!("wrote {}\n", args.lock.lock.display()));
    report(
        output,
        &json!({ "lock": args.lock.lock, "plugins": lock.plugins }),
        &text,
    );
    Ok(())
}

fn select_plugins(names: &[String]) -> Result<Vec<&'static plugins::PluginInfo>> {
    if names.is_empty() {
        return Ok(plugins::PLUGINS.iter().collect());
    }
    names.iter().map(|n| plugins::find(n)).collect()
}

fn cmd_inspect(args: &cli::InspectArgs, output: Output) -> Result<()> {
    let reports = args
        .modules
        .iter()
        .map(|m| inspect::inspect_file(m))
        .collect::<Result<Vec<_>>>()?;
    let mut text = String::new();
    for r in &reports {
        text.push_str(&format!(
            "{}\n  sha256       {}\n  size         {} bytes\n  abi version  {}\n  exports      {}\n",
            r.path,
            r.sha256.hex(),
            r.size,
            r.abi_version.as_deref().unwrap_or("none (not a proxy-wasm module)"),
            r.exports.join(", ")
        ));
    }
    let value = match reports.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    report(output, &value, &text);
    Ok(())
}

fn cmd_schema(args: &cli::SchemaArgs) -> Result<()> {
    let plugin = plugins::find(&args.plugin)?;
    let text = serde_json::to_string_pretty(&plugin.schema())
        .map_err(|e| Error::failed(format!("cannot encode the schema: {e}")))?;
    println!("{text}");
    Ok(())
}

fn cmd_serve(args: &cli::ServeArgs) -> Result<()> {
    let config = args
        .registry
        .clone()
        .config()
        .map_err(|e| Error::failed(format!("registry: {e}")))?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Error::failed(format!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(wasmgate_registry::serve(config))
        .map_err(|e| Error::failed(format!("registry: {e}")))
}

fn cmd_ratelimit(args: &cli::RatelimitArgs) -> Result<()> {
    wasmgate_ratelimit::run(&args.options).map_err(|e| Error::failed(format!("ratelimit: {e}")))
}

fn cmd_push(args: &cli::PushArgs, output: Output) -> Result<()> {
    let registry = match &args.registry {
        Some(url) => Some(registry::Registry::new(url, args.token.clone())?),
        None => None,
    };
    let plugins = if args.plugins.is_empty() {
        Vec::new()
    } else {
        select_plugins(&args.plugins)?
    };
    let oci = args.oci.as_ref().map(|prefix| push::OciTarget {
        prefix: prefix.clone(),
        plain_http: args.plain_http,
        ca_file: args.ca_file.clone(),
        username: args.username.clone(),
        password: args.password.clone(),
        force: args.force,
    });
    let outcome = push::push(&push::PushRequest {
        lock: &args.lock.lock,
        plugins,
        registry,
        oci,
    })?;
    report(output, &json!({ "pushed": outcome.rows }), &outcome.text);
    outcome.error.map_or(Ok(()), Err)
}

/// Configure the plugins and pin their modules from the registry or the lock file.
fn resolve(common: &CommonRenderArgs) -> Result<Vec<Resolved>> {
    let configured = common
        .plugins
        .iter()
        .map(configure)
        .collect::<Result<Vec<Configured>>>()?;
    match &common.registry {
        Some(url) => {
            let registry = registry::Registry::new(url, common.token.clone())?;
            render::resolve(Source::Registry(&registry), configured)
        }
        None => {
            let lock = Lock::load(&common.lock.lock)?;
            render::resolve(
                Source::Lock {
                    lock: &lock,
                    path: &common.lock.lock,
                },
                configured,
            )
        }
    }
}

fn emit(common: &CommonRenderArgs, text: &str) -> Result<()> {
    match &common.out {
        Some(path) => write(path, text.as_bytes()),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn format(common: &CommonRenderArgs) -> render::Format {
    match common.format {
        cli::Format::Yaml => render::Format::Yaml,
        cli::Format::Json => render::Format::Json,
    }
}

/// `--jwks-ca-file [CLUSTER=]PATH` and `--insecure-jwks-tls`; `check_files` when the
/// bootstrap runs on this machine, so a CA file can be checked here.
fn jwks_tls(args: &cli::JwksTlsArgs, check_files: bool) -> render::JwksTls {
    let mut tls = render::JwksTls {
        insecure: args.insecure_jwks_tls,
        check_files,
        ..render::JwksTls::default()
    };
    for value in &args.ca_files {
        // A path may hold `=`, a cluster name never holds `/`.
        match value.split_once('=') {
            Some((cluster, path)) if !cluster.is_empty() && !cluster.contains('/') => {
                tls.cluster_ca_files
                    .insert(cluster.to_owned(), PathBuf::from(path));
            }
            _ => tls.ca_file = Some(PathBuf::from(value)),
        }
    }
    tls
}

/// `--jwks-ca-secret [CLUSTER=]SECRET` values: by cluster, `None` for every cluster.
fn ca_secrets(values: &[String]) -> BTreeMap<Option<String>, String> {
    values
        .iter()
        .map(|value| match value.split_once('=') {
            Some((cluster, secret)) => (Some(cluster.to_owned()), secret.to_owned()),
            None => (None, value.clone()),
        })
        .collect()
}

fn cmd_render(target: &RenderTarget, output: Output) -> Result<()> {
    match target {
        RenderTarget::Envoy(args) => {
            let plugins = resolve(&args.common)?;
            let (bootstrap, warnings) = render::envoy(
                &plugins,
                &render::EnvoyOptions {
                    listen: args.listen,
                    admin: Some(args.admin),
                    upstream: args.upstream.clone(),
                    code: if args.local {
                        CodeFrom::Local
                    } else {
                        CodeFrom::Remote
                    },
                    clusters: args.clusters.clone(),
                    jwks_tls: jwks_tls(&args.jwks_tls, true),
                },
            )?;
            warn(output, &warnings);
            emit(
                &args.common,
                &render::encode(&[bootstrap], format(&args.common))?,
            )
        }
        RenderTarget::Wasmplugin(args) | RenderTarget::Trafficextension(args) => {
            let kind = match target {
                RenderTarget::Wasmplugin(_) => IstioKind::WasmPlugin,
                _ => IstioKind::TrafficExtension,
            };
            let plugins = resolve(&args.common)?;
            let (documents, warnings) = render::istio(
                kind,
                &plugins,
                &render::IstioOptions {
                    namespace: args.namespace.clone(),
                    selector: render::selector(&args.selector)?,
                    target_refs: args.target_refs.clone(),
                    traffic: args.traffic.clone(),
                    phase: args.phase,
                    priority: args.priority,
                    fail_strategy: args.fail_strategy,
                    image_pull_policy: args.image_pull_policy,
                    image_pull_secret: args.image_pull_secret.clone(),
                    env: args.env.clone(),
                    oci: args.oci,
                    clusters: args.mesh.clusters.clone(),
                    jwks_tls: jwks_tls(&args.mesh.jwks_tls, false),
                    ca_secrets: ca_secrets(&args.mesh.ca_secrets),
                },
            )?;
            warn(output, &warnings);
            emit(
                &args.common,
                &render::encode(&documents, format(&args.common))?,
            )
        }
        RenderTarget::Envoyfilter(args) => {
            let plugins = resolve(&args.common)?;
            let (documents, warnings) = render::envoy_filter(
                &plugins,
                &render::EnvoyFilterOptions {
                    name: args.name.clone(),
                    namespace: args.namespace.clone(),
                    selector: render::selector(&args.selector)?,
                    context: args.context,
                    jwks_tls: jwks_tls(&args.mesh.jwks_tls, false),
                    clusters: args.mesh.clusters.clone(),
                    ca_secrets: ca_secrets(&args.mesh.ca_secrets),
                    delivery: if args.inline {
                        wasmgate_istio::Delivery::Inline
                    } else {
                        wasmgate_istio::Delivery::Ecds {
                            image_pull_secret: args.image_pull_secret.clone(),
                            image_pull_policy: args.image_pull_policy,
                        }
                    },
                    oci: args.oci,
                    priority: args.priority,
                    target_refs: args.target_refs.clone(),
                    fail_strategy: args.fail_strategy,
                },
            )?;
            warn(output, &warnings);
            emit(
                &args.common,
                &render::encode(&documents, format(&args.common))?,
            )
        }
    }
}

fn cmd_examples(args: &cli::ExamplesArgs, output: Output) -> Result<()> {
    let root: PathBuf = match &args.root {
        Some(root) => root.clone(),
        None => wasmbuild::workspace_root()?,
    };
    warn(output, &wasmgate::examples::warnings()?);
    if args.check {
        let stale = wasmgate::examples::check(&root)?;
        if stale.is_empty() {
            report(output, &json!({ "stale": [] }), "examples are up to date\n");
            return Ok(());
        }
        let names: Vec<String> = stale.iter().map(|p| p.display().to_string()).collect();
        report(output, &json!({ "stale": names }), "");
        return Err(Error::failed(format!(
            "stale generated examples (run `wasmgate examples` to regenerate): {}",
            names.join(", ")
        )));
    }
    let written = wasmgate::examples::write_all(&root)?;
    let text: String = written
        .iter()
        .map(|p| format!("wrote {}\n", p.display()))
        .collect();
    report(output, &json!({ "written": written }), &text);
    Ok(())
}

fn cmd_demo(args: &cli::DemoArgs) -> Result<()> {
    let root = wasmbuild::workspace_root();
    let modules = match &args.modules {
        Some(dir) => dir.clone(),
        None => wasmbuild::module_dir(&root.clone()?),
    };
    let envoy = args
        .envoy
        .clone()
        .unwrap_or_else(|| wasmgate_envoy::find_binary(root.as_deref().unwrap_or(Path::new("."))));
    wasmgate::demo::run(&wasmgate::demo::Options {
        listen: args.listen,
        admin: args.admin,
        global: [args.global_a, args.global_b],
        modules,
        envoy,
    })
}
