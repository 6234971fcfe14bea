//! The Lease object as the elector reads and writes it: the leader-election
//! record in `spec`, the advertised positions in an annotation, and every
//! other field kept as read, so that an update sends back what another
//! writer (a newer API server, a client-go program) put there.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

/// The annotation where the leader advertises what every sink has handled.
pub const COMMITTED_ANNOTATION: &str = "kwatchd.io/committed";

/// The fields of `spec` that client-go's `LeaderElectionRecord` maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: String,
    pub duration_secs: i64,
    pub acquire_time: Option<String>,
    pub renew_time: Option<String>,
    pub transitions: i64,
}

impl LeaseRecord {
    /// Read from a Lease object; absent fields read as client-go's zero values.
    pub fn of(object: &Value) -> LeaseRecord {
        let spec = object.get("spec");
        let field = |k: &str| spec.and_then(|s| s.get(k));
        LeaseRecord {
            holder: field("holderIdentity")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            duration_secs: field("leaseDurationSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            acquire_time: field("acquireTime")
                .and_then(Value::as_str)
                .map(str::to_string),
            renew_time: field("renewTime")
                .and_then(Value::as_str)
                .map(str::to_string),
            transitions: field("leaseTransitions")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        }
    }

    /// Write into `object`'s spec, keeping the spec's other fields.
    fn write_into(&self, object: &mut Value) {
        if let Some(spec) = child_object(object, "spec") {
            spec.insert("holderIdentity".into(), json!(self.holder));
            spec.insert("leaseDurationSeconds".into(), json!(self.duration_secs));
            for (key, time) in [
                ("acquireTime", &self.acquire_time),
                ("renewTime", &self.renew_time),
            ] {
                match time {
                    Some(t) => spec.insert(key.into(), json!(t)),
                    None => spec.remove(key),
                };
            }
            spec.insert("leaseTransitions".into(), json!(self.transitions));
        }
    }
}

/// `metav1.MicroTime` as the API server writes it: RFC 3339 UTC with exactly
/// six fractional digits.
pub fn micro_time(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// The body of a CREATE: a fresh Lease.
pub fn new_object(
    namespace: &str,
    name: &str,
    record: &LeaseRecord,
    advert: Option<&str>,
) -> Value {
    let mut object = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {},
    });
    record.write_into(&mut object);
    set_advert(&mut object, advert);
    object
}

/// The body of an UPDATE: `read` (with its `metadata.resourceVersion`, the
/// precondition that makes a concurrent writer's update fail with 409) with
/// the record replaced.
pub fn updated_object(read: &Value, record: &LeaseRecord, advert: Option<&str>) -> Value {
    let mut object = read.clone();
    record.write_into(&mut object);
    set_advert(&mut object, advert);
    object
}

/// Set (or, given `None`, leave alone) the committed-positions annotation.
fn set_advert(object: &mut Value, advert: Option<&str>) {
    let Some(advert) = advert else {
        return;
    };
    let meta = child_object(object, "metadata");
    if let Some(a) = meta.and_then(|m| {
        m.entry("annotations")
            .or_insert_with(|| json!({}))
            .as_object_mut()
    }) {
        a.insert(COMMITTED_ANNOTATION.into(), json!(advert));
    }
}

/// `parent[key]` as an object, made one if absent (a non-object there is
/// left alone: such a Lease is not ours to repair).
fn child_object<'a>(parent: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    parent
        .as_object_mut()?
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

/// The committed-positions annotation of a Lease object, if any.
pub fn advert_of(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(COMMITTED_ANNOTATION))
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn micro_time_has_six_fractional_digits() {
        let t = UNIX_EPOCH + Duration::from_micros(1_796_405_328_123_456);
        assert_eq!(micro_time(t), "2026-12-04T17:28:48.123456Z");
        assert_eq!(
            micro_time(UNIX_EPOCH + Duration::from_secs(1)),
            "1970-01-01T00:00:01.000000Z"
        );
    }

    #[test]
    fn update_keeps_unknown_fields_and_the_resource_version() {
        let read = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l", "namespace": "n", "resourceVersion": "42",
                         "labels": {"a": "b"}, "annotations": {"other": "x"}},
            "spec": {"holderIdentity": "old", "leaseDurationSeconds": 15,
                     "strategy": "OldestEmulationVersion", "preferredHolder": "p"},
            "status": {"future": true},
        });
        let rec = LeaseRecord {
            holder: "me".into(),
            duration_secs: 3,
            acquire_time: Some("a".into()),
            renew_time: Some("r".into()),
            transitions: 7,
        };
        let out = updated_object(&read, &rec, Some("{\"w\":\"9\"}"));
        assert_eq!(out["metadata"]["resourceVersion"], "42");
        assert_eq!(out["metadata"]["labels"]["a"], "b");
        assert_eq!(out["metadata"]["annotations"]["other"], "x");
        assert_eq!(advert_of(&out), Some("{\"w\":\"9\"}"));
        assert_eq!(out["spec"]["strategy"], "OldestEmulationVersion");
        assert_eq!(out["spec"]["preferredHolder"], "p");
        assert_eq!(out["status"]["future"], true);
        assert_eq!(LeaseRecord::of(&out), rec);
    }

    #[test]
    fn absent_fields_read_as_zero_values() {
        let rec = LeaseRecord::of(&json!({"metadata": {}}));
        assert_eq!(rec.holder, "");
        assert_eq!(rec.duration_secs, 0);
        assert_eq!(rec.transitions, 0);
        assert_eq!(rec.acquire_time, None);
        let created = new_object("n", "l", &rec, None);
        assert_eq!(created["kind"], "Lease");
        assert_eq!(created["metadata"]["namespace"], "n");
        assert_eq!(advert_of(&created), None);
    }
}
