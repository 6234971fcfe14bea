//! The state directory: checks it at start, loads each watch's checkpoint
//! (setting aside unusable ones), and hands rendered checkpoints to the
//! writer thread.

use super::checkpoint::{self, Checkpoint, Fingerprint};
use super::journal::Journal;
use super::ledger::Ledger;
use super::writer::CheckpointWriter;
use crate::watch::index::ObjectIndex;
use std::fmt;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Mode of the state directory when kwatchd creates it (before the umask).
const DIR_MODE: u32 = 0o750;

/// The state directory cannot be used.
#[derive(Debug)]
pub struct StateDirError {
    pub path: PathBuf,
    pub what: &'static str,
    pub error: io::Error,
}

impl fmt::Display for StateDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[daemon] state_dir {}: {}: {}; set [daemon] state_dir to a directory kwatchd may write (under systemd, StateDirectory=kwatchd provides /var/lib/kwatchd)",
            self.path.display(),
            self.what,
            self.error
        )
    }
}

impl std::error::Error for StateDirError {}

/// Where one watch's checkpoint goes and what it must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointTarget {
    pub watch: String,
    pub fingerprint: Fingerprint,
    pub path: PathBuf,
}

pub struct StateStore {
    dir: PathBuf,
    writer: CheckpointWriter,
    /// Reused for rendering.
    buf: Vec<u8>,
}

