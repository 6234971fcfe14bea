//! `[sinks.NAME]` tables. The `type` key picks a [`SinkType`] from
//! [`TYPES`] (its keys and its parser); adding a sink kind is a new
//! `SinkConfig` variant, a parser function and a line in that table.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::doc::{Ctx, Field, TableNode};
use super::fields::{
    boolean, duration, expand_path_vars, file_path, integer, path, queue_events, with_default, Env,
    FileKind,
};
use super::jq;
use super::syntax::{closest, resolve_path};
use super::url::{Scheme, WebhookUrl};
use super::vars::{expand, is_env_name, Syntax};

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// Append one JSON line per event to a file.
    File(FileSinkConfig),
    /// Run a program per event (or per batch) with the record(s) on stdin.
    Exec(ExecSinkConfig),
    /// POST the record (or a JSON array of a batch) to a URL.
    Webhook(WebhookSinkConfig),
    /// Write records to standard output.
    Stdout,
    /// Publish each record to a NATS JetStream stream.
    Nats(super::NatsSinkConfig),
}

impl SinkConfig {
    /// The `type` value this sink was configured with.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
            SinkConfig::Exec(_) => "exec",
            SinkConfig::Webhook(_) => "webhook",
            SinkConfig::Stdout => "stdout",
            SinkConfig::Nats(_) => "nats",
        }
    }

    /// Retry, batch and failure settings, for the sinks that have them.
    pub fn delivery(&self) -> Option<&DeliveryConfig> {
        match self {
            SinkConfig::Exec(e) => Some(&e.delivery),
            SinkConfig::Webhook(w) => Some(&w.delivery),
            SinkConfig::File(_) | SinkConfig::Stdout | SinkConfig::Nats(_) => None,
        }
    }
}

/// `type = "file"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// Absolute path of the JSON-lines file.
    pub path: PathBuf,
}

// ---------------------------------------------------------------- defaults

/// Default exec `timeout`.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Default exec `kill_grace`.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
/// Default exec `max_concurrent`: hooks are often scripts not written to
/// run alongside themselves (a shared temp file, `kubectl apply` of one
/// manifest), so concurrency is opt-in.
pub const DEFAULT_EXEC_MAX_CONCURRENT: usize = 1;
/// Default exec `retries`.
pub const DEFAULT_EXEC_RETRIES: u32 = 3;
/// Default webhook `timeout`.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default webhook `max_concurrent` (concurrent requests, hence connections).
pub const DEFAULT_WEBHOOK_MAX_CONCURRENT: usize = 8;
/// Default webhook `retries`.
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 5;
/// Default `batch_window`: no batching.
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::ZERO;
/// Default `batch_max`.
pub const DEFAULT_BATCH_MAX: usize = 100;

const EXEC_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(24 * 3600));
const KILL_GRACE_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(600));
const WEBHOOK_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(600));
const BATCH_WINDOW_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));
/// Processes or connections of one sink; beyond this a typo is likelier
/// than a need, and each one costs file descriptors.
const MAX_CONCURRENT: i64 = 1024;
/// With backoff capped at 60s, 100 retries is well over an hour per event.
const MAX_RETRIES: i64 = 100;
const MAX_BATCH: i64 = 100_000;

const FILE_KEYS: &[&str] = &["type", "path", "transform"];
const STDOUT_KEYS: &[&str] = &["type", "transform"];
const EXEC_KEYS: &[&str] = &[
    "type",
    "command",
    "timeout",
    "kill_grace",
    "kill_process_group",
    "max_concurrent",
    "retries",
    "batch_window",
    "batch_max",
    "working_dir",
    "env",
    "on_failure",
    "dead_letter",
    "queue_events",
    "transform",
    "coalesce",
];
const WEBHOOK_KEYS: &[&str] = &[
    "type",
    "url",
    "headers",
    "certificate_authority",
    "timeout",
    "max_concurrent",
    "retries",
    "batch_window",
    "batch_max",
    "on_failure",
    "dead_letter",
    "queue_events",
    "transform",
    "coalesce",
];
/// Set by kwatchd itself (from the URL, the body and its connection
/// handling); a second value would make the request ambiguous.
const RESERVED_HEADERS: &[&str] = &[
    "Host",
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "Content-Type",
];
/// Hook variables kwatchd sets; `env` may not shadow them.
const RESERVED_ENV_PREFIX: &str = "KWATCHD_";

