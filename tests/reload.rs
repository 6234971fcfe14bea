//! SIGHUP reload: unchanged watches keep their connection, removed ones
//! stop, new ones start; an invalid file keeps the running configuration.

mod common;

use common::*;
use kwatchd_sim::{Resource, Sim, SimOptions};
use serde_json::json;
use std::path::Path;

use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn names(path: &Path) -> Vec<String> {
    records(path)
        .iter()
        .filter_map(|r| r["object"]["metadata"]["name"].as_str().map(String::from))
        .collect()
}

fn has(path: &Path, name: &str) -> bool {
    names(path).iter().any(|n| n == name)
}

fn in_namespace<'a>(w: WatchDef<'a>, ns: &'a str) -> WatchDef<'a> {
    WatchDef {
        namespace: Some(ns),
        ..w
    }
}

/// Requests the emulator saw from index `from` on whose path is in `ns`.
fn requests_in(sim: &Sim, from: usize, ns: &str) -> Vec<String> {
    let needle = format!("/namespaces/{ns}/");
    sim.requests()
        .iter()
        .skip(from)
        .filter(|r| r.path.contains(&needle))
        .map(|r| format!("{}?{}", r.path, r.query))
        .collect()
}

#[test]
fn reload_keeps_unchanged_watches_and_applies_the_rest() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let pods = Resource::pods();
    for ns in ["a", "b", "c"] {
        sim.create(&pods, ns, &format!("{ns}-0"), &[], json!({}));
    }
    let dir = tempfile::tempdir().unwrap();
    let v1 = config(
        dir.path(),
        "",
        &sim.url(),
        &[
            in_namespace(WatchDef::pods("wa", "out"), "a"),
            in_namespace(WatchDef::pods("wb", "out"), "b"),
        ],
    );
    let d = Running::start_in(dir, &v1);
    let out = d.path("out.jsonl");
    let out2 = d.path("out2.jsonl");
    assert!(
        wait_until(WAIT, || has(&out, "a-0")
            && has(&out, "b-0")
            && sim.open_watches() == 2),
        "log:\n{}",
        d.log_text()
    );

    // wa now also feeds out2 (same stream), wb goes, wc comes.
    let mut wa = in_namespace(WatchDef::pods("wa", "out"), "a");
    wa.extra = "";
    let v2 = config(
        d.dir.path(),
        "",
        &sim.url(),
        &[wa, in_namespace(WatchDef::pods("wc", "out"), "c")],
    )
    .replace(
        "name = \"wa\"\ncluster = \"test\"\napi_version = \"v1\"\nresource = \"pods\"\non_start = \"added\"\nsinks = [\"out\"]",
        "name = \"wa\"\ncluster = \"test\"\napi_version = \"v1\"\nresource = \"pods\"\non_start = \"added\"\nsinks = [\"out\", \"out2\"]",
    ) + &format!(
        "\n[sinks.out2]\ntype = \"file\"\npath = \"{}\"\n",
        out2.display()
    );
    assert!(v2.contains("[\"out\", \"out2\"]"), "{v2}");
    std::fs::write(&d.config, v2).unwrap();
    let before = sim.requests().len();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(WAIT, || has(&out, "c-0")
            && d.log_text().contains("reload applied")),
        "log:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains("reload applied: watches: 1 kept, added wc, removed wb"),
        "{log}"
    );
    assert!(
        wait_until(WAIT, || sim.open_watches() == 2),
        "wb still open"
    );

    // wa keeps its stream and now also writes to out2; wb is gone.
    sim.create(&pods, "b", "b-late", &[], json!({}));
    sim.create(&pods, "a", "a-late", &[], json!({}));
    assert!(
        wait_until(WAIT, || has(&out, "a-late") && has(&out2, "a-late")),
        "log:\n{}",
        d.log_text()
    );
    assert!(!has(&out, "b-late"), "the removed watch still delivers");
    assert_eq!(
        requests_in(&sim, before, "a"),
        Vec::<String>::new(),
        "the unchanged watch reconnected"
    );
    assert!(!requests_in(&sim, before, "c").is_empty());
    assert!(requests_in(&sim, before, "b").is_empty());
}

#[test]
fn invalid_reload_keeps_the_running_configuration() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let pods = Resource::pods();
    sim.create(&pods, "a", "a-0", &[], json!({}));
    let dir = tempfile::tempdir().unwrap();
    let v1 = config(
        dir.path(),
        "",
        &sim.url(),
        &[in_namespace(WatchDef::pods("wa", "out"), "a")],
    );
    let d = Running::start_in(dir, &v1);
    let out = d.path("out.jsonl");
    assert!(wait_until(WAIT, || has(&out, "a-0")), "{}", d.log_text());

    let broken = v1.replace("resource = \"pods\"", "resource = \"pods\"\nbogus_key = 1");
    std::fs::write(&d.config, &broken).unwrap();
    let before = sim.requests().len();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(WAIT, || d.log_text().contains("reload rejected")),
        "{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(log.contains("bogus_key"), "the error is not named:\n{log}");
    assert!(log.contains("kwatchd.toml:"), "no file:line:\n{log}");

    sim.create(&pods, "a", "a-1", &[], json!({}));
    assert!(wait_until(WAIT, || has(&out, "a-1")), "{}", d.log_text());
    assert!(
        requests_in(&sim, before, "a").is_empty(),
        "the running watch was disturbed"
    );

    // A sink that cannot be opened rejects the reload as a whole, too.
    let unopenable = v1.replace(
        &d.path("out.jsonl").display().to_string(),
        "/proc/version/out.jsonl",
    );
    std::fs::write(&d.config, &unopenable).unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(WAIT, || d.log_text().matches("reload rejected").count()
            == 2),
        "{}",
        d.log_text()
    );
    sim.create(&pods, "a", "a-2", &[], json!({}));
    assert!(wait_until(WAIT, || has(&out, "a-2")), "{}", d.log_text());
}

