//! The state directory: opens the store at start (setting aside a corrupt
//! one, migrating older checkpoint files), hands each watch what was saved
//! for it, and passes batches of changes to the writer thread.

use super::db::{self, Op, Saved, SyncMode};
use super::migrate;
use super::writer::Writer;
use mio::Waker;
use std::collections::HashMap;
use std::fmt;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

impl std::error::Error for StateDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

pub struct StateStore {
    dir: PathBuf,
    writer: Writer,
    /// What the file held at start, handed out watch by watch.
    saved: HashMap<String, Saved>,
    /// Changes for the next batch.
    queued: Vec<Op>,
    /// The id of the last batch sent.
    batch: u64,
    /// The last batch the sinks must wait for.
    gate: u64,
}

impl StateStore {
    /// Creates the directory if needed, opens the store (setting aside a
    /// corrupt one), proves it can commit, and takes in the checkpoint
    /// files of an older kwatchd. `waker` wakes the loop when a batch it
    /// waits for is committed.
    pub fn open(
        dir: &Path,
        sync: (SyncMode, Duration),
        waker: Arc<Waker>,
    ) -> Result<StateStore, StateDirError> {
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
        let path = dir.join(db::FILE_NAME);
        let (database, handle) = match db::open(&path, sync.0) {
            Ok(opened) => opened,
            Err(e)
                if e.io().is_some_and(|e| {
                    !matches!(
                        e.kind(),
                        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                    )
                }) =>
            {
                return Err(fail("cannot write there", io::Error::other(e)))
            }
            Err(e) => {
                let bad = PathBuf::from(format!("{}.bad", path.display()));
                let moved = match std::fs::rename(&path, &bad) {
                    Ok(()) => format!("moved aside to {}", bad.display()),
                    Err(e) => format!("could not be moved aside ({e})"),
                };
                log::warn!(
                    "state store {} ignored: it is corrupt ({e}); {moved}; every watch lists afresh",
                    path.display()
                );
                db::open(&path, sync.0)
                    .map_err(|e| fail("cannot write there", io::Error::other(e)))?
            }
        };
        migrate::run(dir, &database);
        match db::fold_fresh(&database) {
            Ok(0) => {}
            Ok(n) => log::info!(
                "state store: {n} objects were first reported before the last stop and not handled yet; taken as unconfirmed"
            ),
            Err(e) => return Err(fail("cannot write there", io::Error::other(e))),
        }
        let saved = db::load_all(&database)
            .map_err(|e| fail("cannot read the state store", io::Error::other(e)))?;
        let writer = Writer::spawn(path, database, handle, sync, waker)
            .map_err(|e| fail("cannot start the state writer", e))?;
        Ok(StateStore {
            dir: dir.to_owned(),
            writer,
            saved,
            queued: Vec::new(),
            batch: 0,
            gate: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the store held for `watch` at start (once).
    pub fn take_saved(&mut self, watch: &str) -> Option<Saved> {
        self.saved.remove(watch)
    }

    /// What a stopped watch left, for a watch of its name started later.
    pub fn put_saved(&mut self, watch: &str, saved: Saved) {
        self.saved.insert(watch.to_owned(), saved);
    }

    /// Queues `ops` for the next batch ([`StateStore::send`]): whatever
    /// the number of watches that changed, one message to the writer per
    /// turn.
    pub fn submit(&mut self, mut ops: Vec<Op>) {
        if self.queued.is_empty() {
            std::mem::swap(&mut self.queued, &mut ops);
        } else {
            self.queued.append(&mut ops);
        }
    }

    /// Where changes are queued for the next batch.
    pub fn queue(&mut self) -> &mut Vec<Op> {
        &mut self.queued
    }

    /// Hands what is queued to the writer as one batch and returns its id
    /// (`None`: nothing was queued). `gate`: the sinks wait for it, and the
    /// writer wakes the loop once it is committed.
    pub fn send(&mut self, gate: bool) -> Option<u64> {
        if self.queued.is_empty() {
            return None;
        }
        self.batch += 1;
        if gate {
            self.gate = self.batch;
        }
        let capacity = self.queued.len();
        let ops = std::mem::replace(&mut self.queued, Vec::with_capacity(capacity));
        self.writer.submit(self.batch, ops, gate);
        Some(self.batch)
    }

    /// The id of the last batch committed (every earlier one is, too).
    pub fn committed(&self) -> u64 {
        self.writer.progress().committed()
    }

    /// A batch the sinks wait for is not committed yet.
    pub fn gate_waiting(&self) -> bool {
        self.committed() < self.gate
    }

    /// Why commits fail, while they do.
    pub fn failing(&self) -> Option<String> {
        self.writer.progress().failing()
    }

    /// Commits what is queued, waiting at most `timeout`.
    pub fn finish(mut self, timeout: Duration) {
        self.send(false);
        if !self.writer.finish(timeout) {
            log::error!(
                "the state store in {} was not committed within {} s (a hung or full disk?); a restart may deliver some events again",
                self.dir.display(),
                timeout.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition of a `pods` watch whose filter digest is `digest`.
    fn filtered(digest: &str) -> crate::state::Fingerprint {
        crate::state::Fingerprint::of_test_pods(digest)
    }

    fn waker() -> (mio::Poll, Arc<Waker>) {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        (poll, waker)
    }

    #[test]
    fn a_corrupt_store_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join(db::FILE_NAME), vec![7u8; 8192]).unwrap();
        let (_poll, w) = waker();
        let store = StateStore::open(&state, (SyncMode::None, Duration::from_secs(1)), w).unwrap();
        assert!(state.join("kwatchd.redb.bad").exists());
        store.finish(Duration::from_secs(10));
    }

    #[test]
    fn another_filter_keeps_the_position_and_drops_the_memory() {
        use crate::filter::Memory;
        use crate::state::persistence::{Persistence, Resume};
        use crate::watch::index::IndexEntry;
        let memory = Memory {
            reported: true,
            projection: Some(br#"["nginx:1"]"#.to_vec().into_boxed_slice()),
        };
        let dir = tempfile::tempdir().unwrap();
        let sync = (SyncMode::None, Duration::from_secs(1));
        let open = || {
            let (poll, w) = waker();
            (poll, StateStore::open(dir.path(), sync, w).unwrap())
        };
        let (_poll, mut store) = open();
        let watch: Arc<str> = Arc::from("pods");
        let entry = IndexEntry::new(Some("ns"), "web", "7").with_memory(Some(memory.clone()));
        store.submit(vec![
            Op::Watch {
                watch: Arc::clone(&watch),
                row: db::WatchRow {
                    fingerprint: filtered("aaaa"),
                    resource_version: Some("42".into()),
                },
            },
            Op::Put {
                watch: Arc::clone(&watch),
                key: "u1".into(),
                entry: db::encode_index_entry(&entry),
            },
        ]);
        store.finish(Duration::from_secs(10));
        let resumed = |digest: &str| {
            let (_poll, mut store) = open();
            let (_, resume) = Persistence::resume(&mut store, "pods", filtered(digest));
            store.finish(Duration::from_secs(10));
            match resume {
                Some(Resume::At {
                    resource_version,
                    index,
                }) => (resource_version, index.get("u1").unwrap().to_entry()),
                other => panic!("{other:?}"),
            }
        };
        let (rv, same) = resumed("aaaa");
        assert_eq!((rv.as_str(), same.memory()), ("42", Some(&memory)));
        let (rv, other) = resumed("bbbb");
        assert_eq!(rv, "42", "the position holds");
        assert_eq!(other.resource_version(), "7");
        assert_eq!(other.memory(), None);
        // The store took the new digest and the entry without memory: the
        // next start under "bbbb" finds no stale memory to drop.
        let (_poll, store) = open();
        let saved = db::positions(dir.path()).unwrap();
        assert_eq!(saved["pods"].as_deref(), Some("42"));
        store.finish(Duration::from_secs(10));
        let (_poll, mut store) = open();
        let kept = store.take_saved("pods").unwrap();
        assert_eq!(kept.row.fingerprint.filter, "bbbb");
        assert_eq!(kept.objects.get("u1").unwrap().memory(), None);
        store.finish(Duration::from_secs(10));
    }

    /// The first save of a big list goes to the writer as buffers of
    /// [`db::PUTS_PER_OP`] entries, committed in slices; the position
    /// comes with the last, and every entry is there after a restart.
    #[test]
    fn a_big_save_is_committed_in_slices_with_its_position_last() {
        use crate::state::persistence::{Persistence, Resume};
        use crate::watch::index::{IndexEntry, ObjectIndex};
        use crate::watch::Progress;
        let fp = filtered("");
        let dir = tempfile::tempdir().unwrap();
        let sync = (SyncMode::None, Duration::from_secs(1));
        let (_poll, w) = waker();
        let mut store = StateStore::open(dir.path(), sync, w).unwrap();
        let (mut watch, _) = Persistence::resume(&mut store, "pods", fp.clone());
        let n = 2 * db::PUTS_PER_OP + 5;
        // Uids, and keys that are not (objects without one).
        let key = |i: usize| match i % 2 {
            0 => format!("00000000-0000-4000-8000-{i:012x}"),
            _ => format!("ns/pod-{i}"),
        };
        let mut index = ObjectIndex::default();
        for i in 0..n {
            let k = key(i);
            let rv = (i + 10).to_string();
            index.insert_entry(&k, &IndexEntry::new(Some("ns"), &format!("pod-{i}"), &rv));
            watch.record(Progress::changed(&k, None, None), 0);
        }
        // One of them went again before the list ended.
        let gone = key(3);
        let previous = index.remove(&gone);
        watch.record(Progress::changed(&gone, previous, None), 0);
        // A save round writes a part: no position yet, still dirty.
        watch.save_at_most(&mut store, &index, db::PUTS_PER_OP);
        assert!(watch.is_dirty());
        let watch_rows = |store: &mut StateStore| {
            (store.queue().iter())
                .filter(|op| matches!(op, Op::Watch { .. }))
                .count()
        };
        assert_eq!(watch_rows(&mut store), 1, "only the row resume wrote");
        let id = store.send(false).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(30);
        while store.committed() < id && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let part = db::saved(dir.path()).unwrap().remove("pods").unwrap();
        assert_eq!(part.row.resource_version, None);
        assert!(part.objects.len() <= db::PUTS_PER_OP);
        // One written in that part changes again: taken again.
        let (again, _) = part.objects.iter().next().unwrap();
        let again = again.to_string();
        let previous = index.remove(&again);
        index.insert_entry(&again, &IndexEntry::new(Some("ns"), "renamed", "5"));
        watch.record(Progress::changed(&again, previous, None), 0);
        watch.record(Progress::version("99999"), 0);
        watch.save(&mut store, &index);
        assert!(!watch.is_dirty());
        let puts = (store.queue().iter())
            .filter(|op| matches!(op, Op::Puts { .. }))
            .count();
        assert!(puts >= 2, "{puts} buffers of at most {}", db::PUTS_PER_OP);
        assert!(
            matches!(store.queue().last(), Some(Op::Watch { .. })),
            "the position comes last"
        );
        store.finish(Duration::from_secs(30));

        let (_poll, w) = waker();
        let mut store = StateStore::open(dir.path(), sync, w).unwrap();
        let (_, resume) = Persistence::resume(&mut store, "pods", fp);
        store.finish(Duration::from_secs(10));
        let Some(Resume::At {
            resource_version,
            index: saved,
        }) = resume
        else {
            panic!("no position: {resume:?}");
        };
        assert_eq!(resource_version, "99999");
        assert_eq!(saved.len(), n - 1);
        assert!(saved.get(&gone).is_none());
        for i in (0..n).filter(|&i| i != 3) {
            let e = saved.get(&key(i)).unwrap();
            let want = match key(i) == again {
                true => ("renamed".to_owned(), "5".to_owned()),
                false => (format!("pod-{i}"), (i + 10).to_string()),
            };
            assert_eq!(
                (e.name().to_owned(), e.resource_version().into_owned()),
                want
            );
        }
    }

    #[test]
    fn an_unwritable_state_dir_names_the_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let (_poll, w) = waker();
        let e = StateStore::open(
            &file.join("state"),
            (SyncMode::None, Duration::from_secs(1)),
            w,
        )
        .err()
        .unwrap();
        let text = e.to_string();
        assert!(text.starts_with("[daemon] state_dir "), "{text}");
        assert!(text.contains(&file.join("state").display().to_string()));
    }
}
