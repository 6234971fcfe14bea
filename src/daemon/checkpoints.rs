//! When the watches' state reaches the store: their new objects every
//! turn, before the sinks may act (the *gate*); what the sinks handled at
//! most once per interval; everything at shutdown.

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
    /// The store's writer failing was said in the status line.
    failing: Option<String>,
}

impl Checkpoints {
    pub fn new(store: StateStore) -> Self {
        Checkpoints {
            store: Some(store),
            next: Instant::now() + SAVE_INTERVAL,
            new_objects: Vec::new(),
            failing: None,
        }
    }

    pub fn store_mut(&mut self) -> Option<&mut StateStore> {
        self.store.as_mut()
    }

    /// Hands the new objects of this turn's watches to the store; the
    /// sinks wait for them (see `gate_open`).
    pub fn hand_over_new_objects<'a>(&mut self, watchers: impl Iterator<Item = &'a mut Watcher>) {
        let Some(store) = &mut self.store else {
            return;
        };
        for w in watchers {
            w.take_new_objects(&mut self.new_objects);
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
        if !open {
            self.failing = store.failing();
        } else {
            self.failing = None;
        }
        open
    }

    /// Why the store cannot commit, while the sinks wait for it.
    pub fn failing(&self) -> Option<&str> {
        self.failing.as_deref()
    }

    /// When `save_if_due` has something to do.
    pub fn deadline(&self, slots: &[Slot]) -> Option<Instant> {
        live(slots)
            .any(Watcher::has_unsaved_state)
            .then_some(self.next)
    }

    /// Saves what the sinks handled, at most once per `SAVE_INTERVAL`: one
    /// batch for every watch, its cost what changed.
    pub fn save_if_due(&mut self, slots: &mut [Slot]) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + SAVE_INTERVAL;
        self.save(slots);
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

fn live(slots: &[Slot]) -> impl Iterator<Item = &Watcher> {
    slots.iter().filter_map(|s| s.watcher.as_ref())
}
