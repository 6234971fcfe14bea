//! Watch event envelopes, list pages and Status objects.
//!
//! Only the envelope and `metadata` are parsed; the object stays borrowed
//! text so sinks receive exactly the bytes the server sent.

use super::scan::{Peek, RawStr, ScanError, Scanner};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The `type` of a watch event as the API server sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl WatchEventType {
    fn from_wire(s: &str) -> Option<Self> {
        Some(match s {
            "ADDED" => Self::Added,
            "MODIFIED" => Self::Modified,
            "DELETED" => Self::Deleted,
            "BOOKMARK" => Self::Bookmark,
            "ERROR" => Self::Error,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
            Self::Bookmark => "BOOKMARK",
            Self::Error => "ERROR",
        }
    }
}

/// The part of an object's `metadata` the daemon needs for ordering, the
/// object index and resume points.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct ObjectMeta<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub uid: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "resourceVersion")]
    pub resource_version: Option<Cow<'a, str>>,
}

/// What a list item's head pass reads.
struct ObjectHead<'a> {
    metadata: ObjectMeta<'a>,
}

/// One decoded watch event line.
#[derive(Debug)]
pub struct WatchEvent<'a> {
    pub event_type: WatchEventType,
    pub kind: Option<Cow<'a, str>>,
    pub meta: ObjectMeta<'a>,
    /// The object exactly as sent.
    pub object: RawObject<'a>,
}

/// The JSON text of a value exactly as it appears in the input, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawObject<'a>(&'a str);

impl<'a> RawObject<'a> {
    pub fn get(&self) -> &'a str {
        self.0
    }
}

/// Why a line or body could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    InvalidJson { error: String, excerpt: String },
    UnknownEventType { event_type: String },
    NotAnObject { excerpt: String },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidJson { error, excerpt } => {
                write!(f, "invalid JSON ({error}) in {excerpt}")
            }
            Self::UnknownEventType { event_type } => write!(
                f,
                "unknown watch event type {event_type:?} (expected ADDED, MODIFIED, DELETED, BOOKMARK or ERROR)"
            ),
            Self::NotAnObject { excerpt } => {
                write!(f, "expected a JSON object, got {excerpt}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// A short, printable excerpt of untrusted bytes for log lines.
pub fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let shown = &bytes[..bytes.len().min(MAX)];
    let mut out = String::with_capacity(shown.len() + 8);
    out.push('`');
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('`');
    if bytes.len() > MAX {
        out.push_str(&format!(" … ({} bytes)", bytes.len()));
    }
    out
}

fn invalid_json(e: serde_json::Error, bytes: &[u8]) -> ParseError {
    ParseError::InvalidJson {
        error: e.to_string(),
        excerpt: excerpt(bytes),
    }
}

/// Which object a member offered to [`Members`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Within {
    /// The event's object itself.
    Object,
    /// The object's `metadata`.
    Metadata,
}

/// Sees the members of an event's object while [`WatchEvent::parse_with`]
/// walks it, so a caller that wants some of the object's values (a
/// filter's cut, see `filter::partial`) reads them in the same pass
/// instead of walking the object's bytes a second time. Static dispatch:
/// [`WatchEvent::parse`] passes `()`, which costs nothing.
///
/// Every member of the object and of its `metadata` is offered, with the
/// scanner at its value. `metadata` itself is announced instead
/// ([`Members::metadata_start`], its members, [`Members::metadata_end`]),
/// since the scan reads it too. Offsets are in the line.
pub trait Members<'a> {
    /// True when the callee read the value (the scanner is after it);
    /// false leaves it to the scan, which goes back to the value's start
    /// whatever the callee did (so its error, if the value is not JSON, is
    /// the scan's as always).
    fn member(&mut self, within: Within, key: RawStr<'a>, s: &mut Scanner<'a>) -> bool;

    /// The object's `metadata` (an object) begins; its members follow.
    fn metadata_start(&mut self, key: RawStr<'a>);

    /// The object's `metadata` ended; `span` is its text in the line.
    fn metadata_end(&mut self, span: std::ops::Range<usize>);

    /// The object ended; `surrogate_escapes`: the line up to here held a
    /// `\u` escape of a UTF-16 surrogate ([`Scanner::surrogate_escapes`]).
    fn object_end(&mut self, surrogate_escapes: bool);
}

/// No one listening: the plain scan.
impl<'a> Members<'a> for () {
    fn member(&mut self, _: Within, _: RawStr<'a>, _: &mut Scanner<'a>) -> bool {
        false
    }

