//! Watches by kind, metadata-only watches, namespace lists and streaming
//! lists end to end: the real binary against the emulator over loopback.

mod common;

use common::*;
use kwatchd_sim::{Fault, FaultRule, Resource, ResourceDef, Sim, SimOptions};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A config with one cluster and one file sink (`out.jsonl`); each watch is
/// its name and its other keys.
fn config(dir: &Path, server: &str, watches: &[(&str, &str)]) -> String {
    let mut s = format!("[clusters.test]\nserver = \"{server}\"\n");
    for (name, keys) in watches {
        s.push_str(&format!(
            "\n[[watch]]\nname = \"{name}\"\ncluster = \"test\"\nsinks = [\"out\"]\n{keys}\n"
        ));
    }
    s.push_str(&format!(
        "\n[sinks.out]\ntype = \"file\"\npath = \"{}\"\n",
        dir.join("out.jsonl").display()
    ));
    s
}

fn start(sim: &Sim, watches: &[(&str, &str)]) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(dir.path(), &sim.url(), watches);
    Running::start_in(dir, &text)
}

fn out(d: &Running) -> Vec<Value> {
    records(&d.path("out.jsonl"))
}

/// Records of watch `name`.
fn of<'a>(recs: &'a [Value], name: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["watch"] == name).collect()
}

fn wait_records(d: &Running, what: &str, mut cond: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
    let ok = wait_until(WAIT, || cond(&out(d)));
    let recs = out(d);
    assert!(
        ok,
        "{what}: not reached; records:\n{}\nlog:\n{}",
        recs.iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        d.log_text()
    );
    recs
}

fn wait_log(d: &Running, fragment: &str) {
    assert!(
        wait_until(WAIT, || d.log_text().contains(fragment)),
        "log never said {fragment:?}:\n{}",
        d.log_text()
    );
}

fn deployment(sim: &Sim, ns: &str, name: &str) {
    sim.create(
        &Resource::deployments(),
        ns,
        name,
        &[],
        json!({"spec": {"replicas": 1}}),
    );
}

fn pod(sim: &Sim, ns: &str, name: &str) {
    sim.create(
        &Resource::pods(),
        ns,
        name,
        &[],
        json!({"spec": {"nodeName": "n1"}}),
    );
}

const NAMES: [(&str, &str); 4] = [
    ("by-kind", "kind = \"Deployment\""),
    ("by-plural", "kind = \"deployments\""),
    ("by-short", "kind = \"deploy\""),
    (
        "by-group",
        "kind = \"deployments.apps\"\napi_version = \"apps/v1\"",
    ),
];

