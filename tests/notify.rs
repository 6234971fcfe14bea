//! systemd notify: READY once the watches have listed, WATCHDOG from the
//! loop at half of WATCHDOG_USEC, STOPPING on SIGTERM — captured on a test
//! NOTIFY_SOCKET.

mod common;

use common::*;
use kwatchd_sim::{Sim, SimOptions};
use std::process::Command;
use std::time::Duration;

#[test]
fn ready_watchdog_and_stopping_reach_the_notify_socket() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = common::config(dir.path(), "", &sim.url(), &[WatchDef::pods("pods", "out")]);
    let (mut child, socket, _) = spawn_notified(dir.path(), &text, &[("WATCHDOG_USEC", "300000")]);
    let mut got = Vec::new();
    let ready = receive_until(&socket, "READY=1", &mut got);
    let watchdog = receive_until(&socket, "WATCHDOG=1", &mut got);
    let watchdog_again = receive_until(&socket, "WATCHDOG=1", &mut got);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let stopping = receive_until(&socket, "STOPPING=1", &mut got);
    let status = child.wait().unwrap();
    assert!(ready && watchdog && watchdog_again && stopping, "{got:?}");
    assert!(status.success());
    let ready_msg = got.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready_msg.contains("STATUS=1 watches, "), "{ready_msg}");
}

#[test]
fn under_journald_log_lines_carry_their_syslog_priority() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kwatchd.toml");
    std::fs::write(
        &config,
        common::config(dir.path(), "", &sim.url(), &[WatchDef::pods("pods", "out")]),
    )
    .unwrap();
    let log = dir.path().join("log");
    let stderr = std::fs::File::create(&log).unwrap();
    // journald names the stream it hands over as DEVICE:INODE; kwatchd only
    // believes it when stderr is that stream.
    let meta = stderr.metadata().unwrap();
    let stream = {
        use std::os::unix::fs::MetadataExt;
        format!("{}:{}", meta.dev(), meta.ino())
    };
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("JOURNAL_STREAM", stream)
        .env("KWATCHD_LOG_LEVEL", "info")
        .stderr(stderr)
        .spawn()
        .unwrap();
    let listed = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("listed")
    });
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    assert!(listed);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .all(|l| l.starts_with("<6>") || l.starts_with("<4>") || l.starts_with("<3>")),
        "{text}"
    );
}

/// READY=1 does not wait for a watch that cannot reach its server, but
/// STATUS names it.
#[test]
fn ready_names_the_watches_still_backing_off() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on a port we bound and closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let text = common::config(dir.path(), "", &sim.url(), &[WatchDef::pods("pods", "out")])
        + &format!(
            "\n[clusters.gone]\nserver = \"http://{dead_addr}\"\n\n[[watch]]\nname = \"unreachable\"\ncluster = \"gone\"\napi_version = \"v1\"\nresource = \"pods\"\nsinks = [\"out\"]\n"
        );
    let (mut child, socket, _) = spawn_notified(dir.path(), &text, &[]);
    let mut got = Vec::new();
    let ready = receive_until(&socket, "READY=1", &mut got);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
    assert!(ready, "{got:?}");
    let ready_msg = got.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(
        ready_msg.contains("1 backing off (unreachable)"),
        "{ready_msg}"
    );
}
