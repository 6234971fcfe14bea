//! Metrics, health, `kwatchd status`, JSON logs and the shutdown timeout,
//! end to end: the real binary against the emulator over loopback.
//!
//! The daemon listens on `127.0.0.1:0` and the tests read the port from its
//! log line `metrics: listening on http://IP:PORT` (no race for a port),
//! except where `kwatchd status --config` must find the address in the
//! config: there a port that was free a moment ago is used.

mod common;

use common::*;
use kwatchd_sim::{Fault, FaultRule, Resource, Sim, SimOptions};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(30);

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn watch(name: &str, sinks: &str) -> String {
    format!(
        "[[watch]]\nname = \"{name}\"\ncluster = \"test\"\napi_version = \"v1\"\nresource = \"pods\"\nnamespace = \"default\"\non_start = \"added\"\nsinks = [{sinks}]\n\n"
    )
}

fn config_text(sim: &Sim, daemon: &str, rest: &str) -> String {
    format!(
        "[daemon]\nlog_level = \"debug\"\n{daemon}\n\n[clusters.test]\nserver = \"{}\"\n\n{rest}\n",
        sim.url()
    )
}

fn file_sink(dir: &Path, name: &str) -> String {
    format!(
        "[sinks.{name}]\ntype = \"file\"\npath = \"{}\"\n\n",
        dir.join(format!("{name}.jsonl")).display()
    )
}

/// The address from the daemon's "metrics: listening on http://…" line.
fn metrics_addr(d: &Running) -> SocketAddr {
    let mut found = None;
    let ok = wait_until(WAIT, || {
        found = d.log_text().lines().find_map(|l| {
            let rest = l.split("metrics: listening on http://").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        });
        found.is_some()
    });
    assert!(ok, "no listening line; log:\n{}", d.log_text());
    found.unwrap()
}

/// One HTTP response: status, lower-cased headers, body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Splits `bytes` into responses (Content-Length framed). `head_only`
/// marks responses to HEAD, which have no body.
fn split_responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<Resp> {
    let mut out = Vec::new();
    for &head in head_only {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(bytes)));
        let head_text = std::str::from_utf8(&bytes[..end]).unwrap();
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: HashMap<String, String> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let len: usize = headers["content-length"].parse().unwrap();
        let body_len = if head { 0 } else { len };
        let body = bytes[end + 4..end + 4 + body_len].to_vec();
        bytes = &bytes[end + 4 + body_len..];
        out.push(Resp {
            status,
            headers,
            body,
        });
    }
    assert!(
        bytes.is_empty(),
        "trailing bytes: {:?}",
        String::from_utf8_lossy(bytes)
    );
    out
}

/// Sends `raw` (requests, the last with `Connection: close`) and reads the
/// answers until the server closes.
fn exchange(addr: SocketAddr, raw: &str, head_only: &[bool]) -> Vec<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    split_responses(&bytes, head_only)
}

fn get(addr: SocketAddr, path: &str) -> Resp {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    exchange(addr, &raw, &[false]).pop().unwrap()
}

