//! The Lease elector against the emulator's Leases over real TCP: two
//! replicas never both lead, a partitioned leader stops before the other
//! takes over, a released Lease is taken at once, and the object keeps what
//! others wrote. Each replica's requests are sent one at a time by a small
//! blocking client: the elector is sans-I/O, the daemon's loop is not needed
//! to check the protocol.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kwatchd::lease::{Elector, Now, Params, Reply, Request, Role};
use kwatchd::rand::Rng;
use kwatchd_sim::{LeaseClient, LeaseFault, Sim, SimOptions};
use serde_json::Value;

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/kwatchd/leases/kwatchd";

fn params(identity: &str) -> Params {
    Params {
        namespace: "kwatchd".into(),
        name: "kwatchd".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1200),
        retry_period: Duration::from_millis(300),
    }
}

/// One request on its own connection (`Connection: close`).
fn send(sim: &Sim, method: &str, path: &str, body: &[u8]) -> Reply {
    let attempt = || -> std::io::Result<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect(sim.addr())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let text = String::from_utf8_lossy(&resp).into_owned();
        let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((code, body.as_bytes().to_vec()))
    };
    match attempt() {
        Ok((code, body)) => Reply::Status { code, body },
        Err(e) => Reply::Failed(e.to_string()),
    }
}

fn lease(sim: &Sim) -> Value {
    match send(sim, "GET", LEASE_PATH, b"") {
        Reply::Status { code: 200, body } => serde_json::from_slice(&body).unwrap(),
        other => panic!("{other:?}"),
    }
}

struct Replica {
    elector: Elector,
}

impl Replica {
    fn new(identity: &str, seed: u64) -> Replica {
        Replica {
            elector: Elector::new(params(identity), Instant::now(), Rng::new(seed)),
        }
    }

    /// Sends what is due, one request at a time, until nothing is.
    fn step(&mut self, sim: &Sim) {
        while let Some(Request {
            id,
            verb,
            path,
            body,
        }) = self.elector.poll(Now::read())
        {
            let reply = send(sim, verb.method(), &path, body.as_deref().unwrap_or(b""));
            self.elector.on_reply(Now::read(), id, reply);
        }
    }
}

/// Steps both replicas for `span`, checking at every instant that they do
/// not both lead; returns when `until` holds (or panics at the end of `span`).
fn run(
    sim: &Sim,
    a: &mut Replica,
    b: &mut Replica,
    span: Duration,
    until: impl Fn(&Replica, &Replica) -> bool,
) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        a.step(sim);
        b.step(sim);
        let now = Instant::now();
        assert!(
            !(a.elector.may_deliver(now) && b.elector.may_deliver(now)),
            "both lead: {:?} {:?}",
            a.elector.role(),
            b.elector.role()
        );
        if until(a, b) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "not reached in {span:?}: {:?} {:?}",
        a.elector.role(),
        b.elector.role()
    );
}

fn leader_and_follower(a: &Replica, b: &Replica) -> bool {
    let roles = (a.elector.role(), b.elector.role());
    roles == (Role::Leader, Role::Follower) || roles == (Role::Follower, Role::Leader)
}

#[test]
fn one_leader_then_takeover_after_partition_and_after_release() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let mut a = Replica::new("a", 1);
    // `a` alone creates the Lease.
    let start = Instant::now();
    while a.elector.role() != Role::Leader {
        a.step(&sim);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            a.elector.role()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let l = lease(&sim);
    assert_eq!(l["spec"]["holderIdentity"], "a");
    assert_eq!(l["spec"]["leaseDurationSeconds"], 2);
    let renew = l["spec"]["renewTime"].as_str().unwrap();
    assert_eq!(renew.len(), "2026-12-04T17:28:48.123456Z".len(), "{renew}");

    // Another writer's annotation survives the renewals.
    let mut marked = l.clone();
    marked["metadata"]["annotations"] = serde_json::json!({"example.com/keep": "yes"});
    let put = send(&sim, "PUT", LEASE_PATH, marked.to_string().as_bytes());
    assert!(matches!(put, Reply::Status { code: 200, .. }), "{put:?}");

    let mut b = Replica::new("b", 2);
    run(&sim, &mut a, &mut b, Duration::from_secs(3), |a, b| {
        b.elector.role() == Role::Follower && a.elector.role() == Role::Leader
    });
    // Stays so over several lease durations.
    let calm = Instant::now() + Duration::from_secs(3);
    run(&sim, &mut a, &mut b, Duration::from_secs(4), |a, _| {
        assert_eq!(a.elector.role(), Role::Leader);
        Instant::now() > calm
    });
    let l = lease(&sim);
    assert_eq!(l["metadata"]["annotations"]["example.com/keep"], "yes");
    assert_eq!(l["spec"]["leaseTransitions"], 0);

    // Partition `a`: its writes fail. It must stop leading before `b` leads.
    sim.handle()
        .add_lease_fault(LeaseFault::partition(LeaseClient::Holder("a".into()), 503));
    let cut = Instant::now();
    run(&sim, &mut a, &mut b, Duration::from_secs(6), |_, b| {
        b.elector.role() == Role::Leader
    });
    let took = cut.elapsed();
    assert!(took >= Duration::from_millis(1200), "{took:?}");
    assert!(!a.elector.may_deliver(Instant::now()));
    let l = lease(&sim);
    assert_eq!(l["spec"]["holderIdentity"], "b");
    assert_eq!(l["spec"]["leaseTransitions"], 1);

    // The partition heals: `a` follows.
    sim.handle().clear_lease_faults();
    run(
        &sim,
        &mut a,
        &mut b,
        Duration::from_secs(5),
        leader_and_follower,
    );
    assert_eq!(a.elector.role(), Role::Follower);

    // `b` releases at shutdown: `a` takes the Lease within a jittered retry.
    let release = b.elector.release(Now::read()).expect("the leader releases");
    let reply = send(
        &sim,
        release.verb.method(),
        &release.path,
        release.body.as_deref().unwrap_or(b""),
    );
    b.elector.on_reply(Now::read(), release.id, reply);
    assert_eq!(lease(&sim)["spec"]["holderIdentity"], "");
    let released = Instant::now();
    run(&sim, &mut a, &mut b, Duration::from_secs(3), |a, _| {
        a.elector.role() == Role::Leader
    });
    assert!(
        released.elapsed() < Duration::from_millis(1500),
        "{:?}",
        released.elapsed()
    );
    assert_eq!(lease(&sim)["spec"]["leaseTransitions"], 2);
}
