//! `kwatchd replay`: recorded events through a watch's `redact`, `select`
//! and `changes` and on to its sinks, without a cluster.
//!
//! This is how a hook or a Slack template is tried before it meets
//! production: a file sink's or a dead-letter file's records go through
//! the same decision (fresh per-object memory, file order) and the same
//! record rendering and `transform` as in the daemon. `--dry-run` writes
//! nothing and prints what each sink would get.
//!
//! Files, standard output and hooks are written and run here; webhook and
//! NATS deliveries go through the daemon's own sinks ([`live`]).

mod live;

use crate::config::{Config, EventType, SinkConfig, WatchConfig};
use crate::daemon::filtering::{sink_transform, transformed, ErrorLog, Filtering};
use crate::filter::{FilterStats, LogLimit, Memory, RedactKey, SkipReason};
use crate::sink::{EventMeta, RecordWriter};
use crate::watch::{Emitted, Identity, Origin};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayArgs {
    pub config: PathBuf,
    pub watch: String,
    /// Only these sinks of the watch; empty: all of them.
    pub sinks: Vec<String>,
    pub dry_run: bool,
    /// A JSON-lines file, or `-` for standard input.
    pub records: PathBuf,
}

/// How a replay ended, for the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every delivery made (or, dry, printed).
    Delivered,
    /// At least one delivery failed (said on stderr).
    DeliveryFailed,
    /// The configuration, the watch or a sink named is not usable.
    ConfigProblem(String),
}

/// What a replay counted, printed on stderr at the end.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub read: u64,
    /// Lines that hold no record (blank, not JSON, no object).
    pub unusable: u64,
    pub skipped: [u64; SkipReason::ALL.len()],
    pub deliveries: BTreeMap<String, u64>,
    pub failures: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records read, {} skipped as unselected, {} as unchanged",
            self.read,
            self.skipped[SkipReason::Unselected as usize],
            self.skipped[SkipReason::Unchanged as usize]
        )?;
        if self.unusable > 0 {
            write!(f, ", {} lines without a record ignored", self.unusable)?;
        }
        for (sink, n) in &self.deliveries {
            write!(f, "; {sink}: {n} deliveries")?;
        }
        if self.failures > 0 {
            write!(f, "; {} deliveries failed", self.failures)?;
        }
        Ok(())
    }
}

/// One sink a replay feeds.
struct Target<'a> {
    name: &'a str,
    config: &'a SinkConfig,
    transform: crate::daemon::filtering::SinkTransform,
}

/// Runs a replay, writing dry-run lines to `out` and the summary and
/// problems to stderr.
pub fn run(args: &ReplayArgs, out: &mut dyn Write) -> Outcome {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => return Outcome::ConfigProblem(e.to_string()),
    };
    let Some(watch) = config.watch(&args.watch) else {
        let names: Vec<&str> = config.watches.iter().map(|w| w.name.as_str()).collect();
        return Outcome::ConfigProblem(format!(
            "no watch {:?} in {} (watches: {})",
            args.watch,
            args.config.display(),
            names.join(", ")
        ));
    };
    let targets = match targets(&config, watch, &args.sinks) {
        Ok(t) => t,
        Err(e) => return Outcome::ConfigProblem(e),
    };
    // The daemon's key when there is one, so digests match its records;
    // never a new file (a replay writes nothing it was not asked to).
    let key_dir = config.daemon.state_dir.clone();
    let filter = match Filtering::new(watch, || existing_or_ephemeral_key(&key_dir)) {
        Ok(f) => f,
        Err(e) => return Outcome::ConfigProblem(e),
    };
    let input: Box<dyn BufRead> = if args.records.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(&args.records) {
            Ok(f) => {
                // What the file holds now, not what is appended while it
                // is replayed: a sink whose dead-letter file (or output) is
                // this file would otherwise feed it forever.
                let len = match f.metadata() {
                    Ok(m) if m.is_file() => m.len(),
                    _ => u64::MAX,
                };
                Box::new(std::io::BufReader::new(std::io::Read::take(f, len)))
            }
            Err(e) => {
                eprintln!("kwatchd replay: {}: {e}", args.records.display());
                return Outcome::DeliveryFailed;
            }
        }
    };
    let mut replay = Replay {
        config: &config,
        live: None,
        watch,
        records: RecordWriter::new(&watch.name, &watch.cluster),
        filter,
        memory: HashMap::new(),
        stats: FilterStats::default(),
        limit: LogLimit::default(),
        summary: Summary::default(),
        dry_run: args.dry_run,
    };
    for line in input.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("kwatchd replay: reading {}: {e}", args.records.display());
                replay.summary.failures += 1;
                break;
            }
        };
        replay.line(&line, &targets, out);
    }
    replay.summary.skipped = replay.stats.skipped;
    eprintln!("kwatchd replay: {}", replay.summary);
    if replay.summary.failures > 0 {
        Outcome::DeliveryFailed
    } else {
        Outcome::Delivered
    }
}

