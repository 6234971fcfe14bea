//! The file sink: appends records to a JSON-lines file, or to standard
//! output (the stdout sink is the same queue with another target).
//!
//! Writes are batched per loop turn and never block: the file is opened
//! non-blocking (a FIFO reader that stops reading must not wedge the loop),
//! and a failed write (full disk, I/O error) keeps every queued byte and
//! retries with backoff. A record is only dropped from the queue once all of
//! its bytes are written, so a line is never lost or cut short.

use super::{LatencySample, QueueBound};
use crate::state::{AckRef, Acks};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::collections::VecDeque;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Retry delay when a full FIFO or pipe cannot be polled for room.
const BLOCKED_RETRY: Duration = Duration::from_millis(5);
/// Safety net when it can: the writable edge should come first.
const ARMED_RETRY: Duration = Duration::from_secs(1);
const ERROR_RETRY_MIN: Duration = Duration::from_millis(100);
const ERROR_RETRY_MAX: Duration = Duration::from_secs(5);
/// Written bytes are dropped from the front of the buffer in steps of this.
const COMPACT_AT: usize = 1 << 20;

#[derive(Debug)]
pub struct FileSink {
    name: String,
    target: Target,
    file: Option<File>,
    bound: QueueBound,
    /// Queued record bytes; `buf[written..]` is not on disk yet.
    buf: Vec<u8>,
    written: usize,
    /// End offset in `buf` of every queued record, oldest first, with the
    /// ref acked once all of its bytes are written and when it was queued.
    record_ends: VecDeque<(usize, AckRef, Instant)>,
    /// Queued → written, per record: a slow disk shows here.
    latency: LatencySample,
    acks: Acks,
    /// The torn-line repair runs on the first open only: later opens are
    /// rotations, and our own short writes are continued, not cut.
    repaired: bool,
    /// After a write error: no attempt before this.
    backoff_until: Option<Instant>,
    /// After `WouldBlock`: look again by then at the latest.
    recheck_at: Option<Instant>,
    /// The descriptor registered for WRITABLE with `token`, so the loop
    /// wakes when a full pipe has room again.
    armed_fd: Option<RawFd>,
    token: Token,
    failures: u32,
    delivered: u64,
    /// Records queued when a write or open failed (kept and retried; each
    /// failure counts them again).
    failed: u64,
}

impl FileSink {
    /// `token` wakes the loop when a blocked pipe has room again.
    pub fn new(name: &str, path: &Path, bound: QueueBound, token: Token) -> Self {
        Self::with_target(name, Target::Path(path.to_owned()), bound, token)
    }

    /// Records to the daemon's standard output (journald, a terminal, a pipe).
    pub fn stdout(name: &str, bound: QueueBound, token: Token) -> Self {
        Self::with_target(name, Target::Stdout { socket: false }, bound, token)
    }

    fn with_target(name: &str, target: Target, bound: QueueBound, token: Token) -> Self {
        FileSink {
            name: name.to_owned(),
            target,
            file: None,
            bound,
            buf: Vec::new(),
            written: 0,
            record_ends: VecDeque::new(),
            latency: LatencySample::default(),
            acks: Acks::default(),
            repaired: false,
            backoff_until: None,
            recheck_at: None,
            armed_fd: None,
            token,
            failures: 0,
            delivered: 0,
            failed: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it writes to, for log lines.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Path(p) => p.display().to_string(),
            Target::Stdout { .. } => "standard output".to_owned(),
        }
    }

    pub fn has_room(&self) -> bool {
        self.record_ends.len() < self.bound.events
            && self.buf.len() - self.written < self.bound.bytes
    }

    pub fn queued(&self) -> usize {
        self.record_ends.len()
    }

    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Queued → written, per record.
    pub fn latency(&self) -> &LatencySample {
        &self.latency
    }

    pub fn is_stdout(&self) -> bool {
        matches!(self.target, Target::Stdout { .. })
    }

    /// When `flush` should run again even if nothing new arrives.
    pub fn token(&self) -> Token {
        self.token
    }

