//! Leader election on a `coordination.k8s.io/v1` Lease, sans-I/O.
//!
//! Replicas of kwatchd share one Lease so that only one of them delivers.
//! The [`Elector`] follows client-go's `leaderelection` rules exactly, so a
//! kwatchd and a client-go program can share a Lease: it produces the
//! requests to send ([`Elector::poll`]) and is told their answers
//! ([`Elector::on_reply`]) and the time; the daemon does the I/O on its loop.
//!
//! Expiry of another holder's Lease is judged by the local monotonic clock
//! from when this process last saw the record change, never by comparing
//! the record's `renewTime` with the local clock, so replicas need no
//! synchronised clocks. Fencing is stricter than client-go's: a leader stops
//! delivering `renew_deadline` after it *sent* its last successful write
//! (client-go counts from the end of a failed renewal round), which is before
//! any other replica can have seen the record age by `lease_duration`.
//!
//! Takeover after a crash is faster than client-go's, with the same rules:
//! a follower re-reads the Lease at most `retry_period` apart (jittered
//! below it, not above), so it sees the holder's last renew at most one
//! `retry_period` after it was written, and it wakes exactly when that
//! record expires by its clock rather than at its next tick. A holder that
//! dies right after a renew is therefore replaced within `lease_duration +
//! retry_period` (plus the round trips), where client-go's jittered polling
//! allows up to `lease_duration + 4.4 * retry_period`.

mod record;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::rand::Rng;
pub use record::{advert_of, micro_time, LeaseRecord, COMMITTED_ANNOTATION};

/// client-go's `JitterFactor`: a candidate waits `retry_period * (1 + 1.2 * rand)`.
const JITTER_FACTOR: f64 = 1.2;

/// A follower re-reads the Lease between `retry_period / FOLLOWER_JITTER_DIVISOR`
/// and `retry_period` apart: jittered (replicas do not poll in step) yet
/// never later than one `retry_period`, which bounds how late it sees the
/// holder's last renew and so when it can take a dead holder's Lease.
const FOLLOWER_JITTER_DIVISOR: u32 = 2;

/// What the elector needs to know about its Lease and its pace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Params {
    /// The Lease object's path.
    pub fn object_path(&self) -> String {
        format!("{}/{}", self.collection_path(), self.name)
    }

    /// The namespace's `leases` collection (where a CREATE goes).
    pub fn collection_path(&self) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
            self.namespace
        )
    }
}

/// `identity`'s default: `<hostname>_<8 random hex>`, new for every process,
/// so a restarted replica is a new candidate (it never renews the Lease its
/// previous life held, which it cannot know the state of).
pub fn default_identity(rng: &mut Rng) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes
    // at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let host = match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => h,
        _ => "kwatchd",
    };
    format!("{host}_{:08x}", rng.next_u64() as u32)
}

/// Where this replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No holder seen yet, or the Lease is free or expired: trying to acquire.
    Candidate,
    /// Another replica holds an unexpired Lease.
    Follower,
    /// This replica holds the Lease and may deliver.
    Leader,
    /// The Lease was given up at shutdown; nothing more is sent.
    Released,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Candidate,
        Role::Follower,
        Role::Leader,
        Role::Released,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Follower => "follower",
            Role::Leader => "leader",
            Role::Released => "released",
        }
    }
}

/// The two clocks: the monotonic one for every duration, the wall clock
/// only for the MicroTimes written into the record.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Now {
    /// Both clocks, read together.
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// The requests of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Create,
    Update,
}

impl Verb {
    pub const ALL: [Verb; 3] = [Verb::Get, Verb::Create, Verb::Update];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Create => "create",
            Verb::Update => "update",
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Create => "POST",
            Verb::Update => "PUT",
        }
    }
}

