//! Leases as client-go's leader election uses them, and faults for one client, over real HTTP.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{LeaseAction, LeaseClient, LeaseFault, Sim, SimOptions};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kwatchd/leases";

fn call(sim: &Sim, token: Option<&str>, method: &str, path: &str, body: &str) -> (u16, String) {
    crate::testing::request(sim, token, method, path, "application/json", body)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

/// A Lease as client-go writes it; every call renews at a later time, so every write changes the object.
fn lease(holder: &str, rv: Option<&str>) -> String {
    static RENEWALS: AtomicU32 = AtomicU32::new(0);
    let renew = format!(
        "2026-12-04T19:00:{:02}.000000Z",
        RENEWALS.fetch_add(1, Ordering::SeqCst) % 60
    );
    let mut v = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kwatchd", "namespace": "kwatchd"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": "2026-12-04T19:00:00.000000Z", "renewTime": renew,
                 "leaseTransitions": 0},
    });
    if let Some(rv) = rv {
        v["metadata"]["resourceVersion"] = json!(rv);
    }
    v.to_string()
}

#[test]
fn leases_get_create_update_conflict_and_watch_as_client_go_expects() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let one = format!("{LEASES}/kwatchd");
    let (code, body) = call(&sim, None, "GET", &one, "");
    let st = json_of(&body);
    assert_eq!((code, st["reason"].as_str()), (404, Some("NotFound")));
    assert_eq!(st["details"]["group"], "coordination.k8s.io");
    assert_eq!(
        st["message"],
        "leases.coordination.k8s.io \"kwatchd\" not found"
    );

    let (code, body) = call(&sim, None, "POST", LEASES, &lease("node-a", None));
    assert_eq!(code, 201, "{body}");
    let created = json_of(&body);
    assert!(created["metadata"].get("generation").is_none());
    assert!(created["spec"]["renewTime"]
        .as_str()
        .unwrap()
        .ends_with(".000000Z"));
    let rv1 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    // A second candidate creating it too loses: AlreadyExists.
    let (code, body) = call(&sim, None, "POST", LEASES, &lease("node-b", None));
    assert_eq!(
        (code, json_of(&body)["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );

    // The holder renews with the resourceVersion it read…
    let (code, body) = call(&sim, None, "PUT", &one, &lease("node-a", Some(&rv1)));
    assert_eq!(code, 200, "{body}");
    let rv2 = json_of(&body)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rv1, rv2);
    // …and a candidate with the older one loses the race.
    let (code, body) = call(&sim, None, "PUT", &one, &lease("node-b", Some(&rv1)));
    let st = json_of(&body);
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")));
    assert_eq!(
        json_of(&call(&sim, None, "GET", &one, "").1)["spec"]["holderIdentity"],
        "node-a"
    );

    let (code, body) = call(&sim, None, "GET", LEASES, "");
    assert_eq!(
        (code, json_of(&body)["kind"].as_str()),
        (200, Some("LeaseList"))
    );
    let (code, body) = call(
        &sim,
        None,
        "GET",
        &format!("{LEASES}?watch=1&resourceVersion=0&timeoutSeconds=1"),
        "",
    );
    assert_eq!(code, 200);
    assert!(
        body.contains("\"type\":\"ADDED\"") && body.contains("node-a"),
        "{body}"
    );
    let from_create = format!("{LEASES}?watch=1&resourceVersion={rv1}&timeoutSeconds=1");
    let (_, body) = call(&sim, None, "GET", &from_create, "");
    assert!(body.contains("\"type\":\"MODIFIED\""), "{body}");
}

#[test]
fn faults_hit_only_the_named_clients_lease_requests() {
    let sim = Sim::start(SimOptions {
        token: Some("token-a".into()),
        ..SimOptions::default()
    })
    .unwrap();
    sim.handle().accept_token("token-b");
    let one = format!("{LEASES}/kwatchd");
    let a = Some("token-a");
    let b = Some("token-b");
    assert_eq!(call(&sim, a, "POST", LEASES, &lease("node-a", None)).0, 201);

    // By token: every Lease request of b fails, b's other requests and a's Lease requests do not.
    sim.handle().add_lease_fault(LeaseFault::partition(
        LeaseClient::Token("token-b".into()),
        503,
    ));
    assert_eq!(call(&sim, b, "GET", &one, "").0, 503);
    assert_eq!(call(&sim, b, "GET", "/api/v1/pods", "").0, 200);
    let (code, body) = call(&sim, a, "GET", &one, "");
    assert_eq!(code, 200);
    let rv = json_of(&body)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sim.handle().lease_fault_hits(), 1);
    sim.handle().clear_lease_faults();
    assert_eq!(call(&sim, b, "GET", &one, "").0, 200);

    // By holder identity, once: node-a's renewal fails and changes nothing, the next goes through.
    sim.handle().add_lease_fault(LeaseFault {
        client: LeaseClient::Holder("node-a".into()),
        action: LeaseAction::Fail { code: 500 },
        times: Some(1),
    });
    let (code, body) = call(&sim, a, "PUT", &one, &lease("node-a", Some(&rv)));
    assert_eq!((code, json_of(&body)["code"].as_u64()), (500, Some(500)));
    assert_eq!(
        sim.resource_version(),
        rv,
        "a failed renewal writes nothing"
    );
    assert_eq!(
        call(&sim, a, "GET", &one, "").0,
        200,
        "reads name no holder"
    );
    assert_eq!(
        call(&sim, a, "PUT", &one, &lease("node-a", Some(&rv))).0,
        200
    );
    assert!(sim.handle().lease_faults().is_empty());

    // A delay holds the request, then serves it.
    sim.handle().add_lease_fault(LeaseFault {
        client: LeaseClient::Holder("node-a".into()),
        action: LeaseAction::Delay(Duration::from_millis(300)),
        times: None,
    });
    let rv = sim.resource_version();
    let started = Instant::now();
    assert_eq!(
        call(&sim, a, "PUT", &one, &lease("node-a", Some(&rv))).0,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(sim.handle().lease_faults().len(), 1, "until cleared");
    // Another holder is not delayed (and loses on the stale resourceVersion as usual).
    assert_eq!(
        call(&sim, b, "PUT", &one, &lease("node-b", Some(&rv))).0,
        409
    );
    assert_eq!(sim.handle().lease_fault_hits(), 3);
}
