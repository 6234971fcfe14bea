//! Between the bytes kwatchd carries (the server's JSON, records) and jaq's
//! values: parse once per event, write back only where a value must leave
//! (a projection, a redacted object, a transformed delivery).
//!
//! jaq can hold values JSON cannot (NaN, byte strings, non-string keys) and
//! prints them as it pleases; nothing we write may be invalid JSON, so every
//! write is checked and refused with a clear error instead.

use super::partial;
use super::reads::Reads;
use jaq_json::write::{write, Pp};
use jaq_json::Val;

/// Parses one JSON document into a jaq value.
pub fn parse(bytes: &[u8]) -> Result<Val, String> {
    jaq_json::read::parse_single(bytes).map_err(|e| format!("invalid JSON: {e}"))
}

/// Parses one JSON document for programs that read only `reads` of it
/// (`None`: anything): the value holds those paths only when that is safe
/// (see `filter::partial`), else all of it. The programs cannot tell.
pub fn parse_for(bytes: &[u8], reads: Option<&Reads>) -> Result<Val, String> {
    match reads.and_then(|r| partial::extract(bytes, r)) {
        Some(v) => Ok(v),
        None => parse(bytes),
    }
}

/// Compact JSON with keys in the order they have (the server's order for
/// objects that came from it): what deliveries and redacted objects use.
pub fn to_json(v: &Val) -> Result<Vec<u8>, String> {
    render(v, false)
}

/// Compact JSON with object keys sorted: the form a projection is compared
/// and stored in, so two equal values give equal bytes whatever order their
/// keys were built in.
pub fn to_canonical_json(v: &Val) -> Result<Vec<u8>, String> {
    render(v, true)
}

fn render(v: &Val, sort_keys: bool) -> Result<Vec<u8>, String> {
    let pp = Pp {
        sort_keys,
        ..Pp::default()
    };
    let mut out = Vec::new();
    write(&mut out, &pp, 0, v).map_err(|e| e.to_string())?;
    // jaq writes NaN, Infinity, byte strings and non-string keys as it
    // sees fit; serde_json's grammar is the judge of what is JSON (the
    // scanner accepts exactly what it does, and faster).
    if crate::kube::scan::validate(&out).is_err() {
        let shown: String = String::from_utf8_lossy(&out).chars().take(60).collect();
        return Err(format!("the value is not representable as JSON: {shown}"));
    }
    Ok(out)
}

/// A value as a plain `serde_json` value (for tests and for code that
/// builds records with serde).
pub fn to_serde(v: &Val) -> Result<serde_json::Value, String> {
    let bytes = to_json(v)?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_keys_and_compacts() {
        let v = parse(br#"{ "b": [1, {"z":1,"a":2}], "a": "x" }"#).unwrap();
        assert_eq!(
            to_canonical_json(&v).unwrap(),
            br#"{"a":"x","b":[1,{"a":2,"z":1}]}"#
        );
        assert_eq!(to_json(&v).unwrap(), br#"{"b":[1,{"z":1,"a":2}],"a":"x"}"#);
    }

    #[test]
    fn strings_round_trip_with_escapes() {
        let v = parse(br#""a\"b\\c\n\u0001 \u00e9""#).unwrap();
        let out = to_json(&v).unwrap();
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1} \u{e9}");
    }

    #[test]
    fn large_numbers_survive() {
        let v = parse(b"[12345678901234567890, 1.5e300, -0]").unwrap();
        let out = to_json(&v).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back[0].to_string(), "12345678901234567890");
    }

    #[test]
    fn nan_is_refused() {
        let p = crate::filter::jq::Program::compile("nan").unwrap();
        let v = p.first(Val::Null).unwrap().unwrap();
        assert!(to_json(&v).is_err());
    }

    #[test]
    fn invalid_input_is_an_error() {
        assert!(parse(b"{").is_err());
    }
}
