//! The record every sink receives: one JSON line per event.
//!
//! `{"time":…,"watch":…,"cluster":…,"type":…,"origin":…,"object":{…}}`; the
//! object is spliced in as the server sent it.

use crate::filter::Report;
use crate::watch::Emitted;
use std::time::SystemTime;

/// Builds records for one watch; the constant part is rendered once.
#[derive(Debug, Clone)]
pub struct RecordWriter {
    /// `,"watch":"…","cluster":"…","type":"`
    middle: Vec<u8>,
}

impl RecordWriter {
    pub fn new(watch: &str, cluster: &str) -> Self {
        let mut middle = Vec::with_capacity(64);
        middle.extend_from_slice(b"\",\"watch\":");
        push_json_string(&mut middle, watch);
        middle.extend_from_slice(b",\"cluster\":");
        push_json_string(&mut middle, cluster);
        middle.extend_from_slice(b",\"type\":\"");
        RecordWriter { middle }
    }

    /// Appends the record for `event` (with its trailing newline) to `out`.
    pub fn write(&self, out: &mut Vec<u8>, time: SystemTime, event: &Emitted<'_>) {
        self.write_with(out, time, event, None);
    }

    /// [`RecordWriter::write`] for a watch with `select`, `changes` or
    /// `redact`: the record gains what the filter decided, and carries the
    /// redacted object instead of the server's when one was made.
    pub fn write_with(
        &self,
        out: &mut Vec<u8>,
        time: SystemTime,
        event: &Emitted<'_>,
        filtered: Option<&FilteredFields<'_>>,
    ) {
        let object = match filtered.and_then(|f| f.report.object.as_deref()) {
            Some(redacted) => redacted,
            None => event.object.as_bytes(),
        };
        out.reserve(object.len() + self.middle.len() + 96);
        out.extend_from_slice(b"{\"time\":\"");
        // Writing into a Vec cannot fail.
        let _ = std::io::Write::write_fmt(
            out,
            format_args!("{}", humantime::format_rfc3339_millis(time)),
        );
        out.extend_from_slice(&self.middle);
        out.extend_from_slice(event.event_type.as_str().as_bytes());
        out.extend_from_slice(b"\",\"origin\":\"");
        out.extend_from_slice(event.origin.as_str().as_bytes());
        out.push(b'"');
        if event.final_state_unknown {
            out.extend_from_slice(b",\"final_state_unknown\":true");
        }
        if let Some(f) = filtered {
            f.write(out);
        }
        out.extend_from_slice(b",\"object\":");
        out.extend_from_slice(object);
        out.extend_from_slice(b"}\n");
    }
}

/// The fields a filtered watch's record gains (see `filter::object`).
#[derive(Debug)]
pub struct FilteredFields<'a> {
    pub report: &'a Report,
    /// The watch has `changes`: `projection` and `previous_projection`
    /// are in every record (null when there is none).
    pub projections: bool,
}

impl FilteredFields<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let r = self.report;
        if !r.selected {
            out.extend_from_slice(b",\"selected\":false");
        }
        if self.projections {
            out.extend_from_slice(b",\"projection\":");
            out.extend_from_slice(r.projection.as_deref().unwrap_or(b"null"));
            out.extend_from_slice(b",\"previous_projection\":");
            out.extend_from_slice(r.previous_projection.as_deref().unwrap_or(b"null"));
        }
        if let Some(e) = &r.error {
            out.extend_from_slice(b",\"filter_error\":");
            push_json_string(out, &format!("{}: {}", e.key.as_str(), e.message));
        }
    }
}

/// What hooks and webhooks are told about an event besides its record line
/// (exec sinks export it as `KWATCHD_*` variables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMeta {
    pub watch: String,
    pub cluster: String,
    /// "ADDED", "MODIFIED" or "DELETED".
    pub event_type: &'static str,
    /// "list", "watch" or "relist".
    pub origin: &'static str,
    pub api_version: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

impl EventMeta {
    /// `event`'s metadata, for watch `watch` of cluster `cluster` (objects
    /// of `api_version`).
    pub fn of(watch: String, cluster: String, api_version: String, event: &Emitted<'_>) -> Self {
        let id = &event.identity;
        EventMeta {
            watch,
            cluster,
            event_type: event.event_type.as_str(),
            origin: event.origin.as_str(),
            api_version,
            kind: id.kind.to_owned(),
            namespace: id.namespace.to_owned(),
            name: id.name.to_owned(),
            uid: id.uid.to_owned(),
            resource_version: id.resource_version.to_owned(),
        }
    }

    /// The identity events are ordered by: the uid, or namespace/name for
    /// objects without one.
    pub fn object_key(&self) -> String {
        self.object_key_display().to_string()
    }

    /// [`object_key`](Self::object_key) written where it goes, without a
    /// `String` of its own.
    pub fn object_key_display(&self) -> impl std::fmt::Display + '_ {
        ObjectKeyDisplay(self)
    }
}

