//! Exec, webhook and stdout sinks end to end: the real binary, real child
//! processes, a real loopback HTTP receiver.

mod common;

use common::receiver::Receiver;
use common::*;
use kwatchd_sim::{Resource, Sim, SimOptions};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A config with one cluster, `watches` (TOML) and `sinks` (TOML).
fn config_text(sim: &Sim, watches: &str, sinks: &str) -> String {
    format!("[daemon]\nlog_level = \"debug\"\n\n[clusters.test]\nserver = \"{}\"\n\n{watches}\n{sinks}\n", sim.url())
}

fn watch(name: &str, namespace: &str, sinks: &str) -> String {
    format!(
        "[[watch]]\nname = \"{name}\"\ncluster = \"test\"\napi_version = \"v1\"\nresource = \"pods\"\nnamespace = \"{namespace}\"\non_start = \"skip\"\nsinks = [{sinks}]\n\n"
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn started(sim: &Sim, n: usize) -> bool {
    wait_until(WAIT, || sim.open_watches() >= n)
}

#[test]
fn a_hook_gets_the_record_on_stdin_and_the_event_in_its_environment() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let hook = script(
        dir.path(),
        "hook",
        &format!(
            "env | sort > \"{0}/env-$KWATCHD_NAME\"\ncat > \"{0}/stdin-$KWATCHD_NAME\"",
            out.display()
        ),
    );
    let sinks = format!(
        "[sinks.hook]\ntype = \"exec\"\ncommand = [\"{}\"]\nenv = {{ CLUSTER_NAME = \"prod\" }}\n",
        hook.display()
    );
    let text = config_text(&sim, &watch("pods", "default", "\"hook\""), &sinks);
    let d = Running::start_in(dir, &text);
    assert!(started(&sim, 1), "log:\n{}", d.log_text());
    let created = sim.create(
        &Resource::pods(),
        "default",
        "web-1",
        &[("app", "web")],
        json!({"spec": {}}),
    );
    let stdin = out.join("stdin-web-1");
    assert!(
        wait_until(WAIT, || std::fs::read(&stdin)
            .map(|b| b.ends_with(b"\n"))
            .unwrap_or(false)),
        "log:\n{}",
        d.log_text()
    );
    let record: Value = serde_json::from_slice(&std::fs::read(&stdin).unwrap()).unwrap();
    assert_eq!(record["type"], "ADDED");
    assert_eq!(record["watch"], "pods");
    assert_eq!(record["object"]["metadata"]["uid"], created.uid.as_str());
    assert!(wait_until(WAIT, || out.join("env-web-1").exists()));
    let env: HashMap<String, String> = lines(&out.join("env-web-1"))
        .into_iter()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let want = [
        ("KWATCHD_WATCH", "pods"),
        ("KWATCHD_CLUSTER", "test"),
        ("KWATCHD_EVENT", "ADDED"),
        ("KWATCHD_ORIGIN", "watch"),
        ("KWATCHD_API_VERSION", "v1"),
        ("KWATCHD_KIND", "Pod"),
        ("KWATCHD_NAMESPACE", "default"),
        ("KWATCHD_NAME", "web-1"),
        ("KWATCHD_UID", created.uid.as_str()),
        (
            "KWATCHD_RESOURCE_VERSION",
            created.resource_version.as_str(),
        ),
        ("KWATCHD_BATCH_SIZE", "1"),
        ("CLUSTER_NAME", "prod"),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:?}");
    }
    // Nothing of the daemon's own environment but the minimal base.
    for k in env.keys() {
        assert!(
            k.starts_with("KWATCHD_")
                || ["PATH", "HOME", "LANG", "CLUSTER_NAME", "PWD", "SHLVL", "_"]
                    .contains(&k.as_str()),
            "unexpected variable {k} leaked into the hook"
        );
    }
}

