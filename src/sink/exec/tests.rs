//! Real `/bin/sh` children on a local `mio::Poll`. Every loop is bounded in
//! time: `drive` panics past its limit instead of hanging the test run.

use super::*;
use crate::sink::EventMeta;
use crate::tokens::TokenAllocator;
use mio::{Events, Poll, Token};
use signal_hook::consts::SIGCHLD;
use signal_hook_mio::v1_0::Signals;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

const SIGNALS: Token = Token(0);
/// How often the test loop turns even when nothing happens: the "other
/// work" a stalled run would starve.
const TICK: Duration = Duration::from_millis(10);

struct Harness {
    poll: Poll,
    events: Events,
    tokens: TokenAllocator,
    signals: Option<Signals>,
}

#[derive(Debug, Default)]
struct LoopStats {
    turns: u64,
    /// The longest single call into a run (`on_ready`, `on_timer`, …).
    max_dispatch: Duration,
}

impl Harness {
    fn new() -> Self {
        Harness {
            poll: Poll::new().expect("poll"),
            events: Events::with_capacity(64),
            tokens: TokenAllocator::starting_at(1),
            signals: None,
        }
    }

    /// With SIGCHLD delivered through signal-hook-mio, as the daemon does
    /// when pidfds are unavailable.
    fn with_sigchld() -> Self {
        let mut h = Harness::new();
        let mut signals = Signals::new([SIGCHLD]).expect("signals");
        h.poll
            .registry()
            .register(&mut signals, SIGNALS, mio::Interest::READABLE)
            .expect("register signals");
        h.signals = Some(signals);
        h
    }

    fn spawn_with(
        &mut self,
        spec: &HookSpec,
        stdin: Vec<u8>,
        detection: ExitDetection,
    ) -> io::Result<HookRun> {
        let env = hook_env(&meta(), 1, spec);
        let label = format!("sink {}, watch pods, default/web-1", spec.sink);
        let options = SpawnOptions::new(spec, &env, label)
            .stdin(stdin)
            .detection(detection);
        HookRun::spawn(
            options,
            self.poll.registry(),
            &mut self.tokens,
            Instant::now(),
        )
    }

    fn spawn(&mut self, spec: &HookSpec, stdin: Vec<u8>) -> HookRun {
        self.spawn_with(spec, stdin, ExitDetection::PidfdOrSigchld)
            .expect("spawn")
    }

    /// Turns the loop until `done(runs)` or panics after `limit`.
    fn drive(
        &mut self,
        runs: &mut [&mut HookRun],
        limit: Duration,
        done: impl Fn(&[&mut HookRun]) -> bool,
    ) -> LoopStats {
        let give_up = Instant::now() + limit;
        let mut stats = LoopStats::default();
        let note = |started: Instant, stats: &mut LoopStats| {
            stats.max_dispatch = stats.max_dispatch.max(started.elapsed());
        };
        while !done(runs) {
            let now = Instant::now();
            assert!(now < give_up, "runs not done within {limit:?}");
            let mut wait = TICK.min(give_up - now);
            for run in runs.iter() {
                if let Some(d) = run.deadline() {
                    wait = wait.min(d.saturating_duration_since(now));
                }
            }
            match self.poll.poll(&mut self.events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("poll: {e}"),
            }
            stats.turns += 1;
            let registry = self.poll.registry();
            for event in self.events.iter() {
                let token = event.token();
                if token == SIGNALS {
                    if let Some(signals) = self.signals.as_mut() {
                        signals.pending().for_each(drop);
                    }
                    for run in runs.iter_mut() {
                        let t = Instant::now();
                        run.on_sigchld(registry);
                        note(t, &mut stats);
                    }
                } else if let Some(run) = runs.iter_mut().find(|r| r.owns(token)) {
                    let t = Instant::now();
                    run.on_ready(registry, token);
                    note(t, &mut stats);
                }
            }
            let now = Instant::now();
            for run in runs.iter_mut() {
                if run.deadline().is_some_and(|d| d <= now) {
                    let t = Instant::now();
                    run.on_timer(now, registry);
                    note(t, &mut stats);
                }
            }
        }
        stats
    }

