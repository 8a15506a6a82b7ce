//! The command line: every clap type, with `///` docs as `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wasmgate::pluginconfig::PluginArg;
use wasmgate_istio::{EnvVar, FailStrategy, PatchContext, Phase, PullPolicy, TargetRef};

/// Wasmgate: build, package and publish proxy-wasm plugins, and render Envoy and Istio
/// configurations pinned by sha256.
///
/// Exit codes: 0 success, 1 failure, 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "wasmgate", version)]
pub struct Cli {
    /// How results and errors are reported: `text` for people, `json` for machines.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    #[command(subcommand)]
    pub command: Command,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build every module (one per plugin, and the combined module) for wasm32-wasip1 into
    /// target/modules, keeping only the exports its plugins use; with --wasm-opt shrunk by
    /// binaryen's wasm-opt, as `make wasm` does.
    Build(BuildArgs),
    /// Record each built module's sha256, size and ABI version in the lock file.
    Package(PackageArgs),
    /// Show a module's sha256, size, proxy-wasm ABI version and exports.
    Inspect(InspectArgs),
    /// Print the JSON Schema of a plugin's configuration, derived from its config types.
    Schema(SchemaArgs),
    /// Run the Wasmgate module registry.
    Serve(ServeArgs),
    /// Publish modules to a Wasmgate registry (with their config schema) or to any OCI
    /// registry as images Istio can pull; records where in the lock file.
    Push(PushArgs),
    /// Render a configuration pinned by sha256: an Envoy bootstrap or an Istio manifest.
    Render(RenderArgs),
    /// Regenerate the checked-in examples under istio/examples and envoy/examples, or with
    /// --check fail when they are stale.
    Examples(ExamplesArgs),
    /// Run the demo: registry, the three plugins published and fetched by Envoy with sha256,
    /// and curl commands to try them. Ctrl-C stops everything.
    Demo(DemoArgs),
    /// Run the rate-limit service for Envoy's native rate-limit filter (RLS over gRPC), with
    /// counters in Redis or in memory; `--check` only checks the limits files.
    #[command(long_about = wasmgate_ratelimit::ABOUT)]
    Ratelimit(RatelimitArgs),
}

/// `wasmgate build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Run `wasm-opt -Oz` on every module after the build (binaryen).
    #[arg(long)]
    pub wasm_opt: bool,
}

/// `wasmgate package`.
#[derive(Debug, Args)]
pub struct PackageArgs {
    /// Plugins to package; all of them when none is given.
    #[arg(value_name = "PLUGIN")]
    pub plugins: Vec<String>,
    /// Folder holding the built modules [default: the workspace's target/modules].
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
    /// The version to record [default: the workspace's version].
    #[arg(long = "version", value_name = "VERSION")]
    pub module_version: Option<String>,
    #[command(flatten)]
    pub lock: LockArg,
}

/// The lock file option.
#[derive(Debug, Args)]
pub struct LockArg {
    /// The lock file.
    #[arg(long, value_name = "FILE", default_value = wasmgate::lock::LOCK_FILE)]
    pub lock: PathBuf,
}

/// `wasmgate inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The `.wasm` files.
    #[arg(required = true, value_name = "MODULE")]
    pub modules: Vec<PathBuf>,
}

/// `wasmgate schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The plugin: jwt-auth, rate-limit or header-rewrite.
    pub plugin: String,
}

/// `wasmgate ratelimit`: the service's own flags, shared with the `wasmgate-ratelimit` binary.
#[derive(Debug, Args)]
pub struct RatelimitArgs {
    #[command(flatten)]
    pub options: wasmgate_ratelimit::Options,
}

/// `wasmgate serve`: the same flags and `WASMGATE_REGISTRY_*` variables as `wasmgate-registry`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub registry: wasmgate_registry::Args,
}

