//! The state store's file: one redb database in the state directory for
//! every watch. Two tables:
//!
//! ```text
//! watches   name                -> {"fingerprint":{…},"resource_version":"4711"|null}
//! objects   (watch name, key)   -> flags, namespace, name, [projection,] resourceVersion
//! fresh     (watch name, batch) -> (key, entry) pairs, each behind a 4-byte length
//! ```
//!
//! A transaction writes what changed (objects added, changed or removed,
//! positions advanced), so a commit costs what changed, not what is known.
//! Objects first reported go to `fresh` as one row per watch and turn (the
//! gate commits them before any sink acts; one row, not a B-tree insert
//! per object at a random uid); the save that covers a row's objects
//! writes their handled entries to `objects` and removes the row in the
//! same transaction. Rows a crash left are folded into `objects` at start
//! (where no handled entry exists: those are newer).
//! redb is copy-on-write with two commit slots: a commit is all there or
//! not at all, whatever moment the process dies.
//!
//! The file sits on [`SyncedFile`], redb's file backend with its fsync
//! replaced by the `[daemon] sync` setting: every commit reaches the page
//! cache before it counts (a killed process loses nothing committed), and
//! the fsync that makes it survive a host crash comes per commit
//! (`always`), at most every `sync_interval` (`interval`), or never
//! (`none`).

use super::checkpoint::Fingerprint;
use crate::filter::Memory;
use crate::watch::index::{EntryRef, IndexEntry, MemoryRef, ObjectIndex};
use redb::{Builder, Database, ReadableTable, StorageBackend, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub const FILE_NAME: &str = "kwatchd.redb";
/// Handled entries per [`Op::Puts`]: a save's buffers stay small, and
/// the writer commits a big save in transactions of about this many.
pub const PUTS_PER_OP: usize = 16_384;
/// Mode of the store's file (before the umask).
const FILE_MODE: u32 = 0o640;
/// redb's page cache (its default is 1 GiB): what a turn's commit and a
/// start-up load touch, not the whole file.
const CACHE_BYTES: usize = 16 << 20;

const WATCHES: TableDefinition<&str, &[u8]> = TableDefinition::new("watches");
const OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("objects");
const FRESH: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("fresh");

/// A failure of the store's file, boxed (redb's error is large and this
/// travels on every `?`).
#[derive(Debug)]
pub struct StoreError(Box<redb::Error>);

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(e: E) -> Self {
        StoreError(Box::new(e.into()))
    }
}

impl StoreError {
    /// The I/O error beneath, if that is what it is.
    pub fn io(&self) -> Option<&io::Error> {
        match &*self.0 {
            redb::Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A watch's row: what its state was written for, and where it resumes
/// (`None`: objects were reported before a first position was handled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRow {
    pub fingerprint: Fingerprint,
    pub resource_version: Option<String>,
}

/// One change to the store, in the order the loop made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Watch {
        watch: Arc<str>,
        row: WatchRow,
    },
    Put {
        watch: Arc<str>,
        key: String,
        entry: Vec<u8>,
    },
    /// Many handled entries in one buffer, as [`push_put`] wrote them (a
    /// save of a big list: no key and entry allocation per object).
    Puts {
        watch: Arc<str>,
        entries: Vec<u8>,
    },
    Delete {
        watch: Arc<str>,
        key: String,
    },
    /// Objects first reported, as [`push_fresh`] wrote them: unconfirmed
    /// until a save covers them.
    Fresh {
        watch: Arc<str>,
        batch: u64,
        entries: Vec<u8>,
    },
    /// A save wrote the handled entries of batch `batch`'s objects.
    Forget {
        watch: Arc<str>,
        batch: u64,
    },
    /// Everything kept for the watch (its definition changed).
    Clear {
        watch: Arc<str>,
    },
}

/// A watch as the store holds it.
#[derive(Debug)]
pub struct Saved {
    pub row: WatchRow,
    /// Compact while it waits for its watch to start (every watch's state
    /// is read at once).
    pub objects: ObjectIndex,
}

pub use crate::config::SyncMode;

/// redb's file backend, with the fsync under the sync setting's control.
#[derive(Debug)]
pub struct SyncedFile {
    file: Arc<File>,
    always: bool,
    /// A commit reached the file since the last fsync.
    unsynced: Arc<AtomicBool>,
}

