//! The command line: `check` on broken configs, and the demo.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kwatchd.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

const GOOD: &str = r#"
[clusters.local]
server = "http://127.0.0.1:6443"

[[watch]]
name = "pods"
cluster = "local"
api_version = "v1"
resource = "pods"
sinks = ["out"]

[sinks.out]
type = "file"
path = "/tmp/kwatchd-check-test/events.jsonl"
"#;

#[test]
fn check_accepts_a_good_config() {
    let (code, out) = check(GOOD);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid"), "{out}");
}

#[test]
fn check_names_file_line_and_key_of_every_problem() {
    let broken = r#"[daemon]
log_level = "loud"

[clusters.local]
server = "ftp://127.0.0.1:6443"
colour = "blue"

[[watch]]
name = "pods"
cluster = "nowhere"
api_version = "v1"
resource = "pods"
label_selector = "app in (web"
sinks = ["missing"]

[[watch]]
name = "pods"
cluster = "local"
api_version = "v1"
resource = "pods"
sinks = ["out"]

[sinks.out]
type = "file"
path = "/tmp/x.jsonl"
"#;
    let (code, out) = check(broken);
    assert_eq!(code, 78, "{out}");
    for (line, key) in [
        (2, "log_level"),
        (5, "server"),
        (6, "colour"),
        (10, "cluster"),
        (13, "label_selector"),
        (14, "sinks"),
        (17, "name"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("kwatchd.toml:{line}")) && l.contains(key)),
            "no line {line} / key {key} in:\n{out}"
        );
    }
}

#[test]
fn check_reports_syntax_errors_and_unreadable_files() {
    let (code, out) = check("[clusters.local\nserver = 1\n");
    assert_eq!(code, 78);
    assert!(out.contains("kwatchd.toml:1"), "{out}");
    let text = GOOD.replace(
        "server = \"http://127.0.0.1:6443\"",
        "server = \"https://127.0.0.1:6443\"\ncertificate_authority = \"/nonexistent/ca.crt\"",
    );
    let (code, out) = check(&text);
    assert_eq!(code, 78);
    assert!(
        out.contains("certificate_authority") && out.contains("/nonexistent/ca.crt"),
        "{out}"
    );
}

#[test]
fn demo_shows_events_flowing_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("demo-out");
    let mut child = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&events)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let file = events.join("events.jsonl");
    let flowed = wait_until(Duration::from_secs(20), || count_records(&file) >= 8);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let stopped = wait_until(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !stopped {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        flowed,
        "demo wrote {} records; stdout:\n{stdout}",
        count_records(&file)
    );
    assert!(stopped, "demo did not stop on SIGINT");
    assert!(out.status.success(), "{:?}", out.status);
    assert!(
        stdout.contains(&file.display().to_string()),
        "the demo says where it writes:\n{stdout}"
    );
    assert!(
        stdout.contains("ADDED"),
        "the demo tails events to the terminal:\n{stdout}"
    );
    let recs = records(&file);
    assert!(recs.iter().any(|r| r["origin"] == "list"));
    assert!(recs.iter().any(|r| r["origin"] == "watch"));
}
