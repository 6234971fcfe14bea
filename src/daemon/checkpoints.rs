//! When the watches' state reaches the store: their new objects every
//! turn, before the sinks may act (the *gate*); what the sinks handled at
//! most once per interval; everything at shutdown.

use super::schedule::Schedule;
use super::watcher::Watcher;
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

    /// A watch that stops (a reload): what its sinks handled so far, so a
    /// watch coming back with the same definition resumes from there.
    pub fn save_now(&mut self, w: &mut Watcher) {
        if let Some(store) = &mut self.store {
            w.save_state(store);
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
