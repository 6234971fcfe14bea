//! The file sink: appends records to a JSON-lines file, or to standard
//! output (the stdout sink is the same queue with another target).
//!
//! Writes are batched per loop turn and never block: the file is opened
//! non-blocking (a FIFO reader that stops reading must not wedge the loop),
//! and a failed write (full disk, I/O error) keeps every queued byte and
//! retries with backoff. A record is only dropped from the queue once all of
//! its bytes are written, so a line is never lost or cut short.
//!
//! A regular file never shows half a record, so a `tail -f` reader or log
//! shipper sees whole lines only, also while the disk is full. Room for the
//! records is reserved (`fallocate`, keeping the file size) before they are
//! written: a full disk refuses a record before any byte of it is visible.
//! Where that cannot be done (no `fallocate`, or a copy-on-write filesystem
//! failing the write anyway) and a write stops part-way through a record
//! (ENOSPC, an I/O error), the bytes of it already written are cut off again
//! at once (truncate back to the end of the last whole line) and the whole
//! record is written later. Should that cut fail too, it is tried again
//! before the next write, before the file is closed for a rotation and when
//! the sink is dropped at shutdown; only a crash can leave a torn tail, and
//! the next start cuts it.
//!
//! Durability against a host crash is the [`SyncPolicy`]'s: without one a
//! record counts as handled once `write()` took it; with `Always` its ack
//! waits for an fsync (run on a helper thread, `sync.rs`), so a watch's
//! checkpoint never passes a record the disk may not have.

mod sync;
mod target;
#[cfg(test)]
mod tests;

pub use sync::SyncPolicy;

