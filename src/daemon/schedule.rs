//! Which watches a loop turn looks at: those with work (readiness, room in
//! a sink, an answer) and those whose timer is due, nothing else. A turn
//! costs what is due, so 10,000 idle watches cost nothing per turn.
//!
//! Timers are a heap of `(deadline, slot)`. A watch's deadline mostly moves
//! later (every byte read pushes its idle limit back): an entry is only
//! pushed when the deadline moves *earlier* than the one armed; an entry
//! that fires early is checked against the watch (`Watcher::on_timers`
//! does nothing before the real deadline) and re-armed. Entries left over
//! by a re-arm are skipped when they surface.

use super::Slot;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// The per-slot part (in `Slot`).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Marks {
    /// In `runnable`.
    runnable: bool,
    /// In `blocked`.
    blocked: bool,
    /// In `touched`.
    touched: bool,
    /// In `unsaved`.
    unsaved: bool,
    /// The deadline its live heap entry has.
    armed: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct Schedule {
    /// To be driven this turn.
    runnable: Vec<usize>,
    /// Stopped for a full sink: runnable again when it has room.
    blocked: Vec<usize>,
    /// Driven or woken since the last re-arm: their timers are looked at.
    touched: Vec<usize>,
    /// May have handled state to save (driven, or acked).
    unsaved: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Schedule {
    pub fn has_runnable(&self) -> bool {
        !self.runnable.is_empty()
    }

    pub fn make_runnable(&mut self, slots: &mut [Slot], i: usize) {
        if let Some(s) = slots.get_mut(i) {
            if !s.marks.runnable && s.watcher.is_some() {
                s.marks.runnable = true;
                self.runnable.push(i);
            }
        }
    }

    /// Every watch (a credential plugin finished, a reload re-routed).
    pub fn wake_all(&mut self, slots: &mut [Slot]) {
        for i in 0..slots.len() {
            self.make_runnable(slots, i);
        }
    }

    /// The watches to drive now; those that stop with `Again` are made
    /// runnable again for the next turn by the caller.
    pub fn take_runnable(&mut self, slots: &mut [Slot]) -> Vec<usize> {
        let batch = std::mem::take(&mut self.runnable);
        for &i in &batch {
            if let Some(s) = slots.get_mut(i) {
                s.marks.runnable = false;
            }
            self.touch(slots, i);
        }
        batch
    }

    pub fn block(&mut self, slots: &mut [Slot], i: usize) {
        if let Some(s) = slots.get_mut(i) {
            if !s.marks.blocked {
                s.marks.blocked = true;
                self.blocked.push(i);
            }
        }
    }

    /// Blocked watches whose sinks have room go on.
    pub fn unblock(&mut self, slots: &mut [Slot], has_room: impl Fn(&Slot) -> bool) {
        let blocked = std::mem::take(&mut self.blocked);
        for i in blocked {
            let Some(s) = slots.get_mut(i) else { continue };
            if s.watcher.is_none() {
                s.marks.blocked = false;
            } else if has_room(s) {
                s.marks.blocked = false;
                self.make_runnable(slots, i);
            } else {
                self.blocked.push(i);
            }
        }
    }

    /// Slot `i` was driven, woken, or acked: its timer and state are looked
    /// at after the turn.
    pub fn touch(&mut self, slots: &mut [Slot], i: usize) {
        if let Some(s) = slots.get_mut(i) {
            if !s.marks.touched {
                s.marks.touched = true;
                self.touched.push(i);
            }
            if !s.marks.unsaved {
                s.marks.unsaved = true;
                self.unsaved.push(i);
            }
        }
    }

    /// The watches touched since the last call (their new objects go to
    /// the store), timers re-armed.
    pub fn take_touched(&mut self, slots: &mut [Slot]) -> Vec<usize> {
        let touched = std::mem::take(&mut self.touched);
        for &i in &touched {
            let Some(s) = slots.get_mut(i) else { continue };
            s.marks.touched = false;
            let Some(deadline) = s.watcher.as_ref().and_then(|w| w.deadline()) else {
                continue;
            };
            if s.marks.armed.is_none_or(|a| deadline < a) {
                s.marks.armed = Some(deadline);
                self.timers.push(Reverse((deadline, i)));
            }
        }
        touched
    }

    /// The watches that may have handled state to save.
    pub fn take_unsaved(&mut self, slots: &mut [Slot]) -> Vec<usize> {
        let unsaved = std::mem::take(&mut self.unsaved);
        for &i in &unsaved {
            if let Some(s) = slots.get_mut(i) {
                s.marks.unsaved = false;
            }
        }
        unsaved
    }

    pub fn has_unsaved(&self) -> bool {
        !self.unsaved.is_empty()
    }

    /// The watches whose timer is due at `now` (each is touched).
    pub fn take_due(&mut self, slots: &mut [Slot], now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(s) = slots.get_mut(i) else { continue };
            if s.marks.armed == Some(t) {
                s.marks.armed = None;
                due.push(i);
                self.touch(slots, i);
            }
        }
        due
    }

    /// The earliest live timer.
    pub fn next_timer(&mut self, slots: &[Slot]) -> Option<Instant> {
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if slots.get(i).is_some_and(|s| s.marks.armed == Some(t)) {
                return Some(t);
            }
            self.timers.pop();
        }
        None
    }
}