fn status_json(addr: SocketAddr) -> Value {
    serde_json::from_slice(&get(addr, "/status").body).unwrap()
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A strict parser of the Prometheus text format 0.0.4, as far as kwatchd
/// uses it: every family has exactly one HELP followed by one TYPE before
/// its samples, families are contiguous, sample names belong to their family
/// (`_bucket`/`_sum`/`_count` for histograms), label names and escapes
/// follow the grammar, values parse, no series repeats, counters are not
/// negative, and histograms are consistent (cumulative buckets ordered by
/// `le`, a `+Inf` bucket equal to `_count`, a `_sum`).
mod prom {
    use std::collections::{BTreeMap, HashSet};

    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    #[derive(Debug, Default)]
    pub struct Family {
        pub kind: String,
        pub help: String,
        pub samples: Vec<Sample>,
    }

    fn is_metric_name(s: &str) -> bool {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn is_label_name(s: &str) -> bool {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    fn value(s: &str) -> Result<f64, String> {
        match s {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ => s.parse().map_err(|_| format!("bad value {s:?}")),
        }
    }

    /// `{a="x",b="y"}` → labels and the rest of the line.
    fn labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
        let mut out = BTreeMap::new();
        let mut rest = s.strip_prefix('{').ok_or("no {")?;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                return Ok((out, r));
            }
            let eq = rest.find('=').ok_or("no =")?;
            let name = &rest[..eq];
            if !is_label_name(name) {
                return Err(format!("bad label name {name:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut val = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => val.push('\\'),
                        '"' => val.push('"'),
                        'n' => val.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, '\n') => return Err("raw newline in a label value".into()),
                    (_, c) => val.push(c),
                }
            };
            if out.insert(name.to_owned(), val).is_some() {
                return Err(format!("label {name} twice"));
            }
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("expected , or }".into());
            }
        }
    }

    pub fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
        if !text.ends_with('\n') {
            return Err("no final newline".into());
        }
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut closed: HashSet<String> = HashSet::new();
        let mut series = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
            if let Some(rest) = line.strip_prefix("# ") {
                let (word, rest) = rest
                    .split_once(' ')
                    .ok_or_else(|| err("bad comment".into()))?;
                let (name, arg) = rest.split_once(' ').ok_or_else(|| err("no text".into()))?;
                if !is_metric_name(name) {
                    return Err(err("bad family name".into()));
                }
                if current.as_deref() != Some(name) {
                    if closed.contains(name) {
                        return Err(err("family is not contiguous".into()));
                    }
                    if let Some(c) = current.take() {
                        closed.insert(c);
                    }
                    current = Some(name.to_owned());
                }
                let f = families.entry(name.to_owned()).or_default();
                match word {
                    "HELP" if f.help.is_empty() && f.kind.is_empty() => f.help = arg.to_owned(),
                    "TYPE" if f.kind.is_empty() && f.samples.is_empty() => {
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                            return Err(err("bad type".into()));
                        }
                        f.kind = arg.to_owned();
                    }
                    _ => return Err(err("unexpected or repeated HELP/TYPE".into())),
                }
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                return Err(err("unexpected comment or blank line".into()));
            }
            let name_end = line
                .find(['{', ' '])
                .ok_or_else(|| err("no value".into()))?;
            let name = &line[..name_end];
            if !is_metric_name(name) {
                return Err(err("bad metric name".into()));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                labels(&line[name_end..]).map_err(err)?
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            let mut parts = rest
                .strip_prefix(' ')
                .ok_or_else(|| err("no space".into()))?
                .split(' ');
            let v = value(parts.next().unwrap_or("")).map_err(err)?;
            if let Some(ts) = parts.next() {
                ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
            }
            if parts.next().is_some() {
                return Err(err("trailing fields".into()));
            }
            let fam = current
                .clone()
                .ok_or_else(|| err("sample before any TYPE".into()))?;
            let f = families
                .get_mut(&fam)
                .ok_or_else(|| err("no family".into()))?;
            if f.kind.is_empty() || f.help.is_empty() {
                return Err(err("sample before HELP and TYPE".into()));
            }
            let belongs = match f.kind.as_str() {
                "histogram" => {
                    let suffix = name.strip_prefix(fam.as_str());
                    match suffix {
                        Some("_bucket") => labels.contains_key("le"),
                        Some("_sum") | Some("_count") => !labels.contains_key("le"),
                        _ => false,
                    }
                }
                _ => name == fam,
            };
            if !belongs {
                return Err(err(format!("sample does not belong to family {fam}")));
            }
            if f.kind == "counter" && (v.is_nan() || v < 0.0) {
                return Err(err("negative or NaN counter".into()));
            }
            if !series.insert(format!("{name}{labels:?}")) {
                return Err(err("repeated series".into()));
            }
            f.samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: v,
            });
        }
        for (name, f) in &families {
            if f.kind == "histogram" {
                check_histogram(name, f)?;
            }
        }
        Ok(families)
    }

    fn check_histogram(name: &str, f: &Family) -> Result<(), String> {
        let mut groups: BTreeMap<Vec<(String, String)>, Vec<&Sample>> = BTreeMap::new();
        for s in &f.samples {
            let key = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            groups.entry(key).or_default().push(s);
        }
        for (key, samples) in groups {
            let mut buckets: Vec<(f64, f64)> = samples
                .iter()
                .filter(|s| s.name.ends_with("_bucket"))
                .map(|s| (super::prom_value(&s.labels["le"]), s.value))
                .collect();
            let count = samples.iter().find(|s| s.name.ends_with("_count"));
            let sum = samples.iter().find(|s| s.name.ends_with("_sum"));
            let (Some(count), Some(_)) = (count, sum) else {
                return Err(format!("{name}{key:?}: _count or _sum missing"));
            };
            if buckets
                .windows(2)
                .any(|w| w[0].0.partial_cmp(&w[1].0) != Some(std::cmp::Ordering::Less))
            {
                return Err(format!("{name}{key:?}: buckets not in increasing le order"));
            }
            buckets.dedup();
            if buckets.windows(2).any(|w| w[0].1 > w[1].1) {
                return Err(format!("{name}{key:?}: buckets not cumulative"));
            }
            match buckets.last() {
                Some((le, n)) if le.is_infinite() && *n == count.value => {}
                _ => return Err(format!("{name}{key:?}: +Inf bucket missing or != _count")),
            }
        }
        Ok(())
    }

    #[test]
    fn the_parser_rejects_what_the_format_forbids() {
        let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"q\\\"\\\\\\n\"} 1\n";
        assert!(parse(ok).is_ok());
        for bad in [
            "a 1\n",
            "# TYPE a counter\n# HELP a x\na 1\n",
            "# HELP a x\n# TYPE a gauge\na{l=\"\\t\"} 1\n",
            "# HELP a x\n# TYPE a gauge\na{l=x} 1\n",
            "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
            "# HELP a x\n# TYPE a gauge\nb 1\n",
            "# HELP a x\n# TYPE a gauge\na one\n",
            "# HELP a_total x\n# TYPE a_total counter\na_total -1\n",
            "# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\n# HELP a y\n",
            "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
            "# HELP a x\n# TYPE a gauge\na 1",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}

fn prom_value(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        _ => s.parse().unwrap(),
    }
}

