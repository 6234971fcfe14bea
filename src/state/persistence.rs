//! One watch's side of persistence: the commit ledger (what every sink
//! has handled) and the changes it owes the state store.
//!
//! The watcher talks to this type only, in the order its guarantees need:
//! `resume` once at start, `record` for every step it hands to the sinks,
//! `take_new_objects` before the sinks act on a turn's records, `ack` as
//! sinks finish, `save` when the daemon's save round comes by. Two kinds
//! of change leave it:
//!
//! - *new objects*, the moment their first event is handed to a sink: the
//!   store knows them (as unconfirmed) before any sink acts, so a restart
//!   after a crash relists and reports them again, or their DELETED;
//! - *handled state*, at a save: the entries of the keys whose committed
//!   entry changed, and the position, once every sink acknowledged them.

use super::checkpoint::Fingerprint;
use super::db::{encode_index_entry, push_fresh, push_put, Op, Saved, WatchRow, PUTS_PER_OP};
use super::ledger::{AckError, Ledger};
use super::store::StateStore;
use crate::watch::index::{unconfirmed_version, ObjectIndex};
use crate::watch::Progress;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Ids of `fresh` batches: unique in the process (a watch a reload
/// stopped may leave some for the next start to fold), and the store has
/// none at start.
static FRESH_BATCHES: AtomicU64 = AtomicU64::new(0);

/// The watch's `select`, `changes` or `redact` changed since its state was
/// saved: its position holds, what was reported under the old keys does
/// not (each object's next event is compared against nothing). The store
/// gets the row with the new filter digest and the entries without their
/// memory in one batch, so a crash cannot leave old memory under the new
/// digest.
fn forget_filter_memory(
    watch: &str,
    name: &Arc<str>,
    saved: &mut Saved,
    fingerprint: &Fingerprint,
    ops: &mut Vec<Op>,
) {
    let had: Vec<String> = (saved.objects.iter())
        .filter(|(_, e)| e.memory().is_some())
        .map(|(key, _)| key.to_string())
        .collect();
    for key in &had {
        saved.objects.set_memory(key, None);
        if let Some(entry) = saved.objects.get(key) {
            ops.push(Op::Put {
                watch: Arc::clone(name),
                key: key.clone(),
                entry: encode_index_entry(entry),
            });
        }
    }
    let had = had.len();
    saved.row.fingerprint = fingerprint.clone();
    ops.push(Op::Watch {
        watch: Arc::clone(name),
        row: saved.row.clone(),
    });
    log::info!(
        "watch {watch}: select, changes or redact changed since its state was saved; the filter's memory of {had} objects is reset (each object's next event is reported, compared against nothing), the position is kept"
    );
}

/// Where a watch starts after a restart.
#[derive(Debug)]
pub enum Resume {
    /// From a handled position, knowing the objects the sinks had handled
    /// and, as unconfirmed, those first reported after it.
    At {
        resource_version: String,
        index: ObjectIndex,
    },
    /// Objects were reported (all unconfirmed) but no position was handled
    /// yet: the first list reports what changed against them.
    Unpositioned { index: ObjectIndex },
}

#[derive(Debug)]
struct Disk {
    watch: Arc<str>,
    fingerprint: Fingerprint,
    /// The position last handed to the store.
    saved_rv: Option<String>,
    /// New objects of this turn, for the store before the sinks act
    /// ([`push_fresh`]), and the step of the last one.
    fresh: Vec<u8>,
    fresh_seq: u64,
    /// Batches of new objects in the store, with the step of their last
    /// object: the save that commits it writes their handled entries and
    /// forgets the batch.
    batches: VecDeque<(u64, u64)>,
    /// The identity of the event being fanned out (see `stage`).
    namespace: String,
    name: String,
    resource_version: String,
}

#[derive(Debug)]
pub struct Persistence {
    ledger: Ledger,
    /// `None`: nothing survives a restart.
    disk: Option<Disk>,
}

impl Persistence {
    /// For a watch whose state is not kept.
    pub fn in_memory() -> Self {
        Persistence {
            ledger: Ledger::new(),
            disk: None,
        }
    }

    /// What the store kept for `watch` if it was written for the same
    /// definition (`fingerprint`), and the persistence that goes on from it.
    pub fn resume(
        store: &mut StateStore,
        watch: &str,
        fingerprint: Fingerprint,
    ) -> (Self, Option<Resume>) {
        let name: Arc<str> = Arc::from(watch);
        let saved = store.take_saved(watch);
        let mut ops = Vec::new();
        let saved = match saved {
            Some(s) if !s.row.fingerprint.differences(&fingerprint).is_empty() => {
                let diff = s.row.fingerprint.differences(&fingerprint);
                log::warn!(
                    "watch {watch}: the saved state was written for another definition of the watch ({}); ignored, the watch lists afresh",
                    diff.join(", ")
                );
                ops.push(Op::Clear {
                    watch: Arc::clone(&name),
                });
                None
            }
            Some(mut s) if s.row.fingerprint.filter != fingerprint.filter => {
                forget_filter_memory(watch, &name, &mut s, &fingerprint, &mut ops);
                Some(s)
            }
            other => other,
        };
        let (resume, saved_rv) = match saved {
            Some(Saved { row, objects }) => {
                let index = objects;
                match row.resource_version {
                    Some(rv) => (
                        Some(Resume::At {
                            resource_version: rv.clone(),
                            index,
                        }),
                        Some(rv),
                    ),
                    None if index.is_empty() => (None, None),
                    None => {
                        log::info!(
                            "watch {watch}: {} objects were reported before a first position was saved; taken as unconfirmed, the first list reports what changed",
                            index.len()
                        );
                        (Some(Resume::Unpositioned { index }), None)
                    }
                }
            }
            None => {
                ops.push(Op::Watch {
                    watch: Arc::clone(&name),
                    row: WatchRow {
                        fingerprint: fingerprint.clone(),
                        resource_version: None,
                    },
                });
                (None, None)
            }
        };
        store.submit(ops);
        let ledger = match &saved_rv {
            Some(rv) => Ledger::resumed(rv.clone()),
            None => Ledger::new(),
        };
        let disk = Disk {
            watch: name,
            fingerprint,
            saved_rv,
            fresh: Vec::new(),
            fresh_seq: 0,
            batches: VecDeque::new(),
            namespace: String::new(),
            name: String::new(),
            resource_version: String::new(),
        };
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
            for (to, from) in [
                (&mut d.namespace, namespace),
                (&mut d.name, name),
                (&mut d.resource_version, resource_version),
            ] {
                to.clear();
                to.push_str(from);
            }
        }
    }

    /// The step whose event went to `sinks` sinks (0: no sink work).
    pub fn record(&mut self, progress: Progress<'_>, sinks: u32) {
        if let (Some(d), Some(change)) = (&mut self.disk, &progress.change) {
            // A sink got the first event of an object the store does not
            // know yet.
            if sinks > 0 && change.previous.is_none() {
                let ns = (!d.namespace.is_empty()).then_some(d.namespace.as_str());
                let rv = unconfirmed_version(&d.resource_version);
                push_fresh(&mut d.fresh, change.key, ns, &d.name, &rv);
                d.fresh_seq = self.ledger.next_seq();
            }
        }
        self.ledger.record(progress, sinks);
    }

    /// Moves the new objects recorded since the last call to `out`; true
    /// if there were any. Called once per loop turn; the sinks act on
    /// their records once the store has them.
    pub fn take_new_objects(&mut self, out: &mut Vec<Op>) -> bool {
        match &mut self.disk {
            Some(d) if !d.fresh.is_empty() => {
                let batch = FRESH_BATCHES.fetch_add(1, Ordering::Relaxed);
                let capacity = d.fresh.len();
                out.push(Op::Fresh {
                    watch: Arc::clone(&d.watch),
                    batch,
                    entries: std::mem::replace(&mut d.fresh, Vec::with_capacity(capacity)),
                });
                d.batches.push_back((batch, d.fresh_seq));
                true
            }
            _ => false,
        }
    }

    /// One sink finished with the record of step `seq`.
    pub fn ack(&mut self, seq: u64) -> Result<(), AckError> {
        self.ledger.ack(seq)
    }

    /// The resourceVersion every sink has handled the stream up to (what a
    /// leader advertises to its standbys).
    pub fn committed_version(&self) -> Option<&str> {
        self.ledger.committed_version()
    }

    /// The handled state changed since the last save.
    pub fn is_dirty(&self) -> bool {
        self.disk.is_some() && self.ledger.is_dirty()
    }

    /// The watch stops (a reload): what its sinks handled goes to the store,
    /// and stays at hand for a watch of the same name started later in
    /// this run (the store's copy may still be on its way to the file).
    pub fn retire(mut self, store: &mut StateStore, index: &ObjectIndex) {
        self.save(store, index);
        let Some(d) = self.disk else {
            return;
        };
        let mut objects = ObjectIndex::default();
        self.ledger.committed_view(index).for_each(|key, entry| {
            objects.insert_entry(key, entry);
        });
        let row = WatchRow {
            fingerprint: d.fingerprint,
            resource_version: d.saved_rv,
        };
        store.put_saved(&d.watch, Saved { row, objects });
    }

    /// Hands what the sinks handled since the last save (`index` is the
    /// watch's current index) to the store: the entries of the keys whose
    /// committed entry changed, and the position. The cost is what changed.
    pub fn save(&mut self, store: &mut StateStore, index: &ObjectIndex) {
        self.save_at_most(store, index, usize::MAX);
    }

    /// [`Persistence::save`], writing at most `limit` entries: the first
    /// save of a big list goes in parts, one per save round, so what it
    /// holds on its way to the file stays bounded. The position (and the
    /// forgetting of `fresh` rows) goes with the part that leaves nothing
    /// behind; until then the state stays dirty. The store always holds,
    /// for each key, its committed entry or the key is still to be saved:
    /// a key whose committed entry changes after its part was written is
    /// taken again before the position.
    pub fn save_at_most(&mut self, store: &mut StateStore, index: &ObjectIndex, limit: usize) {
        let Some(d) = &mut self.disk else {
            return;
        };
        if !self.ledger.take_dirty() {
            return;
        }
        let changed = self.ledger.take_changed(limit);
        let complete = !self.ledger.is_dirty();
        let view = self.ledger.committed_view(index);
        // Straight into the store's next batch: the handled entries in
        // buffers of at most `PUTS_PER_OP` objects (the first save of a
        // big list holds no allocation per object, and the writer may
        // commit it in slices), the removed keys one by one.
        let ops = store.queue();
        let mut puts = Vec::new();
        let mut in_puts = 0;
        changed.for_each(|key| match view.get(key) {
            Some(e) => {
                push_put(&mut puts, key, e);
                in_puts += 1;
                if in_puts == PUTS_PER_OP {
                    ops.push(Op::Puts {
                        watch: Arc::clone(&d.watch),
                        entries: std::mem::take(&mut puts),
                    });
                    in_puts = 0;
                }
            }
            None => ops.push(Op::Delete {
                watch: Arc::clone(&d.watch),
                key: key.to_owned(),
            }),
        });
        if in_puts > 0 {
            ops.push(Op::Puts {
                watch: Arc::clone(&d.watch),
                entries: puts,
            });
        }
        if !complete {
            return;
        }
        // The batches of new objects whose steps are all committed: their
        // handled entries are among the puts of this save and its parts.
        let front = self
            .ledger
            .next_seq()
            .wrapping_sub(self.ledger.uncommitted() as u64);
        while let Some(&(batch, last)) = d.batches.front() {
            if (front.wrapping_sub(last) as i64) <= 0 {
                break;
            }
            ops.push(Op::Forget {
                watch: Arc::clone(&d.watch),
                batch,
            });
            d.batches.pop_front();
        }
        let rv = self.ledger.committed_version();
        if rv.is_some() && rv != d.saved_rv.as_deref() {
            d.saved_rv = rv.map(str::to_owned);
            ops.push(Op::Watch {
                watch: Arc::clone(&d.watch),
                row: WatchRow {
                    fingerprint: d.fingerprint.clone(),
                    resource_version: d.saved_rv.clone(),
                },
            });
        }
    }
}