// ---------------------------------------------------------------- shared

/// What happens to the records of a job that exhausted its retries or
/// failed without retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnFailure {
    /// Log the failure (with the object) and go on (the default).
    Log,
    /// Also append each record to this JSON-lines file (absolute path).
    DeadLetter(PathBuf),
}

/// Ordering, retry, batching and failure handling, shared by the exec and
/// webhook sinks (see `sink::dispatch` for the semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Jobs of this sink running at once (>= 1).
    pub max_concurrent: usize,
    /// Retries after the first run (so at most `retries + 1` runs).
    pub retries: u32,
    /// Zero: one record per job. Otherwise records are collected this long
    /// (from the first record of a batch) into one job.
    pub batch_window: Duration,
    /// Most records in one job (>= 1); ignored when `batch_window` is zero.
    pub batch_max: usize,
    pub on_failure: OnFailure,
    /// Per-sink queue bound overriding `[daemon] sink_queue_events`.
    pub queue_events: Option<usize>,
    /// A newer event of an object replaces its event still waiting (not
    /// started) in the queue.
    pub coalesce: bool,
}

impl DeliveryConfig {
    /// The queue bound in events: this sink's own, else the daemon's.
    pub fn queue_events_or(&self, daemon_default: usize) -> usize {
        self.queue_events.unwrap_or(daemon_default).max(1)
    }
}

/// `type = "exec"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSinkConfig {
    /// argv, never a shell string. `command[0]` is either an absolute path
    /// (relative paths with a `/` are resolved against the working
    /// directory at load) or a bare name without `/`, looked up in the
    /// hook's `PATH` when it is spawned (like `execvp`).
    pub command: Vec<String>,
    /// Then SIGTERM to the hook's process group.
    pub timeout: Duration,
    /// After SIGTERM, SIGKILL this much later (zero: at once).
    pub kill_grace: Duration,
    /// SIGKILL what is left of the hook's process group when the hook
    /// exits by itself (default); false for hooks that start daemons.
    pub kill_process_group: bool,
    /// Absolute; `None`: the daemon's working directory.
    pub working_dir: Option<PathBuf>,
    /// Added to the hook's minimal environment (may override PATH, HOME,
    /// LANG; never `KWATCHD_*`).
    pub env: BTreeMap<String, String>,
    pub delivery: DeliveryConfig,
}

/// `type = "webhook"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSinkConfig {
    pub url: WebhookUrl,
    /// Extra request headers, in file order, `${VAR}` already expanded.
    pub headers: Vec<HttpHeader>,
    /// PEM bundle to verify the receiver with (absolute path); `None`:
    /// the system's roots.
    pub certificate_authority: Option<PathBuf>,
    /// Whole request: connect, send, response head and body.
    pub timeout: Duration,
    pub delivery: DeliveryConfig,
}

/// One configured request header. Its value often holds a token, so
/// `Debug` shows the name only: a logged config never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpHeader {
    /// As written in the file (HTTP header names are case-insensitive).
    pub name: String,
    /// Expanded; no CR, LF or other control character except tab.
    pub value: String,
}

impl fmt::Debug for HttpHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpHeader")
            .field("name", &self.name)
            .field(
                "value",
                &format_args!("<{} bytes, redacted>", self.value.len()),
            )
            .finish()
    }
}

// ---------------------------------------------------------------- dispatch

/// One sink `type`: the keys its table takes and its parser (called after
/// the keys were checked).
pub(crate) struct SinkType {
    pub(crate) name: &'static str,
    /// Every key of a `[sinks.NAME]` table of this type.
    pub(crate) keys: &'static [&'static str],
    parse: fn(&mut Ctx, &Env, &TableNode) -> Option<SinkConfig>,
}

