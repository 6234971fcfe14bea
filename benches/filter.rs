//! One filtered event's CPU cost alone, on the throughput bench's ~4 KB
//! pods: the watch's `select` + `changes` decided on a value cut to what
//! they read (`WatchFilter::decide`, what the daemon runs) against the same
//! programs on the whole object parsed by jaq (what it ran before), and a
//! sink `transform = 'empty'` on the record, in the same run.
//!
//! Then one streamed event's line from scan to verdict: the event scan
//! building the cut value as it walks the object (`OnePass`, what the
//! daemon runs) against the scan followed by `partial::extract` walking
//! the object again (what it ran before), and the plain scan alone.
//!
//! Last, the two programs alone on the cut value: run by
//! `filter::direct` (what the daemon runs for programs of its subset)
//! against jaq's interpreter (the same programs wrapped as `def f: …; f`,
//! which the direct evaluator does not take).
//!
//! `cargo bench --bench filter`

mod common;

use kwatchd::filter::json;
use kwatchd::filter::object::Change;
use kwatchd::filter::partial::OnePass;
use kwatchd::filter::{Program, RedactKey, Transform, WatchFilter};
use kwatchd::kube::WatchEvent;
use std::hint::black_box;
use std::time::Instant;

const SELECT: &str = r#".metadata.labels.app == "web""#;
const CHANGES: &str = "[.spec.containers[].image]";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let compile = |code: &str| Program::compile(code).expect("compiles");
    let filter = WatchFilter::new(
        Some(compile(SELECT)),
        Some(compile(CHANGES)),
        None,
        RedactKey::from_bytes(&[1; 32]),
    );
    let (select, changes) = (compile(SELECT), compile(CHANGES));
    let transform = Transform::new(compile("empty"));
    let pods: Vec<Vec<u8>> = (0..1000)
        .map(|i| common::pod(i, i + 2).into_bytes())
        .collect();
    let records: Vec<Vec<u8>> = pods
        .iter()
        .map(|p| {
            let mut r = br#"{"time":"2026-11-22T03:16:53.123Z","watch":"pods","cluster":"b","type":"ADDED","origin":"list","object":"#.to_vec();
            r.extend_from_slice(p);
            r.extend_from_slice(b"}\n");
            r
        })
        .collect();
    let lines: Vec<Vec<u8>> = pods
        .iter()
        .map(|p| {
            let mut l = br#"{"type":"MODIFIED","object":"#.to_vec();
            l.extend_from_slice(p);
            l.push(b'}');
            l
        })
        .collect();
    let reads = filter.reads().expect("bounded");
    let rounds = 20;
    let n = (rounds * pods.len()) as f64;
    let per_event = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..rounds {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / n
    };
    for round in 1..=3 {
        let cut = per_event(&mut || {
            for pod in &pods {
                black_box(filter.decide(Change::Added, black_box(pod), None));
            }
        });
        let whole = per_event(&mut || {
            for pod in &pods {
                let v = json::parse(black_box(pod)).expect("valid");
                black_box(select.first(v.clone()).expect("runs"));
                let p = changes.first(v).expect("runs").expect("one output");
                black_box(json::to_canonical_json(&p).expect("JSON"));
            }
        });
        let empty = per_event(&mut || {
            for record in &records {
                black_box(transform.apply(black_box(record)));
            }
        });
        println!(
            "round {round}: select+changes on the cut value (WatchFilter::decide) {cut:.2} µs/event | on the whole object parsed by jaq {whole:.2} µs/event | whole/cut = {:.1}x | transform 'empty' on the record {empty:.2} µs/record",
            whole / cut
        );
    }
    for round in 1..=3 {
        let one = per_event(&mut || {
            for line in &lines {
                let line = black_box(line);
                let mut pass = OnePass::new(line, reads);
                let event = WatchEvent::parse_with(line, &mut pass).expect("valid");
                let cut = pass.finish();
                let object = event.object.get().as_bytes();
                black_box(filter.decide_with(Change::Modified, object, cut.as_ref(), None));
            }
        });
        let two = per_event(&mut || {
            for line in &lines {
                let event = WatchEvent::parse(black_box(line)).expect("valid");
                let object = event.object.get().as_bytes();
                black_box(filter.decide(Change::Modified, object, None));
            }
        });
        let scan = per_event(&mut || {
            for line in &lines {
                black_box(WatchEvent::parse(black_box(line)).expect("valid"));
            }
        });
        let scan_cut = per_event(&mut || {
            for line in &lines {
                let line = black_box(line);
                let mut pass = OnePass::new(line, reads);
                black_box(WatchEvent::parse_with(line, &mut pass).expect("valid"));
                black_box(pass.finish());
            }
        });
        println!(
            "round {round}: event line scan+decide in one pass (cut while scanning) {one:.2} µs/event | scan then cut (two passes) {two:.2} µs/event | two/one = {:.2}x | scan alone {scan:.2} µs/event, scan building the cut {scan_cut:.2} µs/event",
            two / one
        );
    }
    let interpreted = |code: &str| compile(&format!("def f: {code}; f"));
    let (select_jaq, changes_jaq) = (interpreted(SELECT), interpreted(CHANGES));
    let cuts: Vec<_> = pods
        .iter()
        .map(|p| json::parse_for(p, Some(reads)).expect("valid"))
        .collect();
    let run = |select: &Program, changes: &Program| {
        for v in &cuts {
            black_box(select.first(black_box(v.clone())).expect("runs"));
            let p = changes.first(v.clone()).expect("runs").expect("one output");
            black_box(json::to_canonical_json(&p).expect("JSON"));
        }
    };
    for round in 1..=3 {
        let direct = per_event(&mut || run(&select, &changes));
        let jaq = per_event(&mut || run(&select_jaq, &changes_jaq));
        println!(
            "round {round}: select+changes (projection rendered) on the cut value: direct {direct:.2} µs/event | jaq's interpreter {jaq:.2} µs/event | jaq/direct = {:.1}x",
            jaq / direct
        );
    }
}
