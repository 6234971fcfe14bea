//! The event parser alone, on the throughput bench's ~4 KB pod lines:
//! `WatchEvent::parse` (one pass of `kube::scan`) against serde_json
//! validating the same line (`IgnoredAny`), in the same run.
//!
//! `cargo bench --bench scan`

mod common;

use kwatchd::kube::WatchEvent;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let lines: Vec<Vec<u8>> = (0..2000)
        .map(|i| {
            format!(
                "{{\"type\":\"ADDED\",\"object\":{}}}",
                common::pod(i, i + 2)
            )
            .into_bytes()
        })
        .collect();
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let rounds = 50;
    for round in 1..=3 {
        let start = Instant::now();
        for _ in 0..rounds {
            for line in &lines {
                let ev = WatchEvent::parse(black_box(line)).expect("valid line");
                black_box(ev.meta.uid);
            }
        }
        let ours = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..rounds {
            for line in &lines {
                let v: serde::de::IgnoredAny =
                    serde_json::from_slice(black_box(line)).expect("valid line");
                black_box(v);
            }
        }
        let serde = start.elapsed().as_secs_f64();
        let n = (rounds * lines.len()) as f64;
        let mb = (rounds * bytes) as f64 / 1e6;
        println!(
            "round {round}: WatchEvent::parse {:.0} MB/s ({:.0} lines/s) | serde_json IgnoredAny {:.0} MB/s ({:.0} lines/s) | ratio {:.2}",
            mb / ours,
            n / ours,
            mb / serde,
            n / serde,
            serde / ours
        );
    }
}