/// The value of the series `name{labels}`; panics when absent.
fn value(fams: &BTreeMap<String, prom::Family>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    fams.values()
        .flat_map(|f| &f.samples)
        .find(|s| s.name == name && s.labels == want)
        .unwrap_or_else(|| panic!("no series {name}{labels:?}"))
        .value
}

fn scrape(addr: SocketAddr) -> BTreeMap<String, prom::Family> {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    prom::parse(&r.text()).unwrap_or_else(|e| panic!("{e}\n{}", r.text()))
}

#[test]
fn metrics_follow_the_emulator_events_and_parse_strictly() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    for name in ["a", "b", "c"] {
        sim.create(&Resource::pods(), "default", name, &[], json!({}));
    }
    let dir = tempfile::tempdir().unwrap();
    let hook = script(dir.path(), "hook", "cat > /dev/null");
    let started = now_unix();
    let text = config_text(
        &sim,
        "metrics_listen = \"127.0.0.1:0\"",
        &format!(
            "{}{}[sinks.hook]\ntype = \"exec\"\ncommand = [\"{}\"]\n",
            watch("pods", "\"out\", \"hook\""),
            file_sink(dir.path(), "out"),
            hook.display()
        ),
    );
    let d = Running::start_in(dir, &text);
    let addr = metrics_addr(&d);
    let out = d.path("out.jsonl");
    assert!(
        wait_until(WAIT, || count_records(&out) == 3),
        "log:\n{}",
        d.log_text()
    );
    assert!(wait_until(WAIT, || sim.open_watches() == 1));
    sim.update(
        &Resource::pods(),
        "default",
        "a",
        json!({"spec": {"x": 1}}),
        None,
    );
    sim.delete(&Resource::pods(), "default", "b");
    assert!(wait_until(WAIT, || count_records(&out) == 5));
    let w = "pods";
    // Hooks run one per event; wait for all five to be counted.
    assert!(
        wait_until(WAIT, || {
            let f = scrape(addr);
            value(
                &f,
                "kwatchd_hook_runs_total",
                &[("sink", "hook"), ("result", "success")],
            ) == 5.0
        }),
        "log:\n{}",
        d.log_text()
    );
    let f = scrape(addr);
    let events = |t| {
        value(
            &f,
            "kwatchd_watch_events_total",
            &[("watch", w), ("type", t)],
        )
    };
    assert_eq!(
        (events("ADDED"), events("MODIFIED"), events("DELETED")),
        (3.0, 1.0, 1.0)
    );
    for (state, v) in [
        ("streaming", 1.0),
        ("listing", 0.0),
        ("connecting", 0.0),
        ("backing_off", 0.0),
    ] {
        assert_eq!(
            value(&f, "kwatchd_watch_state", &[("watch", w), ("state", state)]),
            v,
            "{state}"
        );
    }
    assert_eq!(
        value(&f, "kwatchd_watch_relists_total", &[("watch", w)]),
        0.0
    );
    assert_eq!(
        value(
            &f,
            "kwatchd_watch_reconnects_total",
            &[("watch", w), ("reason", "transport_error")]
        ),
        0.0
    );
    let last = value(
        &f,
        "kwatchd_watch_last_event_timestamp_seconds",
        &[("watch", w)],
    );
    assert!(last >= started - 1.0 && last <= now_unix() + 1.0, "{last}");
    assert!(value(&f, "kwatchd_watch_bytes_total", &[("watch", w)]) > 500.0);
    assert_eq!(value(&f, "kwatchd_watch_objects", &[("watch", w)]), 2.0);
    let deliveries = |sink, result| {
        value(
            &f,
            "kwatchd_sink_deliveries_total",
            &[("sink", sink), ("result", result)],
        )
    };
    assert_eq!(deliveries("out", "delivered"), 5.0);
    assert_eq!(deliveries("hook", "delivered"), 5.0);
    assert_eq!(deliveries("hook", "retries"), 0.0);
    assert_eq!(
        value(&f, "kwatchd_sink_queue_depth", &[("sink", "out")]),
        0.0
    );
    assert_eq!(
        value(
            &f,
            "kwatchd_sink_delivery_duration_seconds_count",
            &[("sink", "hook")]
        ),
        5.0
    );
    assert_eq!(
        value(
            &f,
            "kwatchd_sink_delivery_duration_seconds_bucket",
            &[("sink", "hook"), ("le", "+Inf")]
        ),
        5.0
    );
    assert_eq!(
        f["kwatchd_sink_delivery_duration_seconds"].kind,
        "histogram"
    );
    // Every sink type has a delivery histogram (a slow disk is a sink
    // problem too); exec sinks also say how long their hooks ran.
    assert_eq!(
        value(
            &f,
            "kwatchd_sink_delivery_duration_seconds_count",
            &[("sink", "out")]
        ),
        5.0
    );
    assert_eq!(f["kwatchd_hook_run_duration_seconds"].kind, "histogram");
    assert_eq!(
        value(
            &f,
            "kwatchd_hook_run_duration_seconds_count",
            &[("sink", "hook")]
        ),
        5.0
    );
    assert!(
        value(
            &f,
            "kwatchd_hook_run_duration_seconds_sum",
            &[("sink", "hook")]
        ) > 0.0
    );
    assert!(
        !f["kwatchd_hook_run_duration_seconds"]
            .samples
            .iter()
            .any(|s| s.labels["sink"] == "out"),
        "file sinks run no hooks"
    );
    // The standard process families, under their standard names.
    assert_eq!(f["process_cpu_seconds_total"].kind, "counter");
    // Present (an idle daemon may not have used one clock tick yet).
    assert!(value(&f, "process_cpu_seconds_total", &[]) >= 0.0);
    let rss = value(&f, "process_resident_memory_bytes", &[]);
    assert!(rss > 1e6);
    assert!(value(&f, "process_virtual_memory_bytes", &[]) >= rss);
    let open_fds = value(&f, "process_open_fds", &[]);
    assert!(open_fds >= 5.0);
    assert!(value(&f, "process_max_fds", &[]) >= open_fds);
    let start = value(&f, "process_start_time_seconds", &[]);
    assert!(
        start >= started - 5.0 && start <= now_unix(),
        "{start} vs {started}"
    );
    assert!(
        !f.keys().any(|k| k.starts_with("kwatchd_process_")),
        "renamed to the standard process_* families"
    );
    assert_eq!(
        value(
            &f,
            "kwatchd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // /status agrees.
    let st = status_json(addr);
    assert_eq!(st["healthy"], true);
    assert_eq!(st["watches"][0]["name"], w);
    assert_eq!(st["watches"][0]["cluster"], "test");
    assert_eq!(st["watches"][0]["state"], "streaming");
    assert_eq!(st["watches"][0]["objects_known"], 2);
    assert_eq!(st["watches"][0]["events"], 5);
    assert!(
        st["watches"][0]["last_event"]["age_seconds"]
            .as_f64()
            .unwrap()
            < 60.0
    );
    let sinks: Vec<(&str, &str)> = st["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["type"].as_str().unwrap()))
        .collect();
    assert_eq!(sinks, [("hook", "exec"), ("out", "file")]);

    // Keep-alive with pipelining, HEAD, 404, 405, and a bad request.
    let r = exchange(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nPOST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        &[false, true, false, false],
    );
    let statuses: Vec<u16> = r.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 404, 405]);
    assert_eq!(r[0].text(), "ok\n");
    assert_eq!(r[0].headers["connection"], "keep-alive");
    assert!(r[1].headers["content-length"].parse::<usize>().unwrap() > 1000);
    assert_eq!(r[3].headers["allow"], "GET, HEAD");
    assert_eq!(r[3].headers["connection"], "close");
    let r = exchange(addr, "GARBAGE\r\n\r\n", &[false]);
    assert_eq!(r[0].status, 400);
}

