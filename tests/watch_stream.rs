//! The watch engine end to end: the real binary against the emulator over
//! loopback TCP, writing a real file.

mod common;

use common::*;
use kwatchd_sim::{ExpiredMode, Fault, FaultRule, Resource, Sim, SimOptions, StreamShape};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn start_sim() -> Sim {
    Sim::start(SimOptions::default()).expect("start emulator")
}

fn one_pod_watch(sim: &Sim, on_start: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut w = WatchDef::pods("pods", "out");
    w.on_start = on_start;
    // These tests pin the LIST + WATCH path (pages, resumes without
    // relists); streaming lists are tested in tests/discovery.rs.
    w.extra = "initial_list = \"list\"";
    let text = config(dir.path(), "", &sim.url(), &[w]);
    Running::start_in(dir, &text)
}

fn streaming(sim: &Sim, n: usize) -> bool {
    wait_until(WAIT, || sim.open_watches() >= n)
}

#[test]
fn a_single_event_is_written_while_the_server_stays_silent() {
    let sim = start_sim();
    let d = one_pod_watch(&sim, "skip");
    assert!(
        streaming(&sim, 1),
        "no watch opened; log:\n{}",
        d.log_text()
    );
    let created = sim.create(
        &Resource::pods(),
        "default",
        "seed",
        &[],
        json!({"spec": {"n": 1}}),
    );
    let out = d.path("out.jsonl");
    assert!(
        wait_until(WAIT, || count_records(&out) == 1),
        "the event did not reach the file while the stream stayed open"
    );
    let r = &records(&out)[0];
    assert_eq!(r["type"], "ADDED");
    assert_eq!(r["origin"], "watch");
    assert_eq!(r["watch"], "pods");
    assert_eq!(r["cluster"], "test");
    assert_eq!(r["object"]["metadata"]["uid"], created.uid.as_str());
    // The object is the server's bytes, spliced in unchanged.
    let line = std::fs::read_to_string(&out).unwrap();
    assert!(
        line.contains(&format!("\"object\":{}}}\n", created.json)),
        "{line}"
    );
}

#[test]
fn initial_list_then_changes_in_order_with_origins() {
    let sim = start_sim();
    let pods = Resource::pods();
    for i in 0..1200 {
        sim.create(&pods, "ns", &format!("p{i}"), &[], json!({}));
    }
    let d = one_pod_watch(&sim, "added");
    let out = d.path("out.jsonl");
    assert!(
        wait_until(WAIT, || count_records(&out) == 1200),
        "list not delivered: {}",
        count_records(&out)
    );
    assert!(streaming(&sim, 1));
    sim.update(&pods, "ns", "p5", json!({"spec": {"v": 2}}), None);
    sim.delete(&pods, "ns", "p6");
    assert!(wait_until(WAIT, || count_records(&out) == 1202));
    let recs = records(&out);
    assert!(recs[..1200]
        .iter()
        .all(|r| r["origin"] == "list" && r["type"] == "ADDED"));
    let s = summary(&recs[1200..]);
    assert_eq!((s[0].0.as_str(), s[0].1.as_str()), ("MODIFIED", "p5"));
    assert_eq!((s[1].0.as_str(), s[1].1.as_str()), ("DELETED", "p6"));
    // 1200 objects at limit=500 need three pages.
    let lists = sim
        .requests()
        .iter()
        .filter(|r| !r.is_watch && r.path.ends_with("/pods"))
        .count();
    assert_eq!(lists, 3);
}

