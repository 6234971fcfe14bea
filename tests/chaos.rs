//! Chaos soak: the emulator churns pods and configmaps across namespaces
//! while faults fire at random (seeded), and the real daemon records every
//! event into a file sink. At the end a checker holds the union of the
//! records against the emulator's full history (see `check`).
//!
//! CI runs a short soak with a fixed seed. On demand:
//!
//! ```text
//! KWATCHD_CHAOS_SECS=1200 cargo test --release --test chaos -- --nocapture
//! ```
//!
//! Environment: `KWATCHD_CHAOS_SECS` (length of the chaos phase, default
//! 60), `KWATCHD_CHAOS_SEED` (decimal or 0x-hex; the seed is printed),
//! `KWATCHD_CHAOS_RESTARTS=0` / `KWATCHD_CHAOS_RELOADS=0` (switch the
//! SIGKILL-restart and SIGHUP-reload actions off, see `RESTARTS` and
//! `RELOADS`), `KWATCHD_CHAOS_DAEMON_TOML` (lines added to `[daemon]`,
//! `{dir}` replaced by the test directory; default: the checkpoints' state
//! directory), `KWATCHD_CHAOS_INITIAL_LIST` (`auto`, the daemon's default:
//! streaming lists, or `list` for paginated LISTs).

mod common;

use common::{wait_until, BIN};
use kwatchd_sim::{
    start_churn, ChurnOptions, ExpiredMode, Fault, FaultRule, HistoryEvent, RequestRecord,
    Resource, Sim, SimHandle, SimOptions,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// SIGKILL + restart with the same config and state directory: the daemon
/// resumes from its checkpoints (`KWATCHD_CHAOS_RESTARTS=0` switches it off).
const RESTARTS: bool = true;
/// SIGHUP reload with an equivalent config (only a comment changes, so every
/// watch keeps its connection and nothing may be duplicated;
/// `KWATCHD_CHAOS_RELOADS=0` switches it off).
const RELOADS: bool = true;
/// `[daemon]` lines for a restartable daemon, `{dir}` = the test directory.
const DAEMON_TOML: &str = "state_dir = \"{dir}/state\"";

const DEFAULT_SECS: u64 = 60;
const DEFAULT_SEED: u64 = 0x6b77_6174_6368_6421;
/// Longer than the daemon's idle deadline with `watch_timeout = "1s"`
/// (timeoutSeconds 1 + a grace of 1 s).
const STALL: Duration = Duration::from_secs(3);
/// Above the daemon's `max_line_bytes` below. The daemon drops the
/// connection on such a line and re-watches from the last resourceVersion it
/// handled (`WatchMachine::on_transport_error` keeps `resume_rv`), so every
/// event behind the line is served again: the checker grants no allowance
/// for it. (The emulator's oversized line is a padded BOOKMARK. A real
/// object over the limit would be served again on every re-watch, so that
/// watch would make no progress until a 410 made it relist; the LIST, read
/// whole up to max(max_line_bytes, 256 MiB), then records the object's
/// current state. Late, never silently dropped.)
const OVERSIZED_LINE: usize = 100_000;
/// After the chaos, how long the daemon may take to catch up (its backoff
/// is capped at 30 s).
const SETTLE: Duration = Duration::from_secs(60);

/// The watches: name, resource, churn interval, live objects, object size.
const WATCHES: &[(&str, &str, u64, usize, usize)] = &[
    ("pods", "pods", 5, 800, 1024),
    ("configmaps", "configmaps", 20, 120, 600),
];
const NAMESPACES: &[&str] = &["ns-a", "ns-b", "ns-c"];

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn env_flag(name: &str, default: bool) -> bool {
    match std::env::var(name).ok().as_deref() {
        Some("1" | "true" | "yes") => true,
        Some("0" | "false" | "no") => false,
        _ => default,
    }
}

/// The same splitmix/xorshift the daemon uses, local so the schedule does
/// not change when the daemon's generator does.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
}

/// Every action the schedule can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    CutMidChunk,
    CutAfterEvents,
    CutListBody,
    ExpiredErrorEvent,
    ExpiredHttp410,
    Throttle429,
    Error500,
    Stall,
    GarbageChunkSize,
    OversizedLine,
    InvalidJsonLine,
    UnknownEventType,
    EndWatches,
    Compact,
    Restart,
    Reload,
}

