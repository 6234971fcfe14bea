//! Commits to the state store off the loop. A commit (and its fsync, with
//! `sync = "always"`) can take long on a busy disk, so one helper thread
//! does them; the loop hands over batches of changes and never waits.
//! Batches that arrive while a commit runs go into the next one together:
//! one transaction per burst, whatever the number of watches.
//!
//! The loop learns what is committed from [`Progress::committed`] (the
//! thread wakes it through a `mio::Waker` after a commit it asked to hear
//! about). A commit that fails (a full disk) keeps its batches, says so
//! once, and is tried again with what came since, every
//! [`RETRY`]; until it succeeds the loop holds back whatever waits for it.

use super::db::{self, Op, StoreError, SyncHandle, SyncMode};
use mio::Waker;
use redb::Database;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long after a failed commit it is tried again.
const RETRY: Duration = Duration::from_secs(1);

enum Msg {
    Batch {
        id: u64,
        ops: Vec<Op>,
        /// Wake the loop once it is committed.
        wake: bool,
    },
    Finish,
}

/// What the loop can see of the writer.
#[derive(Debug, Default)]
pub struct Progress {
    /// The id of the last batch committed.
    committed: AtomicU64,
    /// Why commits fail, while they do.
    failing: Mutex<Option<String>>,
}

impl Progress {
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    pub fn failing(&self) -> Option<String> {
        self.failing.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

pub struct Writer {
    tx: Sender<Msg>,
    progress: Arc<Progress>,
    done: Receiver<()>,
}

/// What the thread owns.
struct Job {
    path: PathBuf,
    db: Option<Database>,
    /// `None` while `db` is.
    sync: Option<SyncHandle>,
    mode: SyncMode,
    interval: Duration,
    waker: Arc<Waker>,
    progress: Arc<Progress>,
}

impl Writer {
    pub fn spawn(
        path: PathBuf,
        db: Database,
        sync: SyncHandle,
        (mode, interval): (SyncMode, Duration),
        waker: Arc<Waker>,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = channel();
        let (done_tx, done) = channel();
        let progress = Arc::new(Progress::default());
        let job = Job {
            path,
            db: Some(db),
            sync: Some(sync),
            mode,
            interval,
            waker,
            progress: Arc::clone(&progress),
        };
        thread::Builder::new()
            .name("kwatchd-state".into())
            .spawn(move || {
                job.run(&rx);
                let _ = done_tx.send(());
            })?;
        Ok(Writer { tx, progress, done })
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Queues batch `id` (ids grow with every call).
    pub fn submit(&self, id: u64, ops: Vec<Op>, wake: bool) {
        // The thread only ends after `Finish`: a send cannot fail before.
        let _ = self.tx.send(Msg::Batch { id, ops, wake });
    }

    /// Commits what is queued and stops the thread, waiting at most
    /// `timeout`. False if it did not finish in time (a hung or full disk).
    pub fn finish(self, timeout: Duration) -> bool {
        let _ = self.tx.send(Msg::Finish);
        match self.done.recv_timeout(timeout) {
            Ok(()) => true,
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        }
    }
}

impl Job {
    fn run(mut self, rx: &Receiver<Msg>) {
        let mut ops: Vec<Op> = Vec::new();
        let mut last_id = 0;
        let mut wake = false;
        let mut finishing = false;
        let mut last_sync = Instant::now();
        let mut retry_at: Option<Instant> = None;
        loop {
            // Wait for work: a batch, the next fsync, or the next retry.
            let sync_due = (self.mode == SyncMode::Interval).then(|| last_sync + self.interval);
            let until = retry_at.into_iter().chain(sync_due).min();
            let first = match until {
                _ if finishing => None,
                Some(t) => match rx.recv_timeout(t.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(Msg::Finish),
                },
                None => Some(rx.recv().unwrap_or(Msg::Finish)),
            };
            for msg in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match msg {
                    Msg::Batch {
                        id,
                        ops: more,
                        wake: w,
                    } => {
                        // The first batch is taken as it is: a big save
                        // is not copied.
                        if ops.is_empty() {
                            ops = more;
                        } else {
                            ops.extend(more);
                        }
                        last_id = id;
                        wake |= w;
                    }
                    Msg::Finish => finishing = true,
                }
            }
            let now = Instant::now();
            if last_id > self.progress.committed() && retry_at.is_none_or(|t| t <= now) {
                match self.commit_slices(&mut ops) {
                    Ok(()) => {
                        log::trace!("state store: committed in {:?}", now.elapsed());
                        retry_at = None;
                        self.progress.committed.store(last_id, Ordering::Release);
                        if let Ok(mut f) = self.progress.failing.lock() {
                            if f.take().is_some() {
                                log::info!("state store: committing again");
                            }
                        }
                        if std::mem::take(&mut wake) {
                            let _ = self.waker.wake();
                        }
                    }
                    Err(e) => {
                        self.fail(&e);
                        retry_at = Some(now + RETRY);
                        if finishing {
                            // Shutdown does not wait for a full disk.
                            return;
                        }
                    }
                }
            }
            if self.mode == SyncMode::Interval && last_sync + self.interval <= Instant::now() {
                if let Some(Err(e)) = self.sync.as_ref().map(SyncHandle::sync) {
                    self.fail(&e.into());
                }
                last_sync = Instant::now();
            }
            if finishing && ops.is_empty() {
                if let (false, Some(sync)) = (self.mode == SyncMode::None, &self.sync) {
                    let _ = sync.sync();
                }
                return;
            }
        }
    }

    /// Commits `ops` (and empties it) in transactions that end after an
    /// [`Op::Puts`] followed by another: a big save is written in slices of
    /// [`db::PUTS_PER_OP`] entries, so redb's dirty pages stay bounded. A
    /// save's position and forgotten batches follow its last slice, and
    /// every earlier slice only writes entries every sink handled, so a
    /// crash between two leaves a state a restart resumes from. On an
    /// error `ops` keeps what is not committed.
    fn commit_slices(&mut self, ops: &mut Vec<Op>) -> Result<(), StoreError> {
        let mut done = 0;
        while done < ops.len() {
            let end = (done..ops.len())
                .find(|&i| {
                    matches!(ops[i], Op::Puts { .. })
                        && matches!(ops.get(i + 1), Some(Op::Puts { .. }))
                })
                .map_or(ops.len(), |i| i + 1);
            if let Err(e) = self.commit(&ops[done..end]) {
                ops.drain(..done);
                return Err(e);
            }
            done = end;
        }
        ops.clear();
        Ok(())
    }

    fn commit(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        if self.db.is_none() {
            // After a failed commit redb wants the file opened anew.
            let (db, sync) = db::open(&self.path, self.mode)?;
            self.db = Some(db);
            self.sync = Some(sync);
        }
        let result = (|| {
            let db = self.db.as_ref().ok_or(redb::Error::DatabaseAlreadyOpen)?;
            let txn = db.begin_write()?;
            db::apply(&txn, ops)?;
            txn.commit()?;
            Ok(())
        })();
        if result.is_err() {
            // Both hold the file (and its lock) open.
            self.db = None;
            self.sync = None;
        }
        result
    }

    fn fail(&self, e: &StoreError) {
        let text = format!("{e}");
        if let Ok(mut f) = self.progress.failing.lock() {
            if f.is_none() {
                log::error!(
                    "state store {}: cannot commit: {text}; new objects are held back from the sinks until it can (retrying every {}s)",
                    self.path.display(),
                    RETRY.as_secs()
                );
            }
            *f = Some(text);
        }
    }
}
