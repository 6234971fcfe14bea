//! Restart without missing changes: the real binary is killed (SIGKILL) in
//! the middle of a stream, or stopped, while the emulator keeps changing;
//! after a restart from the same state_dir the sink files must cover every
//! change and every delete.

mod common;

use common::churn::Churn;
use common::history::*;
use common::*;
use kwatchd_sim::{EventType, Fault, FaultRule, HistoryEvent, Resource, Sim, SimOptions};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// One run of the daemon on a directory that outlives it.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, config: &str, run: usize) -> Daemon {
        let path = dir.join("kwatchd.toml");
        fs::write(&path, config).unwrap();
        let log = dir.join(format!("daemon-{run}.log"));
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .env("KWATCHD_LOG_LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(&mut self) -> ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "kwatchd did not stop; log:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- {} ----\n{}", self.log.display(), self.log_text());
        }
    }
}

/// One pod watch feeding two file sinks (each event is acked by both).
fn config_text(dir: &Path, server: &str, extra: &str) -> String {
    format!(
        r#"[daemon]
log_level = "debug"
state_dir = "{state}"

[clusters.test]
server = "{server}"

[[watch]]
name = "pods"
cluster = "test"
api_version = "v1"
resource = "pods"
on_start = "added"
sinks = ["a", "b"]
{initial_list}
{extra}

[sinks.a]
type = "file"
path = "{a}"

[sinks.b]
type = "file"
path = "{b}"
"#,
        // LIST unless a test says otherwise: several tests count LISTs.
        initial_list = if extra.contains("initial_list") {
            ""
        } else {
            "initial_list = \"list\""
        },
        state = dir.join("state").display(),
        a = dir.join("a.jsonl").display(),
        b = dir.join("b.jsonl").display(),
    )
}

fn store_path(dir: &Path) -> PathBuf {
    dir.join("state").join("kwatchd.redb")
}

/// Where the state store says the watch resumes, if it has a position.
fn checkpoint_rv(dir: &Path) -> Option<u64> {
    let positions = kwatchd::state::db::positions(&dir.join("state")).ok()?;
    positions.get("pods")?.as_deref()?.parse().ok()
}

fn rv_of(e: &HistoryEvent) -> u64 {
    e.resource_version.parse().unwrap()
}

/// What a sink file lacks: the final state of every object (its last
/// version, or a DELETED for a deleted one), and every change outside the
/// `lost` windows (history compacted while the daemon was down: only the
/// relist's view of those survives).
fn missing(history: &[HistoryEvent], recs: &[Value], lost: &[(u64, u64)]) -> Vec<String> {
    let reported = Reported::of(recs);
    let mut out = Vec::new();
    let mut last: BTreeMap<&str, &HistoryEvent> = BTreeMap::new();
    for e in history {
        last.insert(&e.uid, e);
        let in_lost = lost
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&rv_of(e)));
        if !in_lost && !reported.has_event(e) {
            out.push(describe(e));
        }
    }
    for (uid, e) in last {
        let ok = match e.event_type {
            EventType::Deleted => reported.deleted(uid),
            _ => reported.has("MODIFIED", uid, &e.resource_version),
        };
        if !ok {
            out.push(format!(
                "final state of {}: {} rv {}",
                e.name,
                e.event_type.as_str(),
                e.resource_version
            ));
        }
    }
    out
}

fn live_pods(sim: &Sim) -> Vec<String> {
    let mut live: BTreeMap<String, bool> = BTreeMap::new();
    for e in pod_history(sim) {
        live.insert(e.name.clone(), e.event_type != EventType::Deleted);
    }
    live.into_iter()
        .filter(|(_, l)| *l)
        .map(|(n, _)| n)
        .collect()
}

/// Changes made while the daemon is down: creates, updates of old and new
/// objects, deletes of objects it knew.
fn mutate_while_down(sim: &Sim, round: usize) {
    let pods = Resource::pods();
    let live = live_pods(sim);
    for i in 0..3 {
        sim.create(
            &pods,
            "default",
            &format!("down{round}-{i}"),
            &[],
            json!({}),
        );
    }
    for name in live.iter().take(3) {
        sim.update(
            &pods,
            "default",
            name,
            json!({"spec": {"down": round}}),
            None,
        );
    }
    sim.update(
        &pods,
        "default",
        &format!("down{round}-0"),
        json!({"spec": {"again": true}}),
        None,
    );
    for name in live.iter().rev().take(2) {
        sim.delete(&pods, "default", name);
    }
}