fn existing_or_ephemeral_key(dir: &Path) -> std::io::Result<RedactKey> {
    if dir.join(crate::filter::redact::KEY_FILE).exists() {
        RedactKey::load_or_create(dir)
    } else {
        RedactKey::ephemeral()
    }
}

fn targets<'a>(
    config: &'a Config,
    watch: &'a WatchConfig,
    only: &[String],
) -> Result<Vec<Target<'a>>, String> {
    for name in only {
        if !watch.sinks.contains(name) {
            return Err(format!(
                "watch {:?} does not feed a sink {name:?} (its sinks: {})",
                watch.name,
                watch.sinks.join(", ")
            ));
        }
    }
    let mut out = Vec::new();
    for name in &watch.sinks {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let Some(sink) = config.sink(name) else {
            return Err(format!("sink {name:?} is not defined"));
        };
        out.push(Target {
            name,
            config: sink,
            transform: sink_transform(name, config.sink_transforms.get(name)),
        });
    }
    Ok(out)
}

struct Replay<'a> {
    config: &'a Config,
    /// The loop of the webhook and NATS sinks, once one is used.
    live: Option<live::Live>,
    watch: &'a WatchConfig,
    records: RecordWriter,
    filter: Option<Filtering>,
    /// The filter's memory per object, as the index holds it in the daemon.
    memory: HashMap<String, Memory>,
    stats: FilterStats,
    limit: LogLimit,
    summary: Summary,
    dry_run: bool,
}

impl Replay<'_> {
    fn line(&mut self, line: &str, targets: &[Target<'_>], out: &mut dyn Write) {
        if line.trim().is_empty() {
            return;
        }
        let Some(record) = parse_record(line) else {
            self.summary.unusable += 1;
            return;
        };
        self.summary.read += 1;
        let object = record.object.to_string();
        let meta = &record.object["metadata"];
        let field = |k: &str| meta[k].as_str().unwrap_or("");
        let key = match field("uid") {
            "" => format!("{}/{}", field("namespace"), field("name")),
            uid => uid.to_owned(),
        };
        let event = Emitted {
            event_type: record.event_type,
            origin: record.origin,
            object: &object,
            final_state_unknown: record.final_state_unknown,
            identity: Identity {
                kind: record.object["kind"].as_str().unwrap_or(""),
                namespace: field("namespace"),
                name: field("name"),
                uid: field("uid"),
                resource_version: field("resourceVersion"),
            },
            cut: None,
        };
        // As in the daemon: types the watch does not forward are not
        // decided either.
        if !self.watch.wants(event.event_type) {
            return;
        }
        let mut log = ErrorLog {
            watch: &self.watch.name,
            stats: &mut self.stats,
            limit: &mut self.limit,
            now: Instant::now(),
        };
        let report = match &mut self.filter {
            None => None,
            Some(f) => {
                let decided = f.decide(&event, self.memory.get(&key), &mut log);
                match (decided.memory, event.event_type) {
                    (Some(m), t) if t != EventType::Deleted => {
                        self.memory.insert(key, m);
                    }
                    _ => {
                        self.memory.remove(&key);
                    }
                }
                if !decided.emit {
                    return;
                }
                f.take_report()
            }
        };
        let fields = match (&report, &self.filter) {
            (Some(r), Some(f)) => Some(f.fields(r)),
            _ => None,
        };
        let mut rendered = Vec::new();
        self.records
            .write_with(&mut rendered, SystemTime::now(), &event, fields.as_ref());
        for t in targets {
            let deliveries = match &t.transform {
                None => vec![rendered.clone()],
                Some(tr) => transformed(tr, &rendered, &event, &mut log),
            };
            for d in deliveries {
                *self
                    .summary
                    .deliveries
                    .entry(t.name.to_owned())
                    .or_default() += 1;
                let result = if self.dry_run {
                    print_delivery(out, t.name, &d).map_err(|e| e.to_string())
                } else {
                    let to = To {
                        config: self.config,
                        watch: self.watch,
                        api_version: record.object["apiVersion"].as_str().unwrap_or(""),
                    };
                    deliver(&mut self.live, &to, t, &d, &event, out)
                };
                if let Err(e) = result {
                    eprintln!("kwatchd replay: sink {}: {e}", t.name);
                    self.summary.failures += 1;
                }
            }
        }
    }
}

/// What a delivery is for, besides its sink.
struct To<'a> {
    config: &'a Config,
    watch: &'a WatchConfig,
    /// The object's, for the webhook and NATS sinks' metadata.
    api_version: &'a str,
}

