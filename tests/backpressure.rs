//! A sink that cannot take events slows the watch instead of growing memory,
//! and nothing is lost once it drains; a state store that cannot write (a
//! full disk) holds the sinks back, so a crash meanwhile loses no DELETED.

mod common;

use common::*;
use kwatchd_sim::{Resource, Sim, SimOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

const EVENTS: usize = 100_000;

#[test]
fn a_blocked_sink_bounds_memory_and_loses_nothing() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out.jsonl");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Our end of the FIFO: open, never read until the end of the test.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut w = WatchDef::pods("pods", "out");
    w.on_start = "skip";
    let text = config(dir.path(), "", &sim.url(), &[w])
        .replace("[daemon]\n", "[daemon]\nsink_queue_events = 1000\n");
    let d = Running::start_in(dir, &text);
    assert!(
        wait_until(Duration::from_secs(15), || sim.open_watches() == 1),
        "log:\n{}",
        d.log_text()
    );

    let pods = Resource::pods();
    let pad = kwatchd_sim::pod_extra(2000);
    let started = Instant::now();
    for i in 0..EVENTS {
        sim.create(&pods, "default", &format!("p{i}"), &[], pad.clone());
    }
    eprintln!("created {EVENTS} objects in {:?}", started.elapsed());
    // ~200 MB of events are now queued in the emulator and TCP; the daemon
    // holds at most its queue bound. Give it time to (not) grow.
    std::thread::sleep(Duration::from_secs(2));
    let rss_blocked = d.rss_kib().expect("rss");
    assert!(
        rss_blocked < 64 * 1024,
        "daemon RSS {rss_blocked} KiB while its sink is blocked (created {EVENTS} in {:?})",
        started.elapsed()
    );

    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let mut last = Vec::new();
    let end = Instant::now() + Duration::from_secs(120);
    let mut max_rss = rss_blocked;
    while got < EVENTS && Instant::now() < end {
        match reader.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(5)),
            Ok(n) => {
                got += buf[..n].iter().filter(|b| **b == b'\n').count();
                last.clear();
                last.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("{e}"),
        }
        if got % 10_000 < 50 {
            max_rss = max_rss.max(d.rss_kib().unwrap_or(0));
        }
    }
    eprintln!(
        "drained in {:?}, peak RSS {max_rss} KiB (blocked: {rss_blocked} KiB)",
        started.elapsed()
    );
    assert_eq!(got, EVENTS, "events lost or stuck; log:\n{}", d.log_text());
    assert!(
        max_rss < 64 * 1024,
        "daemon RSS peaked at {max_rss} KiB while draining"
    );
    let tail = String::from_utf8_lossy(&last);
    assert!(
        tail.contains(&format!("\"name\":\"p{}\"", EVENTS - 1)),
        "the last event is the last one created"
    );
}

/// A tmpfs of `size` mounted on `dir` for the test's life; `None` (with a
/// message) where this process may not mount.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_owned())),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here ({})",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem holding `dir` with `dir/filler`, then frees
/// `leave` bytes of it again.
fn fill(dir: &std::path::Path, leave: u64) {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let page = vec![b'f'; 4096];
    loop {
        match f.write(&page) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
}

/// The file holds whole JSON lines only: empty, or ending in `\n` with every
/// line a record. Returns the pod names, in order.
fn whole_lines(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        let tail = &text[text.rfind('\n').map_or(0, |i| i + 1)..];
        return Err(format!("a torn last line of {} bytes", tail.len()));
    }
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).map_err(|e| format!("bad line {l:?}: {e}"))?;
            Ok(v["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_owned())
        })
        .collect()
}

/// Reads the file every few ms for `period`, failing on any torn line.
fn never_torn(path: &std::path::Path, period: Duration) -> Result<usize, String> {
    let end = Instant::now() + period;
    let mut most = 0;
    while Instant::now() < end {
        most = most.max(whole_lines(path)?.len());
        std::thread::sleep(Duration::from_millis(3));
    }
    Ok(most)
}