#[test]
fn reload_is_announced_to_systemd() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), "", &sim.url(), &[WatchDef::pods("pods", "out")]);
    let (mut child, socket, config_path) = spawn_notified(dir.path(), &text, &[]);
    let mut got = Vec::new();
    let ready = receive_until(&socket, "READY=1", &mut got);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    }
    let reloading = receive_until(&socket, "RELOADING=1", &mut got);
    let ready_again = receive_until(&socket, "READY=1", &mut got);
    std::fs::write(&config_path, "this is not toml [").unwrap();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    }
    let rejected = receive_until(&socket, "reload rejected", &mut got);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(ready && reloading && ready_again && rejected, "{got:?}");
    assert!(status.success());
    let reload_msg = got.iter().find(|m| m.contains("RELOADING=1")).unwrap();
    let usec: u64 = reload_msg
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(usec > 0, "{reload_msg}");
    let after = got
        .iter()
        .rev()
        .find(|m| m.contains("reload rejected"))
        .unwrap();
    assert!(after.contains("READY=1"), "{after}");
}

/// A replaced hook sink finishes its backlog under its old definition while
/// the new definition takes the events that come after the reload.
#[test]
fn a_replaced_hook_sink_delivers_its_backlog_before_closing() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let pods = Resource::pods();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.txt");
    let hook = dir.path().join("hook.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\nsleep 0.2\necho \"$1 $KWATCHD_NAME\" >> \"$2\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let text = |tag: &str| {
        format!(
            "[clusters.test]\nserver = \"{}\"\n\n[[watch]]\nname = \"pods\"\ncluster = \"test\"\napi_version = \"v1\"\nresource = \"pods\"\non_start = \"skip\"\nsinks = [\"hook\"]\n\n[sinks.hook]\ntype = \"exec\"\ncommand = [\"{}\", \"{tag}\", \"{}\"]\n",
            sim.url(),
            hook.display(),
            ran.display()
        )
    };
    let d = Running::start_in(dir, &text("old"));
    assert!(
        wait_until(WAIT, || sim.open_watches() == 1),
        "{}",
        d.log_text()
    );
    for i in 0..5 {
        sim.create(&pods, "default", &format!("early-{i}"), &[], json!({}));
    }
    // The first run is under way, the others queued (max_concurrent = 1).
    assert!(
        wait_until(WAIT, || d.log_text().contains("early-0")
            || std::fs::metadata(&ran).is_ok()),
        "{}",
        d.log_text()
    );
    std::fs::write(&d.config, text("new")).unwrap();
    let before = sim.requests().len();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(WAIT, || d.log_text().contains("reload applied")),
        "{}",
        d.log_text()
    );
    sim.create(&pods, "default", "late", &[], json!({}));
    let lines = || {
        std::fs::read_to_string(&ran)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(WAIT, || lines().len() == 6),
        "{:?}\n{}",
        lines(),
        d.log_text()
    );
    let lines = lines();
    for i in 0..5 {
        assert!(
            lines.contains(&format!("old early-{i}")),
            "{lines:?}: early-{i} not run by the old definition"
        );
    }
    assert!(lines.contains(&"new late".to_string()), "{lines:?}");
    assert!(
        wait_until(WAIT, || d.log_text().contains("(before the reload)")),
        "the old sink was not closed:\n{}",
        d.log_text()
    );
    assert!(requests_in_any(&sim, before).is_empty());
}

/// Watch requests from index `from` on.
fn requests_in_any(sim: &Sim, from: usize) -> Vec<String> {
    sim.requests()
        .iter()
        .skip(from)
        .filter(|r| r.is_watch)
        .map(|r| format!("{}?{}", r.path, r.query))
        .collect()
}

/// A watch a reload removed and a later reload brings back with the same
/// definition resumes from what its sinks had handled when it stopped: no
/// relist, and what changed meanwhile arrives.
#[test]
fn a_watch_removed_and_added_back_resumes_where_it_stopped() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let pods = Resource::pods();
    for ns in ["a", "b"] {
        sim.create(&pods, ns, &format!("{ns}-0"), &[], json!({}));
    }
    let dir = tempfile::tempdir().unwrap();
    let both = |dir: &Path| {
        config(
            dir,
            "",
            &sim.url(),
            &[
                in_namespace(WatchDef::pods("wa", "out"), "a"),
                in_namespace(WatchDef::pods("wb", "out"), "b"),
            ],
        )
    };
    let v1 = both(dir.path());
    let d = Running::start_in(dir, &v1);
    let out = d.path("out.jsonl");
    assert!(
        wait_until(WAIT, || has(&out, "a-0") && has(&out, "b-0")),
        "log:\n{}",
        d.log_text()
    );
    let only_a = config(
        d.dir.path(),
        "",
        &sim.url(),
        &[in_namespace(WatchDef::pods("wa", "out"), "a")],
    );
    std::fs::write(&d.config, only_a).unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(WAIT, || d.log_text().contains("removed wb")),
        "log:\n{}",
        d.log_text()
    );
    sim.create(&pods, "b", "b-1", &[], json!({}));
    let before = sim.requests().len();
    std::fs::write(&d.config, both(d.dir.path())).unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(WAIT, || has(&out, "b-1")),
        "log:\n{}",
        d.log_text()
    );
    assert!(
        d.log_text()
            .contains("watch wb: resuming from the checkpoint"),
        "{}",
        d.log_text()
    );
    let b = requests_in(&sim, before, "b");
    assert!(
        b.iter().all(|r| r.contains("watch=")),
        "wb listed again instead of resuming: {b:?}"
    );
}