    fn metadata_start(&mut self, _: RawStr<'a>) {}

    fn metadata_end(&mut self, _: std::ops::Range<usize>) {}

    fn object_end(&mut self, _: bool) {}
}

/// Offers `key`'s value to `m`; skips it when `m` does not take it.
fn offer<'a, M: Members<'a>>(
    m: &mut M,
    within: Within,
    key: RawStr<'a>,
    s: &mut Scanner<'a>,
) -> Result<(), ScanError> {
    let start = s.pos();
    if !m.member(within, key, s) {
        s.rewind(start);
        s.skip_value()?;
    }
    Ok(())
}

/// Offers `key`'s value to `m` and leaves the scanner at its start for the
/// scan, which reads it too.
fn show<'a, M: Members<'a>>(m: &mut M, within: Within, key: RawStr<'a>, s: &mut Scanner<'a>) {
    let start = s.pos();
    m.member(within, key, s);
    s.rewind(start);
}

impl<'a> WatchEvent<'a> {
    /// Validates the whole line as JSON and reads the envelope, `kind` and
    /// `metadata` in one pass (see [`scan`](super::scan)).
    pub fn parse(line: &'a [u8]) -> Result<WatchEvent<'a>, ParseError> {
        Self::parse_with(line, &mut ())
    }

    /// [`WatchEvent::parse`], offering the object's members to `members`
    /// on the way. When it answers `Ok`, `members` saw every member of the
    /// object (a JSON object) and of its `metadata`.
    pub fn parse_with<M: Members<'a>>(
        line: &'a [u8],
        members: &mut M,
    ) -> Result<WatchEvent<'a>, ParseError> {
        let scanned = scan_event(line, members).map_err(|e| ParseError::InvalidJson {
            error: e.to_string(),
            excerpt: excerpt(line),
        })?;
        let event_type = WatchEventType::from_wire(&scanned.event_type).ok_or_else(|| {
            ParseError::UnknownEventType {
                event_type: scanned.event_type.chars().take(40).collect(),
            }
        })?;
        let Some((kind, meta)) = scanned.head else {
            return Err(ParseError::NotAnObject {
                excerpt: excerpt(scanned.object.as_bytes()),
            });
        };
        Ok(WatchEvent {
            event_type,
            kind,
            meta,
            object: RawObject(scanned.object),
        })
    }
}

/// What one pass over an event line found.
struct ScannedEvent<'a> {
    event_type: Cow<'a, str>,
    object: &'a str,
    /// `kind` and `metadata`; `None` when the object is not a JSON object.
    head: Option<(Option<Cow<'a, str>>, ObjectMeta<'a>)>,
}

/// Why a line is not a usable event envelope: not JSON (with the scanner's
/// position), or JSON of the wrong shape.
enum EventScanError {
    Json(ScanError),
    Utf8(std::str::Utf8Error),
    Shape(String),
}

impl fmt::Display for EventScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => e.fmt(f),
            Self::Utf8(e) => write!(f, "invalid UTF-8 at byte {}", e.valid_up_to()),
            Self::Shape(s) => f.write_str(s),
        }
    }
}

impl From<ScanError> for EventScanError {
    fn from(e: ScanError) -> Self {
        Self::Json(e)
    }
}

fn duplicate(field: &str) -> EventScanError {
    EventScanError::Shape(format!("duplicate field `{field}`"))
}

/// A member that must be a string or null; `slot` must be empty.
fn optional_string<'a>(
    s: &mut Scanner<'a>,
    slot: &mut Option<Option<Cow<'a, str>>>,
    field: &str,
) -> Result<(), EventScanError> {
    if slot.is_some() {
        return Err(duplicate(field));
    }
    *slot = Some(match s.peek() {
        Peek::String => Some(s.string()?.decode()?),
        Peek::Null => {
            s.skip_value()?;
            None
        }
        _ => return Err(EventScanError::Shape(format!("`{field}` is not a string"))),
    });
    Ok(())
}