#[test]
fn a_full_disk_never_shows_a_torn_line_and_loses_nothing() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "256k") else {
        return;
    };
    let out = mnt.join("out.jsonl");
    let mut w = WatchDef::pods("pods", "out");
    w.on_start = "skip";
    let text = config(dir.path(), "", &sim.url(), &[w])
        .replace("[daemon]\n", "[daemon]\nshutdown_timeout = \"1s\"\n")
        .replace(
            &dir.path().join("out.jsonl").display().to_string(),
            &out.display().to_string(),
        );
    let config_path = dir.path().join("kwatchd.toml");
    let log = dir.path().join("daemon.log");
    std::fs::write(&config_path, &text).unwrap();
    let start = || {
        std::process::Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config_path)
            .env("KWATCHD_LOG_LEVEL", "debug")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    };
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut child = start();
    assert!(
        wait_until(Duration::from_secs(15), || sim.open_watches() == 1),
        "log:\n{}",
        log_text()
    );
    // One page left: a few ~1.3 KB records fit, the next one only in part.
    fill(&mnt, 4096);
    let pods = Resource::pods();
    let pad = kwatchd_sim::pod_extra(1000);
    for i in 0..20 {
        sim.create(&pods, "default", &format!("a{i:02}"), &[], pad.clone());
    }
    let seen = never_torn(&out, Duration::from_secs(2));
    assert!(
        seen.as_ref().is_ok_and(|n| *n < 20),
        "{seen:?} while full; log:\n{}",
        log_text()
    );
    assert!(
        log_text().contains("No space left on device"),
        "the disk was never full; log:\n{}",
        log_text()
    );

    // Room again: every record arrives, once, in order.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    let want: Vec<String> = (0..20).map(|i| format!("a{i:02}")).collect();
    assert!(
        wait_until(Duration::from_secs(15), || whole_lines(&out).ok().as_ref()
            == Some(&want)),
        "{:?}; log:\n{}",
        whole_lines(&out),
        log_text()
    );

    // Full again, and stopped while full: nothing torn is left behind.
    fill(&mnt, 4096);
    for i in 0..20 {
        sim.create(&pods, "default", &format!("b{i:02}"), &[], pad.clone());
    }
    never_torn(&out, Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", log_text()));
    // SAFETY: plain syscall on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(
        wait_until(Duration::from_secs(15), || child
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "no exit after SIGTERM; log:\n{}",
        log_text()
    );
    let after_stop =
        whole_lines(&out).unwrap_or_else(|e| panic!("{e} after SIGTERM; log:\n{}", log_text()));
    assert!(after_stop.len() < 40, "the disk was full: {after_stop:?}");

    // Restarted with room: what was not written arrives (at least once).
    std::fs::remove_file(mnt.join("filler")).unwrap();
    let mut child = start();
    let all_b = |names: &[String]| (0..20).all(|i| names.contains(&format!("b{i:02}")));
    let arrived = wait_until(Duration::from_secs(20), || {
        whole_lines(&out).is_ok_and(|n| all_b(&n))
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(arrived, "{:?}; log:\n{}", whole_lines(&out), log_text());
    assert!(whole_lines(&out).unwrap().starts_with(&want));
}

/// A daemon started on `config`, logging (appending) to `log`; killed when
/// dropped.
struct Daemon(std::process::Child);

impl Daemon {
    fn start(config: &std::path::Path, log: &std::path::Path) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = std::process::Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env("KWATCHD_LOG_LEVEL", "debug")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon(child)
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A watch of every pod into `dir/out.jsonl`, with its state in `state`.
fn state_in(dir: &std::path::Path, sim: &Sim, state: &std::path::Path) -> String {
    config(dir, "", &sim.url(), &[WatchDef::pods("pods", "out")]).replace(
        &dir.join("state").display().to_string(),
        &state.display().to_string(),
    )
}

/// (type, name) of every record of the file sink, in order.
fn typed_names(path: &std::path::Path) -> Vec<(String, String)> {
    summary(&records(path))
        .into_iter()
        .map(|(t, n, _)| (t, n))
        .collect()
}

/// Issue 14: a full state directory must not turn a crash into loss. While
/// the store cannot record new objects the sinks get nothing (the log says
/// so); with room again everything arrives; killed while full, with every
/// object deleted and the history compacted while it is down, and restarted
/// on the still-full directory, every object a sink ever saw gets its
/// DELETED once there is room.
#[test]
fn a_full_state_directory_holds_the_sinks_back_and_loses_no_deleted() {
    const CANNOT: &str = "cannot commit";
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "4m") else {
        return;
    };
    // The store on the tmpfs, the file sink elsewhere: only the store is
    // short of room, so any record that arrives was the sinks' choice.
    let out = dir.path().join("out.jsonl");
    let text = state_in(dir.path(), &sim, &mnt.join("state"))
        .replace("[daemon]\n", "[daemon]\nshutdown_timeout = \"1s\"\n");
    let config_path = dir.path().join("kwatchd.toml");
    let log = dir.path().join("daemon.log");
    std::fs::write(&config_path, &text).unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let failures = || log_text().matches(CANNOT).count();
    let pods = Resource::pods();
    let pad = kwatchd_sim::pod_extra(1000);
    let create = |prefix: &str, n: usize| {
        for i in 0..n {
            sim.create(
                &pods,
                "default",
                &format!("{prefix}{i:03}"),
                &[],
                pad.clone(),
            );
        }
    };
    let names = |prefix: &str, n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| ("ADDED".to_string(), format!("{prefix}{i:03}")))
            .collect()
    };

    create("p", 3);
    let mut daemon = Daemon::start(&config_path, &log);
    assert!(
        wait_until(Duration::from_secs(15), || typed_names(&out)
            == names("p", 3)),
        "{:?}; log:\n{}",
        typed_names(&out),
        log_text()
    );

    // Full: the new objects cannot be recorded, so no sink acts on them.
    // (Commits that fit in pages the store file already holds still
    // succeed: what was recorded may be delivered.)
    fill(&mnt, 0);
    create("n", 300);
    assert!(
        wait_until(Duration::from_secs(20), || failures() >= 1),
        "the store never failed to commit ({} records); log:\n{}",
        count_records(&out),
        log_text()
    );
    let held = count_records(&out);
    eprintln!("store full: {held} of 303 records delivered when it first failed");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        count_records(&out),
        held,
        "records delivered while the store could not commit; log:\n{}",
        log_text()
    );
    assert!(held < 3 + 300, "everything was delivered while full");
    assert!(
        log_text().contains("held back from the sinks"),
        "{}",
        log_text()
    );
    assert!(daemon.exited().is_none(), "{}", log_text());

    // Room again: it commits and catches up, every object once, in order.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    let mut want = names("p", 3);
    want.extend(names("n", 300));
    assert!(
        wait_until(Duration::from_secs(30), || typed_names(&out) == want),
        "{} of {} records; log:\n{}",
        count_records(&out),
        want.len(),
        log_text()
    );
    assert!(log_text().contains("state store: committing again"));

    // Full again, and killed while new objects wait for the store.
    fill(&mnt, 0);
    let before = failures();
    create("m", 300);
    assert!(
        wait_until(Duration::from_secs(20), || failures() > before),
        "{}",
        log_text()
    );
    // SAFETY: plain syscall on our child.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGKILL) };
    let _ = daemon.0.wait();
    let delivered: Vec<String> = typed_names(&out).into_iter().map(|(_, n)| n).collect();
    eprintln!(
        "killed while full: {} of 603 records delivered",
        delivered.len()
    );

    // While it is down every object goes, and the history with them: only
    // the store can tell the restarted daemon what existed.
    let all = names("p", 3)
        .into_iter()
        .chain(names("n", 300))
        .chain(names("m", 300));
    for (_, name) in all {
        assert!(sim.delete(&pods, "default", &name).is_some(), "{name}");
    }
    sim.compact();
    let deleted_before = typed_names(&out)
        .iter()
        .filter(|(t, _)| t == "DELETED")
        .count();
    assert_eq!(deleted_before, 0);

    // Restarted on the directory still full: it either refuses to start,
    // saying why, or starts (its write check fitting in the file's free
    // pages) and reports only DELETEDs, which need no new object recorded.
    let restart_log = log_text().len();
    let mut daemon = Daemon::start(&config_path, &log);
    std::thread::sleep(Duration::from_secs(3));
    let since = log_text()[restart_log..].to_string();
    eprintln!(
        "restarted on the full directory: {}",
        daemon
            .exited()
            .map_or("running".to_string(), |s| format!("exited ({s})"))
    );
    match daemon.exited() {
        Some(status) => assert!(
            !status.success() && since.contains("state"),
            "{status}: {since}"
        ),
        None => {
            let after = typed_names(&out);
            let new = &after[delivered.len()..];
            assert!(new.iter().all(|(t, _)| t == "DELETED"), "{new:?}: {since}");
        }
    }

    // Room: every object any sink saw is reported deleted.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    if daemon.exited().is_some() {
        daemon = Daemon::start(&config_path, &log);
    }
    let missing = || {
        let got: std::collections::HashSet<String> = typed_names(&out)
            .into_iter()
            .filter(|(t, _)| t == "DELETED")
            .map(|(_, n)| n)
            .collect();
        delivered
            .iter()
            .filter(|n| !got.contains(*n))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(30), || missing().is_empty()),
        "{} delivered objects without a DELETED, e.g. {:?}; log:\n{}",
        missing().len(),
        missing().iter().take(5).collect::<Vec<_>>(),
        log_text()
    );
    assert!(daemon.exited().is_none(), "{}", log_text());
}

/// Issue 14: a state directory on a full disk is found out at start (the
/// store proves it can commit, not only open), not at the first new object.
#[test]
fn a_new_state_directory_on_a_full_disk_is_refused_at_start() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "256k") else {
        return;
    };
    let state = mnt.join("state");
    let text = state_in(dir.path(), &sim, &state);
    let config_path = dir.path().join("kwatchd.toml");
    let log = dir.path().join("daemon.log");
    std::fs::write(&config_path, &text).unwrap();
    fill(&mnt, 0);
    let mut daemon = Daemon::start(&config_path, &log);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(15), || daemon.exited().is_some()),
        "started on a full disk; log:\n{}",
        log_text()
    );
    let status = daemon.exited().unwrap();
    assert!(!status.success(), "{status}");
    let expected = format!("state_dir {}: cannot write there", state.display());
    assert!(log_text().contains(&expected), "{}", log_text());
    assert!(
        log_text().contains("No space left on device"),
        "{}",
        log_text()
    );
    assert_eq!(sim.open_watches(), 0, "it watched before refusing");
}
