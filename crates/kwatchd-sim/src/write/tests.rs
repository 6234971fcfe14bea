//! Writes over real HTTP, as kubectl sends them, and what watches see of them.

use serde_json::{json, Value};

use crate::{EventType, Resource, Sim, SimOptions};

/// One request on its own connection; the status code and the JSON body.
fn call(sim: &Sim, method: &str, path: &str, ctype: &str, body: &str) -> (u16, Value) {
    let (code, body) = crate::testing::request(sim, None, method, path, ctype, body);
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn post(sim: &Sim, path: &str, obj: Value) -> (u16, Value) {
    call(sim, "POST", path, "application/json", &obj.to_string())
}

fn put(sim: &Sim, path: &str, obj: &Value) -> (u16, Value) {
    call(sim, "PUT", path, "application/json", &obj.to_string())
}

fn merge(sim: &Sim, path: &str, patch: Value) -> (u16, Value) {
    call(
        sim,
        "PATCH",
        path,
        "application/merge-patch+json",
        &patch.to_string(),
    )
}

fn get(sim: &Sim, path: &str) -> (u16, Value) {
    call(sim, "GET", path, "application/json", "")
}

fn rv(o: &Value) -> u64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

const CMS: &str = "/api/v1/namespaces/ns/configmaps";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/ns/deployments";

#[test]
fn create_sets_server_fields_and_refuses_duplicates_and_bad_bodies() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let (code, cm) = post(
        &sim,
        CMS,
        json!({"metadata": {"name": "a", "uid": "mine", "labels": {"k": "v"}}, "data": {"x": "1"}}),
    );
    assert_eq!(code, 201);
    assert_eq!(
        (cm["kind"].as_str(), cm["apiVersion"].as_str()),
        (Some("ConfigMap"), Some("v1"))
    );
    assert_eq!(cm["metadata"]["namespace"], "ns");
    assert_ne!(cm["metadata"]["uid"], "mine", "the server owns uids");
    assert!(cm["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(
        cm["metadata"].get("generation").is_none(),
        "core objects have no generation"
    );
    assert_eq!(get(&sim, &format!("{CMS}/a")).1, cm);

    let (code, st) = post(&sim, CMS, json!({"metadata": {"name": "a"}}));
    assert_eq!((code, st["reason"].as_str()), (409, Some("AlreadyExists")));
    assert_eq!(st["message"], "configmaps \"a\" already exists");
    assert_eq!(st["details"], json!({"name": "a", "kind": "configmaps"}));

    let (code, gen) = post(&sim, CMS, json!({"metadata": {"generateName": "g-"}}));
    assert_eq!(code, 201);
    let name = gen["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("g-") && name.len() == 7, "{name}");

    let refused = [
        (json!({"metadata": {}}), 422, "Invalid"),
        (
            json!({"metadata": {"name": "b", "namespace": "other"}}),
            400,
            "BadRequest",
        ),
        (
            json!({"kind": "Secret", "metadata": {"name": "b"}}),
            400,
            "BadRequest",
        ),
        (
            json!({"metadata": {"name": "b", "resourceVersion": "3"}}),
            500,
            "InternalError",
        ),
    ];
    for (body, code, reason) in refused {
        let (got, st) = post(&sim, CMS, body.clone());
        assert_eq!((got, st["reason"].as_str()), (code, Some(reason)), "{body}");
    }
    assert_eq!(
        call(&sim, "POST", CMS, "application/json", "{not json").0,
        400
    );
    // Scope: pods live in namespaces, namespaces do not.
    assert_eq!(
        post(&sim, "/api/v1/pods", json!({"metadata": {"name": "p"}})).0,
        404
    );
    assert_eq!(
        post(
            &sim,
            "/api/v1/namespaces/ns/namespaces",
            json!({"metadata": {"name": "x"}})
        )
        .0,
        404
    );
    let (code, ns) = post(
        &sim,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "team"}}),
    );
    assert_eq!(
        (code, ns["status"]["phase"].as_str()),
        (201, Some("Active"))
    );
    assert!(ns["metadata"].get("namespace").is_none());
}