/// Delivers one record for real: appended to a file sink's file, written to
/// standard output, a hook run with it on stdin (the hook's timeout
/// applies, no retries), or handed to the daemon's webhook or NATS sink
/// until it is delivered or given up on (`live`, started on first use).
fn deliver(
    live: &mut Option<live::Live>,
    to: &To<'_>,
    t: &Target<'_>,
    delivery: &[u8],
    event: &Emitted<'_>,
    out: &mut dyn Write,
) -> Result<(), String> {
    let cluster = &to.watch.cluster;
    match t.config {
        SinkConfig::File(f) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&f.path)
            .and_then(|mut file| file.write_all(delivery))
            .map_err(|e| format!("{}: {e}", f.path.display())),
        SinkConfig::Stdout => out.write_all(delivery).map_err(|e| e.to_string()),
        SinkConfig::Exec(e) => run_hook(e, delivery, event, cluster),
        SinkConfig::Webhook(_) | SinkConfig::Nats(_) => {
            let live = match live {
                Some(l) => l,
                None => live.insert(live::Live::new().map_err(|e| format!("cannot poll: {e}"))?),
            };
            let meta = EventMeta::of(
                to.watch.name.clone(),
                cluster.clone(),
                to.api_version.to_owned(),
                event,
            );
            live.deliver(to.config, t.name, t.config, delivery, meta)
        }
    }
}

/// A record as kwatchd writes it, or the record inside a dead-letter line.
struct Recorded {
    event_type: EventType,
    origin: Origin,
    final_state_unknown: bool,
    object: Value,
}

fn parse_record(line: &str) -> Option<Recorded> {
    let mut v: Value = serde_json::from_str(line).ok()?;
    if v.get("object").is_none() {
        v = v.get_mut("record")?.take();
    }
    let event_type = EventType::from_wire(v["type"].as_str()?)?;
    let origin = match v["origin"].as_str() {
        Some("list") => Origin::List,
        Some("relist") => Origin::Relist,
        _ => Origin::Watch,
    };
    let object = v.get_mut("object")?.take();
    object.is_object().then_some(Recorded {
        event_type,
        origin,
        final_state_unknown: v["final_state_unknown"] == true,
        object,
    })
}

fn print_delivery(out: &mut dyn Write, sink: &str, delivery: &[u8]) -> std::io::Result<()> {
    let value: Value = serde_json::from_slice(delivery.trim_ascii_end())?;
    let line = serde_json::json!({"sink": sink, "delivery": value});
    writeln!(out, "{line}")
}

fn run_hook(
    e: &crate::config::ExecSinkConfig,
    delivery: &[u8],
    event: &Emitted<'_>,
    cluster: &str,
) -> Result<(), String> {
    let Some((program, args)) = e.command.split_first() else {
        return Err("empty command".into());
    };
    let id = &event.identity;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(
            ["PATH", "HOME", "LANG"]
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))),
        )
        .env("KWATCHD_CLUSTER", cluster)
        .env("KWATCHD_EVENT", event.event_type.as_str())
        .env("KWATCHD_ORIGIN", event.origin.as_str())
        .env("KWATCHD_KIND", id.kind)
        .env("KWATCHD_NAMESPACE", id.namespace)
        .env("KWATCHD_NAME", id.name)
        .env("KWATCHD_UID", id.uid)
        .env("KWATCHD_RESOURCE_VERSION", id.resource_version)
        .env("KWATCHD_BATCH_SIZE", "1")
        .envs(&e.env)
        .stdin(Stdio::piped());
    if let Some(dir) = &e.working_dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|err| format!("{program}: {err}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is its own business.
        let _ = stdin.write_all(delivery);
    }
    let end = Instant::now() + e.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{program} exited with {status}")),
            Ok(None) if Instant::now() >= end => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} timed out after {:?}", e.timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(err) => return Err(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_dead_letters_both_replay() {
        let r = parse_record(r#"{"time":"t","watch":"w","cluster":"c","type":"MODIFIED","origin":"relist","object":{"a":1}}"#).unwrap();
        assert_eq!(
            (r.event_type, r.origin),
            (EventType::Modified, Origin::Relist)
        );
        let d = parse_record(r#"{"time":"t","sink":"s","attempts":4,"reason":"x","record":{"type":"DELETED","origin":"watch","final_state_unknown":true,"object":{"b":2}}}"#).unwrap();
        assert_eq!(d.event_type, EventType::Deleted);
        assert!(d.final_state_unknown);
        assert_eq!(d.object["b"], 2);
        assert!(parse_record("not json").is_none());
        assert!(parse_record(r#"{"type":"ADDED","object":[1]}"#).is_none());
    }

    #[test]
    fn summary_says_what_happened() {
        let mut s = Summary {
            read: 3,
            ..Summary::default()
        };
        s.skipped[SkipReason::Unchanged as usize] = 2;
        s.deliveries.insert("slack".into(), 1);
        assert_eq!(
            s.to_string(),
            "3 records read, 0 skipped as unselected, 2 as unchanged; slack: 1 deliveries"
        );
    }
}
