//! A jaq value of an object holding only what a program reads
//! ([`Reads`]), built from the raw bytes in one pass of the project's
//! scanner: members nobody reads are skipped (and validated), members read
//! whole are parsed by jaq's own parser, so each kept value is exactly what
//! a full parse would have made of it.
//!
//! Whenever the bytes could make jaq's parser and the scanner disagree,
//! [`extract`] answers `None` and the caller parses the whole object as
//! before: on anything that is not a JSON object, on any scanner error
//! (the full parse then reports jaq's own message), and on surrogate
//! escapes (`\uD800`…`\uDFFF`) anywhere in it, which the scanner accepts
//! unpaired (serde_json's rule) while jaq may not (the scanner notices them
//! as it reads them: `Scanner::surrogate_escapes`). Duplicate keys behave
//! as in jaq: the last value, at the first one's position.
//!
//! A streamed watch event's object is cut while the event scan walks it
//! ([`OnePass`], fed by `kube::WatchEvent::parse_with`), by the same
//! functions: the scan already validates every byte of the line, and a
//! second walk for the cut cost as much again. [`extract`] serves the rest
//! (list items, a one-pass cut that gave up).

use super::reads::{Node, Reads};
use crate::kube::scan::{Peek, RawStr, ScanError, Scanner};
use crate::kube::{Members, Within};
use jaq_json::{Map, Val};
use std::ops::Range;

/// A value cut to a watch's [`Reads`], made while its event was scanned:
/// what the decision uses instead of [`extract`] on the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut(Val);

impl Cut {
    pub fn value(&self) -> &Val {
        &self.0
    }
}

/// The cut of a watch event's object, built from the members the event
/// scan offers (see [`Members`]): [`extract`]'s value, in the scan's pass.
pub struct OnePass<'a, 'r> {
    line: &'a [u8],
    root: &'r Node,
    map: Map,
    metadata: Metadata<'r>,
    /// Something was [`Unsure`]: no cut, the decision falls back.
    failed: bool,
    /// The object was scanned to its end.
    ended: bool,
}

/// What becomes of the object's `metadata`, which the scan walks itself.
enum Metadata<'r> {
    /// Not read (or not reached yet, or done).
    Skipped,
    /// Read whole: parsed from its span at its end.
    Whole(Val),
    /// Read in part: its members are cut into the map as they come.
    Cut(Val, &'r Node, Map),
}

impl<'a, 'r> OnePass<'a, 'r> {
    /// A builder for the object of the event `line`.
    pub fn new(line: &'a [u8], reads: &'r Reads) -> Self {
        OnePass {
            line,
            root: &reads.root,
            map: Map::default(),
            metadata: Metadata::Skipped,
            failed: false,
            ended: false,
        }
    }

    /// The cut, once `WatchEvent::parse_with` answered `Ok` with this
    /// builder (it then offered every member); `None` when unsure (as
    /// [`extract`] would be).
    pub fn finish(self) -> Option<Cut> {
        (self.ended && !self.failed).then(|| Cut(Val::obj(self.map)))
    }

    fn fail(&mut self) -> bool {
        self.failed = true;
        self.metadata = Metadata::Skipped;
        false
    }
}

impl<'a> Members<'a> for OnePass<'a, '_> {
    fn member(&mut self, within: Within, key: RawStr<'a>, s: &mut Scanner<'a>) -> bool {
        if self.failed {
            return false;
        }
        let (node, map) = match (within, &mut self.metadata) {
            (Within::Object, _) => (self.root, &mut self.map),
            (Within::Metadata, Metadata::Cut(_, node, map)) => (*node, map),
            (Within::Metadata, _) => return false,
        };
        let Some(child) = child(node, key) else {
            return false;
        };
        match insert(s, map, key, child) {
            Ok(()) => true,
            Err(_) => self.fail(),
        }
    }

