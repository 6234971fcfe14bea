//! CustomResourceDefinitions: what a CRD object says is served, and serving it (discovery, reads, writes and
//! watches of its resources) the moment it is created, as an API server does once the CRD is Established.

use serde_json::{json, Map, Value};

use super::server::State;
use super::{Resource, ResourceDef};

/// The resources one CRD serves.
pub(crate) struct Served {
    /// `PLURAL.GROUP`, which the CRD's own name must be.
    pub(crate) name: String,
    pub(crate) group: String,
    pub(crate) plural: String,
    pub(crate) kind: String,
    pub(crate) namespaced: bool,
    pub(crate) short_names: Vec<String>,
    /// Served versions, each with whether it has a `status` subresource.
    pub(crate) versions: Vec<(String, bool)>,
}

fn text<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    v.pointer(path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{}: Required value", path[1..].replace('/', ".")))
}

/// Read a CRD object; `Err` names the missing or invalid field as a 422 cause does.
pub(crate) fn served(obj: &Map<String, Value>) -> Result<Served, String> {
    let v = Value::Object(obj.clone());
    let group = text(&v, "/spec/group")?.to_string();
    let plural = text(&v, "/spec/names/plural")?.to_string();
    let kind = text(&v, "/spec/names/kind")?.to_string();
    let namespaced = match text(&v, "/spec/scope")? {
        "Namespaced" => true,
        "Cluster" => false,
        other => {
            return Err(format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ))
        }
    };
    let short_names = v
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let versions: Vec<(String, bool)> = v
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|ver| ver["served"].as_bool() == Some(true))
                .filter_map(|ver| {
                    let status = ver.pointer("/subresources/status").is_some();
                    Some((ver["name"].as_str()?.to_string(), status))
                })
                .collect()
        })
        .unwrap_or_default();
    if versions.is_empty() {
        return Err("spec.versions: Invalid value: must have exactly one version marked as storage version and at least one served".into());
    }
    Ok(Served {
        name: format!("{plural}.{group}"),
        group,
        plural,
        kind,
        namespaced,
        short_names,
        versions,
    })
}

/// The status an API server gives an accepted CRD: names accepted, Established.
pub(crate) fn status(obj: &Map<String, Value>) -> Value {
    let names = obj
        .get("spec")
        .and_then(|s| s.get("names"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let stored: Vec<Value> = obj
        .get("spec")
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let condition = |kind: &str, reason: &str, message: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    })
}

fn resources(s: &Served) -> impl Iterator<Item = (Resource, bool)> + '_ {
    s.versions.iter().map(|(version, status)| {
        (
            Resource::new(&format!("{}/{version}", s.group), &s.plural),
            *status,
        )
    })
}

/// Serve the CRD's resources from now on (an update replaces what an earlier version of the CRD served).
pub(crate) fn install(st: &mut State, s: &Served) {
    uninstall(st, s);
    for (resource, status) in resources(s) {
        if status {
            st.status_subresources.insert(resource.clone());
        }
        st.resources.push(ResourceDef {
            resource,
            kind: s.kind.clone(),
            namespaced: s.namespaced,
            short_names: s.short_names.clone(),
        });
    }
}

/// Stop serving every version of the CRD's resources; returns them (their objects are the caller's to delete).
pub(crate) fn uninstall(st: &mut State, s: &Served) -> Vec<Resource> {
    let mut gone = Vec::new();
    st.resources.retain(|d| {
        let (group, _) = d.resource.api_version.split_once('/').unwrap_or(("", ""));
        let ours = group == s.group && d.resource.plural == s.plural;
        if ours {
            gone.push(d.resource.clone());
        }
        !ours
    });
    st.status_subresources.retain(|r| !gone.contains(r));
    gone
}