/// The objects (as written) for a run with the given stream shape.
fn objects_with_shape(shape: StreamShape) -> Vec<String> {
    let sim = start_sim();
    sim.set_stream_shape(shape);
    let d = one_pod_watch(&sim, "skip");
    assert!(streaming(&sim, 1), "log:\n{}", d.log_text());
    let pods = Resource::pods();
    for i in 0..20 {
        let extra =
            json!({"spec": {"i": i, "pad": "x".repeat(i * 37), "u": "ünïcödé \"q\" \\ \n"}});
        sim.create(&pods, "default", &format!("p{i}"), &[("app", "web")], extra);
    }
    for i in 0..20 {
        sim.delete(&pods, "default", &format!("p{i}"));
    }
    let out = d.path("out.jsonl");
    assert!(
        wait_until(WAIT, || count_records(&out) == 40),
        "got {}; log:\n{}",
        count_records(&out),
        d.log_text()
    );
    records(&out)
        .iter()
        .map(|r| {
            let mut o = r["object"].clone();
            // uids and resourceVersions differ between emulator runs.
            o["metadata"]["uid"] = json!("");
            o["metadata"]["resourceVersion"] = json!("");
            o["metadata"]["creationTimestamp"] = json!("");
            o.to_string()
        })
        .collect()
}

#[test]
fn rechunked_streams_give_identical_records() {
    let baseline = objects_with_shape(StreamShape::default());
    let shapes = [
        StreamShape {
            piece_size: Some(1),
            ..StreamShape::default()
        },
        StreamShape {
            events_per_chunk: 3,
            ..StreamShape::default()
        },
        StreamShape {
            chunk_extensions: true,
            piece_size: Some(7),
            ..StreamShape::default()
        },
    ];
    for shape in shapes {
        let label = format!("{shape:?}");
        assert_eq!(objects_with_shape(shape), baseline, "{label}");
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]
        #[test]
        fn random_piece_sizes_give_identical_records(piece in 1usize..300, per_chunk in 1usize..5) {
            let baseline = objects_with_shape(StreamShape::default());
            let got = objects_with_shape(StreamShape { piece_size: Some(piece), events_per_chunk: per_chunk, chunk_extensions: piece % 2 == 0 });
            prop_assert_eq!(got, baseline);
        }
    }
}

/// (uid, resourceVersion) of every mutation the emulator made to pods.
fn history_keys(sim: &Sim) -> Vec<(String, String)> {
    sim.history()
        .iter()
        .filter(|h| h.resource.plural == "pods")
        .map(|h| (h.uid.clone(), h.resource_version.clone()))
        .collect()
}

