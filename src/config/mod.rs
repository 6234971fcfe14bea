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
//! `${VAR}` in webhook `headers`, and `${VAR}` or `$VAR` in file paths
//! (`${CREDENTIALS_DIRECTORY}/token` under systemd's `LoadCredential=`), are
//! expanded from the environment when the file is parsed (so also on
//! reload); an unset variable is an error (`vars.rs`).
//!
//! [`Config::check`] with [`LoadMode::Offline`] runs every check that needs
//! no file, environment variable or kubeconfig (`kwatchd check --offline`,
//! for CI): the same walk, with `fields::Reach` saying what it may consult.
//!
//! Relative paths in the file are resolved against the current working
//! directory at load time and stored absolute, so a later `chdir` (or a
//! reload from another directory) cannot change what they mean.
//!
//! Layout: one file per section (`daemon.rs`, `cluster.rs`, `watch.rs`,
//! `sink.rs`), each with its types, its `KEYS` and its parser; they share
//! the generic readers of `fields.rs` and never import each other. This file
//! walks the top level. Adding a key: put it in its section's `KEYS`, read
//! it in that section's parser, and show it in `config/kwatchd.toml` (a test
//! checks that the example sets every key of every `KEYS`).

mod cluster;
mod daemon;
mod doc;
mod error;
mod fields;
mod jq;
mod leader;
pub(crate) mod nats;
mod selector;
mod sink;
mod syntax;
mod url;
mod vars;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml_edit::ImDocument;

pub use crate::kube::access::{ClusterSource, ExecConfig, PemSource, Secret};
pub use cluster::{ClusterConfig, DEFAULT_CONNECT_TIMEOUT};
pub use daemon::{
    parse_listen_addr, DaemonConfig, LogFormat, SyncMode, DEFAULT_MAX_LINE_BYTES,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SINK_QUEUE_EVENTS, DEFAULT_STATE_DIR,
};
pub use error::{ConfigError, ConfigErrors};
pub(crate) use fields::resolve_in_process;
pub use leader::{
    LeaderElectionConfig, DEFAULT_LEASE_DURATION, DEFAULT_LEASE_NAME, DEFAULT_LEASE_NAMESPACE,
    DEFAULT_RENEW_DEADLINE, DEFAULT_RETRY_PERIOD,
};
pub use nats::NatsSinkConfig;
pub use sink::{
    DeliveryConfig, ExecSinkConfig, FileSinkConfig, HttpHeader, OnFailure, SinkConfig,
    WebhookSinkConfig,
};
pub use url::{Scheme, ServerUrl, WebhookUrl};
pub use watch::{EventType, InitialList, OnStart, WatchConfig, WatchTarget, DEFAULT_WATCH_TIMEOUT};

use doc::{Ctx, TableNode};
use fields::{named_tables, Env, Reach};
use watch::Refs;

/// Keys of the top level: one per section.
const TOP_KEYS: &[&str] = &["daemon", "clusters", "watch", "sinks"];

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
    /// `transform` of the sinks that set one, by sink name (jq source).
    pub sink_transforms: BTreeMap<String, String>,
}

/// How much beyond the configuration file itself a check consults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Everything a running daemon needs, as [`Config::load`]: `${VAR}`
    /// references, kubeconfigs, the in-cluster service account, and that
    /// referenced files (CA, token, keys, hook programs, directories) are
    /// usable.
    Full,
    /// The file only (`kwatchd check --offline`, CI): syntax, types,
    /// ranges, references between sections, the syntax of `${VAR}`. No
    /// file it names, no environment variable and no kubeconfig is read, so
    /// a configuration written for another machine checks anywhere.
    Offline,
}

/// The counts a successful check reports. `Display`:
/// `2 clusters, 3 watches, 4 sinks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigSummary {
    pub clusters: usize,
    pub watches: usize,
    pub sinks: usize,
}

impl fmt::Display for ConfigSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} clusters, {} watches, {} sinks",
            self.clusters, self.watches, self.sinks
        )
    }
}