/// Every way of naming deployments resolves, lists and streams.
fn names_resolve_and_stream(sim: &Sim) -> Running {
    deployment(sim, "web", "before");
    let d = start(sim, &NAMES);
    wait_records(&d, "initial lists", |r| r.len() == 4);
    assert!(wait_until(WAIT, || sim.open_watches() == 4));
    deployment(sim, "web", "after");
    let recs = wait_records(&d, "watch events", |r| r.len() == 8);
    for (name, _) in NAMES {
        let mine = of(&recs, name);
        let got: Vec<(&str, &str, &str)> = mine
            .iter()
            .map(|r| {
                (
                    r["origin"].as_str().unwrap_or(""),
                    r["object"]["kind"].as_str().unwrap_or(""),
                    r["object"]["metadata"]["name"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("list", "Deployment", "before"),
                ("watch", "Deployment", "after")
            ],
            "{name}"
        );
    }
    d
}

#[test]
fn kind_plural_short_and_group_qualified_names_resolve_with_aggregated_discovery() {
    let sim = Sim::start(SimOptions::default()).expect("emulator");
    let d = names_resolve_and_stream(&sim);
    let log = d.log_text();
    assert!(
        log.contains("\"deploy\" is deployments.apps (apps/v1, namespaced; aggregated discovery)"),
        "{log}"
    );
    let gets: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api") && !r.path.contains("deployments"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        gets.iter().all(|p| p == "/api" || p == "/apis"),
        "aggregated discovery needs no group-version lists: {gets:?}"
    );
}

#[test]
fn the_same_names_resolve_with_legacy_discovery() {
    let sim = Sim::start(SimOptions {
        aggregated_discovery: false,
        ..SimOptions::default()
    })
    .expect("emulator");
    let d = names_resolve_and_stream(&sim);
    assert!(
        d.log_text().contains("legacy discovery"),
        "{}",
        d.log_text()
    );
    assert!(
        sim.requests().iter().any(|r| r.path == "/apis/apps/v1"),
        "legacy discovery reads the group-version list"
    );
}

#[test]
fn an_ambiguous_name_is_an_error_listing_the_candidates_and_the_others_run() {
    let sim = Sim::start(SimOptions::default()).expect("emulator");
    pod(&sim, "default", "p");
    let d = start(
        &sim,
        &[("gadgets", "kind = \"Gadget\""), ("pods", "kind = \"Pod\"")],
    );
    let recs = wait_records(&d, "the pods watch", |r| !r.is_empty());
    assert!(recs.iter().all(|r| r["watch"] == "pods"));
    wait_log(&d, "gadgets.acme.io, gadgets.example.com");
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("is ambiguous"))
        .expect("the ambiguity is logged");
    assert!(line.contains("watch gadgets:"), "{line}");
    assert!(
        line.contains("ERROR") || line.contains("error") || line.starts_with("<3>"),
        "{line}"
    );
    // The qualified name or the api_version settles it.
    drop(d);
    let d = start(
        &sim,
        &[
            ("a", "kind = \"gadgets.acme.io\""),
            ("b", "kind = \"Gadget\"\napi_version = \"example.com/v1\""),
        ],
    );
    wait_log(&d, "\"gadgets.acme.io\" is gadgets.acme.io (acme.io/v1");
    wait_log(&d, "\"Gadget\" is gadgets.example.com (example.com/v1");
}

#[test]
fn a_missing_crd_is_retried_and_streams_once_installed() {
    let sim = Sim::start(SimOptions::default()).expect("emulator");
    pod(&sim, "default", "p");
    let d = start(
        &sim,
        &[("widgets", "kind = \"wd\""), ("pods", "kind = \"po\"")],
    );
    wait_log(&d, "the server serves no resource \"wd\"");
    wait_records(&d, "the pods watch runs meanwhile", |r| r.len() == 1);
    sim.install_resource(ResourceDef::widgets());
    sim.create(
        &Resource::new("example.com/v1", "widgets"),
        "default",
        "w1",
        &[],
        json!({"spec": {"size": 3}}),
    );
    let recs = wait_records(&d, "the widget", |r| r.len() == 2);
    let w = of(&recs, "widgets");
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["object"]["kind"], "Widget");
    assert_eq!(w[0]["object"]["metadata"]["name"], "w1");
    assert!(d.log_text().contains("\"wd\" is widgets.example.com"));
}

#[test]
fn a_namespace_on_a_cluster_scoped_kind_is_an_error_and_the_others_run() {
    let sim = Sim::start(SimOptions::default()).expect("emulator");
    pod(&sim, "default", "p");
    let d = start(
        &sim,
        &[
            ("nodes", "kind = \"Node\"\nnamespace = \"default\""),
            ("pods", "kind = \"pods\"\nnamespace = \"default\""),
        ],
    );
    wait_records(&d, "the pods watch", |r| r.len() == 1);
    wait_log(&d, "which is cluster-scoped");
    assert!(
        !sim.requests().iter().any(|r| r.path.contains("nodes")),
        "the failed watch sends nothing"
    );
    // The daemon kept running: it is still there to stop, and exits 0.
    let mut d = d;
    assert_eq!(d.child.try_wait().ok().flatten(), None, "{}", d.log_text());
    assert!(d.stop().success());
}