#[test]
fn a_hanging_hook_is_killed_with_its_children_retried_then_dead_lettered() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let pids = dir.path().join("pids");
    let hook = script(
        dir.path(),
        "hang",
        &format!(
            "echo run >> \"{}\"\nsleep 1000 &\necho $! >> \"{}\"\nsleep 1000",
            runs.display(),
            pids.display()
        ),
    );
    let dead = dir.path().join("dead.jsonl");
    let sinks = format!(
        "[sinks.hook]\ntype = \"exec\"\ncommand = [\"{}\"]\ntimeout = \"300ms\"\nkill_grace = \"200ms\"\nretries = 1\non_failure = \"dead_letter\"\ndead_letter = \"{}\"\n",
        hook.display(),
        dead.display()
    );
    let text = config_text(&sim, &watch("pods", "default", "\"hook\""), &sinks);
    let d = Running::start_in(dir, &text);
    assert!(started(&sim, 1));
    sim.create(&Resource::pods(), "default", "stuck", &[], json!({}));
    assert!(
        wait_until(WAIT, || count_records(&dead) == 1),
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(lines(&runs).len(), 2, "one run and one retry");
    let dl: Value = serde_json::from_str(&lines(&dead)[0]).unwrap();
    assert_eq!(dl["record"]["object"]["metadata"]["name"], "stuck");
    assert_eq!(dl["attempts"], 2);
    // The background children died with their process groups.
    for pid in lines(&pids) {
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "child {pid} of a timed-out hook survived");
    }
    let log = d.log_text();
    assert!(
        log.contains("timed out") || log.contains("timeout"),
        "{log}"
    );
}

fn is_alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

#[test]
fn what_a_hook_leaves_holding_its_stdout_is_killed_unless_the_sink_keeps_it() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Each hook backgrounds a sleep that inherits (and holds) its stdout.
    let hook = |name: &str| {
        let pids = dir.path().join(format!("{name}.pids"));
        let path = script(
            dir.path(),
            name,
            &format!("sleep 1000 &\necho $! >> \"{}\"\nexit 0", pids.display()),
        );
        (path, pids)
    };
    let (kill_hook, kill_pids) = hook("kill");
    let (keep_hook, keep_pids) = hook("keep");
    let sinks = format!(
        "[sinks.kill]\ntype = \"exec\"\ncommand = [\"{}\"]\nkill_grace = \"10s\"\n\n\
         [sinks.keep]\ntype = \"exec\"\ncommand = [\"{}\"]\nkill_grace = \"200ms\"\nkill_process_group = false\n",
        kill_hook.display(),
        keep_hook.display()
    );
    let text = config_text(
        &sim,
        &watch("pods", "default", "\"kill\", \"keep\""),
        &sinks,
    );
    let mut d = Running::start_in(dir, &text);
    assert!(started(&sim, 1), "log:\n{}", d.log_text());
    for name in ["a", "b"] {
        sim.create(&Resource::pods(), "default", name, &[], json!({}));
    }
    // Two runs each; the kill sink's second run could only start once the
    // first one's leftover stopped holding the pipe, well before 10 s.
    let ran = wait_until(WAIT, || {
        lines(&kill_pids).len() == 2 && lines(&keep_pids).len() == 2
    });
    let killed = wait_until(Duration::from_secs(5), || {
        lines(&kill_pids).iter().all(|p| !is_alive(p))
    });
    let log = d.log_text();
    let kept = lines(&keep_pids);
    let kept_alive: Vec<bool> = kept.iter().map(|p| is_alive(p)).collect();
    for pid in &kept {
        // SAFETY: plain syscall on a sleep this test's hook started.
        unsafe { libc::kill(pid.parse().unwrap_or(0).max(2), libc::SIGKILL) };
    }
    d.stop();
    assert!(ran, "log:\n{log}");
    assert!(killed, "a leftover of the kill sink survived; log:\n{log}");
    assert_eq!(kept_alive, vec![true, true], "kept leftovers were killed");
    // The kept leftover held stdout past the grace: the log names it.
    assert!(
        log.contains(&format!("by pid {} (sleep)", kept[0])),
        "no log line names the holder {}; log:\n{log}",
        kept[0]
    );
}