/// Every sink `type`.
pub(crate) const TYPES: &[SinkType] = &[
    SinkType {
        name: "file",
        keys: FILE_KEYS,
        parse: file_sink,
    },
    SinkType {
        name: "exec",
        keys: EXEC_KEYS,
        parse: exec_sink,
    },
    SinkType {
        name: "webhook",
        keys: WEBHOOK_KEYS,
        parse: webhook_sink,
    },
    SinkType {
        name: "stdout",
        keys: STDOUT_KEYS,
        parse: stdout_sink,
    },
    SinkType {
        name: "nats",
        keys: super::nats::KEYS,
        parse: super::nats::parse,
    },
];

/// Parses one `[sinks.NAME]` table: the sink and its `transform` (a jq
/// program every type takes, kept beside the type's own settings).
pub(super) fn parse(
    ctx: &mut Ctx,
    env: &Env,
    table: &TableNode,
) -> Option<(SinkConfig, Option<String>)> {
    let field = table.require(ctx, "type")?;
    let kind = field.str(ctx)?;
    match TYPES.iter().find(|t| t.name == kind) {
        Some(t) => {
            table.check_keys(ctx, t.keys);
            let transform = jq::program(ctx, table, "transform");
            let sink = (t.parse)(ctx, env, table);
            Some((sink?, transform?))
        }
        None => {
            let known: Vec<&str> = TYPES.iter().map(|t| t.name).collect();
            let list = known.join(", ");
            let message = match closest(kind, known.iter().copied()) {
                Some(near) => format!(
                    "unknown sink type {kind:?}; did you mean {near:?}? (expected one of: {list})"
                ),
                None => format!("unknown sink type {kind:?}; expected one of: {list}"),
            };
            field.error(ctx, message);
            None
        }
    }
}

fn file_sink(ctx: &mut Ctx, env: &Env, table: &TableNode) -> Option<SinkConfig> {
    let path = table
        .require(ctx, "path")?
        .parse_str(ctx, |s| path(s, env))?;
    Some(SinkConfig::File(FileSinkConfig { path }))
}

fn stdout_sink(_ctx: &mut Ctx, _env: &Env, _table: &TableNode) -> Option<SinkConfig> {
    Some(SinkConfig::Stdout)
}

fn exec_sink(ctx: &mut Ctx, env: &Env, t: &TableNode) -> Option<SinkConfig> {
    let command = t
        .require(ctx, "command")
        .and_then(|f| command(ctx, env, &f));
    let timeout = duration(ctx, t, "timeout", DEFAULT_EXEC_TIMEOUT, EXEC_TIMEOUT_RANGE);
    let kill_grace = duration(ctx, t, "kill_grace", DEFAULT_KILL_GRACE, KILL_GRACE_RANGE);
    let kill_process_group = t
        .get("kill_process_group")
        .map_or(Some(true), |f| f.bool(ctx));
    let working_dir = working_dir(ctx, env, t);
    let hook_env = t
        .get("env")
        .map_or(Some(BTreeMap::new()), |f| hook_env(ctx, &f));
    let delivery = delivery(
        ctx,
        env,
        t,
        DEFAULT_EXEC_MAX_CONCURRENT,
        DEFAULT_EXEC_RETRIES,
    );
    Some(SinkConfig::Exec(ExecSinkConfig {
        command: command?,
        timeout: timeout?,
        kill_grace: kill_grace?,
        kill_process_group: kill_process_group?,
        working_dir: working_dir?,
        env: hook_env?,
        delivery: delivery?,
    }))
}

