//! One watch's side of persistence: the commit ledger (what every sink
//! has handled) and, with a state directory, where its state lives and the
//! record of objects first reported since the last save.
//!
//! The watcher talks to this type only, in the order its guarantees need:
//! `resume` once at start, `record` for every step it hands to the sinks,
//! `flush` before the sinks act on a turn's records, `ack` as sinks finish,
//! `save` when the daemon's checkpoint round comes by. How the state gets
//! to disk (files, a store) is behind these five calls.

use super::journal::Journal;
use super::ledger::{AckError, Ledger};
use super::store::{CheckpointTarget, StateStore};
use crate::watch::index::{unconfirmed_version, IndexEntry, ObjectIndex};
use crate::watch::Progress;

/// Where a watch resumes after a restart.
#[derive(Debug)]
pub struct Resume {
    pub resource_version: String,
    /// The objects the sinks had handled, and those first reported after
    /// the last save as unconfirmed (a relist reports them again, or their
    /// DELETED).
    pub index: ObjectIndex,
}

#[derive(Debug)]
struct Disk {
    target: CheckpointTarget,
    journal: Journal,
}

#[derive(Debug)]
pub struct Persistence {
    ledger: Ledger,
    /// `None` without a state directory: nothing survives a restart.
    disk: Option<Disk>,
}

impl Persistence {
    /// For a daemon without a state directory.
    pub fn in_memory() -> Self {
        Persistence {
            ledger: Ledger::new(),
            disk: None,
        }
    }

    /// The watch's saved state at `target`, if there is a usable one, and
    /// the persistence that goes on from it.
    pub fn resume(store: &StateStore, target: CheckpointTarget) -> (Self, Option<Resume>) {
        let mut ledger = Ledger::new();
        let resume = match store.load(&target) {
            Some(mut c) => {
                let mut added = 0;
                for (key, namespace, name, rv) in Journal::load(&target.path) {
                    c.objects.entry(key).or_insert_with(|| {
                        added += 1;
                        IndexEntry::new(namespace.as_deref(), &name, &unconfirmed_version(&rv))
                    });
                }
                if added > 0 {
                    log::info!(
                        "watch {}: {added} objects reported after the checkpoint was written are taken as unconfirmed",
                        target.watch
                    );
                }
                ledger = Ledger::resumed(c.resource_version.clone());
                Some(Resume {
                    resource_version: c.resource_version,
                    index: ObjectIndex::from_map(c.objects),
                })
            }
            None => {
                Journal::discard(&target.path);
                None
            }
        };
        let journal = Journal::new(&target.path);
        let disk = Disk { target, journal };
        (
            Persistence {
                ledger,
                disk: Some(disk),
            },
            resume,
        )
    }

    /// The sequence number the next recorded step gets: records fanned out
    /// for it carry it in their acks.
    pub fn next_seq(&self) -> u64 {
        self.ledger.next_seq()
    }

    /// The identity of the event about to be handed to the sinks; `record`
    /// keeps it if its step turns out to add a new object.
    pub fn stage(&mut self, namespace: &str, name: &str, resource_version: &str) {
        if let Some(d) = &mut self.disk {
            d.journal.stage(namespace, name, resource_version);
        }
    }

    /// The step whose event went to `sinks` sinks (0: no sink work).
    pub fn record(&mut self, progress: Progress<'_>, sinks: u32) {
        if let (Some(d), Some(change)) = (&mut self.disk, &progress.change) {
            // A sink got the first event of an object the saved state does
            // not know yet.
            if sinks > 0 && change.previous.is_none() {
                d.journal.record(change.key);
            }
        }
        self.ledger.record(progress, sinks);
    }

    /// Writes the new objects recorded since the last call. Called once per
    /// loop turn, before the sinks act on the turn's records.
    pub fn flush(&mut self) {
        if let Some(d) = &mut self.disk {
            d.journal.flush();
        }
    }

    /// One sink finished with the record of step `seq`.
    pub fn ack(&mut self, seq: u64) -> Result<(), AckError> {
        self.ledger.ack(seq)
    }

    /// The handled state changed since the last save.
    pub fn is_dirty(&self) -> bool {
        self.disk.is_some() && self.ledger.is_dirty()
    }

    /// Hands the handled state (`index` is the watch's current index) to
    /// the store, if it changed (`finally`: at shutdown or when the watch
    /// stops, even while an older save is still being written).
    pub fn save(&mut self, store: &mut StateStore, index: &ObjectIndex, finally: bool) {
        if let Some(d) = &mut self.disk {
            store.save(
                &d.target,
                &mut self.ledger,
                index,
                Some(&mut d.journal),
                finally,
            );
        }
    }
}