impl Action {
    /// (action, weight): actions that make the daemon back off are rarer,
    /// since its backoff only resets after 60 s of health.
    /// `lists`: the daemon uses paginated LISTs (a LIST-body cut only fires
    /// then; pending, it would hold back every later fault rule).
    fn table(restarts: bool, reloads: bool, lists: bool) -> Vec<(Action, u64)> {
        use Action::*;
        let mut t = vec![
            (CutMidChunk, 4),
            (CutAfterEvents, 3),
            (ExpiredErrorEvent, 2),
            (ExpiredHttp410, 2),
            (Throttle429, 1),
            (Error500, 1),
            (Stall, 1),
            (GarbageChunkSize, 1),
            (OversizedLine, 1),
            (InvalidJsonLine, 1),
            (UnknownEventType, 1),
            (EndWatches, 2),
            (Compact, 1),
        ];
        if lists {
            t.push((CutListBody, 1));
        }
        if restarts {
            t.push((Restart, 1));
        }
        if reloads {
            t.push((Reload, 1));
        }
        t
    }

    fn pick(table: &[(Action, u64)], rng: &mut Rng) -> Action {
        let total: u64 = table.iter().map(|(_, w)| w).sum();
        let mut r = rng.below(total);
        for &(a, w) in table {
            if r < w {
                return a;
            }
            r -= w;
        }
        table[0].0
    }

    /// The fault rule, for actions that are one; `None` for direct actions.
    fn rule(self, rng: &mut Rng) -> Option<FaultRule> {
        let watch = "watch=";
        let any = "/api/v1/";
        let (path, fault) = match self {
            Action::CutMidChunk => (watch, Fault::CutAfterBytes(rng.range(300, 6000) as usize)),
            Action::CutAfterEvents => (watch, Fault::CutAfterEvents(rng.range(1, 30) as usize)),
            Action::CutListBody => (
                "limit=",
                Fault::CutAfterBytes(rng.range(200, 200_000) as usize),
            ),
            Action::ExpiredErrorEvent => (watch, Fault::Expired(ExpiredMode::ErrorEvent)),
            Action::ExpiredHttp410 => (watch, Fault::Expired(ExpiredMode::HttpStatus)),
            Action::Throttle429 => (
                any,
                Fault::Status {
                    code: 429,
                    retry_after: Some(1),
                },
            ),
            Action::Error500 => (
                any,
                Fault::Status {
                    code: 500,
                    retry_after: None,
                },
            ),
            Action::Stall => (watch, Fault::Stall(STALL)),
            Action::GarbageChunkSize => (watch, Fault::GarbageChunkSize),
            Action::OversizedLine => (watch, Fault::OversizedLine(OVERSIZED_LINE)),
            Action::InvalidJsonLine => (watch, Fault::InvalidJsonLine),
            Action::UnknownEventType => (watch, Fault::UnknownEventType),
            Action::EndWatches | Action::Compact | Action::Restart | Action::Reload => return None,
        };
        Some(FaultRule {
            path_contains: path.into(),
            times: 1,
            fault,
        })
    }
}

/// How a daemon run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunEnd {
    Sigkill,
    Sigterm,
}

/// The daemon under test, across its runs. Every run appends to the same
/// record file; `run_starts` are the file sizes at each start.
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    records: PathBuf,
    run_starts: Vec<u64>,
    run_ends: Vec<RunEnd>,
    reloads: usize,
    config_text: String,
}

