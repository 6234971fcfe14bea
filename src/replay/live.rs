//! A replay's webhook and NATS deliveries, made by the daemon's own sinks
//! (`daemon::build_sink`) on a small private poll loop: the same HTTP
//! client, TLS, headers, retries with backoff, JetStream publish with
//! `Nats-Msg-Id`, and `on_failure` handling as `kwatchd run`, so what a
//! replay shows is what the daemon would do.
//!
//! One record is in flight at a time: replay is a test tool, and waiting
//! for each record's end keeps the file's order and ties each failure to
//! its record.

use crate::config::{Config, SinkConfig};
use crate::net::Resolver;
use crate::sink::dispatch::{BACKOFF_BASE, BACKOFF_CAP};
use crate::sink::{EventMeta, Sink, SinkCtx};
use crate::state::AckRef;
use crate::tokens::{Source, TokenAllocator};
use mio::{Events, Poll, Waker};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Beyond what the sink's own policy allows: connecting, resolving, a
/// `Retry-After`, a slow PubAck.
const MARGIN: Duration = Duration::from_secs(10);
/// PubAck waits a NATS delivery is given before replay stops waiting (the
/// NATS sink retries until the server takes the record).
const NATS_ACK_WAITS: u32 = 3;

/// The loop and the sinks built so far, by name.
pub(super) struct Live {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    resolver: Resolver,
    tokens: TokenAllocator,
    sinks: HashMap<String, LiveSink>,
    seq: u64,
}

struct LiveSink {
    /// `None` once a delivery outlived `bound`: later ones would overtake
    /// it, so they are not attempted.
    sink: Option<Sink>,
    /// How long one delivery may take, retries included.
    bound: Duration,
}

impl Live {
    pub(super) fn new() -> io::Result<Live> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), Source::Waker.token())?);
        Ok(Live {
            events: Events::with_capacity(64),
            resolver: Resolver::new(Arc::clone(&waker)),
            waker,
            poll,
            tokens: TokenAllocator::for_sinks(),
            sinks: HashMap::new(),
            seq: 0,
        })
    }

    /// Delivers `line` to sink `name` as the daemon would, and waits for
    /// its end: `Ok` once delivered; `Err` when the sink gave up on it (its
    /// retries are spent; the sink's log line says why) or it did not end
    /// within the sink's own bound.
    pub(super) fn deliver(
        &mut self,
        config: &Config,
        name: &str,
        sink_config: &SinkConfig,
        line: &[u8],
        meta: EventMeta,
    ) -> Result<(), String> {
        if !self.sinks.contains_key(name) {
            let sink = crate::daemon::build_sink(
                config,
                name,
                sink_config,
                (&mut self.tokens, &self.waker),
            )
            .map_err(|e| e.to_string())?;
            let live = LiveSink {
                sink: Some(sink),
                bound: bound(sink_config),
            };
            self.sinks.insert(name.to_owned(), live);
        }
        let Some(live) = self.sinks.get_mut(name) else {
            return Err("not built".into());
        };
        let bound = live.bound;
        let Some(sink) = live.sink.as_mut() else {
            return Err("not attempted: an earlier delivery to this sink did not end".into());
        };
        self.seq += 1;
        let seq = self.seq;
        let start = Instant::now();
        let given_up = sink.stats().counts.given_up;
        let ack = AckRef {
            watch: 0,
            seq,
            rv: None,
        };
        sink.push(start, line, Some(&Rc::new(meta)), ack);
        // No state store here: nothing to wait for.
        sink.pass(start, None, u64::MAX);
        let end = start + bound;
        let mut acks = Vec::new();
        loop {
            let mut ctx = sink_ctx(&self.poll, &mut self.tokens, &mut self.resolver);
            sink.poll(&mut ctx);
            sink.take_acks(&mut acks);
            if acks.iter().any(|a| a.seq == seq) {
                return if sink.stats().counts.given_up > given_up {
                    Err("given up after its retries (see the log line above)".into())
                } else {
                    Ok(())
                };
            }
            if ctx.now >= end {
                sink.abort(&mut ctx);
                live.sink = None;
                return Err(format!(
                    "not delivered within {}; stopped waiting (later records are not sent to it)",
                    humantime::format_duration(bound)
                ));
            }
            let until = sink.deadline().map_or(end, |d| d.min(end));
            let timeout = until.saturating_duration_since(Instant::now());
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("poll failed: {e}")),
            }
            let mut ctx = sink_ctx(&self.poll, &mut self.tokens, &mut self.resolver);
            for event in self.events.iter() {
                let token = event.token();
                if Source::of(token) == Some(Source::Waker) {
                    for answer in ctx.resolver.answers() {
                        if sink.owns_query(answer.id) {
                            sink.on_resolved(answer.id, answer.result, &mut ctx);
                        }
                    }
                } else {
                    sink.on_ready(token, &mut ctx);
                }
            }
        }
    }
}

fn sink_ctx<'a>(
    poll: &'a Poll,
    tokens: &'a mut TokenAllocator,
    resolver: &'a mut Resolver,
) -> SinkCtx<'a> {
    SinkCtx {
        registry: poll.registry(),
        tokens,
        resolver,
        now: Instant::now(),
    }
}

/// How long one delivery to `s` may take before replay stops waiting:
/// every attempt its policy allows, each with its timeout and the longest
/// backoff before it, and a margin.
fn bound(s: &SinkConfig) -> Duration {
    match s {
        SinkConfig::Webhook(w) => {
            let d = &w.delivery;
            (0..=d.retries.min(32)).fold(MARGIN + d.batch_window, |sum, attempt| {
                let backoff = 2u32
                    .checked_pow(attempt)
                    .and_then(|f| BACKOFF_BASE.checked_mul(f))
                    .map_or(BACKOFF_CAP, |b| b.min(BACKOFF_CAP));
                sum.saturating_add(w.timeout).saturating_add(backoff)
            })
        }
        SinkConfig::Nats(n) => MARGIN.saturating_add(n.ack_timeout.saturating_mul(NATS_ACK_WAITS)),
        SinkConfig::File(_) | SinkConfig::Stdout | SinkConfig::Exec(_) => MARGIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_delivery_may_take_every_attempt_its_policy_allows() {
        let text = r#"
[clusters.c]
server = "http://127.0.0.1:1"

[[watch]]
name = "pods"
cluster = "c"
api_version = "v1"
resource = "pods"
sinks = ["w"]

[sinks.w]
type = "webhook"
url = "http://127.0.0.1:1/"
timeout = "2s"
retries = 2
"#;
        let config = Config::parse(text, std::path::Path::new("k.toml")).unwrap();
        let s = config.sink("w").unwrap();
        // 3 attempts of 2 s, backoffs of at most 1, 2 and 4 s, the margin.
        assert_eq!(bound(s), Duration::from_secs(6 + 7 + 10));
    }
}
