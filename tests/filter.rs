//! Changes that matter, end to end: the real binary against the emulator
//! with real hooks, a loopback webhook receiver, checkpoints across
//! restarts, and Secrets that must never leave kwatchd unredacted.

mod common;

use common::receiver::Receiver;
use common::*;
use kwatchd_sim::{Resource, Sim, SimOptions};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn deployment(image: &str, ready: u32) -> Value {
    json!({
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}},
        "status": {"readyReplicas": ready, "observedGeneration": ready}
    })
}

fn header(sim: &Sim) -> String {
    format!(
        "[daemon]\nlog_level = \"debug\"\n\n[clusters.test]\nserver = \"{}\"\n",
        sim.url()
    )
}

const DEPLOYMENTS: &str = r#"
[[watch]]
name = "deploys"
cluster = "test"
api_version = "apps/v1"
resource = "deployments"
select = '.metadata.labels.app == "web"'
changes = '[.spec.template.spec.containers[].image]'
"#;

fn lines_of(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn status_only_updates_run_no_hook_and_an_image_change_runs_it_once() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs.jsonl");
    let recorded = dir.path().join("recorded.jsonl");
    let text = format!(
        r#"{}{DEPLOYMENTS}sinks = ["hook", "slack"]

[sinks.hook]
type = "exec"
command = ["/bin/sh", "-c", "cat >> '{}'"]

[sinks.slack]
type = "webhook"
url = "{}"
transform = '{{text: "\(.type) \(.object.metadata.namespace)/\(.object.metadata.name): \(.previous_projection) -> \(.projection)"}}'

[[watch]]
name = "recorder"
cluster = "test"
api_version = "apps/v1"
resource = "deployments"
sinks = ["recorded"]

[sinks.recorded]
type = "file"
path = "{}"
"#,
        header(&sim),
        runs.display(),
        receiver.url("/slack"),
        recorded.display()
    );
    let res = Resource::deployments();
    sim.create(
        &res,
        "shop",
        "web",
        &[("app", "web")],
        deployment("nginx:1", 0),
    );
    sim.create(&res, "shop", "db", &[("app", "db")], deployment("pg:1", 0));
    let d = Running::start_in(dir, &text);
    assert!(
        wait_until(WAIT, || lines_of(&runs).len() == 1),
        "log:\n{}",
        d.log_text()
    );
    for ready in 1..=200 {
        sim.update(&res, "shop", "web", deployment("nginx:1", ready), None);
    }
    // The other app's changes are not selected at all.
    sim.update(&res, "shop", "db", deployment("pg:2", 0), None);
    sim.update(&res, "shop", "web", deployment("nginx:2", 200), None);
    assert!(
        wait_until(WAIT, || lines_of(&runs).len() >= 2
            && receiver.received().len() >= 2),
        "log:\n{}",
        d.log_text()
    );
    // Per-object order: every status update was decided before the image
    // change, so nothing else can still come.
    std::thread::sleep(Duration::from_millis(300));
    let runs = lines_of(&runs);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs[0]["type"], "ADDED");
    assert_eq!(runs[0]["projection"], json!(["nginx:1"]));
    assert_eq!(runs[0]["previous_projection"], Value::Null);
    assert_eq!(runs[1]["type"], "MODIFIED");
    assert_eq!(runs[1]["projection"], json!(["nginx:2"]));
    assert_eq!(runs[1]["previous_projection"], json!(["nginx:1"]));
    assert_eq!(runs[1]["object"]["status"]["readyReplicas"], 200);

    let bodies = receiver.json_bodies();
    assert_eq!(
        bodies,
        [
            json!({"text": "ADDED shop/web: null -> [\"nginx:1\"]"}),
            json!({"text": "MODIFIED shop/web: [\"nginx:1\"] -> [\"nginx:2\"]"}),
        ]
    );

    // Every event, unfiltered, was recorded by the second watch: replayed
    // through the first one's filters, dry, it gives the same deliveries
    // and runs nothing.
    assert!(wait_until(WAIT, || count_records(&recorded) == 204));
    let config = d.config.clone();
    let out = std::process::Command::new(BIN)
        .args(["replay", "--config"])
        .arg(&config)
        .args(["--watch", "deploys", "--dry-run"])
        .arg(&recorded)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(lines[0]["sink"], "hook");
    assert_eq!(lines[0]["delivery"]["projection"], json!(["nginx:1"]));
    assert_eq!(lines[1]["sink"], "slack");
    assert_eq!(lines[1]["delivery"], bodies[0]);
    assert_eq!(
        lines[2]["delivery"]["previous_projection"],
        json!(["nginx:1"])
    );
    assert_eq!(lines[3]["delivery"], bodies[1]);
    assert!(
        stderr.contains("204 records read, 2 skipped as unselected, 200 as unchanged; hook: 2 deliveries; slack: 2 deliveries"),
        "{stderr}"
    );
    assert_eq!(lines_of(&d.path("runs.jsonl")).len(), 2);
    assert_eq!(receiver.received().len(), 2);
    // Only one sink, and names that do not exist are a config problem.
    let only = std::process::Command::new(BIN)
        .args(["replay", "-c"])
        .arg(&config)
        .args(["--watch", "deploys", "--sink", "slack", "--dry-run", "-"])
        .stdin(fs::File::open(&recorded).unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&only.stdout).lines().count(), 2);
    let bad = std::process::Command::new(BIN)
        .args(["replay", "-c"])
        .arg(&config)
        .args(["--watch", "nope", "--dry-run"])
        .arg(&recorded)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(78));
}