#[test]
fn a_hook_failing_twice_then_succeeding_runs_exactly_three_times() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let hook = script(
        dir.path(),
        "flaky",
        &format!(
            "echo run >> \"{0}\"\n[ $(wc -l < \"{0}\") -ge 3 ]",
            runs.display()
        ),
    );
    let sinks = format!(
        "[sinks.hook]\ntype = \"exec\"\ncommand = [\"{}\"]\nretries = 3\n",
        hook.display()
    );
    let text = config_text(&sim, &watch("pods", "default", "\"hook\""), &sinks);
    let d = Running::start_in(dir, &text);
    assert!(started(&sim, 1));
    sim.create(&Resource::pods(), "default", "p", &[], json!({}));
    // Backoff is 1 s base with full jitter: two retries fit well in 10 s.
    assert!(
        wait_until(WAIT, || lines(&runs).len() >= 3),
        "log:\n{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lines(&runs).len(), 3, "log:\n{}", d.log_text());
}

#[test]
fn a_hook_that_never_reads_and_a_huge_record_do_not_stall_another_watch() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hook = script(dir.path(), "deaf", "sleep 5");
    let sinks = format!(
        "[sinks.deaf]\ntype = \"exec\"\ncommand = [\"{}\"]\ntimeout = \"20s\"\n\n[sinks.file]\ntype = \"file\"\npath = \"{}\"\n",
        hook.display(),
        dir.path().join("other.jsonl").display()
    );
    let watches = watch("slow", "a", "\"deaf\"") + &watch("fast", "b", "\"file\"");
    let text = config_text(&sim, &watches, &sinks);
    let d = Running::start_in(dir, &text);
    assert!(started(&sim, 2));
    let pods = Resource::pods();
    sim.create(
        &pods,
        "a",
        "huge",
        &[],
        json!({"spec": {"blob": "z".repeat(3 << 20)}}),
    );
    for i in 0..20 {
        sim.create(&pods, "b", &format!("p{i}"), &[], json!({}));
    }
    let other = d.path("other.jsonl");
    assert!(
        wait_until(Duration::from_secs(4), || count_records(&other) == 20),
        "the other watch stalled behind a hook that does not read: {}; log:\n{}",
        count_records(&other),
        d.log_text()
    );
}

#[test]
fn per_object_order_holds_with_eight_hooks_running_at_once() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order.log");
    // Each run notes its start and end; a short random sleep in between
    // shuffles the completion order across objects.
    let hook = script(
        dir.path(),
        "ordered",
        &format!(
            "echo \"start $KWATCHD_NAME $KWATCHD_RESOURCE_VERSION\" >> \"{0}\"\nsleep 0.0$(( $$ % 5 ))\necho \"end $KWATCHD_NAME $KWATCHD_RESOURCE_VERSION\" >> \"{0}\"",
            log.display()
        ),
    );
    let sinks = format!(
        "[sinks.hook]\ntype = \"exec\"\ncommand = [\"{}\"]\nmax_concurrent = 8\n",
        hook.display()
    );
    let text = config_text(&sim, &watch("pods", "default", "\"hook\""), &sinks);
    let d = Running::start_in(dir, &text);
    assert!(started(&sim, 1));
    let pods = Resource::pods();
    let mut n = 0;
    for round in 0..20 {
        for o in 0..50 {
            if round == 0 {
                sim.create(
                    &pods,
                    "default",
                    &format!("o{o}"),
                    &[],
                    json!({"spec": {"round": round}}),
                );
            } else {
                sim.update(
                    &pods,
                    "default",
                    &format!("o{o}"),
                    json!({"spec": {"round": round}}),
                    None,
                );
            }
            n += 1;
        }
    }
    assert_eq!(n, 1000);
    assert!(
        wait_until(Duration::from_secs(120), || lines(&log)
            .iter()
            .filter(|l| l.starts_with("end"))
            .count()
            == 1000),
        "{} of 1000 runs ended; log:\n{}",
        lines(&log).iter().filter(|l| l.starts_with("end")).count(),
        d.log_text()
    );
    let mut running: HashMap<String, u64> = HashMap::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    let (mut concurrent, mut max_concurrent) = (0usize, 0usize);
    for l in lines(&log) {
        let parts: Vec<&str> = l.split(' ').collect();
        let (what, name, rv) = (
            parts[0],
            parts[1].to_owned(),
            parts[2].parse::<u64>().unwrap(),
        );
        if what == "start" {
            assert!(!running.contains_key(&name), "two runs of {name} overlap");
            assert!(
                last.get(&name).is_none_or(|prev| *prev < rv),
                "{name}: rv {rv} ran after a later one"
            );
            running.insert(name.clone(), rv);
            last.insert(name, rv);
            concurrent += 1;
            max_concurrent = max_concurrent.max(concurrent);
        } else {
            assert_eq!(running.remove(&name), Some(rv));
            concurrent -= 1;
        }
    }
    assert!(
        max_concurrent > 1 && max_concurrent <= 8,
        "max concurrency {max_concurrent}"
    );
}