#[test]
fn healthz_fails_while_the_server_answers_500_and_recovers() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    sim.create(&Resource::pods(), "default", "a", &[], json!({}));
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &sim,
        "metrics_listen = \"127.0.0.1:0\"",
        &(watch("pods", "\"out\"") + &watch("quiet", "\"out\"") + &file_sink(dir.path(), "out")),
    );
    let d = Running::start_in(dir, &text);
    let addr = metrics_addr(&d);
    assert!(wait_until(WAIT, || sim.open_watches() == 2));
    assert!(wait_until(WAIT, || get(addr, "/healthz").status == 200));

    // Every request fails from now on; ending the streams makes both
    // watches reconnect into the failures.
    sim.add_fault(FaultRule {
        path_contains: "/pods".into(),
        times: 100_000,
        fault: Fault::Status {
            code: 500,
            retry_after: None,
        },
    });
    sim.end_watches();
    let mut body = Value::Null;
    assert!(
        wait_until(WAIT, || {
            let r = get(addr, "/healthz");
            if r.status == 503 {
                assert_eq!(r.headers["content-type"], "application/json");
                body = serde_json::from_slice(&r.body).unwrap();
            }
            body["unhealthy"].as_array().is_some_and(|l| l.len() == 2)
        }),
        "log:\n{}",
        d.log_text()
    );
    let first = &body["unhealthy"][0];
    assert_eq!(first["watch"], "pods");
    assert_eq!(first["cluster"], "test");
    assert!(first["consecutive_failures"].as_u64().unwrap() >= 5);
    assert!(first["reason"].as_str().unwrap().contains("500"), "{first}");
    let f = scrape(addr);
    let reconnects = |reason| {
        value(
            &f,
            "kwatchd_watch_reconnects_total",
            &[("watch", "pods"), ("reason", reason)],
        )
    };
    // The stream ended within a second of opening, without an event: that
    // counts as a failure too (transport_error), then the 500s.
    assert!(
        reconnects("http_error") >= 4.0
            && reconnects("http_error") + reconnects("transport_error") >= 5.0,
        "{:?}",
        f["kwatchd_watch_reconnects_total"].samples
    );
    assert_eq!(
        value(
            &f,
            "kwatchd_watch_state",
            &[("watch", "pods"), ("state", "streaming")]
        ),
        0.0
    );

    // `kwatchd status` says so, with exit code 1.
    let out = Command::new(BIN)
        .args(["status", "--addr", &addr.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("UNHEALTHY\n  watch pods: "), "{stdout}");

    // The server recovers: so does the probe.
    sim.clear_faults();
    assert!(
        wait_until(Duration::from_secs(60), || get(addr, "/healthz").status
            == 200),
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(status_json(addr)["watches"][0]["consecutive_failures"], 0);
}

#[test]
fn status_prints_the_table_from_the_configured_address() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    sim.create(&Resource::pods(), "default", "a", &[], json!({}));
    sim.create(&Resource::pods(), "default", "b", &[], json!({}));
    let port = free_port();
    let (mut d, _) = pods_into_a_file(&sim, &format!("metrics_listen = \"127.0.0.1:{port}\""));
    assert!(wait_until(WAIT, || count_records(&d.path("out.jsonl")) == 2));
    let config = d.config.clone();
    let status = || {
        Command::new(BIN)
            .args(["status", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = status();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "WATCH",
            "CLUSTER",
            "STATE",
            "OBJECTS",
            "LAST",
            "EVENT",
            "RECONNECTS"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..4], ["pods", "test", "streaming", "2"]);
    assert!(row[4].ends_with('s') && row[5] == "ago", "{stdout}");
    assert_eq!(row[6], "0");
    let sinks = lines.iter().position(|l| l.starts_with("SINK")).unwrap();
    assert_eq!(
        lines[sinks + 1].split_whitespace().collect::<Vec<_>>(),
        ["out", "file", "0", "2", "0", "0"]
    );
    assert_eq!(lines.last(), Some(&"healthy"));

    // A second daemon cannot take the same address: it says which key.
    let second = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!(
            "cannot serve metrics on 127.0.0.1:{port} ([daemon] metrics_listen)"
        )),
        "{err}"
    );

    // Stopped: unreachable, exit 2.
    assert!(d.stop().success());
    let out = status();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot get the status"));
    // No metrics_listen: a config problem, said clearly.
    let plain = d.path("plain.toml");
    std::fs::write(&plain, "[daemon]\nlog_level = \"info\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["status", "--config"])
        .arg(&plain)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("metrics_listen is not set"));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    sim.create(&Resource::pods(), "default", "a", &[], json!({}));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kwatchd.toml");
    let text = config_text(
        &sim,
        "log_format = \"json\"",
        &(watch("pods", "\"out\"") + &file_sink(dir.path(), "out")),
    );
    std::fs::write(&config, with_state_dir(&text, &dir.path().join("state"))).unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("KWATCHD_LOG_LEVEL", "debug")
        // Inherited from somewhere else: not this stderr, so no <N> prefix.
        .env("JOURNAL_STREAM", "8:12345")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let listed = wait_until(WAIT, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("listed 1 objects")
    });
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let end = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "no exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(listed && status.success(), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    assert!(lines.len() >= 4, "{text}");
    for v in &lines {
        let obj = v.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "{v}");
        assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
        assert!(["error", "warn", "info", "debug", "trace"].contains(&v["level"].as_str().unwrap()));
        assert!(v["target"].as_str().unwrap().starts_with("kwatchd"), "{v}");
        assert!(v["message"].is_string());
    }
    assert!(lines.iter().any(|v| v["level"] == "debug"));
    assert!(lines
        .iter()
        .any(|v| v["message"].as_str().unwrap().contains("listed 1 objects")));
}

