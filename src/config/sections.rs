//! The schema: one function per table, each checking its keys and values
//! field by field, recording problems in [`Ctx`] and going on. A section
//! returns `None` only after recording at least one error.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{ImDocument, Value};

use super::doc::{Ctx, Field, Pos, TableNode};
use super::error::{ConfigError, ConfigErrors};
use super::selector::{parse_field_selector, parse_label_selector};
use super::syntax::{
    check_api_version, check_kind_name, check_name, check_namespace, check_resource,
    parse_duration, parse_log_level, parse_size, resolve_path,
};
use super::{
    sink, ClusterConfig, ClusterSource, Config, DaemonConfig, Env, EventType, InitialList, OnStart,
    PemSource, ServerUrl, WatchConfig, WatchTarget, DEFAULT_CONNECT_TIMEOUT, DEFAULT_WATCH_TIMEOUT,
};
use crate::kube::access::{incluster, kubeconfig};

const TOP_KEYS: &[&str] = &["daemon", "clusters", "watch", "sinks"];
const DAEMON_KEYS: &[&str] = &[
    "log_level",
    "max_line_bytes",
    "sink_queue_events",
    "metrics_listen",
    "log_format",
    "shutdown_timeout",
    "state_dir",
];
const CLUSTER_KEYS: &[&str] = &[
    "server",
    "certificate_authority",
    "insecure_skip_tls_verify",
    "token_file",
    "connect_timeout",
    "kubeconfig",
    "context",
    "in_cluster",
    "client_certificate",
    "client_key",
    "tls_server_name",
];
/// Keys that only go with `server`: a kubeconfig or the service account
/// provides these itself.
const SERVER_ONLY_KEYS: &[&str] = &[
    "certificate_authority",
    "insecure_skip_tls_verify",
    "token_file",
    "client_certificate",
    "client_key",
    "tls_server_name",
];
const WATCH_KEYS: &[&str] = &[
    "name",
    "cluster",
    "api_version",
    "resource",
    "kind",
    "namespace",
    "exclude_namespaces",
    "metadata_only",
    "initial_list",
    "label_selector",
    "field_selector",
    "events",
    "on_start",
    "sinks",
    "watch_timeout",
];

const MIN_LINE_BYTES: u64 = 1 << 10;
const MAX_LINE_BYTES: u64 = 1 << 30;
const CONNECT_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(600));
const WATCH_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));
const SHUTDOWN_TIMEOUT_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));
/// Largest CA bundle read when checking it holds a certificate.
const MAX_CA_BYTES: u64 = 16 << 20;

/// Parses and validates a whole document.
pub(crate) fn parse(text: &str, source: &Path, env: &Env) -> Result<Config, ConfigErrors> {
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
    let daemon = daemon(ctx, env, root);
    let cluster_tables = named_tables(ctx, root, "clusters", "cluster");
    let sink_tables = named_tables(ctx, root, "sinks", "sink");
    let refs = Refs {
        clusters: cluster_tables.names.clone(),
        sinks: sink_tables.names.clone(),
    };
    let clusters = cluster_tables.build(|name, t| cluster(ctx, env, name, t));
    let sinks = sink_tables.build(|_, t| sink::sink(ctx, env, t));
    let watches = watches(ctx, root, &refs);
    Some(Config {
        source: absolute(source, env),
        daemon: daemon?,
        clusters: clusters?,
        watches: watches?,
        sinks: sinks?,
    })
}

fn absolute(source: &Path, env: &Env) -> PathBuf {
    match &env.base_dir {
        Some(base) if source.is_relative() => base.join(source).components().collect(),
        _ => source.to_path_buf(),
    }
}

// ---------------------------------------------------------------- helpers

/// A required string key converted by `parse`.
fn required<T>(
    ctx: &mut Ctx,
    t: &TableNode,
    key: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    t.require(ctx, key)?.parse_str(ctx, parse)
}