#[test]
fn what_was_reported_survives_restarts() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let text = format!(
        "{}{DEPLOYMENTS}sinks = [\"out\"]\n\n[sinks.out]\ntype = \"file\"\npath = \"{}\"\n",
        header(&sim),
        out.display()
    );
    let res = Resource::deployments();
    sim.create(
        &res,
        "shop",
        "web",
        &[("app", "web")],
        deployment("nginx:1", 0),
    );
    let state = dir.path().join("state");
    let text = with_state_dir(&text, &state);
    // The state store holds web's entry with the filter's memory (reported,
    // its projection) and a position.
    let saved = |projection: &str| {
        wait_until(WAIT, || {
            let Ok(all) = kwatchd::state::db::saved(&state) else {
                return false;
            };
            all.get("deploys").is_some_and(|w| {
                w.row.resource_version.is_some()
                    && w.objects.iter().any(|(_, e)| {
                        e.name() == "web"
                            && e.memory().is_some_and(|m| {
                                m.reported && m.projection == Some(projection.as_bytes())
                            })
                    })
            })
        })
    };
    // Each run has its own directory for its log; the state and the sink
    // file outlive it.
    let run = || Running::start(&text);

    // First run: the object is reported; its projection reaches the
    // state store; then kill -9.
    let mut d = run();
    assert!(
        wait_until(WAIT, || count_records(&out) == 1),
        "log:\n{}",
        d.log_text()
    );
    assert!(saved(r#"["nginx:1"]"#), "log:\n{}", d.log_text());
    let _ = d.child.kill();
    let _ = d.child.wait();

    // Down: a status-only change. A marker object shows when the second
    // run has caught up.
    sim.update(&res, "shop", "web", deployment("nginx:1", 3), None);
    sim.create(
        &res,
        "shop",
        "marker-1",
        &[("app", "web")],
        deployment("m", 0),
    );
    let mut d = run();
    assert!(
        wait_until(WAIT, || count_records(&out) == 2),
        "log:\n{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_millis(300));
    let names: Vec<String> = records(&out)
        .iter()
        .map(|r| r["object"]["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["web", "marker-1"], "log:\n{}", d.log_text());
    assert_eq!(d.stop().code(), Some(0));

    // Down again: the image changes. One record, with the right previous
    // projection.
    sim.update(&res, "shop", "web", deployment("nginx:2", 3), None);
    let d = run();
    assert!(
        wait_until(WAIT, || count_records(&out) == 3),
        "log:\n{}",
        d.log_text()
    );
    let last = records(&out).pop().unwrap();
    assert_eq!(last["type"], "MODIFIED");
    assert_eq!(last["object"]["metadata"]["name"], "web");
    assert_eq!(last["projection"], json!(["nginx:2"]));
    assert_eq!(last["previous_projection"], json!(["nginx:1"]));
}

#[test]
fn secret_values_reach_no_sink_dead_letter_or_log() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let text = format!(
        r#"{}
[[watch]]
name = "secrets"
cluster = "test"
api_version = "v1"
resource = "secrets"
changes = ".data"
sinks = ["out", "failing"]

[sinks.out]
type = "file"
path = "{}"

[sinks.failing]
type = "exec"
command = ["/bin/sh", "-c", "cat >&2; exit 3"]
retries = 0
on_failure = "dead_letter"
dead_letter = "{}"
"#,
        header(&sim),
        out.display(),
        dead.display()
    );
    let res = Resource::new("v1", "secrets");
    let value = "aHVudGVyMi1zdXBlci1zZWNyZXQ=";
    sim.create(
        &res,
        "shop",
        "db",
        &[],
        json!({"type": "Opaque", "data": {"password": value}}),
    );
    let d = Running::start_in(dir, &text);
    assert!(
        wait_until(WAIT, || count_records(&out) == 1),
        "log:\n{}",
        d.log_text()
    );
    sim.update(
        &res,
        "shop",
        "db",
        json!({"type": "Opaque", "data": {"password": "b3RoZXI="}}),
        None,
    );
    assert!(
        wait_until(WAIT, || count_records(&out) == 2
            && count_records(&dead) == 2),
        "log:\n{}",
        d.log_text()
    );
    let recs = records(&out);
    let digest = |r: &Value| r["object"]["data"].as_str().unwrap().to_owned();
    assert!(
        digest(&recs[0]).starts_with("<redacted hmac-sha256:"),
        "{recs:#?}"
    );
    // The value changed, so the digest did: `changes = ".data"` still works.
    assert_ne!(digest(&recs[0]), digest(&recs[1]));
    assert_eq!(
        recs[1]["previous_projection"].as_str(),
        Some(digest(&recs[0]).as_str())
    );
    // Nowhere in the directory: sink file, dead letters, log, state.
    for entry in walk(d.dir.path()) {
        let bytes = fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for v in [value, "b3RoZXI="] {
            assert!(
                !text.contains(v),
                "{} holds the secret value",
                entry.display()
            );
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let key = d.path("state").join("redact.key");
    assert_eq!(
        fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