use super::{Gate, LatencySample, QueueBound};
use crate::state::{AckRef, Acks};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token, Waker};
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync::Syncer;
use target::{dup_stdout, open_append, repair_torn_tail, reserve, Target};

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
    /// `buf[..whole]` is whole records written (`whole <= written`): a
    /// failed write rolls the file and `written` back to here.
    whole: usize,
    /// The file holds part of a record from this offset on (a failed write
    /// whose bytes could not be cut off yet): cut before anything else is
    /// written. Regular files only.
    torn: Option<u64>,
    /// Room is reserved before writing (see `room`); off once the file
    /// refused a reservation for another reason than a full disk.
    reserve: bool,
    /// End offset in `buf` of every queued record, oldest first, with the
    /// ref acked once all of its bytes are written (and synced, see
    /// `unsynced`) and when it was queued.
    record_ends: VecDeque<(usize, AckRef, Instant)>,
    /// Queued → handled (written, and synced where that is the policy),
    /// per record: a slow disk shows here.
    latency: LatencySample,
    /// `buf[..released]` is records whose acks went out; their bytes may be
    /// dropped (`released <= whole`).
    released: usize,
    /// Written records waiting for an fsync before their acks go
    /// (`SyncPolicy::Always`), with their end offsets in `buf`: their bytes
    /// are kept, to be written again should the fsync fail.
    unsynced: VecDeque<(usize, AckRef, Instant)>,
    /// `None`: never fsync (also for standard output).
    sync: Option<SyncState>,
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
    /// Records queued when a write or open failed, all kept and tried
    /// again: each failure counts them again. A file sink never gives up.
    retries: u64,
    /// How many of the queued records may be written (the state store's
    /// gate).
    gate: Gate,
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
            whole: 0,
            torn: None,
            reserve: true,
            record_ends: VecDeque::new(),
            latency: LatencySample::default(),
            released: 0,
            unsynced: VecDeque::new(),
            sync: None,
            acks: Acks::default(),
            repaired: false,
            backoff_until: None,
            recheck_at: None,
            armed_fd: None,
            token,
            failures: 0,
            delivered: 0,
            retries: 0,
            gate: Gate::default(),
        }
    }

    /// Writes a record only once the gate lets it through (see
    /// [`Gate`]).
    pub fn hold_for_store(&mut self) {
        self.gate = Gate::held();
    }

    pub fn gate_mut(&mut self) -> &mut Gate {
        &mut self.gate
    }

    /// fsyncs the file as `policy` says, on a helper thread that wakes the
    /// loop through `waker` when one is done (the daemon's waker: any wake
    /// leads to `flush`, which collects the result). `Err` when that thread
    /// cannot be started. Standard output is never synced.
    pub fn with_sync(mut self, policy: SyncPolicy, waker: Arc<Waker>) -> io::Result<Self> {
        if policy == SyncPolicy::None || self.is_stdout() {
            self.sync = None;
            return Ok(self);
        }
        log::debug!(
            "sink {}: fsync policy {} for {}",
            self.name,
            policy.as_str(),
            self.describe()
        );
        self.sync = Some(SyncState {
            policy,
            syncer: Syncer::spawn(&self.name, waker)?,
            in_flight: VecDeque::new(),
            dirty: false,
            due: None,
        });
        Ok(self)
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
        self.queued() < self.bound.events && self.buf.len() - self.released < self.bound.bytes
    }

    /// Records not handled yet: queued, or written and waiting for their
    /// fsync.
    pub fn queued(&self) -> usize {
        self.record_ends.len() + self.unsynced.len()
    }

    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Queued → handled, per record.
    pub fn latency(&self) -> &LatencySample {
        &self.latency
    }

    /// See [`DeliveryCounts::retries`](super::DeliveryCounts::retries).
    pub fn retries(&self) -> u64 {
        self.retries
    }

    pub fn is_stdout(&self) -> bool {
        matches!(self.target, Target::Stdout { .. })
    }

    /// When `flush` should run again even if nothing new arrives.
    pub fn token(&self) -> Token {
        self.token
    }

    pub fn retry_at(&self) -> Option<Instant> {
        let sync_due = self
            .sync
            .as_ref()
            .filter(|s| s.dirty && s.in_flight.is_empty())
            .and_then(|s| s.due);
        [self.backoff_until, self.recheck_at, sync_due]
            .into_iter()
            .flatten()
            .min()
    }

    /// `now`: when the event was read.
    pub fn push(&mut self, now: Instant, record: &[u8], ack: AckRef) {
        self.buf.extend_from_slice(record);
        self.record_ends.push_back((self.buf.len(), ack, now));
        self.gate.push();
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
        self.gate.push();
    }

    /// Takes back every queued record of which no byte was written yet
    /// (oldest first: its bytes, ack and queue time), for a replica that
    /// stops delivering (`sink::hold`). Written records, also those waiting
    /// for an fsync, stay: they were delivered.
    pub fn withdraw(&mut self) -> Vec<(Vec<u8>, AckRef, Instant)> {
        let mut start = self.whole;
        let first = self.record_ends.iter().position(|&(end, _, _)| {
            let untouched = start >= self.written;
            start = end;
            untouched
        });
        let Some(first) = first else {
            return Vec::new();
        };
        let cut = match first {
            0 => self.whole,
            i => self.record_ends.get(i - 1).map_or(self.whole, |r| r.0),
        };
        let mut out = Vec::with_capacity(self.record_ends.len() - first);
        let mut from = cut;
        for (end, ack, queued) in self.record_ends.drain(first..) {
            out.push((
                self.buf.get(from..end).unwrap_or_default().to_vec(),
                ack,
                queued,
            ));
            from = end;
        }
        self.buf.truncate(cut);
        self.compact();
        self.gate.withdraw(out.len() as u64);
        out
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
                    self.reserve = true;
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
        if let Some(file) = self.file.take() {
            // What was written to this file is synced before it goes (a
            // rotation must not lose the fsync its records wait for).
            if let Some(sync) = self.sync.as_mut().filter(|s| s.dirty) {
                if let Ok(dup) = file.try_clone() {
                    if sync.syncer.request(dup) {
                        sync.in_flight.push_back(self.whole);
                        sync.dirty = false;
                    }
                }
            }
            if let Err(e) = self.cut_torn(&file) {
                // The file is being rotated away; the record goes whole
                // into the next one.
                log::error!(
                    "sink {}: {} keeps a partial last line: cutting it off failed: {e}",
                    self.name,
                    self.describe()
                );
                self.torn = None;
            }
        }
        // Closing the descriptor also removes it from the poller.
        self.armed_fd = None;
    }

    /// How far into `buf` the next writes may go: `all` (the end of what
    /// the gate lets through), or, when the disk has no room for all of
    /// it, the end of the records it has room for. The room is reserved (`fallocate`, keeping the file's size) so
    /// that a full disk refuses a record before any byte of it is visible;
    /// `Err` (ENOSPC) when not even the next record fits. Everything where
    /// the file cannot be reserved (a pipe, a filesystem without
    /// `fallocate`): a failed write is rolled back instead.
    fn room(&mut self, file: &File, all: usize) -> io::Result<usize> {
        if !self.reserve || !matches!(self.target, Target::Path(_)) {
            return Ok(all);
        }
        let meta = file.metadata()?;
        if !meta.is_file() {
            self.reserve = false;
            return Ok(all);
        }
        let next = self
            .record_ends
            .iter()
            .map(|(end, _, _)| *end)
            .find(|end| *end > self.written)
            .unwrap_or(all);
        for stop in [all, next] {
            match reserve(file, meta.len(), stop - self.written) {
                Ok(()) => return Ok(stop),
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && stop != next => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Err(e),
                Err(e) => {
                    log::debug!(
                        "sink {}: {} cannot reserve room ({e}); a write the disk cuts short is rolled back",
                        self.name,
                        self.describe()
                    );
                    self.reserve = false;
                    return Ok(all);
                }
            }
        }
        Ok(all)
    }

    /// A write stopped part-way through a record: cut the part that made it
    /// to the file, so readers never see half a line, and write the whole
    /// record again later. Pipes cannot take bytes back (and a reader has
    /// them already): their write continues where it stopped.
    fn roll_back(&mut self, file: &File) {
        let partial = self.written - self.whole;
        if partial == 0 || !matches!(self.target, Target::Path(_)) {
            return;
        }
        match file.metadata() {
            Ok(m) if m.is_file() => {}
            _ => return,
        }
        // After an append the position is the end of what we wrote.
        let end = match io::Seek::stream_position(&mut &*file) {
            Ok(end) => end,
            Err(e) => {
                log::error!(
                    "sink {}: {} may show a partial last line: {e}",
                    self.name,
                    self.describe()
                );
                return;
            }
        };
        self.written = self.whole;
        self.torn = Some(end.saturating_sub(partial as u64));
        match self.cut_torn(file) {
            // Once per outage, like the error that follows; retries quietly.
            Ok(()) => log::log!(
                if self.failures == 0 {
                    log::Level::Warn
                } else {
                    log::Level::Debug
                },
                "sink {}: took the {partial} bytes of a record that did not fit back out of {}; \
                 it is written whole once the file takes it",
                self.name,
                self.describe()
            ),
            Err(e) => log::error!(
                "sink {}: {} shows a partial last line of {partial} bytes until it can be cut off \
                 (tried again before the next write): {e}",
                self.name,
                self.describe()
            ),
        }
    }

    /// Cuts the file back to `torn`, if set.
    fn cut_torn(&mut self, file: &File) -> io::Result<()> {
        if let Some(offset) = self.torn {
            file.set_len(offset)?;
            self.torn = None;
        }
        Ok(())
    }

    /// Collects finished fsyncs, writes what is queued, and starts an
    /// fsync when the policy says one is due.
    pub fn flush(&mut self, now: Instant, registry: &Registry) {
        self.collect_syncs(now);
        self.write_queue(now, registry);
        self.start_sync(now);
    }

    /// The end in `buf` of the records the gate lets through.
    fn writable(&self) -> usize {
        let queued = self.record_ends.len();
        let first = self.gate.pushed().saturating_sub(queued as u64);
        match usize::try_from(self.gate.open().saturating_sub(first)).unwrap_or(usize::MAX) {
            n if n >= queued => self.buf.len(),
            // A record partly written was let through before.
            n => n
                .checked_sub(1)
                .and_then(|last| self.record_ends.get(last))
                .map_or(self.written, |r| r.0),
        }
    }

    fn write_queue(&mut self, now: Instant, registry: &Registry) {
        if self.writable() <= self.written || self.backoff_until.is_some_and(|t| t > now) {
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
        if let Err(e) = self.cut_torn(&file) {
            self.file = Some(file);
            self.fail(now, "cannot cut a partial line off", &e);
            return;
        }
        // Re-read each time: retiring written records may compact `buf`.
        while self.written < self.writable() {
            let stop = match self.room(&file, self.writable()) {
                Ok(stop) => stop,
                Err(e) => {
                    self.file = Some(file);
                    self.fail(now, "no room for the next record in", &e);
                    return;
                }
            };
            // Counted down, not compared with `stop`: retiring written
            // records may clear or compact `buf` under these indices.
            let mut left = stop - self.written;
            while left > 0 {
                let at = self.written;
                match self.target.write(&mut file, &self.buf[at..at + left]) {
                    Ok(0) => {
                        self.roll_back(&file);
                        self.file = Some(file);
                        let e =
                            io::Error::new(io::ErrorKind::WriteZero, "the write made no progress");
                        self.fail(now, "cannot write to", &e);
                        return;
                    }
                    Ok(n) => {
                        self.written += n;
                        left -= n;
                        if let Some(sync) = &mut self.sync {
                            sync.dirty = true;
                        }
                        // One clock read per write: its own time counts.
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
                        let broken =
                            matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::EBADF));
                        self.roll_back(&file);
                        self.file = Some(file);
                        if broken {
                            self.close_file();
                        }
                        self.fail(now, "cannot write to", &e);
                        return;
                    }
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
        let hold = self
            .sync
            .as_ref()
            .is_some_and(|s| s.policy == SyncPolicy::Always);
        while let Some(&(end, ack, queued)) = self.record_ends.front() {
            if end > self.written {
                break;
            }
            self.record_ends.pop_front();
            self.whole = end;
            if hold {
                self.unsynced.push_back((end, ack, queued));
            } else {
                self.release(end, ack, now.saturating_duration_since(queued));
            }
        }
        self.compact();
    }

    /// `took`: since the record was queued.
    fn release(&mut self, end: usize, ack: AckRef, took: Duration) {
        self.latency.record(took);
        self.acks.push(ack);
        self.delivered += 1;
        self.released = end;
    }

    /// Drops the bytes of released records from `buf`: all of it once
    /// everything is written and released, else in steps of `COMPACT_AT`.
    /// Never a partial record (it may be rolled back and written again) nor
    /// one waiting for its fsync (it is written again if that fails).
    fn compact(&mut self) {
        let cut = if self.written == self.buf.len() && self.released == self.written {
            self.buf.clear();
            self.released
        } else if self.released >= COMPACT_AT {
            self.buf.drain(..self.released);
            self.released
        } else {
            return;
        };
        for (end, _, _) in self.record_ends.iter_mut().chain(&mut self.unsynced) {
            *end -= cut;
        }
        if let Some(sync) = &mut self.sync {
            for covers in &mut sync.in_flight {
                *covers = covers.saturating_sub(cut);
            }
        }
        self.written -= cut;
        self.whole -= cut;
        self.released = 0;
    }

    /// Asks the helper thread for an fsync when one is due: at once for
    /// `Always` (while none runs: those writes wait for the next), for
    /// `Interval` once the interval since the last one passed.
    fn start_sync(&mut self, now: Instant) {
        let Some(sync) = &mut self.sync else {
            return;
        };
        if !sync.dirty || !sync.in_flight.is_empty() || sync.due.is_some_and(|t| t > now) {
            return;
        }
        let Some(file) = &self.file else {
            return;
        };
        let interval = match sync.policy {
            SyncPolicy::Interval(d) => d,
            SyncPolicy::None | SyncPolicy::Always => Duration::ZERO,
        };
        match file.try_clone().map(|dup| sync.syncer.request(dup)) {
            Ok(true) => {
                sync.in_flight.push_back(self.whole);
                sync.dirty = false;
                sync.due = now.checked_add(interval);
            }
            Ok(false) => {
                log::error!(
                    "sink {}: the fsync thread is gone; {} is no longer synced",
                    self.name,
                    self.describe()
                );
                self.stop_syncing();
            }
            // EMFILE, most likely: tried again after a pause.
            Err(e) => {
                log::debug!("sink {}: cannot hand the file to fsync: {e}", self.name);
                sync.due = Some(now + ERROR_RETRY_MIN);
            }
        }
    }

    /// Takes the results of finished fsyncs: releases what they covered, or
    /// after a failure writes the unsynced records again (`Always`; they
    /// may then appear twice, never not at all).
    fn collect_syncs(&mut self, now: Instant) {
        loop {
            let Some(sync) = self.sync.as_mut().filter(|s| !s.in_flight.is_empty()) else {
                return;
            };
            let Some(result) = sync.syncer.poll() else {
                return;
            };
            let covers = sync.in_flight.pop_front().unwrap_or(0);
            let policy = sync.policy;
            match result {
                Ok(()) => {
                    while let Some(&(end, ack, queued)) = self.unsynced.front() {
                        if end > covers {
                            break;
                        }
                        self.unsynced.pop_front();
                        self.release(end, ack, now.saturating_duration_since(queued));
                    }
                    self.compact();
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    log::info!(
                        "sink {}: {} cannot be synced ({e}); its records count as handled once written",
                        self.name,
                        self.describe()
                    );
                    self.stop_syncing();
                }
                Err(e) if policy == SyncPolicy::Always => {
                    self.unwind_unsynced();
                    self.fail(now, "cannot sync", &e);
                }
                Err(e) => log::error!(
                    "sink {}: cannot sync {}: {e}; what was written since the last sync may not survive a host crash",
                    self.name,
                    self.describe()
                ),
            }
        }
    }

    /// An fsync failed: what it should have covered may not be on disk
    /// (the kernel may even have dropped the pages), so every record still
    /// waiting for one is queued again, ahead of the rest.
    fn unwind_unsynced(&mut self) {
        if let Some(sync) = &mut self.sync {
            sync.in_flight.clear();
            sync.dirty = false;
        }
        while let Some(r) = self.unsynced.pop_back() {
            self.record_ends.push_front(r);
        }
        self.written = self.released;
        self.whole = self.released;
    }

    /// No more fsyncs: what waited for one is released now.
    fn stop_syncing(&mut self) {
        self.sync = None;
        let now = Instant::now();
        while let Some((end, ack, queued)) = self.unsynced.pop_front() {
            self.release(end, ack, now.saturating_duration_since(queued));
        }
        self.compact();
    }

    fn fail(&mut self, now: Instant, what: &str, e: &io::Error) {
        self.failures = self.failures.saturating_add(1);
        self.retries += self.record_ends.len() as u64;
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

/// A sink's fsync state (see [`SyncPolicy`]).
#[derive(Debug)]
struct SyncState {
    policy: SyncPolicy,
    syncer: Syncer,
    /// Requested fsyncs, oldest first, each with the offset in `buf` up to
    /// which it covers what was written (results come back in order).
    in_flight: VecDeque<usize>,
    /// Bytes were written since the last fsync was requested.
    dirty: bool,
    /// No new fsync before this (`Interval`; a pause after a failed hand-over).
    due: Option<Instant>,
}

impl Drop for FileSink {
    /// Shutdown: whatever ends the daemon, a partial record the disk had no
    /// room for is not left behind in the file.
    fn drop(&mut self) {
        self.close_file();
    }
}