#[test]
fn replace_checks_resource_version_and_keeps_server_fields() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let (_, cm) = post(
        &sim,
        CMS,
        json!({"metadata": {"name": "a"}, "data": {"x": "1"}}),
    );
    let mut changed = cm.clone();
    changed["data"]["x"] = json!("2");
    changed["metadata"]["creationTimestamp"] = json!("2000-01-01T00:00:00Z");
    let (code, now) = put(&sim, &format!("{CMS}/a"), &changed);
    assert_eq!(code, 200);
    assert_eq!(rv(&now), rv(&cm) + 1);
    assert_eq!(now["metadata"]["uid"], cm["metadata"]["uid"]);
    assert_eq!(
        now["metadata"]["creationTimestamp"],
        cm["metadata"]["creationTimestamp"]
    );
    // The same stale resourceVersion again: 409.
    let (code, st) = put(&sim, &format!("{CMS}/a"), &changed);
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")));
    assert_eq!(
        st["message"],
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Without a resourceVersion: unconditional for built-in types.
    let mut blind = now.clone();
    blind["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    blind["data"]["x"] = json!("3");
    assert_eq!(put(&sim, &format!("{CMS}/a"), &blind).0, 200);
    // Unchanged: no new resourceVersion, no event.
    let before = sim.history().len();
    let (_, same) = get(&sim, &format!("{CMS}/a"));
    let (code, after) = put(&sim, &format!("{CMS}/a"), &same);
    assert_eq!((code, rv(&after)), (200, rv(&same)));
    assert_eq!(sim.history().len(), before);
    // Name and uid preconditions, missing objects.
    let mut other = same.clone();
    other["metadata"]["name"] = json!("b");
    assert_eq!(put(&sim, &format!("{CMS}/a"), &other).0, 400);
    assert_eq!(put(&sim, &format!("{CMS}/b"), &other).0, 404);
    let mut wrong_uid = same.clone();
    wrong_uid["metadata"]["uid"] = json!("nope");
    assert_eq!(put(&sim, &format!("{CMS}/a"), &wrong_uid).0, 409);
}

#[test]
fn patches_merge_strategic_and_json() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let pod = json!({"metadata": {"name": "p", "labels": {"app": "web"}}, "spec": {"containers": [
        {"name": "c", "image": "nginx:1", "ports": [{"containerPort": 80}]}]}});
    post(&sim, "/api/v1/namespaces/ns/pods", pod);
    let path = "/api/v1/namespaces/ns/pods/p";
    let (code, p) = merge(
        &sim,
        path,
        json!({"metadata": {"labels": {"tier": "front", "app": null}}}),
    );
    assert_eq!(code, 200);
    assert_eq!(p["metadata"]["labels"], json!({"tier": "front"}));
    let smp = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}], "containers": [{"name": "c", "image": "nginx:2"}]}});
    let (code, p) = call(
        &sim,
        "PATCH",
        path,
        "application/strategic-merge-patch+json",
        &smp.to_string(),
    );
    assert_eq!(code, 200);
    assert_eq!(
        p["spec"]["containers"],
        json!([{"name": "c", "image": "nginx:2", "ports": [{"containerPort": 80}]}])
    );
    let ops = json!([{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]);
    let (code, p) = call(
        &sim,
        "PATCH",
        path,
        "application/json-patch+json",
        &ops.to_string(),
    );
    assert_eq!(
        (code, &p["metadata"]["annotations"]),
        (200, &json!({"a": "b"}))
    );
    let bad = json!([{"op": "remove", "path": "/nope"}]);
    assert_eq!(
        call(
            &sim,
            "PATCH",
            path,
            "application/json-patch+json",
            &bad.to_string()
        )
        .0,
        422
    );
    assert_eq!(
        call(&sim, "PATCH", path, "application/apply-patch+yaml", "{}").0,
        415
    );
    // A patch naming an old resourceVersion is a precondition.
    assert_eq!(
        merge(
            &sim,
            path,
            json!({"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}})
        )
        .0,
        409
    );
    assert_eq!(
        merge(&sim, "/api/v1/namespaces/ns/pods/zz", json!({})).0,
        404
    );
}

#[test]
fn generation_status_subresource_and_owner_writes() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let deploy =
        json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}, "status": {"replicas": 9}});
    let (code, d) = post(&sim, DEPLOYS, deploy);
    assert_eq!((code, d["metadata"]["generation"].as_i64()), (201, Some(1)));
    let path = format!("{DEPLOYS}/web");
    // Status through the object is ignored, metadata-only changes keep the generation.
    let (_, d) = merge(
        &sim,
        &path,
        json!({"status": {"replicas": 5}, "metadata": {"labels": {"a": "b"}}}),
    );
    assert_eq!(
        (d["metadata"]["generation"].as_i64(), &d["status"]),
        (Some(1), &json!({"replicas": 9}))
    );
    let (_, d) = merge(&sim, &path, json!({"spec": {"replicas": 3}}));
    assert_eq!(d["metadata"]["generation"].as_i64(), Some(2));
    // /status takes only the status.
    let (code, d) = merge(
        &sim,
        &format!("{path}/status"),
        json!({"status": {"readyReplicas": 3}, "spec": {"replicas": 7}}),
    );
    assert_eq!(code, 200);
    assert_eq!(
        (
            d["spec"]["replicas"].as_i64(),
            d["status"]["readyReplicas"].as_i64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(d["metadata"]["generation"].as_i64(), Some(2));
    assert_eq!(get(&sim, &format!("{path}/status")).1, d);
    // The owner's API follows the same rules.
    let h = sim.handle();
    let res = Resource::deployments();
    let r = h
        .patch_status(&res, "ns", "web", json!({"status": {"readyReplicas": 2}}))
        .unwrap();
    let v: Value = serde_json::from_str(&r.json).unwrap();
    assert_eq!(
        (
            v["metadata"]["generation"].as_i64(),
            v["status"]["readyReplicas"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let r = h
        .patch(&res, "ns", "web", json!({"spec": {"replicas": 4}}))
        .unwrap();
    assert!(r.json.contains("\"generation\":3"));
    assert!(h
        .create_object(&res, "ns", json!({"metadata": {"name": "web"}}))
        .unwrap_err()
        .contains("already exists"));
    // Configmaps have no status subresource.
    post(&sim, CMS, json!({"metadata": {"name": "a"}}));
    assert_eq!(merge(&sim, &format!("{CMS}/a/status"), json!({})).0, 404);
}

#[test]
fn delete_preconditions_and_namespace_cascade_seen_by_watches() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    post(
        &sim,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "ns"}}),
    );
    let (_, cm) = post(&sim, CMS, json!({"metadata": {"name": "a"}}));
    post(
        &sim,
        "/api/v1/namespaces/ns/secrets",
        json!({"metadata": {"name": "s"}, "data": {"k": "dg=="}}),
    );
    let path = format!("{CMS}/a");
    let pre = json!({"preconditions": {"uid": "other"}}).to_string();
    let (code, st) = call(&sim, "DELETE", &path, "application/json", &pre);
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")));
    let pre = json!({"propagationPolicy": "Background", "preconditions": {"resourceVersion": cm["metadata"]["resourceVersion"]}});
    let (code, gone) = call(&sim, "DELETE", &path, "application/json", &pre.to_string());
    assert_eq!((code, &gone["metadata"]["name"]), (200, &json!("a")));
    assert_eq!(call(&sim, "DELETE", &path, "application/json", "").0, 404);
    post(&sim, CMS, json!({"metadata": {"name": "b"}}));
    assert_eq!(
        call(
            &sim,
            "DELETE",
            "/api/v1/namespaces/ns",
            "application/json",
            ""
        )
        .0,
        200
    );
    let kinds: Vec<(EventType, String)> = sim
        .history()
        .iter()
        .map(|e| (e.event_type, format!("{}/{}", e.resource.plural, e.name)))
        .collect();
    let deleted: Vec<&str> = kinds
        .iter()
        .filter(|(t, _)| *t == EventType::Deleted)
        .map(|(_, n)| n.as_str())
        .collect();
    assert_eq!(
        deleted,
        ["configmaps/a", "configmaps/b", "secrets/s", "namespaces/ns"]
    );
    assert_eq!(get(&sim, "/api/v1/namespaces/ns/secrets/s").0, 404);
}

