//! `[daemon]`: process-wide settings (logging, limits, the metrics listener,
//! shutdown and state). Every key has a default, so the table is optional.

use std::path::PathBuf;
use std::time::Duration;

use super::doc::{Ctx, Field, TableNode};
use super::fields::{
    duration, file_path, optional, path, queue_events, size, with_default, Env, FileKind,
};
use super::leader::{self, LeaderElectionConfig};
use super::syntax::parse_log_level;

/// Default `daemon.max_line_bytes`: 16 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;
/// Default `daemon.sink_queue_events`.
pub const DEFAULT_SINK_QUEUE_EVENTS: usize = 4096;
/// Default `daemon.shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `daemon.state_dir` (systemd's `StateDirectory=kwatchd`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/kwatchd";

/// Every key of `[daemon]`.
pub(crate) const KEYS: &[&str] = &[
    "log_level",
    "max_line_bytes",
    "sink_queue_events",
    "metrics_listen",
    "metrics_token_file",
    "log_format",
    "shutdown_timeout",
    "state_dir",
    "sync",
    "sync_interval",
];

const MIN_LINE_BYTES: u64 = 1 << 10;
const MAX_LINE_BYTES: u64 = 1 << 30;
const SHUTDOWN_TIMEOUT_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));
/// Default `daemon.sync_interval`.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
const SYNC_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(3600));

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub log_level: log::LevelFilter,
    /// Longest watch-event line accepted, in bytes.
    pub max_line_bytes: usize,
    /// Per-sink queue bound, in events (>= 1).
    pub sink_queue_events: usize,
    /// Where `/metrics`, `/healthz`, `/readyz` and `/status` are served;
    /// `None`: off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// A bearer token `/metrics` and `/status` require (re-read when the
    /// file changes); `None`: no authentication.
    pub metrics_token_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// How long running hooks and queued deliveries get at shutdown before
    /// their process groups are killed.
    pub shutdown_timeout: Duration,
    /// Where the state store lives (absolute).
    pub state_dir: PathBuf,
    /// When the state store and file sinks fsync.
    pub sync: SyncMode,
    /// With `sync = "interval"`: at most this long between fsyncs.
    pub sync_interval: Duration,
    /// `[daemon.leader_election]`; `None`: this replica always delivers.
    pub leader_election: Option<LeaderElectionConfig>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            log_level: log::LevelFilter::Info,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            sink_queue_events: DEFAULT_SINK_QUEUE_EVENTS,
            metrics_listen: None,
            metrics_token_file: None,
            log_format: LogFormat::Text,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            sync: SyncMode::Interval,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            leader_election: None,
        }
    }
}

/// `daemon.sync`: when what kwatchd writes is fsynced (the state store,
/// file sinks), i.e. what a host crash (power loss, kernel panic) can take
/// back. A killed process loses nothing either way: every write reaches the
/// page cache first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Never: the kernel writes back when it likes (about 30 s).
    None,
    /// At most every `sync_interval`.
    Interval,
    /// Before a write counts: a file sink record is handled, a store commit
    /// done, only after its fsync.
    Always,
}

impl SyncMode {
    pub const ALL: [SyncMode; 3] = [SyncMode::None, SyncMode::Interval, SyncMode::Always];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::None => "none",
            SyncMode::Interval => "interval",
            SyncMode::Always => "always",
        }
    }

    pub fn parse(s: &str) -> Result<SyncMode, String> {
        SyncMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("invalid sync mode {s:?}; expected \"none\", \"interval\" or \"always\"")
            })
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

/// Parses `[daemon]` from the root table; defaults when it is absent.
/// `clusters`: the names of `[clusters.NAME]`, which the Lease's `cluster` names.
pub(super) fn parse(
    ctx: &mut Ctx,
    env: &Env,
    root: &TableNode,
    clusters: &[String],
) -> Option<DaemonConfig> {
    let Some(field) = root.get("daemon") else {
        return Some(DaemonConfig::default());
    };
    let t = field.table(ctx, "[daemon]".to_string())?;
    t.check_keys(ctx, &[KEYS, &["leader_election"]].concat());
    let defaults = DaemonConfig::default();
    let log_level = with_default(ctx, &t, "log_level", defaults.log_level, parse_log_level);
    let max_line_bytes = t
        .get("max_line_bytes")
        .map_or(Some(defaults.max_line_bytes), |f| max_line_bytes(ctx, &f));
    let sink_queue_events = t
        .get("sink_queue_events")
        .map_or(Some(defaults.sink_queue_events), |f| queue_events(ctx, &f));
    let metrics_listen = optional(ctx, &t, "metrics_listen", parse_listen_addr);
    let metrics_token_file = file_path(ctx, env, &t, "metrics_token_file", FileKind::Token);
    if let (Some(f), None) = (t.get("metrics_token_file"), t.get("metrics_listen")) {
        f.error(
            ctx,
            "has no effect without metrics_listen (no metrics endpoint is served)".to_string(),
        );
    }
    let log_format = with_default(ctx, &t, "log_format", defaults.log_format, LogFormat::parse);
    let shutdown_timeout = duration(
        ctx,
        &t,
        "shutdown_timeout",
        defaults.shutdown_timeout,
        SHUTDOWN_TIMEOUT_RANGE,
    );
    let state_dir = with_default(ctx, &t, "state_dir", defaults.state_dir, |s| path(s, env));
    let sync = with_default(ctx, &t, "sync", defaults.sync, SyncMode::parse);
    let sync_interval = duration(
        ctx,
        &t,
        "sync_interval",
        defaults.sync_interval,
        SYNC_INTERVAL_RANGE,
    );
    let leader_election = leader::parse(ctx, &t, clusters);
    Some(DaemonConfig {
        log_level: log_level?,
        max_line_bytes: max_line_bytes?,
        sink_queue_events: sink_queue_events?,
        metrics_listen: metrics_listen?,
        metrics_token_file: metrics_token_file?,
        log_format: log_format?,
        shutdown_timeout: shutdown_timeout?,
        state_dir: state_dir?,
        sync: sync?,
        sync_interval: sync_interval?,
        leader_election: leader_election?,
    })
}

/// Integer bytes or a size string, within [1 KiB, 1 GiB].
fn max_line_bytes(ctx: &mut Ctx, f: &Field) -> Option<usize> {
    size(ctx, f, (MIN_LINE_BYTES, MAX_LINE_BYTES))
}
