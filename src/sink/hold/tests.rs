use super::*;
use crate::sink::{FileSink, QueueBound};
use mio::{Poll, Token};
use std::num::NonZeroU64;

fn ack(seq: u64, rv: u64) -> AckRef {
    AckRef {
        watch: 1,
        seq,
        rv: NonZeroU64::new(rv),
    }
}

fn file_sink(dir: &std::path::Path) -> Sink {
    let bound = QueueBound {
        events: 100,
        bytes: 1 << 20,
    };
    let file = FileSink::new("out", &dir.join("out.jsonl"), bound, Token(1));
    Sink::from(SinkKind::File(Box::new(file)))
}

fn lines(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_standby_holds_prunes_what_the_leader_handled_and_delivers_the_rest_on_takeover() {
    let dir = tempfile::tempdir().unwrap();
    let poll = Poll::new().unwrap();
    let now = Instant::now();
    let mut sink = file_sink(dir.path()).with_hold(100, 1 << 20);
    for (seq, rv) in [(1, 10), (2, 11), (3, 12), (4, 0)] {
        sink.push(now, format!("{seq}\n").as_bytes(), None, ack(seq, rv));
    }
    assert!(sink.as_file_mut().is_none(), "no fast path around the hold");
    flush(&mut sink, &poll);
    assert_eq!(
        lines(&dir.path().join("out.jsonl")),
        "",
        "a standby writes nothing"
    );
    assert_eq!(sink.hold().map(Hold::len), Some(4));
    // The leader handled up to rv 11; the record without an integer rv stays.
    let n = sink.prune(|a| a.rv.is_some_and(|rv| rv.get() <= 11), true);
    assert_eq!(sink.prune(|_| true, false), 0, "nothing new came in");
    assert_eq!(n, 2);
    let mut acks = Vec::new();
    sink.take_acks(&mut acks);
    assert_eq!(acks, vec![ack(1, 10), ack(2, 11)]);
    sink.set_delivering(now, true);
    flush(&mut sink, &poll);
    assert_eq!(lines(&dir.path().join("out.jsonl")), "3\n4\n");
    assert_eq!(sink.hold().map(Hold::pruned), Some(2));
}

#[test]
fn a_fenced_leader_takes_back_what_its_sink_had_not_started_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let poll = Poll::new().unwrap();
    let now = Instant::now();
    let mut sink = file_sink(dir.path()).with_hold(100, 1 << 20);
    sink.set_delivering(now, true);
    sink.push(now, b"1\n", None, ack(1, 1));
    flush(&mut sink, &poll);
    sink.push(now, b"2\n", None, ack(2, 2));
    sink.push(now, b"3\n", None, ack(3, 3));
    // Fenced before the next write: 2 and 3 come back, 1 was written.
    sink.set_delivering(now, false);
    sink.push(now, b"4\n", None, ack(4, 4));
    flush(&mut sink, &poll);
    assert_eq!(lines(&dir.path().join("out.jsonl")), "1\n");
    let held: Vec<u64> = sink
        .hold
        .as_ref()
        .map(|h| h.records.iter().map(|r| r.ack.seq).collect())
        .unwrap_or_default();
    assert_eq!(held, vec![2, 3, 4]);
    assert_eq!(sink.hold().map(Hold::bytes), Some(6));
    sink.set_delivering(now, true);
    flush(&mut sink, &poll);
    assert_eq!(lines(&dir.path().join("out.jsonl")), "1\n2\n3\n4\n");
}

#[test]
fn a_full_hold_has_no_room() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut sink = file_sink(dir.path()).with_hold(2, 1 << 20);
    sink.push(now, b"1\n", None, ack(1, 1));
    assert!(sink.has_room());
    sink.push(now, b"2\n", None, ack(2, 2));
    assert!(!sink.has_room(), "the event bound");
    let mut small = file_sink(dir.path()).with_hold(100, 4);
    small.push(now, b"12345\n", None, ack(1, 1));
    assert!(!small.has_room(), "the byte bound");
    small.prune(|_| true, false);
    assert!(small.has_room());
}

/// What `Sink::poll` does for a file sink, without a whole `SinkCtx`.
fn flush(sink: &mut Sink, poll: &Poll) {
    if let SinkKind::File(f) = &mut **sink {
        f.flush(Instant::now(), poll.registry());
    }
}