/// Live (not zombie) processes whose process group is `pgid`.
fn live_group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // state, ppid, pgrp
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            out.push(pid);
        }
    }
    out
}

fn hook_daemon(shutdown_timeout: &str, hook_body: &str) -> (Sim, Running, PathBuf) {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let hook = script(
        dir.path(),
        "hook",
        &hook_body.replace("MARKS", &marks.display().to_string()),
    );
    let text = config_text(
        &sim,
        &format!("shutdown_timeout = \"{shutdown_timeout}\""),
        &format!(
            "{}[sinks.hook]\ntype = \"exec\"\ncommand = [\"{}\"]\ntimeout = \"5m\"\n",
            watch("pods", "\"hook\"").replace("on_start = \"added\"", "on_start = \"skip\""),
            hook.display()
        ),
    );
    let d = Running::start_in(dir, &text);
    assert!(
        wait_until(WAIT, || sim.open_watches() == 1),
        "log:\n{}",
        d.log_text()
    );
    sim.create(&Resource::pods(), "default", "slow", &[], json!({}));
    let started = marks.join("started");
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&started)
            .is_ok_and(|s| s.ends_with('\n'))),
        "log:\n{}",
        d.log_text()
    );
    (sim, d, marks)
}

fn wait_exit(d: &mut Running, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let t0 = Instant::now();
    d.signal(libc::SIGTERM);
    loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            return (s, t0.elapsed());
        }
        assert!(
            t0.elapsed() < limit,
            "no exit within {limit:?}; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_a_running_hook_finish_then_exits_0() {
    let (_sim, mut d, marks) = hook_daemon(
        "20s",
        "cat > /dev/null\necho $$ > MARKS/started\nsleep 2\necho done > MARKS/finished",
    );
    let (status, took) = wait_exit(&mut d, Duration::from_secs(20));
    assert!(status.success(), "{status:?}; log:\n{}", d.log_text());
    assert_eq!(
        std::fs::read_to_string(marks.join("finished"))
            .ok()
            .as_deref(),
        Some("done\n"),
        "the hook ran to its end; log:\n{}",
        d.log_text()
    );
    assert!(took < Duration::from_secs(20));
    assert!(d.log_text().contains("up to 20s"), "{}", d.log_text());
}

