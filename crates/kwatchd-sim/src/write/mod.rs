//! Writes from API clients (`kubectl create/replace/label/annotate/edit/patch/delete`): POST, PUT, PATCH and
//! DELETE on objects and on their `status` subresource, with the API server's rules where a client can see them:
//!
//! - The server owns `uid`, `creationTimestamp`, `resourceVersion` and `generation`: a create sets them (a
//!   `resourceVersion` in a create is refused, as the real server does), an update keeps the first two, moves
//!   the resourceVersion, and bumps `generation` only when something outside `metadata` and `status` changed.
//!   `generation` exists on objects of named API groups (Deployments, custom resources, CRDs), not on core ones.
//! - An update carrying a `resourceVersion` (PUT, or a patch that sets one) is a precondition: a stale one gets
//!   409 Conflict; one without is unconditional, except for custom resources (422, as their real strategy says).
//! - An update that changes nothing is a no-op: same resourceVersion, no watch event.
//! - Resources with a `status` subresource (pods, deployments, namespaces…, and custom resources whose CRD says
//!   so) keep their status on writes to the object and take only the status on writes to `/status`.
//! - Errors are `Status` bodies with the real reasons and messages: 404 NotFound, 409 AlreadyExists, 409
//!   Conflict, 422 Invalid, 400 BadRequest, 415 UnsupportedMediaType (server-side apply is not emulated).
//! - Deleting a Namespace deletes what is in it, at once (no Terminating phase); deleting a CRD stops serving its
//!   resources and deletes its objects. Creating a CRD serves its resources at once, in discovery too.
//!
//! Patches are in `patch.rs` (strategic merge patches are approximated there, as its header says).

use std::time::SystemTime;

use kwatchd_rand::Rng;
use serde_json::{json, Map, Value};

use super::http::{self, Out};
use super::patch;

mod scale;
use super::server::{Ctx, State};
use super::{ObjectRef, Resource, ResourceDef};

/// Which part of an object a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Object,
    Status,
    /// `autoscaling/v1` `Scale` (see `scale.rs`).
    Scale,
}

/// An API error, answered as a `Status` body.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) details: Value,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details: Value::Null,
        }
    }

    fn about(mut self, res: &Resource, name: &str) -> ApiError {
        let mut d = json!({"name": name, "kind": res.plural});
        if let Some((group, _)) = res.api_version.split_once('/') {
            d["group"] = json!(group);
        }
        self.details = d;
        self
    }

    pub(crate) fn not_found(res: &Resource, name: &str) -> ApiError {
        let msg = format!("{} \"{name}\" not found", qualified(res));
        ApiError::new(404, "NotFound", msg).about(res, name)
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message.into())
    }

    fn conflict(res: &Resource, name: &str, why: &str) -> ApiError {
        let msg = format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            qualified(res)
        );
        ApiError::new(409, "Conflict", msg).about(res, name)
    }

    fn invalid(kind: &str, res: &Resource, name: &str, cause: &str) -> ApiError {
        let msg = format!("{kind} \"{name}\" is invalid: {cause}");
        ApiError::new(422, "Invalid", msg).about(res, name)
    }

    /// The `Status` body.
    pub(crate) fn body(&self) -> String {
        let mut v: Value =
            serde_json::from_str(&http::status_json(self.code, self.reason, &self.message))
                .unwrap_or_else(|_| json!({}));
        if !self.details.is_null() {
            v["details"] = self.details.clone();
        }
        v.to_string()
    }
}

/// What a GET of `part` of a stored object answers; `None`: the resource has no such subresource.
pub(crate) fn view(res: &Resource, part: Part, json: &str) -> Option<String> {
    match part {
        Part::Object | Part::Status => Some(json.to_string()),
        Part::Scale if scale::has_scale(res) => match serde_json::from_str(json) {
            Ok(Value::Object(obj)) => Some(scale::view(&obj).to_string()),
            _ => None,
        },
        Part::Scale => None,
    }
}

/// `pods` or `deployments.apps`, as the API server names a resource in messages.
fn qualified(res: &Resource) -> String {
    match res.api_version.split_once('/') {
        Some((group, _)) => format!("{}.{group}", res.plural),
        None => res.plural.clone(),
    }
}

