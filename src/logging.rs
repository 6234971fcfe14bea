//! Log records to stderr, one line each, with a UTC timestamp and level.

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::time::SystemTime;

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

/// Set when stderr goes to journald (`$JOURNAL_STREAM`): lines then start
/// with the syslog priority (`<3>` …) so journald keeps the level, and carry
/// no timestamp of their own (journald adds one).
static JOURNAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if *JOURNAL.get_or_init(|| std::env::var_os("JOURNAL_STREAM").is_some()) {
            format!(
                "<{}>{:<5} {}\n",
                syslog_priority(record.level()),
                record.level(),
                record.args()
            )
        } else {
            format!(
                "{} {:<5} {}\n",
                humantime::format_rfc3339_millis(SystemTime::now()),
                record.level(),
                record.args()
            )
        };
        // One write per record keeps lines whole; a failed write to stderr
        // has nowhere better to be reported.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger. `KWATCHD_LOG_LEVEL` overrides the configured level.
pub fn init(level: LevelFilter) {
    let level = std::env::var("KWATCHD_LOG_LEVEL")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(level);
    // A second init (the demo) only changes the level.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
