//! Writes checkpoint files off the loop. `fsync` and `rename` can take
//! long on a busy disk, so one helper thread does them; the loop hands over
//! rendered snapshots and never waits. Latest wins: a snapshot not yet
//! written is replaced by a newer one for the same file, so a slow disk
//! costs at most one pending snapshot per watch in memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

/// Mode of checkpoint files (before the umask).
const FILE_MODE: u32 = 0o640;

#[derive(Debug, Default)]
struct Queue {
    /// Snapshots to write, one per file, oldest submission first.
    jobs: Vec<Job>,
    /// Files with a snapshot queued or being written.
    busy: Vec<PathBuf>,
    closed: bool,
}

#[derive(Debug)]
struct Job {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Files the snapshot makes redundant, removed once it is written.
    obsoletes: Vec<PathBuf>,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The thread never panics while holding the lock; if it did, the
        // queue is still consistent (plain pushes and takes).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
pub struct CheckpointWriter {
    shared: Arc<Shared>,
    done: Receiver<()>,
}

impl CheckpointWriter {
    pub fn spawn() -> io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let (tx, done) = channel();
        let worker = Arc::clone(&shared);
        thread::Builder::new()
            .name("kwatchd-checkpoint".into())
            .spawn(move || {
                run(&worker);
                let _ = tx.send(());
            })?;
        Ok(CheckpointWriter { shared, done })
    }

    /// Queues `bytes` to become the content of `path`, replacing a snapshot
    /// for the same file that was not written yet. Once it is written, the
    /// files in `obsoletes` are removed.
    pub fn submit(&self, path: PathBuf, bytes: Vec<u8>, obsoletes: Option<PathBuf>) {
        let mut q = self.shared.lock();
        if !q.busy.contains(&path) {
            q.busy.push(path.clone());
        }
        match q.jobs.iter_mut().find(|j| j.path == path) {
            Some(job) => {
                job.bytes = bytes;
                job.obsoletes.extend(obsoletes);
            }
            None => q.jobs.push(Job {
                path,
                bytes,
                obsoletes: obsoletes.into_iter().collect(),
            }),
        }
        drop(q);
        self.shared.wake.notify_one();
    }

    /// True while a snapshot of `path` is queued or being written. The
    /// loop then waits rather than render another one: a big index is
    /// rendered at most once per write, and at most one rendering per
    /// file exists at a time.
    pub fn is_busy(&self, path: &Path) -> bool {
        self.shared.lock().busy.iter().any(|p| p == path)
    }

    /// Writes what is queued and stops the thread, waiting at most
    /// `timeout`. False if it did not finish in time (a hung disk).
    pub fn finish(self, timeout: Duration) -> bool {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        match self.done.recv_timeout(timeout) {
            Ok(()) => true,
            Err(RecvTimeoutError::Timeout) => false,
            // The thread is gone (it cannot panic, but if it did, nothing
            // is left to wait for).
            Err(RecvTimeoutError::Disconnected) => true,
        }
    }
}

fn run(shared: &Shared) {
    // Files whose last write failed: the next failure is logged quietly,
    // a success loudly.
    let mut failing: Vec<PathBuf> = Vec::new();
    loop {
        let jobs = {
            let mut q = shared.lock();
            while q.jobs.is_empty() && !q.closed {
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.jobs.is_empty() {
                return;
            }
            std::mem::take(&mut q.jobs)
        };
        for Job {
            path,
            bytes,
            obsoletes,
        } in jobs
        {
            let was_failing = failing.iter().position(|p| *p == path);
            let result = write_atomic(&path, &bytes);
            drop(bytes);
            if result.is_ok() {
                for p in &obsoletes {
                    let _ = std::fs::remove_file(p);
                }
            }
            {
                let mut q = shared.lock();
                if !q.jobs.iter().any(|j| j.path == path) {
                    q.busy.retain(|p| *p != path);
                }
            }
            match result {
                Ok(()) => {
                    if let Some(i) = was_failing {
                        failing.swap_remove(i);
                        log::info!("checkpoint {}: written again", path.display());
                    }
                }
                Err(e) => {
                    let msg = format!(
                        "checkpoint {}: cannot write: {e}; the previous checkpoint stays and the write is retried",
                        path.display()
                    );
                    if was_failing.is_some() {
                        log::debug!("{msg}");
                    } else {
                        if crate::fdlimit::is_exhaustion(&e) {
                            // Every watch's checkpoint fails alike.
                            crate::fdlimit::warn_exhausted(&msg);
                        } else {
                            log::warn!("{msg}");
                        }
                        failing.push(path);
                    }
                }
            }
        }
    }
}

/// Replaces `path` with `bytes` so that a crash at any point leaves either
/// the old or the new file: write a temp file, fsync it, rename it over
/// `path`, fsync the directory (so the rename itself survives a power cut).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_files_whole_and_finish_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.checkpoint");
        let b = dir.path().join("b.checkpoint");
        std::fs::write(&a, "old").unwrap();
        let w = CheckpointWriter::spawn().unwrap();
        w.submit(a.clone(), b"first".to_vec(), None);
        assert!(w.is_busy(&a));
        w.submit(a.clone(), b"second".to_vec(), None);
        w.submit(b.clone(), b"other".to_vec(), None);
        assert!(w.finish(Duration::from_secs(10)));
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "second");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "other");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "temp files left behind: {names:?}");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.checkpoint");
        std::fs::write(&path, "old").unwrap();
        // The temp file's name is taken by a directory: the write fails.
        std::fs::create_dir(dir.path().join("x.checkpoint.tmp")).unwrap();
        assert!(write_atomic(&path, b"new").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    }
}