struct ObjectKeyDisplay<'a>(&'a EventMeta);

impl std::fmt::Display for ObjectKeyDisplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        if m.uid.is_empty() {
            write!(f, "{}/{}", m.namespace, m.name)
        } else {
            f.write_str(&m.uid)
        }
    }
}

/// A record waiting in a sink's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecord {
    /// The record's JSON line, newline included.
    pub line: Vec<u8>,
    pub meta: std::rc::Rc<EventMeta>,
    /// When the daemon read the event, for delivery latency.
    pub received: std::time::Instant,
    /// Reported to the watch's ledger once the record is final.
    pub ack: crate::state::AckRef,
    /// Older records of the object this one replaced while they waited
    /// (`coalesce = true`); its line then says so.
    pub coalesced: u32,
}

impl QueuedRecord {
    /// Takes `older`'s place in a queue: counts it and what it replaced,
    /// and says so in the line (`"coalesced":N` first in a JSON object;
    /// a transform's output that is no object is left as it is).
    pub fn replace(&mut self, older: &QueuedRecord) {
        let n = older.coalesced + 1;
        let body = match self.line.strip_prefix(b"{") {
            Some(rest) => rest,
            None => {
                self.coalesced = n;
                return;
            }
        };
        let body = match self.coalesced {
            0 => body,
            // Already counted once: drop the old count.
            _ => body
                .iter()
                .position(|&b| b == b',' || b == b'}')
                .map_or(body, |i| &body[i + usize::from(body[i] == b',')..]),
        };
        let mut line = format!("{{\"coalesced\":{n}").into_bytes();
        if !body.starts_with(b"}") {
            line.push(b',');
        }
        line.extend_from_slice(body);
        self.line = line;
        self.coalesced = n;
    }
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventType;
    use crate::watch::Origin;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn record_shape_is_exact() {
        let w = RecordWriter::new("pods", "lo\"cal");
        let mut out = Vec::new();
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let object = r#"{"metadata":{"name":"a"},"x":[1, 2]}"#;
        w.write(
            &mut out,
            t,
            &Emitted {
                event_type: EventType::Modified,
                origin: Origin::Watch,
                object,
                final_state_unknown: false,
                identity: Default::default(),
                cut: None,
            },
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "{\"time\":\"2023-11-14T22:13:20.123Z\",\"watch\":\"pods\",\"cluster\":\"lo\\\"cal\",\"type\":\"MODIFIED\",\"origin\":\"watch\",\"object\":{\"metadata\":{\"name\":\"a\"},\"x\":[1, 2]}}\n"
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cluster"], "lo\"cal");
        out.clear();
        w.write(
            &mut out,
            t,
            &Emitted {
                event_type: EventType::Deleted,
                origin: Origin::Relist,
                object: "{}",
                final_state_unknown: true,
                identity: Default::default(),
                cut: None,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["final_state_unknown"], true);
        assert_eq!(v["origin"], "relist");
    }

    #[test]
    fn filtered_records_gain_fields_and_carry_the_redacted_object() {
        use crate::filter::{FilterError, FilterKey, Report};
        let w = RecordWriter::new("deploys", "c");
        let event = Emitted {
            event_type: EventType::Modified,
            origin: Origin::Watch,
            object: r#"{"data":{"p":"c2VjcmV0"}}"#,
            final_state_unknown: false,
            identity: Default::default(),
            cut: None,
        };
        let report = Report {
            selected: false,
            projection: Some(br#"["b"]"#.to_vec()),
            previous_projection: None,
            object: Some(br#"{"data":"<redacted hmac-sha256:0011223344556677>"}"#.to_vec()),
            error: Some(FilterError {
                key: FilterKey::Select,
                message: "cannot \"x\"".into(),
            }),
        };
        let mut out = Vec::new();
        let fields = FilteredFields {
            report: &report,
            projections: true,
        };
        w.write_with(&mut out, UNIX_EPOCH, &event, Some(&fields));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("c2VjcmV0"), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["selected"], false);
        assert_eq!(v["projection"], serde_json::json!(["b"]));
        assert_eq!(v["previous_projection"], serde_json::Value::Null);
        assert_eq!(v["filter_error"], "select: cannot \"x\"");
        assert_eq!(
            v["object"]["data"],
            "<redacted hmac-sha256:0011223344556677>"
        );
        // Without `changes`, no projection fields; selected records say nothing.
        let plain = Report {
            selected: true,
            ..Report::default()
        };
        out.clear();
        let fields = FilteredFields {
            report: &plain,
            projections: false,
        };
        w.write_with(&mut out, UNIX_EPOCH, &event, Some(&fields));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(
            v.get("projection").is_none() && v.get("selected").is_none(),
            "{v}"
        );
        assert_eq!(v["object"]["data"]["p"], "c2VjcmV0");
    }
}