#[test]
fn crds_serve_their_resources_at_once() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.example.org"},
        "spec": {"group": "example.org", "scope": "Namespaced",
                 "names": {"plural": "gizmos", "kind": "Gizmo", "shortNames": ["gz"]},
                 "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}}]},
    });
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let (code, c) = post(&sim, crds, crd.clone());
    assert_eq!(code, 201, "{c}");
    let established = c["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established);
    let (code, list) = get(&sim, "/apis/example.org/v1");
    assert_eq!(code, 200);
    assert_eq!(list["resources"][0]["kind"], "Gizmo");
    assert!(list["resources"][0]["verbs"]
        .as_array()
        .unwrap()
        .contains(&json!("patch")));
    let gizmos = "/apis/example.org/v1/namespaces/ns/gizmos";
    let (code, g) = post(
        &sim,
        gizmos,
        json!({"metadata": {"name": "g"}, "spec": {"size": 1}}),
    );
    assert_eq!(
        (
            code,
            g["kind"].as_str(),
            g["metadata"]["generation"].as_i64()
        ),
        (201, Some("Gizmo"), Some(1))
    );
    assert_eq!(get(&sim, gizmos).1["kind"], "GizmoList");
    // Custom resources need a resourceVersion on PUT.
    let mut blind = g.clone();
    blind["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    assert_eq!(put(&sim, &format!("{gizmos}/g"), &blind).0, 422);
    assert_eq!(
        merge(
            &sim,
            &format!("{gizmos}/g/status"),
            json!({"status": {"ok": true}})
        )
        .0,
        200
    );
    // A CRD named otherwise than PLURAL.GROUP is invalid.
    let mut misnamed = crd.clone();
    misnamed["metadata"]["name"] = json!("x.example.org");
    assert_eq!(post(&sim, crds, misnamed).0, 422);
    // Deleting the CRD deletes its objects and stops serving it.
    assert_eq!(
        call(
            &sim,
            "DELETE",
            &format!("{crds}/gizmos.example.org"),
            "application/json",
            ""
        )
        .0,
        200
    );
    assert_eq!(get(&sim, "/apis/example.org/v1").0, 404);
    assert_eq!(
        post(&sim, gizmos, json!({"metadata": {"name": "h"}})).0,
        404
    );
    let last = sim.history();
    assert!(last
        .iter()
        .any(|e| e.event_type == EventType::Deleted && e.name == "g"));
}

#[test]
fn openapi_v3_names_each_group_version_and_its_patch_operations() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let (code, root) = get(&sim, "/openapi/v3");
    assert_eq!(code, 200);
    let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
    let (code, doc) = get(&sim, url);
    assert_eq!(code, 200);
    let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        op["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    assert!(op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    assert!(get(&sim, "/openapi/v3/api/v1").1["paths"]["/api/v1/namespaces/{name}"].is_object());
    assert_eq!(get(&sim, "/openapi/v3/apis/none.io/v1").0, 404);
}

#[test]
fn scale_subresource_reads_and_writes_replicas_only() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let deploy = crate::deployment("web", 2);
    assert_eq!(post(&sim, DEPLOYS, deploy).0, 201);
    let path = format!("{DEPLOYS}/web/scale");
    let (code, scale) = get(&sim, &path);
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");
    let (code, scaled) = merge(&sim, &path, json!({"spec": {"replicas": 5}}));
    assert_eq!((code, &scaled["spec"]["replicas"]), (200, &json!(5)));
    let (_, d) = get(&sim, &format!("{DEPLOYS}/web"));
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["generation"], 2);
    // A PUT of a stale Scale conflicts; a negative count is invalid.
    assert_eq!(put(&sim, &path, &scale).0, 409);
    assert_eq!(merge(&sim, &path, json!({"spec": {"replicas": -1}})).0, 422);
    // Config maps have no scale.
    post(&sim, CMS, json!({"metadata": {"name": "a"}}));
    assert_eq!(get(&sim, &format!("{CMS}/a/scale")).0, 404);
    assert_eq!(merge(&sim, &format!("{CMS}/a/scale"), json!({})).0, 404);
}

#[test]
fn refuses_bodies_it_cannot_read_with_415() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let proto = "k8s\u{0}\n\u{2}v1";
    let (code, st) = call(
        &sim,
        "POST",
        CMS,
        "application/vnd.kubernetes.protobuf",
        proto,
    );
    assert_eq!(
        (code, st["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    // kubectl before 1.27 reads OpenAPI v2 as protobuf before it validates or edits: an empty document.
    let (code, _) = crate::testing::request(&sim, None, "GET", "/openapi/v2", "", "");
    assert_eq!(code, 200);
}
