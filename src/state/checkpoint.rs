//! The checkpoint file of one watch as kwatchd versions before the state
//! store wrote it (read once by `migrate`), and the watch-definition
//! [`Fingerprint`] the store keeps with each watch. JSON lines:
//!
//! ```text
//! {"kwatchd_checkpoint":1,"watch":"pods","fingerprint":{…},"resource_version":"4711","objects":2}
//! ["3f0c…-uid","default","web-0","4702"]
//! ["/node-1",null,"node-1","4711"]
//! ```
//!
//! The first line says what the file is for (the watch's definition, see
//! [`Fingerprint`]), where the watch resumes and how many object lines
//! follow; each further line is one object of the index: key (uid, or
//! namespace/name), namespace (`null` for cluster-scoped objects), name,
//! resourceVersion. No bodies: 250k objects take about 25 MB.
//!
//! Watches with `select` or `changes` add what the filter remembers of the
//! object (see `filter::object`): `1` or `0` (last record said selected)
//! and, when there is one, the last reported projection as the canonical
//! JSON it was compared in, e.g. `["uid","ns","web","4702",1,["nginx:2"]]`.
//! The header's fingerprint carries a digest of those keys (`filter`), so
//! a checkpoint written under other keys is used with its memory dropped.

use crate::filter::Memory;
use crate::watch::index::IndexEntry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// Format version in the header.
pub const FORMAT: u32 = 1;
/// Suffix of checkpoint files.
pub const SUFFIX: &str = ".checkpoint";

/// What a checkpoint is valid for: the parts of a watch's definition that
/// decide which objects and versions it sees. The sinks and the event
/// filter are not in it: changing them does not invalidate the position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub cluster: String,
    pub server: String,
    pub api_version: String,
    pub resource: String,
    /// The collection's URL path (namespace and base path included).
    pub path: String,
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Digest of the watch's `select`, `changes` and `redact` (empty
    /// without them). Not part of [`Fingerprint::differences`]: another
    /// filter keeps the position and only resets the filter's memory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
}

impl Fingerprint {
    /// A `pods` watch's definition on a cluster nobody serves, with the
    /// filter digest `filter`: what tests that need some position's owner
    /// use.
    #[cfg(test)]
    pub(crate) fn of_test_pods(filter: &str) -> Fingerprint {
        Fingerprint {
            cluster: "c".into(),
            server: "http://127.0.0.1:1".into(),
            api_version: "v1".into(),
            resource: "pods".into(),
            path: "/api/v1/pods".into(),
            namespace: None,
            label_selector: None,
            field_selector: None,
            filter: filter.into(),
        }
    }

    /// "label_selector \"app=a\" → \"app=b\"" for every field that differs.
    pub fn differences(&self, now: &Fingerprint) -> Vec<String> {
        fn opt(v: &Option<String>) -> String {
            v.as_ref().map_or("(none)".to_owned(), |s| format!("{s:?}"))
        }
        let mut out = Vec::new();
        let mut cmp = |what: &str, was: String, is: String| {
            if was != is {
                out.push(format!("{what} {was} → {is}"));
            }
        };
        cmp(
            "cluster",
            format!("{:?}", self.cluster),
            format!("{:?}", now.cluster),
        );
        cmp(
            "server",
            format!("{:?}", self.server),
            format!("{:?}", now.server),
        );
        cmp(
            "api_version",
            format!("{:?}", self.api_version),
            format!("{:?}", now.api_version),
        );
        cmp(
            "resource",
            format!("{:?}", self.resource),
            format!("{:?}", now.resource),
        );
        cmp(
            "path",
            format!("{:?}", self.path),
            format!("{:?}", now.path),
        );
        cmp("namespace", opt(&self.namespace), opt(&now.namespace));
        cmp(
            "label_selector",
            opt(&self.label_selector),
            opt(&now.label_selector),
        );
        cmp(
            "field_selector",
            opt(&self.field_selector),
            opt(&now.field_selector),
        );
        out
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    kwatchd_checkpoint: u32,
    watch: String,
    fingerprint: Fingerprint,
    resource_version: String,
    objects: usize,
}

/// A loaded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub watch: String,
    pub fingerprint: Fingerprint,
    pub resource_version: String,
    pub objects: HashMap<String, IndexEntry>,
}