fn webhook_sink(ctx: &mut Ctx, env: &Env, t: &TableNode) -> Option<SinkConfig> {
    let url = t.require(ctx, "url").and_then(|f| webhook_url(ctx, &f));
    let headers = t
        .get("headers")
        .map_or(Some(Vec::new()), |f| headers(ctx, env, &f));
    let ca = file_path(ctx, env, t, "certificate_authority", FileKind::Pem);
    if let (Some(url), Some(Some(_)), Some(f)) = (&url, &ca, t.get("certificate_authority")) {
        if url.origin.scheme == Scheme::Http {
            f.error(
                ctx,
                "certificate_authority is set but the url is http:// (no TLS); use an https:// url or remove certificate_authority",
            );
        }
    }
    let timeout = duration(
        ctx,
        t,
        "timeout",
        DEFAULT_WEBHOOK_TIMEOUT,
        WEBHOOK_TIMEOUT_RANGE,
    );
    let delivery = delivery(
        ctx,
        env,
        t,
        DEFAULT_WEBHOOK_MAX_CONCURRENT,
        DEFAULT_WEBHOOK_RETRIES,
    );
    Some(SinkConfig::Webhook(WebhookSinkConfig {
        url: url?,
        headers: headers?,
        certificate_authority: ca?,
        timeout: timeout?,
        delivery: delivery?,
    }))
}

// ---------------------------------------------------------------- delivery

fn delivery(
    ctx: &mut Ctx,
    env: &Env,
    t: &TableNode,
    default_concurrent: usize,
    default_retries: u32,
) -> Option<DeliveryConfig> {
    let max_concurrent = integer(
        ctx,
        t,
        "max_concurrent",
        default_concurrent,
        1,
        MAX_CONCURRENT,
    );
    let retries = integer(ctx, t, "retries", default_retries, 0, MAX_RETRIES);
    let batch_window = duration(
        ctx,
        t,
        "batch_window",
        DEFAULT_BATCH_WINDOW,
        BATCH_WINDOW_RANGE,
    );
    let batch_max = integer(ctx, t, "batch_max", DEFAULT_BATCH_MAX, 1, MAX_BATCH);
    let on_failure = on_failure(ctx, env, t);
    let queue_events = match t.get("queue_events") {
        None => Some(None),
        Some(f) => queue_events(ctx, &f).map(Some),
    };
    let coalesce = boolean(ctx, t, "coalesce", false);
    Some(DeliveryConfig {
        coalesce: coalesce?,
        max_concurrent: max_concurrent?,
        retries: retries?,
        batch_window: batch_window?,
        batch_max: batch_max?,
        on_failure: on_failure?,
        queue_events: queue_events?,
    })
}

#[derive(Clone, Copy)]
enum FailureMode {
    Log,
    DeadLetter,
}

/// `on_failure` and `dead_letter`: the file is required exactly when the
/// mode is "dead_letter", so a path that would silently be ignored, or a
/// mode with nowhere to write, are both refused.
pub(super) fn on_failure(ctx: &mut Ctx, env: &Env, t: &TableNode) -> Option<OnFailure> {
    let mode = with_default(ctx, t, "on_failure", FailureMode::Log, |s| match s {
        "log" => Ok(FailureMode::Log),
        "dead_letter" => Ok(FailureMode::DeadLetter),
        _ => Err(format!(
            "invalid on_failure {s:?}; expected \"log\" or \"dead_letter\""
        )),
    });
    let path = match t.get("dead_letter") {
        None => Some(None),
        Some(f) => {
            let path = f.parse_str(ctx, |s| path(s, env))?;
            if env.check_files() && path.is_dir() {
                f.error(
                    ctx,
                    format!(
                        "{} is a directory; dead_letter names a file to append to",
                        path.display()
                    ),
                );
                return None;
            }
            Some(Some(path))
        }
    };
    match (mode?, path?) {
        (FailureMode::Log, None) => Some(OnFailure::Log),
        (FailureMode::DeadLetter, Some(path)) => Some(OnFailure::DeadLetter(path)),
        (FailureMode::Log, Some(_)) => {
            if let Some(f) = t.get("dead_letter") {
                let default = if t.get("on_failure").is_some() {
                    ""
                } else {
                    " (the default)"
                };
                f.error(
                    ctx,
                    format!("dead_letter is set but on_failure is \"log\"{default}, so it would never be written; set on_failure = \"dead_letter\" or remove dead_letter"),
                );
            }
            None
        }
        (FailureMode::DeadLetter, None) => {
            let pos = t.get("on_failure").map_or(t.pos(), |f| f.pos());
            ctx.error(
                pos,
                &format!("{}.dead_letter", t.path()),
                "missing key `dead_letter`: on_failure = \"dead_letter\" needs the file to append failed records to",
            );
            None
        }
    }
}