impl StateStore {
    /// Creates the directory if needed and checks it can be written.
    pub fn open(dir: &Path) -> Result<StateStore, StateDirError> {
        let fail = |what, error| StateDirError {
            path: dir.to_owned(),
            what,
            error,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| fail("cannot create the directory", e))?;
        // Per process: two daemons probing one directory must not trip
        // over each other's probe.
        let probe = dir.join(format!(".kwatchd-write-test.{}", std::process::id()));
        super::writer::write_atomic(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| fail("cannot write there", e))?;
        let writer =
            CheckpointWriter::spawn().map_err(|e| fail("cannot start the checkpoint writer", e))?;
        Ok(StateStore {
            dir: dir.to_owned(),
            writer,
            buf: Vec::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn target(&self, watch: &str, fingerprint: Fingerprint) -> CheckpointTarget {
        CheckpointTarget {
            watch: watch.to_owned(),
            fingerprint,
            path: self.dir.join(checkpoint::file_name(watch)),
        }
    }

    /// The watch's checkpoint, if there is a usable one. A file that cannot
    /// be read, does not parse, or was written for another definition of
    /// the watch is reported and renamed to `*.bad` (replacing an older
    /// one), so the operator can look at it and it is not tried again; the
    /// watch then starts afresh.
    pub fn load(&self, target: &CheckpointTarget) -> Option<Checkpoint> {
        let bytes = match std::fs::read(&target.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                log::warn!(
                    "watch {}: cannot read the checkpoint {}: {e}; ignored, the watch lists afresh",
                    target.watch,
                    target.path.display()
                );
                return None;
            }
        };
        let reason = match checkpoint::decode(&bytes) {
            Ok(mut c) => {
                let diff = c.fingerprint.differences(&target.fingerprint);
                if diff.is_empty() && c.watch == target.watch {
                    if c.fingerprint.filter != target.fingerprint.filter {
                        forget_filter_memory(&mut c, target);
                    }
                    return Some(c);
                }
                if diff.is_empty() {
                    format!("it was written for watch {:?}", c.watch)
                } else {
                    format!(
                        "it was written for another definition of the watch ({})",
                        diff.join(", ")
                    )
                }
            }
            Err(e) => format!("it is corrupt: {e}"),
        };
        let mut bad = target.path.clone().into_os_string();
        bad.push(".bad");
        let bad = PathBuf::from(bad);
        let moved = match std::fs::rename(&target.path, &bad) {
            Ok(()) => format!("moved aside to {}", bad.display()),
            Err(e) => format!("could not be moved aside ({e}); it is overwritten later"),
        };
        log::warn!(
            "watch {}: checkpoint {} ignored: {reason}; {moved}; the watch lists afresh",
            target.watch,
            target.path.display()
        );
        None
    }

    /// Renders the ledger's committed state (`index` is the watch's
    /// current index) and queues it for writing, if it changed and the
    /// watch has a position to resume from. While the previous checkpoint
    /// of the watch is still being written, nothing is rendered (the state
    /// stays dirty for the next call) unless `finally` (at shutdown).
    pub fn save(
        &mut self,
        target: &CheckpointTarget,
        ledger: &mut Ledger,
        index: &ObjectIndex,
        journal: Option<&mut Journal>,
        finally: bool,
    ) {
        if !ledger.is_dirty() || (!finally && self.writer.is_busy(&target.path)) {
            return;
        }
        let Some(rv) = ledger.committed_version() else {
            // Nothing to resume from yet (a first list not fully handled):
            // a restart lists afresh, as it would without a file.
            return;
        };
        let view = ledger.committed_view(index);
        checkpoint::encode(
            &target.watch,
            &target.fingerprint,
            rv,
            view.len(),
            |f| view.for_each(f),
            &mut self.buf,
        );
        ledger.take_dirty();
        let bytes = std::mem::take(&mut self.buf);
        // The snapshot holds every object journalled so far (uncommitted
        // new ones as unconfirmed).
        let obsoletes = journal.and_then(Journal::rotate);
        self.writer.submit(target.path.clone(), bytes, obsoletes);
    }

    /// Waits (at most `timeout`) for every queued checkpoint to be written.
    pub fn finish(self, timeout: Duration) {
        if !self.writer.finish(timeout) {
            log::error!(
                "checkpoints in {} were not all written within {} s (a hung disk?); a restart may deliver some events again",
                self.dir.display(),
                timeout.as_secs()
            );
        }
    }
}

/// The watch's `select`, `changes` or `redact` changed since the
/// checkpoint was written: its position holds, what was reported under the
/// old keys does not (each object's next event is compared against
/// nothing).
fn forget_filter_memory(c: &mut Checkpoint, target: &CheckpointTarget) {
    let mut had = 0usize;
    for entry in c.objects.values_mut() {
        if entry.memory().is_some() {
            had += 1;
            entry.clear_memory();
        }
    }
    log::info!(
        "watch {}: select, changes or redact changed since the checkpoint; the filter's memory of {had} objects is reset (each object's next event is reported, compared against nothing)",
        target.watch
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::Progress;

    fn fp(label: Option<&str>) -> Fingerprint {
        Fingerprint {
            cluster: "c".into(),
            server: "http://127.0.0.1:1".into(),
            api_version: "v1".into(),
            resource: "pods".into(),
            path: "/api/v1/pods".into(),
            namespace: None,
            label_selector: label.map(str::to_owned),
            field_selector: None,
            filter: String::new(),
        }
    }

    #[test]
    fn saves_and_loads_and_sets_aside_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut store = StateStore::open(&state).unwrap();
        let target = store.target("web.pods", fp(Some("a=1")));
        assert_eq!(store.load(&target), None);
        let mut ledger = Ledger::new();
        ledger.record(Progress::version("42"), 0);
        store.save(&target, &mut ledger, &ObjectIndex::default(), None, false);
        assert!(!ledger.is_dirty());
        store.finish(Duration::from_secs(10));

        let store = StateStore::open(&state).unwrap();
        let loaded = store.load(&target).unwrap();
        assert_eq!(loaded.resource_version, "42");
        // Another selector: set aside, not loaded again.
        let other = store.target("web.pods", fp(Some("a=2")));
        assert_eq!(store.load(&other), None);
        assert!(!other.path.exists());
        assert!(state.join("web%2Epods.checkpoint.bad").exists());
        // Garbage: set aside too.
        std::fs::write(&target.path, "not a checkpoint\n").unwrap();
        assert_eq!(store.load(&target), None);
        assert!(!target.path.exists());
    }

    #[test]
    fn another_filter_keeps_the_position_and_drops_the_memory() {
        use crate::filter::Memory;
        use crate::kube::ObjectMeta;
        use std::borrow::Cow;
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        let filtered = |digest: &str| Fingerprint {
            filter: digest.into(),
            ..fp(None)
        };
        let target = store.target("pods", filtered("aaaa"));
        let mut index = ObjectIndex::default();
        let meta = ObjectMeta {
            name: Some(Cow::Borrowed("web")),
            namespace: Some(Cow::Borrowed("ns")),
            uid: Some(Cow::Borrowed("u1")),
            resource_version: Some(Cow::Borrowed("7")),
        };
        index.upsert("u1", &meta);
        let memory = Memory {
            reported: true,
            projection: Some(br#"["nginx:1"]"#.to_vec().into_boxed_slice()),
        };
        index.set_memory("u1", Some(memory.clone()));
        let mut ledger = Ledger::new();
        ledger.record(Progress::version("42"), 0);
        store.save(&target, &mut ledger, &index, None, false);
        store.finish(Duration::from_secs(10));

        let store = StateStore::open(dir.path()).unwrap();
        let same = store.load(&target).unwrap();
        assert_eq!(same.objects["u1"].memory(), Some(&memory));
        let other = store.target("pods", filtered("bbbb"));
        let loaded = store.load(&other).unwrap();
        assert_eq!(loaded.resource_version, "42");
        assert_eq!(loaded.objects["u1"].resource_version(), "7");
        assert_eq!(loaded.objects["u1"].memory(), None);
    }

    #[test]
    fn an_unwritable_state_dir_names_the_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = StateStore::open(&file.join("state")).err().unwrap();
        let text = e.to_string();
        assert!(text.starts_with("[daemon] state_dir "), "{text}");
        assert!(text.contains(&file.join("state").display().to_string()));
    }
}
