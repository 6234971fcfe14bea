//! `[daemon]`: process-wide settings (logging, limits, the metrics listener,
//! shutdown and state). Every key has a default, so the table is optional.

use std::path::PathBuf;
use std::time::Duration;

use toml_edit::Value;

use super::doc::{Ctx, Field, TableNode};
use super::fields::{duration, optional, path, queue_events, with_default, Env};
use super::syntax::{parse_log_level, parse_size};

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
    "log_format",
    "shutdown_timeout",
    "state_dir",
];

const MIN_LINE_BYTES: u64 = 1 << 10;
const MAX_LINE_BYTES: u64 = 1 << 30;
const SHUTDOWN_TIMEOUT_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));

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

/// Parses `[daemon]` from the root table; defaults when it is absent.
pub(super) fn parse(ctx: &mut Ctx, env: &Env, root: &TableNode) -> Option<DaemonConfig> {
    let Some(field) = root.get("daemon") else {
        return Some(DaemonConfig::default());
    };
    let t = field.table(ctx, "[daemon]".to_string())?;
    t.check_keys(ctx, KEYS);
    let defaults = DaemonConfig::default();
    let log_level = with_default(ctx, &t, "log_level", defaults.log_level, parse_log_level);
    let max_line_bytes = t
        .get("max_line_bytes")
        .map_or(Some(defaults.max_line_bytes), |f| max_line_bytes(ctx, &f));
    let sink_queue_events = t
        .get("sink_queue_events")
        .map_or(Some(defaults.sink_queue_events), |f| queue_events(ctx, &f));
    let metrics_listen = optional(ctx, &t, "metrics_listen", parse_listen_addr);
    let log_format = with_default(ctx, &t, "log_format", defaults.log_format, LogFormat::parse);
    let shutdown_timeout = duration(
        ctx,
        &t,
        "shutdown_timeout",
        defaults.shutdown_timeout,
        SHUTDOWN_TIMEOUT_RANGE,
    );
    let state_dir = with_default(ctx, &t, "state_dir", defaults.state_dir, |s| path(s, env));
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