/// Where a write lands: the resource type as served, and the namespace and name from the URL.
#[derive(Clone, Copy)]
pub(crate) struct Dest<'a> {
    pub(crate) def: &'a ResourceDef,
    pub(crate) namespace: &'a str,
    /// `None` for a POST to the collection.
    pub(crate) name: Option<&'a str>,
    pub(crate) part: Part,
}

/// Serve one write; answers and returns whether the connection may be kept.
pub(crate) fn serve(ctx: &Ctx, out: &mut Out, dest: &Dest) -> bool {
    let result = {
        let mut st = ctx.sh.lock();
        let r = apply(&mut st, ctx, dest);
        ctx.sh.cond.notify_all();
        r
    };
    match result {
        Ok((code, body)) => {
            ctx.set_status(code);
            out.send(&http::json_response(code, &body, &[], false))
                .is_ok()
        }
        Err(e) => {
            ctx.set_status(e.code);
            out.send(&http::json_response(e.code, &e.body(), &[], false))
                .is_ok()
        }
    }
}

fn apply(st: &mut State, ctx: &Ctx, dest: &Dest) -> Result<(u16, String), ApiError> {
    let req = ctx.req;
    let res = &dest.def.resource;
    let name = dest.name.unwrap_or("");
    let ctype = req.header("content-type").unwrap_or("");
    let ctype = ctype.split(';').next().unwrap_or("").trim();
    // Clients that prefer protobuf or CBOR (kubectl 1.35+) fall back to JSON on a 415, as they do with
    // aggregated servers that speak only JSON.
    if matches!(req.method.as_str(), "POST" | "PUT") && !matches!(ctype, "" | "application/json") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json (the emulator's only one; got {ctype})"),
        ));
    }
    match (req.method.as_str(), dest.name) {
        ("POST", None) => create(st, dest, parse_object(&req.body)?).map(|r| (201, r.json)),
        ("PUT", Some(name)) => finish(st, dest, name, parse_object(&req.body)?, None),
        ("PATCH", Some(name)) => {
            let current = current(st, res, dest.namespace, name)?;
            let mut patched = match dest.part {
                Part::Scale => scale::view(&current),
                Part::Object | Part::Status => Value::Object(current.clone()),
            };
            let doc: Value = serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("the patch is not JSON: {e}")))?;
            match ctype {
                "application/merge-patch+json" => patch::merge(&mut patched, &doc),
                "application/strategic-merge-patch+json" => patch::strategic(&mut patched, &doc),
                "application/json-patch+json" => patch::json_patch(&mut patched, &doc)
                    .map_err(|e| ApiError::new(422, "Invalid", e).about(res, name))?,
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!("the body of the request was in an unknown format ({other}): the emulator accepts application/merge-patch+json, application/strategic-merge-patch+json and application/json-patch+json (server-side apply is not emulated)"),
                    ))
                }
            }
            let Value::Object(patched) = patched else {
                return Err(ApiError::bad_request("the patched object is not an object"));
            };
            finish(st, dest, name, patched, Some(current))
        }
        ("DELETE", Some(name)) => delete(st, dest, name, &req.body).map(|r| (200, r.json)),
        (method, _) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {}", req.path),
        )
        .about(res, name)),
    }
}

/// The end of a PUT or PATCH: `doc` is the new object, or the new `Scale` of it.
fn finish(
    st: &mut State,
    dest: &Dest,
    name: &str,
    doc: Map<String, Value>,
    current_given: Option<Map<String, Value>>,
) -> Result<(u16, String), ApiError> {
    let res = &dest.def.resource;
    if dest.part != Part::Scale {
        return replace(st, dest, name, doc, current_given).map(|r| (200, r.json));
    }
    if !scale::has_scale(res) {
        return Err(ApiError::not_found(res, name));
    }
    let current = match current_given {
        Some(c) => c,
        None => current(st, res, dest.namespace, name)?,
    };
    let obj =
        scale::apply(&current, &doc).map_err(|e| ApiError::invalid("Scale", res, name, &e))?;
    let object = Dest {
        part: Part::Object,
        ..*dest
    };
    let r = replace(st, &object, name, obj, Some(current))?;
    match serde_json::from_str(&r.json) {
        Ok(Value::Object(now)) => Ok((200, scale::view(&now).to_string())),
        _ => Err(ApiError::new(
            500,
            "InternalError",
            "stored object unreadable".into(),
        )),
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body is not JSON (the emulator takes JSON bodies only): {e}"
        ))),
    }
}

