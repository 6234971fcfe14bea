//! The NATS JetStream sink: each record is a JetStream publish, and only
//! the stream's PubAck (a `duplicate: true` one included) makes it final for
//! the watch's ledger. `Nats-Msg-Id: <cluster>/<uid>/<resourceVersion>/<type>`
//! lets the stream drop the copies that kwatchd's at-least-once delivery
//! sends after a crash, a reconnect or a timeout, so the stream holds each
//! event exactly once (within the stream's `duplicate_window`).
//!
//! Per-object order: at most one publish per object is in flight (the
//! dispatcher's rule for every sink), and different objects pipeline up to
//! `max_in_flight`. The alternative, `Nats-Expected-Last-Subject-Sequence`,
//! was not taken: it needs a subject per object (the subject template need
//! not name the object), the last sequence of each subject (unknown after a
//! restart without reading the stream back), and a refused precondition
//! cannot tell "already stored" from "out of order".
//!
//! Failures: a lost connection sends the unacknowledged publishes again on
//! the next one (the client reconnects with backoff). A reply that says
//! "not now" (no responders because the stream is missing, JetStream
//! unavailable, an API error) or no reply within `ack_timeout` pauses
//! publishing: the record goes back to the queue, and after a jittered
//! exponential delay (100 ms … 5 s) one publish probes; its PubAck resumes
//! the rest. Nothing is dropped meanwhile: the queue fills and the watches
//! feeding the sink pause. Only a message the server can never store (over
//! `max_payload`, or refused as too large) goes to `on_failure`.

mod reply;
#[cfg(test)]
mod tests;

pub use reply::{classify, Reply};

use crate::config::{DeliveryConfig, NatsSinkConfig};
use crate::nats::proto::HeaderBlock;
use crate::nats::subject::Placeholder;
use crate::nats::{ClientEvent, ClientSettings, ConnState, NatsClient};
use crate::net::tls::{self, ClientIdentity, Trust};
use crate::rand::Rng;
use crate::sink::delivery::Delivery;
use crate::sink::dispatch::{Job, JobOutcome};
use crate::sink::{DeliveryCounts, EventMeta, SinkCtx};
use mio::Token;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

const GATE_FIRST: Duration = Duration::from_millis(100);
const GATE_CAP: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const PING_INTERVAL: Duration = Duration::from_secs(20);

/// A job handed out by the dispatcher and not completed yet.
#[derive(Debug)]
struct Publish {
    job: Job,
    /// When it went out on the current connection; `None` while queued.
    sent_at: Option<Instant>,
}

/// Which jobs a step may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    /// New ones from the queue too (`poll`: the store has their objects).
    New,
    /// Only those already taken (readiness between turns, when the store
    /// may not have committed the objects of the newest records yet).
    Held,
}

/// Whether publishing is paused after a failure that is not the record's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Open,
    /// Paused since `since`; one probe may go at `probe_at`.
    Paused {
        since: Instant,
        probe_at: Instant,
        probing: bool,
        failures: u32,
    },
}

/// What status and metrics show of a NATS sink beyond the common counts.
#[derive(Debug, Clone, Copy)]
pub struct NatsStats<'a> {
    pub state: ConnState,
    /// The server of the current or last connection attempt.
    pub server: Option<&'a crate::nats::ServerUrl>,
    pub paused: bool,
    /// PubAcks that said `duplicate: true`.
    pub duplicates: u64,
}

pub struct NatsSink {
    name: String,
    stream: String,
    config: NatsSinkConfig,
    client: NatsClient,
    delivery: Delivery,
    jobs: HashMap<u64, Publish>,
    /// Jobs to send (first time or again), oldest first.
    unsent: BTreeSet<u64>,
    /// A standby (leader election): nothing is published.
    fenced: bool,
    /// (sent at, job) in send order; entries of jobs since answered or
    /// requeued are skipped when they reach the front.
    sent: VecDeque<(Instant, u64)>,
    gate: Gate,
    rng: Rng,
    duplicates: u64,
    /// Records in attempts that failed and will be retried.
    retried: u64,
    connected_once: bool,
    /// Reused for each publish's subject and header block.
    scratch_subject: String,
    scratch_headers: Vec<u8>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("name", &self.name)
            .field("client", &self.client)
            .field("jobs", &self.jobs.len())
            .finish()
    }
}