/// The line must be UTF-8 (sinks get the object as text) and one JSON
/// object holding `type` and `object`; any other members are validated and
/// ignored. Duplicate wanted fields are refused, as serde's derived structs
/// refuse them.
fn scan_event<'a, M: Members<'a>>(
    line: &'a [u8],
    members: &mut M,
) -> Result<ScannedEvent<'a>, EventScanError> {
    let text = std::str::from_utf8(line).map_err(EventScanError::Utf8)?;
    let mut s = Scanner::new(line);
    if s.peek() != Peek::Object {
        // Report the JSON error first when it is not JSON at all.
        s.skip_value()?;
        s.finish()?;
        return Err(EventScanError::Shape(
            "expected a watch event (a JSON object with `type` and `object`)".to_owned(),
        ));
    }
    s.begin_object()?;
    let mut event_type: Option<Cow<'_, str>> = None;
    let mut object: Option<(usize, usize)> = None;
    let mut head = None;
    let mut first = true;
    while let Some(key) = s.next_key(&mut first)? {
        if key.is("type") {
            if event_type.is_some() {
                return Err(duplicate("type"));
            }
            if s.peek() != Peek::String {
                return Err(EventScanError::Shape("`type` is not a string".to_owned()));
            }
            event_type = Some(s.string()?.decode()?);
        } else if key.is("object") {
            if object.is_some() {
                return Err(duplicate("object"));
            }
            let peek = s.peek();
            let start = s.pos();
            if peek == Peek::Object {
                head = Some(scan_object_head(&mut s, members)?);
                members.object_end(s.surrogate_escapes());
            } else {
                s.skip_value()?;
            }
            object = Some((start, s.pos()));
        } else {
            s.skip_value()?;
        }
    }
    s.finish()?;
    let event_type =
        event_type.ok_or_else(|| EventScanError::Shape("missing field `type`".to_owned()))?;
    let (start, end) =
        object.ok_or_else(|| EventScanError::Shape("missing field `object`".to_owned()))?;
    // Both ends are at ASCII delimiters, so on character boundaries.
    let object = text
        .get(start..end)
        .ok_or_else(|| EventScanError::Shape("object span off a character boundary".to_owned()))?;
    Ok(ScannedEvent {
        event_type,
        object,
        head,
    })
}

/// `kind` and `metadata` of the object at the scanner, reading the whole
/// object.
fn scan_object_head<'a, M: Members<'a>>(
    s: &mut Scanner<'a>,
    members: &mut M,
) -> Result<(Option<Cow<'a, str>>, ObjectMeta<'a>), EventScanError> {
    s.begin_object()?;
    let mut kind = None;
    let mut meta: Option<ObjectMeta<'a>> = None;
    let mut first = true;
    while let Some(key) = s.next_key(&mut first)? {
        if key.is("kind") {
            show(members, Within::Object, key, s);
            optional_string(s, &mut kind, "kind")?;
        } else if key.is("metadata") {
            if meta.is_some() {
                return Err(duplicate("metadata"));
            }
            if s.peek() != Peek::Object {
                return Err(EventScanError::Shape(
                    "`metadata` is not an object".to_owned(),
                ));
            }
            let start = s.pos();
            members.metadata_start(key);
            meta = Some(scan_metadata(s, members)?);
            members.metadata_end(start..s.pos());
        } else {
            offer(members, Within::Object, key, s)?;
        }
    }
    Ok((kind.flatten(), meta.unwrap_or_default()))
}

fn scan_metadata<'a, M: Members<'a>>(
    s: &mut Scanner<'a>,
    members: &mut M,
) -> Result<ObjectMeta<'a>, EventScanError> {
    s.begin_object()?;
    let (mut name, mut namespace, mut uid, mut rv) = (None, None, None, None);
    let mut first = true;
    while let Some(key) = s.next_key(&mut first)? {
        let (slot, field) = if key.is("name") {
            (&mut name, "metadata.name")
        } else if key.is("namespace") {
            (&mut namespace, "metadata.namespace")
        } else if key.is("uid") {
            (&mut uid, "metadata.uid")
        } else if key.is("resourceVersion") {
            (&mut rv, "metadata.resourceVersion")
        } else {
            offer(members, Within::Metadata, key, s)?;
            continue;
        };
        show(members, Within::Metadata, key, s);
        optional_string(s, slot, field)?;
    }
    Ok(ObjectMeta {
        name: name.flatten(),
        namespace: namespace.flatten(),
        uid: uid.flatten(),
        resource_version: rv.flatten(),
    })
}

fn parse_object_head(raw: &str) -> Result<ObjectHead<'_>, ParseError> {
    if !raw.starts_with('{') {
        return Err(ParseError::NotAnObject {
            excerpt: excerpt(raw.as_bytes()),
        });
    }
    // The list pass has validated the whole object already; this pass
    // only needs `metadata`, which the API server writes first.
    // Stopping there skips spec and status (most of the bytes). serde_json
    // then reports the members left unread as an error, so the result is
    // handed out through `found`, and that error is ignored once it is set.
    let mut found = None;
    let mut de = serde_json::Deserializer::from_str(raw);
    let result = serde::Deserializer::deserialize_map(&mut de, HeadVisitor { found: &mut found });
    match (found, result) {
        (Some(head), _) => Ok(head),
        (None, Err(e)) => Err(invalid_json(e, raw.as_bytes())),
        (None, Ok(())) => Ok(ObjectHead {
            metadata: ObjectMeta::default(),
        }),
    }
}

