//! Shared helpers for the end-to-end tests: run the real `kwatchd` binary
//! against the in-repo emulator over loopback, read what it wrote.
#![allow(dead_code)]

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod churn;
pub mod history;
pub mod receiver;

pub const BIN: &str = env!("CARGO_BIN_EXE_kwatchd");

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running daemon with its own directory, config and log.
pub struct Running {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Running {
    pub fn start(config_text: &str) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, config_text)
    }

    pub fn start_in(dir: tempfile::TempDir, config_text: &str) -> Running {
        Self::start_with(dir, config_text, |_| {})
    }

    /// `start_in`, with `adjust` applied to the command before it runs
    /// (a `pre_exec`, more environment).
    pub fn start_with(
        dir: tempfile::TempDir,
        config_text: &str,
        adjust: impl FnOnce(&mut Command),
    ) -> Running {
        let config = dir.path().join("kwatchd.toml");
        let config_text = with_state_dir(config_text, &dir.path().join("state"));
        fs::write(&config, config_text).expect("write config");
        let log = dir.path().join("daemon.log");
        let mut command = Command::new(BIN);
        adjust(&mut command);
        let child = command
            .args(["run", "--config"])
            .arg(&config)
            .env(
                "KWATCHD_LOG_LEVEL",
                std::env::var("KWATCHD_TEST_LOG_LEVEL").unwrap_or_else(|_| "debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn kwatchd");
        Running {
            child,
            dir,
            log,
            config,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                panic!(
                    "kwatchd did not stop within 15 s; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- kwatchd log ----\n{}", self.log_text());
        }
    }
}

/// Gives a config without `state_dir` one in the test's directory, so no
/// test writes checkpoints to the default /var/lib/kwatchd.
pub fn with_state_dir(text: &str, state_dir: &Path) -> String {
    if text.contains("state_dir") {
        return text.to_owned();
    }
    let line = format!("state_dir = \"{}\"\n", state_dir.display());
    match text.find("[daemon]\n") {
        Some(i) => {
            let at = i + "[daemon]\n".len();
            format!("{}{line}{}", &text[..at], &text[at..])
        }
        None => format!("[daemon]\n{line}\n{text}"),
    }
}

/// Every record of a JSON-lines file; a torn last line is a test failure.
pub fn records(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    if !text.is_empty() {
        assert!(text.ends_with('\n'), "file ends with a partial line");
    }
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l:?}: {e}")))
        .collect()
}

pub fn count_records(path: &Path) -> usize {
    fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

/// (type, name, resourceVersion) of each record, for compact assertions.
pub fn summary(records: &[Value]) -> Vec<(String, String, String)> {
    records
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap_or("").to_owned(),
                r["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                r["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

/// A watch entry for a config.
pub struct WatchDef<'a> {
    pub name: &'a str,
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub on_start: &'a str,
    pub sink: &'a str,
    pub extra: &'a str,
}

impl<'a> WatchDef<'a> {
    pub fn pods(name: &'a str, sink: &'a str) -> Self {
        WatchDef {
            name,
            resource: "pods",
            namespace: None,
            on_start: "added",
            sink,
            extra: "",
        }
    }
}

/// A config with one cluster, the given watches, and a file sink per
/// distinct sink name at DIR/NAME.jsonl.
pub fn config(dir: &Path, cluster_extra: &str, server: &str, watches: &[WatchDef<'_>]) -> String {
    let mut s = format!(
        "[daemon]\nlog_level = \"debug\"\nstate_dir = \"{}\"\n\n[clusters.test]\nserver = \"{server}\"\n{cluster_extra}\n",
        dir.join("state").display()
    );
    let mut sinks: Vec<&str> = Vec::new();
    for w in watches {
        s.push_str(&format!(
            "\n[[watch]]\nname = \"{}\"\ncluster = \"test\"\napi_version = \"v1\"\nresource = \"{}\"\non_start = \"{}\"\nsinks = [\"{}\"]\n{}\n",
            w.name, w.resource, w.on_start, w.sink, w.extra
        ));
        if let Some(ns) = w.namespace {
            s.push_str(&format!("namespace = \"{ns}\"\n"));
        }
        if !sinks.contains(&w.sink) {
            sinks.push(w.sink);
        }
    }
    for sink in sinks {
        s.push_str(&format!(
            "\n[sinks.{sink}]\ntype = \"file\"\npath = \"{}\"\n",
            dir.join(format!("{sink}.jsonl")).display()
        ));
    }
    s
}

/// Reads datagrams from a test NOTIFY_SOCKET (with a read timeout set) into
/// `got` until one contains `want`, for up to 15 s.
pub fn receive_until(
    socket: &std::os::unix::net::UnixDatagram,
    want: &str,
    got: &mut Vec<String>,
) -> bool {
    let end = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = msg.contains(want);
            got.push(msg);
            if hit {
                return true;
            }
        }
    }
    false
}

/// The daemon on `config_text` (written to DIR/kwatchd.toml) with a test
/// NOTIFY_SOCKET at DIR/notify.sock standing in for systemd: the child, the
/// socket (100 ms read timeout, for `receive_until`) and the config path.
pub fn spawn_notified(
    dir: &Path,
    config_text: &str,
    env: &[(&str, &str)],
) -> (Child, std::os::unix::net::UnixDatagram, PathBuf) {
    let sock_path = dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("socket timeout");
    let config = dir.join("kwatchd.toml");
    fs::write(&config, config_text).expect("write config");
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kwatchd");
    (child, socket, config)
}
