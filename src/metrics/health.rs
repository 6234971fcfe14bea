//! `/healthz`, `/readyz` and `/status`.
//!
//! Readiness is the rule the daemon sends systemd's READY=1 by: every watch
//! has listed its objects once, or is backing off after a failure (so one
//! unreachable cluster does not hold the others back; `/healthz` reports it
//! once it keeps failing).
//!
//! Health is about the watches: kwatchd is healthy when every watch is
//! doing its job or is in a normal retry. A watch is **unhealthy** when its
//! last [`FAILURE_LIMIT`] attempts or more in a row failed — connect or TLS
//! errors, HTTP error answers (410 excepted: relisting is normal), ERROR
//! events, streams that ended at once or went silent past their idle limit
//! — whatever its state at the moment (a watch backing off after one or two
//! failures is healthy; one that keeps failing stays unhealthy while it
//! retries). The next success clears it: a LIST page, or a watch stream
//! that opens (a stream that then ends within a second without any event
//! counts as one more failure instead). With the backoff (200 ms base,
//! doubling, full jitter) five failures take a few seconds, so a brief API
//! server restart does not flip the probe but a real outage does.
//!
//! A watch stopped by a permanent error (an ambiguous kind, a namespace on
//! a cluster-scoped kind) is unhealthy until a reload fixes it.
//!
//! Sinks do not make the daemon unhealthy: a failing hook or receiver slows
//! its watches (they stop reading) and shows in the sink counters.

use super::http::Response;
use super::{Snapshot, WatchView};
use crate::config::EventType;
use crate::watch::WatchState;
use serde_json::{json, Value};

/// Consecutive failed attempts that make a watch unhealthy.
pub const FAILURE_LIMIT: u32 = 5;

/// An unhealthy watch and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    pub watch: String,
    pub cluster: String,
    pub state: String,
    pub consecutive_failures: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy(Vec<Unhealthy>),
}

fn unhealthy_reason(w: &WatchView<'_>) -> Option<String> {
    if w.state == WatchState::Failed {
        // A permanent error (an ambiguous kind, a namespace on a
        // cluster-scoped kind): it will not recover without a config change.
        return Some(format!(
            "stopped: {}",
            w.last_error.unwrap_or("a permanent error; see the log")
        ));
    }
    let failures = w.stats.consecutive_failures;
    (failures >= FAILURE_LIMIT).then(|| {
        format!(
            "{failures} failed attempts in a row (limit {FAILURE_LIMIT}); last: {}",
            w.last_error.unwrap_or("unknown")
        )
    })
}

pub fn health(s: &Snapshot<'_>) -> Health {
    let bad: Vec<Unhealthy> = s
        .watches
        .iter()
        .filter_map(|w| {
            unhealthy_reason(w).map(|reason| Unhealthy {
                watch: w.name.to_owned(),
                cluster: w.cluster.to_owned(),
                state: w.state.as_str().to_owned(),
                consecutive_failures: w.stats.consecutive_failures,
                reason,
            })
        })
        .collect();
    if bad.is_empty() {
        Health::Healthy
    } else {
        Health::Unhealthy(bad)
    }
}

/// 200 `ok`, or 503 with `{"status":"unhealthy","unhealthy":[…]}`.
pub fn healthz(s: &Snapshot<'_>) -> Response {
    match health(s) {
        Health::Healthy => Response::text(200, "ok\n"),
        Health::Unhealthy(bad) => {
            let list: Vec<Value> = bad
                .iter()
                .map(|u| {
                    json!({
                        "watch": u.watch,
                        "cluster": u.cluster,
                        "state": u.state,
                        "consecutive_failures": u.consecutive_failures,
                        "reason": u.reason,
                    })
                })
                .collect();
            Response::json(503, &json!({"status": "unhealthy", "unhealthy": list}))
        }
    }
}

/// 200 `ready`, or 503 with `{"status":"not ready","waiting":[…]}`.
pub fn readyz(s: &Snapshot<'_>) -> Response {
    let waiting: Vec<Value> = s
        .watches
        .iter()
        .filter(|w| !w.ready)
        .map(|w| json!({"watch": w.name, "cluster": w.cluster, "state": w.state.as_str()}))
        .collect();
    if waiting.is_empty() {
        Response::text(200, "ready\n")
    } else {
        Response::json(503, &json!({"status": "not ready", "waiting": waiting}))
    }
}