impl Config {
    /// Parses and validates `text`; `source` names the file in errors.
    /// Relative paths are resolved against the current working directory.
    /// Referenced files need not exist.
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
        parse(text, source, &Env::process(Reach::Environment))
    }

    /// Reads `path`, parses it, and checks the files it names (see the
    /// module documentation): CA bundles must hold a PEM certificate, hook
    /// programs must be executable. All problems are reported together.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        parse(&read(path)?, path, &Env::process(Reach::Files))
    }

    /// Reads and checks `path` as `mode` says, reporting every problem like
    /// [`Config::load`]. Only `load` returns the configuration: an offline
    /// one lacks what the environment and the named files provide.
    pub fn check(path: &Path, mode: LoadMode) -> Result<ConfigSummary, ConfigErrors> {
        Config::check_with_warnings(path, mode).map(|(summary, _)| summary)
    }

    /// [`Config::check`], with what is valid but probably not meant
    /// ([`Config::warnings`]).
    pub fn check_with_warnings(
        path: &Path,
        mode: LoadMode,
    ) -> Result<(ConfigSummary, Vec<String>), ConfigErrors> {
        let reach = match mode {
            LoadMode::Full => Reach::Files,
            LoadMode::Offline => Reach::Offline,
        };
        parse(&read(path)?, path, &Env::process(reach)).map(|c| (c.summary(), c.warnings()))
    }

    /// Reads and checks `path` offline, as `kwatchd check --offline`, for
    /// tools that need only the file's own content (`kwatchd rbac`): what
    /// the environment and the named files provide is not filled in, so
    /// such a configuration must never run a daemon.
    pub fn load_offline(path: &Path) -> Result<Config, ConfigErrors> {
        parse(&read(path)?, path, &Env::process(Reach::Offline))
    }

    /// How many clusters, watches and sinks there are.
    pub fn summary(&self) -> ConfigSummary {
        ConfigSummary {
            clusters: self.clusters.len(),
            watches: self.watches.len(),
            sinks: self.sinks.len(),
        }
    }

    /// [`Config::parse`] with `${VAR}` expanding from `vars` only.
    #[cfg(test)]
    pub(crate) fn parse_with_vars(
        text: &str,
        source: &Path,
        vars: &[(&str, &str)],
    ) -> Result<Config, ConfigErrors> {
        parse(text, source, &Env::fixed(Reach::Environment, vars))
    }

    /// [`Config::load`] with `${VAR}` expanding from `vars` only.
    #[cfg(test)]
    pub(crate) fn load_with_vars(
        path: &Path,
        vars: &[(&str, &str)],
    ) -> Result<Config, ConfigErrors> {
        parse(&read(path)?, path, &Env::fixed(Reach::Files, vars))
    }

    /// The offline check of `text`, with no variable set at all (so a
    /// lookup would fail the check).
    #[cfg(test)]
    pub(crate) fn check_text_offline(
        text: &str,
        source: &Path,
    ) -> Result<ConfigSummary, ConfigErrors> {
        parse(text, source, &Env::fixed(Reach::Offline, &[])).map(|c| c.summary())
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

    /// What is valid but probably not meant; `kwatchd check` prints these
    /// and the daemon logs them at start.
    pub fn warnings(&self) -> Vec<String> {
        self.watches
            .iter()
            .enumerate()
            .filter(|(_, w)| w.watches_secrets() && w.redact.as_ref().is_some_and(Vec::is_empty))
            .map(|(i, w)| {
                format!(
                    "{}: watch[{i}].redact: watch {:?} of Secrets sets redact = []: every sink, dead letter and log line receives the secret values (remove the key to redact .data and .stringData)",
                    self.source.display(),
                    w.name
                )
            })
            .collect()
    }
}

/// Parses and validates a whole document.
fn parse(text: &str, source: &Path, env: &Env) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx::new(text, source);
    let config = match ImDocument::parse(text) {
        Ok(doc) => document(&mut ctx, env, &TableNode::root(doc.as_table()), source),
        Err(e) => {
            let message = e.message().trim().replace('\n', "; ");
            ctx.error(
                e.span().map(|s| s.start),
                "",
                format!("TOML syntax error: {message}"),
            );
            None
        }
    };
    let mut errors = ctx.into_errors();
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => {
            if errors.is_empty() {
                errors.push(internal_error(source));
            }
            Err(ConfigErrors::sorted(errors))
        }
    }
}

/// Never expected: a section gave up without saying why.
fn internal_error(source: &Path) -> ConfigError {
    ConfigError {
        file: source.to_path_buf(),
        line: None,
        column: None,
        key: String::new(),
        message: "invalid configuration (no detail available; please report)".to_string(),
    }
}

fn document(ctx: &mut Ctx, env: &Env, root: &TableNode, source: &Path) -> Option<Config> {
    root.check_keys(ctx, TOP_KEYS);
    let cluster_tables = named_tables(ctx, root, "clusters", "cluster");
    let daemon = daemon::parse(ctx, env, root, &cluster_tables.names);
    let sink_tables = named_tables(ctx, root, "sinks", "sink");
    let refs = Refs {
        clusters: cluster_tables.names.clone(),
        sinks: sink_tables.names.clone(),
    };
    let clusters = cluster_tables.build(|name, t| cluster::parse(ctx, env, name, t));
    let sinks_and_transforms = sink_tables.build(|_, t| sink::parse(ctx, env, t));
    let (sinks, sink_transforms) = match sinks_and_transforms {
        Some(all) => {
            let transforms = all
                .iter()
                .filter_map(|(name, (_, t))| Some((name.clone(), t.clone()?)))
                .collect();
            let sinks = all.into_iter().map(|(name, (s, _))| (name, s)).collect();
            (Some(sinks), Some(transforms))
        }
        None => (None, None),
    };
    let watches = watch::parse(ctx, root, &refs);
    Some(Config {
        source: absolute(source, env),
        daemon: daemon?,
        clusters: clusters?,
        watches: watches?,
        sinks: sinks?,
        sink_transforms: sink_transforms?,
    })
}

fn absolute(source: &Path, env: &Env) -> PathBuf {
    match &env.base_dir {
        Some(base) if source.is_relative() => base.join(source).components().collect(),
        _ => source.to_path_buf(),
    }
}

/// The configuration file's text; unreadable is one error without a line.
fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        key: String::new(),
        message: format!("cannot read the configuration file: {e}"),
    })
}
