//! The leader's advert: each watch's committed resourceVersion, in the
//! Lease's `kwatchd.io/committed` annotation, and what a standby makes of
//! it.
//!
//! The annotation is a JSON object keyed by the watch's store key (the same
//! on every replica). Kubernetes caps an object's annotations at 256 KiB
//! together, and thousands of watches would pass that: an advert over
//! [`PLAIN_MAX`] is written zlib-compressed and base64-encoded behind a
//! `z:` prefix (resourceVersions and watch names compress well), and one
//! still over [`ENCODED_MAX`] leaves watches out (said once in the log):
//! a standby then keeps their records, and a takeover may deliver those
//! again. A standby reads either form, bounded, from whatever wrote it.

use super::super::Slot;
use crate::state::AckRef;
use base64::Engine;
use serde_json::{Map, Value};
use std::io::{Read, Write};

/// Adverts up to this size are written as plain JSON.
const PLAIN_MAX: usize = 16 << 10;
/// The most an advert may take in the Lease, encoded.
const ENCODED_MAX: usize = 128 << 10;
/// The most a compressed advert is read to (another writer's Lease).
const DECODED_MAX: u64 = 16 << 20;
const COMPRESSED: &str = "z:";

/// `{"<watch store key>": "<committed resourceVersion>", ...}` as the
/// annotation carries it: what a leader advertises, for every watch with a
/// committed position (as many as fit). `warned`: the log said watches
/// were left out.
pub(super) fn advert(slots: &[Slot], warned: &mut bool) -> String {
    let entries: Vec<(&str, &str)> = slots
        .iter()
        .filter_map(|s| s.watcher.as_ref())
        .filter_map(|w| Some((w.machine().name(), w.committed_version()?)))
        .collect();
    fit(&entries, warned)
}

/// The annotation for `(store key, position)` entries: all of them, or the
/// first as many as fit in [`ENCODED_MAX`] once encoded.
fn fit(entries: &[(&str, &str)], warned: &mut bool) -> String {
    let mut keep = entries.len();
    loop {
        let map: Map<String, Value> = entries
            .iter()
            .take(keep)
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        let text = encode(Value::Object(map).to_string());
        if text.len() <= ENCODED_MAX || keep == 0 {
            if keep < entries.len() && !*warned {
                *warned = true;
                log::warn!(
                    "leader election: the Lease can carry the positions of {keep} of {} watches; standbys keep the records of the others, and a takeover may deliver those again",
                    entries.len()
                );
            }
            return text;
        }
        // Shrink in proportion, and at least by one.
        let scaled = keep * ENCODED_MAX / text.len();
        keep = scaled.min(keep - 1);
    }
}

