//! The elector against scripted API answers, with the clocks in the test's hands.

use super::*;
use serde_json::json;

const ME: &str = "me";

fn params() -> Params {
    Params {
        namespace: "ns".into(),
        name: "kwatchd".into(),
        identity: ME.into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    }
}

struct Run {
    e: Elector,
    t0: Instant,
    w0: SystemTime,
    at: Duration,
}

impl Run {
    fn new() -> Run {
        let t0 = Instant::now();
        Run {
            e: Elector::new(params(), t0, Rng::new(7)),
            t0,
            w0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_405_328),
            at: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: self.t0 + self.at,
            wall: self.w0 + self.at,
        }
    }

    fn set(&mut self, secs: f64) {
        self.at = Duration::from_secs_f64(secs);
    }

    fn poll(&mut self) -> Option<Request> {
        self.e.poll(self.now())
    }

    fn expect(&mut self, verb: Verb) -> Request {
        let r = self.poll().expect("a request is due");
        assert_eq!(r.verb, verb, "{r:?}");
        r
    }

    fn answer(&mut self, r: &Request, code: u16, body: Value) {
        let body = body.to_string().into_bytes();
        self.e
            .on_reply(self.now(), r.id, Reply::Status { code, body });
    }

    /// Answer a write as the API server does: the body back with a new resourceVersion.
    fn accept(&mut self, r: &Request, rv: &str) {
        let mut obj: Value = serde_json::from_slice(r.body.as_deref().unwrap_or(b"{}")).unwrap();
        obj["metadata"]["resourceVersion"] = json!(rv);
        self.answer(r, 200, obj);
    }

    fn lead(&mut self) {
        let get = self.expect(Verb::Get);
        self.answer(&get, 404, json!({"kind": "Status", "code": 404}));
        let create = self.expect(Verb::Create);
        self.accept(&create, "1");
        assert_eq!(self.e.role(), Role::Leader);
    }
}

fn lease(holder: &str, duration: i64, renew: &str, transitions: i64, rv: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kwatchd", "namespace": "ns", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                 "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": renew,
                 "leaseTransitions": transitions},
    })
}

fn body(r: &Request) -> Value {
    serde_json::from_slice(r.body.as_deref().unwrap_or(b"null")).unwrap()
}

#[test]
fn absent_lease_is_created_and_led() {
    let mut run = Run::new();
    let get = run.expect(Verb::Get);
    assert_eq!(
        get.path,
        "/apis/coordination.k8s.io/v1/namespaces/ns/leases/kwatchd"
    );
    run.answer(&get, 404, json!({}));
    let create = run.expect(Verb::Create);
    assert_eq!(
        create.path,
        "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
    );
    let b = body(&create);
    assert_eq!(b["spec"]["holderIdentity"], ME);
    assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(b["spec"]["leaseTransitions"], 0);
    assert_eq!(b["spec"]["acquireTime"], "2026-12-04T17:28:48.000000Z");
    assert_eq!(b["spec"]["renewTime"], b["spec"]["acquireTime"]);
    assert!(
        !run.e.may_deliver(run.now().mono),
        "not before the write succeeds"
    );
    run.accept(&create, "1");
    assert!(run.e.may_deliver(run.now().mono));
    assert_eq!(
        run.e.poll_timeout(),
        Some((run.t0 + Duration::from_secs(2), Timer::Retry))
    );
}

#[test]
fn create_conflict_is_a_lost_round() {
    let mut run = Run::new();
    let get = run.expect(Verb::Get);
    run.answer(&get, 404, json!({}));
    let create = run.expect(Verb::Create);
    run.answer(&create, 409, json!({"reason": "AlreadyExists"}));
    assert_eq!(run.e.role(), Role::Candidate);
    assert!(run.poll().is_none());
}

