//! `kwatchd replay` without `--dry-run` to webhook and NATS sinks: the real
//! binary delivers through the daemon's own sinks to a loopback receiver
//! and a real nats-server, with the sinks' retries and failure handling.

mod common;

use common::receiver::Receiver;
use common::BIN;
use kwatchd::nats::testing::{Admin, NatsServer};
use kwatchd::nats::Auth;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

const SLACK: &str = r#"'{text: "\(.type) \(.object.metadata.namespace)/\(.object.metadata.name): \(.object.spec.image)"}'"#;

fn record(kind: &str, name: &str, image: &str, rv: u32) -> Value {
    json!({
        "time": "2026-12-04T23:00:00Z", "watch": "pods", "cluster": "test",
        "type": kind, "origin": "watch",
        "object": {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "shop", "name": name, "uid": format!("uid-{name}"),
                         "resourceVersion": rv.to_string()},
            "spec": {"image": image}
        }
    })
}

/// Three records of two pods, written as a file sink writes them.
fn write_records(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("records.jsonl");
    let lines: Vec<String> = [
        record("ADDED", "web", "nginx:1", 10),
        record("ADDED", "db", "pg:1", 11),
        record("MODIFIED", "web", "nginx:2", 12),
    ]
    .iter()
    .map(|r| format!("{r}\n"))
    .collect();
    std::fs::write(&path, lines.concat()).unwrap();
    path
}

fn replay(dir: &Path, sinks: &str, records: &Path) -> Output {
    let config = dir.join("kwatchd.toml");
    let text = format!(
        r#"[daemon]
state_dir = "{}"

[clusters.test]
server = "http://127.0.0.1:1"

[[watch]]
name = "pods"
cluster = "test"
api_version = "v1"
resource = "pods"
{sinks}"#,
        dir.join("state").display()
    );
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(BIN)
        .args(["replay", "--config"])
        .arg(&config)
        .args(["--watch", "pods"])
        .arg(records)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "replay still running after {WAIT:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn webhook(url: &str, retries: u32) -> String {
    format!(
        r#"sinks = ["slack"]

[sinks.slack]
type = "webhook"
url = "{url}"
timeout = "5s"
retries = {retries}
transform = {SLACK}
"#
    )
}

#[test]
fn replaying_a_dead_letter_file_into_its_own_sink_ends() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&[(500, None); 10]);
    let records = write_records(dir.path());
    // The sink's give-ups are appended to the very file being replayed:
    // only what it held when the replay started is read.
    // Untransformed: a dead letter holds the whole record, replayable.
    let sink = format!(
        "sinks = [\"hook\"]\n\n[sinks.hook]\ntype = \"webhook\"\nurl = \"{}\"\nretries = 0\non_failure = \"dead_letter\"\ndead_letter = \"{}\"\n",
        receiver.url("/hook"),
        records.display()
    );
    let out = replay(dir.path(), &sink, &records);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(receiver.received().len(), 3, "{stderr}");
    let lines = std::fs::read_to_string(&records).unwrap();
    assert_eq!(lines.lines().count(), 6, "{lines}");
    assert!(stderr.contains("3 deliveries failed"), "{stderr}");
}

#[test]
fn a_slack_shaped_webhook_gets_each_transformed_record_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&[]);
    let records = write_records(dir.path());
    let out = replay(dir.path(), &webhook(&receiver.url("/slack"), 2), &records);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let bodies = receiver.json_bodies();
    assert_eq!(
        bodies,
        [
            json!({"text": "ADDED shop/web: nginx:1"}),
            json!({"text": "ADDED shop/db: pg:1"}),
            json!({"text": "MODIFIED shop/web: nginx:2"}),
        ]
    );
    assert!(
        receiver.received().iter().all(|r| r.path == "/slack"),
        "{:?}",
        receiver.received()
    );
    assert!(
        stderr.contains(
            "3 records read, 0 skipped as unselected, 0 as unchanged; slack: 3 deliveries"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("failed"), "{stderr}");
}

#[test]
fn a_receiver_that_keeps_failing_makes_replay_fail_after_the_retries() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&[(500, None); 10]);
    let records = write_records(dir.path());
    let out = replay(dir.path(), &webhook(&receiver.url("/slack"), 1), &records);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Every record: its first attempt and one retry, in file order.
    let texts: Vec<String> = receiver
        .json_bodies()
        .iter()
        .map(|b| b["text"].to_string())
        .collect();
    assert_eq!(texts.len(), 6, "{texts:?}\n{stderr}");
    assert_eq!(texts[0], texts[1]);
    assert_eq!(texts[4], texts[5]);
    assert!(texts[4].contains("MODIFIED"), "{texts:?}");
    assert!(
        stderr.contains("giving up on ADDED shop/web after 2 attempts"),
        "{stderr}"
    );
    assert!(
        stderr.contains("kwatchd replay: sink slack: given up after its retries"),
        "{stderr}"
    );
    assert!(stderr.contains("3 deliveries failed"), "{stderr}");
}

/// A NATS sink `bus` publishing to stream KUBE.
fn nats(server: &str, ack_timeout: &str) -> String {
    format!(
        r#"sinks = ["bus"]

[sinks.bus]
type = "nats"
servers = ["{server}"]
stream = "KUBE"
ack_timeout = "{ack_timeout}"
"#
    )
}

#[test]
fn a_nats_sink_publishes_each_record_to_the_stream_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path(), &[]).unwrap();
    let mut admin = Admin::connect(server.port, &Auth::None).unwrap();
    admin.create_stream("KUBE", &["kube.>"], 1).unwrap();
    let records = write_records(dir.path());
    let sinks = nats(&server.url(), "2s");
    let out = replay(dir.path(), &sinks, &records);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stderr}\n{}",
        server.log_text()
    );
    let msgs = admin.read_stream("KUBE").unwrap();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    let sent: Vec<Value> = msgs
        .iter()
        .map(|m| serde_json::from_slice(&m.data).unwrap())
        .collect();
    let expected = [
        ("web", "test/uid-web/10/ADDED"),
        ("db", "test/uid-db/11/ADDED"),
        ("web", "test/uid-web/12/MODIFIED"),
    ];
    for ((m, v), (name, id)) in msgs.iter().zip(&sent).zip(expected) {
        assert_eq!(v["object"]["metadata"]["name"], name);
        assert_eq!(m.header("Nats-Msg-Id"), Some(id), "{m:?}");
    }
    assert_eq!(sent[2]["object"]["spec"]["image"], "nginx:2");
    // Replaying again publishes the same ids: the stream drops them.
    let again = replay(dir.path(), &sinks, &records);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(admin.read_stream("KUBE").unwrap().len(), 3);
}

#[test]
fn a_nats_server_that_is_not_there_fails_the_replay_within_the_sinks_bound() {
    let dir = tempfile::tempdir().unwrap();
    let port = kwatchd::nats::testing::free_port().unwrap();
    let records = write_records(dir.path());
    let sinks = nats(&format!("nats://127.0.0.1:{port}"), "1s");
    let out = replay(dir.path(), &sinks, &records);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The first record is waited for (three PubAck waits and a margin);
    // the later ones would overtake it, so they are not sent at all.
    assert!(
        stderr.contains("kwatchd replay: sink bus: not delivered within 13s"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("not attempted: an earlier delivery to this sink did not end")
            .count(),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("3 deliveries failed"), "{stderr}");
}