    fn finish(&mut self, run: &mut HookRun, limit: Duration) -> (HookOutcome, Duration) {
        let started = run.started();
        self.drive(&mut [run], limit, |r| r[0].outcome().is_some());
        (run.outcome().cloned().expect("outcome"), started.elapsed())
    }
}

fn meta() -> EventMeta {
    EventMeta {
        watch: "pods".into(),
        cluster: "local".into(),
        event_type: "MODIFIED",
        origin: "watch",
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: "default".into(),
        name: "web-1".into(),
        uid: "1f6e-42".into(),
        resource_version: "1234".into(),
    }
}

/// `sh -c script sh args…`: `$1`… are the args.
fn sh(script: &str, args: &[&Path]) -> HookSpec {
    let mut command = vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
    command.push("sh".to_owned());
    command.extend(args.iter().map(|a| a.display().to_string()));
    HookSpec {
        sink: "on-change".into(),
        command,
        working_dir: None,
        env: vec![("CLUSTER_NAME".into(), "prod".into())],
        timeout: Duration::from_secs(10),
        kill_grace: Duration::from_secs(2),
        output_cap: 64 << 10,
        leftovers: Leftovers::Kill,
    }
}

/// Dead: gone, or a zombie waiting for its (new) parent to reap it.
fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn wait_dead(pid: i32, limit: Duration) -> bool {
    let give_up = Instant::now() + limit;
    while Instant::now() < give_up {
        if is_dead(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    is_dead(pid)
}

/// Reads a pid a hook wrote to `path`, waiting a little for it to appear.
fn read_pid(path: &Path) -> i32 {
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(pid) = s.trim().parse() {
                return pid;
            }
        }
        assert!(Instant::now() < give_up, "no pid in {}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn stdin_is_received_exactly_then_eof() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stdin");
    // 1 MiB of every byte value: many WRITABLE edges, no text assumptions.
    let input: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let mut h = Harness::new();
    let mut run = h.spawn(&sh("cat > \"$1\"", &[&out]), input.clone());
    let (outcome, _) = h.finish(&mut run, Duration::from_secs(10));
    assert_eq!(outcome, HookOutcome::Exited { code: 0 });
    assert!(outcome.success());
    assert_eq!(run.stdin_written(), input.len());
    assert_eq!(std::fs::read(&out).unwrap(), input);
}

#[test]
fn environment_is_exactly_base_event_and_operator_env() {
    // Secrets in the daemon's environment must not reach the hook.
    std::env::set_var("KWATCHD_SECRET_TEST", "s3cr3t");
    std::env::set_var("KUBE_TOKEN", "t0ken");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let spec = sh("env > \"$1\"", &[&out]);
    let expected: BTreeMap<String, String> = hook_env(&meta(), 1, &spec).into_iter().collect();
    let mut h = Harness::new();
    let mut run = h.spawn(&spec, Vec::new());
    let (outcome, _) = h.finish(&mut run, Duration::from_secs(10));
    assert_eq!(outcome, HookOutcome::Exited { code: 0 });

    let text = std::fs::read_to_string(&out).unwrap();
    let mut got: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // dash exports the working directory it starts in; not ours.
    got.remove("PWD");
    assert_eq!(got, expected);
    assert!(!got.contains_key("KWATCHD_SECRET_TEST"));
    assert!(!got.contains_key("KUBE_TOKEN"));
    assert_eq!(got["KWATCHD_NAME"], "web-1");
    assert_eq!(got["KWATCHD_EVENT"], "MODIFIED");
    assert_eq!(got["KWATCHD_BATCH_SIZE"], "1");
    assert_eq!(got["CLUSTER_NAME"], "prod");
    assert!(got.contains_key("PATH"));
}

#[test]
fn exit_code_and_signal_are_reported() {
    let mut h = Harness::new();
    let mut a = h.spawn(&sh("echo bye; exit 7", &[]), b"x".to_vec());
    let mut b = h.spawn(&sh("kill -KILL $$", &[]), Vec::new());
    // Whether pidfds work here decides the path; on this kernel they should.
    let pidfd_here = super::proc::pidfd_open(std::process::id() as libc::pid_t).is_ok();
    assert_eq!(a.uses_pidfd(), pidfd_here);
    h.drive(&mut [&mut a, &mut b], Duration::from_secs(10), |r| {
        r.iter().all(|r| r.outcome().is_some())
    });
    assert_eq!(a.outcome(), Some(&HookOutcome::Exited { code: 7 }));
    assert!(!a.outcome().unwrap().success());
    assert_eq!(a.stdout_stats().received, 4);
    assert_eq!(
        b.outcome(),
        Some(&HookOutcome::Signalled {
            signal: libc::SIGKILL
        })
    );
}

#[test]
fn timeout_sends_sigterm_to_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg");
    let mut spec = sh("sleep 1000 & echo $! > \"$1\"; wait", &[&pidfile]);
    spec.timeout = Duration::from_millis(300);
    spec.kill_grace = Duration::from_secs(5);
    let mut h = Harness::new();
    let mut run = h.spawn(&spec, Vec::new());
    let bg = read_pid(&pidfile);
    let (outcome, took) = h.finish(&mut run, Duration::from_secs(10));
    assert_eq!(
        outcome,
        HookOutcome::TimedOut {
            killed_with: libc::SIGTERM
        }
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(
        took < Duration::from_secs(3),
        "SIGTERM should have done: {took:?}"
    );
    assert!(
        wait_dead(bg, Duration::from_secs(2)),
        "background sleep {bg} survived"
    );
}

#[test]
fn a_hook_that_ignores_sigterm_gets_sigkill_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg");
    // The ignored TERM is inherited by the background sleep too.
    let mut spec = sh(
        "trap '' TERM; sleep 1000 & echo $! > \"$1\"; wait",
        &[&pidfile],
    );
    spec.timeout = Duration::from_millis(200);
    spec.kill_grace = Duration::from_millis(300);
    let mut h = Harness::new();
    let mut run = h.spawn(&spec, Vec::new());
    let bg = read_pid(&pidfile);
    let (outcome, took) = h.finish(&mut run, Duration::from_secs(10));
    assert_eq!(
        outcome,
        HookOutcome::TimedOut {
            killed_with: libc::SIGKILL
        }
    );
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(
        wait_dead(bg, Duration::from_secs(2)),
        "background sleep {bg} survived"
    );
}