/// An optional string key converted by `parse`; `Some(None)` when absent.
pub(super) fn optional<T>(
    ctx: &mut Ctx,
    t: &TableNode,
    key: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<Option<T>> {
    match t.get(key) {
        None => Some(None),
        Some(f) => f.parse_str(ctx, parse).map(Some),
    }
}

/// An optional string key converted by `parse`, else `default`.
pub(super) fn with_default<T>(
    ctx: &mut Ctx,
    t: &TableNode,
    key: &str,
    default: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    optional(ctx, t, key, parse).map(|v| v.unwrap_or(default))
}

pub(super) fn duration(
    ctx: &mut Ctx,
    t: &TableNode,
    key: &str,
    default: Duration,
    (min, max): (Duration, Duration),
) -> Option<Duration> {
    with_default(ctx, t, key, default, |s| parse_duration(s, min, max))
}

/// Keeps a valid string as an owned value.
fn owned(
    check: impl FnOnce(&str) -> Result<(), String>,
) -> impl FnOnce(&str) -> Result<String, String> {
    move |s| check(s).map(|()| s.to_string())
}

/// `name` must be one of `defined` (the keys of `[table.NAME]`).
fn reference(table: &str, kind: &str, name: &str, defined: &[String]) -> Result<String, String> {
    if defined.iter().any(|d| d == name) {
        Ok(name.to_string())
    } else if defined.is_empty() {
        Err(format!(
            "{kind} {name:?} is not defined (there is no [{table}.NAME] table)"
        ))
    } else {
        Err(format!(
            "{kind} {name:?} is not defined (defined: {})",
            defined.join(", ")
        ))
    }
}

/// Names a watch may refer to.
struct Refs {
    clusters: Vec<String>,
    sinks: Vec<String>,
}

/// The entries of a `[table.NAME]` map.
struct NamedTables<'a> {
    /// Every key, valid or not, so that references to it do not cascade.
    names: Vec<String>,
    tables: Vec<(String, TableNode<'a>)>,
    ok: bool,
}

impl<'a> NamedTables<'a> {
    /// Builds every table; `None` if any entry (or the map) was invalid.
    fn build<T>(
        self,
        mut build: impl FnMut(&str, &TableNode<'a>) -> Option<T>,
    ) -> Option<std::collections::BTreeMap<String, T>> {
        let mut ok = self.ok;
        let mut map = std::collections::BTreeMap::new();
        for (name, table) in &self.tables {
            match build(name, table) {
                Some(value) => {
                    map.insert(name.clone(), value);
                }
                None => ok = false,
            }
        }
        ok.then_some(map)
    }
}

/// Reads `[key.NAME]` tables (`key` itself optional), checking each NAME.
fn named_tables<'a>(ctx: &mut Ctx, root: &TableNode<'a>, key: &str, kind: &str) -> NamedTables<'a> {
    let mut named = NamedTables {
        names: Vec::new(),
        tables: Vec::new(),
        ok: true,
    };
    let Some(field) = root.get(key) else {
        return named;
    };
    let Some(map) = field.table(ctx, format!("[{key}.NAME]")) else {
        named.ok = false;
        return named;
    };
    for (name, entry) in map.entries() {
        named.names.push(name.clone());
        if let Err(e) = check_name(kind, &name) {
            ctx.error(entry.key_pos(), entry.path(), e);
            named.ok = false;
        }
        match entry.table(ctx, format!("[{}]", entry.path())) {
            Some(table) => named.tables.push((name, table)),
            None => named.ok = false,
        }
    }
    named
}

/// A validated list of distinct strings, with each element's field.
struct Strings<'a> {
    items: Vec<(Field<'a>, &'a str)>,
    ok: bool,
}

/// A non-empty array of distinct strings; records every problem.
fn distinct_strings<'a>(ctx: &mut Ctx, field: &Field<'a>, what: &str) -> Option<Strings<'a>> {
    let elements = field.array(ctx)?;
    if elements.is_empty() {
        field.error(ctx, format!("must list at least one {what}"));
        return None;
    }
    let mut strings = Strings {
        items: Vec::new(),
        ok: true,
    };
    for element in elements {
        let Some(s) = element.str(ctx) else {
            strings.ok = false;
            continue;
        };
        if strings.items.iter().any(|(_, seen)| *seen == s) {
            element.error(ctx, format!("duplicate {what} {s:?}"));
            strings.ok = false;
            continue;
        }
        strings.items.push((element, s));
    }
    Some(strings)
}