fn sim_rv(sim: &Sim) -> u64 {
    pod_history(sim).last().map(rv_of).unwrap_or(0)
}

#[test]
fn sigkill_mid_stream_then_restart_misses_no_change_and_no_delete() {
    sigkill_rounds("initial_list = \"list\"");
}

/// The same with streaming lists (sendInitialEvents): the first list and
/// the relist after the compaction are watch streams.
#[test]
fn sigkill_rounds_with_streaming_lists_miss_nothing() {
    sigkill_rounds("initial_list = \"stream\"");
}

fn sigkill_rounds(initial_list: &str) {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let pods = Resource::pods();
    for i in 0..5 {
        sim.create(&pods, "default", &format!("init-{i}"), &[], json!({}));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = config_text(dir, &sim.url(), initial_list);
    let files = [dir.join("a.jsonl"), dir.join("b.jsonl")];
    // History windows the daemon cannot see event by event (compacted
    // while it was down).
    let mut lost: Vec<(u64, u64)> = Vec::new();
    let mut run = 0;
    // Three kills in the middle of a stream, then one after which the
    // history is compacted, so the resume gets 410 and relists.
    for round in 0..4 {
        let mut d = Daemon::start(dir, &text, run);
        run += 1;
        if round > 0 {
            assert!(
                wait_until(WAIT, || d
                    .log_text()
                    .contains("resuming from the checkpoint")),
                "round {round}: no resume; log:\n{}",
                d.log_text()
            );
        }
        // Changes before the first list are only seen as the list's state.
        // (A streaming list's stream is open once it has listed.)
        assert!(
            wait_until(WAIT, || {
                let log = d.log_text();
                log.contains("streaming from") || log.contains("listed ")
            }),
            "round {round}: not streaming; log:\n{}",
            d.log_text()
        );
        // A checkpoint newer than the last restart exists before the kill.
        let before = checkpoint_rv(dir);
        let mutator = Churn::start(
            sim.handle(),
            &format!("r{round}-"),
            live_pods(&sim),
            Duration::from_millis(3),
        );
        assert!(
            wait_until(WAIT, || checkpoint_rv(dir) > before),
            "round {round}: no checkpoint written; log:\n{}",
            d.log_text()
        );
        if round < 3 {
            thread::sleep(Duration::from_millis(200 + 250 * round as u64));
            d.kill9();
            mutator.stop();
            mutate_while_down(&sim, round);
        } else {
            // Killed right after the churn, before the next checkpoint
            // write: the objects created in the last second are at most
            // unconfirmed in the checkpoint (or only in the journal). All
            // of this round's objects are deleted while the daemon is down
            // and the history is compacted, so only the checkpoint and the
            // journal can tell the relist to report their DELETED.
            thread::sleep(Duration::from_millis(450));
            mutator.stop();
            // Every change made so far reached a sink (the last ones were
            // made milliseconds ago): an object the daemon never saw,
            // created and deleted while it is down with the history
            // compacted, cannot be reported by anyone (under load the
            // daemon may be a few milliseconds behind; this is no wait
            // for the next save, which comes a second later).
            let so_far = pod_history(&sim);
            assert!(
                wait_until(WAIT, || missing(&so_far, &file_records(&files[0]), &lost)
                    .is_empty()),
                "round {round}: not reported before the kill: {:?}; log:\n{}",
                missing(&so_far, &file_records(&files[0]), &lost),
                d.log_text()
            );
            d.kill9();
            let from = checkpoint_rv(dir).unwrap();
            mutate_while_down(&sim, round);
            for name in live_pods(&sim) {
                if name.starts_with(&format!("r{round}-")) {
                    sim.delete(&Resource::pods(), "default", &name);
                }
            }
            lost.push((from + 1, sim_rv(&sim)));
            sim.compact();
        }
    }
    let mut d = Daemon::start(dir, &text, run);
    let history = pod_history(&sim);
    for f in &files {
        assert!(
            wait_until(WAIT, || missing(&history, &file_records(f), &lost)
                .is_empty()),
            "{}: missing {:?}; log:\n{}",
            f.display(),
            missing(&history, &file_records(f), &lost),
            d.log_text()
        );
    }
    let log = d.log_text();
    assert!(
        log.contains("is no longer available") || log.contains("expired"),
        "the last resume did not relist; log:\n{log}"
    );
    // Objects deleted while the daemon was away and the history was gone
    // are reported with their last known name.
    let recs = file_records(&files[0]);
    assert!(recs
        .iter()
        .any(|r| r["origin"] == "relist" && r["final_state_unknown"] == true));
    assert!(d.stop().success());
    for f in &files {
        // Every torn line left by the kills was repaired: the whole file parses.
        let all = records(f);
        assert_eq!(all.len(), file_records(f).len());
        assert!(missing(&history, &all, &lost).is_empty());
    }
    let repaired = (0..=run)
        .map(|r| fs::read_to_string(dir.join(format!("daemon-{r}.log"))).unwrap_or_default())
        .filter(|l| l.contains("partial record"))
        .count();
    eprintln!("{repaired} of {run} restarts repaired a torn last line");
    let recs = records(&files[0]);
    let distinct: BTreeSet<_> = recs.iter().map(key).collect();
    eprintln!(
        "{} records, {} distinct, {} history events",
        recs.len(),
        distinct.len(),
        history.len()
    );
}

#[test]
fn graceful_stop_and_restart_gives_every_change_exactly_once() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let pods = Resource::pods();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = config_text(dir, &sim.url(), "");
    let mut d = Daemon::start(dir, &text, 0);
    assert!(wait_until(WAIT, || sim.open_watches() == 1));
    for i in 0..10 {
        sim.create(&pods, "default", &format!("p{i}"), &[], json!({}));
    }
    for i in 0..10 {
        sim.update(&pods, "default", &format!("p{i}"), json!({"v": 1}), None);
    }
    let live = pod_history(&sim).len();
    assert!(wait_until(WAIT, || count_records(&dir.join("b.jsonl")) == live));
    // More while it stops: the drain delivers what was read, the rest is
    // ahead of the checkpoint.
    for i in 0..5 {
        sim.delete(&pods, "default", &format!("p{i}"));
    }
    let status = d.stop();
    assert!(status.success(), "{status:?}; log:\n{}", d.log_text());
    mutate_while_down(&sim, 0);
    let mut d = Daemon::start(dir, &text, 1);
    let history = pod_history(&sim);
    for f in ["a.jsonl", "b.jsonl"] {
        let f = dir.join(f);
        assert!(
            wait_until(WAIT, || count_records(&f) >= history.len()),
            "log:\n{}",
            d.log_text()
        );
    }
    // Anything extra would have arrived by now too.
    thread::sleep(Duration::from_millis(300));
    assert!(d.stop().success());
    assert!(d.log_text().contains("resuming from the checkpoint"));
    let expected: Vec<(String, String, String)> = history
        .iter()
        .map(|e| {
            (
                e.event_type.as_str().to_owned(),
                e.uid.clone(),
                e.resource_version.clone(),
            )
        })
        .collect();
    for f in ["a.jsonl", "b.jsonl"] {
        let got: Vec<_> = records(&dir.join(f)).iter().map(key).collect();
        assert_eq!(got, expected, "{f}: a gap or a duplicate");
    }
    assert_eq!(checkpoint_rv(dir), history.last().map(rv_of));
}

