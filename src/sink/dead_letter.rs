//! The dead-letter file: records a sink gave up on, one JSON line each.
//!
//! ```text
//! {"time":"2026-11-22T04:05:06.789Z","sink":"on-change","attempts":4,"reason":"exit status 1","record":{…the record…}}
//! ```
//!
//! Appending blocks the loop for one `open` + `write`. That is accepted
//! here: it happens only after a job exhausted its retries (minutes of
//! backoff), the data is a handful of lines, and a non-blocking writer
//! would need its own queue, bound and backpressure for a rare path. The
//! file is opened for each append, so a rotated or deleted file is simply
//! recreated and no descriptor is held. No fsync: a crash of kwatchd loses
//! nothing once `write` returned; only a crash of the host could.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::dispatch::GaveUp;

/// Mode of a new dead-letter file (before the umask): records carry
/// cluster data, so not world-readable.
const FILE_MODE: u32 = 0o640;
/// Mode of directories created for it (before the umask).
const DIR_MODE: u32 = 0o750;

/// Appends given-up records to one file.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    path: PathBuf,
}

impl DeadLetter {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DeadLetter { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line per record of `gave_up`, in one `write`, creating
    /// the file (0640) and its missing parent directories (0750).
    pub fn append(&mut self, sink: &str, gave_up: &GaveUp) -> io::Result<()> {
        self.append_at(SystemTime::now(), sink, gave_up)
    }

    fn append_at(&mut self, time: SystemTime, sink: &str, gave_up: &GaveUp) -> io::Result<()> {
        let lines = render(time, sink, gave_up);
        if lines.is_empty() {
            return Ok(());
        }
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(parent)
                .map_err(|e| context(e, "cannot create the directory", parent))?;
        }
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&self.path)
            .map_err(|e| context(e, "cannot open", &self.path))?;
        // One write of whole lines: with O_APPEND, concurrent appenders (a
        // second kwatchd, an operator's echo) do not interleave inside it.
        file.write_all(&lines)
            .map_err(|e| context(e, "cannot append to", &self.path))
    }
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("dead-letter file: {what} {}: {e}", path.display()),
    )
}

/// The lines for every record of `gave_up`.
fn render(time: SystemTime, sink: &str, gave_up: &GaveUp) -> Vec<u8> {
    let mut out = Vec::new();
    let time = humantime::format_rfc3339_millis(time).to_string();
    for record in gave_up.records.iter() {
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(time.as_bytes());
        out.extend_from_slice(b"\",\"sink\":");
        push_json_string(&mut out, sink);
        out.extend_from_slice(format!(",\"attempts\":{},\"reason\":", gave_up.attempts).as_bytes());
        push_json_string(&mut out, &gave_up.reason);
        out.extend_from_slice(b",\"record\":");
        let line = record.line.strip_suffix(b"\n").unwrap_or(&record.line);
        if is_one_json_line(line) {
            out.extend_from_slice(line);
        } else {
            // Never expected (records are built by kwatchd), but a broken
            // record must not corrupt the file: keep it as a string.
            push_json_string(&mut out, &String::from_utf8_lossy(line));
        }
        out.extend_from_slice(b"}\n");
    }
    out
}

/// Valid JSON on a single line; checked because the record is spliced raw.
fn is_one_json_line(line: &[u8]) -> bool {
    !line.contains(&b'\n') && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{EventMeta, QueuedRecord};
    use std::os::unix::fs::PermissionsExt;
    use std::rc::Rc;
    use std::time::{Duration, UNIX_EPOCH};

    fn gave_up(lines: &[&str]) -> GaveUp {
        let meta = Rc::new(EventMeta::default());
        GaveUp {
            records: lines
                .iter()
                .map(|l| QueuedRecord {
                    line: l.as_bytes().to_vec(),
                    meta: Rc::clone(&meta),
                    received: std::time::Instant::now(),
                    ack: crate::state::AckRef {
                        watch: 0,
                        seq: 0,
                        rv: None,
                    },
                    coalesced: 0,
                })
                .collect(),
            attempts: 4,
            reason: "exit status 1: \"boom\"\nsecond line".to_string(),
        }
    }

    #[test]
    fn lines_have_the_documented_shape() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let g = gave_up(&[
            "{\"type\":\"ADDED\",\"object\":{\"a\":[1, 2]}}\n",
            "{\"n\":2}\n",
        ]);
        let text = String::from_utf8(render(t, "on-\"change", &g)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            "{\"time\":\"2023-11-14T22:13:20.123Z\",\"sink\":\"on-\\\"change\",\"attempts\":4,\"reason\":\"exit status 1: \\\"boom\\\"\\nsecond line\",\"record\":{\"type\":\"ADDED\",\"object\":{\"a\":[1, 2]}}}"
        );
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["record"]["n"], 2);
        assert_eq!(v["attempts"], 4);
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn broken_record_is_kept_as_a_string() {
        let t = UNIX_EPOCH;
        let g = gave_up(&["{\"open\":\n", "not json", "{\"a\":\n1}\n"]);
        let text = String::from_utf8(render(t, "s", &g)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["record"], "{\"open\":");
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["record"], "not json");
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(v["record"], "{\"a\":\n1}");
    }

    #[test]
    fn appends_creating_file_and_directories_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/dead.jsonl");
        let mut dl = DeadLetter::new(&path);
        dl.append("hook", &gave_up(&["{\"n\":1}\n"])).unwrap();
        dl.append("hook", &gave_up(&["{\"n\":2}\n", "{\"n\":3}\n"]))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let ns: Vec<i64> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["sink"], "hook");
                v["record"]["n"].as_i64().unwrap()
            })
            .collect();
        assert_eq!(ns, vec![1, 2, 3]);
        // The umask may only remove bits.
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !FILE_MODE, 0, "{mode:o}");
        let mode = std::fs::metadata(dir.path().join("a/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode & !DIR_MODE, 0, "{mode:o}");
        // A rotated-away file is recreated.
        std::fs::remove_file(&path).unwrap();
        dl.append("hook", &gave_up(&["{\"n\":4}\n"])).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        assert_eq!(dl.path(), path);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let mut dl = DeadLetter::new(blocker.join("dead.jsonl"));
        let e = dl.append("s", &gave_up(&["{}\n"])).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with("dead-letter file: cannot create the directory"),
            "{shown}"
        );
        assert!(shown.contains(&blocker.display().to_string()), "{shown}");
        let mut dl = DeadLetter::new(dir.path());
        let e = dl.append("s", &gave_up(&["{}\n"])).unwrap_err();
        assert!(e.to_string().contains("cannot open"), "{e}");
        // Nothing to write: no file is created.
        let mut dl = DeadLetter::new(dir.path().join("empty.jsonl"));
        dl.append("s", &gave_up(&[])).unwrap();
        assert!(!dir.path().join("empty.jsonl").exists());
    }
}