struct HeadVisitor<'a, 'de> {
    found: &'a mut Option<ObjectHead<'de>>,
}

impl<'de> serde::de::Visitor<'de> for HeadVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut metadata: Option<ObjectMeta<'de>> = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                // Not used, but a `kind` that is not a string is refused.
                "kind" => {
                    map.next_value::<Option<Cow<'de, str>>>()?;
                }
                "metadata" => metadata = Some(map.next_value()?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            if metadata.is_some() {
                break;
            }
        }
        *self.found = Some(ObjectHead {
            metadata: metadata.unwrap_or_default(),
        });
        Ok(())
    }
}

/// `metadata` of one list item.
pub fn object_meta(object: &RawValue) -> Result<ObjectMeta<'_>, ParseError> {
    object_meta_str(object.get())
}

/// [`object_meta`] of an object's JSON already validated by the caller
/// (a LIST item, see `kube::list_scan`).
pub fn object_meta_str(object: &str) -> Result<ObjectMeta<'_>, ParseError> {
    parse_object_head(object).map(|h| h.metadata)
}

#[derive(Deserialize, Default)]
struct ListMeta<'a> {
    #[serde(borrow, default, rename = "resourceVersion")]
    resource_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "continue")]
    continue_token: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ListBody<'a> {
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: ListMeta<'a>,
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

/// One page of a LIST answer.
#[derive(Debug)]
pub struct ListPage<'a> {
    /// Kind of the items ("PodList" → "Pod"), when the server said.
    pub item_kind: Option<String>,
    pub resource_version: Option<Cow<'a, str>>,
    /// `None` on the last page.
    pub continue_token: Option<Cow<'a, str>>,
    pub items: Vec<&'a RawValue>,
}