    pub fn retry_at(&self) -> Option<Instant> {
        match (self.backoff_until, self.recheck_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `now`: when the event was read.
    pub fn push(&mut self, now: Instant, record: &[u8], ack: AckRef) {
        self.buf.extend_from_slice(record);
        self.record_ends.push_back((self.buf.len(), ack, now));
    }

    /// Moves the refs of written records to `out`.
    pub fn take_acks(&mut self, out: &mut Vec<AckRef>) {
        self.acks.drain_into(out);
    }

    /// Queues the record `render` appends to the queue's buffer: the one
    /// copy of the object a file sink needs, without a staging buffer.
    /// `render` must append exactly one complete record.
    pub fn push_rendered(&mut self, now: Instant, render: impl FnOnce(&mut Vec<u8>), ack: AckRef) {
        render(&mut self.buf);
        self.record_ends.push_back((self.buf.len(), ack, now));
    }

    /// Opens the file now, so a start-up problem is reported at start.
    pub fn open(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(match &mut self.target {
                Target::Path(path) => {
                    if !self.repaired {
                        repair_torn_tail(&self.name, path)?;
                        self.repaired = true;
                    }
                    open_append(path)?
                }
                Target::Stdout { socket } => {
                    let (file, is_socket) = dup_stdout()?;
                    *socket = is_socket;
                    file
                }
            });
        }
        Ok(())
    }

    /// Closes the file; the next write opens it again (log rotation).
    pub fn reopen(&mut self) {
        self.close_file();
    }

    fn close_file(&mut self) {
        // Closing the descriptor also removes it from the poller.
        self.file = None;
        self.armed_fd = None;
    }

    pub fn flush(&mut self, now: Instant, registry: &Registry) {
        if self.record_ends.is_empty() || self.backoff_until.is_some_and(|t| t > now) {
            return;
        }
        self.backoff_until = None;
        self.recheck_at = None;
        if let Err(e) = self.open() {
            self.fail(now, "cannot open", &e);
            return;
        }
        let Some(mut file) = self.file.take() else {
            return;
        };
        while self.written < self.buf.len() {
            match self.target.write(&mut file, &self.buf[self.written..]) {
                Ok(0) => {
                    self.file = Some(file);
                    let e = io::Error::new(io::ErrorKind::WriteZero, "the write made no progress");
                    self.fail(now, "cannot write to", &e);
                    return;
                }
                Ok(n) => {
                    self.written += n;
                    // One clock read per write: the write's own time counts.
                    self.retire_written(Instant::now());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let fd = file.as_raw_fd();
                    self.file = Some(file);
                    self.arm(registry, fd);
                    self.recheck_at = Some(
                        now + if self.armed_fd.is_some() {
                            ARMED_RETRY
                        } else {
                            BLOCKED_RETRY
                        },
                    );
                    return;
                }
                Err(e) => {
                    // A broken descriptor (FIFO reader gone) is reopened;
                    // other errors (a full disk) keep it.
                    let broken = matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::EBADF));
                    self.file = Some(file);
                    if broken {
                        self.close_file();
                    }
                    self.fail(now, "cannot write to", &e);
                    return;
                }
            }
        }
        self.file = Some(file);
        if self.failures > 0 {
            log::info!(
                "sink {}: writing to {} again; nothing was lost",
                self.name,
                self.describe()
            );
            self.failures = 0;
        }
    }

    /// Asks the poller to wake the loop when `fd` can take more. Regular
    /// files cannot be polled (and never block); pipes and FIFOs can.
    fn arm(&mut self, registry: &Registry, fd: RawFd) {
        if self.armed_fd == Some(fd) {
            return;
        }
        if registry
            .register(&mut SourceFd(&fd), self.token, Interest::WRITABLE)
            .is_ok()
        {
            self.armed_fd = Some(fd);
        }
    }

    fn retire_written(&mut self, now: Instant) {
        while let Some(&(end, ack, queued)) = self.record_ends.front() {
            if end > self.written {
                break;
            }
            self.record_ends.pop_front();
            self.acks.push(ack);
            self.latency.record(now.saturating_duration_since(queued));
            self.delivered += 1;
        }
        if self.written == self.buf.len() {
            self.buf.clear();
            self.written = 0;
        } else if self.written >= COMPACT_AT {
            self.buf.drain(..self.written);
            for (end, _, _) in &mut self.record_ends {
                *end -= self.written;
            }
            self.written = 0;
        }
    }

    fn fail(&mut self, now: Instant, what: &str, e: &io::Error) {
        self.failures = self.failures.saturating_add(1);
        self.failed += self.record_ends.len() as u64;
        let delay = ERROR_RETRY_MIN
            .saturating_mul(1 << self.failures.min(16))
            .min(ERROR_RETRY_MAX);
        self.backoff_until = Some(now + delay);
        let msg = format!(
            "sink {}: {what} {}: {e}; {} events are kept and retried in {} ms",
            self.name,
            self.describe(),
            self.record_ends.len(),
            delay.as_millis()
        );
        if self.failures == 1 {
            log::error!("{msg}");
        } else {
            log::debug!("{msg}");
        }
    }
}

