//! Metrics and health over HTTP on the daemon's own loop.
//!
//! `[daemon] metrics_listen` turns on a small HTTP/1.1 server ([`server`])
//! answering `GET /metrics` (Prometheus text 0.0.4, [`render`]), `/healthz`,
//! `/readyz` and `/status` ([`health`]), and `/` (a list of those). Everything is rendered on demand from a
//! [`Snapshot`] the daemon builds when a request arrives: no background
//! thread, no copy of the counters. The counters themselves live where the
//! data is born (`WatchStats`, the sinks' delivery counts).
//!
//! `[daemon] metrics_token_file` puts `/metrics` and `/status` behind a
//! bearer token ([`auth`]); the probes stay open.
//!
//! Tokens: the listener and its connections are `tokens::Source::Metrics`,
//! so the loop routes their readiness without a lookup.

pub mod auth;
pub mod client;
pub mod health;
pub mod http;
pub mod process;
pub mod render;
pub mod server;
pub mod text;

pub use health::{Health, Unhealthy, FAILURE_LIMIT};
pub use http::{Endpoint, Response};
pub use server::MetricsServer;

use crate::sink::SinkStats;
use crate::watch::{WatchState, WatchStats};
use std::time::{Duration, Instant, SystemTime};

/// One watch as status and metrics see it.
#[derive(Debug, Clone)]
pub struct WatchView<'a> {
    pub name: &'a str,
    pub cluster: &'a str,
    pub state: WatchState,
    pub objects: usize,
    pub stats: WatchStats,
    /// Skips and errors of its `select`/`changes`/`redact`/`transform`.
    pub filter: crate::filter::FilterStats,
    pub last_error: Option<&'a str>,
    /// Listed, or retrying after a failure: the daemon's rule for READY=1.
    pub ready: bool,
}

/// One sink as status and metrics see it.
#[derive(Debug, Clone)]
pub struct SinkView<'a> {
    pub name: &'a str,
    pub stats: SinkStats<'a>,
}

/// What status and metrics show of leader election.
#[derive(Debug, Clone)]
pub struct LeaderView {
    pub identity: String,
    pub role: crate::lease::Role,
    /// The holder the Lease named when last read or written ("" when free).
    pub holder: Option<String>,
    /// The sinks deliver (this replica leads and renewed in time).
    pub delivering: bool,
    /// When `delivering` last changed (or the process started).
    pub since: std::time::SystemTime,
    /// Times this replica started or stopped delivering.
    pub transitions: u64,
}

/// The daemon's state at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    pub watches: Vec<WatchView<'a>>,
    pub sinks: Vec<SinkView<'a>>,
    /// Why the state store cannot commit, while the sinks wait for it.
    pub state_store_error: Option<&'a str>,
    /// `[daemon.leader_election]`: where this replica stands.
    pub leader: Option<LeaderView>,
    /// The monotonic and the wall clock read together, to turn the
    /// counters' `Instant`s into timestamps and ages.
    pub now: Instant,
    pub wall: SystemTime,
}

impl Snapshot<'_> {
    /// Wall time of `at`, as seconds since the Unix epoch.
    pub fn wall_seconds(&self, at: Instant) -> f64 {
        let wall = self
            .wall
            .checked_sub(self.now.saturating_duration_since(at))
            .unwrap_or(self.wall);
        wall.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
    }
}

/// The answer for `endpoint`.
pub fn answer(endpoint: Endpoint, snapshot: &Snapshot<'_>) -> Response {
    match endpoint {
        Endpoint::Metrics => Response {
            status: 200,
            content_type: text::CONTENT_TYPE,
            body: render::render(snapshot, &process::ProcessStats::read()).into_bytes(),
        },
        Endpoint::Healthz => health::healthz(snapshot),
        Endpoint::Readyz => health::readyz(snapshot),
        Endpoint::Status => Response::json(200, &health::status(snapshot)),
        Endpoint::Index => Response::text(200, INDEX),
    }
}

/// The answer to `/`.
const INDEX: &str = concat!(
    "kwatchd ",
    env!("CARGO_PKG_VERSION"),
    "\n\n",
    "/metrics  Prometheus metrics (text format 0.0.4)\n",
    "/healthz  liveness: 200 ok, or 503 naming the watches that keep failing\n",
    "/readyz   readiness: 200 once every watch has listed or is retrying, else 503\n",
    "/status   watches and sinks as JSON (what `kwatchd status` prints)\n",
    "\n",
    "/metrics and /status need the bearer token of [daemon] metrics_token_file when it is set.\n",
);