/// Starts, lets the initial list land, stops cleanly; returns the records.
fn first_run(dir: &Path, text: &str, n: usize) -> usize {
    let mut d = Daemon::start(dir, text, 0);
    assert!(
        wait_until(WAIT, || count_records(&dir.join("a.jsonl")) == n
            && checkpoint_rv(dir).is_some()),
        "log:\n{}",
        d.log_text()
    );
    assert!(d.stop().success());
    count_records(&dir.join("a.jsonl"))
}

/// Three pods p0..p2, listed and checkpointed by a first run.
fn three_pods_first_run(sim: &Sim, dir: &Path, text: &str) {
    for i in 0..3 {
        sim.create(
            &Resource::pods(),
            "default",
            &format!("p{i}"),
            &[],
            json!({}),
        );
    }
    assert_eq!(first_run(dir, text, 3), 3);
}

fn lists(sim: &Sim) -> usize {
    sim.requests().iter().filter(|r| !r.is_watch).count()
}

#[test]
fn a_corrupt_state_store_is_reported_set_aside_and_the_watch_lists_afresh() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = config_text(dir, &sim.url(), "");
    three_pods_first_run(&sim, dir, &text);
    let store = store_path(dir);
    let mut bytes = fs::read(&store).unwrap();
    bytes[..64].fill(0x5a);
    fs::write(&store, bytes).unwrap();
    let listed = lists(&sim);
    let mut d = Daemon::start(dir, &text, 1);
    assert!(
        wait_until(WAIT, || count_records(&dir.join("a.jsonl")) == 6),
        "log:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains("state store") && log.contains("ignored") && log.contains("corrupt"),
        "{log}"
    );
    assert!(dir.join("state/kwatchd.redb.bad").exists());
    assert_eq!(lists(&sim), listed + 1, "no fresh list");
    let recs = records(&dir.join("a.jsonl"));
    assert!(recs[3..].iter().all(|r| r["origin"] == "list"));
    // The fresh state is checkpointed again.
    assert!(wait_until(WAIT, || checkpoint_rv(dir).is_some()));
    assert!(d.stop().success());
}