/// `wasmgate push`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("destination").required(true).args(["registry", "oci"]))]
pub struct PushArgs {
    /// Plugins to push, as packaged in the lock file; all of them when none is given.
    #[arg(value_name = "PLUGIN")]
    pub plugins: Vec<String>,
    /// A Wasmgate registry: `http://127.0.0.1:8787`.
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// Publish token for --registry.
    #[arg(long, env = "WASMGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An OCI registry and repository prefix: `127.0.0.1:5000/wasmgate` pushes
    /// `127.0.0.1:5000/wasmgate/<plugin>:<version>`.
    #[arg(long, value_name = "HOST/PREFIX")]
    pub oci: Option<String>,
    /// Talk plain HTTP to the OCI registry (one on this machine); HTTPS otherwise, verified
    /// against the system CA store and --ca-file.
    #[arg(long, requires = "oci")]
    pub plain_http: bool,
    /// More CA certificates (PEM) to trust for the OCI registry, besides the system store.
    #[arg(
        long,
        requires = "oci",
        value_name = "FILE",
        conflicts_with = "plain_http"
    )]
    pub ca_file: Option<PathBuf>,
    /// OCI registry user (Basic, or for the token flow). Without --username and --password,
    /// the credentials `docker login` stored ($DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json, credential helpers included) are used.
    #[arg(long, requires = "oci", env = "WASMGATE_OCI_USERNAME")]
    pub username: Option<String>,
    /// OCI registry password or access token.
    #[arg(
        long,
        requires = "oci",
        env = "WASMGATE_OCI_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Move a tag that already holds another image (refused without it).
    #[arg(long, requires = "oci")]
    pub force: bool,
    #[command(flatten)]
    pub lock: LockArg,
}

/// `wasmgate render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(subcommand)]
    pub target: RenderTarget,
}

/// What to render.
#[derive(Debug, Subcommand)]
pub enum RenderTarget {
    /// A complete Envoy static bootstrap: listener, the plugins in order, router, and
    /// clusters for the registry, JWKS issuers and the upstream.
    Envoy(EnvoyArgs),
    /// One Istio WasmPlugin (extensions.istio.io/v1alpha1) per plugin.
    Wasmplugin(IstioArgs),
    /// One Istio TrafficExtension (extensions.istio.io/v1alpha1, Istio 1.30+) per plugin.
    Trafficextension(IstioArgs),
    /// One Istio EnvoyFilter (networking.istio.io/v1alpha3) inserting the plugins in order
    /// before the router, with code fetched over HTTP with sha256, and the registry cluster.
    Envoyfilter(EnvoyFilterArgs),
}

/// Which plugins, where their modules come from, and where the output goes.
#[derive(Debug, Args)]
pub struct CommonRenderArgs {
    /// A plugin, in chain order: `NAME[@VERSION][=CONFIG]`, CONFIG a YAML or JSON
    /// pluginConfig file validated by the plugin's own config types. Repeat for more.
    #[arg(
        long = "plugin",
        required = true,
        value_name = "NAME[@VERSION][=CONFIG]"
    )]
    pub plugins: Vec<PluginArg>,
    /// Pin modules from this Wasmgate registry (its sha256 and download URL) instead of the
    /// lock file.
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// Read token for --registry, when it requires one.
    #[arg(long, env = "WASMGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub lock: LockArg,
    /// Write here instead of standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Manifest encoding.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
}

/// Manifest encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

/// `wasmgate render envoy`.
#[derive(Debug, Args)]
pub struct EnvoyArgs {
    #[command(flatten)]
    pub common: CommonRenderArgs,
    /// Where the listener accepts requests.
    #[arg(long, default_value = "127.0.0.1:10000")]
    pub listen: SocketAddr,
    /// Where the admin interface listens.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// Where requests go: `http://host:port`.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8000", value_parser = parse_url)]
    pub upstream: String,
    /// Load modules from the files in the lock file instead of fetching them from the
    /// registry with sha256.
    #[arg(long)]
    pub local: bool,
    /// One more cluster: `NAME=URL`. JWKS clusters named in a pluginConfig are added
    /// without it; one given here replaces the derived cluster of the same name. A
    /// `grpc://HOST:PORT` (or `grpcs://`) URL makes an HTTP/2 cluster, as rate-limit's
    /// `rate_limit_service.cluster` needs.
    #[arg(long = "cluster", value_name = "NAME=URL", value_parser = parse_cluster)]
    pub clusters: Vec<(String, String)>,
    #[command(flatten)]
    pub jwks_tls: JwksTlsArgs,
}