fn current(
    st: &State,
    res: &Resource,
    namespace: &str,
    name: &str,
) -> Result<Map<String, Value>, ApiError> {
    st.store
        .get(res, namespace, name)
        .and_then(|j| match serde_json::from_str(&j) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        })
        .ok_or_else(|| ApiError::not_found(res, name))
}

fn meta(obj: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let m = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    match m {
        Value::Object(m) => m,
        _ => unreachable!("made an object just above"),
    }
}

fn meta_str<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `apiVersion` and `kind` must be the resource's (or absent: then they are set).
fn check_type(obj: &mut Map<String, Value>, def: &ResourceDef) -> Result<(), ApiError> {
    let want = [
        ("apiVersion", def.resource.api_version.as_str()),
        ("kind", def.kind.as_str()),
    ];
    for (key, want) in want {
        match obj.get(key).and_then(Value::as_str) {
            Some(got) if got != want => {
                let what = if key == "kind" { "kind" } else { "API version" };
                return Err(ApiError::bad_request(format!(
                    "the {what} in the data ({got}) does not match the expected {what} ({want})"
                )));
            }
            _ => {
                obj.insert(key.into(), want.into());
            }
        }
    }
    Ok(())
}

/// The URL's namespace is the object's: a different one in the body is refused, none is filled in.
fn check_namespace(obj: &mut Map<String, Value>, dest: &Dest) -> Result<(), ApiError> {
    let m = meta(obj);
    if !dest.def.namespaced {
        m.remove("namespace");
        return Ok(());
    }
    match m.get("namespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() && ns != dest.namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            m.insert("namespace".into(), dest.namespace.into());
            Ok(())
        }
    }
}

fn has_generation(res: &Resource) -> bool {
    res.api_version.contains('/')
        && !res.api_version.starts_with("coordination.k8s.io/")
        && !res.api_version.starts_with("events.k8s.io/")
}

fn has_status(st: &State, res: &Resource) -> bool {
    const WITH_STATUS: &[&str] = &[
        "pods",
        "services",
        "persistentvolumeclaims",
        "persistentvolumes",
        "namespaces",
        "nodes",
        "deployments",
        "statefulsets",
        "daemonsets",
        "replicasets",
        "jobs",
        "cronjobs",
        "ingresses",
        "customresourcedefinitions",
    ];
    let known = super::store::KNOWN
        .iter()
        .any(|(gv, p, _, _)| *gv == res.api_version && *p == res.plural);
    if known {
        WITH_STATUS.contains(&res.plural.as_str())
    } else {
        st.status_subresources.contains(res)
    }
}

