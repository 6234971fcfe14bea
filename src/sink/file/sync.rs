//! When a file sink's records reach the disk itself, not only the page
//! cache: the fsync policy, and the helper thread that runs the fsyncs.
//!
//! `fdatasync` can take long on a busy disk (hundreds of milliseconds behind
//! other writers' data), so it never runs on the loop. The sink hands a
//! duplicate of its descriptor to one helper thread per sink, at most one
//! at a time, and goes on writing; the thread syncs, reports back through a
//! channel and wakes the loop through the daemon's `mio::Waker`. A sync
//! covers everything written before it was asked for, so while one runs the
//! next batch collects behind it (group commit).

use mio::Waker;
use std::fs::File;
use std::io;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How a file sink uses fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Never: a record counts as handled once `write()` took it. A host
    /// crash (power loss, kernel panic; not a kwatchd crash) loses what the
    /// page cache held, up to the kernel's writeback delay (~30 s).
    None,
    /// At most every this long while something was written since the last
    /// sync, off the loop. Records count as handled at `write()`; a host
    /// crash loses at most about this much.
    Interval(Duration),
    /// A record counts as handled (its ack released to the ledger, so the
    /// watch's checkpoint may pass it) only after an fsync that followed
    /// its write completed: a host crash loses nothing that was acked.
    Always,
}

impl SyncPolicy {
    /// The config spelling (`[daemon] sync`).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncPolicy::None => "none",
            SyncPolicy::Interval(_) => "interval",
            SyncPolicy::Always => "always",
        }
    }
}

/// The loop's side of one sink's sync thread.
#[derive(Debug)]
pub(super) struct Syncer {
    jobs: Sender<File>,
    done: Receiver<io::Result<()>>,
}

impl Syncer {
    /// Starts the thread; it ends when the `Syncer` is dropped, after the
    /// sync it was last given.
    pub(super) fn spawn(sink: &str, waker: Arc<Waker>) -> io::Result<Syncer> {
        let (jobs, job_rx) = channel::<File>();
        let (done_tx, done) = channel();
        thread::Builder::new()
            .name(format!("kwatchd-sync-{sink}"))
            .spawn(move || {
                for file in job_rx {
                    let result = file.sync_data();
                    // Closed here, off the loop: the last close of a file
                    // can block too (NFS flushes on close).
                    drop(file);
                    if done_tx.send(result).is_err() {
                        break;
                    }
                    // The loop drains `done` on its next turn whatever woke
                    // it; a failed wake only delays that to the next event.
                    let _ = waker.wake();
                }
            })?;
        Ok(Syncer { jobs, done })
    }

    /// Asks for an fsync of `file` (a duplicate descriptor the thread
    /// closes). `false` when the thread is gone.
    pub(super) fn request(&self, file: File) -> bool {
        self.jobs.send(file).is_ok()
    }

    /// The result of the sync asked for last, once it is done.
    pub(super) fn poll(&self) -> Option<io::Result<()>> {
        match self.done.try_recv() {
            Ok(result) => Some(result),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                Some(Err(io::Error::other("the sync thread is gone")))
            }
        }
    }
}