impl<'a> ListPage<'a> {
    pub fn parse(body: &'a [u8]) -> Result<ListPage<'a>, ParseError> {
        let list: ListBody<'a> = serde_json::from_slice(body).map_err(|e| invalid_json(e, body))?;
        Ok(ListPage {
            item_kind: list
                .kind
                .as_deref()
                .and_then(|k| k.strip_suffix("List"))
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
            resource_version: list.metadata.resource_version,
            continue_token: list.metadata.continue_token.filter(|c| !c.is_empty()),
            items: list.items.unwrap_or_default(),
        })
    }
}

/// A `meta/v1 Status`, as sent in ERROR events and non-2xx bodies.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub details: Option<StatusDetails>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusDetails {
    #[serde(default)]
    pub causes: Vec<StatusCause>,
    #[serde(default, rename = "retryAfterSeconds")]
    pub retry_after_seconds: Option<u64>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusCause {
    #[serde(default)]
    pub reason: Option<String>,
}

impl Status {
    /// Best effort: a body that is not a Status yields an empty one.
    pub fn parse_lenient(bytes: &[u8]) -> Status {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// The history the client asked for is gone: relist.
    pub fn is_expired(&self) -> bool {
        self.code == Some(410)
            || matches!(self.reason.as_deref(), Some("Expired") | Some("Gone"))
            || self.is_resource_version_too_large()
    }

    /// The server is behind the client (e.g. after a failover); treated as
    /// expired, per client-go.
    pub fn is_resource_version_too_large(&self) -> bool {
        self.details.as_ref().is_some_and(|d| {
            d.causes
                .iter()
                .any(|c| c.reason.as_deref() == Some("ResourceVersionTooLarge"))
        })
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        if let Some(code) = self.code {
            s.push_str(&code.to_string());
        }
        if let Some(reason) = &self.reason {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(reason);
        }
        if let Some(message) = &self.message {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.extend(message.chars().take(200));
        }
        if s.is_empty() {
            s.push_str("(no Status in the answer)");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envelope_and_metadata_borrowing_the_object() {
        let line = br#"{"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"ns","uid":"u1","resourceVersion":"42","labels":{"x":"y"}},"spec":{}}}"#;
        let ev = WatchEvent::parse(line).unwrap();
        assert_eq!(ev.event_type, WatchEventType::Modified);
        assert_eq!(ev.kind.as_deref(), Some("Pod"));
        assert_eq!(ev.meta.name.as_deref(), Some("a"));
        assert_eq!(ev.meta.namespace.as_deref(), Some("ns"));
        assert_eq!(ev.meta.uid.as_deref(), Some("u1"));
        assert_eq!(ev.meta.resource_version.as_deref(), Some("42"));
        assert!(ev.object.get().starts_with(r#"{"kind":"Pod""#));
        assert!(ev.object.get().ends_with(r#""spec":{}}"#));
    }

    #[test]
    fn metadata_is_found_in_any_member_order_and_may_be_missing() {
        let line = br#"{"object":{"spec":{"a":[1,{"metadata":{"name":"inner"}}]},"metadata":{"name":"outer","resourceVersion":"3"},"status":{}},"type":"ADDED"}"#;
        let ev = WatchEvent::parse(line).unwrap();
        assert_eq!(ev.meta.name.as_deref(), Some("outer"));
        assert_eq!(ev.kind, None);
        let ev = WatchEvent::parse(br#"{"type":"ADDED","object":{"spec":{}}}"#).unwrap();
        assert_eq!(ev.meta, ObjectMeta::default());
        let e =
            WatchEvent::parse(br#"{"type":"ADDED","object":{"metadata":{"name":7}}}"#).unwrap_err();
        assert!(matches!(e, ParseError::InvalidJson { .. }), "{e}");
    }

    #[test]
    fn escaped_strings_in_metadata_are_decoded() {
        let line =
            br#"{"type":"ADDED","object":{"metadata":{"name":"a\u0062","resourceVersion":"1"}}}"#;
        let ev = WatchEvent::parse(line).unwrap();
        assert_eq!(ev.meta.name.as_deref(), Some("ab"));
    }

    #[test]
    fn bookmark_has_only_a_resource_version() {
        let line = br#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12746"}}}"#;
        let ev = WatchEvent::parse(line).unwrap();
        assert_eq!(ev.event_type, WatchEventType::Bookmark);
        assert_eq!(ev.meta.resource_version.as_deref(), Some("12746"));
        assert_eq!(ev.meta.uid, None);
    }

    #[test]
    fn rejects_unknown_types_invalid_json_and_non_objects() {
        let e = WatchEvent::parse(br#"{"type":"SURPRISE","object":{}}"#).unwrap_err();
        assert!(matches!(e, ParseError::UnknownEventType { .. }), "{e}");
        let e = WatchEvent::parse(b"{not json").unwrap_err();
        assert!(e.to_string().contains("invalid JSON"), "{e}");
        let e = WatchEvent::parse(br#"{"type":"ADDED","object":[1]}"#).unwrap_err();
        assert!(matches!(e, ParseError::NotAnObject { .. }), "{e}");
        let e = WatchEvent::parse(br#"{"type":"ADDED"}"#).unwrap_err();
        assert!(e.to_string().contains("object"), "{e}");
    }

    #[test]
    fn excerpt_escapes_and_truncates() {
        assert_eq!(excerpt(b"a\nb\xff"), "`a\\nb\\xff`");
        let long = vec![b'x'; 200];
        assert!(excerpt(&long).ends_with("… (200 bytes)"));
    }

    #[test]
    fn list_page_with_continue_and_kind() {
        let body = br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":"abc"},"items":[{"metadata":{"uid":"1"}},{"metadata":{"uid":"2"}}]}"#;
        let page = ListPage::parse(body).unwrap();
        assert_eq!(page.item_kind.as_deref(), Some("Pod"));
        assert_eq!(page.resource_version.as_deref(), Some("9"));
        assert_eq!(page.continue_token.as_deref(), Some("abc"));
        assert_eq!(page.items.len(), 2);
        assert_eq!(
            object_meta(page.items[1]).unwrap().uid.as_deref(),
            Some("2")
        );
        let last =
            ListPage::parse(br#"{"metadata":{"resourceVersion":"9","continue":""},"items":null}"#)
                .unwrap();
        assert_eq!(last.continue_token, None);
        assert!(last.items.is_empty());
    }

    #[test]
    fn status_classification() {
        let s = Status::parse_lenient(
            br#"{"kind":"Status","status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}"#,
        );
        assert!(s.is_expired());
        assert_eq!(s.summary(), "410 Expired: too old resource version: 1 (5)");
        let s = Status::parse_lenient(
            br#"{"code":504,"reason":"Timeout","details":{"causes":[{"reason":"ResourceVersionTooLarge"}],"retryAfterSeconds":1}}"#,
        );
        assert!(s.is_expired());
        assert!(!Status::parse_lenient(br#"{"code":500}"#).is_expired());
        assert_eq!(
            Status::parse_lenient(b"<html>").summary(),
            "(no Status in the answer)"
        );
    }
}
