//! The `scale` subresource of Deployments, ReplicaSets and StatefulSets: an `autoscaling/v1` `Scale` view of
//! the object, what `kubectl scale` patches. Writing it changes the object's `spec.replicas` and nothing else.

use serde_json::{json, Map, Value};

use crate::Resource;

/// Whether `res` has a `scale` subresource.
pub(crate) fn has_scale(res: &Resource) -> bool {
    res.api_version == "apps/v1"
        && matches!(
            res.plural.as_str(),
            "deployments" | "replicasets" | "statefulsets"
        )
}

/// The `Scale` of an object: its identity, `spec.replicas`, and the replicas and selector its status shows.
pub(crate) fn view(obj: &Map<String, Value>) -> Value {
    let o = Value::Object(obj.clone());
    let meta = &o["metadata"];
    let mut m = Map::new();
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(key) {
            m.insert(key.into(), v.clone());
        }
    }
    let selector: Vec<String> = o["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": m,
        "spec": {"replicas": o["spec"]["replicas"].as_u64().unwrap_or(1)},
        "status": {"replicas": o["status"]["replicas"].as_u64().unwrap_or(0), "selector": selector.join(",")},
    })
}

/// `obj` with the replicas a written `Scale` asks for, and its resourceVersion as the precondition.
pub(crate) fn apply(
    obj: &Map<String, Value>,
    scale: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let s = Value::Object(scale.clone());
    let replicas = s["spec"]["replicas"]
        .as_u64()
        .ok_or("spec.replicas: Invalid value: must be a non-negative integer")?;
    let mut out = obj.clone();
    let mut o = Value::Object(std::mem::take(&mut out));
    o["spec"]["replicas"] = json!(replicas);
    o["metadata"]["resourceVersion"] = s["metadata"]["resourceVersion"].clone();
    match o {
        Value::Object(m) => Ok(m),
        _ => Err("the object is not an object".into()),
    }
}