    fn metadata_start(&mut self, key: RawStr<'a>) {
        let Some(node) = child(self.root, key).filter(|_| !self.failed) else {
            return;
        };
        let Ok(key) = key_val(self.line, key) else {
            self.fail();
            return;
        };
        // As `value` does with an object.
        self.metadata = if node.whole {
            Metadata::Whole(key)
        } else {
            Metadata::Cut(key, node, Map::default())
        };
    }

    fn object_end(&mut self, surrogate_escapes: bool) {
        // As in `extract`; one before the object (in the envelope) is a
        // false alarm that only costs the fallback.
        if surrogate_escapes {
            self.fail();
        }
        self.ended = true;
    }

    fn metadata_end(&mut self, span: Range<usize>) {
        let value = match std::mem::replace(&mut self.metadata, Metadata::Skipped) {
            Metadata::Skipped => return,
            Metadata::Cut(key, _, map) => Ok((key, Val::obj(map))),
            Metadata::Whole(key) => match self.line.get(span) {
                Some(text) => jaq_json::read::parse_single(text).map(|v| (key, v)),
                None => {
                    self.fail();
                    return;
                }
            },
        };
        match value {
            Ok((key, value)) => {
                self.map.insert(key, value);
            }
            Err(_) => {
                self.fail();
            }
        }
    }
}

/// The value of `bytes` cut to `reads`, or `None`: parse it whole.
pub fn extract(bytes: &[u8], reads: &Reads) -> Option<Val> {
    let mut s = Scanner::new(bytes);
    if s.peek() != Peek::Object {
        return None;
    }
    let v = object(&mut s, &reads.root).ok()?;
    s.finish().ok()?;
    (!s.surrogate_escapes()).then_some(v)
}

/// Why a cut value could not be made: the caller falls back to the full
/// parse, which explains.
#[derive(Debug)]
enum Unsure {
    Scan,
    Jaq,
}

impl From<ScanError> for Unsure {
    fn from(_: ScanError) -> Self {
        Unsure::Scan
    }
}

/// The object whose `{` is next, with the members `node` reads (all of
/// them when it reads every item).
fn object(s: &mut Scanner<'_>, node: &Node) -> Result<Val, Unsure> {
    s.begin_object()?;
    let mut map = Map::default();
    let mut first = true;
    while let Some(key) = s.next_key(&mut first)? {
        match child(node, key) {
            None => s.skip_value()?,
            Some(child) => insert(s, &mut map, key, child)?,
        }
    }
    Ok(Val::obj(map))
}

/// What is read of member `key` of an object read as `node`, if anything.
fn child<'n>(node: &'n Node, key: RawStr<'_>) -> Option<&'n Node> {
    let named = node.keys.iter().find(|(k, _)| key.is(k)).map(|(_, n)| n);
    named.or(node.each.as_deref())
}

/// Member `key` (the scanner at its value) into `map`, cut to `node`.
fn insert(s: &mut Scanner<'_>, map: &mut Map, key: RawStr<'_>, node: &Node) -> Result<(), Unsure> {
    let key = key_val(s.input(), key)?;
    let value = value(s, node)?;
    map.insert(key, value);
    Ok(())
}

/// The array whose `[` is next, every element cut to `each`.
fn array(s: &mut Scanner<'_>, each: &Node) -> Result<Val, Unsure> {
    s.begin_array()?;
    let mut items = Vec::new();
    let mut first = true;
    while s.next_element(&mut first)? {
        items.push(value(s, each)?);
    }
    Ok(Val::Arr(items.into()))
}

/// The value that is next: cut further when it is an object read in part
/// or an array whose items are read in part, else whole, by jaq's parser.
/// (An array on a path that also names keys stays whole: indexing it by a
/// key fails with a message that quotes it.)
fn value(s: &mut Scanner<'_>, node: &Node) -> Result<Val, Unsure> {
    if !node.whole {
        match (s.peek(), &node.each) {
            (Peek::Object, _) => return object(s, node),
            (Peek::Array, Some(each)) if node.keys.is_empty() => return array(s, each),
            _ => {}
        }
    }
    let start = s.pos();
    s.skip_value()?;
    jaq_json::read::parse_single(&s.input()[start..s.pos()]).map_err(|_| Unsure::Jaq)
}

