//! Real files, FIFOs and (where this process may mount one) a full tmpfs.

use super::*;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

const ACK: AckRef = AckRef {
    watch: 0,
    seq: 0,
    rv: None,
};

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
    let read = Instant::now() - Duration::from_millis(30);
    s.push(read, b"{\"n\":1}\n", ACK);
    assert!(s.has_room());
    s.push(read, b"{\"n\":2}\n", ACK);
    assert!(!s.has_room());
    s.flush(Instant::now(), poll.registry());
    assert_eq!(s.queued(), 0);
    assert_eq!(s.delivered(), 2);
    // Each record's time from being read to written.
    assert_eq!(s.latency().count(), 2);
    assert!(s.latency().sum_seconds() >= 0.06);
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
    let two = AckRef {
        watch: 3,
        seq: 7,
        rv: None,
    };
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

/// A 256 KiB tmpfs on `dir` (unmounted on drop), full but for one
/// page; `None` with a message where this process may not mount.
struct FullTmpfs(PathBuf);

impl FullTmpfs {
    fn mount(dir: &Path) -> Option<FullTmpfs> {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: cannot mount a tmpfs here");
            return None;
        }
        let mounted = FullTmpfs(dir.to_owned());
        let mut filler = File::create(dir.join("filler")).unwrap();
        while filler.write(&[b'f'; 4096]).is_ok_and(|n| n > 0) {}
        let len = filler.metadata().unwrap().len();
        filler.set_len(len - 4096).unwrap();
        Some(mounted)
    }
}

impl Drop for FullTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A sink on a full tmpfs in `dir`, open, with ten 1000-byte records
/// queued: (mount, sink, its path, one record).
fn full_disk_sink(dir: &Path) -> Option<(FullTmpfs, FileSink, PathBuf, String)> {
    let fs = FullTmpfs::mount(dir)?;
    let path = dir.join("out.jsonl");
    let mut s = sink(&path, 100);
    s.open().unwrap();
    let line = format!("{}\n", "r".repeat(999));
    for seq in 0..10 {
        s.push(
            Instant::now(),
            line.as_bytes(),
            AckRef {
                watch: 1,
                seq,
                rv: None,
            },
        );
    }
    Some((fs, s, path, line))
}

#[test]
fn a_write_the_full_disk_cuts_short_is_rolled_back_and_retried() {
    let poll = mio::Poll::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let Some((_fs, mut s, path, line)) = full_disk_sink(dir.path()) else {
        return;
    };
    // The path a filesystem without fallocate takes.
    s.reserve = false;
    let now = Instant::now();
    s.flush(now, poll.registry());
    // Four records fit the free page; the fifth was cut and taken back.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, line.repeat(4));
    assert_eq!(s.queued(), 6);
    assert_eq!(s.torn, None);
    assert_eq!(s.retries(), 6, "each kept record counts once per failure");
    let mut acks = Vec::new();
    s.take_acks(&mut acks);
    assert_eq!(acks.len(), 4, "only whole records are acked");
    // A retry while still full changes nothing visible.
    let retry = s.retry_at().unwrap();
    s.flush(retry, poll.registry());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(s.retries(), 12);
    // Room again: the rest arrives, whole and once.
    std::fs::remove_file(dir.path().join("filler")).unwrap();
    s.flush(s.retry_at().unwrap(), poll.registry());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), line.repeat(10));
    assert_eq!(s.queued(), 0);
    s.take_acks(&mut acks);
    assert_eq!(acks.len(), 10);
}

#[test]
fn with_room_reserved_a_full_disk_refuses_a_record_before_writing_it() {
    let poll = mio::Poll::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let Some((_fs, mut s, path, line)) = full_disk_sink(dir.path()) else {
        return;
    };
    s.flush(Instant::now(), poll.registry());
    assert!(s.reserve, "tmpfs reserves");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), line.repeat(4));
    assert_eq!(s.queued(), 6);
    std::fs::remove_file(dir.path().join("filler")).unwrap();
    s.flush(s.retry_at().unwrap(), poll.registry());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), line.repeat(10));
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

const WAKER: Token = Token(1);

/// A poller with the waker the sync thread wakes, and a sink on it.
fn synced_sink(path: &Path, policy: SyncPolicy) -> (mio::Poll, FileSink) {
    let poll = mio::Poll::new().unwrap();
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
    let s = sink(path, 100).with_sync(policy, waker).unwrap();
    (poll, s)
}

/// Waits (at most 10 s) for the sync thread's wake.
fn wait_for_wake(poll: &mut mio::Poll) {
    let mut events = mio::Events::with_capacity(4);
    let give_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < give_up {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        if events.iter().any(|e| e.token() == WAKER) {
            return;
        }
    }
    panic!("no wake from the sync thread within 10 s");
}

fn ack(seq: u64) -> AckRef {
    AckRef {
        watch: 2,
        seq,
        rv: None,
    }
}

