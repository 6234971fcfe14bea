//! `kube::scan` against serde_json on arbitrary bytes: the scanner accepts
//! exactly what `serde_json::from_slice::<IgnoredAny>` accepts; a scanned
//! string decodes exactly when serde_json deserializes it as a `String`, to
//! the same text; `WatchEvent::parse` only accepts UTF-8 JSON and reads the
//! same `type`, `kind` and metadata as a `serde_json::Value`.
#![no_main]

use kwatchd::kube::scan::{validate, Scanner};
use kwatchd::kube::WatchEvent;
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let ours = validate(data);
    let serde = serde_json::from_slice::<IgnoredAny>(data);
    assert_eq!(
        ours.is_ok(),
        serde.is_ok(),
        "scanner {ours:?} vs serde_json {serde:?}"
    );

    // One string value: decoding agrees with serde_json's `String`.
    let mut s = Scanner::new(data);
    if let Ok(raw) = s.string() {
        if s.finish().is_ok() {
            let decoded = raw.decode().ok().map(|c| c.into_owned());
            let theirs = serde_json::from_slice::<String>(data).ok();
            assert_eq!(decoded, theirs, "string decoding");
        }
    }

    if let Ok(ev) = WatchEvent::parse(data) {
        let text = std::str::from_utf8(data).expect("accepted a line that is not UTF-8");
        assert!(serde_json::from_str::<IgnoredAny>(text).is_ok());
        let raw = ev.object.get();
        assert!(validate(raw.as_bytes()).is_ok(), "object span is not JSON");
        assert!(raw.starts_with('{') && raw.ends_with('}'));
        if let Ok(value) = serde_json::from_slice::<Value>(data) {
            assert_eq!(
                value.get("type").and_then(Value::as_str),
                Some(ev.event_type.as_str())
            );
            let object = value.get("object");
            assert_eq!(
                object.and_then(|o| o.get("kind")).and_then(Value::as_str),
                ev.kind.as_deref(),
                "kind"
            );
            let meta = object.and_then(|o| o.get("metadata"));
            let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
            assert_eq!(field("name"), ev.meta.name.as_deref(), "name");
            assert_eq!(
                field("namespace"),
                ev.meta.namespace.as_deref(),
                "namespace"
            );
            assert_eq!(field("uid"), ev.meta.uid.as_deref(), "uid");
            assert_eq!(
                field("resourceVersion"),
                ev.meta.resource_version.as_deref(),
                "resourceVersion"
            );
        }
    }
});