#[test]
fn a_checkpoint_position_the_server_refuses_is_relisted_and_diffed() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = config_text(dir, &sim.url(), "");
    three_pods_first_run(&sim, dir, &text);
    let rv = checkpoint_rv(dir).unwrap();
    // While the daemon is down, p1 goes, and the server stops accepting the
    // checkpoint's position (e.g. it came from a server that numbers
    // differently): a WATCH from it is refused for good.
    sim.delete(&Resource::pods(), "default", "p1");
    sim.add_fault(FaultRule {
        path_contains: format!("resourceVersion={rv}&"),
        times: 1000,
        fault: Fault::InvalidResourceVersion,
    });
    let listed = lists(&sim);
    let mut d = Daemon::start(dir, &text, 1);
    assert!(
        wait_until(WAIT, || count_records(&dir.join("a.jsonl")) == 4),
        "the refused position was not relisted; log:\n{}",
        d.log_text()
    );
    let recs = records(&dir.join("a.jsonl"));
    let last = &recs[3];
    assert_eq!(
        (last["type"].as_str(), last["origin"].as_str()),
        (Some("DELETED"), Some("relist")),
        "{last}"
    );
    assert_eq!(last["object"]["metadata"]["name"], "p1");
    let log = d.log_text();
    assert!(log.contains("resuming from the checkpoint"), "{log}");
    assert!(
        log.contains(&format!("refused resourceVersion {rv}")),
        "the log does not say why it relists:\n{log}"
    );
    assert!(lists(&sim) > listed, "no relist");
    // Streaming resumes from the relist's position.
    sim.create(&Resource::pods(), "default", "p3", &[], json!({}));
    assert!(wait_until(WAIT, || count_records(&dir.join("a.jsonl")) == 5));
    assert!(d.stop().success());
}

#[test]
fn a_checkpoint_for_another_definition_is_ignored() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    for i in 0..3 {
        sim.create(
            &Resource::pods(),
            "default",
            &format!("p{i}"),
            &[("tier", "web")],
            json!({}),
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert_eq!(first_run(dir, &config_text(dir, &sim.url(), ""), 3), 3);
    let listed = lists(&sim);
    // Same objects, but another selector: the old position means nothing.
    let text = config_text(dir, &sim.url(), "label_selector = \"tier=web\"");
    let mut d = Daemon::start(dir, &text, 1);
    assert!(
        wait_until(WAIT, || count_records(&dir.join("a.jsonl")) == 6),
        "log:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains("another definition") && log.contains("label_selector"),
        "{log}"
    );
    assert_eq!(lists(&sim), listed + 1);
    assert!(d.stop().success());
    // Changing only the sinks or the event filter keeps the checkpoint.
    let text = config_text(
        dir,
        &sim.url(),
        "label_selector = \"tier=web\"\nevents = [\"ADDED\", \"DELETED\"]",
    );
    let listed = lists(&sim);
    let mut d = Daemon::start(dir, &text, 2);
    assert!(wait_until(WAIT, || d
        .log_text()
        .contains("resuming from the checkpoint")));
    assert!(wait_until(WAIT, || d.log_text().contains("streaming from")));
    assert_eq!(lists(&sim), listed);
    assert!(d.stop().success());
}

#[test]
fn a_torn_last_line_in_a_file_sink_is_repaired_at_start() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    for i in 0..2 {
        sim.create(
            &Resource::pods(),
            "default",
            &format!("p{i}"),
            &[],
            json!({}),
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let a = dir.join("a.jsonl");
    fs::write(&a, "{\"complete\":1}\n{\"torn").unwrap();
    let mut d = Daemon::start(dir, &config_text(dir, &sim.url(), ""), 0);
    assert!(
        wait_until(WAIT, || count_records(&a) == 3),
        "log:\n{}",
        d.log_text()
    );
    let recs = records(&a);
    assert_eq!(recs[0], json!({"complete": 1}));
    assert_eq!(recs[1]["type"], "ADDED");
    assert!(d.log_text().contains("cut 6 bytes"), "{}", d.log_text());
    assert!(d.stop().success());
    let names: HashMap<String, usize> = recs[1..].iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r["object"]["metadata"]["name"].as_str().unwrap().to_owned())
            .or_default() += 1;
        m
    });
    assert_eq!(names.len(), 2);
}