/// A request for the daemon to send; its answer goes to [`Elector::on_reply`]
/// with the same `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub verb: Verb,
    pub path: String,
    /// JSON, for CREATE and UPDATE.
    pub body: Option<Vec<u8>>,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The server answered.
    Status { code: u16, body: Vec<u8> },
    /// No answer: connection, TLS or credential failure.
    Failed(String),
}

/// The elector's timers; [`Elector::poll_timeout`] names the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The next acquire or renew attempt.
    Retry,
    /// A leader's last successful write is `renew_deadline` old: stop leading.
    Fence,
    /// The request in flight gets no answer any more.
    RequestTimeout,
    /// Another holder's Lease expires now by this replica's clock: try to take it.
    Expiry,
}

impl Timer {
    pub const ALL: [Timer; 4] = [
        Timer::Retry,
        Timer::Fence,
        Timer::RequestTimeout,
        Timer::Expiry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Timer::Retry => "retry",
            Timer::Fence => "fence",
            Timer::RequestTimeout => "request_timeout",
            Timer::Expiry => "expiry",
        }
    }
}

/// Which step of an attempt a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A leader's optimistic renew on the object it wrote last (client-go's fast path).
    FastRenew,
    Get,
    Create,
    /// `taking_over`: the record named another holder (or none).
    Update {
        taking_over: bool,
    },
    Release,
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    step: Step,
    sent: Instant,
}

/// The record as last seen changing, and when (client-go's `observedRecord`/`observedTime`).
#[derive(Debug)]
struct Observed {
    record: LeaseRecord,
    at: Instant,
}

/// Something worth a log line, returned by [`Elector::take_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The role changed; `why` says what the elector saw.
    Role { from: Role, to: Role, why: String },
    /// A request failed (the attempt is retried).
    Failed { verb: Verb, why: String },
}

/// One replica's side of the election; see the module header.
#[derive(Debug)]
pub struct Elector {
    params: Params,
    role: Role,
    observed: Option<Observed>,
    /// The Lease object as last read or written: the base of the next UPDATE.
    object: Option<Value>,
    in_flight: Option<InFlight>,
    next_id: u64,
    /// When the next attempt starts (none while one is in flight).
    next_try: Option<Instant>,
    /// A leader delivers until this instant unless it renews first.
    leading_until: Option<Instant>,
    /// Skip the fast path: it failed in this attempt.
    slow_path: bool,
    /// The CREATE or UPDATE a GET's answer calls for, sent by the next `poll`.
    follow_up: Option<(Step, Option<Value>)>,
    /// The committed-positions annotation written with every leader write.
    advert: Option<String>,
    rng: Rng,
    events: Vec<Event>,
}