// ---------------------------------------------------------------- exec

/// A non-empty array of strings; the first is the program.
fn command(ctx: &mut Ctx, env: &Env, f: &Field) -> Option<Vec<String>> {
    let elements = f.array(ctx)?;
    if elements.is_empty() {
        f.error(
            ctx,
            "must not be empty: give the program and its arguments, e.g. [\"/usr/local/bin/on-change\", \"--verbose\"]",
        );
        return None;
    }
    let mut ok = true;
    let mut argv = Vec::with_capacity(elements.len());
    for (i, element) in elements.iter().enumerate() {
        let Some(s) = element.str(ctx) else {
            ok = false;
            continue;
        };
        let checked = if s.contains('\0') {
            Err("must not contain a NUL character (it cannot be passed to a program)".to_string())
        } else if i == 0 {
            program(s, env)
        } else {
            Ok(s.to_string())
        };
        match element.check(ctx, checked) {
            Some(arg) => argv.push(arg),
            None => ok = false,
        }
    }
    ok.then_some(argv)
}

/// The program: an absolute path, a relative path with a `/` (resolved
/// now), or a bare name for a `PATH` lookup; `${VAR}` and `$VAR` expand as
/// in other paths (the arguments are passed as written). With
/// `check_files()`, it must be an executable file (found in the daemon's
/// `PATH` for a bare name, the same `PATH` hooks inherit).
fn program(s: &str, env: &Env) -> Result<String, String> {
    let s = expand_path_vars(s, env)?;
    let s = s.as_str();
    let shell_hint = "command is an argv array, not a shell string: write [\"/usr/local/bin/on-change\", \"--verbose\"], or [\"/bin/sh\", \"-c\", \"...\"] if a shell is really wanted";
    if s.is_empty() {
        return Err("the program (first element) must not be empty".to_string());
    }
    if s != s.trim() {
        return Err(format!(
            "the program {s:?} has leading or trailing spaces; {shell_hint}"
        ));
    }
    if !s.contains('/') {
        if s.contains(char::is_whitespace) {
            return Err(format!("the program {s:?} contains spaces; {shell_hint}"));
        }
        if s == "." || s == ".." {
            return Err(format!("{s:?} is not a program name"));
        }
        if env.check_files() {
            find_in_path(s)?;
        }
        return Ok(s.to_string());
    }
    let path = resolve_path(s, env.base_dir.as_deref())?;
    if env.check_files() {
        check_executable(&path).map_err(|e| {
            if s.contains(char::is_whitespace) {
                format!("{e}; {shell_hint}")
            } else {
                e
            }
        })?;
    }
    path.to_str().map(str::to_string).ok_or_else(|| {
        format!(
            "{} is not valid UTF-8 (the working directory is not); use an absolute path",
            path.display()
        )
    })
}

fn check_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot use {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "{shown} is not executable (chmod +x it, or run it through its interpreter, e.g. [\"/bin/sh\", {:?}])",
            path.display().to_string()
        ));
    }
    Ok(())
}

fn find_in_path(name: &str) -> Result<(), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .any(|dir| check_executable(&dir.join(name)).is_ok());
    if found {
        Ok(())
    } else {
        Err(format!(
            "program {name:?} is not an executable file in any directory of PATH ({}); use an absolute path",
            path.to_string_lossy()
        ))
    }
}

fn working_dir(ctx: &mut Ctx, env: &Env, t: &TableNode) -> Option<Option<PathBuf>> {
    let Some(f) = t.get("working_dir") else {
        return Some(None);
    };
    let path = f.parse_str(ctx, |s| path(s, env))?;
    if env.check_files() && !path.is_dir() {
        f.error(
            ctx,
            format!("{} is not an existing directory", path.display()),
        );
        return None;
    }
    Some(Some(path))
}

