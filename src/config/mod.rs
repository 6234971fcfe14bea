//! Configuration: the TOML schema, its defaults and its validation.
//!
//! `config/kwatchd.toml` is the documented example of every key. In short:
//!
//! ```toml
//! [daemon]                 # optional; every key has a default
//! [clusters.NAME]          # API servers; NAME is [A-Za-z0-9_.-]+
//! [[watch]]                # one per watched resource; at least one
//! [sinks.NAME]             # where events go; `type` picks the kind
//! ```
//!
//! [`Config::parse`] walks a spanned TOML document field by field and reports
//! *every* problem (syntax, unknown keys, missing keys, types, values,
//! references, duplicates), each with the file, line, column and dotted key.
//! [`Config::load`] also reads the file and checks the files it names: a
//! cluster's `certificate_authority` and `token_file`, a webhook's
//! `certificate_authority`, an exec hook's program (executable, or found in
//! `PATH`) and `working_dir`, and that a `dead_letter` is not a directory.
//!
//! `${VAR}` in webhook `headers` is expanded from the environment when the
//! file is parsed (so also on reload); an unset variable is an error.
//!
//! Relative paths in the file are resolved against the current working
//! directory at load time and stored absolute, so a later `chdir` (or a
//! reload from another directory) cannot change what they mean.

mod doc;
mod error;
mod nats;
mod sections;
mod selector;
mod sink;
mod syntax;
mod url;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::kube::access::{ClusterSource, ExecConfig, PemSource, Secret};
pub use error::{ConfigError, ConfigErrors};
pub use nats::NatsSinkConfig;
pub use sink::{
    DeliveryConfig, ExecSinkConfig, FileSinkConfig, HttpHeader, OnFailure, SinkConfig,
    WebhookSinkConfig,
};
pub use url::{Scheme, ServerUrl, WebhookUrl};

/// Default `daemon.max_line_bytes`: 16 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;
/// Default `daemon.sink_queue_events`.
pub const DEFAULT_SINK_QUEUE_EVENTS: usize = 4096;
/// Default `clusters.NAME.connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `watch.watch_timeout`.
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(300);
/// Default `daemon.shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `daemon.state_dir` (systemd's `StateDirectory=kwatchd`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/kwatchd";

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from, made absolute.
    pub source: PathBuf,
    pub daemon: DaemonConfig,
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// In file order.
    pub watches: Vec<WatchConfig>,
    pub sinks: BTreeMap<String, SinkConfig>,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub log_level: log::LevelFilter,
    /// Longest watch-event line accepted, in bytes.
    pub max_line_bytes: usize,
    /// Per-sink queue bound, in events (>= 1).
    pub sink_queue_events: usize,
    /// Where `/metrics`, `/healthz` and `/status` are served; `None`: off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub log_format: LogFormat,
    /// How long running hooks and queued deliveries get at shutdown before
    /// their process groups are killed.
    pub shutdown_timeout: Duration,
    /// Where the per-watch checkpoints live (absolute).
    pub state_dir: PathBuf,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            log_level: log::LevelFilter::Info,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            sink_queue_events: DEFAULT_SINK_QUEUE_EVENTS,
            metrics_listen: None,
            log_format: LogFormat::Text,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

/// `daemon.log_format`: how each log record is written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `TIME LEVEL message` (under journald: `<PRIORITY>LEVEL message`).
    #[default]
    Text,
    /// One JSON object per line: `time`, `level`, `target`, `message`.
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "invalid log format {s:?}; expected \"text\" or \"json\""
            )),
        }
    }
}

/// A `metrics_listen` value: `IP:PORT` (`[IPv6]:PORT`). Port 0 asks the
/// kernel for a free port (the daemon logs the one it got). Names are not
/// resolved: a listener address must not depend on DNS at start.
pub fn parse_listen_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "invalid listen address {s:?}; expected IP:PORT, e.g. \"127.0.0.1:9464\" or \"[::1]:9464\" (host names are not accepted)"
        )
    })
}

/// `[clusters.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub name: String,
    pub server: ServerUrl,
    /// PEM bundle to verify the server with (absolute path).
    pub certificate_authority: Option<PathBuf>,
    pub insecure_skip_tls_verify: bool,
    /// File holding a bearer token (absolute path); re-read by the client.
    pub token_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Where these settings came from (`server`, a kubeconfig context, the
    /// in-cluster service account).
    pub source: ClusterSource,
    /// Inline CA (kubeconfig `certificate-authority-data`), PEM; wins over
    /// `certificate_authority`.
    pub certificate_authority_data: Option<Secret>,
    /// Name for SNI and certificate verification instead of the URL host.
    pub tls_server_name: Option<String>,
    /// Client certificate and key (both or neither), PEM.
    pub client_certificate: Option<PemSource>,
    pub client_key: Option<PemSource>,
    /// Inline bearer token (kubeconfig `token`).
    pub token: Option<Secret>,
    /// Credential plugin (kubeconfig `exec`).
    pub exec: Option<ExecConfig>,
    /// The kubeconfig context's or service account's namespace. Only
    /// informative: a watch without `namespace` still sees every namespace.
    pub namespace: Option<String>,
}