impl NatsSink {
    pub fn new(
        name: &str,
        config: &NatsSinkConfig,
        daemon_queue_events: usize,
        mut rng: Rng,
        now: Instant,
    ) -> Result<Self, String> {
        let tls = tls_config(config)?;
        let settings = ClientSettings {
            name: name.to_owned(),
            servers: config.servers.clone(),
            auth: config.auth.clone(),
            tls,
            connect_timeout: CONNECT_TIMEOUT,
            ping_interval: PING_INTERVAL,
        };
        // Fail at startup on unreadable credentials rather than at the
        // first connection (the nonce is only needed to sign).
        config.auth.connect_fields(Some("startup-check"))?;
        let delivery_config = DeliveryConfig {
            max_concurrent: config.max_in_flight.max(1),
            retries: 0,
            batch_window: Duration::ZERO,
            batch_max: 1,
            on_failure: config.on_failure.clone(),
            queue_events: config.queue_events,
            coalesce: false,
        };
        let client = NatsClient::new(settings, Rng::new(rng.next_u64()), now);
        Ok(NatsSink {
            name: name.to_owned(),
            stream: config.stream.clone(),
            config: config.clone(),
            client,
            delivery: Delivery::new(name, &delivery_config, daemon_queue_events, rng.clone()),
            jobs: HashMap::new(),
            unsent: BTreeSet::new(),
            fenced: false,
            sent: VecDeque::new(),
            gate: Gate::Open,
            rng,
            duplicates: 0,
            retried: 0,
            connected_once: false,
            scratch_subject: String::new(),
            scratch_headers: Vec::new(),
        })
    }

    /// Timers, and new records from the queue: the daemon polls its sinks
    /// only once the state store has the objects they are about.
    pub fn poll(&mut self, ctx: &mut SinkCtx<'_>) {
        self.client.poll(ctx);
        self.step(ctx, Take::New);
    }

    pub fn on_resolved(
        &mut self,
        id: u64,
        result: io::Result<Vec<SocketAddr>>,
        ctx: &mut SinkCtx<'_>,
    ) {
        self.client.on_resolved(id, result, ctx);
        self.step(ctx, Take::Held);
    }

    pub fn on_ready(&mut self, token: Token, ctx: &mut SinkCtx<'_>) -> bool {
        if !self.client.owns(token) {
            return false;
        }
        self.client.on_ready(token, ctx);
        self.step(ctx, Take::Held);
        true
    }

    /// The connection, for name queries it owns.
    pub fn client(&self) -> &NatsClient {
        &self.client
    }

    pub fn deadline(&self) -> Option<Instant> {
        let ack = self
            .sent
            .front()
            .map(|(at, _)| *at + self.config.ack_timeout);
        let probe = match self.gate {
            Gate::Paused {
                probe_at,
                probing: false,
                ..
            } if !self.unsent.is_empty() && !self.fenced => Some(probe_at),
            _ => None,
        };
        [self.client.deadline(), self.delivery.deadline(), ack, probe]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn pending(&self) -> usize {
        self.delivery.pending()
    }

    /// Queueing, the queue bound and acks are the shared delivery's.
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    pub fn delivery_mut(&mut self) -> &mut Delivery {
        &mut self.delivery
    }

    /// Delivery counts; `retries` includes publishes sent again after a
    /// reconnect, a timeout or a paused stream.
    pub fn counts(&self) -> DeliveryCounts {
        let mut c = self.delivery.counts();
        c.retries += self.retried;
        c
    }

    pub fn nats_stats(&self) -> NatsStats<'_> {
        NatsStats {
            state: self.client.state(),
            server: self.client.server(),
            paused: self.gate != Gate::Open,
            duplicates: self.duplicates,
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{}; {} duplicates acknowledged",
            self.delivery
                .summary("publish latency (event read → PubAck)"),
            self.duplicates
        )
    }

    pub fn abort(&mut self, ctx: &mut SinkCtx<'_>) {
        self.client.close(ctx.registry);
    }

    // ----- internals -----

    /// Reacts to what the client reported, takes new jobs (with
    /// `Take::New`) and sends what may go, until nothing changes.
    fn step(&mut self, ctx: &mut SinkCtx<'_>, take: Take) {
        let mut first = true;
        loop {
            let events = self.client.take_events();
            if events.is_empty() && !first {
                return;
            }
            first = false;
            for event in events {
                self.on_event(event, ctx.now);
            }
            self.expire_acks(ctx.now);
            if take == Take::New {
                while let Some(job) = self.delivery.next_job(ctx.now) {
                    self.unsent.insert(job.id);
                    self.jobs.insert(job.id, Publish { job, sent_at: None });
                }
            }
            self.send(ctx);
            self.client.flush(ctx);
        }
    }