/// How `https` JWKS clusters check the issuer's server.
#[derive(Debug, Args)]
pub struct JwksTlsArgs {
    /// CA bundle (PEM) the JWKS server's certificate must chain to: `PATH` for every https
    /// JWKS cluster, `CLUSTER=PATH` for one. Repeat for more. The certificate must also name
    /// the URI's host [default: /etc/ssl/certs/ca-certificates.crt].
    #[arg(long = "jwks-ca-file", value_name = "[CLUSTER=]PATH")]
    pub ca_files: Vec<String>,
    /// Do not check the JWKS server's certificate at all. Anyone on the path can then swap
    /// the keys and mint tokens that pass: for a test server with a self-signed certificate
    /// only.
    #[arg(long, conflicts_with = "ca_files")]
    pub insecure_jwks_tls: bool,
}

fn parse_cluster(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => {
            if !url.contains("://") {
                return Err(format!(
                    "{text:?}: the URL has no scheme; expected NAME=http://host:port (or grpc://host:port)"
                ));
            }
            Ok((name.to_owned(), url.to_owned()))
        }
        _ => Err(format!("{text:?}: expected NAME=URL")),
    }
}

fn parse_url(text: &str) -> Result<String, String> {
    wasmgate::error::check_url_scheme("URL", text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

/// Istio options shared by WasmPlugin and TrafficExtension.
#[derive(Debug, Args)]
pub struct IstioArgs {
    #[command(flatten)]
    pub common: CommonRenderArgs,
    /// metadata.namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// selector.matchLabels entry: `app=api`. Repeat for more. Not with --target-ref.
    #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub selector: Vec<(String, String)>,
    /// targetRefs entry: `Kind/name` or `group/Kind/name`. Not with --selector.
    #[arg(
        long = "target-ref",
        value_name = "[GROUP/]KIND/NAME",
        conflicts_with = "selector"
    )]
    pub target_refs: Vec<TargetRef>,
    /// match entry: `MODE` or `MODE:PORT[,PORT…]`, MODE one of CLIENT, SERVER,
    /// CLIENT_AND_SERVER.
    #[arg(long = "match", value_name = "MODE[:PORTS]", value_parser = parse_traffic)]
    pub traffic: Vec<wasmgate_istio::TrafficSelector>,
    /// phase: AUTHN, AUTHZ or STATS [default: per plugin: jwt-auth AUTHN, rate-limit AUTHZ,
    /// header-rewrite unset].
    #[arg(long)]
    pub phase: Option<Phase>,
    /// priority within the phase (higher runs first).
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// failStrategy: FAIL_CLOSE, FAIL_OPEN or FAIL_RELOAD.
    #[arg(long)]
    pub fail_strategy: Option<FailStrategy>,
    /// imagePullPolicy: IfNotPresent or Always.
    #[arg(long)]
    pub image_pull_policy: Option<PullPolicy>,
    /// imagePullSecret: a Secret in the same namespace.
    #[arg(long)]
    pub image_pull_secret: Option<String>,
    /// vmConfig.env entry: `NAME=value` (inline) or `NAME` (the proxy's own variable).
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<EnvVar>,
    /// Reference the module's OCI image (`oci://`, pinned by its manifest digest) instead of
    /// the HTTP download.
    #[arg(long)]
    pub oci: bool,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

/// How a plugin's callouts reach their services in the mesh: through Istio's
/// `outbound|PORT||HOST` clusters, declared by the ServiceEntry (and for https the
/// DestinationRule) rendered with the plugins.
#[derive(Debug, Args)]
pub struct MeshArgs {
    /// Where a gRPC service a pluginConfig names is: `NAME=grpc://HOST:PORT` (rate-limit's
    /// `rate_limit_service.cluster`). The cluster becomes `outbound|PORT||HOST` and a
    /// ServiceEntry (protocol GRPC) is written for HOST.
    #[arg(long = "cluster", value_name = "NAME=URL", value_parser = parse_cluster)]
    pub clusters: Vec<(String, String)>,
    #[command(flatten)]
    pub jwks_tls: JwksTlsArgs,
    /// A Secret holding the CA that https JWKS servers' certificates must chain to
    /// (DestinationRule `credentialName`), instead of a CA file in the proxy: `SECRET` for
    /// every https JWKS cluster, `CLUSTER=SECRET` for one.
    #[arg(long = "jwks-ca-secret", value_name = "[CLUSTER=]SECRET")]
    pub ca_secrets: Vec<String>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?}: expected KEY=VALUE")),
    }
}