/// The `/status` document.
pub fn status(s: &Snapshot<'_>) -> Value {
    let watches: Vec<Value> = s
        .watches
        .iter()
        .map(|w| {
            let last_event = w.stats.last_event.map(|at| {
                let wall = s.wall_seconds(at);
                json!({
                    "time": rfc3339(wall),
                    "age_seconds": round_ms(s.now.saturating_duration_since(at).as_secs_f64()),
                })
            });
            let by_type: serde_json::Map<String, Value> = EventType::ALL
                .iter()
                .map(|t| {
                    (
                        t.as_str().to_owned(),
                        w.stats.events_by_type[*t as usize].into(),
                    )
                })
                .collect();
            json!({
                "name": w.name,
                "cluster": w.cluster,
                "state": w.state.as_str(),
                "healthy": unhealthy_reason(w).is_none(),
                "objects_known": w.objects,
                "events": w.stats.events,
                "events_by_type": by_type,
                "last_event": last_event,
                "reconnects": w.stats.reconnects,
                "relists": w.stats.relists,
                "bytes": w.stats.bytes,
                "consecutive_failures": w.stats.consecutive_failures,
                "last_error": w.last_error,
            })
        })
        .collect();
    let sinks: Vec<Value> = s
        .sinks
        .iter()
        .map(|k| {
            let mut v = json!({
                "name": k.name,
                "type": k.stats.kind,
                "queue_depth": k.stats.queue_depth,
                "delivered": k.stats.counts.delivered,
                "retries": k.stats.counts.retries,
                "given_up": k.stats.counts.given_up,
            });
            if let Some(n) = &k.stats.nats {
                v["nats"] = json!({
                    "connection": n.state.as_str(),
                    "server": n.server.map(|s| s.to_string()),
                    "paused": n.paused,
                    "duplicates": n.duplicates,
                });
            }
            v
        })
        .collect();
    let mut status = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "healthy": health(s) == Health::Healthy,
        "watches": watches,
        "sinks": sinks,
        "state_store": {
            "writing": s.state_store_error.is_none(),
            "error": s.state_store_error,
        },
    });
    if let Some(l) = &s.leader {
        let since = l
            .since
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        status["leader"] = json!({
            "identity": l.identity,
            "role": l.role.as_str(),
            "holder": l.holder,
            "delivering": l.delivering,
            "since": rfc3339(since),
            "transitions": l.transitions,
        });
    }
    status
}

fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

fn rfc3339(unix_seconds: f64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(unix_seconds.max(0.0));
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::SinkView;
    use super::*;
    use crate::sink::{DeliveryCounts, SinkStats};
    use crate::watch::{WatchState, WatchStats};
    use std::time::{Duration, Instant, SystemTime};

    fn view(name: &'static str, state: WatchState, failures: u32) -> WatchView<'static> {
        WatchView {
            name,
            cluster: "c",
            state,
            objects: 1,
            stats: WatchStats {
                consecutive_failures: failures,
                ..WatchStats::default()
            },
            filter: Default::default(),
            last_error: (failures > 0).then_some("WATCH answered 500"),
            ready: true,
        }
    }

    fn snapshot(watches: Vec<WatchView<'static>>) -> Snapshot<'static> {
        Snapshot {
            state_store_error: None,
            leader: None,
            watches,
            sinks: vec![],
            now: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    #[test]
    fn healthy_until_the_failure_limit_whatever_the_state() {
        let ok = snapshot(vec![
            view("a", WatchState::Streaming, 0),
            view("b", WatchState::BackingOff, FAILURE_LIMIT - 1),
            view("c", WatchState::Listing, 0),
        ]);
        assert_eq!(health(&ok), Health::Healthy);
        let r = healthz(&ok);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));

        let bad = snapshot(vec![
            view("a", WatchState::Streaming, 0),
            view("b", WatchState::Connecting, FAILURE_LIMIT),
        ]);
        let r = healthz(&bad);
        assert_eq!(r.status, 503);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["unhealthy"].as_array().unwrap().len(), 1);
        assert_eq!(body["unhealthy"][0]["watch"], "b");
        assert_eq!(body["unhealthy"][0]["state"], "connecting");
        let reason = body["unhealthy"][0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("5 failed attempts in a row") && reason.contains("WATCH answered 500"),
            "{reason}"
        );
    }

    #[test]
    fn ready_once_every_watch_is() {
        let mut s = snapshot(vec![
            view("a", WatchState::Streaming, 0),
            view("b", WatchState::Listing, 0),
        ]);
        s.watches[1].ready = false;
        let r = readyz(&s);
        assert_eq!(r.status, 503);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body,
            json!({"status":"not ready","waiting":[{"watch":"b","cluster":"c","state":"listing"}]})
        );
        s.watches[1].ready = true;
        let r = readyz(&s);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ready\n"[..]));
        assert_eq!(readyz(&snapshot(vec![])).status, 200);
    }

    #[test]
    fn a_watch_stopped_by_a_permanent_error_is_unhealthy() {
        let r = healthz(&snapshot(vec![
            view("a", WatchState::Streaming, 0),
            view("b", WatchState::Failed, 0),
        ]));
        assert_eq!(r.status, 503);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["unhealthy"][0]["watch"], "b");
        let reason = body["unhealthy"][0]["reason"].as_str().unwrap();
        assert!(reason.starts_with("stopped: "), "{reason}");
    }

    #[test]
    fn status_lists_watches_and_sinks() {
        let mut s = snapshot(vec![view("a", WatchState::Streaming, 0)]);
        s.watches[0].stats.last_event = Some(s.now - Duration::from_millis(1500));
        s.watches[0].stats.events_by_type = [2, 0, 1];
        s.sinks.push(SinkView {
            name: "out",
            stats: SinkStats {
                kind: "file",
                queue_depth: 3,
                counts: DeliveryCounts {
                    delivered: 9,
                    retries: 0,
                    given_up: 0,
                    coalesced: 0,
                },
                latency: None,
                hook_runs: None,
                hook_run_durations: None,
                nats: None,
            },
        });
        let v = status(&s);
        assert_eq!(v["healthy"], true);
        let w = &v["watches"][0];
        assert_eq!(w["name"], "a");
        assert_eq!(w["state"], "streaming");
        assert_eq!(w["objects_known"], 1);
        assert_eq!(w["events_by_type"]["DELETED"], 1);
        assert_eq!(w["last_event"]["age_seconds"], 1.5);
        assert!(w["last_event"]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(w["last_error"], Value::Null);
        assert_eq!(
            v["sinks"][0],
            json!({"name":"out","type":"file","queue_depth":3,"delivered":9,"retries":0,"given_up":0})
        );
    }
}
