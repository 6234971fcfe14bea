//! The state store's gate, per sink: an object first reported must be
//! known to the store before any sink acts on its record (so a crash at
//! any moment still reports its DELETED after a restart). The store
//! commits each turn's new objects on its writer thread while the loop
//! goes on; a sink holds back only the records pushed in turns whose new
//! objects it got and the store has not committed yet (and what was
//! pushed after them, so a sink's order never changes). Sinks fed by no
//! new object, and the watches, do not wait.
//!
//! Records are counted in push order; the sink may act on the first
//! [`Gate::open`] of them. A sink nobody gates (tests, tools) holds nothing.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Gate {
    /// Records pushed so far.
    pushed: u64,
    /// Records before this count may be acted on; `None`: not gated.
    open: Option<u64>,
    /// Records up to `.1` (a push count) wait for store batch `.0`; both
    /// ascending.
    waits: VecDeque<(u64, u64)>,
}

impl Gate {
    /// Held from now on until [`Gate::pass`] lets records through.
    pub fn held() -> Self {
        Gate {
            open: Some(0),
            ..Gate::default()
        }
    }

    /// Counts one record pushed.
    pub fn push(&mut self) {
        self.pushed += 1;
    }

    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// How many records (counted from the first ever pushed) may be acted on.
    pub fn open(&self) -> u64 {
        self.open.unwrap_or(self.pushed)
    }

    /// After a turn's pushes: those since the last call wait for store
    /// batch `wait` (`None`: they carry no new object, and wait only for
    /// what was pushed before them); then everything up to the batches
    /// the store has `committed` may be acted on.
    pub fn pass(&mut self, wait: Option<u64>, committed: u64) {
        let Some(open) = &mut self.open else {
            return;
        };
        let last = self.waits.back().map_or(*open, |w| w.1);
        if self.pushed > last {
            match (wait, self.waits.back_mut()) {
                (Some(batch), Some(w)) if w.0 >= batch => w.1 = self.pushed,
                (Some(batch), _) => self.waits.push_back((batch, self.pushed)),
                (None, Some(w)) => w.1 = self.pushed,
                (None, None) => *open = self.pushed,
            }
        }
        while let Some(&(batch, upto)) = self.waits.front() {
            if batch > committed {
                break;
            }
            *open = upto;
            self.waits.pop_front();
        }
    }

    /// The last `n` records pushed were taken back (a fenced leader's sink
    /// gives back what it had not started, see `sink::hold`): the count
    /// forgets them, so what is pushed next (the same records, at a
    /// takeover) is counted, and held, afresh.
    pub fn withdraw(&mut self, n: u64) {
        self.pushed = self.pushed.saturating_sub(n);
        let pushed = self.pushed;
        let Some(open) = &mut self.open else {
            return;
        };
        *open = (*open).min(pushed);
        let open = *open;
        for w in &mut self.waits {
            w.1 = w.1.min(pushed);
        }
        // A wait that no longer holds a record would lower `open` when it
        // passes.
        self.waits.retain(|w| w.1 > open);
    }

    /// Records held back for a batch the store has not committed.
    pub fn waiting(&self) -> bool {
        !self.waits.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(g: &mut Gate, n: u64) {
        for _ in 0..n {
            g.push();
        }
    }

    #[test]
    fn records_taken_back_are_forgotten_and_held_afresh_when_pushed_again() {
        let mut g = Gate::held();
        pushed(&mut g, 4);
        g.pass(None, 0);
        pushed(&mut g, 3);
        g.pass(Some(1), 0);
        assert_eq!((g.open(), g.pushed()), (4, 7));
        // The last five go back (two let through, three waiting for batch 1).
        g.withdraw(5);
        assert_eq!((g.open(), g.pushed()), (2, 2));
        assert!(!g.waiting(), "nothing left waits for batch 1");
        // Pushed again at a takeover: they wait for the last batch sent.
        pushed(&mut g, 5);
        g.pass(Some(1), 0);
        assert_eq!(g.open(), 2);
        g.pass(None, 1);
        assert_eq!(g.open(), 7);
        // Taking back more than was pushed is clamped.
        g.withdraw(100);
        assert_eq!((g.open(), g.pushed()), (0, 0));
    }

    #[test]
    fn an_ungated_sink_holds_nothing() {
        let mut g = Gate::default();
        pushed(&mut g, 3);
        assert_eq!(g.open(), 3);
        g.pass(Some(1), 0);
        assert_eq!(g.open(), 3);
    }

    #[test]
    fn records_wait_for_their_batch_and_later_ones_queue_behind() {
        let mut g = Gate::held();
        pushed(&mut g, 2);
        assert_eq!(g.open(), 0, "nothing before the turn's pass");
        g.pass(None, 0);
        assert_eq!(g.open(), 2, "no new object: at once");
        pushed(&mut g, 3);
        g.pass(Some(1), 0);
        assert_eq!(g.open(), 2);
        assert!(g.waiting());
        // A turn without new objects for this sink: behind batch 1.
        pushed(&mut g, 1);
        g.pass(None, 0);
        assert_eq!(g.open(), 2);
        pushed(&mut g, 4);
        g.pass(Some(2), 0);
        assert_eq!(g.open(), 2);
        // Batch 1 commits: its records and the one behind it go.
        g.pass(None, 1);
        assert_eq!(g.open(), 6);
        g.pass(None, 2);
        assert_eq!(g.open(), 10);
        assert!(!g.waiting());
        // A batch committed by the time the turn ends holds nothing.
        pushed(&mut g, 1);
        g.pass(Some(3), 3);
        assert_eq!(g.open(), 11);
    }

    #[test]
    fn a_turn_without_pushes_adds_no_wait() {
        let mut g = Gate::held();
        g.pass(Some(1), 0);
        assert!(!g.waiting());
        pushed(&mut g, 1);
        g.pass(Some(2), 0);
        // The store commits in order: 2 covers 1.
        g.pass(None, 2);
        assert_eq!(g.open(), 1);
    }
}