/// Why a checkpoint file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointError {
    Empty,
    /// The first line is not a checkpoint header.
    Header(String),
    Format(u32),
    /// A line (1-based) is not an object entry.
    Line {
        line: usize,
        error: String,
    },
    /// The header announced another number of objects (a cut file).
    Count {
        expected: usize,
        found: usize,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "the file is empty"),
            Self::Header(e) => write!(f, "line 1 is not a checkpoint header: {e}"),
            Self::Format(v) => write!(
                f,
                "format version {v} is not supported (this kwatchd writes {FORMAT})"
            ),
            Self::Line { line, error } => write!(f, "line {line} is not an object entry: {error}"),
            Self::Count { expected, found } => write!(
                f,
                "the header announces {expected} objects but the file holds {found} (cut short?)"
            ),
        }
    }
}

/// Renders a checkpoint of `count` objects (the tests and the state store
/// benchmark write the files of older versions with it), which `objects` calls back
/// with, into `out` (cleared first).
pub fn encode(
    watch: &str,
    fingerprint: &Fingerprint,
    resource_version: &str,
    count: usize,
    objects: impl FnOnce(&mut dyn FnMut(&str, &IndexEntry)),
    out: &mut Vec<u8>,
) {
    out.clear();
    out.reserve(128 + count * 80);
    let header = Header {
        kwatchd_checkpoint: FORMAT,
        watch: watch.to_owned(),
        fingerprint: fingerprint.clone(),
        resource_version: resource_version.to_owned(),
        objects: count,
    };
    // Serialising plain strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &header);
    out.push(b'\n');
    objects(&mut |key, entry| {
        out.push(b'[');
        push_str(out, key);
        out.push(b',');
        match entry.namespace() {
            Some(ns) => push_str(out, ns),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b',');
        push_str(out, entry.name());
        out.push(b',');
        push_str(out, entry.resource_version());
        if let Some(m) = entry.memory() {
            out.extend_from_slice(if m.reported { b",1" } else { b",0" });
            if let Some(p) = &m.projection {
                out.push(b',');
                out.extend_from_slice(p);
            }
        }
        out.extend_from_slice(b"]\n");
    });
}

/// `encode` of a map (tests and tools).
pub fn encode_map(
    watch: &str,
    fingerprint: &Fingerprint,
    resource_version: &str,
    objects: &HashMap<String, IndexEntry>,
    out: &mut Vec<u8>,
) {
    encode(
        watch,
        fingerprint,
        resource_version,
        objects.len(),
        |f| {
            for (k, e) in objects {
                f(k, e);
            }
        },
        out,
    );
}

/// A JSON string. Names, uids and versions almost never need escaping, so
/// they are copied as they are when they do not (this runs in the loop for
/// every object of every checkpoint).
fn push_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Parses a checkpoint file's bytes.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let mut lines = bytes.split(|b| *b == b'\n');
    let first = lines.next().filter(|l| !l.is_empty());
    let first = first.ok_or(CheckpointError::Empty)?;
    let header: Header =
        serde_json::from_slice(first).map_err(|e| CheckpointError::Header(e.to_string()))?;
    if header.kwatchd_checkpoint != FORMAT {
        return Err(CheckpointError::Format(header.kwatchd_checkpoint));
    }
    // Bounded by the file's size, not by what the header claims.
    let mut objects = HashMap::with_capacity(header.objects.min(bytes.len() / 8));
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let ObjectLine(key, entry) =
            serde_json::from_slice(line).map_err(|e| CheckpointError::Line {
                line: i + 2,
                error: e.to_string(),
            })?;
        objects.insert(key, entry);
    }
    if objects.len() != header.objects || !bytes.ends_with(b"\n") {
        return Err(CheckpointError::Count {
            expected: header.objects,
            found: objects.len(),
        });
    }
    Ok(Checkpoint {
        watch: header.watch,
        fingerprint: header.fingerprint,
        resource_version: header.resource_version,
        objects,
    })
}

