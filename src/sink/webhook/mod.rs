//! Webhook delivery: HTTP/1.1 POSTs of JSON records, driven by the daemon's
//! mio loop over keep-alive connections.
//!
//! This module only *delivers*: the scheduler decides what to send, when, and
//! whether to retry. For every POST it starts, it gets back exactly one
//! [`PostOutcome`] through [`WebhookClient::take_outcomes`], and [`classify`]
//! turns that into a [`Verdict`] (success, retry, give up).
//!
//! Wiring in the daemon (one client per webhook sink):
//! - readiness for a token where [`WebhookClient::owns`] → `on_ready`;
//! - a resolver answer whose id [`WebhookClient::owns_query`] → `on_resolved`;
//! - when [`WebhookClient::deadline`] has passed → `on_timer`;
//! - after any of these (and after `start`), `take_outcomes`.
//!
//! Connection policy, and why:
//! - At most `max_connections` connections per target (counting connects in
//!   progress and names being resolved). An idle keep-alive connection is
//!   reused before a new one is opened; POSTs beyond the limit wait in a FIFO
//!   inside the client. No pipelining: one POST per connection at a time, so a
//!   slow answer never holds up another POST.
//! - A connection is kept for reuse only when the response allowed keep-alive
//!   and was read completely; idle connections are closed after
//!   [`IDLE_CLOSE`].
//! - The per-POST `timeout` runs from the moment the POST leaves the client's
//!   waiting queue (resolve + connect + TLS + send + response): it measures the
//!   receiver, not our own queue.
//! - Resend once: a POST sent on a *reused* connection that the server closed
//!   (or reset) before any byte of an answer arrived is sent again, once, on a
//!   fresh connection. POST is not idempotent in general, but a server that
//!   closes an idle keep-alive connection does so without reading what raced
//!   in; an HTTP/1.1 server that processed a request answers it before
//!   closing. This is the same rule browsers and most HTTP clients apply, and
//!   without it every server idle timeout (node: 5 s, Apache: 5 s) would turn
//!   into a spurious failure and a backoff. A fresh connection is never
//!   resent: its failure is reported, and the scheduler's retry policy
//!   decides.
//!
//! Known limit (outside this module): over https, `net::Connection` leaves
//! rustls's 64 KiB cap on unsent data in place and writes a request in one
//! go, so a POST bigger than 64 KiB fails (with a reason that says so).
//! The fix is `set_buffer_limit(None)` on the `ClientConnection` in
//! `Connection::connect`; the ignored test `https_body_over_64_kib` checks it.

mod client;
mod sink;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testserver;

pub use client::{WebhookClient, IDLE_CLOSE, RESPONSE_BODY_LIMIT};
pub use sink::WebhookSink;

use crate::net::Resolver;
use crate::tokens::TokenAllocator;
use mio::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where and how to POST. Built by the config layer.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// The sink's name, for log lines.
    pub sink: String,
    pub scheme_https: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Request target in origin form, e.g. `/hooks/kwatchd?x=1`. It is never
    /// logged (it may carry a secret).
    pub path_and_query: String,
    /// Extra request headers, already `${VAR}`-expanded by the config. They
    /// must not contain `Host`, `Content-Length` or `Transfer-Encoding` (the
    /// client writes those); such a POST fails with a clear reason. A
    /// `Content-Type` or `User-Agent` here replaces the default.
    pub headers: Vec<(String, String)>,
    /// rustls config and the name to verify, for https.
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    /// The whole POST: resolve, connect, TLS, send, response.
    pub timeout: Duration,
    /// Connections to the target at once (0 is taken as 1).
    pub max_connections: usize,
}

/// What became of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// The receiver answered with a final status.
    Status {
        code: u16,
        /// `Retry-After` in seconds, if the response carried one.
        retry_after: Option<Duration>,
    },
    /// No usable answer: resolve or connect error, timeout, TLS failure,
    /// malformed or truncated response.
    Failed { reason: String },
}

/// What the scheduler should do about an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Try again later, not before `retry_after` if the server named a delay.
    Retry {
        retry_after: Option<Duration>,
    },
    /// Do not retry: the receiver refused this record.
    Fail,
}

/// 2xx → success; 408, 429, 5xx and transport failures → retry (honouring
/// Retry-After); every other status (other 4xx, and 1xx/3xx, which a webhook
/// has no business answering and which we do not follow) → fail.
pub fn classify(outcome: &PostOutcome) -> Verdict {
    match outcome {
        PostOutcome::Status { code, .. } if (200..300).contains(code) => Verdict::Success,
        PostOutcome::Status {
            code: 408 | 429 | 500..=599,
            retry_after,
        } => Verdict::Retry {
            retry_after: *retry_after,
        },
        PostOutcome::Status { .. } => Verdict::Fail,
        PostOutcome::Failed { .. } => Verdict::Retry { retry_after: None },
    }
}

/// The loop's shared things a client needs while it is driven.
pub struct ClientCtx<'a> {
    pub registry: &'a Registry,
    /// Owned by the daemon; answers for ids the client owns come back through
    /// [`WebhookClient::on_resolved`].
    pub resolver: &'a mut Resolver,
    pub tokens: &'a mut TokenAllocator,
    pub now: Instant,
}