impl Daemon {
    fn start(dir: &Path, server: &str, daemon_toml: &str, initial_list: &str) -> Daemon {
        let records = dir.join("records.jsonl");
        let mut text = format!(
            "[daemon]\nlog_level = \"info\"\nmax_line_bytes = \"64KiB\"\n{daemon_toml}\n\n[clusters.sim]\nserver = \"{server}\"\nconnect_timeout = \"2s\"\n"
        );
        for (name, resource, ..) in WATCHES {
            let _ = write!(
                text,
                "\n[[watch]]\nname = \"{name}\"\ncluster = \"sim\"\napi_version = \"v1\"\nresource = \"{resource}\"\non_start = \"added\"\nwatch_timeout = \"1s\"\ninitial_list = \"{initial_list}\"\nsinks = [\"records\"]\n"
            );
        }
        let _ = write!(
            text,
            "\n[sinks.records]\ntype = \"file\"\npath = \"{}\"\n",
            records.display()
        );
        let config = dir.join("kwatchd.toml");
        fs::write(&config, &text).expect("write config");
        let mut d = Daemon {
            child: None,
            dir: dir.to_owned(),
            config,
            log: dir.join("daemon.log"),
            records,
            run_starts: Vec::new(),
            run_ends: Vec::new(),
            reloads: 0,
            config_text: text,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        self.run_starts
            .push(fs::metadata(&self.records).map_or(0, |m| m.len()));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("KWATCHD_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kwatchd");
        self.child = Some(child);
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn signal(&self, sig: i32) {
        let pid = self.pid();
        if pid > 0 {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// SIGKILL, wait, and start a new run after `down`.
    fn kill_and_restart(&mut self, down: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.run_ends.push(RunEnd::Sigkill);
        std::thread::sleep(down);
        self.spawn();
    }

    /// An equivalent config (one comment differs), then SIGHUP.
    fn reload(&mut self) {
        self.reloads += 1;
        let text = format!("{}\n# reload {}\n", self.config_text, self.reloads);
        fs::write(&self.config, text).expect("rewrite config");
        self.signal(libc::SIGHUP);
    }

    /// SIGTERM and wait (bounded).
    fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let stopped = wait_until(Duration::from_secs(20), || self.exited());
        if let Some(mut c) = self.child.take() {
            if !stopped {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        self.run_ends.push(RunEnd::Sigterm);
        assert!(
            stopped,
            "kwatchd did not stop on SIGTERM\n{}",
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "---- last daemon log lines ({}) ----\n{}",
            self.dir.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One record, reduced to what the checker needs.
#[derive(Debug, Clone)]
struct Rec {
    run: usize,
    watch: String,
    deleted: bool,
    synthesised: bool,
    origin: String,
    uid: String,
    rv: String,
}

/// Splits the record file into runs and parses every line. A torn line at
/// the end of a SIGKILLed run is counted, not parsed; anywhere else it is
/// an error.
fn read_records(bytes: &[u8], run_starts: &[u64], errors: &mut Vec<String>) -> (Vec<Rec>, usize) {
    let mut out = Vec::new();
    let mut torn = 0;
    for (run, &start) in run_starts.iter().enumerate() {
        let end = run_starts
            .get(run + 1)
            .map_or(bytes.len(), |&e| e as usize)
            .min(bytes.len());
        let part = &bytes[(start as usize).min(end)..end];
        let last_run = run + 1 == run_starts.len();
        for (i, line) in part.split_inclusive(|b| *b == b'\n').enumerate() {
            if !line.ends_with(b"\n") {
                if last_run {
                    errors.push(format!("run {run}: the file ends with a partial line"));
                } else {
                    torn += 1;
                }
                continue;
            }
            let v: Value = match serde_json::from_slice(line) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(format!(
                        "run {run} line {i}: not JSON ({e}): {}",
                        String::from_utf8_lossy(&line[..line.len().min(200)])
                    ));
                    continue;
                }
            };
            let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
            let meta = &v["object"]["metadata"];
            out.push(Rec {
                run,
                watch: s(&v["watch"]),
                deleted: v["type"] == "DELETED",
                synthesised: v["final_state_unknown"] == true,
                origin: s(&v["origin"]),
                uid: s(&meta["uid"]),
                rv: s(&meta["resourceVersion"]),
            });
        }
    }
    (out, torn)
}

/// A stretch of history the daemon could not see event by event: from the
/// resourceVersion it last watched from (exclusive) to the list snapshot it
/// resumed from (inclusive). Taken from the emulator's request log: a LIST
/// round (a LIST without `continue`) opens it, the next WATCH's
/// `resourceVersion` closes it.
#[derive(Debug, Clone, Copy)]
struct Gap {
    lo: u64,
    hi: u64,
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn gaps(requests: &[RequestRecord], path: &str) -> Vec<Gap> {
    let mut out = Vec::new();
    let mut last_watch = 0u64;
    let mut open: Option<u64> = None;
    for r in requests.iter().filter(|r| r.path == path) {
        if r.is_watch && query_param(&r.query, "sendInitialEvents") == Some("true") {
            // A streaming list relists like a LIST; its snapshot is where
            // its initial events ended (unknown if it was cut before: then
            // the next request closes the gap).
            if open.is_none() {
                open = Some(last_watch);
            }
            if let Some(end) = r.initial_events_end {
                if let Some(lo) = open.take() {
                    out.push(Gap { lo, hi: end });
                }
                last_watch = end;
            }
            continue;
        }
        if r.is_watch {
            let rv = query_param(&r.query, "resourceVersion")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if let Some(lo) = open.take() {
                out.push(Gap { lo, hi: rv });
            }
            last_watch = rv;
        } else if query_param(&r.query, "continue").is_none() && open.is_none() {
            open = Some(last_watch);
        }
    }
    if let Some(lo) = open {
        out.push(Gap { lo, hi: u64::MAX });
    }
    out
}

/// A record placed in the history: (run, (position, 1 if a delete), record).
type Placed<'a> = (usize, (usize, u8), &'a Rec);

/// What the checker found.
#[derive(Default)]
struct Report {
    history_events: BTreeMap<&'static str, usize>,
    objects: usize,
    records: usize,
    records_by_origin: BTreeMap<String, usize>,
    records_by_run: Vec<usize>,
    synthesised_deletes: usize,
    torn_lines: usize,
    gaps: usize,
    /// Events a relist legitimately folded into a later state.
    coalesced: usize,
    /// Objects born and deleted inside one gap: the daemon never saw them.
    unobservable: usize,
    duplicates_across_runs: usize,
    /// Everything that breaks the guarantee; empty on success.
    errors: Vec<String>,
    losses: usize,
}

/// Checks the records against the history:
/// - every record names a state (uid, resourceVersion) the history has;
/// - every object's every state is recorded, unless a relist folded it
///   into a later state of that object inside a gap (`gaps`); in
///   particular every live object's final state is recorded;
/// - every delete is recorded (streamed, or synthesised with
///   `final_state_unknown`), unless the object lived and died inside one
///   gap;
/// - within a run, one object's records follow the history's order (its
///   resourceVersions are compared by position in the emulator's history,
///   never numerically by the daemon), and nothing is recorded twice;
/// - duplicates across runs only where a run ended with SIGKILL.
fn check(
    history: &[HistoryEvent],
    requests: &[RequestRecord],
    bytes: &[u8],
    run_starts: &[u64],
    run_ends: &[RunEnd],
) -> Report {
    let mut rep = Report::default();
    let (recs, torn) = read_records(bytes, run_starts, &mut rep.errors);
    rep.torn_lines = torn;
    rep.records = recs.len();
    rep.records_by_run = vec![0; run_starts.len()];
    for r in &recs {
        rep.records_by_run[r.run] += 1;
        *rep.records_by_origin.entry(r.origin.clone()).or_default() += 1;
        rep.synthesised_deletes += usize::from(r.synthesised);
    }

    // History per object, by position (the history is in resourceVersion order).
    let mut pos_of: HashMap<(&str, &str), usize> = HashMap::new();
    let mut by_uid: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut uid_order: Vec<&str> = Vec::new();
    for (p, e) in history.iter().enumerate() {
        *rep.history_events.entry(e.event_type.as_str()).or_default() += 1;
        pos_of.insert((e.uid.as_str(), e.resource_version.as_str()), p);
        let v = by_uid.entry(e.uid.as_str()).or_default();
        if v.is_empty() {
            uid_order.push(e.uid.as_str());
        }
        v.push(p);
    }
    rep.objects = uid_order.len();
    let rv_num = |p: usize| history[p].resource_version.parse::<u64>().unwrap_or(0);

    let watch_of = |res: &Resource| {
        WATCHES
            .iter()
            .find(|w| w.1 == res.plural)
            .map_or("?", |w| w.0)
    };
    let mut gaps_by_watch: HashMap<&str, Vec<Gap>> = HashMap::new();
    for (name, resource, ..) in WATCHES {
        let g = gaps(requests, &Resource::new("v1", resource).path(None));
        rep.gaps += g.len();
        gaps_by_watch.insert(name, g);
    }

    // Records per object: positions, per run, in file order.
    // Key for order: (position, 0 for a state / 1 for a delete).
    let mut recorded: HashMap<&str, Vec<Placed>> = HashMap::new();
    for r in &recs {
        let Some(&p) = pos_of.get(&(r.uid.as_str(), r.rv.as_str())) else {
            rep.errors.push(format!(
                "run {}: a record for a state the server never had: watch {} uid {} resourceVersion {} ({})",
                r.run,
                r.watch,
                r.uid,
                r.rv,
                if r.deleted { "DELETED" } else { "state" }
            ));
            continue;
        };
        let e = &history[p];
        if watch_of(&e.resource) != r.watch {
            rep.errors.push(format!(
                "run {}: watch {} recorded {} {}/{}",
                r.run, r.watch, e.resource.plural, e.namespace, e.name
            ));
        }
        // A streamed DELETED carries the deletion's resourceVersion; a
        // synthesised one the last state the daemon knew.
        let stream_delete = r.deleted && !r.synthesised;
        if stream_delete != (e.event_type.as_str() == "DELETED") {
            rep.errors.push(format!(
                "run {}: {} {}/{} at resourceVersion {} recorded as {} but the history says {}",
                r.run,
                e.resource.plural,
                e.namespace,
                e.name,
                r.rv,
                if r.deleted { "DELETED" } else { "a state" },
                e.event_type.as_str()
            ));
        }
        recorded
            .entry(r.uid.as_str())
            .or_default()
            .push((r.run, (p, u8::from(r.deleted)), r));
    }

    // Order and duplicates.
    for (uid, rs) in &recorded {
        let mut last: HashMap<usize, (usize, u8)> = HashMap::new();
        let mut seen: HashMap<(usize, u8), usize> = HashMap::new();
        for (run, key, r) in rs {
            if let Some(prev) = last.get(run) {
                if key <= prev {
                    let what = if key == prev {
                        "recorded twice"
                    } else {
                        "out of order"
                    };
                    rep.errors.push(format!(
                        "run {run}: uid {uid}: resourceVersion {} {what} (after resourceVersion {} {})",
                        r.rv,
                        history[prev.0].resource_version,
                        if prev.1 == 1 { "DELETED" } else { "" }
                    ));
                }
            }
            last.insert(*run, *key);
            if let Some(&first_run) = seen.get(key) {
                if first_run != *run {
                    rep.duplicates_across_runs += 1;
                    let killed =
                        (first_run..*run).all(|k| run_ends.get(k) == Some(&RunEnd::Sigkill));
                    if !killed {
                        rep.errors.push(format!(
                            "uid {uid}: resourceVersion {} recorded in run {first_run} and again in run {run} without a SIGKILL between",
                            r.rv
                        ));
                    }
                }
            } else {
                seen.insert(*key, *run);
            }
        }
    }

    // Coverage.
    let mut losses = Vec::new();
    for uid in &uid_order {
        let ps = &by_uid[uid];
        let first = &history[ps[0]];
        let watch = watch_of(&first.resource);
        let gs = &gaps_by_watch[watch];
        let rs = recorded.get(uid).map(Vec::as_slice).unwrap_or(&[]);
        let describe = || {
            let states: Vec<String> = ps
                .iter()
                .map(|&p| {
                    let e = &history[p];
                    let mark = if rs.iter().any(|(_, k, _)| k.0 == p) {
                        "+"
                    } else {
                        "-"
                    };
                    format!(
                        "{mark}{}@{}",
                        &e.event_type.as_str()[..1],
                        e.resource_version
                    )
                })
                .collect();
            format!(
                "{} {}/{} (uid {uid}); history (+ recorded, - not): {}",
                first.resource.plural,
                first.namespace,
                first.name,
                states.join(" ")
            )
        };
        let last = *ps.last().unwrap_or(&0);
        let is_deleted = history[last].event_type.as_str() == "DELETED";
        let in_gap = |p: usize| gs.iter().find(|g| rv_num(p) > g.lo && rv_num(p) <= g.hi);
        // Born and gone inside one gap, and never seen (a list page before a
        // restarted list may have shown it: then its delete is owed).
        if rs.is_empty() && is_deleted && in_gap(ps[0]).is_some_and(|g| rv_num(last) <= g.hi) {
            rep.unobservable += 1;
            continue;
        }
        for (i, &p) in ps.iter().enumerate() {
            let e = &history[p];
            if e.event_type.as_str() == "DELETED" {
                if !rs.iter().any(|(_, k, _)| k.1 == 1) {
                    losses.push(format!("DELETE never recorded: {}", describe()));
                }
                continue;
            }
            if rs.iter().any(|(_, k, _)| k.0 == p && k.1 == 0) {
                continue;
            }
            let superseded_in_gap =
                in_gap(p).is_some_and(|g| ps[i + 1..].iter().any(|&q| rv_num(q) <= g.hi));
            if superseded_in_gap {
                rep.coalesced += 1;
            } else {
                losses.push(format!(
                    "state at resourceVersion {} never recorded: {}",
                    e.resource_version,
                    describe()
                ));
            }
        }
    }
    rep.losses = losses.len();
    rep.errors.extend(losses);
    rep
}

fn print_report(
    rep: &Report,
    seed: u64,
    secs: u64,
    fired: &BTreeMap<Action, (usize, usize)>,
    d: &Daemon,
) {
    let mut s = String::new();
    let _ = writeln!(s, "chaos: seed {seed:#x}, {secs} s of chaos");
    let _ = writeln!(
        s,
        "history: {} events {:?} over {} objects",
        rep.history_events.values().sum::<usize>(),
        rep.history_events,
        rep.objects
    );
    let faults: Vec<String> = fired
        .iter()
        .map(|(a, (inj, f))| {
            if inj == f {
                format!("{a:?} {f}")
            } else {
                format!("{a:?} {f}/{inj}")
            }
        })
        .collect();
    let _ = writeln!(
        s,
        "faults fired (fired/scheduled where they differ): {}",
        faults.join(", ")
    );
    let _ = writeln!(
        s,
        "daemon runs: {} (restarts {}), reloads {}, records {} {:?} by run {:?}, synthesised deletes {}, torn lines {}",
        d.run_starts.len(),
        d.run_starts.len() - 1,
        d.reloads,
        rep.records,
        rep.records_by_origin,
        rep.records_by_run,
        rep.synthesised_deletes,
        rep.torn_lines
    );
    let _ = writeln!(
        s,
        "relist gaps {}, states folded by a relist {}, objects born and gone inside a gap {}, duplicates across restarts {}, errors {}, losses {}",
        rep.gaps, rep.coalesced, rep.unobservable, rep.duplicates_across_runs, rep.errors.len(), rep.losses
    );
    eprint!("{s}");
}

#[test]
fn chaos_soak_loses_nothing() {
    let secs = env_u64("KWATCHD_CHAOS_SECS").unwrap_or(DEFAULT_SECS);
    let seed = env_u64("KWATCHD_CHAOS_SEED").unwrap_or(DEFAULT_SEED);
    let restarts = env_flag("KWATCHD_CHAOS_RESTARTS", RESTARTS);
    let reloads = env_flag("KWATCHD_CHAOS_RELOADS", RELOADS);
    let initial_list =
        std::env::var("KWATCHD_CHAOS_INITIAL_LIST").unwrap_or_else(|_| "auto".to_owned());
    eprintln!(
        "chaos: seed {seed:#x} (KWATCHD_CHAOS_SEED), {secs} s (KWATCHD_CHAOS_SECS), restarts {restarts}, reloads {reloads}, initial_list {initial_list}"
    );
    let mut rng = Rng::new(seed);
    let sim = Sim::start(SimOptions {
        // A daemon backing off for a few seconds falls out of the history
        // by itself: natural 410s on top of the injected ones.
        history_limit: 1000,
        ..Default::default()
    })
    .expect("start emulator");
    let handle: SimHandle = sim.handle();
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon_toml = std::env::var("KWATCHD_CHAOS_DAEMON_TOML")
        .unwrap_or_else(|_| DAEMON_TOML.to_owned())
        .replace("{dir}", &dir.path().display().to_string());
    let mut d = Daemon::start(dir.path(), &sim.url(), &daemon_toml, &initial_list);

    let churns: Vec<_> = WATCHES
        .iter()
        .enumerate()
        .map(|(i, (_, resource, interval, max, size))| {
            start_churn(
                handle.clone(),
                ChurnOptions {
                    resource: Resource::new("v1", resource),
                    namespaces: NAMESPACES.iter().map(|s| s.to_string()).collect(),
                    interval: Duration::from_millis(*interval),
                    max_objects: *max,
                    seed: seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9),
                    object_size: *size,
                },
            )
        })
        .collect();

    let table = Action::table(restarts, reloads, initial_list == "list");
    // action → (scheduled, fired)
    let mut fired: BTreeMap<Action, (usize, usize)> = BTreeMap::new();
    let mut pending: Option<Action> = None;
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(rng.range(150, 700)));
        assert!(
            !d.exited(),
            "kwatchd exited during the soak\n{}",
            d.log_tail()
        );
        if let Some(a) = pending {
            if sim.pending_faults().is_empty() {
                fired.entry(a).or_default().1 += 1;
                pending = None;
            }
        }
        let action = Action::pick(&table, &mut rng);
        if let Some(rule) = action.rule(&mut rng) {
            // One rule at a time, so "fired" is exact.
            if pending.is_some() {
                continue;
            }
            if matches!(action, Action::ExpiredErrorEvent | Action::ExpiredHttp410) {
                // The history really is gone: the daemon cannot just resume.
                sim.compact();
            }
            fired.entry(action).or_default().0 += 1;
            pending = Some(action);
            sim.add_fault(rule);
            if matches!(
                action,
                Action::ExpiredErrorEvent | Action::ExpiredHttp410 | Action::OversizedLine
            ) {
                // Watch faults hit the next watch request: make one come now.
                sim.end_watches();
            }
            continue;
        }
        let e = fired.entry(action).or_default();
        e.0 += 1;
        e.1 += 1;
        match action {
            Action::EndWatches => sim.end_watches(),
            Action::Compact => sim.compact(),
            Action::Restart => {
                let down = Duration::from_millis(rng.range(50, 1500));
                d.kill_and_restart(down);
            }
            Action::Reload => d.reload(),
            _ => {}
        }
    }
    for c in churns {
        c.stop();
    }
    sim.clear_faults();
    if let Some(a) = pending {
        eprintln!("chaos: the last {a:?} did not fire before the end");
    }

    // Settle: the daemon catches up (it may be in a long backoff).
    let settle_start = Instant::now();
    let caught_up = wait_until(SETTLE, || {
        std::thread::sleep(Duration::from_millis(500));
        let bytes = fs::read(&d.records).unwrap_or_default();
        let rep = check(
            &sim.history(),
            &sim.requests(),
            &bytes,
            &d.run_starts,
            &d.run_ends,
        );
        rep.errors.is_empty()
    });
    eprintln!(
        "chaos: {} after {:.1} s of settling",
        if caught_up {
            "caught up"
        } else {
            "NOT caught up"
        },
        settle_start.elapsed().as_secs_f64()
    );
    d.stop();
    let bytes = fs::read(&d.records).unwrap_or_default();
    let rep = check(
        &sim.history(),
        &sim.requests(),
        &bytes,
        &d.run_starts,
        &d.run_ends,
    );
    print_report(&rep, seed, secs, &fired, &d);
    if !rep.errors.is_empty() {
        let shown: Vec<&String> = rep.errors.iter().take(40).collect();
        panic!(
            "chaos (seed {seed:#x}): {} problems, {} losses; first {}:\n{}\n{}",
            rep.errors.len(),
            rep.losses,
            shown.len(),
            shown
                .iter()
                .map(|s| format!("  {s}"))
                .collect::<Vec<_>>()
                .join("\n"),
            d.log_tail()
        );
    }
    let total_faults: usize = fired.values().map(|(_, f)| f).sum();
    assert!(total_faults > 0, "no fault fired: the soak proved nothing");
    assert!(rep.records > 0);
}

/// The checker itself: a clean record set passes; a dropped state, a
/// dropped delete, a duplicate and a reordering are each caught; a
/// relist's folding is excused only inside its gap.
#[test]
fn checker_catches_loss_duplicates_and_disorder() {
    use kwatchd_sim::EventType::{Added, Deleted, Modified};
    let pods = Resource::pods();
    let ev = |t, name: &str, uid: &str, rv: u64| HistoryEvent {
        event_type: t,
        resource: pods.clone(),
        namespace: "ns-a".into(),
        name: name.into(),
        uid: uid.into(),
        resource_version: rv.to_string(),
    };
    let history = vec![
        ev(Added, "a", "ua", 1),
        ev(Added, "b", "ub", 2),
        ev(Modified, "a", "ua", 3),
        ev(Deleted, "b", "ub", 4),
        ev(Modified, "a", "ua", 5),
    ];
    let req = |is_watch: bool, query: &str| RequestRecord {
        method: "GET".into(),
        path: "/api/v1/pods".into(),
        query: query.into(),
        had_auth: false,
        client_cert: false,
        is_watch,
        time: std::time::SystemTime::now(),
        conn_id: 1,
        status: 200,
        initial_events_end: None,
    };
    // Listed at 2, watched from 2 to the end.
    let requests = vec![
        req(false, "limit=500"),
        req(true, "watch=true&resourceVersion=2"),
    ];
    let rec = |ty: &str, uid: &str, rv: u64, extra: &str| {
        format!(
            "{{\"watch\":\"pods\",\"type\":\"{ty}\",\"origin\":\"watch\"{extra},\"object\":{{\"metadata\":{{\"uid\":\"{uid}\",\"resourceVersion\":\"{rv}\"}}}}}}\n"
        )
    };
    let all = [
        rec("ADDED", "ua", 1, ""),
        rec("ADDED", "ub", 2, ""),
        rec("MODIFIED", "ua", 3, ""),
        rec("DELETED", "ub", 4, ""),
        rec("MODIFIED", "ua", 5, ""),
    ];
    let run = |lines: &[&String]| {
        let bytes: String = lines.iter().map(|s| s.as_str()).collect();
        check(
            &history,
            &requests,
            bytes.as_bytes(),
            &[0],
            &[RunEnd::Sigterm],
        )
    };
    let ok = run(&all.iter().collect::<Vec<_>>());
    assert!(ok.errors.is_empty(), "{:?}", ok.errors);
    // A modification in the middle of the stream is lost.
    let r = run(&[&all[0], &all[1], &all[3], &all[4]]);
    assert_eq!(r.losses, 1, "{:?}", r.errors);
    assert!(r.errors[0].contains("resourceVersion 3 never recorded"));
    // The delete is lost.
    let r = run(&[&all[0], &all[1], &all[2], &all[4]]);
    assert_eq!(r.losses, 1, "{:?}", r.errors);
    assert!(r.errors[0].starts_with("DELETE never recorded"));
    // A synthesised delete (last known state) counts as the delete.
    let synth = rec("DELETED", "ub", 2, ",\"final_state_unknown\":true");
    let r = run(&[&all[0], &all[1], &all[2], &synth, &all[4]]);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // Duplicate and disorder within a run.
    let r = run(&[&all[0], &all[1], &all[2], &all[2], &all[3], &all[4]]);
    assert!(
        r.errors.iter().any(|e| e.contains("recorded twice")),
        "{:?}",
        r.errors
    );
    let r = run(&[&all[0], &all[1], &all[4], &all[2], &all[3]]);
    assert!(
        r.errors.iter().any(|e| e.contains("out of order")),
        "{:?}",
        r.errors
    );
    // A state that never was.
    let r = run(&[
        &all[0],
        &all[1],
        &all[2],
        &all[3],
        &all[4],
        &rec("MODIFIED", "ua", 4, ""),
    ]);
    assert!(
        r.errors.iter().any(|e| e.contains("never had")),
        "{:?}",
        r.errors
    );
    // Across a SIGKILL a duplicate is allowed and counted; across a clean
    // stop it is not.
    let two: String = [&all[0], &all[1], &all[2], &all[0], &all[3], &all[4]]
        .iter()
        .map(|s| s.as_str())
        .collect();
    let cut = (all[0].len() + all[1].len() + all[2].len()) as u64;
    let r = check(
        &history,
        &requests,
        two.as_bytes(),
        &[0, cut],
        &[RunEnd::Sigkill, RunEnd::Sigterm],
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.duplicates_across_runs, 1);
    let r = check(
        &history,
        &requests,
        two.as_bytes(),
        &[0, cut],
        &[RunEnd::Sigterm, RunEnd::Sigterm],
    );
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    // A relist (gap 2..5]: rv 3 folded into 5, the delete synthesised.
    let relisted = vec![
        req(false, "limit=500"),
        req(true, "watch=true&resourceVersion=2"),
        req(false, "limit=500"),
        req(true, "watch=true&resourceVersion=5"),
    ];
    let bytes = [&all[0], &all[1], &all[4], &synth]
        .map(|s| s.as_str())
        .concat();
    let r = check(
        &history,
        &relisted,
        bytes.as_bytes(),
        &[0],
        &[RunEnd::Sigterm],
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.coalesced, 1);
    // Without the relist the same records lose rv 3.
    let r = check(
        &history,
        &requests,
        bytes.as_bytes(),
        &[0],
        &[RunEnd::Sigterm],
    );
    assert_eq!(r.losses, 1, "{:?}", r.errors);
}