/// One `[[watch]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    pub name: String,
    /// Name of a `[clusters.NAME]`.
    pub cluster: String,
    /// What to watch: a resource path given directly, or a name resolved
    /// through discovery.
    pub target: WatchTarget,
    /// Namespaces to watch, one watch each; empty: every namespace.
    pub namespaces: Vec<String>,
    /// Namespaces whose events are dropped (only with every namespace).
    pub exclude_namespaces: Vec<String>,
    /// Ask for `PartialObjectMetadata` objects instead of full ones.
    pub metadata_only: bool,
    /// How the initial state is read.
    pub initial_list: InitialList,
    /// Sent as is; validated with the Kubernetes grammar.
    pub label_selector: Option<String>,
    /// Sent as is; validated with the Kubernetes grammar.
    pub field_selector: Option<String>,
    /// Event types forwarded to the sinks, in canonical order
    /// (ADDED, MODIFIED, DELETED), whatever the order in the file.
    pub events: Vec<EventType>,
    pub on_start: OnStart,
    /// Names of `[sinks.NAME]`, in file order.
    pub sinks: Vec<String>,
    /// Server-side `timeoutSeconds` is drawn from `[t, 2t)`.
    pub watch_timeout: Duration,
}

impl WatchConfig {
    /// Whether events of type `t` go to the sinks.
    pub fn wants(&self, t: EventType) -> bool {
        self.events.contains(&t)
    }
}

/// What a `[[watch]]` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchTarget {
    /// `api_version` + `resource`: the path is built as given, no discovery.
    Resource {
        /// `v1` or `GROUP/VERSION`.
        api_version: String,
        /// Plural resource name, e.g. `pods`.
        resource: String,
    },
    /// `kind` (a kind, plural, short name or `plural.group`, matched
    /// case-insensitively), resolved through discovery at run time;
    /// `api_version` narrows the candidates.
    Kind {
        name: String,
        api_version: Option<String>,
    },
}

impl WatchTarget {
    /// For logs: `pods (v1)` or `kind Deployment`.
    pub fn describe(&self) -> String {
        match self {
            WatchTarget::Resource {
                api_version,
                resource,
            } => format!("{resource} ({api_version})"),
            WatchTarget::Kind {
                name,
                api_version: Some(v),
            } => format!("kind {name} ({v})"),
            WatchTarget::Kind { name, .. } => format!("kind {name}"),
        }
    }
}

/// `initial_list`: how a watch reads the objects that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitialList {
    /// Streaming list, falling back to LIST when the server refuses it.
    Auto,
    /// Streaming list only (`sendInitialEvents`).
    Stream,
    /// Paginated LIST only.
    List,
}

/// Watch event types a sink can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// Every type, in canonical order.
    pub const ALL: [EventType; 3] = [EventType::Added, EventType::Modified, EventType::Deleted];

    /// The wire name: `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }

    /// From the wire name (exact, upper case).
    pub fn from_wire(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// What a watch does with the objects that exist when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnStart {
    /// Emit an ADDED event for each (the default).
    Added,
    /// Emit nothing for them; only changes from then on.
    Skip,
}

impl OnStart {
    pub fn as_str(self) -> &'static str {
        match self {
            OnStart::Added => "added",
            OnStart::Skip => "skip",
        }
    }
}

/// What parsing needs from outside the text.
pub(crate) struct Env {
    /// Base for relative paths (the working directory), if known.
    pub(crate) base_dir: Option<PathBuf>,
    /// Check that referenced files (CA, token, hook program) are usable.
    pub(crate) check_files: bool,
    /// Variables `${VAR}` in webhook headers expand from: `None` is the
    /// process environment (the normal case); tests pass a fixed map so they
    /// never have to mutate the process environment.
    pub(crate) vars: Option<BTreeMap<String, String>>,
}

impl Env {
    /// The value of environment variable `name`, `Ok(None)` when unset.
    pub(crate) fn var(&self, name: &str) -> Result<Option<String>, String> {
        match &self.vars {
            Some(vars) => Ok(vars.get(name).cloned()),
            None => match std::env::var(name) {
                Ok(v) => Ok(Some(v)),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(format!("environment variable {name} is not valid UTF-8"))
                }
            },
        }
    }
}

impl Config {
    /// Parses and validates `text`; `source` names the file in errors.
    /// Relative paths are resolved against the current working directory.
    /// Referenced files need not exist.
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
        let env = Env {
            base_dir: std::env::current_dir().ok(),
            check_files: false,
            vars: None,
        };
        sections::parse(text, source, &env)
    }

    /// Reads `path`, parses it, and checks the files it names (see the
    /// module documentation): CA bundles must hold a PEM certificate, hook
    /// programs must be executable. All problems are reported together.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            key: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        })?;
        let env = Env {
            base_dir: std::env::current_dir().ok(),
            check_files: true,
            vars: None,
        };
        sections::parse(&text, path, &env)
    }

    /// [`Config::parse`] with `${VAR}` expanding from `vars` only.
    #[cfg(test)]
    pub(crate) fn parse_with_vars(
        text: &str,
        source: &Path,
        vars: &[(&str, &str)],
    ) -> Result<Config, ConfigErrors> {
        let env = Env {
            base_dir: std::env::current_dir().ok(),
            check_files: false,
            vars: Some(
                vars.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        };
        sections::parse(text, source, &env)
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.get(name)
    }

    pub fn sink(&self, name: &str) -> Option<&SinkConfig> {
        self.sinks.get(name)
    }

    pub fn watch(&self, name: &str) -> Option<&WatchConfig> {
        self.watches.iter().find(|w| w.name == name)
    }
}