fn is_custom(res: &Resource) -> bool {
    !super::store::KNOWN
        .iter()
        .any(|(gv, p, _, _)| *gv == res.api_version && *p == res.plural)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// `generateName` plus five characters from the API server's alphabet.
fn generated(prefix: &str, st: &State) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = Rng::from_entropy(st.store.rv());
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.index(ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

fn create(st: &mut State, dest: &Dest, mut obj: Map<String, Value>) -> Result<ObjectRef, ApiError> {
    let res = &dest.def.resource;
    if dest.part == Part::Status {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "create is not supported on status".into(),
        ));
    }
    check_type(&mut obj, dest.def)?;
    check_namespace(&mut obj, dest)?;
    let mut name = meta_str(&obj, "name").to_string();
    if name.is_empty() {
        let prefix = meta_str(&obj, "generateName");
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                &dest.def.kind,
                res,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        name = generated(prefix, st);
    }
    if !meta_str(&obj, "resourceVersion").is_empty() {
        return Err(ApiError::new(
            500,
            "InternalError",
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    if st.store.get(res, dest.namespace, &name).is_some() {
        let msg = format!("{} \"{name}\" already exists", qualified(res));
        return Err(ApiError::new(409, "AlreadyExists", msg).about(res, &name));
    }
    let uid = st.store.new_uid();
    let m = meta(&mut obj);
    m.insert("name".into(), name.clone().into());
    m.insert("uid".into(), uid.into());
    m.insert("creationTimestamp".into(), now().into());
    for server_only in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        m.remove(server_only);
    }
    if has_generation(res) {
        m.insert("generation".into(), 1.into());
    }
    kind_specific_create(st, dest, &name, &mut obj)?;
    Ok(st.store.put(res, dest.namespace, &name, obj))
}

/// Defaults and side effects of particular kinds on create: namespaces are Active, CRDs get served.
fn kind_specific_create(
    st: &mut State,
    dest: &Dest,
    name: &str,
    obj: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    match (
        dest.def.resource.api_version.as_str(),
        dest.def.resource.plural.as_str(),
    ) {
        ("v1", "namespaces") => {
            obj.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
            obj.insert("status".into(), json!({"phase": "Active"}));
            meta(obj)
                .entry("labels")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|l| l.insert("kubernetes.io/metadata.name".into(), name.into()));
        }
        ("apiextensions.k8s.io/v1", "customresourcedefinitions") => {
            let served = super::crd::served(obj)
                .map_err(|e| ApiError::invalid(&dest.def.kind, &dest.def.resource, name, &e))?;
            if served.name != name {
                let cause = format!(
                    "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
                );
                return Err(ApiError::invalid(
                    &dest.def.kind,
                    &dest.def.resource,
                    name,
                    &cause,
                ));
            }
            obj.insert("status".into(), super::crd::status(obj));
            super::crd::install(st, &served);
        }
        _ => {}
    }
    Ok(())
}

fn set_or_remove(obj: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    match v {
        Some(v) => obj.insert(key.into(), v),
        None => obj.remove(key),
    };
}

/// Everything but `metadata` and `status`: what moves `generation`.
fn spec_part(obj: &Map<String, Value>) -> Map<String, Value> {
    obj.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The object without its resourceVersion, for "did anything change".
fn without_rv(obj: &Map<String, Value>) -> Map<String, Value> {
    let mut o = obj.clone();
    meta(&mut o).remove("resourceVersion");
    o
}

/// PUT, and the end of a PATCH (`current` given: the patched object was built from it).
fn replace(
    st: &mut State,
    dest: &Dest,
    name: &str,
    mut obj: Map<String, Value>,
    current_given: Option<Map<String, Value>>,
) -> Result<ObjectRef, ApiError> {
    let res = &dest.def.resource;
    check_type(&mut obj, dest.def)?;
    check_namespace(&mut obj, dest)?;
    let body_name = meta_str(&obj, "name");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let mut old = match current_given {
        Some(c) => c,
        None => current(st, res, dest.namespace, name)?,
    };
    let old_rv = meta_str(&old, "resourceVersion").to_string();
    let old_uid = meta_str(&old, "uid").to_string();
    let rv = meta_str(&obj, "resourceVersion").to_string();
    if rv.is_empty() && is_custom(res) {
        return Err(ApiError::invalid(
            &dest.def.kind,
            res,
            name,
            "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
        ));
    }
    if !rv.is_empty() && rv != old_rv {
        return Err(ApiError::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let uid = meta_str(&obj, "uid").to_string();
    if !uid.is_empty() && uid != old_uid {
        let why = format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {old_uid}"
        );
        return Err(ApiError::conflict(res, name, &why));
    }
    if has_status(st, res) {
        match dest.part {
            // Writes to the object leave its status alone…
            Part::Object => set_or_remove(&mut obj, "status", old.get("status").cloned()),
            // …and writes to /status change nothing else.
            Part::Status | Part::Scale => {
                let status = obj.remove("status");
                obj = old.clone();
                set_or_remove(&mut obj, "status", status);
            }
        }
    } else if dest.part != Part::Object {
        return Err(ApiError::not_found(res, name));
    }
    meta(&mut obj).insert("uid".into(), old_uid.into());
    let created = meta_str(&old, "creationTimestamp").to_string();
    meta(&mut obj).insert("creationTimestamp".into(), created.into());
    let generation = old
        .get("metadata")
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64);
    match generation {
        Some(g) if spec_part(&obj) != spec_part(&old) => {
            meta(&mut obj).insert("generation".into(), (g + 1).into());
        }
        Some(g) => {
            meta(&mut obj).insert("generation".into(), g.into());
        }
        None => {
            meta(&mut obj).remove("generation");
        }
    }
    if without_rv(&obj) == without_rv(&old) {
        meta(&mut old).insert("resourceVersion".into(), old_rv.clone().into());
        return Ok(ObjectRef {
            uid: meta_str(&old, "uid").to_string(),
            resource_version: old_rv,
            json: Value::Object(old).to_string(),
        });
    }
    if res.plural == "customresourcedefinitions" && res.api_version == "apiextensions.k8s.io/v1" {
        let served = super::crd::served(&obj)
            .map_err(|e| ApiError::invalid(&dest.def.kind, res, name, &e))?;
        super::crd::install(st, &served);
    }
    Ok(st.store.put(res, dest.namespace, name, obj))
}

fn delete(st: &mut State, dest: &Dest, name: &str, body: &[u8]) -> Result<ObjectRef, ApiError> {
    let res = &dest.def.resource;
    if dest.part == Part::Status {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "delete is not supported on status".into(),
        ));
    }
    let old = current(st, res, dest.namespace, name)?;
    let options: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("DeleteOptions are not JSON: {e}")))?
    };
    let pre = &options["preconditions"];
    for (key, field) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(want) = pre[key].as_str() {
            let have = meta_str(&old, key);
            if want != have {
                let why = format!("Precondition failed: {field} in precondition: {want}, {field} in object meta: {have}");
                return Err(ApiError::conflict(res, name, &why));
            }
        }
    }
    match (res.api_version.as_str(), res.plural.as_str()) {
        ("v1", "namespaces") => {
            let mut types = st.store.resources();
            types.sort();
            for r in types {
                for (ns, n) in st.store.keys(&r, Some(name)) {
                    st.store.delete(&r, &ns, &n);
                }
            }
        }
        ("apiextensions.k8s.io/v1", "customresourcedefinitions") => {
            if let Ok(served) = super::crd::served(&old) {
                for r in super::crd::uninstall(st, &served) {
                    for (ns, n) in st.store.keys(&r, None) {
                        st.store.delete(&r, &ns, &n);
                    }
                    st.store.forget(&r);
                }
            }
        }
        _ => {}
    }
    st.store
        .delete(res, dest.namespace, name)
        .ok_or_else(|| ApiError::not_found(res, name))
}