/// `env = { NAME = "value" }`: names as a shell would accept them, never
/// the `KWATCHD_` variables kwatchd sets itself.
fn hook_env(ctx: &mut Ctx, f: &Field) -> Option<BTreeMap<String, String>> {
    let t = f.table(ctx, "{ NAME = \"value\", ... }".to_string())?;
    let mut ok = true;
    let mut vars = BTreeMap::new();
    for (name, entry) in t.entries() {
        let checked_name = check_env_name(&name);
        if let Err(e) = &checked_name {
            ctx.error(entry.key_pos(), entry.path(), e.clone());
            ok = false;
        }
        let value = entry.parse_str(ctx, |v| {
            if v.contains('\0') {
                Err("must not contain a NUL character".to_string())
            } else {
                Ok(v.to_string())
            }
        });
        match (checked_name, value) {
            (Ok(()), Some(value)) => {
                vars.insert(name, value);
            }
            _ => ok = false,
        }
    }
    ok.then_some(vars)
}

fn check_env_name(name: &str) -> Result<(), String> {
    if !is_env_name(name) {
        return Err(format!(
            "invalid environment variable name {name:?}: use A-Z a-z 0-9 _, not starting with a digit"
        ));
    }
    // Case-insensitive: a `kwatchd_event` next to `KWATCHD_EVENT` would
    // only confuse the hook's author.
    if name
        .get(..RESERVED_ENV_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_ENV_PREFIX))
    {
        return Err(format!(
            "{name:?} is reserved: kwatchd sets the KWATCHD_* variables itself"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- webhook

/// A URL; `http://` only to loopback hosts: headers usually carry a token
/// and records carry cluster data.
fn webhook_url(ctx: &mut Ctx, f: &Field) -> Option<WebhookUrl> {
    let url = f.parse_str(ctx, WebhookUrl::parse)?;
    if url.origin.scheme == Scheme::Http && !url.is_loopback() {
        f.error(
            ctx,
            format!(
                "http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost), not {:?}: headers (tokens) and records would travel in clear; use https://",
                url.origin.host
            ),
        );
        return None;
    }
    Some(url)
}

/// `headers = { Name = "value" }`, `${VAR}` expanded now.
fn headers(ctx: &mut Ctx, env: &Env, f: &Field) -> Option<Vec<HttpHeader>> {
    let t = f.table(ctx, "{ Header-Name = \"value\", ... }".to_string())?;
    let mut ok = true;
    let mut headers: Vec<HttpHeader> = Vec::new();
    for (name, entry) in t.entries() {
        let checked_name = check_header_name(&name).and_then(|()| {
            match headers.iter().find(|h| h.name.eq_ignore_ascii_case(&name)) {
                Some(h) => Err(format!(
                    "duplicate header {name:?} (header names are case-insensitive; {:?} is already set)",
                    h.name
                )),
                None => Ok(()),
            }
        });
        if let Err(e) = &checked_name {
            ctx.error(entry.key_pos(), entry.path(), e.clone());
        }
        let value = entry.parse_str(ctx, |raw| {
            check_header_value(raw, None)?;
            expand_vars(raw, env)
        });
        match (checked_name, value) {
            (Ok(()), Some(value)) => headers.push(HttpHeader { name, value }),
            _ => ok = false,
        }
    }
    ok.then_some(headers)
}

/// An RFC 9110 token, and not a header kwatchd sets itself.
fn check_header_name(name: &str) -> Result<(), String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return Err(format!(
            "invalid header name {name:?}: use letters, digits and !#$%&'*+-.^_`|~ (no spaces or colons)"
        ));
    }
    if let Some(reserved) = RESERVED_HEADERS
        .iter()
        .find(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "header {reserved} is set by kwatchd and cannot be configured (reserved: {})",
            RESERVED_HEADERS.join(", ")
        ));
    }
    Ok(())
}