    fn on_event(&mut self, event: ClientEvent, now: Instant) {
        match event {
            ClientEvent::Connected { server } => {
                let again = if self.connected_once { "re" } else { "" };
                log::info!("sink {}: {again}connected to {server}", self.name);
                self.connected_once = true;
            }
            ClientEvent::Disconnected { reason } => {
                let requeued = self.requeue_sent();
                log::warn!(
                    "sink {}: connection lost ({reason}); {requeued} unacknowledged publishes go again after reconnecting",
                    self.name
                );
            }
            ClientEvent::ServerError(text) => {
                log::warn!("sink {}: the server reported: {text}", self.name);
            }
            ClientEvent::Reply { token, message } => {
                let Some(p) = self.jobs.get(&token) else {
                    return; // a late answer to a publish already settled
                };
                let Some(record) = p.job.records.first() else {
                    return;
                };
                match classify(&message, || self.subject(&record.meta), &self.stream) {
                    Reply::Stored { duplicate, .. } => {
                        self.duplicates += u64::from(duplicate);
                        let latency = now.saturating_duration_since(record.received);
                        self.delivery.record_latency(latency);
                        self.finish(now, token, JobOutcome::Success);
                        self.resume(now);
                    }
                    Reply::Retry(reason) => self.retry(token, now, &reason),
                    Reply::Refused(reason) => self.refuse(now, token, reason),
                }
            }
        }
    }

    /// Leader election: a standby publishes nothing. Fencing gives the jobs
    /// taken but not published yet back to the queue (never started: the
    /// hold takes them with `Delivery::withdraw`); publishes in flight get
    /// their PubAcks, and any of them that must go again (a lost
    /// connection) waits until this replica leads again.
    pub fn fence(&mut self, on: bool) {
        self.fenced = on;
        if on {
            for id in std::mem::take(&mut self.unsent) {
                match self.jobs.get(&id).map(|p| p.sent_at.is_some()) {
                    Some(false) if self.delivery.unstart(id) => {
                        self.jobs.remove(&id);
                    }
                    _ => {
                        self.unsent.insert(id);
                    }
                }
            }
        }
    }

    fn finish(&mut self, now: Instant, job: u64, outcome: JobOutcome) {
        self.unsent.remove(&job);
        if self.jobs.remove(&job).is_some() {
            self.delivery.complete(now, job, outcome, 1);
        }
    }

    fn refuse(&mut self, now: Instant, job: u64, reason: String) {
        let outcome = JobOutcome::Failed {
            retryable: false,
            retry_after: None,
            reason,
        };
        self.finish(now, job, outcome);
    }

    /// Publishes on a lost connection go back to the queue.
    fn requeue_sent(&mut self) -> usize {
        self.sent.clear();
        if let Gate::Paused { probing, .. } = &mut self.gate {
            *probing = false;
        }
        let mut n = 0;
        for (id, p) in self.jobs.iter_mut() {
            if p.sent_at.take().is_some() {
                self.unsent.insert(*id);
                n += 1;
            }
        }
        self.retried += n as u64;
        n
    }

    /// The job's attempt failed for a reason that may pass: queue it
    /// again and pause publishing.
    fn retry(&mut self, job: u64, now: Instant, reason: &str) {
        let Some(p) = self.jobs.get_mut(&job) else {
            return;
        };
        if p.sent_at.take().is_none() {
            return; // already queued again (a late answer)
        }
        self.unsent.insert(job);
        self.retried += 1;
        // One step of backoff per pause and per failed probe, not per
        // record: a burst of timeouts is one failure.
        let (since, failures) = match self.gate {
            Gate::Open => {
                log::warn!(
                    "sink {}: publishing paused: {reason}; records are held and retried",
                    self.name
                );
                (now, 1)
            }
            Gate::Paused {
                since,
                probing: true,
                failures,
                ..
            } => {
                log::debug!("sink {}: still paused: {reason}", self.name);
                (since, failures.saturating_add(1))
            }
            Gate::Paused { .. } => return,
        };
        let shift = (failures - 1).min(16);
        let ceiling = GATE_FIRST.saturating_mul(1 << shift).min(GATE_CAP);
        let delay = self.rng.duration_between(ceiling / 2, ceiling);
        self.gate = Gate::Paused {
            since,
            probe_at: now + delay,
            probing: false,
            failures,
        };
    }

    fn resume(&mut self, now: Instant) {
        if let Gate::Paused { since, .. } = self.gate {
            let paused = humantime::format_duration(Duration::from_millis(
                now.saturating_duration_since(since).as_millis() as u64,
            ));
            log::info!("sink {}: publishing resumed after {paused}", self.name);
            self.gate = Gate::Open;
        }
    }

    /// Publishes without a PubAck after `ack_timeout` are retried.
    fn expire_acks(&mut self, now: Instant) {
        while let Some(&(at, job)) = self.sent.front() {
            let live = self.jobs.get(&job).is_some_and(|p| p.sent_at == Some(at));
            if !live {
                self.sent.pop_front();
                continue;
            }
            if at + self.config.ack_timeout > now {
                return;
            }
            self.sent.pop_front();
            let t = humantime::format_duration(self.config.ack_timeout);
            self.retry(job, now, &format!("no PubAck within {t}"));
        }
    }