impl SyncedFile {
    /// Opens (creating) `path`, locked against a second daemon.
    pub fn open(path: &Path, mode: SyncMode) -> io::Result<SyncedFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another kwatchd uses this state directory",
                )
            } else {
                e
            });
        }
        Ok(SyncedFile {
            file: Arc::new(file),
            always: mode == SyncMode::Always,
            unsynced: Arc::new(AtomicBool::new(false)),
        })
    }

    /// What the writer needs to fsync on its own schedule.
    pub fn handle(&self) -> SyncHandle {
        SyncHandle {
            file: Arc::clone(&self.file),
            unsynced: Arc::clone(&self.unsynced),
        }
    }
}

impl StorageBackend for SyncedFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        if self.always {
            self.file.sync_data()
        } else {
            self.unsynced.store(true, Ordering::Release);
            Ok(())
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }
}

/// The store's file as the writer thread fsyncs it.
#[derive(Debug, Clone)]
pub struct SyncHandle {
    file: Arc<File>,
    unsynced: Arc<AtomicBool>,
}

impl SyncHandle {
    /// fsyncs if a commit reached the file since the last one.
    pub fn sync(&self) -> io::Result<()> {
        if self.unsynced.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.file.sync_data() {
                self.unsynced.store(true, Ordering::Release);
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Opens the database at `path` and proves it can be written: a commit
/// creates the tables (a full disk fails here, not at the first change).
pub fn open(path: &Path, mode: SyncMode) -> Result<(Database, SyncHandle), StoreError> {
    let file = SyncedFile::open(path, mode)?;
    let handle = file.handle();
    let db = Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(file)?;
    let txn = db.begin_write()?;
    {
        let mut watches = txn.open_table(WATCHES)?;
        txn.open_table(OBJECTS)?;
        txn.open_table(FRESH)?;
        // Written and removed: a commit that allocates, as every later one.
        watches.insert("", &b"write check"[..])?;
        watches.remove("")?;
    }
    txn.commit()?;
    handle.sync()?;
    Ok((db, handle))
}

/// Every watch's state, by name.
pub fn load_all(db: &Database) -> Result<HashMap<String, Saved>, StoreError> {
    let txn = db.begin_read()?;
    let watches = txn.open_table(WATCHES)?;
    let objects = txn.open_table(OBJECTS)?;
    let mut out = HashMap::new();
    for row in watches.iter()? {
        let (name, value) = row?;
        let Ok(row) = serde_json::from_slice::<WatchRow>(value.value()) else {
            log::warn!(
                "state store: the row of watch {:?} does not parse; the watch lists afresh",
                name.value()
            );
            continue;
        };
        out.insert(
            name.value().to_owned(),
            Saved {
                row,
                objects: ObjectIndex::default(),
            },
        );
    }
    for row in objects.iter()? {
        let (key, value) = row?;
        let (watch, key) = key.value();
        if let (Some(saved), Some(entry)) = (out.get_mut(watch), decode_entry(value.value())) {
            saved.objects.insert_entry(key, &entry);
        }
    }
    // Not folded yet (a copy read by a tool): the same view as after. A
    // store written before the table existed has none.
    let fresh = match txn.open_table(FRESH) {
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(out),
        other => other?,
    };
    for row in fresh.iter()? {
        let (key, value) = row?;
        if let Some(saved) = out.get_mut(key.value().0) {
            for (key, entry) in fresh_entries(value.value()) {
                if let Some(entry) = decode_entry(entry) {
                    if saved.objects.get(key).is_none() {
                        saved.objects.insert_entry(key, &entry);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// At start: the objects of `fresh` rows (first reported before a crash,
/// never covered by a save) become unconfirmed rows of `objects`, unless a
/// handled entry is there; the rows go. Returns how many were taken in.
pub fn fold_fresh(db: &Database) -> Result<usize, StoreError> {
    let txn = db.begin_write()?;
    let mut folded = 0;
    {
        let mut fresh = txn.open_table(FRESH)?;
        let mut objects = txn.open_table(OBJECTS)?;
        for row in fresh.iter()? {
            let (key, value) = row?;
            let watch = key.value().0;
            for (key, entry) in fresh_entries(value.value()) {
                if objects.get((watch, key))?.is_none() {
                    objects.insert((watch, key), entry)?;
                    folded += 1;
                }
            }
        }
        fresh.retain(|_, _| false)?;
    }
    txn.commit()?;
    Ok(folded)
}

/// Appends one object first reported to a `fresh` batch: its key, then
/// its entry (see [`encode_entry`]), each behind a 4-byte length.
pub fn push_fresh(
    out: &mut Vec<u8>,
    key: &str,
    namespace: Option<&str>,
    name: &str,
    resource_version: &str,
) {
    push_keyed(out, key, |out| {
        encode_into(out, namespace, name, resource_version, None)
    });
}

/// Appends one handled entry to an [`Op::Puts`] buffer, in the layout of
/// a `fresh` row (key, then the entry of [`encode_index_entry`]).
pub fn push_put<'a>(out: &mut Vec<u8>, key: &str, e: impl Into<EntryRef<'a>>) {
    let e = e.into();
    push_keyed(out, key, |out| {
        encode_into(
            out,
            e.namespace(),
            e.name(),
            &e.resource_version(),
            e.memory(),
        )
    });
}

/// `key` behind its 4-byte length, then what `entry` appends, behind its.
fn push_keyed(out: &mut Vec<u8>, key: &str, entry: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    entry(out);
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The (key, encoded entry) pairs of a `fresh` row; stops at a cut one.
fn fresh_entries(mut bytes: &[u8]) -> impl Iterator<Item = (&str, &[u8])> {
    std::iter::from_fn(move || {
        let key = std::str::from_utf8(next_field(&mut bytes)?).ok()?;
        Some((key, next_field(&mut bytes)?))
    })
}

/// The field at the start of `rest` (behind its 4-byte length), which
/// moves past it; `None` when cut short.
fn next_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let field = rest.get(4..4usize.checked_add(len)?)?;
    *rest = rest.get(4 + len..)?;
    Some(field)
}

/// Applies `ops` in order within `txn`.
pub fn apply(txn: &WriteTransaction, ops: &[Op]) -> Result<(), StoreError> {
    let mut watches = txn.open_table(WATCHES)?;
    let mut objects = txn.open_table(OBJECTS)?;
    let mut fresh = txn.open_table(FRESH)?;
    for op in ops {
        match op {
            Op::Watch { watch, row } => {
                let bytes = serde_json::to_vec(row).unwrap_or_default();
                watches.insert(&**watch, bytes.as_slice())?;
            }
            Op::Put { watch, key, entry } => {
                objects.insert((&**watch, key.as_str()), entry.as_slice())?;
            }
            Op::Puts { watch, entries } => {
                for (key, entry) in fresh_entries(entries) {
                    objects.insert((&**watch, key), entry)?;
                }
            }
            Op::Delete { watch, key } => {
                objects.remove((&**watch, key.as_str()))?;
            }
            Op::Fresh {
                watch,
                batch,
                entries,
            } => {
                fresh.insert((&**watch, *batch), entries.as_slice())?;
            }
            Op::Forget { watch, batch } => {
                fresh.remove((&**watch, *batch))?;
            }
            Op::Clear { watch } => {
                watches.remove(&**watch)?;
                fresh.retain_in((&**watch, 0)..=(&**watch, u64::MAX), |_, _| false)?;
                objects.retain_in((&**watch, "")..=(&**watch, "\u{10FFFF}"), |_, _| false)?;
                // Keys above U+10FFFF cannot exist in a str; keys equal to
                // the bound are covered by the inclusive range.
            }
        }
    }
    Ok(())
}

/// Flag bits of an entry (see [`encode_entry`]).
const HAS_NAMESPACE: u8 = 1;
/// The filter's memory follows the name (watches with `select` or
/// `changes`); entries written without it decode as before.
const HAS_MEMORY: u8 = 2;
/// The memory's `reported` bit.
const REPORTED: u8 = 4;
/// The memory holds a projection (its canonical JSON, behind a length).
const HAS_PROJECTION: u8 = 8;

/// An index entry as the objects table stores it: a flags byte (bit 0: has
/// a namespace), then namespace and name each behind a 4-byte length, then
/// the resourceVersion.
pub fn encode_entry(namespace: Option<&str>, name: &str, resource_version: &str) -> Vec<u8> {
    encode(namespace, name, resource_version, None)
}

/// An index entry with the filter's memory of the object: flag bit 1 says
/// it is there, bit 2 is its `reported`, bit 3 says a projection follows
/// the name (behind a 4-byte length), before the resourceVersion.
pub fn encode_index_entry<'a>(e: impl Into<EntryRef<'a>>) -> Vec<u8> {
    let e = e.into();
    encode(e.namespace(), e.name(), &e.resource_version(), e.memory())
}

fn encode(
    namespace: Option<&str>,
    name: &str,
    resource_version: &str,
    memory: Option<MemoryRef<'_>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, namespace, name, resource_version, memory);
    out
}

fn encode_into(
    out: &mut Vec<u8>,
    namespace: Option<&str>,
    name: &str,
    resource_version: &str,
    memory: Option<MemoryRef<'_>>,
) {
    let ns = namespace.unwrap_or("");
    let projection = memory.and_then(|m| m.projection);
    let mut flags = if namespace.is_some() {
        HAS_NAMESPACE
    } else {
        0
    };
    if let Some(m) = memory {
        flags |= HAS_MEMORY;
        if m.reported {
            flags |= REPORTED;
        }
        if projection.is_some() {
            flags |= HAS_PROJECTION;
        }
    }
    let extra = projection.map_or(0, |p| 4 + p.len());
    out.reserve(9 + extra + ns.len() + name.len() + resource_version.len());
    out.push(flags);
    let mut field = |bytes: &[u8]| {
        out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    field(ns.as_bytes());
    field(name.as_bytes());
    if let Some(p) = projection {
        field(p);
    }
    out.extend_from_slice(resource_version.as_bytes());
}

fn decode_entry(bytes: &[u8]) -> Option<IndexEntry> {
    let (&flags, mut rest) = bytes.split_first()?;
    let mut field = || next_field(&mut rest);
    let ns = std::str::from_utf8(field()?).ok()?;
    let name = std::str::from_utf8(field()?).ok()?;
    let memory = if flags & HAS_MEMORY != 0 {
        let projection = if flags & HAS_PROJECTION != 0 {
            Some(Box::from(field()?))
        } else {
            None
        };
        Some(Memory {
            reported: flags & REPORTED != 0,
            projection,
        })
    } else {
        None
    };
    let rv = std::str::from_utf8(rest).ok()?;
    Some(IndexEntry::new((flags & HAS_NAMESPACE != 0).then_some(ns), name, rv).with_memory(memory))
}

/// Where each watch in the store of state directory `dir` resumes, read
/// from a copy (a running daemon holds the file): for tools and tests.
pub fn positions(dir: &Path) -> Result<HashMap<String, Option<String>>, StoreError> {
    Ok(saved(dir)?
        .into_iter()
        .map(|(name, s)| (name, s.row.resource_version))
        .collect())
}

/// Every watch's state in the store of state directory `dir`, read from a
/// copy (a running daemon holds the file): for tools and tests.
pub fn saved(dir: &Path) -> Result<HashMap<String, Saved>, StoreError> {
    static COPIES: AtomicU64 = AtomicU64::new(0);
    let copy = std::env::temp_dir().join(format!(
        "kwatchd-positions-{}-{}",
        std::process::id(),
        COPIES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::copy(dir.join(FILE_NAME), &copy)?;
    let result = (|| {
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(SyncedFile::open(&copy, SyncMode::None)?)?;
        load_all(&db)
    })();
    let _ = std::fs::remove_file(&copy);
    result
}

/// The table names, for the tests' look into the file.
#[cfg(test)]
pub fn table_names() -> [&'static str; 3] {
    use redb::TableHandle;
    [WATCHES.name(), OBJECTS.name(), FRESH.name()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        for (ns, name, rv) in [
            (Some("default"), "web-0", "4711"),
            (None, "node-1", "\0"),
            (Some(""), "", ""),
        ] {
            let e = decode_entry(&encode_entry(ns, name, rv)).unwrap();
            assert_eq!(
                (e.namespace(), e.name(), e.resource_version()),
                (ns, name, rv)
            );
        }
        assert!(decode_entry(&[1, 9, 0, 0, 0]).is_none(), "a cut entry");
        assert_eq!(table_names(), ["watches", "objects", "fresh"]);
    }

    #[test]
    fn a_puts_buffer_holds_what_one_put_per_entry_would() {
        let memory = Memory {
            reported: true,
            projection: Some(br#"["nginx:1"]"#.to_vec().into_boxed_slice()),
        };
        let entries = [
            ("u1", IndexEntry::new(Some("ns"), "a", "7")),
            (
                "u2",
                IndexEntry::new(None, "b", "8").with_memory(Some(memory)),
            ),
        ];
        let mut buffer = Vec::new();
        for (key, e) in &entries {
            push_put(&mut buffer, key, e);
        }
        let read: Vec<(&str, IndexEntry)> = fresh_entries(&buffer)
            .map(|(k, e)| (k, decode_entry(e).unwrap()))
            .collect();
        assert_eq!(read.len(), 2);
        for ((key, e), (k, read)) in entries.iter().zip(&read) {
            assert_eq!(key, k);
            assert_eq!(read, e);
            assert_eq!(encode_index_entry(e), encode_index_entry(read));
        }
    }

    #[test]
    fn the_filter_memory_round_trips_and_old_entries_still_decode() {
        let memory = |reported, projection: Option<&[u8]>| {
            Some(Memory {
                reported,
                projection: projection.map(Box::from),
            })
        };
        for m in [
            None,
            memory(true, Some(br#"["nginx:1",{"a":"\"q"}]"#)),
            memory(false, None),
            memory(true, None),
            memory(false, Some(b"")),
        ] {
            let e = IndexEntry::new(Some("ns"), "web", "4711").with_memory(m.clone());
            let back = decode_entry(&encode_index_entry(&e)).unwrap();
            assert_eq!(back.memory(), m.as_ref());
            assert_eq!(
                (back.namespace(), back.name(), back.resource_version()),
                (Some("ns"), "web", "4711")
            );
        }
        // An entry written before the memory was stored (flags 0 or 1).
        let old = [1, 2, 0, 0, 0, b'n', b's', 1, 0, 0, 0, b'w', b'7'];
        let e = decode_entry(&old).unwrap();
        assert_eq!(
            (e.namespace(), e.name(), e.resource_version()),
            (Some("ns"), "w", "7")
        );
        assert_eq!(e.memory(), None);
        // A projection cut short.
        let mut cut = encode_index_entry(
            &IndexEntry::new(None, "w", "").with_memory(memory(true, Some(b"[1,2,3]"))),
        );
        cut.truncate(cut.len() - 3);
        assert!(decode_entry(&cut).is_none());
    }

    #[test]
    fn fresh_batches_are_read_folded_at_start_and_forgotten_by_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = open(&dir.path().join(FILE_NAME), SyncMode::None).unwrap();
        let w: Arc<str> = Arc::from("pods");
        let row: WatchRow = serde_json::from_str(
            r#"{"fingerprint":{"cluster":"c","server":"s","api_version":"v1","resource":"pods","path":"/api/v1/pods","namespace":null,"label_selector":null,"field_selector":null},"resource_version":"5"}"#,
        )
        .unwrap();
        let mut first = Vec::new();
        push_fresh(&mut first, "u1", Some("ns"), "a", "\x007");
        push_fresh(&mut first, "u2", None, "b", "\x008");
        let mut second = Vec::new();
        push_fresh(&mut second, "u3", Some("ns"), "c", "\x009");
        let commit = |ops: &[Op]| {
            let txn = db.begin_write().unwrap();
            apply(&txn, ops).unwrap();
            txn.commit().unwrap();
        };
        commit(&[
            Op::Watch {
                watch: Arc::clone(&w),
                row,
            },
            Op::Fresh {
                watch: Arc::clone(&w),
                batch: 3,
                entries: first,
            },
            Op::Fresh {
                watch: Arc::clone(&w),
                batch: 4,
                entries: second,
            },
            // u1 handled since: its entry wins over the batch's.
            Op::Put {
                watch: Arc::clone(&w),
                key: "u1".into(),
                entry: encode_entry(Some("ns"), "a", "11"),
            },
            Op::Forget {
                watch: Arc::clone(&w),
                batch: 4,
            },
        ]);
        let view = |db: &Database| {
            let mut all: Vec<(String, String)> = load_all(db).unwrap()["pods"]
                .objects
                .iter()
                .map(|(k, e)| (k.to_string(), e.resource_version().into_owned()))
                .collect();
            all.sort();
            all
        };
        let expected = vec![
            ("u1".to_owned(), "11".to_owned()),
            ("u2".to_owned(), "\x008".to_owned()),
        ];
        assert_eq!(view(&db), expected);
        assert_eq!(fold_fresh(&db).unwrap(), 1);
        assert_eq!(view(&db), expected);
        assert_eq!(fold_fresh(&db).unwrap(), 0, "the rows went");
        // A cut batch yields what it holds whole.
        let mut cut = Vec::new();
        push_fresh(&mut cut, "u9", None, "z", "1");
        push_fresh(&mut cut, "u10", None, "y", "2");
        cut.truncate(cut.len() - 2);
        assert_eq!(
            fresh_entries(&cut).map(|(k, _)| k).collect::<Vec<_>>(),
            ["u9"]
        );
    }
}