#[test]
fn with_sync_always_acks_only_after_the_fsync_that_followed_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let (mut poll, mut s) = synced_sink(&path, SyncPolicy::Always);
    for seq in 0..3 {
        s.push(
            Instant::now(),
            format!("{{\"n\":{seq}}}\n").as_bytes(),
            ack(seq),
        );
    }
    s.flush(Instant::now(), poll.registry());
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    let mut acks = Vec::new();
    // Written is not handled: nothing is acked before the fsync is done
    // (its result is only taken in by `flush`, on the loop).
    s.take_acks(&mut acks);
    assert!(acks.is_empty(), "acked before the fsync: {acks:?}");
    assert_eq!(s.queued(), 3, "waiting for the fsync counts as queued");
    assert_eq!(s.delivered(), 0);
    wait_for_wake(&mut poll);
    s.flush(Instant::now(), poll.registry());
    s.take_acks(&mut acks);
    assert_eq!(acks, vec![ack(0), ack(1), ack(2)]);
    assert_eq!((s.queued(), s.delivered()), (0, 3));
    assert!(s.buf.is_empty(), "released bytes are dropped");
    // The next write waits for its own fsync.
    s.push(Instant::now(), b"{\"n\":3}\n", ack(3));
    s.flush(Instant::now(), poll.registry());
    acks.clear();
    s.take_acks(&mut acks);
    assert!(acks.is_empty());
    wait_for_wake(&mut poll);
    s.flush(Instant::now(), poll.registry());
    s.take_acks(&mut acks);
    assert_eq!(acks, vec![ack(3)]);
}

#[test]
fn with_sync_interval_acks_at_write_and_syncs_at_most_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let interval = Duration::from_millis(300);
    let (mut poll, mut s) = synced_sink(&path, SyncPolicy::Interval(interval));
    s.push(Instant::now(), b"{\"n\":0}\n", ack(0));
    let t0 = Instant::now();
    s.flush(t0, poll.registry());
    let mut acks = Vec::new();
    s.take_acks(&mut acks);
    assert_eq!(acks, vec![ack(0)], "acked at write");
    let sync = |s: &FileSink| {
        let st = s.sync.as_ref().unwrap();
        (st.in_flight.len(), st.dirty)
    };
    assert_eq!(sync(&s), (1, false), "the first write is synced at once");
    wait_for_wake(&mut poll);
    s.push(Instant::now(), b"{\"n\":1}\n", ack(1));
    s.flush(t0 + Duration::from_millis(1), poll.registry());
    assert_eq!(sync(&s), (0, true), "not again within the interval");
    assert_eq!(s.retry_at(), Some(t0 + interval), "but when it is up");
    s.flush(t0 + interval, poll.registry());
    assert_eq!(sync(&s), (1, false));
    wait_for_wake(&mut poll);
    s.flush(t0 + interval, poll.registry());
    assert_eq!(sync(&s), (0, false));
    assert_eq!(s.retry_at(), None, "nothing left to sync");
}

#[test]
fn a_fifo_cannot_be_synced_so_its_records_are_acked_once_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let _reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .unwrap();
    let (mut poll, mut s) = synced_sink(&path, SyncPolicy::Always);
    s.push(Instant::now(), b"{}\n", ack(0));
    s.flush(Instant::now(), poll.registry());
    wait_for_wake(&mut poll);
    s.flush(Instant::now(), poll.registry());
    let mut acks = Vec::new();
    s.take_acks(&mut acks);
    assert_eq!(acks, vec![ack(0)]);
    assert!(s.sync.is_none(), "syncing stops after EINVAL");
}

#[test]
fn a_held_sink_writes_only_what_the_gate_lets_through() {
    let poll = mio::Poll::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut s = sink(&path, 100);
    s.open().unwrap();
    s.hold_for_store();
    s.push(Instant::now(), b"{\"n\":1}\n", ACK);
    s.flush(Instant::now(), poll.registry());
    assert_eq!(s.delivered(), 0, "written before the turn's pass");
    // A record of a new object: it waits for store batch 1.
    s.gate_mut().pass(Some(1), 0);
    s.push(Instant::now(), b"{\"n\":2}\n", ACK);
    s.gate_mut().pass(None, 0);
    s.flush(Instant::now(), poll.registry());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    assert_eq!((s.delivered(), s.queued()), (0, 2));
    // Batch 1 is committed: both go, in order.
    s.gate_mut().pass(None, 1);
    s.flush(Instant::now(), poll.registry());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"n\":1}\n{\"n\":2}\n"
    );
    // Only the prefix the gate opens is written.
    s.push(Instant::now(), b"{\"n\":3}\n", ACK);
    s.gate_mut().pass(None, 1);
    s.push(Instant::now(), b"{\"n\":4}\n", ACK);
    s.gate_mut().pass(Some(2), 1);
    s.flush(Instant::now(), poll.registry());
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    assert_eq!(s.queued(), 1);
    s.gate_mut().pass(None, 2);
    s.flush(Instant::now(), poll.registry());
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
}
