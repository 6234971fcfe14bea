//! The `/metrics` exposition: every `kwatchd_*` family from a snapshot,
//! and the standard `process_*` families.

use super::process::ProcessStats;
use super::text::{Exposition, Kind};
use super::Snapshot;
use crate::config::EventType;
use crate::filter::{FilterKey, SkipReason};
use crate::nats::ConnState;
use crate::sink::latency::BUCKETS_SECONDS;
use crate::sink::{HookResult, LatencySample};
use crate::watch::{ReconnectReason, WatchState};

/// Renders the whole exposition.
pub fn render(s: &Snapshot<'_>, process: &ProcessStats) -> String {
    let mut e = Exposition::new();
    watches(&mut e, s);
    sinks(&mut e, s);
    nats_sinks(&mut e, s);
    leader(&mut e, s);
    process_families(&mut e, process);
    e.family(
        "kwatchd_build_info",
        Kind::Gauge,
        "Always 1; the version label says which kwatchd runs.",
    );
    e.int(
        "kwatchd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    e.finish()
}

/// With `[daemon.leader_election]` only: nothing is rendered without it.
fn leader(e: &mut Exposition, s: &Snapshot<'_>) {
    let Some(l) = &s.leader else {
        return;
    };
    e.family(
        "kwatchd_leader",
        Kind::Gauge,
        "1 while this replica leads and delivers, 0 while it is a standby (leader election).",
    );
    e.int(
        "kwatchd_leader",
        &[("identity", l.identity.as_str())],
        u64::from(l.delivering),
    );
    e.family(
        "kwatchd_leader_transitions_total",
        Kind::Counter,
        "Times this replica started or stopped delivering (leader election).",
    );
    e.int("kwatchd_leader_transitions_total", &[], l.transitions);
}

fn watches(e: &mut Exposition, s: &Snapshot<'_>) {
    e.family(
        "kwatchd_watch_events_total",
        Kind::Counter,
        "Events received per watch and type (initial list, watch and relist events; types a watch does not forward included).",
    );
    for w in &s.watches {
        for t in EventType::ALL {
            e.int(
                "kwatchd_watch_events_total",
                &[("watch", w.name), ("type", t.as_str())],
                w.stats.events_by_type[t as usize],
            );
        }
    }
    e.family(
        "kwatchd_watch_events_skipped_total",
        Kind::Counter,
        "Events a watch's select (unselected) or changes (unchanged) kept from the sinks; acknowledged like delivered ones.",
    );
    for w in &s.watches {
        for r in SkipReason::ALL {
            e.int(
                "kwatchd_watch_events_skipped_total",
                &[("watch", w.name), ("reason", r.as_str())],
                w.filter.skipped[r as usize],
            );
        }
    }
    e.family(
        "kwatchd_filter_errors_total",
        Kind::Counter,
        "Runtime errors of a watch's select, changes, redact or its sinks' transform (the event is delivered as if it passed).",
    );
    for w in &s.watches {
        for k in FilterKey::ALL {
            e.int(
                "kwatchd_filter_errors_total",
                &[("watch", w.name), ("key", k.as_str())],
                w.filter.errors[k as usize],
            );
        }
    }
    e.family(
        "kwatchd_watch_state",
        Kind::Gauge,
        "1 for the state each watch is in, 0 for the others.",
    );
    for w in &s.watches {
        for state in WatchState::ALL {
            e.int(
                "kwatchd_watch_state",
                &[("watch", w.name), ("state", state.label())],
                u64::from(w.state == state),
            );
        }
    }
    e.family(
        "kwatchd_watch_reconnects_total",
        Kind::Counter,
        "New requests a watch sent after the previous one ended or failed, by reason.",
    );
    for w in &s.watches {
        for r in ReconnectReason::ALL {
            e.int(
                "kwatchd_watch_reconnects_total",
                &[("watch", w.name), ("reason", r.as_str())],
                w.stats.reconnects_by_reason[r as usize],
            );
        }
    }
    e.family(
        "kwatchd_watch_relists_total",
        Kind::Counter,
        "Relists after the server said the watch's resourceVersion was gone (410).",
    );
    for w in &s.watches {
        e.int(
            "kwatchd_watch_relists_total",
            &[("watch", w.name)],
            w.stats.relists,
        );
    }
    e.family(
        "kwatchd_watch_last_event_timestamp_seconds",
        Kind::Gauge,
        "When the watch last received an event (Unix time); absent until its first event.",
    );
    for w in &s.watches {
        if let Some(at) = w.stats.last_event {
            e.sample(
                "kwatchd_watch_last_event_timestamp_seconds",
                &[("watch", w.name)],
                s.wall_seconds(at),
            );
        }
    }
    e.family(
        "kwatchd_watch_bytes_total",
        Kind::Counter,
        "Bytes received from the API server for the watch (lists included).",
    );
    for w in &s.watches {
        e.int(
            "kwatchd_watch_bytes_total",
            &[("watch", w.name)],
            w.stats.bytes,
        );
    }
    e.family(
        "kwatchd_watch_objects",
        Kind::Gauge,
        "Objects the watch currently knows of (its index).",
    );
    for w in &s.watches {
        e.int(
            "kwatchd_watch_objects",
            &[("watch", w.name)],
            w.objects as u64,
        );
    }
    e.family(
        "kwatchd_watch_consecutive_failures",
        Kind::Gauge,
        "Failed attempts since the watch's last success; /healthz reports the watch at 5.",
    );
    for w in &s.watches {
        e.int(
            "kwatchd_watch_consecutive_failures",
            &[("watch", w.name)],
            u64::from(w.stats.consecutive_failures),
        );
    }
}

fn sinks(e: &mut Exposition, s: &Snapshot<'_>) {
    e.family(
        "kwatchd_sink_deliveries_total",
        Kind::Counter,
        "Events per sink and result: delivered; retries (sent back for another attempt after a failed one, counted per attempt); given_up (handed to on_failure).",
    );
    for k in &s.sinks {
        let c = k.stats.counts;
        for (result, n) in [
            ("delivered", c.delivered),
            ("retries", c.retries),
            ("given_up", c.given_up),
        ] {
            e.int(
                "kwatchd_sink_deliveries_total",
                &[("sink", k.name), ("result", result)],
                n,
            );
        }
    }
    e.family(
        "kwatchd_sink_coalesced_total",
        Kind::Counter,
        "Events replaced, while waiting, by a newer event of their object (coalesce = true); acknowledged, never delivered.",
    );
    for k in &s.sinks {
        e.int(
            "kwatchd_sink_coalesced_total",
            &[("sink", k.name)],
            k.stats.counts.coalesced,
        );
    }
    e.family(
        "kwatchd_sink_queue_depth",
        Kind::Gauge,
        "Events a sink holds that are not delivered yet (queued, running, or waiting to retry).",
    );
    for k in &s.sinks {
        e.int(
            "kwatchd_sink_queue_depth",
            &[("sink", k.name)],
            k.stats.queue_depth as u64,
        );
    }
    e.family(
        "kwatchd_sink_delivery_duration_seconds",
        Kind::Histogram,
        "From reading the event to: the record written (file, stdout), the hook spawned (exec), the receiver answering 2xx (webhook).",
    );
    for k in &s.sinks {
        if let Some(latency) = k.stats.latency {
            histogram(e, "kwatchd_sink_delivery_duration_seconds", k.name, latency);
        }
    }
    e.family(
        "kwatchd_hook_runs_total",
        Kind::Counter,
        "Exec sinks: hook runs by how they ended (success = exit 0).",
    );
    for k in &s.sinks {
        let Some(runs) = k.stats.hook_runs else {
            continue;
        };
        for r in HookResult::ALL {
            e.int(
                "kwatchd_hook_runs_total",
                &[("sink", k.name), ("result", r.as_str())],
                runs.get(r),
            );
        }
    }
    e.family(
        "kwatchd_hook_run_duration_seconds",
        Kind::Histogram,
        "Exec sinks: how long each hook ran, from spawn to exit (timed-out runs included).",
    );
    for k in &s.sinks {
        if let Some(durations) = k.stats.hook_run_durations {
            histogram(e, "kwatchd_hook_run_duration_seconds", k.name, durations);
        }
    }
}

fn nats_sinks(e: &mut Exposition, s: &Snapshot<'_>) {
    e.family(
        "kwatchd_nats_duplicates_total",
        Kind::Counter,
        "NATS sinks: PubAcks that said duplicate: true (the stream already held the event; kwatchd sent it again after a crash, reconnect or timeout).",
    );
    for k in &s.sinks {
        if let Some(n) = k.stats.nats {
            e.int(
                "kwatchd_nats_duplicates_total",
                &[("sink", k.name)],
                n.duplicates,
            );
        }
    }
    e.family(
        "kwatchd_nats_connection_state",
        Kind::Gauge,
        "NATS sinks: 1 for the connection's current state, 0 for the others.",
    );
    for k in &s.sinks {
        if let Some(n) = k.stats.nats {
            for state in ConnState::ALL {
                e.int(
                    "kwatchd_nats_connection_state",
                    &[("sink", k.name), ("state", state.as_str())],
                    u64::from(state == n.state),
                );
            }
        }
    }
}

/// One sink's series of a histogram family (`_bucket`, `_sum`, `_count`).
fn histogram(e: &mut Exposition, family: &str, sink: &str, h: &LatencySample) {
    let (bucket, sum, count) = (
        format!("{family}_bucket"),
        format!("{family}_sum"),
        format!("{family}_count"),
    );
    let mut le = String::new();
    for (bound, n) in BUCKETS_SECONDS.iter().zip(h.cumulative_buckets()) {
        le.clear();
        super::text::format_value(*bound, &mut le);
        e.int(&bucket, &[("sink", sink), ("le", &le)], n);
    }
    e.int(&bucket, &[("sink", sink), ("le", "+Inf")], h.count());
    e.sample(&sum, &[("sink", sink)], h.sum_seconds());
    e.int(&count, &[("sink", sink)], h.count());
}

/// The standard process families, named as Prometheus' client libraries
/// name them so that stock dashboards and alerts work unchanged.
fn process_families(e: &mut Exposition, p: &ProcessStats) {
    let families: [(&str, Kind, &str, Option<f64>); 6] = [
        (
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            p.resident_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            p.virtual_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            p.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors (the soft RLIMIT_NOFILE; each watch needs one).",
            p.max_fds.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in families {
        e.family(name, kind, help);
        if let Some(v) = value {
            e.sample(name, &[], v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SinkView, WatchView};
    use super::*;
    use crate::sink::{DeliveryCounts, HookRunCounts, LatencySample, SinkStats};
    use crate::watch::WatchStats;
    use std::time::{Duration, Instant, SystemTime};

    #[test]
    fn families_series_and_escaped_names() {
        let now = Instant::now();
        let mut stats = WatchStats {
            events: 5,
            relists: 1,
            bytes: 1234,
            last_event: Some(now - Duration::from_secs(2)),
            ..WatchStats::default()
        };
        stats.events_by_type = [3, 1, 1];
        stats.reconnects_by_reason[ReconnectReason::HttpError as usize] = 2;
        let mut latency = LatencySample::default();
        latency.record(Duration::from_millis(3));
        latency.record(Duration::from_secs(2));
        let mut runs = HookRunCounts::default();
        runs.0[HookResult::TimedOut as usize] = 1;
        let mut run_durations = LatencySample::default();
        run_durations.record(Duration::from_millis(40));
        let mut written = LatencySample::default();
        written.record(Duration::from_micros(300));
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Snapshot {
            state_store_error: None,
            leader: None,
            watches: vec![WatchView {
                name: "we\"ird\\\nname",
                cluster: "c",
                state: WatchState::BackingOff,
                objects: 7,
                stats,
                filter: crate::filter::FilterStats {
                    skipped: [5, 6],
                    errors: [0, 1, 0, 2],
                },
                last_error: None,
                ready: true,
            }],
            sinks: vec![
                SinkView {
                    name: "hook",
                    stats: SinkStats {
                        kind: "exec",
                        queue_depth: 4,
                        counts: DeliveryCounts {
                            delivered: 10,
                            retries: 2,
                            given_up: 1,
                            coalesced: 0,
                        },
                        latency: Some(&latency),
                        hook_runs: Some(runs),
                        hook_run_durations: Some(&run_durations),
                        nats: None,
                    },
                },
                SinkView {
                    name: "out",
                    stats: SinkStats {
                        kind: "file",
                        queue_depth: 0,
                        counts: DeliveryCounts {
                            delivered: 1,
                            retries: 0,
                            given_up: 0,
                            coalesced: 0,
                        },
                        latency: Some(&written),
                        hook_runs: None,
                        hook_run_durations: None,
                        nats: None,
                    },
                },
            ],
            now,
            wall,
        };
        let process = ProcessStats {
            cpu_seconds: Some(1.5),
            max_fds: Some(1024),
            ..ProcessStats::default()
        };
        let text = render(&s, &process);
        let has = |line: &str| {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            )
        };
        let w = r#"watch="we\"ird\\\nname""#;
        has(&format!(
            "kwatchd_watch_events_total{{{w},type=\"ADDED\"}} 3"
        ));
        has(&format!(
            "kwatchd_watch_events_skipped_total{{{w},reason=\"unchanged\"}} 6"
        ));
        has(&format!(
            "kwatchd_filter_errors_total{{{w},key=\"transform\"}} 2"
        ));
        has(&format!(
            "kwatchd_watch_state{{{w},state=\"backing_off\"}} 1"
        ));
        has(&format!("kwatchd_watch_state{{{w},state=\"streaming\"}} 0"));
        has(&format!(
            "kwatchd_watch_reconnects_total{{{w},reason=\"http_error\"}} 2"
        ));
        has(&format!("kwatchd_watch_relists_total{{{w}}} 1"));
        has(&format!(
            "kwatchd_watch_last_event_timestamp_seconds{{{w}}} 999998"
        ));
        has(&format!("kwatchd_watch_bytes_total{{{w}}} 1234"));
        has("kwatchd_sink_deliveries_total{sink=\"hook\",result=\"given_up\"} 1");
        has("kwatchd_sink_coalesced_total{sink=\"hook\"} 0");
        has("kwatchd_sink_queue_depth{sink=\"hook\"} 4");
        has("kwatchd_sink_delivery_duration_seconds_bucket{sink=\"hook\",le=\"0.0025\"} 0");
        has("kwatchd_sink_delivery_duration_seconds_bucket{sink=\"hook\",le=\"0.005\"} 1");
        has("kwatchd_sink_delivery_duration_seconds_bucket{sink=\"hook\",le=\"2.5\"} 2");
        has("kwatchd_sink_delivery_duration_seconds_bucket{sink=\"hook\",le=\"+Inf\"} 2");
        has("kwatchd_sink_delivery_duration_seconds_sum{sink=\"hook\"} 2.003");
        has("kwatchd_sink_delivery_duration_seconds_count{sink=\"hook\"} 2");
        has("kwatchd_hook_runs_total{sink=\"hook\",result=\"timed_out\"} 1");
        has("kwatchd_hook_run_duration_seconds_bucket{sink=\"hook\",le=\"0.025\"} 0");
        has("kwatchd_hook_run_duration_seconds_bucket{sink=\"hook\",le=\"0.05\"} 1");
        has("kwatchd_hook_run_duration_seconds_sum{sink=\"hook\"} 0.04");
        has("kwatchd_hook_run_duration_seconds_count{sink=\"hook\"} 1");
        has("kwatchd_sink_delivery_duration_seconds_bucket{sink=\"out\",le=\"0.0005\"} 1");
        has("kwatchd_sink_delivery_duration_seconds_count{sink=\"out\"} 1");
        assert!(
            !text.contains("kwatchd_hook_run_duration_seconds_count{sink=\"out\"}"),
            "file sinks run no hooks"
        );
        has("# TYPE kwatchd_sink_delivery_duration_seconds histogram");
        has("# TYPE kwatchd_hook_run_duration_seconds histogram");
        has("# TYPE process_open_fds gauge");
        has("# TYPE process_cpu_seconds_total counter");
        has("process_cpu_seconds_total 1.5");
        has("process_max_fds 1024");
        assert!(
            !text.contains("kwatchd_process_"),
            "the standard names only"
        );
        // Every family has HELP then TYPE, once.
        for name in [
            "kwatchd_watch_events_total",
            "kwatchd_watch_state",
            "kwatchd_watch_reconnects_total",
            "kwatchd_watch_relists_total",
            "kwatchd_watch_last_event_timestamp_seconds",
            "kwatchd_watch_bytes_total",
            "kwatchd_sink_deliveries_total",
            "kwatchd_sink_queue_depth",
            "kwatchd_sink_delivery_duration_seconds",
            "kwatchd_hook_runs_total",
            "kwatchd_hook_run_duration_seconds",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "kwatchd_build_info",
        ] {
            let help = format!("# HELP {name} ");
            assert_eq!(text.matches(&help).count(), 1, "{name}");
        }
    }
}