// ---------------------------------------------------------------- [daemon]

fn daemon(ctx: &mut Ctx, env: &Env, root: &TableNode) -> Option<DaemonConfig> {
    let Some(field) = root.get("daemon") else {
        return Some(DaemonConfig::default());
    };
    let t = field.table(ctx, "[daemon]".to_string())?;
    t.check_keys(ctx, DAEMON_KEYS);
    let defaults = DaemonConfig::default();
    let log_level = with_default(ctx, &t, "log_level", defaults.log_level, parse_log_level);
    let max_line_bytes = t
        .get("max_line_bytes")
        .map_or(Some(defaults.max_line_bytes), |f| max_line_bytes(ctx, &f));
    let sink_queue_events = t
        .get("sink_queue_events")
        .map_or(Some(defaults.sink_queue_events), |f| queue_events(ctx, &f));
    let metrics_listen = optional(ctx, &t, "metrics_listen", super::parse_listen_addr);
    let log_format = with_default(
        ctx,
        &t,
        "log_format",
        defaults.log_format,
        super::LogFormat::parse,
    );
    let shutdown_timeout = duration(
        ctx,
        &t,
        "shutdown_timeout",
        defaults.shutdown_timeout,
        SHUTDOWN_TIMEOUT_RANGE,
    );
    let state_dir = with_default(ctx, &t, "state_dir", defaults.state_dir, |s| {
        resolve_path(s, env.base_dir.as_deref())
    });
    Some(DaemonConfig {
        log_level: log_level?,
        max_line_bytes: max_line_bytes?,
        sink_queue_events: sink_queue_events?,
        metrics_listen: metrics_listen?,
        log_format: log_format?,
        shutdown_timeout: shutdown_timeout?,
        state_dir: state_dir?,
    })
}

/// Integer bytes or a size string, within [1 KiB, 1 GiB].
fn max_line_bytes(ctx: &mut Ctx, f: &Field) -> Option<usize> {
    let expected = "an integer number of bytes or a size string like \"16MiB\"";
    let value = f.expect(ctx, expected, |v| match v {
        Value::Integer(i) => Some(Ok(*i.value())),
        Value::String(s) => Some(Err(s.value().as_str())),
        _ => None,
    })?;
    let bytes = match value {
        Ok(n) => u64::try_from(n).map_err(|_| format!("size {n} is negative")),
        Err(s) => parse_size(s),
    };
    let in_range = bytes.and_then(|b| {
        if (MIN_LINE_BYTES..=MAX_LINE_BYTES).contains(&b) {
            usize::try_from(b).map_err(|_| format!("size {b} does not fit in memory"))
        } else {
            Err(format!(
                "{b} bytes is out of range; allowed: 1KiB ({MIN_LINE_BYTES}) to 1GiB ({MAX_LINE_BYTES})"
            ))
        }
    });
    f.check(ctx, in_range)
}

pub(super) fn queue_events(ctx: &mut Ctx, f: &Field) -> Option<usize> {
    let n = f.expect(ctx, "an integer", Value::as_integer)?;
    let checked = match usize::try_from(n) {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("must be at least 1, got {n}")),
    };
    f.check(ctx, checked)
}

// ---------------------------------------------------------------- [clusters.NAME]

