//! The webhook sink: the scheduler decides which records go when; each job
//! is one POST (the record, or a JSON array when batching is configured).

use super::{classify, ClientCtx, PostOutcome, Verdict, WebhookClient, WebhookTarget};
use crate::config::WebhookSinkConfig;
use crate::net::tls::{self, TlsSetupError, Trust};
use crate::rand::Rng;
use crate::sink::delivery::Delivery;
use crate::sink::dispatch::{Job, JobOutcome};
use crate::sink::{EventMeta, QueuedRecord, SinkCtx};
use crate::state::AckRef;
use mio::Token;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

pub struct WebhookSink {
    name: String,
    client: WebhookClient,
    delivery: Delivery,
    /// Batching configured: bodies are JSON arrays, even of one record, so a
    /// receiver sees one shape.
    arrays: bool,
    /// Attempt number and first record's read time of each job in flight.
    attempts: HashMap<u64, (u32, Instant, usize)>,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("in_flight", &self.client.in_flight())
            .finish()
    }
}

impl WebhookSink {
    pub fn new(
        name: &str,
        config: &WebhookSinkConfig,
        daemon_queue_events: usize,
        rng: Rng,
    ) -> Result<Self, TlsSetupError> {
        let origin = &config.url.origin;
        let https = origin.scheme == crate::config::Scheme::Https;
        let tls = if https {
            let trust = match &config.certificate_authority {
                Some(ca) => Trust::CaFile(ca.clone()),
                None => Trust::System,
            };
            let name = tls::server_name(&origin.host)
                .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e)))?;
            Some((tls::client_config(&trust)?, name))
        } else {
            None
        };
        let target = WebhookTarget {
            sink: name.to_owned(),
            scheme_https: https,
            host: origin.host.clone(),
            port: origin.port,
            path_and_query: config.url.target.clone(),
            headers: config
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            tls,
            timeout: config.timeout,
            max_connections: config.delivery.max_concurrent,
        };
        Ok(WebhookSink {
            name: name.to_owned(),
            client: WebhookClient::new(target),
            delivery: Delivery::new(name, &config.delivery, daemon_queue_events, rng),
            arrays: !config.delivery.batch_window.is_zero(),
            attempts: HashMap::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn has_room(&self) -> bool {
        self.delivery.has_room()
    }

    pub fn push(&mut self, now: Instant, line: &[u8], meta: Option<&Rc<EventMeta>>, ack: AckRef) {
        self.delivery.push(now, line, meta, ack);
    }

    /// Moves the refs of finished records to `out`.
    pub fn take_acks(&mut self, out: &mut Vec<AckRef>) {
        self.delivery.take_acks(out);
    }

    fn client_ctx<'a>(ctx: &'a mut SinkCtx<'_>) -> ClientCtx<'a> {
        ClientCtx {
            registry: ctx.registry,
            resolver: ctx.resolver,
            tokens: ctx.tokens,
            now: ctx.now,
        }
    }

    pub fn poll(&mut self, ctx: &mut SinkCtx<'_>) {
        let now = ctx.now;
        if self.client.deadline().is_some_and(|d| d <= now) {
            self.client.on_timer(&mut Self::client_ctx(ctx));
        }
        // A POST on a kept-alive connection can be answered while it is
        // being started (the answer was already there), so completions and
        // starts alternate until neither has anything left.
        loop {
            let outcomes = self.client.take_outcomes();
            let mut started = false;
            for (job, outcome) in outcomes {
                let (attempt, received, records) =
                    self.attempts.remove(&job).unwrap_or((1, now, 0));
                let result = match classify(&outcome) {
                    Verdict::Success => {
                        self.delivery
                            .record_latency(now.saturating_duration_since(received));
                        JobOutcome::Success
                    }
                    verdict => {
                        let reason = match &outcome {
                            PostOutcome::Status { code, .. } => {
                                format!("the receiver answered {code}")
                            }
                            PostOutcome::Failed { reason } => reason.clone(),
                        };
                        log::warn!(
                            "sink {}: POST failed (attempt {attempt}): {reason}",
                            self.name
                        );
                        match verdict {
                            Verdict::Retry { retry_after } => JobOutcome::Failed {
                                retryable: true,
                                retry_after,
                                reason,
                            },
                            _ => JobOutcome::Failed {
                                retryable: false,
                                retry_after: None,
                                reason,
                            },
                        }
                    }
                };
                self.delivery.complete(now, job, result, records);
            }
            while let Some(job) = self.delivery.next_job(now) {
                self.start(job, ctx);
                started = true;
            }
            if !started {
                break;
            }
        }
    }

    fn start(&mut self, job: Job, ctx: &mut SinkCtx<'_>) {
        let body = body(&job.records, self.arrays);
        let received = job.records.first().map_or(ctx.now, |r| r.received);
        self.attempts
            .insert(job.id, (job.attempt, received, job.records.len()));
        self.client.start(job.id, body, &mut Self::client_ctx(ctx));
    }

    pub fn on_ready(&mut self, token: Token, ctx: &mut SinkCtx<'_>) -> bool {
        if !self.client.owns(token) {
            return false;
        }
        self.client.on_ready(token, &mut Self::client_ctx(ctx));
        true
    }

    pub fn owns_query(&self, id: u64) -> bool {
        self.client.owns_query(id)
    }

    pub fn on_resolved(
        &mut self,
        id: u64,
        result: io::Result<Vec<SocketAddr>>,
        ctx: &mut SinkCtx<'_>,
    ) {
        self.client
            .on_resolved(id, result, &mut Self::client_ctx(ctx));
    }

    pub fn deadline(&self) -> Option<Instant> {
        match (self.client.deadline(), self.delivery.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn pending(&self) -> usize {
        self.delivery.pending()
    }

    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    pub fn delivery_mut(&mut self) -> &mut Delivery {
        &mut self.delivery
    }

    /// Counts and latency, for the log at shutdown.
    pub fn summary(&self) -> String {
        self.delivery.summary("delivery latency (event read → 2xx)")
    }

    pub fn abort(&mut self, ctx: &mut SinkCtx<'_>) {
        self.client.close_all(ctx.registry);
    }
}

/// The POST body: the record's JSON (without its newline), or a JSON array
/// of the batch's records.
fn body(records: &[QueuedRecord], array: bool) -> Vec<u8> {
    fn trim(r: &QueuedRecord) -> &[u8] {
        r.line.strip_suffix(b"\n").unwrap_or(&r.line)
    }
    if !array {
        return records
            .first()
            .map(|r| trim(r).to_vec())
            .unwrap_or_default();
    }
    let mut out = Vec::with_capacity(records.iter().map(|r| r.line.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(trim(r));
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(s: &str) -> QueuedRecord {
        QueuedRecord {
            line: format!("{s}\n").into_bytes(),
            meta: Rc::default(),
            received: Instant::now(),
            ack: AckRef { watch: 0, seq: 0 },
            coalesced: 0,
        }
    }

    #[test]
    fn bodies_are_the_record_or_an_array() {
        assert_eq!(body(&[rec(r#"{"a":1}"#)], false), br#"{"a":1}"#);
        assert_eq!(body(&[rec(r#"{"a":1}"#)], true), br#"[{"a":1}]"#);
        assert_eq!(body(&[rec("1"), rec("2")], true), b"[1,2]");
    }
}
