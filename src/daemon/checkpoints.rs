//! When the watches' state reaches the store: their new objects every
//! turn, before the sinks may act on their records (the *gate*, per sink:
//! `sink::Gate`); what the sinks handled at most once per interval;
//! everything at shutdown. Each turn sends the writer at most two
//! batches, whatever the number of watches.

use super::schedule::Schedule;
use super::Slot;
use crate::sink::Sink;
use crate::state::StateStore;
use std::time::{Duration, Instant};

/// What the sinks handled is saved at most this often (and at shutdown).
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Entries one watch's save round writes at most: the first save of a big
/// list (250,000 objects) goes in parts of this many, a round apart, so
/// what it holds on the way to the store stays a few megabytes.
const SAVE_AT_MOST: usize = 65_536;
/// How long shutdown waits for the store's writer.
const FINISH: Duration = Duration::from_secs(10);

pub(super) struct Checkpoints {
    /// `None` only after shutdown handed it its last changes.
    store: Option<StateStore>,
    /// No save round before this.
    next: Instant,
    /// Why the store's writer fails, while sinks wait for it.
    failing: Option<String>,
    /// By position in the daemon's sinks: it got records of this turn's
    /// new objects.
    gated: Vec<bool>,
    /// The batch of this turn's new objects, until `pass`.
    batch: Option<u64>,
    /// The last batch of new objects sent to the store.
    last_batch: Option<u64>,
    /// Every sink waits for `last_batch` at the next `pass` (see `regate`).
    regate: bool,
}

impl Checkpoints {
    pub fn new(store: StateStore) -> Self {
        Checkpoints {
            store: Some(store),
            next: Instant::now() + SAVE_INTERVAL,
            failing: None,
            gated: Vec::new(),
            batch: None,
            last_batch: None,
            regate: false,
        }
    }

    pub fn store_mut(&mut self) -> Option<&mut StateStore> {
        self.store.as_mut()
    }

    /// Hands the new objects of this turn's watches (`touched`) to the
    /// store in one batch, committed while the loop goes on; the sinks
    /// that got their records hold them back until it is (see `pass`).
    pub fn hand_over_new_objects(&mut self, slots: &mut [Slot], touched: &[usize]) {
        let Some(store) = &mut self.store else {
            return;
        };
        let mut any = false;
        for &i in touched {
            let Some(w) = slots.get_mut(i).and_then(|s| s.watcher.as_mut()) else {
                continue;
            };
            if let Some(sinks) = w.take_new_objects(store.queue()) {
                any = true;
                for &s in sinks {
                    if s >= self.gated.len() {
                        self.gated.resize(s + 1, false);
                    }
                    self.gated[s] = true;
                }
            }
        }
        if any {
            self.batch = store.send(true);
            self.last_batch = self.batch.or(self.last_batch);
        }
    }

    /// Before the sinks are polled: this turn's records wait for the
    /// batch of its new objects in the sinks that got some, and whatever
    /// waited for a batch the store has committed may be acted on.
    pub fn pass(&mut self, sinks: &mut [Sink], retiring: &mut [Sink]) {
        let committed = self.store.as_ref().map_or(u64::MAX, StateStore::committed);
        let batch = self.batch.take();
        let regate = std::mem::take(&mut self.regate);
        let now = Instant::now();
        let all = self.last_batch.filter(|_| regate);
        for (i, sink) in sinks.iter_mut().enumerate() {
            let gated = self.gated.get_mut(i).is_some_and(std::mem::take);
            sink.pass(now, all.or(batch.filter(|_| gated)), committed);
        }
        for sink in retiring {
            sink.pass(now, all, committed);
        }
        self.failing = match &self.store {
            Some(store) if store.gate_waiting() => store.failing(),
            _ => None,
        };
    }

    /// At the next `pass` every sink's new records wait for the last batch
    /// of new objects sent: records a standby held and now hands to its
    /// sinks (a takeover) were pushed in turns whose batches the store may
    /// not have committed yet (a full disk), and the gate counted none of
    /// them then.
    pub fn regate(&mut self) {
        self.regate = true;
    }

    /// Why the store cannot commit, while sinks wait for it.
    pub fn failing(&self) -> Option<&str> {
        self.failing.as_deref()
    }

