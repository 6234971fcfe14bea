//! When the watches' state reaches the store: their new objects every
//! turn, before the sinks may act (the *gate*); what the sinks handled at
//! most once per interval; everything at shutdown.

use super::schedule::Schedule;
use super::Slot;
use crate::state::db::Op;
use crate::state::StateStore;
use std::time::{Duration, Instant};

/// What the sinks handled is saved at most this often (and at shutdown).
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long shutdown waits for the store's writer.
const FINISH: Duration = Duration::from_secs(10);

pub(super) struct Checkpoints {
    /// `None` only after shutdown handed it its last changes.
    store: Option<StateStore>,
    /// No save round before this.
    next: Instant,
    /// Reused for each turn's new objects.
    new_objects: Vec<Op>,
    /// Why the store's writer fails, while the sinks wait for it.
    failing: Option<String>,
    /// The last `gate_open` said no: the writer wakes the loop when it
    /// opens.
    gate_closed: bool,
}

impl Checkpoints {
    pub fn new(store: StateStore) -> Self {
        Checkpoints {
            store: Some(store),
            next: Instant::now() + SAVE_INTERVAL,
            new_objects: Vec::new(),
            failing: None,
            gate_closed: false,
        }
    }

    pub fn store_mut(&mut self) -> Option<&mut StateStore> {
        self.store.as_mut()
    }

    /// Hands the new objects of this turn's watches (`touched`) to the
    /// store; the sinks wait for them (see `gate_open`).
    pub fn hand_over_new_objects(&mut self, slots: &mut [Slot], touched: &[usize]) {
        let Some(store) = &mut self.store else {
            return;
        };
        for &i in touched {
            if let Some(w) = slots.get_mut(i).and_then(|s| s.watcher.as_mut()) {
                w.take_new_objects(&mut self.new_objects);
            }
        }
        if !self.new_objects.is_empty() {
            let ops = std::mem::take(&mut self.new_objects);
            store.submit(ops, true);
        }
    }

    /// True when the store has every new object handed over: the sinks may
    /// act on what they hold.
    pub fn gate_open(&mut self) -> bool {
        let Some(store) = &self.store else {
            return true;
        };
        let open = store.gate_open();
        self.failing = if open { None } else { store.failing() };
        self.gate_closed = !open;
        open
    }

    /// The sinks wait for the store (as the last `gate_open` found).
    pub fn gate_closed(&self) -> bool {
        self.gate_closed
    }

    /// Why the store cannot commit, while the sinks wait for it.
    pub fn failing(&self) -> Option<&str> {
        self.failing.as_deref()
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
                    w.save_state(store);
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
        Fingerprint {
            cluster: "c".into(),
            server: "http://127.0.0.1:1".into(),
            api_version: "v1".into(),
            resource: "pods".into(),
            path: "/api/v1/pods".into(),
            namespace: None,
            label_selector: None,
            field_selector: None,
            filter: String::new(),
        }
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
        store.submit(Vec::new(), false);
        let positions = db::positions(&state).unwrap();
        assert_eq!(positions.get("pods").cloned().flatten(), None);
        watch.ack(ack.seq).unwrap();
        watch.save(&mut store, &index);
        store.finish(Duration::from_secs(10));
        assert_eq!(db::positions(&state).unwrap()["pods"].as_deref(), Some("7"));
    }
}