#[test]
fn metadata_only_records_carry_partial_object_metadata() {
    let sim = Sim::start(SimOptions::default()).expect("emulator");
    pod(&sim, "default", "before");
    let d = start(&sim, &[("meta", "kind = \"Pod\"\nmetadata_only = true")]);
    wait_records(&d, "the list", |r| r.len() == 1);
    assert!(wait_until(WAIT, || sim.open_watches() == 1));
    pod(&sim, "default", "after");
    let recs = wait_records(&d, "the event", |r| r.len() == 2);
    for r in &recs {
        let o = &r["object"];
        assert_eq!(o["kind"], "PartialObjectMetadata", "{r}");
        assert_eq!(o["apiVersion"], "meta.k8s.io/v1");
        assert!(o.get("spec").is_none(), "{r}");
        assert!(o["metadata"]["uid"].is_string());
    }
    assert_eq!(recs[1]["origin"], "watch");
    assert!(sim
        .requests()
        .iter()
        .all(|r| !r.path.contains("pods") || r.status == 200));
}

#[test]
fn metadata_only_falls_back_to_full_objects_on_406() {
    let sim = Sim::start(SimOptions {
        partial_metadata: false,
        ..SimOptions::default()
    })
    .expect("emulator");
    pod(&sim, "default", "before");
    let d = start(
        &sim,
        &[(
            "meta",
            "api_version = \"v1\"\nresource = \"pods\"\nmetadata_only = true\ninitial_list = \"list\"",
        )],
    );
    wait_records(&d, "the list", |r| r.len() == 1);
    assert!(wait_until(WAIT, || sim.open_watches() == 1));
    pod(&sim, "default", "after");
    let recs = wait_records(&d, "the event", |r| r.len() == 2);
    for r in &recs {
        assert_eq!(r["object"]["kind"], "Pod", "{r}");
        assert_eq!(r["object"]["spec"]["nodeName"], "n1");
    }
    let statuses: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("pods"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses.first(), Some(&406), "{statuses:?}");
    let warnings = d
        .log_text()
        .lines()
        .filter(|l| l.contains("cannot send PartialObjectMetadata"))
        .count();
    assert_eq!(warnings, 1, "{}", d.log_text());
}

/// Forces a relist: the next watch fails (503, retry in 1 s), meanwhile `change` runs and the history is forgotten.
fn force_relist(sim: &Sim, change: impl FnOnce()) {
    sim.add_fault(FaultRule {
        path_contains: "watch=true&resourceVersion=".into(),
        times: 1,
        fault: Fault::Status {
            code: 503,
            retry_after: Some(1),
        },
    });
    sim.end_watches();
    change();
    sim.compact();
}

fn streaming_requests(sim: &Sim) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.query.contains("sendInitialEvents=true"))
        .count()
}

fn pod_lists(sim: &Sim) -> usize {
    sim.requests()
        .iter()
        .filter(|r| !r.is_watch && r.path.ends_with("/pods"))
        .count()
}