/// The annotation's text for an advert's JSON.
fn encode(json: String) -> String {
    if json.len() <= PLAIN_MAX {
        return json;
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    if z.write_all(json.as_bytes()).is_err() {
        return json;
    }
    match z.finish() {
        Ok(bytes) => format!(
            "{COMPRESSED}{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
        Err(_) => json,
    }
}

/// The JSON of an annotation's text; `None` when it cannot be read.
fn decode(text: &str) -> Option<String> {
    let Some(b64) = text.strip_prefix(COMPRESSED) else {
        return Some(text.to_owned());
    };
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let mut json = String::new();
    flate2::read::ZlibDecoder::new(bytes.as_slice())
        .take(DECODED_MAX)
        .read_to_string(&mut json)
        .ok()?;
    Some(json)
}

/// The positions an advert names, by watch store key.
pub(super) fn positions(text: &str) -> Map<String, Value> {
    decode(text)
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default()
}

/// Each slot's handled position from a leader's advert: the integer
/// resourceVersion advertised for its watch's store key, if any.
pub(super) fn limits(advert: &str, slots: &[Slot]) -> Vec<Option<u64>> {
    let names = slots
        .iter()
        .map(|s| s.watcher.as_ref().map(|w| w.machine().name()));
    limits_of(advert, names)
}

/// [`limits`] for the store keys of the slots (`None`: no watch there). An
/// advert that is not a JSON object limits nothing.
fn limits_of<'a>(advert: &str, names: impl Iterator<Item = Option<&'a str>>) -> Vec<Option<u64>> {
    let parsed = positions(advert);
    names
        .map(|name| {
            let rv = parsed.get(name?)?.as_str()?;
            crate::state::integer_rv(rv).map(|rv| rv.get())
        })
        .collect()
}

/// A held record the leader has handled: its watch's advertised position
/// is at or past the record's integer resourceVersion.
pub(super) fn handled(limits: &[Option<u64>], ack: &AckRef) -> bool {
    match (limits.get(ack.watch).copied().flatten(), ack.rv) {
        (Some(limit), Some(rv)) => rv.get() <= limit,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU64;

    fn ack(watch: usize, rv: u64) -> AckRef {
        AckRef {
            watch,
            seq: 0,
            rv: NonZeroU64::new(rv),
        }
    }

    #[test]
    fn an_advert_limits_each_watch_by_its_store_key() {
        let advert = r#"{"pods":"120","cm/ns-a":"77","opaque":"abc","neg":"-1"}"#;
        let names = [
            Some("pods"),
            None,
            Some("cm/ns-a"),
            Some("opaque"),
            Some("gone"),
            Some("neg"),
        ];
        let limits = limits_of(advert, names.into_iter());
        assert_eq!(limits, vec![Some(120), None, Some(77), None, None, None]);
        assert!(handled(&limits, &ack(0, 120)));
        assert!(handled(&limits, &ack(0, 3)));
        assert!(!handled(&limits, &ack(0, 121)), "after the leader's point");
        assert!(!handled(&limits, &ack(1, 1)), "no limit for the slot");
        assert!(!handled(&limits, &ack(0, 0)), "no integer resourceVersion");
        assert!(!handled(&limits, &ack(9, 1)), "a slot past the advert's");
        assert_eq!(limits_of("not json", names.into_iter()), vec![None; 6]);
        assert_eq!(limits_of("z:!!", names.into_iter()), vec![None; 6]);
    }

    /// (watches, whether all fit): names and positions from a PRNG, so
    /// they compress about 2:1 and 10,000 pass 128 KiB even compressed.
    #[test]
    fn an_advert_over_the_cap_even_compressed_keeps_the_first_watches_that_fit() {
        for (watches, all_fit) in [(100, true), (2_000, true), (10_000, false), (20_000, false)] {
            let mut rng = crate::rand::Rng::new(watches as u64);
            let owned: Vec<(String, String)> = (0..watches)
                .map(|_| {
                    let name = format!("{:016x}/{:016x}", rng.next_u64(), rng.next_u64());
                    (name, rng.next_u64().to_string())
                })
                .collect();
            let entries: Vec<(&str, &str)> = owned
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut warned = false;
            let text = fit(&entries, &mut warned);
            assert!(text.len() <= ENCODED_MAX, "{watches}: {}", text.len());
            let read = positions(&text);
            let kept = read.len();
            assert_eq!(kept == watches, all_fit, "{watches}: kept {kept}");
            assert_eq!(warned, !all_fit, "{watches}: the log says so once");
            // Those kept are the first ones, with their positions.
            for (k, v) in &entries[..kept] {
                assert_eq!(read.get(*k).and_then(Value::as_str), Some(*v), "{watches}");
            }
            if all_fit {
                continue;
            }
            assert!(text.starts_with(COMPRESSED), "{watches}");
            // As many as fit, give or take the proportional shrink: one
            // more than 2% more would pass the cap.
            let more = (kept + kept / 50 + 1).min(watches);
            let bigger: Map<String, Value> = entries[..more]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                .collect();
            let bigger = encode(Value::Object(bigger).to_string());
            assert!(
                bigger.len() > ENCODED_MAX,
                "{watches}: kept {kept}, yet {more} take only {}",
                bigger.len()
            );
            // Said once: a second advert with the flag set leaves it set.
            let again = fit(&entries, &mut warned);
            assert_eq!(again, text);
            assert!(warned);
        }
    }

    #[test]
    fn big_adverts_are_compressed_and_read_back() {
        let map: Map<String, Value> = (0..5000)
            .map(|i| {
                (
                    format!("watch-{i}/namespace-{i}"),
                    Value::from(format!("{}", 1_000_000 + i)),
                )
            })
            .collect();
        let json = Value::Object(map).to_string();
        assert!(json.len() > ENCODED_MAX, "{}", json.len());
        let text = encode(json.clone());
        assert!(text.starts_with(COMPRESSED));
        assert!(text.len() < ENCODED_MAX, "{}", text.len());
        assert_eq!(decode(&text).as_deref(), Some(json.as_str()));
        let small = r#"{"pods":"1"}"#.to_owned();
        assert_eq!(encode(small.clone()), small);
        let limits = limits_of(&text, [Some("watch-7/namespace-7")].into_iter());
        assert_eq!(limits, vec![Some(1_000_007)]);
    }
}
