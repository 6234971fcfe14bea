//! Log records to stderr, one line each: `TIME LEVEL message`, or with
//! `[daemon] log_format = "json"` one JSON object per line
//! (`{"time","level","target","message"}`) for log shippers.

use crate::config::LogFormat;
use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

/// Set when stderr goes to journald (`$JOURNAL_STREAM` names it): lines then
/// start with the syslog priority (`<3>` …), which journald strips and keeps
/// as the record's level. Text lines then carry no timestamp of their own
/// (journald adds one); JSON lines keep theirs, so the stored message is the
/// same JSON a shipper would read from a plain stderr.
static JOURNAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

static JSON: AtomicBool = AtomicBool::new(false);

fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// `$JOURNAL_STREAM` is `DEVICE:INODE` of the stream journald gave us. It is
/// inherited by children whose stderr may go elsewhere, so it only counts
/// when stderr is that very stream (as systemd's documentation asks).
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat writes into a zeroed stat buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(libc::STDERR_FILENO, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// One record as a text line (without the journald prefix).
fn text_line(out: &mut String, time: Option<SystemTime>, record: &Record<'_>) {
    use std::fmt::Write as _;
    if let Some(t) = time {
        let _ = write!(out, "{} ", humantime::format_rfc3339_millis(t));
    }
    let _ = writeln!(out, "{:<5} {}", record.level(), record.args());
}

/// One record as a JSON object line: `time` (RFC 3339, UTC, milliseconds),
/// `level` (lower case), `target` (the Rust module), `message`.
fn json_line(out: &mut String, time: SystemTime, record: &Record<'_>) {
    let message = record.args().to_string();
    let object = serde_json::json!({
        "time": humantime::format_rfc3339_millis(time).to_string(),
        "level": record.level().as_str().to_ascii_lowercase(),
        "target": record.target(),
        "message": message,
    });
    out.push_str(&object.to_string());
    out.push('\n');
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let journal = *JOURNAL.get_or_init(stderr_is_journal);
        let mut line = String::with_capacity(128);
        if journal {
            line.push_str(&format!("<{}>", syslog_priority(record.level())));
        }
        if JSON.load(Ordering::Relaxed) {
            json_line(&mut line, SystemTime::now(), record);
        } else {
            text_line(&mut line, (!journal).then(SystemTime::now), record);
        }
        // One write per record keeps lines whole; a failed write to stderr
        // has nowhere better to be reported.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger. `KWATCHD_LOG_LEVEL` overrides the configured level.
pub fn init(level: LevelFilter, format: LogFormat) {
    let level = std::env::var("KWATCHD_LOG_LEVEL")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(level);
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    // A second init (the demo) only changes the level and format.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn with_record(f: impl FnOnce(&Record<'_>)) {
        let args = format_args!("watch \"a\"\nsecond line \\ {}", 7);
        let record = Record::builder()
            .args(args)
            .level(log::Level::Warn)
            .target("kwatchd::watch::machine")
            .build();
        f(&record);
    }

    #[test]
    fn json_lines_are_one_object_with_the_four_fields() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        with_record(|r| {
            let mut out = String::new();
            json_line(&mut out, t, r);
            assert!(out.ends_with('\n'));
            assert_eq!(out.matches('\n').count(), 1, "one line: {out}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                v,
                serde_json::json!({
                    "time": "2023-11-14T22:13:20.123Z",
                    "level": "warn",
                    "target": "kwatchd::watch::machine",
                    "message": "watch \"a\"\nsecond line \\ 7",
                })
            );
        });
    }

    #[test]
    fn text_lines_have_time_level_message() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
        with_record(|r| {
            let mut out = String::new();
            text_line(&mut out, Some(t), r);
            assert!(
                out.starts_with("1970-01-01T00:00:01.000Z WARN  watch"),
                "{out}"
            );
            let mut out = String::new();
            text_line(&mut out, None, r);
            assert!(out.starts_with("WARN  watch"), "{out}");
        });
    }
}