#[test]
fn a_hook_outliving_shutdown_timeout_is_killed_with_its_group_and_the_daemon_exits_0() {
    // The hook leaves a background child in its group, then waits too.
    let (_sim, mut d, marks) = hook_daemon(
        "1s",
        "cat > /dev/null\nsleep 300 &\necho $$ > MARKS/started\nsleep 300\necho done > MARKS/finished",
    );
    let pgid: i32 = std::fs::read_to_string(marks.join("started"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        live_group_members(pgid).len() >= 2,
        "hook and its child run"
    );
    let (status, _) = wait_exit(&mut d, Duration::from_secs(20));
    assert!(status.success(), "{status:?}; log:\n{}", d.log_text());
    assert!(
        wait_until(Duration::from_secs(10), || live_group_members(pgid)
            .is_empty()),
        "left alive: {:?}",
        live_group_members(pgid)
    );
    assert!(!marks.join("finished").exists());
    let log = d.log_text();
    assert!(log.contains("not delivered before shutdown"), "{log}");
}

/// A daemon with `daemon` as its `[daemon]` keys (`metrics_listen`
/// included) and one pod watch into a file sink; its metrics address.
fn pods_into_a_file(sim: &Sim, daemon: &str) -> (Running, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        sim,
        daemon,
        &(watch("pods", "\"out\"") + &file_sink(dir.path(), "out")),
    );
    let d = Running::start_in(dir, &text);
    let addr = metrics_addr(&d);
    (d, addr)
}

