//! Where a watch's events go: each event rendered once, queued on every
//! sink of the watch, and recorded with the watch's persistence before any
//! sink acts on it.

use super::ctx::Ctx;
use super::filtering::{transformed, ErrorLog, Filtering, SinkTransform};
use crate::filter::reads::Reads;
use crate::filter::{FilterStats, LogLimit, Memory};
use crate::sink::{EventMeta, RecordWriter, Sink};
use crate::state::{AckRef, Persistence, WatchKey};
use crate::watch::{Decided, Emit, Emitted, Progress};
use std::rc::Rc;
use std::time::{Instant, SystemTime};

/// The sink-facing half of a watcher: what its events become and where
/// they are recorded.
#[derive(Debug)]
pub struct Outlet {
    /// The watch's daemon slot: acks find their way back by it.
    pub key: WatchKey,
    /// Positions of the sinks it feeds in the daemon's sink list.
    pub sinks: Vec<usize>,
    pub records: RecordWriter,
    /// Set when a sink of this watch wants each event's `EventMeta`.
    pub meta_base: Option<MetaBase>,
    pub state: Persistence,
    /// The configured watch name, for logs.
    pub watch: String,
    /// `select`/`changes`/`redact`, if the watch has any.
    pub filter: Option<Filtering>,
    /// Each sink's `transform`, parallel to `sinks`.
    pub transforms: Vec<SinkTransform>,
    pub filter_stats: FilterStats,
    pub filter_log: LogLimit,
}

impl Outlet {
    pub fn has_room(&self, sinks: &[Sink]) -> bool {
        self.sinks
            .iter()
            .all(|&i| sinks.get(i).is_some_and(Sink::has_room))
    }

    /// The emitter for one batch of the machine's events.
    pub fn fanout<'a>(&'a mut self, ctx: &'a mut Ctx<'_>) -> Fanout<'a> {
        Fanout {
            out: self,
            now: ctx.now,
            sinks: ctx.sinks,
            buf: ctx.record_buf,
            fanned: 0,
        }
    }
}

/// The per-watch part of every event's `EventMeta`.
#[derive(Debug)]
pub struct MetaBase {
    pub watch: String,
    pub cluster: String,
    pub api_version: String,
}

impl MetaBase {
    fn meta(&self, event: &Emitted<'_>) -> EventMeta {
        EventMeta::of(
            self.watch.clone(),
            self.cluster.clone(),
            self.api_version.clone(),
            event,
        )
    }
}

/// Renders each event once and queues it on every sink of the watch, and
/// records each step with the number of sinks that must finish its record
/// before it counts as handled.
pub struct Fanout<'a> {
    out: &'a mut Outlet,
    now: Instant,
    sinks: &'a mut [Sink],
    buf: &'a mut Vec<u8>,
    /// Sinks the current step's record went to.
    fanned: u32,
}

impl Fanout<'_> {
    fn error_log(&mut self) -> ErrorLog<'_> {
        ErrorLog {
            watch: &self.out.watch,
            stats: &mut self.out.filter_stats,
            limit: &mut self.out.filter_log,
            now: self.now,
        }
    }
}

impl Emit for Fanout<'_> {
    fn decide(&mut self, event: &Emitted<'_>, memory: Option<&Memory>) -> Option<Decided> {
        let mut filter = self.out.filter.take()?;
        let decided = filter.decide(event, memory, &mut self.error_log());
        self.out.filter = Some(filter);
        Some(decided)
    }

    fn filtering(&self) -> bool {
        self.out.filter.is_some()
    }

    fn cut(&self) -> Option<&Reads> {
        self.out.filter.as_ref()?.reads()
    }

    fn remember(&mut self, event: &Emitted<'_>) -> Option<Memory> {
        self.out.filter.as_ref()?.remember(event)
    }

    fn emit(&mut self, event: Emitted<'_>) {
        let report = self.out.filter.as_mut().and_then(Filtering::take_report);
        let fields = match (&report, &self.out.filter) {
            (Some(r), Some(f)) => Some(f.fields(r)),
            _ => None,
        };
        let fields = fields.as_ref();
        let id = &event.identity;
        self.out
            .state
            .stage(id.namespace, id.name, id.resource_version);
        // The step is recorded right after (`progress`) under this number.
        let ack = AckRef {
            watch: self.out.key,
            seq: self.out.state.next_seq(),
            // A relist's synthesised DELETED shows the object's last known
            // version, not the deletion's: never dropped as handled.
            rv: (!event.final_state_unknown)
                .then(|| crate::state::integer_rv(id.resource_version))
                .flatten(),
        };
        if let ([only], [None]) = (&self.out.sinks[..], &self.out.transforms[..]) {
            if let Some(file) = self.sinks.get_mut(*only).and_then(Sink::as_file_mut) {
                let records = &self.out.records;
                file.push_rendered(
                    self.now,
                    |buf| records.write_with(buf, SystemTime::now(), &event, fields),
                    ack,
                );
                self.fanned += 1;
                return;
            }
        }
        self.buf.clear();
        self.out
            .records
            .write_with(self.buf, SystemTime::now(), &event, fields);
        let meta = self.out.meta_base.as_ref().map(|b| Rc::new(b.meta(&event)));
        for n in 0..self.out.sinks.len() {
            let i = self.out.sinks[n];
            if self.sinks.get(i).is_none() {
                continue;
            }
            let lines = match self.out.transforms.get(n).cloned().flatten() {
                None => None,
                Some(t) => {
                    let record = std::mem::take(self.buf);
                    let lines = transformed(&t, &record, &event, &mut self.error_log());
                    *self.buf = record;
                    Some(lines)
                }
            };
            let Some(s) = self.sinks.get_mut(i) else {
                continue;
            };
            match lines {
                None => {
                    s.push(self.now, self.buf, meta.as_ref(), ack);
                    self.fanned += 1;
                }
                // No output: nothing for this sink, and nothing it must
                // acknowledge.
                Some(lines) => {
                    for line in &lines {
                        s.push(self.now, line, meta.as_ref(), ack);
                        self.fanned += 1;
                    }
                }
            }
        }
    }

    fn progress(&mut self, progress: Progress<'_>) {
        let sinks = std::mem::take(&mut self.fanned);
        self.out.state.record(progress, sinks);
    }
}

/// Where a watch's events go: its cluster and sinks (positions in the
/// daemon's lists), and whether a sink wants each event's metadata.
#[derive(Debug, Clone)]
pub struct Route {
    pub cluster: usize,
    pub sinks: Vec<usize>,
    /// Each sink's `transform`, parallel to `sinks`.
    pub transforms: Vec<SinkTransform>,
    pub wants_meta: bool,
}

pub(super) fn meta_base(
    machine: &crate::watch::WatchMachine,
    cluster_name: &str,
    wants_meta: bool,
) -> Option<MetaBase> {
    wants_meta.then(|| MetaBase {
        watch: machine.spec().record_name.clone(),
        cluster: cluster_name.to_owned(),
        // Known at once, or after discovery (set in `complete`).
        api_version: machine.api_version().unwrap_or_default().to_owned(),
    })
}