/// (holder, its leaseDurationSeconds, seconds after the first sighting of an
/// unchanged record at which we look again, whether we take it over).
#[test]
fn another_holder_is_waited_for_until_expiry_by_the_local_clock() {
    let cases: &[(&str, i64, f64, bool)] = &[
        ("other", 15, 14.9, false),
        ("other", 5, 4.5, false),
        ("other", 15, 15.0, true),
        // The record's own duration counts, not ours (client-go's isLeaseValid).
        ("other", 3, 4.5, true),
        ("other", 30, 20.0, false),
        // A released Lease is free at once.
        ("", 1, 0.0, true),
        ("", 15, 0.0, true),
    ];
    for &(holder, duration, later, takes) in cases {
        let mut run = Run::new();
        // The renewTime is far in the past by the wall clock: it must not matter.
        let l = lease(holder, duration, "2020-01-01T00:00:00.000000Z", 4, "77");
        let get = run.expect(Verb::Get);
        run.answer(&get, 200, l.clone());
        if holder.is_empty() {
            let up = run.expect(Verb::Update);
            assert_eq!(body(&up)["spec"]["leaseTransitions"], 5);
            continue;
        }
        assert_eq!(run.e.role(), Role::Follower, "{holder} {duration}");
        assert!(run.poll().is_none(), "no write while another holds it");
        let (next, timer) = run.e.poll_timeout().unwrap();
        assert_eq!(timer, Timer::Retry);
        // A follower re-reads within one retry_period (2s), jittered below it.
        let wait = next - run.t0;
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        run.set(later);
        let get = run.expect(Verb::Get);
        run.answer(&get, 200, l.clone());
        match run.poll() {
            Some(up) if takes => {
                assert_eq!(up.verb, Verb::Update);
                let b = body(&up);
                assert_eq!(b["metadata"]["resourceVersion"], "77", "the precondition");
                assert_eq!(b["spec"]["holderIdentity"], ME);
                assert_eq!(b["spec"]["leaseTransitions"], 5);
                assert_eq!(b["spec"]["acquireTime"], b["spec"]["renewTime"]);
                assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
                run.accept(&up, "78");
                assert_eq!(run.e.role(), Role::Leader);
            }
            other => {
                assert!(!takes, "{holder} {duration} {later}: expected a takeover");
                assert!(other.is_none(), "{other:?}");
                assert_eq!(run.e.role(), Role::Follower);
            }
        }
    }
}

/// (the holder's leaseDurationSeconds, seconds until its renews stop: the
/// record changes at every read before). The follower reads at most one
/// retry_period apart and sends its takeover at the very instant the last
/// record it saw change expires, so within lease + retry_period of the
/// holder's last renew.
#[test]
fn a_follower_tries_at_the_instant_a_dead_holders_lease_expires() {
    let retry = params().retry_period;
    let cases: &[(i64, f64)] = &[
        (15, 0.0),
        (15, 9.3),
        (3, 5.0),
        // Shorter than one retry_period: the first wake is the expiry.
        (1, 0.0),
        (1, 4.0),
    ];
    for &(duration, stop) in cases {
        let (lease_duration, stop) = (
            Duration::from_secs(duration as u64),
            Duration::from_secs_f64(stop),
        );
        let mut run = Run::new();
        let (mut seen_change, mut renews, mut last_wake) = (Duration::ZERO, 0, Timer::Retry);
        let took = loop {
            assert!(
                run.at < Duration::from_secs(60),
                "{duration} {stop:?}: no takeover"
            );
            let get = run.expect(Verb::Get);
            if run.at < stop {
                renews += 1;
                seen_change = run.at;
            }
            let renew = format!("2026-12-04T17:28:{renews:02}.000000Z");
            run.answer(
                &get,
                200,
                lease("other", duration, &renew, 0, &renews.to_string()),
            );
            if let Some(up) = run.poll() {
                assert_eq!(up.verb, Verb::Update);
                assert_eq!(body(&up)["spec"]["holderIdentity"], ME);
                break run.at;
            }
            assert_eq!(run.e.role(), Role::Follower);
            let (next, timer) = run.e.poll_timeout().unwrap();
            let gap = next - (run.t0 + run.at);
            assert!(
                gap > Duration::ZERO && gap <= retry,
                "{duration} {stop:?}: {gap:?}"
            );
            run.at = next - run.t0;
            last_wake = timer;
        };
        let ctx = format!("lease {duration}s, renews until {stop:?}: took at {took:?}");
        assert_eq!(
            took,
            seen_change + lease_duration,
            "exactly at expiry; {ctx}"
        );
        assert_eq!(last_wake, Timer::Expiry, "{ctx}");
        assert!(took <= stop + lease_duration + retry, "{ctx}");
    }
}

#[test]
fn a_failed_read_at_expiry_is_retried_within_retry_period_not_at_once() {
    let mut run = Run::new();
    let get = run.expect(Verb::Get);
    run.answer(&get, 200, lease("other", 1, "x", 0, "1"));
    assert_eq!(
        run.e.poll_timeout(),
        Some((run.t0 + Duration::from_secs(1), Timer::Expiry))
    );
    run.set(1.0);
    let get = run.expect(Verb::Get);
    run.answer(&get, 503, json!({}));
    let (next, timer) = run.e.poll_timeout().unwrap();
    assert_eq!(timer, Timer::Retry);
    let wait = next - (run.t0 + run.at);
    assert!(
        wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2),
        "{wait:?}"
    );
}