#[test]
fn unread_multi_megabyte_stdin_stalls_nothing() {
    let big = vec![b'x'; 4 << 20];
    let mut h = Harness::new();
    // Never reads, never exits: only the timeout ends it.
    let mut stuck_spec = sh("exec sleep 1000", &[]);
    stuck_spec.timeout = Duration::from_millis(1500);
    let t = Instant::now();
    let mut stuck = h.spawn(&stuck_spec, big.clone());
    assert!(t.elapsed() < Duration::from_millis(500), "spawn blocked");
    // Never reads, exits by itself.
    let mut quitter = h.spawn(&sh("sleep 0.3; exit 3", &[]), big.clone());
    // A well-behaved hook on the same loop.
    let mut other = h.spawn(&sh("cat > /dev/null; echo done", &[]), b"{}\n".to_vec());

    let stats = h.drive(
        &mut [&mut stuck, &mut quitter, &mut other],
        Duration::from_secs(10),
        |r| r[1].outcome().is_some() && r[2].outcome().is_some(),
    );
    assert_eq!(other.outcome(), Some(&HookOutcome::Exited { code: 0 }));
    assert_eq!(quitter.outcome(), Some(&HookOutcome::Exited { code: 3 }));
    assert!(
        stuck.outcome().is_none(),
        "the stuck hook cannot be done yet"
    );
    assert!(stuck.stdin_written() < big.len());
    assert!(quitter.stdin_written() < big.len());
    // The loop kept turning at its tick and no call held it.
    assert!(stats.turns >= 10, "{stats:?}");
    assert!(stats.max_dispatch < Duration::from_millis(100), "{stats:?}");

    let stats = h.drive(&mut [&mut stuck], Duration::from_secs(10), |r| {
        r[0].outcome().is_some()
    });
    assert_eq!(
        stuck.outcome(),
        Some(&HookOutcome::TimedOut {
            killed_with: libc::SIGTERM
        })
    );
    assert!(stats.max_dispatch < Duration::from_millis(100), "{stats:?}");
}