    /// Sends the changes queued this turn (saves, new watches' rows) to
    /// the writer.
    pub fn flush(&mut self) {
        if let Some(store) = &mut self.store {
            store.send(false);
        }
    }

    /// When `save_if_due` has something to do.
    pub fn deadline(&self, schedule: &Schedule) -> Option<Instant> {
        schedule.has_unsaved().then_some(self.next)
    }

    /// Saves what the sinks handled, at most once per `SAVE_INTERVAL`, for
    /// the watches driven or acked since the last save: its cost is what
    /// changed.
    pub fn save_if_due(&mut self, slots: &mut [Slot], schedule: &mut Schedule) {
        let now = Instant::now();
        if now < self.next || !schedule.has_unsaved() {
            return;
        }
        self.next = now + SAVE_INTERVAL;
        let Some(store) = &mut self.store else {
            return;
        };
        for i in schedule.take_unsaved(slots) {
            if let Some(w) = slots.get_mut(i).and_then(|s| s.watcher.as_mut()) {
                if w.has_unsaved_state() {
                    w.save_state_part(store, SAVE_AT_MOST);
                    if w.has_unsaved_state() {
                        // The rest goes in the next round.
                        schedule.touch(slots, i);
                    }
                }
            }
        }
    }

    /// The last save, at shutdown; waits for the writer.
    pub fn finish(&mut self, slots: &mut [Slot]) {
        self.save(slots);
        if let Some(store) = self.store.take() {
            store.finish(FINISH);
        }
    }

    fn save(&mut self, slots: &mut [Slot]) {
        let Some(store) = &mut self.store else {
            return;
        };
        for w in slots.iter_mut().filter_map(|s| s.watcher.as_mut()) {
            if w.has_unsaved_state() {
                w.save_state(store);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::SyncMode;
    use crate::sink::{FileSink, QueueBound, SyncPolicy};
    use crate::state::{db, AckRef, Fingerprint, Persistence, StateStore};
    use crate::watch::index::ObjectIndex;
    use crate::watch::Progress;
    use mio::{Events, Poll, Token, Waker};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn fp() -> Fingerprint {
        Fingerprint::of_test_pods("")
    }

    /// `sync = "always"`: a file sink acknowledges a record only after an
    /// fsync that followed its write, and a position is saved only once
    /// every sink acknowledged it; so the store never holds a position whose
    /// records are not on disk.
    #[test]
    fn with_sync_always_the_position_is_saved_only_after_the_file_sink_fsynced() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(1)).unwrap());
        let sync = (SyncMode::Always, Duration::from_secs(1));
        let mut store = StateStore::open(&state, sync, Arc::clone(&waker)).unwrap();
        let (mut watch, _) = Persistence::resume(&mut store, "pods", fp());
        let bound = QueueBound {
            events: 16,
            bytes: 1 << 20,
        };
        let mut file = FileSink::new("out", &dir.path().join("out.jsonl"), bound, Token(2));
        file.open().unwrap();
        let mut file = file.with_sync(SyncPolicy::Always, waker).unwrap();

        let ack = AckRef {
            watch: 0,
            seq: watch.next_seq(),
            rv: None,
        };
        file.push(Instant::now(), b"{\"n\":1}\n", ack);
        watch.record(Progress::version("7"), 1);
        file.flush(Instant::now(), poll.registry());
        let mut acks = Vec::new();
        file.take_acks(&mut acks);
        assert!(acks.is_empty(), "acknowledged at write(), before its fsync");
        let index = ObjectIndex::default();
        watch.save(&mut store, &index);

        // The fsync thread wakes the loop; the next flush collects it.
        let mut events = Events::with_capacity(4);
        let end = Instant::now() + Duration::from_secs(10);
        while acks.is_empty() && Instant::now() < end {
            poll.poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            file.flush(Instant::now(), poll.registry());
            file.take_acks(&mut acks);
        }
        assert_eq!(acks, [ack]);
        // Nothing saved the position before the ack.
        let positions = db::positions(&state).unwrap();
        assert_eq!(positions.get("pods").cloned().flatten(), None);
        watch.ack(ack.seq).unwrap();
        watch.save(&mut store, &index);
        store.finish(Duration::from_secs(10));
        assert_eq!(db::positions(&state).unwrap()["pods"].as_deref(), Some("7"));
    }
}