fn parse_traffic(text: &str) -> Result<wasmgate_istio::TrafficSelector, String> {
    let (mode, ports) = match text.split_once(':') {
        Some((mode, ports)) => (mode, Some(ports)),
        None => (text, None),
    };
    let ports = match ports {
        Some(ports) => ports
            .split(',')
            .map(|p| {
                p.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=65535).contains(n))
                    .map(|number| wasmgate_istio::PortSelector { number })
                    .ok_or_else(|| format!("{text:?}: port {p:?} is not 1-65535"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    Ok(wasmgate_istio::TrafficSelector {
        mode: Some(mode.parse()?),
        ports,
    })
}

/// `wasmgate render envoyfilter`.
#[derive(Debug, Args)]
pub struct EnvoyFilterArgs {
    #[command(flatten)]
    pub common: CommonRenderArgs,
    /// metadata.name.
    #[arg(long, default_value = "wasmgate")]
    pub name: String,
    /// metadata.namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// workloadSelector.labels entry: `app=api`. Repeat for more.
    #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub selector: Vec<(String, String)>,
    /// Which listeners get the plugins: SIDECAR_INBOUND, SIDECAR_OUTBOUND or GATEWAY.
    #[arg(long, default_value = "SIDECAR_INBOUND")]
    pub context: PatchContext,
    /// targetRefs entry: `Gateway/NAME` or `GatewayClass/NAME` (Gateway API). Not with
    /// --selector.
    #[arg(
        long = "target-ref",
        value_name = "[GROUP/]KIND/NAME",
        conflicts_with = "selector"
    )]
    pub target_refs: Vec<TargetRef>,
    /// spec.priority: the order Istio applies EnvoyFilters in (lower first). The plugins
    /// run in the order of the --plugin flags.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Each plugin's failure_policy: FAIL_CLOSE (the default), FAIL_OPEN or FAIL_RELOAD.
    #[arg(long)]
    pub fail_strategy: Option<FailStrategy>,
    /// The Wasm filters inline, code fetched by Envoy through a registry cluster the
    /// EnvoyFilter adds, instead of Istio's ECDS form (EXTENSION_CONFIG + config_discovery,
    /// code fetched by istio-agent).
    #[arg(long)]
    pub inline: bool,
    /// ECDS form: reference the module's OCI image (`oci://`, pinned by its manifest digest)
    /// instead of the HTTP download.
    #[arg(long, conflicts_with = "inline")]
    pub oci: bool,
    /// ECDS form: a Secret with the registry's credentials, for istio-agent.
    #[arg(long, conflicts_with = "inline")]
    pub image_pull_secret: Option<String>,
    /// ECDS form: IfNotPresent or Always.
    #[arg(long, conflicts_with = "inline")]
    pub image_pull_policy: Option<PullPolicy>,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

/// `wasmgate examples`.
#[derive(Debug, Args)]
pub struct ExamplesArgs {
    /// Fail (exit 1) when a checked-in example differs from what would be generated.
    #[arg(long)]
    pub check: bool,
    /// The workspace root holding istio/ and envoy/ [default: found by cargo].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// `wasmgate demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where Envoy accepts the demo's requests.
    #[arg(long, default_value = "127.0.0.1:10000")]
    pub listen: SocketAddr,
    /// Where Envoy's admin interface listens.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// The first of the two listeners sharing one global limit (rate-limit's global mode).
    #[arg(long, default_value = "127.0.0.1:10001")]
    pub global_a: SocketAddr,
    /// The second listener sharing the global limit.
    #[arg(long, default_value = "127.0.0.1:10002")]
    pub global_b: SocketAddr,
    /// Folder holding the built modules [default: the workspace's target/modules].
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
    /// The Envoy binary [default: ENVOY_BIN, else the project's .venv, else envoy on PATH].
    #[arg(long, value_name = "PATH")]
    pub envoy: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
