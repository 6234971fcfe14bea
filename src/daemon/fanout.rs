//! Where a watch's events go: each event rendered once, queued on every
//! sink of the watch, and recorded with the watch's persistence before any
//! sink acts on it.

use super::watcher::Ctx;
use crate::sink::{EventMeta, RecordWriter, Sink};
use crate::state::{AckRef, Persistence, WatchKey};
use crate::watch::{Emit, Emitted, Progress};
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
        let id = &event.identity;
        EventMeta {
            watch: self.watch.clone(),
            cluster: self.cluster.clone(),
            event_type: event.event_type.as_str(),
            origin: event.origin.as_str(),
            api_version: self.api_version.clone(),
            kind: id.kind.to_owned(),
            namespace: id.namespace.to_owned(),
            name: id.name.to_owned(),
            uid: id.uid.to_owned(),
            resource_version: id.resource_version.to_owned(),
        }
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

impl Emit for Fanout<'_> {
    fn emit(&mut self, event: Emitted<'_>) {
        let id = &event.identity;
        self.out
            .state
            .stage(id.namespace, id.name, id.resource_version);
        // The step is recorded right after (`progress`) under this number.
        let ack = AckRef {
            watch: self.out.key,
            seq: self.out.state.next_seq(),
        };
        if let [only] = self.out.sinks[..] {
            if let Some(file) = self.sinks.get_mut(only).and_then(Sink::as_file_mut) {
                let records = &self.out.records;
                file.push_rendered(|buf| records.write(buf, SystemTime::now(), &event), ack);
                self.fanned += 1;
                return;
            }
        }
        self.buf.clear();
        self.out.records.write(self.buf, SystemTime::now(), &event);
        let meta = self.out.meta_base.as_ref().map(|b| Rc::new(b.meta(&event)));
        for &i in &self.out.sinks {
            if let Some(s) = self.sinks.get_mut(i) {
                s.push(self.now, self.buf, meta.as_ref(), ack);
                self.fanned += 1;
            }
        }
    }

    fn progress(&mut self, progress: Progress<'_>) {
        let sinks = std::mem::take(&mut self.fanned);
        self.out.state.record(progress, sinks);
    }
}