#[test]
fn output_over_the_cap_is_truncated_and_drained() {
    let mut spec = sh(
        "yes 'a line of output' | head -c 3000000; echo oops >&2; exit 0",
        &[],
    );
    spec.output_cap = 4096;
    let mut h = Harness::new();
    let mut run = h.spawn(&spec, Vec::new());
    let started = run.started();
    let stats = h.drive(&mut [&mut run], Duration::from_secs(20), |r| {
        r[0].outcome().is_some()
    });
    assert_eq!(run.outcome(), Some(&HookOutcome::Exited { code: 0 }));
    let out = run.stdout_stats();
    assert_eq!(out.received, 3_000_000);
    assert_eq!(out.logged, 4096);
    assert!(out.truncated);
    let err = run.stderr_stats();
    assert_eq!((err.received, err.logged, err.truncated), (5, 5, false));
    // Reading yields to the loop between budgets.
    assert!(stats.max_dispatch < Duration::from_millis(200), "{stats:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn spawn_failures_name_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new();

    let mut spec = sh("true", &[]);
    spec.command = vec!["/nonexistent/kwatchd-hook".into(), "--verbose".into()];
    let err = h
        .spawn_with(&spec, Vec::new(), ExitDetection::PidfdOrSigchld)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/kwatchd-hook"), "{msg}");
    assert!(msg.contains("sink on-change"), "{msg}");

    let script = dir.path().join("not-executable");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    spec.command = vec![script.display().to_string()];
    let err = h
        .spawn_with(&spec, Vec::new(), ExitDetection::PidfdOrSigchld)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("not-executable"), "{err}");

    let mut spec = sh("true", &[]);
    spec.working_dir = Some(dir.path().join("missing-dir"));
    let err = h
        .spawn_with(&spec, Vec::new(), ExitDetection::PidfdOrSigchld)
        .unwrap_err();
    assert!(err.to_string().contains("missing-dir"), "{err}");

    spec.command.clear();
    let err = h
        .spawn_with(&spec, Vec::new(), ExitDetection::PidfdOrSigchld)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn working_dir_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh("pwd > here", &[]);
    spec.working_dir = Some(dir.path().to_owned());
    let mut h = Harness::new();
    let mut run = h.spawn(&spec, Vec::new());
    let (outcome, _) = h.finish(&mut run, Duration::from_secs(10));
    assert!(outcome.success());
    let here = std::fs::read_to_string(dir.path().join("here")).unwrap();
    assert_eq!(
        Path::new(here.trim()).canonicalize().unwrap(),
        dir.path().canonicalize().unwrap()
    );
}

#[test]
fn sigchld_fallback_reaps_every_exit() {
    let mut h = Harness::with_sigchld();
    let spawn = |h: &mut Harness, spec: &HookSpec, stdin: &[u8]| {
        h.spawn_with(spec, stdin.to_vec(), ExitDetection::SigchldOnly)
            .expect("spawn")
    };
    // Several exits close together: one SIGCHLD may stand for all of them.
    let mut a = spawn(&mut h, &sh("cat; exit 1", &[]), b"in\n");
    let mut b = spawn(&mut h, &sh("exit 2", &[]), b"");
    let mut c = spawn(&mut h, &sh("echo out; echo err >&2", &[]), b"");
    let mut mut_timeout = sh("exec sleep 1000", &[]);
    mut_timeout.timeout = Duration::from_millis(200);
    let mut d = spawn(&mut h, &mut_timeout, b"");
    assert!(!a.uses_pidfd() && !d.uses_pidfd());
    h.drive(
        &mut [&mut a, &mut b, &mut c, &mut d],
        Duration::from_secs(10),
        |r| r.iter().all(|r| r.outcome().is_some()),
    );
    assert_eq!(a.outcome(), Some(&HookOutcome::Exited { code: 1 }));
    assert_eq!(b.outcome(), Some(&HookOutcome::Exited { code: 2 }));
    assert_eq!(c.outcome(), Some(&HookOutcome::Exited { code: 0 }));
    assert_eq!(
        d.outcome(),
        Some(&HookOutcome::TimedOut {
            killed_with: libc::SIGTERM
        })
    );
    assert_eq!(a.stdout_stats().received, 3);
}

