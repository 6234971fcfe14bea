//! The command line: `check` on broken configs, the demo, and the parser:
//! help for every subcommand, the config as flag or positional argument,
//! flags refused where they do not belong, `status --addr` with the URL the
//! daemon logs, and exit 64 for usage errors.

mod common;

use common::*;
use kwatchd_sim::{Sim, SimOptions};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn kwatchd(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

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

#[test]
fn every_subcommand_has_help_and_the_version() {
    for sub in ["run", "check", "status", "demo", "rbac"] {
        for flag in ["--help", "-h"] {
            let out = kwatchd(&[sub, flag]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{sub} {flag}: {out:?}");
            assert!(
                stdout.contains(&format!("Usage: kwatchd {sub}")),
                "{sub} {flag}:\n{stdout}"
            );
        }
    }
    let out = kwatchd(&["help", "status"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--addr"));
    let out = kwatchd(&["--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for word in [
        "run",
        "check",
        "status",
        "demo",
        "rbac",
        "KWATCHD_LOG_LEVEL",
        "78",
    ] {
        assert!(stdout.contains(word), "{word} missing:\n{stdout}");
    }
    assert!(!stdout.contains("generate-assets"), "{stdout}");
    let out = kwatchd(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("kwatchd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn the_config_file_may_be_positional_or_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kwatchd.toml");
    std::fs::write(&path, GOOD).unwrap();
    let path = path.to_str().unwrap();
    for args in [
        &["check", path][..],
        &["check", "-c", path],
        &["check", &format!("--config={path}")],
    ] {
        let out = kwatchd(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    }
    // Both at once is ambiguous, and neither is missing something.
    for args in [&["check", "--config", path, path][..], &["check"], &["run"]] {
        assert_eq!(kwatchd(args).status.code(), Some(64), "{args:?}");
    }
}

#[test]
fn flags_of_other_subcommands_and_typos_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("mine.toml");
    let made_arg = made.to_str().unwrap();
    for (args, says) in [
        (&["check", "--dir", "x"][..], "unexpected argument '--dir'"),
        (
            &["demo", "--config", made_arg],
            "unexpected argument '--config'",
        ),
        (
            &["run", "--addr", "127.0.0.1:9464"],
            "unexpected argument '--addr'",
        ),
        (
            &["check", "--confg", "x.toml"],
            "a similar argument exists: '--config'",
        ),
        (&["chek", "x.toml"], "unrecognized subcommand"),
        (&["status"], "required arguments were not provided"),
        (&[], "Usage: kwatchd"),
    ] {
        let out = kwatchd(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{args:?}: wanted {says:?} in:\n{stderr}"
        );
    }
    // `demo --config` once created a directory named like the config.
    assert!(!made.exists());
}

#[test]
fn status_takes_the_url_the_daemon_logs() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), "", &sim.url(), &[WatchDef::pods("pods", "out")]).replacen(
        "[daemon]\n",
        "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n",
        1,
    );
    let d = Running::start_in(dir, &text);
    let mut url = None;
    let logged = wait_until(Duration::from_secs(20), || {
        url = d.log_text().lines().find_map(|l| {
            let rest = l.split("metrics: listening on ").nth(1)?;
            rest.split_whitespace().next().map(str::to_owned)
        });
        url.is_some()
    });
    assert!(logged, "no listening line; log:\n{}", d.log_text());
    let url = url.unwrap();
    assert!(url.starts_with("http://"), "{url}");
    for addr in [url.clone(), format!("{url}/"), url.replace("http://", "")] {
        let out = kwatchd(&["status", "--addr", &addr, "--timeout", "5s"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{addr}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with("WATCH") && stdout.contains("pods"),
            "{stdout}"
        );
    }
    // Not an address: a usage error that says what is accepted.
    let out = kwatchd(&["status", "--addr", "https://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plain http://"));
}

#[test]
fn every_shipped_config_passes_check_offline() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(BIN)
                .args(["check", "--offline"])
                .arg(&path)
                .env_remove("WEBHOOK_TOKEN")
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
            checked.push(path);
        }
    }
    assert!(checked.len() >= 2, "{checked:?}");
}

#[test]
fn check_expands_credentials_directory_and_offline_needs_none() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("token"), "t0ken\n").unwrap();
    let config = dir.path().join("kwatchd.toml");
    std::fs::write(
        &config,
        GOOD.replace(
            "server = \"http://127.0.0.1:6443\"",
            "server = \"https://127.0.0.1:6443\"\ntoken_file = \"${CREDENTIALS_DIRECTORY}/token\"",
        ),
    )
    .unwrap();
    let check = |offline: bool, creds: Option<&std::path::Path>| {
        let mut cmd = Command::new(BIN);
        cmd.arg("check");
        if offline {
            cmd.arg("--offline");
        }
        cmd.arg(&config).env_remove("CREDENTIALS_DIRECTORY");
        if let Some(c) = creds {
            cmd.env("CREDENTIALS_DIRECTORY", c);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        (out.status.code(), text)
    };
    // As under LoadCredential=: the variable names the directory.
    let (code, out) = check(false, Some(&creds));
    assert_eq!(code, Some(0), "{out}");
    // Outside the service the full check says what is missing...
    let (code, out) = check(false, None);
    assert_eq!(code, Some(78), "{out}");
    assert!(
        out.contains("token_file") && out.contains("CREDENTIALS_DIRECTORY"),
        "{out}"
    );
    // ...and --offline checks the file alone.
    let (code, out) = check(true, None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("offline"), "{out}");
}

#[test]
fn rbac_prints_roles_from_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kwatchd.toml");
    // The token file's variable is unset: rbac checks the file as --offline.
    let text = GOOD.replace(
        "server = \"http://127.0.0.1:6443\"",
        "server = \"https://k.example\"\ntoken_file = \"${KWATCHD_TEST_UNSET}/token\"",
    ) + "\n[daemon.leader_election]\ncluster = \"local\"\nnamespace = \"ops\"\n";
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["rbac", "--namespace", "ops", "--config"])
        .arg(&path)
        .env_remove("KWATCHD_TEST_UNSET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let kinds: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .collect();
    assert_eq!(
        kinds,
        ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"],
        "{stdout}"
    );
    assert!(
        stdout.contains("name: kwatchd-leader-election\n  namespace: ops"),
        "{stdout}"
    );
    let out = kwatchd(&["rbac", "--cluster", "nope", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    std::fs::write(&path, "[[watch]]\n").unwrap();
    assert_eq!(
        kwatchd(&["rbac", path.to_str().unwrap()]).status.code(),
        Some(78)
    );
}
