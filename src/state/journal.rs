//! The objects a watch reported for the first time since its last
//! checkpoint: a line per object, appended before the sinks see the event.
//!
//! A checkpoint holds the index the sinks have *handled*. An object whose
//! first event the sinks got after the last checkpoint write is not in it;
//! if kwatchd is killed then, the object deleted while it is down and the
//! server's history compacted past that point, the relist after the restart
//! cannot know the object was ever reported, and its DELETED would be lost.
//! So the key of every new object goes here first — a `write()` per loop
//! turn, before any sink acts on the turn's records (a killed process loses
//! nothing written; like the file sinks, a host crash may lose the page
//! cache) — and a restart adds the keys to the checkpoint's index as
//! unconfirmed, which a relist then reports: DELETED if the object is gone.
//!
//! Each checkpoint write also covers the journal so far (see
//! `Ledger::committed_view`: uncommitted new objects are written as
//! unconfirmed), so at every checkpoint the journal is moved aside to
//! `*.new.old`, which the checkpoint writer removes once the checkpoint is
//! on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const FILE_MODE: u32 = 0o640;

/// One journalled object: key, namespace, name, the resourceVersion
/// reported.
pub type JournalEntry = (String, Option<String>, String, String);

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    old: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
    /// The identity of the event being fanned out (see `stage`).
    namespace: String,
    name: String,
    resource_version: String,
    /// A write failed; said once until one succeeds.
    failing: bool,
}

fn paths(checkpoint: &Path) -> (PathBuf, PathBuf) {
    let mut new = checkpoint.as_os_str().to_owned();
    new.push(".new");
    let mut old = new.clone();
    old.push(".old");
    (PathBuf::from(new), PathBuf::from(old))
}

impl Journal {
    /// The journal of the watch whose checkpoint file is `checkpoint`.
    pub fn new(checkpoint: &Path) -> Journal {
        let (path, old) = paths(checkpoint);
        Journal {
            path,
            old,
            file: None,
            buf: Vec::new(),
            namespace: String::new(),
            name: String::new(),
            resource_version: String::new(),
            failing: false,
        }
    }

    /// The identity of the event about to be handed to the sinks; `record`
    /// journals it if its step turns out to add a new object.
    pub fn stage(&mut self, namespace: &str, name: &str, resource_version: &str) {
        self.namespace.clear();
        self.namespace.push_str(namespace);
        self.name.clear();
        self.name.push_str(name);
        self.resource_version.clear();
        self.resource_version.push_str(resource_version);
    }

    /// The staged event's step added `key` to the index.
    pub fn record(&mut self, key: &str) {
        let namespace = (!self.namespace.is_empty()).then_some(self.namespace.as_str());
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(
            &mut self.buf,
            &(key, namespace, &self.name, &self.resource_version),
        );
        self.buf.push(b'\n');
    }

    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Appends what was recorded. Called once per loop turn, before the
    /// sinks run.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let result = match &mut self.file {
            Some(f) => f.write_all(&self.buf),
            None => OpenOptions::new()
                .create(true)
                .append(true)
                .mode(FILE_MODE)
                .open(&self.path)
                .and_then(|mut f| {
                    f.write_all(&self.buf)?;
                    self.file = Some(f);
                    Ok(())
                }),
        };
        self.buf.clear();
        match result {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    log::info!("journal {}: written again", self.path.display());
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    let msg = format!(
                        "journal {}: cannot write: {e}; until it can, a crash may lose the DELETED of objects first reported since the last checkpoint",
                        self.path.display()
                    );
                    if crate::fdlimit::is_exhaustion(&e) {
                        // Every watch's journal fails alike.
                        crate::fdlimit::warn_exhausted(&msg);
                    } else {
                        log::error!("{msg}");
                    }
                }
            }
        }
    }

    /// At a checkpoint (which covers everything journalled so far): moves
    /// the journal aside and returns the path to remove once the checkpoint
    /// is written. While an older one still waits (its checkpoint was not
    /// written yet, or failed), that one is returned instead and the journal
    /// keeps growing until the next checkpoint.
    pub fn rotate(&mut self) -> Option<PathBuf> {
        self.flush();
        if self.old.exists() {
            return Some(self.old.clone());
        }
        self.file = None;
        match std::fs::rename(&self.path, &self.old) {
            Ok(()) => Some(self.old.clone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                log::warn!("journal {}: cannot move aside: {e}", self.path.display());
                None
            }
        }
    }

    /// The objects journalled for the watch whose checkpoint is
    /// `checkpoint` (a torn last line from a crash is skipped).
    pub fn load(checkpoint: &Path) -> Vec<JournalEntry> {
        let (path, old) = paths(checkpoint);
        let mut out = Vec::new();
        for p in [old, path] {
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if let Ok(entry) = serde_json::from_slice::<JournalEntry>(line) {
                    out.push(entry);
                }
            }
        }
        out
    }

    /// Removes the journal files of a watch that starts without a
    /// checkpoint (they describe a run that left no checkpoint to add to).
    pub fn discard(checkpoint: &Path) {
        let (path, old) = paths(checkpoint);
        for p in [path, old] {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reach_the_file_on_flush_and_survive_rotation_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cp = dir.path().join("pods.checkpoint");
        let mut j = Journal::new(&cp);
        j.stage("default", "web-0", "1");
        j.record("uid-0");
        assert!(j.has_pending());
        assert!(Journal::load(&cp).is_empty(), "nothing before the flush");
        j.flush();
        j.stage("", "node-1", "2");
        j.record("uid-1");
        j.flush();
        let all = vec![
            (
                "uid-0".to_owned(),
                Some("default".to_owned()),
                "web-0".to_owned(),
                "1".to_owned(),
            ),
            (
                "uid-1".to_owned(),
                None,
                "node-1".to_owned(),
                "2".to_owned(),
            ),
        ];
        assert_eq!(Journal::load(&cp), all);

        // Rotated: still read until the checkpoint writer removes it.
        let old = j.rotate().unwrap();
        j.stage("default", "web-2", "3");
        j.record("uid-2");
        assert_eq!(
            j.rotate(),
            Some(old.clone()),
            "the older one is still waiting"
        );
        let mut more = all.clone();
        more.push((
            "uid-2".to_owned(),
            Some("default".to_owned()),
            "web-2".to_owned(),
            "3".to_owned(),
        ));
        assert_eq!(Journal::load(&cp), more);
        std::fs::remove_file(old).unwrap();
        assert_eq!(Journal::load(&cp), more[2..].to_vec());

        // A torn last line (a crash mid-write) is skipped.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("pods.checkpoint.new"))
            .unwrap();
        f.write_all(b"[\"uid-3\",\"default\",\"we").unwrap();
        assert_eq!(Journal::load(&cp), more[2..].to_vec());
        Journal::discard(&cp);
        assert!(Journal::load(&cp).is_empty());
    }
}