#[test]
fn a_leftover_holding_the_output_is_killed_when_the_hook_exits() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg");
    // The background sleep inherits the hook's stdout and holds it open.
    let mut spec = sh("sleep 1000 & echo $! > \"$1\"; exit 0", &[&pidfile]);
    spec.kill_grace = Duration::from_secs(5);
    assert_eq!(spec.leftovers, Leftovers::Kill, "the default");
    let mut h = Harness::new();
    let mut run = h.spawn(&spec, Vec::new());
    let (outcome, took) = h.finish(&mut run, Duration::from_secs(10));
    let bg = read_pid(&pidfile);
    let dead = wait_dead(bg, Duration::from_secs(2));
    if !dead {
        // SAFETY: plain syscall; `bg` is the sleep the hook started.
        unsafe { libc::kill(bg, libc::SIGKILL) };
    }
    assert_eq!(outcome, HookOutcome::Exited { code: 0 });
    // Not held until the grace: the pipe closed with the leftover.
    assert!(took < spec.kill_grace, "{took:?}");
    assert!(dead, "background sleep {bg} outlived the hook");
}

#[test]
fn a_kept_leftover_holding_the_output_is_abandoned_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg");
    let mut spec = sh("sleep 1000 & echo $! > \"$1\"; exit 0", &[&pidfile]);
    spec.kill_grace = Duration::from_millis(300);
    spec.leftovers = Leftovers::Keep;
    let mut h = Harness::new();
    let mut run = h.spawn(&spec, Vec::new());
    let (outcome, took) = h.finish(&mut run, Duration::from_secs(10));
    let bg = read_pid(&pidfile);
    assert_eq!(outcome, HookOutcome::Exited { code: 0 });
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A hook that ends normally keeps what it started in the background.
    let alive = !is_dead(bg);
    // SAFETY: plain syscall; `bg` is the sleep the hook started.
    unsafe { libc::kill(bg, libc::SIGKILL) };
    assert!(alive, "background process was killed");
}

#[test]
fn abort_kills_now_and_still_reaps() {
    let mut h = Harness::new();
    let mut run = h.spawn(&sh("exec sleep 1000", &[]), b"unread".to_vec());
    // Let it start, then shut down.
    h.drive(&mut [&mut run], Duration::from_secs(5), |r| {
        r[0].started().elapsed() > Duration::from_millis(50)
    });
    run.abort(h.poll.registry());
    let (outcome, took) = h.finish(&mut run, Duration::from_secs(5));
    assert_eq!(
        outcome,
        HookOutcome::Signalled {
            signal: libc::SIGKILL
        }
    );
    assert!(took < Duration::from_secs(3));
    assert!(run.deadline().is_none());
}

#[test]
fn dropping_a_running_hook_kills_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg");
    let mut h = Harness::new();
    let run = h.spawn(
        &sh("sleep 1000 & echo $! > \"$1\"; wait", &[&pidfile]),
        Vec::new(),
    );
    let bg = read_pid(&pidfile);
    let leader = run.pid() as i32;
    let t = Instant::now();
    drop(run);
    assert!(t.elapsed() < Duration::from_millis(200));
    assert!(
        wait_dead(bg, Duration::from_secs(2)),
        "background sleep survived"
    );
    // Reaped by Drop: no zombie of ours left behind.
    assert!(wait_dead(leader, Duration::from_secs(2)));
}

#[test]
fn a_timed_out_hooks_leftover_is_swept_with_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg");
    // The leader dies of SIGTERM; its background child ignores TERM and
    // keeps the output pipes open.
    let mut spec = sh(
        "(trap '' TERM; exec sleep 1000) & echo $! > \"$1\"; wait",
        &[&pidfile],
    );
    spec.timeout = Duration::from_millis(200);
    spec.kill_grace = Duration::from_millis(300);
    let mut h = Harness::new();
    let mut run = h.spawn(&spec, Vec::new());
    let bg = read_pid(&pidfile);
    let (outcome, took) = h.finish(&mut run, Duration::from_secs(10));
    // The hook itself gave up on SIGTERM…
    assert_eq!(
        outcome,
        HookOutcome::TimedOut {
            killed_with: libc::SIGTERM
        }
    );
    // …its leftover held the pipes through the grace, then was killed.
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(
        wait_dead(bg, Duration::from_secs(2)),
        "leftover {bg} survived"
    );
}
