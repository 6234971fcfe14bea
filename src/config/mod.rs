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
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            log_level: log::LevelFilter::Info,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            sink_queue_events: DEFAULT_SINK_QUEUE_EVENTS,
        }
    }
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
    /// `v1` or `GROUP/VERSION`.
    pub api_version: String,
    /// Plural resource name, e.g. `pods`.
    pub resource: String,
    /// `None`: every namespace.
    pub namespace: Option<String>,
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

    /// The API group, `""` for the core group.
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    /// The version, e.g. `v1`.
    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or(self.api_version.as_str(), |(_, v)| v)
    }

    /// Collection path below the server's base path:
    /// `/api/v1[/namespaces/NS]/pods`, `/apis/apps/v1[/namespaces/NS]/deployments`.
    pub fn collection_path(&self) -> String {
        let prefix = match self.group() {
            "" => format!("/api/{}", self.version()),
            group => format!("/apis/{group}/{}", self.version()),
        };
        match &self.namespace {
            Some(ns) => format!("{prefix}/namespaces/{ns}/{}", self.resource),
            None => format!("{prefix}/{}", self.resource),
        }
    }
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