fn record_keys(recs: &[serde_json::Value]) -> Vec<(String, String)> {
    recs.iter()
        .map(|r| {
            let m = &r["object"]["metadata"];
            (
                m["uid"].as_str().unwrap_or("").to_owned(),
                m["resourceVersion"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn server_timeouts_and_cuts_mid_chunk_resume_without_gap_or_duplicate() {
    let sim = start_sim();
    let d = one_pod_watch(&sim, "skip");
    let out = d.path("out.jsonl");
    assert!(streaming(&sim, 1));
    let pods = Resource::pods();
    let mut n = 0;
    for round in 0..6 {
        if round % 2 == 0 {
            sim.end_watches();
        } else {
            // Cut the next stream in the middle of its second event's chunk.
            sim.add_fault(FaultRule {
                path_contains: "/pods".into(),
                times: 1,
                fault: Fault::CutAfterBytes(700),
            });
            sim.end_watches();
        }
        for _ in 0..5 {
            sim.create(
                &pods,
                "default",
                &format!("p{n}"),
                &[],
                json!({"spec": {"pad": "y".repeat(300)}}),
            );
            n += 1;
        }
        assert!(
            wait_until(WAIT, || count_records(&out) == n),
            "round {round}: {} of {n}",
            count_records(&out)
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        record_keys(&records(&out)),
        history_keys(&sim),
        "gap or duplicate"
    );
    let watches = sim.requests().iter().filter(|r| r.is_watch).count();
    assert!(
        watches >= 7,
        "each end must lead to a new watch (saw {watches})"
    );
    assert!(
        sim.requests().iter().filter(|r| !r.is_watch).count() == 1,
        "a resume must not relist"
    );
}

#[test]
fn expired_history_relists_and_reports_what_changed_while_away() {
    for mode in [ExpiredMode::ErrorEvent, ExpiredMode::HttpStatus] {
        let sim = Sim::start(SimOptions {
            expired: mode,
            ..SimOptions::default()
        })
        .unwrap();
        let pods = Resource::pods();
        for name in ["keep", "change", "remove"] {
            sim.create(&pods, "default", name, &[], json!({}));
        }
        let d = one_pod_watch(&sim, "added");
        let out = d.path("out.jsonl");
        assert!(wait_until(WAIT, || count_records(&out) == 3));
        assert!(streaming(&sim, 1));
        // Keep the daemon away: its next watches fail, meanwhile things change
        // and the history is compacted.
        sim.add_fault(FaultRule {
            path_contains: "watch".into(),
            times: 2,
            fault: Fault::Status {
                code: 503,
                retry_after: Some(1),
            },
        });
        sim.end_watches();
        sim.update(&pods, "default", "change", json!({"spec": {"v": 2}}), None);
        sim.delete(&pods, "default", "remove");
        sim.create(&pods, "default", "new", &[], json!({}));
        sim.compact();
        assert!(
            wait_until(WAIT, || count_records(&out) == 6),
            "{mode:?}: {}; log:\n{}",
            count_records(&out),
            d.log_text()
        );
        let recs = records(&out);
        let mut relist: Vec<(String, String, bool)> = recs[3..]
            .iter()
            .map(|r| {
                assert_eq!(r["origin"], "relist", "{r}");
                (
                    r["type"].as_str().unwrap().to_owned(),
                    r["object"]["metadata"]["name"].as_str().unwrap().to_owned(),
                    r["final_state_unknown"] == true,
                )
            })
            .collect();
        relist.sort();
        assert_eq!(
            relist,
            vec![
                ("ADDED".into(), "new".into(), false),
                ("DELETED".into(), "remove".into(), true),
                ("MODIFIED".into(), "change".into(), false),
            ],
            "{mode:?}"
        );
        // And the watch carries on after the relist.
        assert!(streaming(&sim, 1));
        sim.create(&pods, "default", "after", &[], json!({}));
        assert!(wait_until(WAIT, || count_records(&out) == 7));
    }
}

#[test]
fn bookmarks_advance_the_resume_point() {
    let sim = start_sim();
    let d = one_pod_watch(&sim, "skip");
    assert!(streaming(&sim, 1));
    // Changes to another resource move the global resourceVersion; only a
    // bookmark tells the pod watch about it.
    let cms = Resource::new("v1", "configmaps");
    for i in 0..3 {
        sim.create(&cms, "default", &format!("c{i}"), &[], json!({}));
    }
    let rv = sim.resource_version();
    sim.bookmark_now();
    std::thread::sleep(Duration::from_millis(300));
    sim.end_watches();
    assert!(
        wait_until(WAIT, || sim.requests().iter().any(
            |r| r.is_watch && r.query.contains(&format!("resourceVersion={rv}&"))
        )),
        "the re-watch did not start from the bookmark's resourceVersion {rv}; requests: {:?}",
        sim.requests()
            .iter()
            .map(|r| r.query.clone())
            .collect::<Vec<_>>()
    );
    drop(d);
}

#[test]
fn bad_lines_and_broken_chunking_recover_and_spare_the_other_watch() {
    let sim = start_sim();
    let dir = tempfile::tempdir().unwrap();
    let mut victim = WatchDef::pods("victim", "victim");
    victim.namespace = Some("a");
    victim.on_start = "skip";
    let mut bystander = WatchDef::pods("bystander", "bystander");
    bystander.namespace = Some("b");
    bystander.on_start = "skip";
    let text = config(dir.path(), "", &sim.url(), &[victim, bystander])
        .replace("[daemon]\n", "[daemon]\nmax_line_bytes = 65536\n");
    let d = Running::start_in(dir, &text);
    assert!(streaming(&sim, 2), "log:\n{}", d.log_text());
    let pods = Resource::pods();
    let faults = [
        Fault::InvalidJsonLine,
        Fault::UnknownEventType,
        Fault::OversizedLine(200_000),
        Fault::GarbageChunkSize,
    ];
    let (va, vb) = (d.path("victim.jsonl"), d.path("bystander.jsonl"));
    for (i, fault) in faults.into_iter().enumerate() {
        let label = format!("{fault:?}");
        sim.add_fault(FaultRule {
            path_contains: "namespaces/a/".into(),
            times: 1,
            fault,
        });
        // The fault applies to the next watch request of namespace a.
        sim.end_watches();
        assert!(streaming(&sim, 2), "{label}");
        sim.create(&pods, "a", &format!("a{i}"), &[], json!({}));
        sim.create(&pods, "b", &format!("b{i}"), &[], json!({}));
        assert!(
            wait_until(WAIT, || count_records(&va) == i + 1
                && count_records(&vb) == i + 1),
            "{label}: victim {} bystander {}; log:\n{}",
            count_records(&va),
            count_records(&vb),
            d.log_text()
        );
    }
    let log = d.log_text();
    assert!(log.contains("invalid JSON"), "{log}");
    assert!(log.contains("unknown watch event type"), "{log}");
    assert!(log.contains("65536"), "the line limit is named: {log}");
    assert!(log.to_lowercase().contains("chunk"), "{log}");
}

#[test]
fn auth_failure_is_explained_and_retried_until_the_token_works() {
    let sim = Sim::start(SimOptions {
        token: Some("right-token".into()),
        ..SimOptions::default()
    })
    .unwrap();
    sim.create(&Resource::pods(), "default", "p", &[], json!({}));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "wrong-token\n").unwrap();
    let text = config(
        dir.path(),
        &format!("token_file = \"{}\"", token.display()),
        &sim.url(),
        &[WatchDef::pods("pods", "out")],
    );
    let d = Running::start_in(dir, &text);
    assert!(
        wait_until(WAIT, || d.log_text().contains("401")),
        "log:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains("token_file"),
        "the hint names the key to check: {log}"
    );
    assert!(!log.contains("wrong-token"), "the token must not be logged");
    std::fs::write(&token, "right-token\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(40), || count_records(
            &d.path("out.jsonl")
        ) == 1),
        "log:\n{}",
        d.log_text()
    );
    assert!(!d.log_text().contains("right-token"));
}

#[test]
fn tls_with_the_generated_ca_works_and_a_wrong_ca_is_refused_clearly() {
    let sim = Sim::start(SimOptions {
        tls: true,
        ..SimOptions::default()
    })
    .unwrap();
    sim.create(&Resource::pods(), "default", "p", &[], json!({}));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, sim.ca_pem().expect("CA")).unwrap();
    let text = config(
        dir.path(),
        &format!("certificate_authority = \"{}\"", ca.display()),
        &sim.url(),
        &[WatchDef::pods("pods", "out")],
    );
    let d = Running::start_in(dir, &text);
    assert!(
        wait_until(WAIT, || count_records(&d.path("out.jsonl")) == 1),
        "log:\n{}",
        d.log_text()
    );
    assert!(streaming(&sim, 1));
    sim.create(&Resource::pods(), "default", "q", &[], json!({}));
    assert!(wait_until(WAIT, || count_records(&d.path("out.jsonl")) == 2));
    drop(d);

    // Another emulator's CA did not sign this server's certificate.
    let other = Sim::start(SimOptions {
        tls: true,
        ..SimOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("other-ca.crt");
    std::fs::write(&ca, other.ca_pem().unwrap()).unwrap();
    let text = config(
        dir.path(),
        &format!("certificate_authority = \"{}\"", ca.display()),
        &sim.url(),
        &[WatchDef::pods("pods", "out")],
    );
    let d = Running::start_in(dir, &text);
    assert!(
        wait_until(WAIT, || d.log_text().contains("certificate")),
        "log:\n{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("certificate_authority"),
        "the hint names the key: {}",
        d.log_text()
    );
    assert_eq!(count_records(&d.path("out.jsonl")), 0);
}