#[test]
fn a_renewing_holder_is_never_expired() {
    let mut run = Run::new();
    for i in 0..20 {
        run.set(f64::from(i) * 5.0);
        let get = run.expect(Verb::Get);
        let renew = format!("2026-12-04T17:28:{:02}.000000Z", i);
        run.answer(&get, 200, lease("other", 15, &renew, 0, &i.to_string()));
        assert!(run.poll().is_none(), "round {i}");
        assert_eq!(run.e.role(), Role::Follower);
    }
}

#[test]
fn renewing_keeps_acquire_time_and_transitions() {
    let mut run = Run::new();
    let get = run.expect(Verb::Get);
    run.answer(&get, 200, lease("other", 2, "x", 3, "5"));
    run.set(4.5);
    let get = run.expect(Verb::Get);
    run.answer(&get, 200, lease("other", 2, "x", 3, "5"));
    let take = run.expect(Verb::Update);
    run.accept(&take, "6");
    let acquired = body(&take)["spec"]["acquireTime"].clone();
    run.set(6.5);
    let renew = run.expect(Verb::Update);
    let b = body(&renew);
    assert_eq!(
        b["metadata"]["resourceVersion"], "6",
        "the fast path writes what it wrote last"
    );
    assert_eq!(b["spec"]["acquireTime"], acquired);
    assert_eq!(b["spec"]["renewTime"], "2026-12-04T17:28:54.500000Z");
    assert_eq!(b["spec"]["leaseTransitions"], 4);
    run.accept(&renew, "7");
    assert!(run.e.may_deliver(run.now().mono));
}

#[test]
fn failed_fast_renew_reads_and_yields_to_a_new_holder() {
    let mut run = Run::new();
    run.lead();
    run.set(2.0);
    let renew = run.expect(Verb::Update);
    run.answer(&renew, 409, json!({"reason": "Conflict"}));
    assert_eq!(
        run.e.role(),
        Role::Leader,
        "the fast path's 409 only sends it to read"
    );
    let get = run.expect(Verb::Get);
    run.answer(&get, 200, lease("thief", 15, "y", 1, "9"));
    assert_eq!(run.e.role(), Role::Follower);
    assert!(!run.e.may_deliver(run.now().mono));
}

#[test]
fn slow_path_conflict_stops_leading_at_once() {
    let mut run = Run::new();
    run.lead();
    run.set(2.0);
    let renew = run.expect(Verb::Update);
    run.answer(&renew, 500, json!({}));
    let get = run.expect(Verb::Get);
    run.answer(&get, 200, lease(ME, 15, "y", 0, "2"));
    let up = run.expect(Verb::Update);
    assert_eq!(
        body(&up)["spec"]["leaseTransitions"],
        0,
        "still its own: no transition"
    );
    run.answer(&up, 409, json!({}));
    assert_eq!(run.e.role(), Role::Candidate);
    assert!(!run.e.may_deliver(run.now().mono));
}

#[test]
fn no_renew_within_renew_deadline_fences() {
    let mut run = Run::new();
    run.lead();
    // Every renew fails; the leader keeps trying every retry_period.
    for secs in [2.0, 4.0, 6.0, 8.0] {
        run.set(secs);
        let renew = run.poll().unwrap();
        run.e.on_reply(
            run.now(),
            renew.id,
            Reply::Failed("connection refused".into()),
        );
        if renew.verb == Verb::Update {
            let get = run.expect(Verb::Get);
            run.answer(&get, 503, json!({}));
        }
        assert!(run.e.may_deliver(run.now().mono), "at {secs}");
    }
    assert_eq!(
        run.e.poll_timeout().map(|(t, _)| t - run.t0),
        Some(Duration::from_secs(10))
    );
    run.set(9.999);
    assert!(run.e.may_deliver(run.now().mono));
    run.set(10.0);
    assert!(
        !run.e.may_deliver(run.now().mono),
        "fenced at exactly renew_deadline"
    );
    let _ = run.poll();
    assert_eq!(run.e.role(), Role::Candidate);
    let events = run.e.take_events();
    assert!(events.iter().any(|e| matches!(e,
        Event::Role { from: Role::Leader, to: Role::Candidate, why } if why.contains("renew_deadline"))));
}