impl Elector {
    /// Start as a candidate whose first attempt is due at once.
    pub fn new(params: Params, now: Instant, rng: Rng) -> Elector {
        Elector {
            params,
            role: Role::Candidate,
            observed: None,
            object: None,
            in_flight: None,
            next_id: 0,
            next_try: Some(now),
            leading_until: None,
            slow_path: false,
            follow_up: None,
            advert: None,
            rng,
            events: Vec::new(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether deliveries may start now: the Lease is held and its last
    /// successful write is younger than `renew_deadline`.
    pub fn may_deliver(&self, now: Instant) -> bool {
        self.role == Role::Leader && self.leading_until.is_some_and(|t| now < t)
    }

    /// The holder the last read or write named ("" when free), if any was seen.
    pub fn holder(&self) -> Option<&str> {
        self.observed.as_ref().map(|o| o.record.holder.as_str())
    }

    /// The last record seen.
    pub fn record(&self) -> Option<&LeaseRecord> {
        self.observed.as_ref().map(|o| &o.record)
    }

    /// The committed positions another holder advertised in the Lease last read.
    pub fn leader_advert(&self) -> Option<&str> {
        if self.holder() == Some(self.params.identity.as_str()) {
            return None;
        }
        self.object.as_ref().and_then(advert_of)
    }

    /// What the next leader write advertises.
    pub fn set_advert(&mut self, advert: String) {
        self.advert = Some(advert);
    }

    /// Role changes and failures since the last call, for the log.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The next timer and when it fires.
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        // The release is best effort: shutdown bounds the wait for its answer.
        if self.role == Role::Released {
            return None;
        }
        let mut next: Option<(Instant, Timer)> = None;
        let mut consider = |at: Option<Instant>, timer| {
            if let Some(at) = at {
                if next.is_none_or(|(t, _)| at < t) {
                    next = Some((at, timer));
                }
            }
        };
        if self.role == Role::Leader {
            consider(self.leading_until, Timer::Fence);
        }
        match &self.in_flight {
            Some(f) => consider(Some(f.sent + self.request_timeout()), Timer::RequestTimeout),
            None => {
                // retry_later moved the attempt to the expiry instant.
                let at_expiry = self.role == Role::Follower && self.next_try == self.expiry();
                let timer = if at_expiry {
                    Timer::Expiry
                } else {
                    Timer::Retry
                };
                consider(self.next_try, timer)
            }
        }
        next
    }

    /// Apply the timers due at `now` and return the request to send, if one
    /// is due. Call it after every reply and whenever `poll_timeout` fires.
    pub fn poll(&mut self, now: Now) -> Option<Request> {
        if self.role == Role::Released {
            return None;
        }
        if self.role == Role::Leader && self.leading_until.is_some_and(|t| now.mono >= t) {
            let why = format!(
                "no successful renew within renew_deadline ({})",
                humantime::format_duration(self.params.renew_deadline)
            );
            self.set_role(Role::Candidate, why);
        }
        if let Some(f) = &self.in_flight {
            if now.mono < f.sent + self.request_timeout() {
                return None;
            }
            let verb = f.step.verb();
            self.in_flight = None;
            self.fail(now.mono, verb, "no answer in time".into());
        }
        if let Some((step, body)) = self.follow_up.take() {
            self.next_try = None;
            return Some(self.send(now.mono, step, body));
        }
        if self.next_try.is_none_or(|t| now.mono < t) {
            return None;
        }
        self.next_try = None;
        if self.role == Role::Leader && !self.slow_path && self.lease_valid(now.mono) {
            if let Some(object) = &self.object {
                let record = self.own_record(now, Some(&self.observed_record()));
                let body = record::updated_object(object, &record, self.advert.as_deref());
                return Some(self.send(now.mono, Step::FastRenew, Some(body)));
            }
        }
        self.slow_path = false;
        Some(self.send(now.mono, Step::Get, None))
    }

    /// Feed the answer to request `id`; answers to abandoned requests are
    /// ignored. A follow-up request (CREATE or UPDATE after a GET) comes
    /// from the next [`Elector::poll`].
    pub fn on_reply(&mut self, now: Now, id: u64, reply: Reply) {
        let Some(f) = self.in_flight.take_if(|f| f.id == id) else {
            return;
        };
        let (code, body) = match reply {
            Reply::Status { code, body } => (code, body),
            Reply::Failed(why) if f.step == Step::FastRenew => (0, why.into_bytes()),
            Reply::Failed(why) => return self.fail(now.mono, f.step.verb(), why),
        };
        let ok = (200..300).contains(&code);
        match f.step {
            Step::Release if ok => {}
            Step::Release => self.events.push(Event::Failed {
                verb: Verb::Update,
                why: format!("release answered {code}"),
            }),
            Step::FastRenew | Step::Create | Step::Update { .. } if ok => {
                self.written(now, f.sent, &body, f.step)
            }
            Step::FastRenew => {
                // client-go falls back to the slow path within the same attempt.
                self.slow_path = true;
                self.next_try = Some(now.mono);
                let why = match code {
                    0 => String::from_utf8_lossy(&body).into_owned(),
                    code => format!("answered {code}"),
                };
                self.events.push(Event::Failed {
                    verb: Verb::Update,
                    why: format!("optimistic renew: {why}; reading the Lease"),
                });
            }
            Step::Update { .. } if code == 409 => {
                // Someone else wrote first: this round is lost, and a
                // leader cannot know it still holds the Lease.
                if self.role == Role::Leader {
                    self.set_role(Role::Candidate, "update answered 409 Conflict".into());
                }
                self.fail(now.mono, Verb::Update, "409 Conflict".into());
            }
            Step::Get if code == 404 => {
                let record = self.own_record(now, None);
                let body = record::new_object(
                    &self.params.namespace,
                    &self.params.name,
                    &record,
                    self.advert.as_deref(),
                );
                self.follow_up = Some((Step::Create, Some(body)));
                self.next_try = Some(now.mono);
            }
            Step::Get if ok => self.read(now, &body),
            step => self.fail(now.mono, step.verb(), format!("answered {code}")),
        }
    }

    /// On clean shutdown, after the drain: stop leading at once and return
    /// the UPDATE that frees the Lease (holder "", `leaseDurationSeconds` 1,
    /// as client-go's `ReleaseOnCancel`), if this replica holds it.
    pub fn release(&mut self, now: Now) -> Option<Request> {
        let held = self.role == Role::Leader;
        let why = "shutting down".to_string();
        self.set_role(Role::Released, why);
        self.in_flight = None;
        self.follow_up = None;
        self.next_try = None;
        let object = self.object.as_ref().filter(|_| held)?;
        let at = micro_time(now.wall);
        let record = LeaseRecord {
            holder: String::new(),
            duration_secs: 1,
            acquire_time: Some(at.clone()),
            renew_time: Some(at),
            transitions: self.observed_record().transitions,
        };
        let body = record::updated_object(object, &record, self.advert.as_deref());
        Some(self.send(now.mono, Step::Release, Some(body)))
    }

    /// A GET answered the Lease: client-go's steps 3 and 4.
    fn read(&mut self, now: Now, body: &[u8]) {
        let Ok(object) = serde_json::from_slice::<Value>(body) else {
            return self.fail(now.mono, Verb::Get, "the Lease is not JSON".into());
        };
        let record = LeaseRecord::of(&object);
        if self.observed.as_ref().is_none_or(|o| o.record != record) {
            self.observed = Some(Observed {
                record: record.clone(),
                at: now.mono,
            });
        }
        self.object = Some(object);
        let mine = record.holder == self.params.identity;
        if !record.holder.is_empty() && !mine && self.lease_valid(now.mono) {
            let why = format!("the Lease is held by {:?}", record.holder);
            self.set_role(Role::Follower, why);
            return self.retry_later(now.mono);
        }
        if !mine && self.role == Role::Leader {
            self.set_role(Role::Candidate, "the Lease names no holder".into());
        }
        let new = self.own_record(now, mine.then_some(&record));
        let new = LeaseRecord {
            transitions: if mine {
                record.transitions
            } else {
                record.transitions + 1
            },
            ..new
        };
        let body = self
            .object
            .as_ref()
            .map(|o| record::updated_object(o, &new, self.advert.as_deref()));
        self.follow_up = Some((Step::Update { taking_over: !mine }, body));
        self.next_try = Some(now.mono);
    }

    /// A CREATE or UPDATE succeeded: this replica leads until `sent + renew_deadline`.
    fn written(&mut self, now: Now, sent: Instant, body: &[u8], step: Step) {
        let Ok(object) = serde_json::from_slice::<Value>(body) else {
            return self.fail(now.mono, step.verb(), "the answer is not JSON".into());
        };
        self.observed = Some(Observed {
            record: LeaseRecord::of(&object),
            at: now.mono,
        });
        self.object = Some(object);
        self.leading_until = Some(sent + self.params.renew_deadline);
        if self.role != Role::Leader {
            let why = match step {
                Step::Create => "created the Lease",
                Step::Update { taking_over: true } => "took the Lease over",
                _ => "renewed its own Lease",
            };
            let why = why.to_string();
            self.set_role(Role::Leader, why);
        }
        self.next_try = Some(now.mono + self.params.retry_period);
    }

    fn fail(&mut self, now: Instant, verb: Verb, why: String) {
        self.events.push(Event::Failed { verb, why });
        self.retry_later(now);
    }

    /// Schedule the next attempt: a leader renews every `retry_period`; a
    /// follower re-reads within one `retry_period` and at the latest when
    /// the holder's Lease expires (a takeover attempt at that instant, not
    /// at the next tick); a candidate waits with client-go's jitter.
    fn retry_later(&mut self, now: Instant) {
        let period = self.params.retry_period;
        let at = match self.role {
            Role::Leader => now + period,
            Role::Follower => {
                let tick = now
                    + self
                        .rng
                        .duration_between(period / FOLLOWER_JITTER_DIVISOR, period);
                // An expiry already past was tried (this is its retry): no spin.
                match self.expiry() {
                    Some(expiry) if now < expiry && expiry < tick => expiry,
                    _ => tick,
                }
            }
            Role::Candidate | Role::Released => {
                now + self
                    .rng
                    .duration_between(period, period.mul_f64(1.0 + JITTER_FACTOR))
            }
        };
        self.next_try = Some(at);
    }

    /// When the observed record expires: its own duration from when this
    /// process saw it change (client-go's `observedTime + leaseDuration`).
    fn expiry(&self) -> Option<Instant> {
        self.observed.as_ref().map(|o| {
            let secs = u64::try_from(o.record.duration_secs).unwrap_or(0);
            o.at + Duration::from_secs(secs)
        })
    }

    /// client-go's `isLeaseValid`, judged by the local monotonic clock.
    fn lease_valid(&self, now: Instant) -> bool {
        self.expiry().is_some_and(|expiry| now < expiry)
    }

    fn observed_record(&self) -> LeaseRecord {
        self.observed
            .as_ref()
            .map(|o| o.record.clone())
            .unwrap_or_else(|| LeaseRecord::of(&Value::Null))
    }

    /// This replica's record: acquired now, or renewing `own` (keeping its
    /// acquire time and transitions).
    fn own_record(&self, now: Now, own: Option<&LeaseRecord>) -> LeaseRecord {
        let at = micro_time(now.wall);
        LeaseRecord {
            holder: self.params.identity.clone(),
            duration_secs: i64::try_from(self.params.lease_duration.as_secs()).unwrap_or(i64::MAX),
            acquire_time: own.map_or(Some(at.clone()), |r| r.acquire_time.clone()),
            renew_time: Some(at),
            transitions: own.map_or(0, |r| r.transitions),
        }
    }

    fn send(&mut self, now: Instant, step: Step, body: Option<Value>) -> Request {
        self.next_id += 1;
        self.in_flight = Some(InFlight {
            id: self.next_id,
            step,
            sent: now,
        });
        let path = match step {
            Step::Create => self.params.collection_path(),
            _ => self.params.object_path(),
        };
        Request {
            id: self.next_id,
            verb: step.verb(),
            path,
            body: body.map(|b| b.to_string().into_bytes()),
        }
    }

    /// A request unanswered this long is abandoned and the attempt retried.
    fn request_timeout(&self) -> Duration {
        self.params.retry_period
    }

    fn set_role(&mut self, to: Role, why: String) {
        if to == self.role {
            return;
        }
        if to != Role::Leader {
            self.leading_until = None;
        }
        self.events.push(Event::Role {
            from: self.role,
            to,
            why,
        });
        self.role = to;
    }
}

impl Step {
    fn verb(self) -> Verb {
        match self {
            Step::Get => Verb::Get,
            Step::Create => Verb::Create,
            Step::FastRenew | Step::Update { .. } | Step::Release => Verb::Update,
        }
    }
}