#[test]
fn batching_delivers_every_event_exactly_once() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got.jsonl");
    let sizes = dir.path().join("sizes");
    let hook = script(
        dir.path(),
        "batch",
        &format!(
            "cat >> \"{}\"\necho \"$KWATCHD_BATCH_SIZE\" >> \"{}\"",
            got.display(),
            sizes.display()
        ),
    );
    let sinks = format!(
        "[sinks.hook]\ntype = \"exec\"\ncommand = [\"{}\"]\nbatch_window = \"200ms\"\nbatch_max = 25\nmax_concurrent = 4\n",
        hook.display()
    );
    let text = config_text(&sim, &watch("pods", "default", "\"hook\""), &sinks);
    let d = Running::start_in(dir, &text);
    assert!(started(&sim, 1));
    let pods = Resource::pods();
    for i in 0..300 {
        sim.create(&pods, "default", &format!("b{i}"), &[], json!({}));
    }
    assert!(
        wait_until(WAIT, || count_records(&got) == 300),
        "{}; log:\n{}",
        count_records(&got),
        d.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    let recs = records(&got);
    assert_eq!(recs.len(), 300);
    let mut names: Vec<String> = recs
        .iter()
        .map(|r| r["object"]["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 300, "duplicates or losses");
    let sizes: Vec<usize> = lines(&sizes).iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 300);
    assert!(sizes.iter().all(|s| *s >= 1 && *s <= 25), "{sizes:?}");
    assert!(sizes.len() < 300, "no batching happened: {sizes:?}");
}

#[test]
fn webhook_retries_503_honours_retry_after_and_stops_on_400() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let receiver = Receiver::start(&[(503, Some(1)), (200, None), (400, None)]);
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    std::env::set_var("KWATCHD_TEST_WEBHOOK_TOKEN", "s3cret");
    let sinks = format!(
        "[sinks.hook]\ntype = \"webhook\"\nurl = \"{}\"\nheaders = {{ Authorization = \"Bearer ${{KWATCHD_TEST_WEBHOOK_TOKEN}}\" }}\nretries = 3\non_failure = \"dead_letter\"\ndead_letter = \"{}\"\n",
        receiver.url("/notify"),
        dead.display()
    );
    let text = config_text(&sim, &watch("pods", "default", "\"hook\""), &sinks);
    let d = Running::start_in(dir, &text);
    assert!(started(&sim, 1));
    let pods = Resource::pods();
    sim.create(&pods, "default", "first", &[], json!({}));
    assert!(
        wait_until(WAIT, || receiver.received().len() >= 2),
        "log:\n{}",
        d.log_text()
    );
    sim.create(&pods, "default", "second", &[], json!({}));
    assert!(
        wait_until(WAIT, || count_records(&dead) == 1),
        "log:\n{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    let got = receiver.received();
    assert_eq!(got.len(), 3, "503 retried once, 400 not retried: {got:?}");
    let waited = got[1].at.duration_since(got[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 not honoured ({waited:?})"
    );
    let first: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(first["object"]["metadata"]["name"], "first");
    assert_eq!(got[0].body, got[1].body, "a retry sends the same record");
    assert_eq!(got[0].path, "/notify");
    let header = |name: &str| {
        got[0]
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("authorization").as_deref(), Some("Bearer s3cret"));
    let dl: Value = serde_json::from_str(&lines(&dead)[0]).unwrap();
    assert_eq!(dl["record"]["object"]["metadata"]["name"], "second");
    assert!(
        !d.log_text().contains("s3cret"),
        "a header secret reached the log"
    );
}

#[test]
fn a_slow_hook_sink_bounds_memory_and_loses_nothing() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got.jsonl");
    let gate = dir.path().join("gate");
    // Blocks until the test opens the gate, then takes everything in batches.
    let hook = script(
        dir.path(),
        "slow",
        &format!(
            "while [ ! -e \"{}\" ]; do sleep 0.05; done\ncat >> \"{}\"",
            gate.display(),
            got.display()
        ),
    );
    let sinks = format!(
        "[sinks.hook]\ntype = \"exec\"\ncommand = [\"{}\"]\ntimeout = \"120s\"\nbatch_window = \"50ms\"\nbatch_max = 500\nqueue_events = 1000\n",
        hook.display()
    );
    let text = config_text(&sim, &watch("pods", "default", "\"hook\""), &sinks);
    let d = Running::start_in(dir, &text);
    assert!(started(&sim, 1));
    let pods = Resource::pods();
    let pad = kwatchd_sim::pod_extra(2000);
    for i in 0..20_000 {
        sim.create(&pods, "default", &format!("p{i}"), &[], pad.clone());
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss = d.rss_kib().unwrap();
    assert!(rss < 64 * 1024, "RSS {rss} KiB with a blocked hook sink");
    std::fs::write(&gate, b"").unwrap();
    assert!(
        wait_until(Duration::from_secs(120), || count_records(&got) == 20_000),
        "{} of 20000; log:\n{}",
        count_records(&got),
        d.log_text()
    );
}

#[test]
fn stdout_sink_writes_records_to_standard_output() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &sim,
        &watch("pods", "default", "\"out\""),
        "[sinks.out]\ntype = \"stdout\"\n",
    );
    let config = dir.path().join("kwatchd.toml");
    std::fs::write(&config, with_state_dir(&text, &dir.path().join("state"))).unwrap();
    let stdout = dir.path().join("stdout");
    let mut child = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(started(&sim, 1));
    sim.create(&Resource::pods(), "default", "shown", &[], json!({}));
    let ok = wait_until(WAIT, || count_records(&stdout) == 1);
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok);
    assert_eq!(records(&stdout)[0]["object"]["metadata"]["name"], "shown");
}

#[test]
fn a_burst_of_events_reaches_a_webhook_with_one_connection() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "[sinks.hook]\ntype = \"webhook\"\nurl = \"{}\"\nmax_concurrent = 1\n",
        receiver.url("/n")
    );
    let text = config_text(&sim, &watch("pods", "default", "\"hook\""), &sinks);
    let d = Running::start_in(dir, &text);
    assert!(started(&sim, 1));
    let pods = Resource::pods();
    for i in 0..300 {
        sim.create(&pods, "default", &format!("p{i}"), &[], json!({}));
    }
    assert!(
        wait_until(WAIT, || receiver.received().len() == 300),
        "{} of 300 delivered; log:\n{}",
        receiver.received().len(),
        d.log_text()
    );
}