#[derive(Debug)]
enum Target {
    Path(PathBuf),
    /// A duplicate of fd 1. Its file status flags are shared with whoever
    /// else holds stdout (a terminal, journald's socket), so it is never set
    /// non-blocking: sockets get `MSG_DONTWAIT` sends, anything else is
    /// written only when `poll` says there is room, at most `PIPE_BUF` bytes
    /// at a time (a pipe with room for that never blocks).
    Stdout {
        socket: bool,
    },
}

impl Target {
    fn write(&self, file: &mut File, buf: &[u8]) -> io::Result<usize> {
        let fd = file.as_raw_fd();
        match self {
            Target::Path(_) => file.write(buf),
            Target::Stdout { socket: true } => {
                // SAFETY: `buf` is valid for `buf.len()` bytes; `fd` is open.
                let n = unsafe {
                    libc::send(
                        fd,
                        buf.as_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }
            Target::Stdout { socket: false } => {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, zero timeout.
                let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
                if ready < 0 {
                    return Err(io::Error::last_os_error());
                }
                if ready == 0 || pfd.revents & libc::POLLOUT == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                file.write(&buf[..buf.len().min(libc::PIPE_BUF)])
            }
        }
    }
}

/// A close-on-exec duplicate of fd 1, and whether it is a socket.
fn dup_stdout() -> io::Result<(File, bool)> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain fcntl on fd 1; the result is checked.
    let fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let is_socket = {
        use std::os::unix::fs::FileTypeExt;
        file.metadata()?.file_type().is_socket()
    };
    Ok((file, is_socket))
}

/// After a crash mid-write (SIGKILL, OOM) the file may end in a partial
/// record. That record was never acknowledged, so it is delivered again;
/// the torn bytes are cut back to the last complete line so the file stays
/// valid JSON lines. Only regular files: a FIFO has no tail to repair.
fn repair_torn_tail(sink: &str, path: &Path) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // Let the append open report the problem in its own words.
        Err(_) => return Ok(()),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(());
    }
    let len = meta.len();
    let mut keep = 0;
    let mut end = len;
    let mut chunk = vec![0u8; 64 << 10];
    'scan: while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            keep = start + i as u64 + 1;
            break 'scan;
        }
        end = start;
    }
    if keep == len {
        return Ok(());
    }
    file.set_len(keep)?;
    file.sync_all()?;
    log::warn!(
        "sink {sink}: {} ended with a partial record (kwatchd was stopped while writing it); cut {} bytes back to the last complete line; that record is written again",
        path.display(),
        len - keep
    );
    Ok(())
}

