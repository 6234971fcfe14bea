//! Patch documents: JSON merge patch (RFC 7386), strategic merge patch as the emulator approximates it, and JSON
//! patch (RFC 6902).
//!
//! The emulator has no Go structs to read `patchStrategy`/`patchMergeKey` from, so a strategic merge patch is
//! applied as a merge patch with one addition: a list whose elements are all objects with a string `name` (the
//! merge key of containers, env, volumes, ports of services, imagePullSecrets…) is merged element by element by
//! `name`, honouring `$patch: delete`. Every other `$`-directive (`$setElementOrder/…`, `$retainKeys`,
//! `$deleteFromPrimitiveList/…`) is ignored, and every other list is replaced whole. That is what `kubectl edit`,
//! `kubectl set image` and `kubectl patch` (default type) send for everyday changes.

use serde_json::{Map, Value};

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// A strategic merge patch, approximated as the module header says.
pub(crate) fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        match (t.get_mut(k), v) {
            (_, Value::Null) => {
                t.remove(k);
            }
            (Some(Value::Array(items)), Value::Array(changes))
                if keyed_by_name(items) && keyed_by_name(changes) =>
            {
                merge_by_name(items, changes)
            }
            (Some(existing), _) => strategic(existing, v),
            (None, _) => {
                let mut fresh = Value::Null;
                strategic(&mut fresh, v);
                t.insert(k.clone(), fresh);
            }
        }
    }
}

fn name_of(v: &Value) -> Option<&str> {
    v.get("name")?.as_str()
}

fn keyed_by_name(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|i| name_of(i).is_some())
}

fn merge_by_name(items: &mut Vec<Value>, changes: &[Value]) {
    for change in changes {
        let Some(name) = name_of(change) else {
            continue;
        };
        let at = items.iter().position(|i| name_of(i) == Some(name));
        match (at, change.get("$patch").and_then(Value::as_str)) {
            (Some(i), Some("delete")) => {
                items.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => strategic(&mut items[i], change),
            (None, _) => {
                let mut fresh = Value::Null;
                strategic(&mut fresh, change);
                items.push(fresh);
            }
        }
    }
}

/// RFC 6902: `add`, `remove`, `replace`, `move`, `copy` and `test`, applied in order; the first failure aborts.
pub(crate) fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for op in ops {
        let field = |k: &str| {
            op.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {op} lacks a string {k:?}"))
        };
        let path = field("path")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {op} lacks \"value\""))
        };
        match field("op")? {
            "add" => add(target, path, value()?)?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, value()?)?;
            }
            "move" => {
                let v = remove(target, field("from")?)?;
                add(target, path, v)?;
            }
            "copy" => {
                let v = target
                    .pointer(field("from")?)
                    .cloned()
                    .ok_or_else(|| format!("no value at {:?}", field("from").unwrap_or("")))?;
                add(target, path, v)?;
            }
            "test" => {
                if target.pointer(path) != Some(&value()?) {
                    return Err(format!("test failed at {path:?}"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

/// The parent of `path` and the last reference token, unescaped.
fn split(path: &str) -> Result<(&str, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("bad JSON pointer {path:?}"))?;
    Ok((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn add(target: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = v;
        return Ok(());
    }
    let (parent, key) = split(path)?;
    match target.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(key, v);
            Ok(())
        }
        Some(Value::Array(a)) if key == "-" => {
            a.push(v);
            Ok(())
        }
        Some(Value::Array(a)) => match key.parse::<usize>() {
            Ok(i) if i <= a.len() => {
                a.insert(i, v);
                Ok(())
            }
            _ => Err(format!("bad array index in {path:?}")),
        },
        _ => Err(format!("no container at {parent:?} for {path:?}")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, key) = split(path)?;
    let gone = match target.pointer_mut(parent) {
        Some(Value::Object(m)) => m.remove(&key),
        Some(Value::Array(a)) => match key.parse::<usize>() {
            Ok(i) if i < a.len() => Some(a.remove(i)),
            _ => None,
        },
        _ => None,
    };
    gone.ok_or_else(|| format!("no value at {path:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_is_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge(
            &mut t,
            &json!({"a": "z", "c": {"f": null, "n": 1}, "l": [3]}),
        );
        assert_eq!(t, json!({"a": "z", "c": {"d": "e", "n": 1}, "l": [3]}));
        let mut t = json!({"a": 1});
        merge(&mut t, &json!(["x"]));
        assert_eq!(t, json!(["x"]));
    }

    #[test]
    fn strategic_merges_named_lists_and_ignores_directives() {
        let mut t = json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox"},
        ], "args": ["a", "b"]}});
        strategic(
            &mut t,
            &json!({"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "side"}],
                "containers": [{"name": "web", "image": "nginx:2"}, {"name": "side", "$patch": "delete"},
                               {"name": "new", "image": "x"}],
                "args": ["c"],
            }}),
        );
        assert_eq!(
            t,
            json!({"spec": {"containers": [
                {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}]},
                {"name": "new", "image": "x"},
            ], "args": ["c"]}})
        );
    }

    #[test]
    fn json_patch_operations() {
        let mut t = json!({"metadata": {"labels": {"a/b": "1"}}, "l": [1, 2]});
        json_patch(
            &mut t,
            &json!([
                {"op": "test", "path": "/metadata/labels/a~1b", "value": "1"},
                {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"},
                {"op": "add", "path": "/l/-", "value": 3},
                {"op": "add", "path": "/l/0", "value": 0},
                {"op": "copy", "from": "/l/3", "path": "/c"},
                {"op": "move", "from": "/c", "path": "/m"},
                {"op": "remove", "path": "/l/1"},
            ]),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"metadata": {"labels": {"a/b": "2"}}, "l": [0, 2, 3], "m": 3})
        );
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/zz"}])).is_err());
        assert!(json_patch(&mut t, &json!([{"op": "test", "path": "/m", "value": 4}])).is_err());
        assert!(json_patch(&mut t, &json!({"op": "add"})).is_err());
    }
}
