//! File descriptor limits, end to end: the daemon started with a low
//! `RLIMIT_NOFILE` (set in the child before exec, as a shell's `ulimit -n`
//! or a unit's `LimitNOFILE=` would) against the emulator over loopback.

mod common;

use common::*;
use kwatchd_sim::{Sim, SimOptions};
use std::os::unix::process::CommandExt;
use std::time::Duration;

const WATCHES: usize = 100;
/// Below what `WATCHES` connections need.
const LOW: u64 = 64;
const WAIT: Duration = Duration::from_secs(30);

fn hard_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
    l.rlim_max
}

/// The daemon with `WATCHES` pod watches, started with the given limits.
fn start(sim: &Sim, soft: u64, hard: u64) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..WATCHES).map(|i| format!("w{i}")).collect();
    let watches: Vec<WatchDef<'_>> = names
        .iter()
        .map(|n| WatchDef {
            namespace: Some("default"),
            ..WatchDef::pods(n, "out")
        })
        .collect();
    let text = config(dir.path(), "", &sim.url(), &watches);
    Running::start_with(dir, &text, move |command| {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit is async-signal-safe; `limit` is copied in.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    })
}

#[test]
fn a_low_soft_limit_is_raised_to_the_hard_limit_and_every_watch_connects() {
    let hard = hard_limit().min(4096);
    assert!(
        hard > 2 * WATCHES as u64,
        "the test needs a hard limit above {}",
        2 * WATCHES
    );
    let sim = Sim::start(SimOptions::default()).unwrap();
    let d = start(&sim, LOW, hard);
    assert!(
        wait_until(WAIT, || sim.open_watches() == WATCHES),
        "{} of {WATCHES} watches streaming; log:\n{}",
        sim.open_watches(),
        d.log_text()
    );
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("open files: "))
        .unwrap_or_else(|| panic!("no open files line:\n{log}"));
    assert!(
        line.contains(&format!(
            "soft limit raised from {LOW} to {hard} (the hard limit)"
        )) && line.contains(&format!("({WATCHES} configured)")),
        "{line}"
    );
    assert!(!log.contains("Too many open files"), "{log}");
}

#[test]
fn a_limit_that_cannot_be_raised_is_said_once_not_per_attempt() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let mut d = start(&sim, LOW, LOW);
    // Some watches fit, the rest keep retrying with backoff for a while.
    assert!(
        wait_until(WAIT, || sim.open_watches() > 0),
        "log:\n{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_secs(4));
    let log = d.log_text();
    assert!(
        sim.open_watches() < WATCHES,
        "{} watches streaming: the limit did not bite",
        sim.open_watches()
    );
    let said: Vec<&str> = log.lines().filter(|l| l.contains("open files: ")).collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(
        said[0].contains(&format!(
            "limit {LOW} (the hard limit) leaves room for about"
        )) && said[0].contains(&format!("but {WATCHES} are configured"))
            && said[0].contains("LimitNOFILE="),
        "{}",
        said[0]
    );
    // Failed connect attempts are logged at debug level; one warning (at
    // most one a minute) says descriptors ran out.
    let attempts = log
        .lines()
        .filter(|l| l.contains("Too many open files") && l.contains("retrying in"))
        .count();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| {
            (l.contains(" WARN ") || l.contains(" ERROR "))
                && (l.contains("Too many open files") || l.contains("out of file descriptors"))
        })
        .collect();
    assert!(
        warnings.len() == 1 && attempts > 10,
        "{} warnings for {attempts} failed attempts:\n{}",
        warnings.len(),
        warnings.join("\n")
    );
    assert!(
        warnings[0].contains(&format!("out of file descriptors (limit {LOW}, ")),
        "{}",
        warnings[0]
    );
    // Still a working daemon.
    assert!(d.stop().success(), "{}", d.log_text());
}
