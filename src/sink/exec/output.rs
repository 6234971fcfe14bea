//! A hook's stdout or stderr: read through the loop, logged line by line,
//! capped per run.
//!
//! The cap bounds both the log volume and memory (the unfinished line is
//! part of the capped bytes). Past the cap the pipe is still drained and the
//! bytes discarded: a hook blocked on a full pipe would otherwise hang until
//! its timeout.

use mio::unix::pipe::Receiver;
use mio::{Interest, Registry, Token};
use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsRawFd;

/// Bytes read per readiness call before yielding to the rest of the loop. A
/// hook that writes as fast as we read (`yes`) would otherwise keep us here
/// until its timeout; the run remembers the backlog and asks for a timer
/// call (see `HookRun::deadline`).
const PUMP_BUDGET: usize = 256 << 10;
const READ_CHUNK: usize = 16 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        })
    }
}

/// What one stream of a run produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputStats {
    /// Every byte read, logged or discarded.
    pub received: u64,
    /// Bytes that went to the log (at most the cap).
    pub logged: usize,
    /// The cap was exceeded and the rest discarded.
    pub truncated: bool,
}

/// One thing to log.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LogLine<'a> {
    /// A line without its `\n` (and `\r`), decoded lossily.
    Line(Cow<'a, str>),
    /// The stream passed the cap after this many bytes.
    Truncated { after: usize },
}

/// The sans-I/O half: bytes in, lines out.
#[derive(Debug)]
pub(super) struct LineLog {
    cap: usize,
    stats: OutputStats,
    /// The unfinished line; its bytes count towards the cap.
    partial: Vec<u8>,
}

impl LineLog {
    pub(super) fn new(cap: usize) -> Self {
        LineLog {
            cap,
            stats: OutputStats::default(),
            partial: Vec::new(),
        }
    }

    pub(super) fn stats(&self) -> OutputStats {
        self.stats
    }

    pub(super) fn push(&mut self, bytes: &[u8], emit: &mut dyn FnMut(LogLine<'_>)) {
        self.stats.received += bytes.len() as u64;
        if self.stats.truncated {
            return;
        }
        let room = self.cap - self.stats.logged;
        let (keep, over) = bytes.split_at(bytes.len().min(room));
        self.stats.logged += keep.len();
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', keep) {
            let piece = &keep[start..nl];
            if self.partial.is_empty() {
                emit(LogLine::Line(decode(piece)));
            } else {
                self.partial.extend_from_slice(piece);
                emit(LogLine::Line(decode(&self.partial)));
                self.partial.clear();
            }
            start = nl + 1;
        }
        self.partial.extend_from_slice(&keep[start..]);
        if !over.is_empty() {
            // The line the cap cut is logged as far as it got.
            self.finish(emit);
            self.partial = Vec::new();
            self.stats.truncated = true;
            emit(LogLine::Truncated { after: self.cap });
        }
    }

    /// At EOF (or when the pipe is abandoned): a last line without `\n`.
    pub(super) fn finish(&mut self, emit: &mut dyn FnMut(LogLine<'_>)) {
        if !self.partial.is_empty() {
            emit(LogLine::Line(decode(&self.partial)));
            self.partial.clear();
        }
    }
}

fn decode(line: &[u8]) -> Cow<'_, str> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line)
}

fn log_line(stream: Stream, label: &str, line: LogLine<'_>) {
    match (stream, line) {
        (Stream::Stdout, LogLine::Line(l)) => log::info!("{label}: {l}"),
        (Stream::Stderr, LogLine::Line(l)) => log::warn!("{label}: stderr: {l}"),
        (s, LogLine::Truncated { after }) => {
            log::warn!(
                "{label}: … output truncated after {after} bytes ({s}; the rest is discarded)"
            )
        }
    }
}

#[derive(Debug)]
enum PipeState {
    Open {
        pipe: Receiver,
        /// The last pump stopped at its budget, not at `WouldBlock`: no new
        /// edge will come for what is already buffered.
        backlog: bool,
    },
    /// EOF read, or the pipe was never there.
    Closed,
    /// Closed unread after the hook exited (a leftover process held it).
    Abandoned,
}

/// The I/O half: one pipe, registered for READABLE under `token`.
#[derive(Debug)]
pub(super) struct Output {
    stream: Stream,
    token: Token,
    log: LineLog,
    state: PipeState,
    /// `Some`: the lines are kept here for the caller instead of logged
    /// (a credential plugin's output holds secrets).
    captured: Option<Vec<u8>>,
}