/// `kwatchd status ARGS…`, run to its end.
fn kwatchd_status(args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("status").args(args).output().unwrap()
}

/// stdout and stderr of a finished command, for assertion messages.
fn out_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `status --config` needs a real port in the config: one that was free.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn healthz_answers_while_idle_connections_fill_every_slot() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let (_d, addr) = pods_into_a_file(&sim, "metrics_listen = \"127.0.0.1:0\"");
    assert!(wait_until(WAIT, || sim.open_watches() == 1));
    // More idle connections than the server's cap (64), held open.
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let r = get(addr, "/healthz");
        assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    }
    let out = kwatchd_status(&["--addr", &addr.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", out_text(&out));
    drop(idle);
}

#[test]
fn readyz_waits_for_the_first_list_and_the_index_lists_the_endpoints() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    sim.create(&Resource::pods(), "default", "a", &[], json!({}));
    // The first LIST answers its head, then stays silent for a while.
    sim.add_fault(FaultRule {
        path_contains: "/pods".into(),
        times: 1,
        fault: Fault::Stall(Duration::from_secs(4)),
    });
    let (d, addr) = pods_into_a_file(&sim, "metrics_listen = \"127.0.0.1:0\"");
    let r = get(addr, "/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["waiting"][0]["watch"], "pods");
    assert_eq!(body["waiting"][0]["state"], "listing");
    // Liveness is another matter: a slow first list is not a failure.
    assert_eq!(get(addr, "/healthz").status, 200);
    assert!(
        wait_until(WAIT, || get(addr, "/readyz").status == 200),
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(get(addr, "/readyz").text(), "ready\n");

    let index = get(addr, "/");
    assert_eq!(index.status, 200);
    for path in ["/metrics", "/healthz", "/readyz", "/status"] {
        assert!(index.text().contains(path), "{path}: {}", index.text());
    }
    assert_eq!(get(addr, "/nope").status, 404);
}

/// `raw` on a fresh connection; the status of the (only) answer.
fn status_of(addr: SocketAddr, path: &str, auth: &str) -> u16 {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    exchange(addr, &raw, &[false]).pop().unwrap().status
}

#[test]
fn a_token_file_guards_metrics_and_status_and_status_sends_it() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let token = keys.path().join("metrics-token");
    std::fs::write(&token, "first-token\n").unwrap();
    let (d, addr) = pods_into_a_file(
        &sim,
        &format!(
            "metrics_listen = \"127.0.0.1:{}\"\nmetrics_token_file = {:?}",
            free_port(),
            token.display().to_string()
        ),
    );
    assert!(wait_until(WAIT, || sim.open_watches() == 1));
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    for path in ["/metrics", "/status"] {
        assert_eq!(status_of(addr, path, ""), 401, "{path}");
        assert_eq!(status_of(addr, path, &bearer("wrong")), 401, "{path}");
        assert_eq!(status_of(addr, path, &bearer("first-token")), 200, "{path}");
    }
    for path in ["/healthz", "/readyz", "/"] {
        assert_eq!(status_of(addr, path, ""), 200, "{path} stays open");
    }
    // `kwatchd status` sends the token of the config; without it, it says
    // what is missing.
    let out = kwatchd_status(&["--config", &d.config.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", out_text(&out));
    let out = kwatchd_status(&["--addr", &addr.to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("401") && err.contains("metrics_token_file"),
        "{err}"
    );
    // A rotated token applies at once; the old one is refused.
    std::fs::write(&token, "second-token-longer\n").unwrap();
    assert_eq!(status_of(addr, "/metrics", &bearer("first-token")), 401);
    assert_eq!(
        status_of(addr, "/metrics", &bearer("second-token-longer")),
        200
    );
    // Never in the log.
    let log = d.log_text();
    assert!(
        !log.contains("first-token") && !log.contains("second-token"),
        "{log}"
    );
    assert!(
        log.contains("/metrics and /status need the bearer token in"),
        "{log}"
    );
}

#[test]
fn a_reload_sets_and_clears_the_metrics_token() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let (d, addr) = pods_into_a_file(&sim, "metrics_listen = \"127.0.0.1:0\"");
    assert!(wait_until(WAIT, || sim.open_watches() == 1));
    assert_eq!(status_of(addr, "/metrics", ""), 200);
    let token = d.path("metrics-token");
    std::fs::write(&token, "reloaded-token\n").unwrap();
    let plain = std::fs::read_to_string(&d.config).unwrap();
    let guarded = plain.replacen(
        "[daemon]\n",
        &format!(
            "[daemon]\nmetrics_token_file = {:?}\n",
            token.display().to_string()
        ),
        1,
    );
    let reload = |text: &str, want: u16| {
        std::fs::write(&d.config, text).unwrap();
        d.signal(libc::SIGHUP);
        assert!(
            wait_until(WAIT, || status_of(addr, "/metrics", "") == want),
            "log:\n{}",
            d.log_text()
        );
    };
    reload(&guarded, 401);
    let bearer = "Authorization: Bearer reloaded-token\r\n";
    assert_eq!(status_of(addr, "/metrics", bearer), 200);
    assert!(d.log_text().contains("now need the bearer token in"));
    reload(&plain, 200);
    assert!(d.log_text().contains("no longer need a token"));
}

#[test]
fn status_gives_up_at_its_deadline_on_a_trickling_endpoint() {
    // Accepts, then sends a response head one byte a second, forever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = listener.accept() {
            std::thread::spawn(move || {
                for b in b"HTTP/1.1 200 OK\r\n"
                    .iter()
                    .chain(std::iter::repeat(&b'x'))
                {
                    if s.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        }
    });
    let mut child = Command::new(BIN)
        .args(["status", "--addr", &addr.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: well above the default deadline, far below "hangs".
    let end = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kwatchd status still running after 40 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("deadline"), "{err}");
}