/// The owner's way in (tests, churn, the demo): the same rules as a client's request, without HTTP. Resource
/// types that are not served get a namespaced-or-not definition from `namespace`.
pub(crate) fn owner_write(
    st: &mut State,
    res: &Resource,
    namespace: &str,
    name: Option<&str>,
    part: Part,
    write: OwnerWrite,
) -> Result<ObjectRef, ApiError> {
    let def = st.def(res).cloned().unwrap_or_else(|| ResourceDef {
        kind: res.kind(),
        resource: res.clone(),
        namespaced: !namespace.is_empty(),
        short_names: Vec::new(),
    });
    let dest = Dest {
        def: &def,
        namespace,
        name,
        part,
    };
    match (write, name) {
        (OwnerWrite::Create(Value::Object(obj)), None) => create(st, &dest, obj),
        (OwnerWrite::MergePatch(doc), Some(name)) => {
            let current = current(st, res, namespace, name)?;
            let mut patched = Value::Object(current.clone());
            patch::merge(&mut patched, &doc);
            let Value::Object(patched) = patched else {
                return Err(ApiError::bad_request("the patched object is not an object"));
            };
            replace(st, &dest, name, patched, Some(current))
        }
        _ => Err(ApiError::bad_request(
            "create takes an object and no name; a patch takes a name",
        )),
    }
}

/// What the owner writes.
pub(crate) enum OwnerWrite {
    Create(Value),
    MergePatch(Value),
}

#[cfg(test)]
mod tests;
