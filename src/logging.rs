//! Log records to stderr, one line each, with a UTC timestamp and level.

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::time::SystemTime;

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} {:<5} {}\n",
            humantime::format_rfc3339_millis(SystemTime::now()),
            record.level(),
            record.args()
        );
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