    /// Sends queued jobs: all while publishing is open, one probe when a
    /// pause is over.
    fn send(&mut self, ctx: &mut SinkCtx<'_>) {
        if !self.client.is_ready() || self.fenced {
            return;
        }
        let limit = match &mut self.gate {
            Gate::Open => usize::MAX,
            Gate::Paused {
                probe_at, probing, ..
            } if !*probing && *probe_at <= ctx.now => {
                *probing = true;
                1
            }
            Gate::Paused { .. } => 0,
        };
        let max_payload = self.client.info().max_payload;
        let mut budget = limit;
        while budget > 0 {
            let Some(id) = self.unsent.pop_first() else {
                break;
            };
            let Some(records) = self.jobs.get(&id).map(|p| Rc::clone(&p.job.records)) else {
                continue;
            };
            let Some(record) = records.first() else {
                continue;
            };
            self.subject_into(&record.meta);
            self.headers_into(&record.meta);
            let (subject, headers) = (&self.scratch_subject, &self.scratch_headers);
            let payload = record.line.strip_suffix(b"\n").unwrap_or(&record.line);
            let size = headers.len() + payload.len();
            if max_payload > 0 && size as u64 > max_payload {
                let m = &record.meta;
                let reason = format!(
                    "the record for {} {}/{} is {size} bytes, over the server's max_payload of {max_payload} bytes",
                    m.kind, m.namespace, m.name
                );
                self.refuse(ctx.now, id, reason);
                continue;
            }
            self.client.publish(subject, id, headers, payload);
            if let Some(p) = self.jobs.get_mut(&id) {
                p.sent_at = Some(ctx.now);
            }
            self.sent.push_back((ctx.now, id));
            budget -= 1;
        }
        // A probe that found nothing to send (the queue emptied, or only
        // refused records) is not in flight: the next one may go.
        if budget > 0 {
            if let Gate::Paused { probing, .. } = &mut self.gate {
                *probing = false;
            }
        }
    }

    fn subject(&self, m: &EventMeta) -> String {
        let mut out = String::new();
        self.render_subject(&mut out, m);
        out
    }

    /// The record's subject into `scratch_subject` (one per publish, so the
    /// buffer is reused).
    fn subject_into(&mut self, m: &EventMeta) {
        let mut out = std::mem::take(&mut self.scratch_subject);
        self.render_subject(&mut out, m);
        self.scratch_subject = out;
    }

    fn render_subject(&self, out: &mut String, m: &EventMeta) {
        self.config.subject.render_into(out, |p| match p {
            Placeholder::Cluster => &m.cluster,
            Placeholder::Watch => &m.watch,
            Placeholder::Namespace => &m.namespace,
            Placeholder::Kind => &m.kind,
            Placeholder::Name => &m.name,
            Placeholder::Type => m.event_type,
        });
    }

    /// The record's header block into `scratch_headers`.
    fn headers_into(&mut self, m: &EventMeta) {
        let mut h = HeaderBlock::reusing(std::mem::take(&mut self.scratch_headers));
        h.add_display("Nats-Msg-Id", MsgId(m));
        h.add("Nats-Expected-Stream", &self.stream);
        h.add("Kwatchd-Watch", &m.watch);
        h.add("Kwatchd-Type", m.event_type);
        h.add("Kwatchd-Origin", m.origin);
        self.scratch_headers = h.finish();
    }
}

/// `<cluster>/<uid>/<resourceVersion>/<type>`: the same event always gets
/// the same id, whichever run of kwatchd publishes it.
pub fn msg_id(m: &EventMeta) -> String {
    MsgId(m).to_string()
}

/// [`msg_id`] written where it goes, without a `String` of its own.
struct MsgId<'a>(&'a EventMeta);

impl std::fmt::Display for MsgId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{}/{}/{}/{}",
            m.cluster,
            m.object_key_display(),
            m.resource_version,
            m.event_type
        )
    }
}

fn tls_config(
    config: &NatsSinkConfig,
) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, String> {
    let wanted = config.certificate_authority.is_some()
        || config.client_certificate.is_some()
        || config.servers.iter().any(|s| s.tls);
    if !wanted {
        return Ok(None);
    }
    let trust = match &config.certificate_authority {
        Some(ca) => Trust::CaFile(ca.clone()),
        None => Trust::System,
    };
    let identity = match (&config.client_certificate, &config.client_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
            };
            let source = cert.display().to_string();
            Some(
                ClientIdentity::from_pem(&read(cert)?, &read(key)?, &source)
                    .map_err(|e| e.to_string())?,
            )
        }
        _ => None,
    };
    tls::client_config_with(&trust, identity)
        .map(Some)
        .map_err(|e| e.to_string())
}