#[test]
fn a_hook_aborted_at_shutdown_is_not_acknowledged_and_runs_again_after_restart() {
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::start(SimOptions::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hang = dir.join("hang");
    let hooked = dir.join("hooked.jsonl");
    let hook = dir.join("hook");
    fs::write(
        &hook,
        format!(
            "#!/bin/sh\nif [ -e \"{}\" ]; then cat >/dev/null; exec sleep 1000; fi\ncat >> \"{}\"\n",
            hang.display(),
            hooked.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(&hang, "").unwrap();
    let text = format!(
        r#"[daemon]
log_level = "debug"
state_dir = "{state}"

[clusters.test]
server = "{server}"

[[watch]]
name = "pods"
cluster = "test"
api_version = "v1"
resource = "pods"
on_start = "skip"
initial_list = "list"
sinks = ["a", "hook"]

[sinks.a]
type = "file"
path = "{a}"

[sinks.hook]
type = "exec"
command = ["{hook}"]
timeout = "60s"
"#,
        state = dir.join("state").display(),
        server = sim.url(),
        a = dir.join("a.jsonl").display(),
        hook = hook.display(),
    );
    let mut d = Daemon::start(dir, &text, 0);
    assert!(wait_until(WAIT, || d.log_text().contains("streaming from")));
    assert!(wait_until(WAIT, || checkpoint_rv(dir).is_some()));
    let listed = checkpoint_rv(dir);
    let pod = sim.create(&Resource::pods(), "default", "slow", &[], json!({}));
    // The file has it; the hook hangs on it.
    assert!(wait_until(WAIT, || count_records(&dir.join("a.jsonl")) == 1));
    assert!(wait_until(WAIT, || d.log_text().contains("hook started")));
    // Stop, and stop again at once: the running hook is killed.
    unsafe {
        libc::kill(d.child.id() as i32, libc::SIGTERM);
    }
    assert!(wait_until(WAIT, || d.log_text().contains("stopping:")));
    assert!(d.stop().success(), "log:\n{}", d.log_text());
    assert!(d.log_text().contains("not delivered"), "{}", d.log_text());
    assert_eq!(
        checkpoint_rv(dir),
        listed,
        "the checkpoint acknowledged an event its hook never finished"
    );
    // Next start: the hook works and gets the event again.
    fs::remove_file(&hang).unwrap();
    let mut d = Daemon::start(dir, &text, 1);
    assert!(
        wait_until(WAIT, || count_records(&hooked) == 1),
        "log:\n{}",
        d.log_text()
    );
    let got = records(&hooked);
    assert_eq!(got[0]["object"]["metadata"]["uid"], pod.uid.as_str());
    assert_eq!(
        checkpoint_rv(dir).map(|_| ()),
        Some(()),
        "a checkpoint still exists"
    );
    assert!(wait_until(WAIT, || checkpoint_rv(dir)
        == pod.resource_version.parse().ok()));
    assert!(d.stop().success());
}

/// Issue 14's first hole: a crash before a watch's first position is
/// saved (a slow sink has not handled the first list) must not lose the
/// DELETED of an object the sinks saw. The store knows every object a
/// sink got; the restart lists and reports the difference.
#[test]
fn a_crash_before_the_first_position_loses_no_deleted() {
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::start(SimOptions::default()).unwrap();
    let pods = Resource::pods();
    sim.create(&pods, "default", "first", &[], json!({}));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hang = dir.join("hang");
    let hook = dir.join("hook");
    // Hangs while `hang` exists: the first list is never fully handled.
    fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat >/dev/null\nif [ -e \"{}\" ]; then exec sleep 1000; fi\n",
            hang.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(&hang, "").unwrap();
    let text = format!(
        r#"[daemon]
log_level = "debug"
state_dir = "{state}"

[clusters.test]
server = "{server}"

[[watch]]
name = "pods"
cluster = "test"
api_version = "v1"
resource = "pods"
on_start = "added"
initial_list = "list"
sinks = ["a", "hook"]

[sinks.a]
type = "file"
path = "{a}"

[sinks.hook]
type = "exec"
command = ["{hook}"]
timeout = "60s"
"#,
        state = dir.join("state").display(),
        server = sim.url(),
        a = dir.join("a.jsonl").display(),
        hook = hook.display(),
    );
    let a = dir.join("a.jsonl");
    let mut d = Daemon::start(dir, &text, 0);
    assert!(
        wait_until(WAIT, || d.log_text().contains("streaming from")),
        "log:\n{}",
        d.log_text()
    );
    let second = sim.create(&pods, "default", "second", &[], json!({}));
    assert!(
        wait_until(WAIT, || count_records(&a) == 2),
        "log:\n{}",
        d.log_text()
    );
    d.kill9();
    assert_eq!(checkpoint_rv(dir), None, "a position was saved after all");
    sim.delete(&pods, "default", "second");
    sim.compact();
    fs::remove_file(&hang).unwrap();
    let mut d = Daemon::start(dir, &text, 1);
    let deleted = |recs: &[Value]| {
        recs.iter().any(|r| {
            r["type"] == "DELETED" && r["object"]["metadata"]["uid"] == second.uid.as_str()
        })
    };
    assert!(
        wait_until(WAIT, || deleted(&file_records(&a))),
        "no DELETED for the object the sinks saw; records {:?}; log:\n{}",
        file_records(&a),
        d.log_text()
    );
    assert!(d.stop().success());
}

/// SIGKILL while the store commits large transactions (the first list's
/// 10,000 new objects, then their handled entries): a commit is all there
/// or not at all, so every restart opens the store as it is (nothing set
/// aside), and in the end every object, and the DELETED of every object
/// removed while the daemon was down, is in the sink files.
#[test]
fn sigkill_during_large_commits_leaves_a_usable_store() {
    const PODS: usize = 10_000;
    let sim = Sim::start(SimOptions::default()).unwrap();
    let pods = Resource::pods();
    for i in 0..PODS {
        sim.create(&pods, "default", &format!("p{i}"), &[], json!({}));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = config_text(dir, &sim.url(), "");
    let a = dir.join("a.jsonl");
    let mut deleted = Vec::new();
    for (round, delay) in [0u64, 15, 40, 90, 200].into_iter().enumerate() {
        let mut d = Daemon::start(dir, &text, round);
        // The moment the list is in: its objects are being committed.
        assert!(
            wait_until(WAIT, || {
                let log = d.log_text();
                log.contains("listed ") || log.contains("resuming from")
            }),
            "round {round}: log:\n{}",
            d.log_text()
        );
        thread::sleep(Duration::from_millis(delay));
        d.kill9();
        let log = d.log_text();
        assert!(!log.contains("corrupt"), "round {round}: {log}");
        let name = format!("p{}", round * 7);
        deleted.push(sim.delete(&pods, "default", &name).unwrap().uid);
    }
    sim.compact();
    let mut d = Daemon::start(dir, &text, 99);
    let covered = || {
        let recs = file_records(&a);
        let seen: BTreeSet<&str> = recs
            .iter()
            .filter_map(|r| r["object"]["metadata"]["name"].as_str())
            .collect();
        let gone: BTreeSet<&str> = recs
            .iter()
            .filter(|r| r["type"] == "DELETED")
            .filter_map(|r| r["object"]["metadata"]["uid"].as_str())
            .collect();
        seen.len() == PODS && deleted.iter().all(|u| gone.contains(u.as_str()))
    };
    assert!(
        wait_until(Duration::from_secs(60), covered),
        "objects or deletes missing; log:\n{}",
        d.log_text()
    );
    assert!(!d.log_text().contains("corrupt"), "{}", d.log_text());
    assert!(d.stop().success());
}
