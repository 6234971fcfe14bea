//! Upgrades from kwatchd versions that kept one checkpoint file per watch
//! (`NAME.checkpoint`, see [`checkpoint`](super::checkpoint)) and a journal
//! of objects first reported since (`NAME.checkpoint.new`, `.new.old`):
//! read once into the store, then removed, so an upgrade loses nothing.
//! A file that cannot be used is set aside as `*.bad`, as before.

use super::checkpoint::{self, SUFFIX};
use super::db::{self, encode_entry, Op, StoreError, WatchRow};
use crate::watch::index::unconfirmed_version;
use redb::Database;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One journalled object: key, namespace, name, the resourceVersion
/// reported.
type JournalEntry = (String, Option<String>, String, String);

/// Takes the checkpoint files in `dir` into `db`. Failures are logged: the
/// files then stay for the next start.
pub fn run(dir: &Path, db: &Database) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut ops = Vec::new();
    let mut done: Vec<PathBuf> = Vec::new();
    let mut objects = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_checkpoint = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(SUFFIX));
        if !is_checkpoint {
            continue;
        }
        let (journal, journal_old) = journal_paths(&path);
        match std::fs::read(&path).map(|b| checkpoint::decode(&b)) {
            Ok(Ok(c)) => {
                let watch: Arc<str> = Arc::from(c.watch.as_str());
                ops.push(Op::Clear {
                    watch: Arc::clone(&watch),
                });
                ops.push(Op::Watch {
                    watch: Arc::clone(&watch),
                    row: WatchRow {
                        fingerprint: c.fingerprint,
                        resource_version: Some(c.resource_version),
                    },
                });
                let known = c.objects;
                // Objects reported after the checkpoint was written:
                // unconfirmed, so a relist reports them again, or their
                // DELETED.
                for (key, ns, name, rv) in load_journal(&[&journal_old, &journal]) {
                    if !known.contains_key(&key) {
                        let entry = encode_entry(ns.as_deref(), &name, &unconfirmed_version(&rv));
                        ops.push(Op::Put {
                            watch: Arc::clone(&watch),
                            key: key.clone(),
                            entry,
                        });
                    }
                }
                objects += known.len();
                for (key, e) in known {
                    ops.push(Op::Put {
                        watch: Arc::clone(&watch),
                        key,
                        entry: db::encode_index_entry(&e),
                    });
                }
                done.extend([path, journal, journal_old]);
            }
            Ok(Err(e)) => set_aside(&path, &format!("it is corrupt: {e}")),
            Err(e) => log::warn!(
                "checkpoint {}: cannot read it: {e}; left for the next start",
                path.display()
            ),
        }
    }
    if ops.is_empty() {
        return;
    }
    let committed = (|| -> Result<(), StoreError> {
        let txn = db.begin_write()?;
        db::apply(&txn, &ops)?;
        txn.commit()?;
        Ok(())
    })();
    match committed {
        Ok(()) => {
            let files = done.iter().filter(|p| std::fs::remove_file(p).is_ok()).count();
            log::info!(
                "state store: took in the checkpoint files of an older kwatchd ({objects} objects) and removed them ({files} files)"
            );
        }
        Err(e) => log::error!(
            "state store: cannot take in the checkpoint files in {}: {e}; they stay and are read again at the next start",
            dir.display()
        ),
    }
}

fn set_aside(path: &Path, reason: &str) {
    let bad = PathBuf::from(format!("{}.bad", path.display()));
    let moved = match std::fs::rename(path, &bad) {
        Ok(()) => format!("moved aside to {}", bad.display()),
        Err(e) => format!("could not be moved aside ({e})"),
    };
    log::warn!(
        "checkpoint {} ignored: {reason}; {moved}; the watch lists afresh",
        path.display()
    );
}

fn journal_paths(checkpoint: &Path) -> (PathBuf, PathBuf) {
    let new = PathBuf::from(format!("{}.new", checkpoint.display()));
    let old = PathBuf::from(format!("{}.new.old", checkpoint.display()));
    (new, old)
}

/// The journalled objects (a torn last line from a crash is skipped).
fn load_journal(paths: &[&Path]) -> Vec<JournalEntry> {
    let mut out = Vec::new();
    for p in paths {
        let Ok(bytes) = std::fs::read(p) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::checkpoint::{encode_map, file_name, Fingerprint};
    use crate::watch::index::IndexEntry;
    use std::collections::HashMap;

    fn fp() -> Fingerprint {
        Fingerprint::of_test_pods("")
    }

    #[test]
    fn old_checkpoints_and_journals_are_taken_in_once_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join(file_name("web.pods"));
        // A filtered watch's checkpoint carries the filter's memory, which
        // the store keeps.
        let uid1 = IndexEntry::new(Some("default"), "web-1", "40").with_memory(Some(
            crate::filter::Memory {
                reported: true,
                projection: Some(Box::from(&br#"["nginx:1"]"#[..])),
            },
        ));
        let objects = HashMap::from([("uid-1".to_owned(), uid1.clone())]);
        let mut bytes = Vec::new();
        encode_map("web.pods", &fp(), "42", &objects, &mut bytes);
        std::fs::write(&ckpt, bytes).unwrap();
        let (journal, _) = journal_paths(&ckpt);
        std::fs::write(
            &journal,
            "[\"uid-2\",\"default\",\"web-2\",\"43\"]\n[\"uid-3\"",
        )
        .unwrap();
        std::fs::write(dir.path().join(file_name("bad")), "not a checkpoint\n").unwrap();

        let path = dir.path().join(db::FILE_NAME);
        let (database, _) = db::open(&path, db::SyncMode::None).unwrap();
        run(dir.path(), &database);
        let saved = db::load_all(&database).unwrap();
        let web = &saved["web.pods"];
        assert_eq!(web.row.fingerprint, fp());
        assert_eq!(web.row.resource_version.as_deref(), Some("42"));
        assert_eq!(web.objects.entry("uid-1"), Some(uid1));
        assert!(web.objects.get("uid-1").unwrap().memory().is_some());
        assert_eq!(
            web.objects.entry("uid-2"),
            Some(IndexEntry::new(
                Some("default"),
                "web-2",
                &unconfirmed_version("43")
            )),
            "journalled objects are unconfirmed"
        );
        assert_eq!(web.objects.len(), 2, "a torn journal line is skipped");
        assert!(!ckpt.exists() && !journal.exists());
        assert!(dir.path().join("bad.checkpoint.bad").exists());
        // Nothing left to take in: a second run changes nothing.
        run(dir.path(), &database);
        assert_eq!(
            db::load_all(&database).unwrap()["web.pods"].objects.len(),
            2
        );
    }
}