#[test]
fn streaming_lists_deliver_the_state_as_list_records() {
    let sim = Sim::start(SimOptions::default()).expect("emulator");
    pod(&sim, "default", "a");
    pod(&sim, "default", "b");
    let d = start(&sim, &[("pods", "kind = \"Pod\"")]);
    let recs = wait_records(&d, "the initial events", |r| r.len() == 2);
    assert!(recs
        .iter()
        .all(|r| r["origin"] == "list" && r["type"] == "ADDED"));
    pod(&sim, "default", "c");
    let recs = wait_records(&d, "a change", |r| r.len() == 3);
    assert_eq!(recs[2]["origin"], "watch");
    assert_eq!(streaming_requests(&sim), 1);
    assert_eq!(pod_lists(&sim), 0, "no LIST with streaming lists");
    // A forgotten history: the relist is a streaming list too, and
    // changes meanwhile are reported with origin "relist".
    force_relist(&sim, || {
        sim.delete(&Resource::pods(), "default", "a");
        pod(&sim, "default", "d");
    });
    let recs = wait_records(&d, "the relist", |r| r.len() == 5);
    let mut relisted: Vec<(&str, &str, &str)> = recs[3..]
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap_or(""),
                r["origin"].as_str().unwrap_or(""),
                r["object"]["metadata"]["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    relisted.sort();
    assert_eq!(
        relisted,
        [("ADDED", "relist", "d"), ("DELETED", "relist", "a")]
    );
    assert_eq!(recs[4]["final_state_unknown"], true);
    assert_eq!(streaming_requests(&sim), 2);
    assert_eq!(pod_lists(&sim), 0);
}

#[test]
fn auto_falls_back_to_list_when_the_server_refuses_streaming_lists() {
    let sim = Sim::start(SimOptions {
        watch_list: false,
        ..SimOptions::default()
    })
    .expect("emulator");
    pod(&sim, "default", "a");
    let d = start(&sim, &[("pods", "kind = \"Pod\"")]);
    let recs = wait_records(&d, "the list", |r| r.len() == 1);
    assert_eq!(recs[0]["origin"], "list");
    assert!(wait_until(WAIT, || sim.open_watches() == 1));
    let refused: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|r| r.query.contains("sendInitialEvents=true"))
        .map(|r| r.status)
        .collect();
    assert_eq!(refused, [422]);
    assert_eq!(pod_lists(&sim), 1);
    wait_log(&d, "refused a streaming list");
    // A relist after an expired history goes straight to a LIST.
    force_relist(&sim, || pod(&sim, "default", "b"));
    assert!(
        wait_until(WAIT, || pod_lists(&sim) == 2),
        "{}",
        d.log_text()
    );
    assert_eq!(streaming_requests(&sim), 1, "the refusal is remembered");
}

#[test]
fn a_namespace_list_runs_one_watch_per_namespace() {
    let sim = Sim::start(SimOptions::default()).expect("emulator");
    for ns in ["a", "b", "c"] {
        pod(&sim, ns, &format!("before-{ns}"));
    }
    let d = start(
        &sim,
        &[("pods", "kind = \"Pod\"\nnamespace = [\"a\", \"b\"]")],
    );
    wait_records(&d, "both lists", |r| r.len() == 2);
    assert!(wait_until(WAIT, || sim.open_watches() == 2));
    for ns in ["c", "b", "a"] {
        pod(&sim, ns, &format!("after-{ns}"));
    }
    let recs = wait_records(&d, "both events", |r| r.len() == 4);
    std::thread::sleep(Duration::from_millis(300));
    let recs = if out(&d).len() > recs.len() {
        out(&d)
    } else {
        recs
    };
    let mut names: Vec<&str> = recs
        .iter()
        .map(|r| r["object"]["metadata"]["name"].as_str().unwrap_or(""))
        .collect();
    names.sort();
    assert_eq!(names, ["after-a", "after-b", "before-a", "before-b"]);
    assert!(recs.iter().all(|r| r["watch"] == "pods"));
    let log = d.log_text();
    assert!(
        log.contains("watch pods[a]") && log.contains("watch pods[b]"),
        "{log}"
    );
    assert!(sim
        .requests()
        .iter()
        .any(|r| r.path == "/api/v1/namespaces/a/pods"));
}

#[test]
fn exclude_namespaces_drops_their_events() {
    let sim = Sim::start(SimOptions::default()).expect("emulator");
    pod(&sim, "kube-system", "dns");
    pod(&sim, "default", "web");
    let d = start(
        &sim,
        &[(
            "pods",
            "kind = \"Pod\"\nexclude_namespaces = [\"kube-system\", \"other\"]",
        )],
    );
    wait_records(&d, "the list", |r| !r.is_empty());
    assert!(wait_until(WAIT, || sim.open_watches() == 1));
    pod(&sim, "kube-system", "dns-2");
    pod(&sim, "other", "x");
    pod(&sim, "default", "web-2");
    let recs = wait_records(&d, "the event", |r| r.len() >= 2);
    std::thread::sleep(Duration::from_millis(300));
    let recs = if out(&d).len() > recs.len() {
        out(&d)
    } else {
        recs
    };
    let names: Vec<&str> = recs
        .iter()
        .map(|r| r["object"]["metadata"]["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["web", "web-2"]);
}