#[test]
fn fence_counts_from_when_the_write_was_sent() {
    let mut run = Run::new();
    let get = run.expect(Verb::Get);
    run.answer(&get, 404, json!({}));
    let create = run.expect(Verb::Create);
    run.set(1.5); // a slow answer
    run.accept(&create, "1");
    run.set(9.9);
    assert!(run.e.may_deliver(run.now().mono));
    run.set(10.0);
    assert!(!run.e.may_deliver(run.now().mono));
}

#[test]
fn an_unanswered_request_is_abandoned_and_its_late_answer_ignored() {
    let mut run = Run::new();
    let get = run.expect(Verb::Get);
    assert_eq!(
        run.e.poll_timeout(),
        Some((run.t0 + Duration::from_secs(2), Timer::RequestTimeout))
    );
    run.set(2.0);
    assert!(
        run.poll().is_none(),
        "abandoned, retried after the jittered wait"
    );
    run.answer(&get, 404, json!({}));
    assert!(run.poll().is_none(), "the late answer starts nothing");
    run.set(10.0);
    let again = run.expect(Verb::Get);
    assert_ne!(again.id, get.id);
}

#[test]
fn release_frees_the_lease_for_the_next_candidate() {
    let mut run = Run::new();
    run.lead();
    run.set(1.0);
    let rel = run.e.release(run.now()).expect("the leader releases");
    assert_eq!(run.e.role(), Role::Released);
    assert!(!run.e.may_deliver(run.now().mono));
    let b = body(&rel);
    assert_eq!(rel.verb, Verb::Update);
    assert_eq!(b["spec"]["holderIdentity"], "");
    assert_eq!(b["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(b["spec"]["leaseTransitions"], 0);
    assert_eq!(b["spec"]["acquireTime"], "2026-12-04T17:28:49.000000Z");
    assert_eq!(b["metadata"]["resourceVersion"], "1");
    assert_eq!(
        run.e.poll_timeout(),
        None,
        "no timer spins while the release is out"
    );
    run.accept(&rel, "2");
    run.set(100.0);
    assert!(run.poll().is_none());
    assert_eq!(run.e.poll_timeout(), None);
    // A follower has nothing to release.
    let mut f = Run::new();
    let get = f.expect(Verb::Get);
    f.answer(&get, 200, lease("other", 15, "x", 0, "1"));
    assert!(f.e.release(f.now()).is_none());
}

#[test]
fn the_leader_advertises_and_a_follower_reads_it() {
    let mut run = Run::new();
    run.e.set_advert("{\"pods\":\"100\"}".into());
    run.lead();
    assert_eq!(
        run.e.leader_advert(),
        None,
        "its own advert is not a leader's"
    );
    run.set(2.0);
    run.e.set_advert("{\"pods\":\"120\"}".into());
    let renew = run.expect(Verb::Update);
    assert_eq!(advert_of(&body(&renew)), Some("{\"pods\":\"120\"}"));

    let mut f = Run::new();
    let mut l = lease("other", 15, "x", 0, "1");
    l["metadata"]["annotations"] = json!({COMMITTED_ANNOTATION: "{\"pods\":\"120\"}"});
    let get = f.expect(Verb::Get);
    f.answer(&get, 200, l);
    assert_eq!(f.e.leader_advert(), Some("{\"pods\":\"120\"}"));
}

#[test]
fn unreadable_answers_are_failed_rounds() {
    let mut run = Run::new();
    let get = run.expect(Verb::Get);
    run.e.on_reply(
        run.now(),
        get.id,
        Reply::Status {
            code: 200,
            body: b"<html>".to_vec(),
        },
    );
    assert_eq!(run.e.role(), Role::Candidate);
    assert!(matches!(
        run.e.take_events().as_slice(),
        [Event::Failed {
            verb: Verb::Get,
            ..
        }]
    ));
}

#[test]
fn names_are_distinct() {
    let roles: std::collections::HashSet<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(roles.len(), Role::ALL.len());
    let timers: std::collections::HashSet<_> = Timer::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(timers.len(), Timer::ALL.len());
    let verbs: std::collections::HashSet<_> = Verb::ALL.iter().map(|v| v.method()).collect();
    assert_eq!(verbs.len(), Verb::ALL.len());
}

#[test]
fn default_identities_name_the_host_and_differ_per_process() {
    let a = default_identity(&mut Rng::new(1));
    let b = default_identity(&mut Rng::new(2));
    assert_ne!(a, b);
    let (host, hex) = a.rsplit_once('_').unwrap();
    assert!(!host.is_empty());
    assert_eq!(hex.len(), 8);
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
}
