//! The daemon side of `filter`: one watch's compiled `select`, `changes`
//! and `redact` with its counters, and the sinks' `transform`s, applied
//! where the watch fans its events out (`fanout`).
//!
//! Watches without these keys have no [`Filtering`] and sinks without a
//! transform no [`Transform`]: they pay nothing per event.

use crate::config::EventType;
use crate::config::WatchConfig;
use crate::filter::object::Change;
use crate::filter::reads::Reads;
use crate::filter::Memory;
use crate::filter::{
    FilterKey, FilterStats, LogLimit, Program, RedactKey, Redactor, Report, Transform, Transformed,
    Verdict, WatchFilter,
};
use crate::sink::FilteredFields;
use crate::watch::{Decided, Emitted};
use std::rc::Rc;
use std::time::Instant;

/// One watch's filter at run time.
#[derive(Debug)]
pub struct Filtering {
    rules: WatchFilter,
    /// The report of the event being emitted (set by `decide`, taken by
    /// the emit that follows it).
    pending: Option<Report>,
}

impl Filtering {
    /// The filter of `w`, `None` when it has none. Compile errors were
    /// reported when the configuration loaded; one here is a bug, said as
    /// such.
    pub fn new(
        w: &WatchConfig,
        key: impl FnOnce() -> std::io::Result<RedactKey>,
    ) -> Result<Option<Filtering>, String> {
        let paths = w.redact_paths();
        if w.select.is_none() && w.changes.is_none() && paths.is_empty() {
            return Ok(None);
        }
        let compile = |what: &str, code: &Option<String>| -> Result<Option<Program>, String> {
            code.as_deref()
                .map(|c| {
                    Program::compile(c).map_err(|e| {
                        let first = e.first().map_or(String::new(), |e| e.message.clone());
                        format!("watch {}: {what} does not compile: {first}", w.name)
                    })
                })
                .transpose()
        };
        let redact =
            if paths.is_empty() {
                None
            } else {
                Some(Redactor::compile(&paths).map_err(|(i, m)| {
                    format!("watch {}: redact[{i}] does not compile: {m}", w.name)
                })?)
            };
        let key = key().map_err(|e| format!("the redaction key: {e}"))?;
        Ok(Some(Filtering {
            rules: WatchFilter::new(
                compile("select", &w.select)?,
                compile("changes", &w.changes)?,
                redact,
                key,
            ),
            pending: None,
        }))
    }

    /// Decides one event (see `filter::object`), counting skips and
    /// errors.
    pub fn decide(
        &mut self,
        event: &Emitted<'_>,
        memory: Option<&Memory>,
        log: &mut ErrorLog<'_>,
    ) -> Decided {
        let change = match event.event_type {
            EventType::Added => Change::Added,
            EventType::Modified => Change::Modified,
            EventType::Deleted => Change::Deleted,
        };
        let object = event.object.as_bytes();
        let (verdict, keep) = self.rules.decide_with(change, object, event.cut, memory);
        match verdict {
            Verdict::Skip(reason) => {
                log.stats.skipped[reason as usize] += 1;
                Decided {
                    emit: false,
                    memory: keep,
                }
            }
            Verdict::Report(report) => {
                if let Some(e) = &report.error {
                    log.error(e.key, event, &e.message);
                }
                self.pending = Some(report);
                Decided {
                    emit: true,
                    memory: keep,
                }
            }
        }
    }

    /// What the filter's programs read, when bounded (see `Emit::cut`).
    pub fn reads(&self) -> Option<&Reads> {
        self.rules.reads()
    }

    /// What to remember of an object that is not reported (see
    /// `Emit::remember`).
    pub fn remember(&self, event: &Emitted<'_>) -> Option<Memory> {
        self.rules.baseline(event.object.as_bytes())
    }

    /// The fields the record of the event just decided gains.
    pub fn take_report(&mut self) -> Option<Report> {
        self.pending.take()
    }

    /// Records carry `projection` and `previous_projection`.
    pub fn projections(&self) -> bool {
        self.rules.has_changes()
    }

    pub fn fields<'a>(&self, report: &'a Report) -> FilteredFields<'a> {
        FilteredFields {
            report,
            projections: self.projections(),
        }
    }
}

/// Where a watch's filter errors go: its counters and its rate-limited
/// log lines.
pub struct ErrorLog<'a> {
    pub watch: &'a str,
    pub stats: &'a mut FilterStats,
    pub limit: &'a mut LogLimit,
    pub now: Instant,
}

impl ErrorLog<'_> {
    /// Counts an error of `key` on `event`'s object and logs it unless
    /// too many were logged lately. The message never holds the object.
    pub fn error(&mut self, key: FilterKey, event: &Emitted<'_>, message: &str) {
        self.stats.errors[key as usize] += 1;
        if let Some(suppressed) = self.limit.admit(self.now) {
            let id = &event.identity;
            let object = if id.namespace.is_empty() {
                id.name.to_owned()
            } else {
                format!("{}/{}", id.namespace, id.name)
            };
            let more = if suppressed > 0 {
                format!(" ({suppressed} more filter errors of this watch not logged)")
            } else {
                String::new()
            };
            log::warn!(
                "watch {}: {} failed on {} {object} ({}); the event is delivered as if it passed: {message}{more}",
                self.watch,
                key.as_str(),
                id.kind,
                event.event_type.as_str(),
            );
        }
    }
}

/// A sink's `transform`, shared by the watches feeding it.
pub type SinkTransform = Option<Rc<Transform>>;

/// Compiles a sink's `transform` (checked when the configuration loaded).
pub fn sink_transform(sink: &str, code: Option<&String>) -> SinkTransform {
    let code = code?;
    match Program::compile(code) {
        Ok(p) => Some(Rc::new(Transform::new(p))),
        Err(e) => {
            // Unreachable for a loaded configuration; deliver untransformed
            // rather than drop the sink.
            log::error!(
                "sink {sink}: transform does not compile ({}); records go to it untransformed",
                e.first().map_or("", |e| e.message.as_str())
            );
            None
        }
    }
}

/// What a sink with a transform gets for one record: each output as a
/// line, none at all, or the record itself after an error (logged and
/// counted).
pub fn transformed(
    t: &Transform,
    record: &[u8],
    event: &Emitted<'_>,
    log: &mut ErrorLog<'_>,
) -> Vec<Vec<u8>> {
    match t.apply(record) {
        Transformed::Deliveries(lines) => lines
            .into_iter()
            .map(|mut l| {
                l.push(b'\n');
                l
            })
            .collect(),
        Transformed::Failed(message) => {
            log.error(FilterKey::Transform, event, &message);
            vec![record.to_vec()]
        }
    }
}