/// Opens for append with mode 0640, creating the parent directory (0750).
fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ACK: AckRef = AckRef { watch: 0, seq: 0 };

    fn sink(path: &Path, events: usize) -> FileSink {
        FileSink::new("f", path, bound(events), Token(9))
    }

    fn bound(events: usize) -> QueueBound {
        QueueBound {
            events,
            bytes: 1 << 20,
        }
    }

    #[test]
    fn appends_whole_lines_creating_the_directory_with_mode_0640() {
        let poll = mio::Poll::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/events.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).ok();
        std::fs::remove_dir(path.parent().unwrap()).unwrap();
        let mut s = sink(&path, 2);
        s.push(Instant::now(), b"{\"n\":1}\n", ACK);
        assert!(s.has_room());
        s.push(Instant::now(), b"{\"n\":2}\n", ACK);
        assert!(!s.has_room());
        s.flush(Instant::now(), poll.registry());
        assert_eq!(s.queued(), 0);
        assert_eq!(s.delivered(), 2);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o} is wider than 0640");
        s.reopen();
        s.push(Instant::now(), b"{\"n\":3}\n", ACK);
        s.flush(Instant::now(), poll.registry());
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    }

    #[test]
    fn a_torn_last_line_is_cut_at_start_and_written_records_are_acked() {
        let poll = mio::Poll::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"n\":1}\n{\"n\":2,\"obj").unwrap();
        let mut s = sink(&path, 10);
        s.open().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":1}\n");
        let two = AckRef { watch: 3, seq: 7 };
        s.push(Instant::now(), b"{\"n\":2}\n", two);
        let mut acks = Vec::new();
        s.take_acks(&mut acks);
        assert!(acks.is_empty(), "acked before it was written");
        s.flush(Instant::now(), poll.registry());
        s.take_acks(&mut acks);
        assert_eq!(acks, vec![two]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n"
        );
        // Only the first open repairs: a reopen after rotation leaves the
        // (foreign) content alone.
        std::fs::write(&path, "partial").unwrap();
        s.reopen();
        s.open().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "partial");
        // No newline at all: nothing complete to keep. A long torn tail
        // spanning more than one read chunk is found too.
        let other = dir.path().join("other.jsonl");
        let mut text = "{\"ok\":1}\n".to_owned();
        text.push_str(&"x".repeat(200_000));
        std::fs::write(&other, &text).unwrap();
        let mut s = sink(&other, 10);
        s.open().unwrap();
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "{\"ok\":1}\n");
        std::fs::write(&other, "no newline").unwrap();
        let mut s = sink(&other, 10);
        s.open().unwrap();
        assert_eq!(std::fs::read(&other).unwrap().len(), 0);
    }

    #[test]
    fn an_unopenable_path_keeps_events_and_retries() {
        let poll = mio::Poll::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut s = sink(dir.path(), 10);
        s.push(Instant::now(), b"x\n", ACK);
        let now = Instant::now();
        s.flush(now, poll.registry());
        assert_eq!(s.queued(), 1);
        let retry = s.retry_at().unwrap();
        assert!(retry > now);
        s.flush(now, poll.registry());
        assert_eq!(s.queued(), 1, "no retry before the deadline");
    }

    #[test]
    fn a_full_fifo_blocks_without_losing_or_splitting_lines() {
        let mut poll = mio::Poll::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let mut s = sink(&path, 100_000);
        let line = format!("{}\n", "y".repeat(999));
        for _ in 0..1000 {
            s.push(Instant::now(), line.as_bytes(), ACK);
        }
        let now = Instant::now();
        s.flush(now, poll.registry());
        assert!(s.queued() > 0, "a 1 MB backlog cannot fit a pipe");
        assert!(s.armed_fd.is_some(), "a full pipe is polled for room");
        assert!(s.retry_at().is_some_and(|t| t >= now + ARMED_RETRY));
        let mut events = mio::Events::with_capacity(4);
        let mut got = Vec::new();
        let mut reader = reader;
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 1000 * line.len() && Instant::now() < deadline {
            let mut buf = vec![0; 65536];
            match io::Read::read(&mut reader, &mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            // The poller says when the pipe has room again.
            poll.poll(&mut events, Some(Duration::from_millis(200)))
                .unwrap();
            s.flush(Instant::now(), poll.registry());
        }
        assert_eq!(got.len(), 1000 * line.len());
        assert!(got
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .all(|l| l.len() == 999));
        assert_eq!(s.queued(), 0);
    }
}