fn emit_line(stream: Stream, label: &str, captured: &mut Option<Vec<u8>>, line: LogLine<'_>) {
    match (captured, line) {
        (Some(buf), LogLine::Line(l)) => {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        // The stats say it was truncated; the caller decides what that means.
        (Some(_), LogLine::Truncated { .. }) => {}
        (None, line) => log_line(stream, label, line),
    }
}

impl Output {
    pub(super) fn new(stream: Stream, token: Token, pipe: Option<Receiver>, cap: usize) -> Self {
        let state = match pipe {
            Some(pipe) => PipeState::Open {
                pipe,
                backlog: false,
            },
            None => PipeState::Closed,
        };
        Output {
            stream,
            token,
            log: LineLog::new(cap),
            state,
            captured: None,
        }
    }

    /// Keep the output for [`take_captured`](Self::take_captured) instead
    /// of logging it.
    pub(super) fn capture(mut self) -> Self {
        self.captured = Some(Vec::new());
        self
    }

    /// The captured lines (each ending in `\n`), once; empty when not
    /// capturing.
    pub(super) fn take_captured(&mut self) -> Vec<u8> {
        self.captured
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub(super) fn register(&mut self, registry: &Registry) -> io::Result<()> {
        if let PipeState::Open { pipe, .. } = &mut self.state {
            // std hands out blocking pipes and the conversion keeps them so.
            pipe.set_nonblocking(true)?;
            registry.register(pipe, self.token, Interest::READABLE)?;
        }
        Ok(())
    }

    pub(super) fn token(&self) -> Token {
        self.token
    }

    pub(super) fn is_open(&self) -> bool {
        matches!(self.state, PipeState::Open { .. })
    }

    /// The pipe's inode while it is open, to find who else holds it.
    pub(super) fn pipe_inode(&self) -> Option<u64> {
        let PipeState::Open { pipe, .. } = &self.state else {
            return None;
        };
        // SAFETY: a zeroed stat is a valid value; fstat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open (owned by `pipe`), `st` is valid.
        if unsafe { libc::fstat(pipe.as_raw_fd(), &mut st) } != 0 {
            return None;
        }
        Some(st.st_ino)
    }

    pub(super) fn has_backlog(&self) -> bool {
        matches!(self.state, PipeState::Open { backlog: true, .. })
    }

    pub(super) fn stats(&self) -> OutputStats {
        self.log.stats()
    }

    /// Reads until `WouldBlock`, EOF or the budget.
    pub(super) fn pump(&mut self, registry: &Registry, label: &str) {
        let PipeState::Open { pipe, backlog } = &mut self.state else {
            return;
        };
        let stream = self.stream;
        let captured = &mut self.captured;
        let mut emit = |line: LogLine<'_>| emit_line(stream, label, captured, line);
        let mut buf = [0u8; READ_CHUNK];
        let mut budget = PUMP_BUDGET;
        let eof = loop {
            if budget == 0 {
                *backlog = true;
                return;
            }
            match pipe.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.log.push(&buf[..n], &mut emit);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("{label}: reading the hook's {stream}: {e}");
                    break true;
                }
            }
        };
        *backlog = false;
        if eof {
            self.close(registry, PipeState::Closed, label);
        }
    }

    /// Stops waiting for EOF. Returns whether the pipe was still open.
    pub(super) fn abandon(&mut self, registry: &Registry, label: &str) -> bool {
        if !self.is_open() {
            return false;
        }
        self.close(registry, PipeState::Abandoned, label);
        true
    }

    fn close(&mut self, registry: &Registry, next: PipeState, label: &str) {
        if let PipeState::Open { mut pipe, .. } = std::mem::replace(&mut self.state, next) {
            // Deregistering is tidy, not vital: dropping the pipe closes the
            // descriptor, which removes it from the epoll set anyway.
            let _ = registry.deregister(&mut pipe);
        }
        let stream = self.stream;
        let captured = &mut self.captured;
        self.log
            .finish(&mut |line| emit_line(stream, label, captured, line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cap: usize, chunks: &[&[u8]]) -> (Vec<String>, OutputStats) {
        let mut log = LineLog::new(cap);
        let mut out = Vec::new();
        let mut emit = |l: LogLine<'_>| {
            out.push(match l {
                LogLine::Line(s) => s.into_owned(),
                LogLine::Truncated { after } => format!("<truncated after {after}>"),
            })
        };
        for c in chunks {
            log.push(c, &mut emit);
        }
        log.finish(&mut emit);
        (out, log.stats())
    }

    #[test]
    fn lines_across_chunks_and_partial_last_line() {
        let (lines, stats) = run(1024, &[b"a\nb", b"c\r\n", b"\nd"]);
        assert_eq!(lines, ["a", "bc", "", "d"]);
        assert_eq!(stats.received, 8);
        assert_eq!(stats.logged, 8);
        assert!(!stats.truncated);
    }

    #[test]
    fn cap_cuts_once_and_counts_the_rest() {
        let (lines, stats) = run(5, &[b"abc\nde", b"fgh\n", b"more\n"]);
        assert_eq!(lines, ["abc", "d", "<truncated after 5>"]);
        assert_eq!(stats.received, 15);
        assert_eq!(stats.logged, 5);
        assert!(stats.truncated);
    }

    #[test]
    fn exactly_the_cap_is_not_truncated() {
        let (lines, stats) = run(4, &[b"abc\n"]);
        assert_eq!(lines, ["abc"]);
        assert!(!stats.truncated);
    }

    /// A pump stops at its budget and says so; the next one resumes.
    #[test]
    fn pump_yields_at_its_budget() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let poll = mio::Poll::new().unwrap();
        let (mut tx, rx) = mio::unix::pipe::new().unwrap();
        // Room for more than one budget, so one pump cannot drain it all.
        // SAFETY: fcntl on a descriptor we own.
        let size = unsafe { libc::fcntl(rx.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        if size < (PUMP_BUDGET as i32) * 2 {
            eprintln!("cannot grow the pipe ({size}); skipping");
            return;
        }
        tx.set_nonblocking(true).unwrap();
        let mut written = 0;
        let chunk = [b'x'; 4096];
        while written < PUMP_BUDGET * 2 {
            written += tx.write(&chunk).unwrap();
        }
        drop(tx);
        let mut out = Output::new(Stream::Stdout, Token(1), Some(rx), 100);
        out.register(poll.registry()).unwrap();
        out.pump(poll.registry(), "test");
        assert!(out.has_backlog());
        assert_eq!(out.stats().received, PUMP_BUDGET as u64);
        out.pump(poll.registry(), "test");
        out.pump(poll.registry(), "test");
        assert!(!out.is_open());
        assert_eq!(out.stats().received, written as u64);
        assert!(out.stats().truncated);
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        let (lines, _) = run(64, &[b"ok \xff\xfe end\n"]);
        assert_eq!(lines, ["ok \u{fffd}\u{fffd} end"]);
    }
}
