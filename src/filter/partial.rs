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
//! escapes (`\uD800`…`\uDFFF`), which the scanner accepts unpaired
//! (serde_json's rule) while jaq may not. Duplicate keys behave as in jaq:
//! the last value, at the first one's position.

use super::reads::{Node, Reads};
use crate::kube::scan::{Peek, RawStr, ScanError, Scanner};
use jaq_json::{Map, Val};

/// The value of `bytes` cut to `reads`, or `None`: parse it whole.
pub fn extract(bytes: &[u8], reads: &Reads) -> Option<Val> {
    if has_surrogate_escape(bytes) {
        return None;
    }
    let mut s = Scanner::new(bytes);
    if s.peek() != Peek::Object {
        return None;
    }
    let v = object(&mut s, &reads.root).ok()?;
    s.finish().ok()?;
    Some(v)
}

/// True when a `\u` escape of a UTF-16 surrogate may be in the text (an
/// escaped backslash before `u` counts too: a false alarm only costs the
/// full parse).
fn has_surrogate_escape(bytes: &[u8]) -> bool {
    memchr::memmem::find_iter(bytes, b"\\u").any(|i| {
        matches!(bytes.get(i + 2), Some(b'd' | b'D'))
            && matches!(
                bytes.get(i + 3),
                Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
            )
    })
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
        let named = node.keys.iter().find(|(k, _)| key.is(k)).map(|(_, n)| n);
        match named.or(node.each.as_deref()) {
            None => s.skip_value()?,
            Some(child) => {
                let key = key_val(s.input(), key)?;
                let value = value(s, child)?;
                map.insert(key, value);
            }
        }
    }
    Ok(Val::obj(map))
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