fn cluster(ctx: &mut Ctx, env: &Env, name: &str, t: &TableNode) -> Option<ClusterConfig> {
    t.check_keys(ctx, CLUSTER_KEYS);
    let connect_timeout = duration(
        ctx,
        t,
        "connect_timeout",
        DEFAULT_CONNECT_TIMEOUT,
        CONNECT_TIMEOUT_RANGE,
    );
    let server_f = t.get("server");
    let kube_f = t.get("kubeconfig");
    let in_cluster_f = t.get("in_cluster");
    let in_cluster = match &in_cluster_f {
        Some(f) => f.bool(ctx)?,
        None => false,
    };
    let mut sources: Vec<(&str, Field)> = Vec::new();
    if let Some(f) = server_f {
        sources.push(("server", f));
    }
    if let Some(f) = kube_f {
        sources.push(("kubeconfig", f));
    }
    if let (Some(f), true) = (in_cluster_f, in_cluster) {
        sources.push(("in_cluster = true", f));
    }
    if sources.is_empty() {
        ctx.error(
            t.pos(),
            &format!("{}.server", t.path()),
            format!(
                "missing required key `server` in [{}] (or, instead of server, kubeconfig or in_cluster = true)",
                t.path()
            ),
        );
        return None;
    }
    if let [(first, _), rest @ ..] = sources.as_slice() {
        if !rest.is_empty() {
            for (what, f) in rest {
                f.error(
                    ctx,
                    format!(
                        "{what} conflicts with {first}: a cluster takes exactly one of server, kubeconfig and in_cluster = true"
                    ),
                );
            }
            return None;
        }
    }
    let (source_key, source_f) = sources.swap_remove(0);
    if source_key != "kubeconfig" {
        if let Some(f) = t.get("context") {
            f.error(ctx, "context only applies with kubeconfig");
        }
    }
    if source_key != "server" {
        let mut ok = true;
        for key in SERVER_ONLY_KEYS {
            if let Some(f) = t.get(key) {
                f.error(
                    ctx,
                    format!(
                        "{key} cannot be combined with {source_key}, which provides the connection settings; set it {}",
                        if source_key == "kubeconfig" {
                            "in the kubeconfig"
                        } else {
                            "with server instead of in_cluster"
                        }
                    ),
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
    }
    let base = ClusterConfig {
        name: name.to_string(),
        server: ServerUrl::parse("https://127.0.0.1").ok()?,
        certificate_authority: None,
        insecure_skip_tls_verify: false,
        token_file: None,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        source: ClusterSource::Server,
        certificate_authority_data: None,
        tls_server_name: None,
        client_certificate: None,
        client_key: None,
        token: None,
        exec: None,
        namespace: None,
    };
    let cluster = match source_key {
        "server" => server_cluster(ctx, env, t, &source_f, base),
        "kubeconfig" => kubeconfig_cluster(ctx, env, t, &source_f, base),
        _ => in_cluster_cluster(ctx, env, &source_f, base),
    };
    Some(ClusterConfig {
        connect_timeout: connect_timeout?,
        ..cluster?
    })
}

/// `server = ...` with the keys of this file.
fn server_cluster(
    ctx: &mut Ctx,
    env: &Env,
    t: &TableNode,
    f: &Field,
    base: ClusterConfig,
) -> Option<ClusterConfig> {
    let server = server(ctx, f);
    let certificate_authority = file_path(ctx, env, t, "certificate_authority", FileKind::Pem);
    let insecure = t
        .get("insecure_skip_tls_verify")
        .map_or(Some(false), |f| f.bool(ctx));
    let token_file = file_path(ctx, env, t, "token_file", FileKind::Token);
    let client_certificate = file_path(ctx, env, t, "client_certificate", FileKind::Pem);
    let client_key = file_path(ctx, env, t, "client_key", FileKind::Key);
    let tls_server_name = optional(ctx, t, "tls_server_name", |s| {
        crate::net::tls::server_name(s).map(|_| s.to_string())
    });
    check_tls_options(ctx, t, &certificate_authority, insecure);
    if let (Some(Some(_)), Some(None)) = (&client_certificate, &client_key) {
        t.get("client_certificate")?
            .error(ctx, "client_certificate needs client_key too");
        return None;
    }
    if let (Some(None), Some(Some(_))) = (&client_certificate, &client_key) {
        t.get("client_key")?
            .error(ctx, "client_key needs client_certificate too");
        return None;
    }
    let server = server?;
    if server.scheme == super::Scheme::Http {
        for key in ["client_certificate", "tls_server_name"] {
            if let Some(f) = t.get(key) {
                f.error(ctx, format!("{key} needs an https:// server"));
                return None;
            }
        }
    }
    Some(ClusterConfig {
        server,
        certificate_authority: certificate_authority?,
        insecure_skip_tls_verify: insecure?,
        token_file: token_file?,
        client_certificate: client_certificate?.map(PemSource::File),
        client_key: client_key?.map(PemSource::File),
        tls_server_name: tls_server_name?,
        ..base
    })
}

/// `kubeconfig = "path"` or a list of paths, and `context`.
fn kubeconfig_cluster(
    ctx: &mut Ctx,
    env: &Env,
    t: &TableNode,
    f: &Field,
    base: ClusterConfig,
) -> Option<ClusterConfig> {
    let expand = |s: &str| -> Result<PathBuf, String> {
        let s = match s.strip_prefix("~/").or((s == "~").then_some("")) {
            Some(rest) => match env.var("HOME")? {
                Some(home) if !home.is_empty() => format!("{home}/{rest}"),
                _ => return Err(format!("cannot expand {s:?}: HOME is not set")),
            },
            None => s.to_string(),
        };
        resolve_path(&s, env.base_dir.as_deref())
    };
    let paths = match f.value() {
        Some(Value::Array(_)) => {
            let strings = distinct_strings(ctx, f, "kubeconfig path")?;
            let mut paths = Vec::new();
            for (element, s) in &strings.items {
                paths.push(element.check(ctx, expand(s)));
            }
            if !strings.ok {
                return None;
            }
            paths.into_iter().collect::<Option<Vec<_>>>()?
        }
        _ => vec![f.parse_str(ctx, expand)?],
    };
    let context = optional(
        ctx,
        t,
        "context",
        owned(|s| {
            if s.is_empty() {
                Err("context must not be empty".to_string())
            } else {
                Ok(())
            }
        }),
    )?;
    let resolved = f.check(
        ctx,
        kubeconfig::load(&paths, context.as_deref()).map_err(|e| e.to_string()),
    )?;
    let in_kubeconfig = |m: String| {
        let mut files = String::new();
        let mut context = String::new();
        if let ClusterSource::Kubeconfig {
            files: f,
            context: c,
        } = &resolved.source
        {
            let _ = crate::kube::access::write_files(&mut files, f);
            context = format!("context {c:?}: ");
        }
        format!("kubeconfig {files}: {context}{m}")
    };
    let server = f.check(
        ctx,
        ServerUrl::parse(&resolved.server)
            .and_then(check_server_url)
            .map_err(|e| in_kubeconfig(format!("server: {e}"))),
    )?;
    let (certificate_authority, certificate_authority_data) = match resolved.certificate_authority {
        Some(PemSource::File(p)) => (Some(p), None),
        Some(PemSource::Data(d)) => (None, Some(d)),
        None => (None, None),
    };
    if let Some(n) = &resolved.tls_server_name {
        f.check(
            ctx,
            crate::net::tls::server_name(n)
                .map_err(|e| in_kubeconfig(format!("tls-server-name: {e}"))),
        )?;
    }
    if env.check_files {
        let mut files = Vec::new();
        if let Some(p) = &certificate_authority {
            files.push(("certificate-authority", p.clone(), FileKind::Pem));
        }
        if let Some(p) = &resolved.token_file {
            files.push(("tokenFile", p.clone(), FileKind::Token));
        }
        if let Some(PemSource::File(p)) = &resolved.client_certificate {
            files.push(("client-certificate", p.clone(), FileKind::Pem));
        }
        if let Some(PemSource::File(p)) = &resolved.client_key {
            files.push(("client-key", p.clone(), FileKind::Key));
        }
        for (key, path, kind) in files {
            f.check(
                ctx,
                check_file(&path, kind).map_err(|e| in_kubeconfig(format!("{key}: {e}"))),
            )?;
        }
    }
    Some(ClusterConfig {
        server,
        certificate_authority,
        certificate_authority_data,
        insecure_skip_tls_verify: resolved.insecure_skip_tls_verify,
        token_file: resolved.token_file,
        token: resolved.token,
        client_certificate: resolved.client_certificate,
        client_key: resolved.client_key,
        tls_server_name: resolved.tls_server_name,
        exec: resolved.exec,
        namespace: resolved.namespace,
        source: resolved.source,
        ..base
    })
}

/// `in_cluster = true`: the service account of the pod.
fn in_cluster_cluster(
    ctx: &mut Ctx,
    env: &Env,
    f: &Field,
    base: ClusterConfig,
) -> Option<ClusterConfig> {
    let ic = f.check(ctx, incluster::from_env(&|k| env.var(k)))?;
    let server = f.check(ctx, ServerUrl::parse(&ic.server))?;
    if env.check_files {
        f.check(ctx, check_file(&ic.ca_file, FileKind::Pem))?;
        f.check(ctx, check_file(&ic.token_file, FileKind::Token))?;
    }
    Some(ClusterConfig {
        server,
        certificate_authority: Some(ic.ca_file),
        token_file: Some(ic.token_file),
        namespace: ic.namespace,
        source: ClusterSource::InCluster { dir: ic.dir },
        ..base
    })
}

/// A URL; `http://` only to loopback hosts so tokens never travel in clear.
fn server(ctx: &mut Ctx, f: &Field) -> Option<ServerUrl> {
    let url = f.parse_str(ctx, ServerUrl::parse)?;
    f.check(ctx, check_server_url(url))
}

fn check_server_url(url: ServerUrl) -> Result<ServerUrl, String> {
    if url.scheme == super::Scheme::Http && !url.is_loopback() {
        return Err(format!(
            "http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost), not {:?}: the bearer token would travel in clear; use https://",
            url.host
        ));
    }
    Ok(url)
}

/// Like kubectl: a CA file and "skip verification" contradict each other.
fn check_tls_options(
    ctx: &mut Ctx,
    t: &TableNode,
    ca: &Option<Option<PathBuf>>,
    insecure: Option<bool>,
) {
    if let (Some(Some(_)), Some(true), Some(f)) = (ca, insecure, t.get("insecure_skip_tls_verify"))
    {
        f.error(
            ctx,
            "insecure_skip_tls_verify = true conflicts with certificate_authority; remove one of them",
        );
    }
}

#[derive(Clone, Copy)]
pub(super) enum FileKind {
    Pem,
    Token,
    /// A PEM private key.
    Key,
}

/// An optional file path, resolved, and with `env.check_files` readable.
pub(super) fn file_path(
    ctx: &mut Ctx,
    env: &Env,
    t: &TableNode,
    key: &str,
    kind: FileKind,
) -> Option<Option<PathBuf>> {
    let Some(f) = t.get(key) else {
        return Some(None);
    };
    let path = f.parse_str(ctx, |s| resolve_path(s, env.base_dir.as_deref()))?;
    if env.check_files {
        f.check(ctx, check_file(&path, kind))?;
    }
    Some(Some(path))
}

/// A readable regular file; a CA bundle must hold a PEM certificate.
fn check_file(path: &Path, kind: FileKind) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let (marker, what): (&[u8], &str) = match kind {
        FileKind::Token => return Ok(()),
        FileKind::Pem => (b"-----BEGIN CERTIFICATE-----", "certificate"),
        // Never quote a key file's content in a message.
        FileKind::Key => (b"PRIVATE KEY-----", "private key"),
    };
    let mut text = Vec::new();
    file.take(MAX_CA_BYTES)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !text.windows(marker.len()).any(|w| w == marker) {
        let line = match kind {
            FileKind::Key => "-----BEGIN ... PRIVATE KEY-----",
            _ => "-----BEGIN CERTIFICATE-----",
        };
        return Err(format!("{shown} holds no PEM {what} (no \"{line}\" line)"));
    }
    Ok(())
}

// ---------------------------------------------------------------- [[watch]]

fn watches(ctx: &mut Ctx, root: &TableNode, refs: &Refs) -> Option<Vec<WatchConfig>> {
    let Some(field) = root.get("watch") else {
        ctx.error(
            root.pos(),
            "watch",
            "at least one [[watch]] table is required",
        );
        return None;
    };
    let tables = field.tables(ctx, "watch")?;
    if tables.is_empty() {
        field.error(ctx, "at least one [[watch]] table is required");
        return None;
    }
    let mut seen: Vec<(String, String, Pos)> = Vec::new();
    let mut watches = Some(Vec::new());
    for t in &tables {
        check_unique_name(ctx, &mut seen, t);
        let watch = watch(ctx, t, refs);
        watches = watches.zip(watch).map(|(mut all, w)| {
            all.push(w);
            all
        });
    }
    watches
}

/// Duplicate watch names are reported at the second one.
fn check_unique_name(ctx: &mut Ctx, seen: &mut Vec<(String, String, Pos)>, t: &TableNode) {
    let Some(f) = t.get("name") else { return };
    let Some(name) = f.value().and_then(Value::as_str) else {
        return;
    };
    match seen.iter().find(|(n, _, _)| n == name) {
        Some((_, first, pos)) => {
            let line = ctx
                .line_of(*pos)
                .map_or(String::new(), |l| format!(" (line {l})"));
            f.error(
                ctx,
                format!("duplicate watch name {name:?}: already used by {first}{line}"),
            );
        }
        None => seen.push((name.to_string(), t.path().to_string(), f.pos())),
    }
}

fn watch(ctx: &mut Ctx, t: &TableNode, refs: &Refs) -> Option<WatchConfig> {
    t.check_keys(ctx, WATCH_KEYS);
    let name = required(ctx, t, "name", owned(|s| check_name("watch", s)));
    let cluster = required(ctx, t, "cluster", |s| {
        reference("clusters", "cluster", s, &refs.clusters)
    });
    let target = target(ctx, t);
    let namespace_list = namespaces(ctx, t, "namespace");
    let exclude_namespaces = namespaces(ctx, t, "exclude_namespaces");
    if let (Some(f), Some(_)) = (t.get("exclude_namespaces"), t.get("namespace")) {
        f.error(
            ctx,
            "exclude_namespaces filters a watch of every namespace; it cannot be combined with namespace (list the namespaces to watch there instead)",
        );
    }
    let metadata_only = t.get("metadata_only").map_or(Some(false), |f| f.bool(ctx));
    let initial_list = with_default(
        ctx,
        t,
        "initial_list",
        InitialList::Auto,
        parse_initial_list,
    );
    let label_selector = optional(
        ctx,
        t,
        "label_selector",
        owned(|s| parse_label_selector(s).map(drop)),
    );
    let field_selector = optional(
        ctx,
        t,
        "field_selector",
        owned(|s| parse_field_selector(s).map(drop)),
    );
    let events = t
        .get("events")
        .map_or(Some(EventType::ALL.to_vec()), |f| events(ctx, &f));
    let on_start = with_default(ctx, t, "on_start", OnStart::Added, parse_on_start);
    let sinks = t
        .require(ctx, "sinks")
        .and_then(|f| sink_names(ctx, &f, &refs.sinks));
    let watch_timeout = duration(
        ctx,
        t,
        "watch_timeout",
        DEFAULT_WATCH_TIMEOUT,
        WATCH_TIMEOUT_RANGE,
    );
    Some(WatchConfig {
        name: name?,
        cluster: cluster?,
        target: target?,
        namespaces: namespace_list?,
        exclude_namespaces: exclude_namespaces?,
        metadata_only: metadata_only?,
        initial_list: initial_list?,
        label_selector: label_selector?,
        field_selector: field_selector?,
        events: events?,
        on_start: on_start?,
        sinks: sinks?,
        watch_timeout: watch_timeout?,
    })
}

/// `kind` (with an optional `api_version`) or `api_version` + `resource`.
fn target(ctx: &mut Ctx, t: &TableNode) -> Option<WatchTarget> {
    let api_version = optional(ctx, t, "api_version", owned(check_api_version));
    match (t.get("kind"), t.get("resource")) {
        (Some(kind), Some(resource)) => {
            resource.error(
                ctx,
                "give either kind (resolved through discovery) or resource (with api_version), not both",
            );
            let _ = kind.parse_str(ctx, owned(check_kind_name));
            None
        }
        (Some(kind), None) => {
            let name = kind.parse_str(ctx, owned(check_kind_name));
            Some(WatchTarget::Kind {
                name: name?,
                api_version: api_version?,
            })
        }
        (None, Some(_)) => {
            let resource = required(ctx, t, "resource", owned(check_resource));
            // Reported like any missing key; a kind needs no api_version.
            let api_version = match api_version {
                Some(None) => t.require(ctx, "api_version").and(None),
                other => other.flatten(),
            };
            Some(WatchTarget::Resource {
                api_version: api_version?,
                resource: resource?,
            })
        }
        (None, None) => {
            t.require(ctx, "kind");
            None
        }
    }
}

/// A namespace string, or a non-empty list of distinct namespaces.
fn namespaces(ctx: &mut Ctx, t: &TableNode, key: &str) -> Option<Vec<String>> {
    let Some(f) = t.get(key) else {
        return Some(Vec::new());
    };
    if !f.value().is_some_and(Value::is_array) {
        return f.parse_str(ctx, owned(check_namespace)).map(|s| vec![s]);
    }
    let strings = distinct_strings(ctx, &f, "namespace")?;
    let mut ok = strings.ok;
    let mut out = Vec::new();
    for (element, s) in &strings.items {
        match element.check(ctx, check_namespace(s)) {
            Some(()) => out.push(s.to_string()),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn parse_initial_list(s: &str) -> Result<InitialList, String> {
    match s {
        "auto" => Ok(InitialList::Auto),
        "stream" => Ok(InitialList::Stream),
        "list" => Ok(InitialList::List),
        _ => Err(format!(
            "invalid initial_list {s:?}; expected \"auto\", \"stream\" or \"list\""
        )),
    }
}

fn parse_on_start(s: &str) -> Result<OnStart, String> {
    match s {
        "added" => Ok(OnStart::Added),
        "skip" => Ok(OnStart::Skip),
        _ => Err(format!(
            "invalid on_start {s:?}; expected \"added\" or \"skip\""
        )),
    }
}

/// Distinct event types, stored in canonical order.
fn events(ctx: &mut Ctx, f: &Field) -> Option<Vec<EventType>> {
    let strings = distinct_strings(ctx, f, "event type")?;
    let mut ok = strings.ok;
    let mut events = Vec::new();
    for (element, s) in &strings.items {
        match EventType::from_wire(s) {
            Some(t) => events.push(t),
            None => {
                element.error(ctx, unknown_event(s));
                ok = false;
            }
        }
    }
    events.sort();
    ok.then_some(events)
}

fn unknown_event(s: &str) -> String {
    let upper = s.to_ascii_uppercase();
    let hint = if EventType::from_wire(&upper).is_some() {
        format!(" (event types are upper case: {upper:?})")
    } else {
        String::new()
    };
    format!("unknown event type {s:?}; expected one of: ADDED, MODIFIED, DELETED{hint}")
}

/// Distinct names of defined sinks, in file order.
fn sink_names(ctx: &mut Ctx, f: &Field, defined: &[String]) -> Option<Vec<String>> {
    let strings = distinct_strings(ctx, f, "sink")?;
    let mut ok = strings.ok;
    let mut names = Vec::new();
    for (element, s) in &strings.items {
        match element.check(ctx, reference("sinks", "sink", s, defined)) {
            Some(name) => names.push(name),
            None => ok = false,
        }
    }
    ok.then_some(names)
}