/// One object line: `[key, namespace, name, rv]`, optionally followed by
/// the filter's memory (`reported` as 0/1, then the projection).
struct ObjectLine(String, IndexEntry);

impl<'de> Deserialize<'de> for ObjectLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ObjectLine;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("[key, namespace, name, resourceVersion, (reported, (projection))]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<ObjectLine, A::Error> {
                use serde::de::Error;
                let missing = |n| A::Error::invalid_length(n, &self);
                let key: String = a.next_element()?.ok_or_else(|| missing(0))?;
                let namespace: Option<String> = a.next_element()?.ok_or_else(|| missing(1))?;
                let name: String = a.next_element()?.ok_or_else(|| missing(2))?;
                let rv: String = a.next_element()?.ok_or_else(|| missing(3))?;
                let mut entry = IndexEntry::new(namespace.as_deref(), &name, &rv);
                if let Some(reported) = a.next_element::<u8>()? {
                    // Absent (no `changes`) is `None`; a projection that is
                    // `null` stays the bytes `null`.
                    let projection: Option<Box<serde_json::value::RawValue>> = a.next_element()?;
                    entry = entry.with_memory(Some(Memory {
                        reported: reported == 1,
                        projection: projection.map(|p| p.get().as_bytes().into()),
                    }));
                    if a.next_element::<serde::de::IgnoredAny>()?.is_some() {
                        return Err(A::Error::invalid_length(7, &self));
                    }
                }
                Ok(ObjectLine(key, entry))
            }
        }
        d.deserialize_seq(Visit)
    }
}