/// No CR/LF (header injection) and no other control character but tab.
/// `var` names the variable the text came from, for the message.
fn check_header_value(text: &str, var: Option<&str>) -> Result<(), String> {
    let Some(c) = text.chars().find(|&c| c.is_control() && c != '\t') else {
        return Ok(());
    };
    let what = match c {
        '\r' | '\n' => "a line break (CR or LF)".to_string(),
        c => format!("the control character {c:?}"),
    };
    Err(match var {
        // Never quote a variable's value: it is usually a secret.
        Some(var) => {
            format!("the value of ${{{var}}} contains {what}, which is not allowed in a header")
        }
        None => format!("header values must not contain {what}"),
    })
}

/// Expands `${NAME}` in a header value; a variable's value is vetted like
/// the value itself.
fn expand_vars(raw: &str, env: &Env) -> Result<String, String> {
    expand(raw, env, Syntax::Braced, &|name, value| {
        check_header_value(value, Some(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fields::Reach;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env {
            base_dir: Some(PathBuf::from("/base")),
            reach: Reach::Environment,
            vars: Some(
                vars.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    #[test]
    fn expansion() {
        let e = env(&[("TOKEN", "s3cr3t"), ("EMPTY", ""), ("BAD", "a\r\nX: y")]);
        assert_eq!(expand_vars("Bearer ${TOKEN}", &e).unwrap(), "Bearer s3cr3t");
        assert_eq!(expand_vars("${TOKEN}${TOKEN}", &e).unwrap(), "s3cr3ts3cr3t");
        assert_eq!(expand_vars("x${EMPTY}y", &e).unwrap(), "xy");
        assert_eq!(
            expand_vars("$$5 $5 $ {x} $$${TOKEN}", &e).unwrap(),
            "$5 $5 $ {x} $s3cr3t"
        );
        assert_eq!(expand_vars("plain", &e).unwrap(), "plain");
        assert_eq!(expand_vars("end$", &e).unwrap(), "end$");
        let err = expand_vars("Bearer ${NOPE}", &e).unwrap_err();
        assert!(err.contains("NOPE is not set"), "{err}");
        let err = expand_vars("${TOKEN", &e).unwrap_err();
        assert!(err.contains("unterminated"), "{err}");
        let err = expand_vars("${1X}", &e).unwrap_err();
        assert!(err.contains("invalid variable name"), "{err}");
        let err = expand_vars("${}", &e).unwrap_err();
        assert!(err.contains("invalid variable name"), "{err}");
        let err = expand_vars("${BAD}", &e).unwrap_err();
        assert!(err.contains("${BAD} contains a line break"), "{err}");
        assert!(!err.contains("X: y"), "value leaked: {err}");
    }

    #[test]
    fn names() {
        for ok in ["A", "_x", "CLUSTER_NAME", "a1"] {
            assert!(check_env_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1A",
            "A-B",
            "A B",
            "É",
            "KWATCHD_EVENT",
            "kwatchd_x",
            "KWATCHD_",
        ] {
            assert!(check_env_name(bad).is_err(), "{bad}");
        }
        assert!(check_env_name("KWATCHDX").is_ok());
        for ok in ["Authorization", "X-Api-Key", "x_y.z~!"] {
            assert!(check_header_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "X Y",
            "X:Y",
            "Ü",
            "host",
            "CONTENT-LENGTH",
            "Connection",
            "content-type",
        ] {
            assert!(check_header_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_debug_redacts_value() {
        let h = HttpHeader {
            name: "Authorization".into(),
            value: "Bearer s3cr3t".into(),
        };
        let shown = format!("{h:?}");
        assert!(
            shown.contains("Authorization") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn programs() {
        let e = env(&[]);
        assert_eq!(program("/usr/bin/x", &e).unwrap(), "/usr/bin/x");
        assert_eq!(program("hooks/x", &e).unwrap(), "/base/hooks/x");
        assert_eq!(program("./x", &e).unwrap(), "/base/x");
        assert_eq!(program("on-change", &e).unwrap(), "on-change");
        for (bad, want) in [
            ("", "must not be empty"),
            ("on-change --verbose", "argv array"),
            (" /x", "leading or trailing"),
            ("..", "not a program name"),
            ("~/x", "not expanded"),
        ] {
            let err = program(bad, &e).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }
}
