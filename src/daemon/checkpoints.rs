//! When the watches' handled state is saved: at most once per interval,
//! a round over the watches spread over loop turns, and everything at
//! shutdown.

use super::watcher::Watcher;
use super::Slot;
use crate::state::StateStore;
use std::time::{Duration, Instant};

/// Checkpoints are written at most this often (and at shutdown).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Rendering checkpoints runs in the loop: with huge indexes the interval
/// grows so that it takes at most 1/this of the loop's time.
const CHECKPOINT_DUTY: u32 = 20;
/// Watches whose checkpoint one loop turn renders at most.
const CHECKPOINTS_PER_TURN: usize = 16;
/// How long shutdown waits for the checkpoint writer.
const CHECKPOINT_FINISH: Duration = Duration::from_secs(10);

pub(super) struct Checkpoints {
    /// `None` only after shutdown handed it its last checkpoints.
    store: Option<StateStore>,
    /// No checkpoint write before this.
    next: Instant,
    /// The slot a round spread over turns goes on from.
    cursor: usize,
}

impl Checkpoints {
    pub fn new(store: StateStore) -> Self {
        Checkpoints {
            store: Some(store),
            next: Instant::now() + CHECKPOINT_INTERVAL,
            cursor: 0,
        }
    }

    pub fn store(&self) -> Option<&StateStore> {
        self.store.as_ref()
    }

    /// When `save_if_due` has something to do.
    pub fn deadline(&self, slots: &[Slot]) -> Option<Instant> {
        live(slots)
            .any(Watcher::has_unsaved_state)
            .then_some(self.next)
    }

    /// Saves the watches whose handled state changed, at most once per
    /// `CHECKPOINT_INTERVAL`.
    pub fn save_if_due(&mut self, slots: &mut [Slot]) {
        let now = Instant::now();
        if now < self.next || !live(slots).any(Watcher::has_unsaved_state) {
            return;
        }
        let round_done = self.save(slots, false);
        let spent = now.elapsed();
        // A round over many watches is spread over loop turns, the loop
        // keeping most of its time for the sockets in between.
        self.next = if round_done {
            now + CHECKPOINT_INTERVAL.max(spent * CHECKPOINT_DUTY)
        } else {
            now + spent * CHECKPOINT_DUTY
        };
    }

    /// A watch that stops (a reload): what its sinks handled so far, so a
    /// watch coming back with the same definition resumes from there.
    pub fn save_now(&mut self, w: &mut Watcher) {
        if let Some(store) = &mut self.store {
            w.save_checkpoint(store, true);
        }
    }

    /// The last checkpoints, at shutdown; waits for the writer.
    pub fn finish(&mut self, slots: &mut [Slot]) {
        self.save(slots, true);
        if let Some(store) = self.store.take() {
            store.finish(CHECKPOINT_FINISH);
        }
    }

    /// `finally`: every watch. Else at most `CHECKPOINTS_PER_TURN` watches
    /// with unsaved state, from where the last call stopped; true when the
    /// round reached the last watch.
    fn save(&mut self, slots: &mut [Slot], finally: bool) -> bool {
        let Some(store) = &mut self.store else {
            return true;
        };
        let start = if finally { 0 } else { self.cursor };
        let mut written = 0;
        for (i, slot) in slots.iter_mut().enumerate().skip(start) {
            let Some(w) = &mut slot.watcher else {
                continue;
            };
            if !w.has_unsaved_state() {
                continue;
            }
            if !finally && written == CHECKPOINTS_PER_TURN {
                self.cursor = i;
                return false;
            }
            written += 1;
            w.save_checkpoint(store, finally);
        }
        self.cursor = 0;
        true
    }
}

fn live(slots: &[Slot]) -> impl Iterator<Item = &Watcher> {
    slots.iter().filter_map(|s| s.watcher.as_ref())
}