/// The file name of a watch's checkpoint. Watch names are restricted by
/// the config, but the name is escaped anyway (every byte outside
/// `A-Za-z0-9_-` as `%XX`, dots included) so that no name can reach
/// outside the state directory or collide with `.`/`..` or temp files.
#[cfg(test)]
pub fn file_name(watch: &str) -> String {
    let mut out = String::with_capacity(watch.len() + SUFFIX.len());
    for b in watch.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(SUFFIX);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprint {
        Fingerprint {
            cluster: "prod".into(),
            server: "https://10.0.0.1:6443".into(),
            api_version: "v1".into(),
            resource: "pods".into(),
            path: "/api/v1/pods".into(),
            namespace: None,
            label_selector: Some("app=web".into()),
            field_selector: None,
            filter: String::new(),
        }
    }

    fn objects(n: usize) -> HashMap<String, IndexEntry> {
        (0..n)
            .map(|i| {
                (
                    format!("uid-{i}"),
                    IndexEntry::new(
                        (i % 2 == 0).then_some("ns\"quoted\\\u{1}"),
                        &format!("pod-{i}"),
                        &(1000 + i).to_string(),
                    ),
                )
            })
            .collect()
    }

    #[test]
    fn round_trips_and_stays_compact() {
        let objs = objects(1000);
        let mut out = Vec::new();
        encode_map("pods", &fp(), "4711", &objs, &mut out);
        // Escaped where needed (quotes, backslashes, control characters).
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(r#""ns\"quoted\\\u0001""#), "{}", &text[..300]);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("{\"kwatchd_checkpoint\":1,\"watch\":\"pods\""));
        assert_eq!(text.lines().count(), 1001);
        let c = decode(&out).unwrap();
        assert_eq!(c.watch, "pods");
        assert_eq!(c.fingerprint, fp());
        assert_eq!(c.resource_version, "4711");
        assert_eq!(c.objects, objs);
        // A realistic 250k-object index (36-byte uids, names ~30 bytes).
        let big: HashMap<String, IndexEntry> = (0..250_000)
            .map(|i| {
                (
                    format!("{i:08x}-0000-4000-8000-{i:012x}"),
                    IndexEntry::new(
                        Some("team-payments"),
                        &format!("payments-api-7d9f8c6b5-{i:05x}"),
                        &(100_000_000 + i).to_string(),
                    ),
                )
            })
            .collect();
        encode_map("pods", &fp(), "1", &big, &mut out);
        assert!(out.len() < 40 << 20, "{} bytes", out.len());
        assert_eq!(decode(&out).unwrap().objects.len(), 250_000);
    }

    #[test]
    fn filter_memory_round_trips() {
        let memory = |reported, projection: Option<&[u8]>| {
            Some(Memory {
                reported,
                projection: projection.map(Into::into),
            })
        };
        let mut objects = HashMap::new();
        let cases = [
            ("a", memory(true, Some(br#"["nginx:1",{"a":"\"q"}]"#))),
            ("b", memory(false, None)),
            // A projection that is null is not "no projection".
            ("c", memory(true, Some(b"null"))),
            ("d", None),
        ];
        for (k, m) in &cases {
            objects.insert(
                k.to_string(),
                IndexEntry::new(Some("ns"), k, "1").with_memory(m.clone()),
            );
        }
        let mut out = Vec::new();
        encode_map("pods", &fp(), "9", &objects, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains(r#"["b","ns","b","1",0]"#), "{text}");
        assert!(text.contains(r#"["c","ns","c","1",1,null]"#), "{text}");
        assert!(text.contains(r#"["d","ns","d","1"]"#), "{text}");
        let back = decode(&out).unwrap();
        for (k, m) in &cases {
            assert_eq!(back.objects[*k].memory(), m.as_ref(), "{k}");
        }
        // Old files (no memory) still load; a seventh element does not.
        let bad = out_with_line(r#"["e","ns","e","1",1,null,3]"#);
        assert!(matches!(decode(&bad), Err(CheckpointError::Line { .. })));
    }

    fn out_with_line(line: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_map("pods", &fp(), "9", &HashMap::new(), &mut out);
        let text = String::from_utf8(out)
            .unwrap()
            .replace("\"objects\":0", "\"objects\":1");
        format!("{text}{line}\n").into_bytes()
    }

    #[test]
    fn corrupt_files_are_refused_with_a_reason() {
        let mut out = Vec::new();
        encode_map("pods", &fp(), "7", &objects(3), &mut out);
        assert_eq!(decode(b""), Err(CheckpointError::Empty));
        assert!(matches!(
            decode(b"garbage\n"),
            Err(CheckpointError::Header(_))
        ));
        let cut = &out[..out.len() - 5];
        let e = decode(cut).unwrap_err();
        assert!(matches!(e, CheckpointError::Line { line: 4, .. }), "{e}");
        let missing_line = &out[..out.iter().rposition(|b| *b == b'[').unwrap()];
        assert_eq!(
            decode(missing_line),
            Err(CheckpointError::Count {
                expected: 3,
                found: 2
            })
        );
        let v2 = String::from_utf8(out.clone())
            .unwrap()
            .replace("\"kwatchd_checkpoint\":1", "\"kwatchd_checkpoint\":2");
        assert_eq!(decode(v2.as_bytes()), Err(CheckpointError::Format(2)));
    }

    #[test]
    fn fingerprint_differences_name_the_changed_fields() {
        let mut other = fp();
        assert!(fp().differences(&other).is_empty());
        other.label_selector = Some("app=api".into());
        other.namespace = Some("default".into());
        let d = fp().differences(&other);
        assert_eq!(
            d,
            vec![
                "namespace (none) → \"default\"".to_owned(),
                "label_selector \"app=web\" → \"app=api\"".to_owned()
            ]
        );
    }

    #[test]
    fn file_names_are_escaped() {
        assert_eq!(file_name("pods"), "pods.checkpoint");
        assert_eq!(file_name("web.pods"), "web%2Epods.checkpoint");
        assert_eq!(file_name(".."), "%2E%2E.checkpoint");
        assert_eq!(file_name("a/b"), "a%2Fb.checkpoint");
        assert_ne!(file_name("a.b"), file_name("a%2Eb"));
    }
}