fn key_val(input: &[u8], key: RawStr<'_>) -> Result<Val, Unsure> {
    if !key.escaped {
        return Ok(Val::utf8_str(key.body.to_vec()));
    }
    // With its quotes, for jaq to decode exactly as it would.
    let quoted = input
        .get(key.at - 1..key.at + key.body.len() + 1)
        .ok_or(Unsure::Scan)?;
    jaq_json::read::parse_single(quoted).map_err(|_| Unsure::Jaq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(json: &str, code: &str) -> Option<String> {
        let reads = Reads::of(code).expect("bounded");
        let v = extract(json.as_bytes(), &reads)?;
        Some(String::from_utf8(crate::filter::json::to_json(&v).unwrap()).unwrap())
    }

    #[test]
    fn keeps_only_what_is_read() {
        let pod = r#"{"kind":"Pod","metadata":{"name":"a","labels":{"app":"web","x":"y"}},"spec":{"containers":[{"image":"i"}],"n":1}}"#;
        assert_eq!(
            cut(pod, r#".metadata.labels.app == "web""#).as_deref(),
            Some(r#"{"metadata":{"labels":{"app":"web"}}}"#)
        );
        assert_eq!(
            cut(pod, "[.spec.containers[].image]").as_deref(),
            Some(r#"{"spec":{"containers":[{"image":"i"}]}}"#)
        );
        assert_eq!(
            cut(pod, ".metadata.labels[]").as_deref(),
            Some(r#"{"metadata":{"labels":{"app":"web","x":"y"}}}"#)
        );
        assert_eq!(cut(pod, "empty").as_deref(), Some("{}"));
    }

    #[test]
    fn non_objects_on_a_path_are_kept_whole() {
        assert_eq!(
            cut(r#"{"a":[1,{"b":2}],"c":3}"#, ".a.b").as_deref(),
            Some(r#"{"a":[1,{"b":2}]}"#)
        );
        assert_eq!(
            cut(r#"{"a":[1,{"b":2,"c":3},[4]],"c":3}"#, ".a[].b?").as_deref(),
            Some(r#"{"a":[1,{"b":2},[4]]}"#)
        );
        assert_eq!(
            cut(r#"{"a":[{"b":2,"c":3}]}"#, "(.a[].b), .a.c?").as_deref(),
            Some(r#"{"a":[{"b":2,"c":3}]}"#)
        );
    }

    #[test]
    fn duplicate_and_escaped_keys_behave_as_in_jaq() {
        assert_eq!(
            cut(r#"{"a":{"x":1,"y":2},"b":0,"\u0061":{"x":3}}"#, ".a.x").as_deref(),
            Some(r#"{"a":{"x":3}}"#)
        );
    }

    #[test]
    fn doubtful_input_is_left_to_the_full_parse() {
        assert_eq!(cut(r#"{"a":"\ud800"}"#, ".b"), None);
        assert_eq!(cut(r#"{"a":["x\uDC00"]}"#, ".b"), None);
        assert_eq!(cut(r#"{"\ud83d\ude00":1}"#, ".b"), None);
        // An escaped backslash before `ud800` is no surrogate escape.
        assert_eq!(
            cut(r#"{"a":"\\ud800","b":"\\uD800"}"#, ".b").as_deref(),
            Some(r#"{"b":"\\uD800"}"#)
        );
        assert_eq!(cut(r#"[1]"#, ".b"), None);
        assert_eq!(cut(r#"{"a":1"#, ".b"), None);
        assert_eq!(cut(r#"{"a":1} x"#, ".b"), None);
        for bad in [
            r#"{"a":[1,]}"#,
            r#"{"a":[,1]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":[1"#,
        ] {
            assert_eq!(cut(bad, ".a[]"), None, "{bad}");
        }
        assert_eq!(cut(r#"{"a":[ ]}"#, ".a[]").as_deref(), Some(r#"{"a":[]}"#));
    }
}
