//! WatchEvent::parse and ListPage::parse on arbitrary bytes: never panic;
//! when Ok, every returned object is valid JSON on its own and is a slice of
//! the input (borrowed, not re-serialised); a watch event's object is a JSON
//! object and its metadata agrees with a full parse of that object.
#![no_main]

use kwatchd::kube::{ListPage, WatchEvent};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// `part` lies inside `whole` (pointer range), which is stronger than a
/// substring search: the bytes are the input's own.
fn assert_within(part: &str, whole: &[u8]) {
    let start = part.as_ptr() as usize;
    let end = start + part.len();
    let wstart = whole.as_ptr() as usize;
    let wend = wstart + whole.len();
    assert!(
        wstart <= start && end <= wend,
        "object is not a slice of the input"
    );
    assert_eq!(&whole[start - wstart..end - wstart], part.as_bytes());
}

/// Valid JSON by the grammar (serde_json's own check, as `RawValue` does
/// it); then, as a `Value` when it has one. What passes the grammar check
/// but is no `Value` cannot be represented, not malformed: a number beyond
/// f64's range (`1E400`), lone or broken UTF-16 surrogate escapes in
/// strings the daemon never decodes (`"\uDDDD"`); the metadata checks need
/// the `Value` and are skipped for those.
fn assert_valid_json(raw: &str) -> Option<Value> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(raw) {
        panic!("returned object is not valid JSON ({e}): {raw:?}");
    }
    serde_json::from_str::<Value>(raw).ok()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = WatchEvent::parse(data) {
        let raw = ev.object.get();
        assert_within(raw, data);
        assert!(raw.starts_with('{'), "event object is not a JSON object");
        if let Some(value) = assert_valid_json(raw) {
            check_event(&ev, &value);
        }
    }
    if let Ok(page) = ListPage::parse(data) {
        for item in &page.items {
            let raw = item.get();
            assert_within(raw, data);
            assert_valid_json(raw);
        }
        if let Some(c) = &page.continue_token {
            assert!(!c.is_empty(), "empty continue token kept");
        }
    }
});

/// The metadata taken from the head of the object is the object's.
fn check_event(ev: &WatchEvent<'_>, value: &Value) {
    assert!(value.is_object(), "event object is not a JSON object");
    let meta = value.get("metadata");
    let field = |name: &str| meta.and_then(|m| m.get(name)).and_then(Value::as_str);
    if meta.is_some_and(Value::is_object) {
        assert_eq!(ev.meta.name.as_deref(), field("name"), "metadata.name");
        assert_eq!(
            ev.meta.namespace.as_deref(),
            field("namespace"),
            "metadata.namespace"
        );
        assert_eq!(ev.meta.uid.as_deref(), field("uid"), "metadata.uid");
        assert_eq!(
            ev.meta.resource_version.as_deref(),
            field("resourceVersion"),
            "metadata.resourceVersion"
        );
    }
    if let Some(kind) = value.get("kind").and_then(Value::as_str) {
        assert_eq!(ev.kind.as_deref(), Some(kind), "kind");
    }
}
