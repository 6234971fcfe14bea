//! The sink against a real nats-server, driven by a small mio loop here
//! (the daemon-level tests are in tests/nats.rs).

use super::*;
use crate::config::OnFailure;
use crate::nats::subject::SubjectTemplate;
use crate::nats::testing::{Admin, NatsServer, StoredMessage};
use crate::nats::{Auth, ServerUrl};
use crate::net::Resolver;
use crate::state::AckRef;
use crate::tokens::TokenAllocator;
use mio::{Events, Poll, Waker};
use std::rc::Rc;
use std::sync::Arc;

struct Loop {
    poll: Poll,
    resolver: Resolver,
    tokens: TokenAllocator,
    acks: Vec<AckRef>,
}

impl Loop {
    fn new() -> Loop {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        Loop {
            poll,
            resolver: Resolver::new(waker),
            tokens: TokenAllocator::starting_at(10),
            acks: Vec::new(),
        }
    }

    /// Runs the sink until `done` or `limit` passes; false on timeout.
    fn run(
        &mut self,
        sink: &mut NatsSink,
        limit: Duration,
        mut done: impl FnMut(&NatsSink, &[AckRef]) -> bool,
    ) -> bool {
        let end = Instant::now() + limit;
        let mut events = Events::with_capacity(64);
        loop {
            if done(sink, &self.acks) {
                return true;
            }
            let now = Instant::now();
            if now > end {
                return false;
            }
            let wait = sink
                .deadline()
                .map_or(Duration::from_millis(50), |d| {
                    d.saturating_duration_since(now)
                })
                .min(Duration::from_millis(50));
            self.poll.poll(&mut events, Some(wait)).unwrap();
            let mut ctx = SinkCtx {
                registry: self.poll.registry(),
                tokens: &mut self.tokens,
                resolver: &mut self.resolver,
                now: Instant::now(),
            };
            for e in events.iter() {
                sink.on_ready(e.token(), &mut ctx);
            }
            let answers = ctx.resolver.answers();
            for a in answers {
                sink.on_resolved(a.id, a.result, &mut ctx);
            }
            sink.poll(&mut ctx);
            sink.delivery_mut().take_acks(&mut self.acks);
        }
    }
}

fn config(server: &NatsServer, auth: Auth) -> NatsSinkConfig {
    NatsSinkConfig {
        servers: vec![ServerUrl::parse(&server.url()).unwrap()],
        subject: SubjectTemplate::parse("kube.{cluster}.{watch}.{namespace}.{kind}.{name}")
            .unwrap(),
        stream: "KUBE".into(),
        auth,
        certificate_authority: None,
        client_certificate: None,
        client_key: None,
        max_in_flight: 16,
        ack_timeout: Duration::from_secs(2),
        on_failure: OnFailure::Log,
        queue_events: Some(60),
    }
}

/// Event `seq` of object `obj`: resourceVersion = seq.
fn event(obj: u64, seq: u64, pad: usize) -> (Vec<u8>, Rc<EventMeta>) {
    let meta = EventMeta {
        watch: "pods".into(),
        cluster: "c1".into(),
        event_type: if seq == obj { "ADDED" } else { "MODIFIED" },
        origin: "watch",
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: if obj % 5 == 0 {
            String::new()
        } else {
            "ns".into()
        },
        name: format!("pod.{obj}"),
        uid: format!("uid-{obj}"),
        resource_version: seq.to_string(),
    };
    let line = format!(
        "{{\"type\":\"{}\",\"object\":{{\"rv\":{seq},\"pad\":\"{}\"}}}}\n",
        meta.event_type,
        "x".repeat(pad)
    );
    (line.into_bytes(), Rc::new(meta))
}

fn push(sink: &mut NatsSink, seq: u64, pad: usize) {
    let (line, meta) = event(seq % 7, seq, pad);
    sink.delivery_mut().push(
        Instant::now(),
        &line,
        Some(&meta),
        AckRef {
            watch: 1,
            seq,
            rv: None,
        },
    );
}

/// Every event once, in resourceVersion order per object.
fn check_exactly_once(msgs: &[StoredMessage], events: u64) {
    let mut ids: Vec<&str> = msgs
        .iter()
        .filter_map(|m| m.header("Nats-Msg-Id"))
        .collect();
    assert_eq!(
        msgs.len() as u64,
        events,
        "stream holds {} messages",
        msgs.len()
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len() as u64,
        events,
        "duplicate Nats-Msg-Id in the stream"
    );
    let mut last: HashMap<String, u64> = HashMap::new();
    for m in msgs {
        let v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
        let rv = v["object"]["rv"].as_u64().unwrap();
        let prev = last.insert(m.subject.clone(), rv);
        assert!(
            prev.is_none_or(|p| p < rv),
            "{}: {prev:?} then {rv}",
            m.subject
        );
    }
}

#[test]
fn records_wait_for_the_stream_and_survive_a_server_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = NatsServer::start(dir.path(), &[]).unwrap();
    let mut l = Loop::new();
    let mut sink = NatsSink::new(
        "bus",
        &config(&server, Auth::None),
        1000,
        Rng::new(1),
        Instant::now(),
    )
    .unwrap();
    for seq in 1..=20 {
        push(&mut sink, seq, 100);
    }
    // No stream yet: publishing pauses, nothing is acknowledged.
    assert!(l.run(&mut sink, Duration::from_secs(10), |s, _| s
        .nats_stats()
        .paused));
    assert!(
        !l.run(&mut sink, Duration::from_millis(600), |_, acks| !acks
            .is_empty())
    );
    assert_eq!(sink.nats_stats().state, ConnState::Connected);
    let mut admin = Admin::connect(server.port, &Auth::None).unwrap();
    admin.create_stream("KUBE", &["kube.>"], 1).unwrap();
    assert!(
        l.run(&mut sink, Duration::from_secs(15), |_, acks| acks.len()
            == 20)
    );
    assert!(!sink.nats_stats().paused);

    // SIGKILL of the server with publishes in flight: the queue fills and
    // stays full.
    for seq in 21..=50 {
        push(&mut sink, seq, 4000);
    }
    assert!(
        l.run(&mut sink, Duration::from_secs(10), |_, acks| acks.len()
            > 24)
    );
    server.kill();
    // PubAcks already in the socket still count; then nothing can.
    l.run(&mut sink, Duration::from_millis(300), |_, _| false);
    let mut seq = 50;
    while sink.delivery().has_room() {
        seq += 1;
        push(&mut sink, seq, 4000);
    }
    assert!(seq >= 60, "has_room turned false at {seq}");
    assert!(!l.run(&mut sink, Duration::from_millis(800), |s, _| s
        .delivery()
        .has_room()));
    server.restart().unwrap();
    assert!(
        l.run(&mut sink, Duration::from_secs(20), |_, acks| acks.len()
            as u64
            == seq)
    );
    assert!(sink.delivery().has_room());
    let mut admin = Admin::connect(server.port, &Auth::None).unwrap();
    let msgs = admin.read_stream("KUBE").unwrap();
    check_exactly_once(&msgs, seq);
    // Subjects and headers.
    let m = msgs
        .iter()
        .find(|m| m.header("Nats-Msg-Id") == Some("c1/uid-0/35/MODIFIED"))
        .unwrap();
    assert_eq!(m.subject, "kube.c1.pods._.Pod.pod%2E0");
    assert_eq!(m.header("Kwatchd-Watch"), Some("pods"));
    assert_eq!(m.header("Kwatchd-Type"), Some("MODIFIED"));
    assert_eq!(m.header("Kwatchd-Origin"), Some("watch"));
    assert_eq!(sink.counts().given_up, 0);
}

#[test]
fn token_auth_and_oversized_records() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("auth.conf");
    std::fs::write(
        &conf,
        "authorization { token: \"s3cret\" }\nmax_payload: 2048\n",
    )
    .unwrap();
    let server = NatsServer::start(dir.path(), &["-c", conf.to_str().unwrap()]).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut admin = Admin::connect(server.port, &Auth::Token(token.clone())).unwrap();
    admin.create_stream("KUBE", &["kube.>"], 1).unwrap();
    std::fs::write(&token, "wrong\n").unwrap();
    let mut l = Loop::new();
    let mut sink = NatsSink::new(
        "bus",
        &config(&server, Auth::Token(token.clone())),
        1000,
        Rng::new(2),
        Instant::now(),
    )
    .unwrap();
    push(&mut sink, 1, 10);
    push(&mut sink, 2, 5000); // over max_payload: given up
    push(&mut sink, 3, 10);
    // A wrong token is refused; the file is read again at each attempt.
    assert!(!l.run(&mut sink, Duration::from_millis(700), |s, _| s
        .nats_stats()
        .state
        == ConnState::Connected));
    std::fs::write(&token, "s3cret\n").unwrap();
    assert!(
        l.run(&mut sink, Duration::from_secs(15), |_, acks| acks.len()
            == 3)
    );
    assert_eq!(sink.counts().given_up, 1);
    assert_eq!(sink.counts().delivered, 2);
    assert_eq!(admin.stream_messages("KUBE").unwrap(), 2);
}

/// Publishes three records with `auth` to a server started with `conf`.
fn publish_with(conf_text: &str, auth: impl Fn(&std::path::Path) -> Auth) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("server.conf");
    std::fs::write(&conf, conf_text).unwrap();
    let server = NatsServer::start(dir.path(), &["-c", conf.to_str().unwrap()]).unwrap();
    let auth = auth(dir.path());
    let mut admin = Admin::connect(server.port, &auth)
        .map_err(|e| format!("{e}: {}", server.log_text()))
        .unwrap();
    admin.create_stream("KUBE", &["kube.>"], 1).unwrap();
    let mut l = Loop::new();
    let mut sink = NatsSink::new(
        "bus",
        &config(&server, auth),
        1000,
        Rng::new(3),
        Instant::now(),
    )
    .unwrap();
    for seq in 1..=3 {
        push(&mut sink, seq, 10);
    }
    assert!(
        l.run(&mut sink, Duration::from_secs(10), |_, acks| acks.len()
            == 3),
        "{}",
        server.log_text()
    );
    assert_eq!(admin.stream_messages("KUBE").unwrap(), 3);
}

#[test]
fn nkey_seed_auth() {
    use crate::nats::nkey::{encode_seed, KeyPair, PREFIX_USER};
    let seed = encode_seed(PREFIX_USER, &[7; 32]);
    let public = KeyPair::from_seed(&seed).unwrap().public_key();
    publish_with(
        &format!("authorization {{ users = [ {{ nkey: {public} }} ] }}\n"),
        |dir| {
            let path = dir.join("user.nk");
            std::fs::write(&path, format!("{seed}\n")).unwrap();
            Auth::NkeySeed(path)
        },
    );
}

#[test]
fn credentials_file_auth_in_operator_mode() {
    let jwts = crate::nats::testing::Jwts::generate([[1; 32], [2; 32], [3; 32], [4; 32]]).unwrap();
    publish_with(&jwts.server_config, |dir| {
        let path = dir.join("user.creds");
        std::fs::write(&path, &jwts.creds).unwrap();
        Auth::Credentials(path)
    });
}

#[test]
fn mutual_tls_after_plaintext_info() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, [(cert, key), (client_cert, client_key)]) = test_pki().unwrap();
    let p = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (ca, cert, key) = (p("ca.pem", &ca), p("cert.pem", &cert), p("key.pem", &key));
    let (client_cert, client_key) = (
        p("client.pem", &client_cert),
        p("client-key.pem", &client_key),
    );
    let conf = p(
        "server.conf",
        &format!(
            "tls {{ cert_file: {cert:?}\n key_file: {key:?}\n ca_file: {ca:?}\n verify: true }}\n"
        ),
    );
    let server = NatsServer::start(dir.path(), &["-c", conf.to_str().unwrap()]).unwrap();
    let mut c = config(&server, Auth::None);
    c.certificate_authority = Some(ca.clone());
    c.client_certificate = Some(client_cert.clone());
    c.client_key = Some(client_key.clone());
    let tls = tls_config(&c).unwrap();
    let mut admin = Admin::connect_with(server.port, &Auth::None, tls).unwrap();
    admin.create_stream("KUBE", &["kube.>"], 1).unwrap();
    let mut l = Loop::new();
    let mut sink = NatsSink::new("bus", &c, 1000, Rng::new(4), Instant::now()).unwrap();
    for seq in 1..=3 {
        push(&mut sink, seq, 20_000);
    }
    assert!(
        l.run(&mut sink, Duration::from_secs(10), |_, acks| acks.len()
            == 3),
        "{}",
        server.log_text()
    );
    assert_eq!(admin.stream_messages("KUBE").unwrap(), 3);
    // Without the client certificate the server refuses the handshake.
    c.client_certificate = None;
    c.client_key = None;
    let mut sink = NatsSink::new("bus", &c, 1000, Rng::new(5), Instant::now()).unwrap();
    push(&mut sink, 9, 10);
    assert!(!l.run(&mut sink, Duration::from_millis(1500), |s, _| {
        s.nats_stats().state == ConnState::Connected
    }));
}

#[test]
fn three_node_cluster_survives_losing_the_connected_node() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|_| {
            (
                crate::nats::testing::free_port().unwrap(),
                crate::nats::testing::free_port().unwrap(),
            )
        })
        .collect();
    let mut nodes: Vec<NatsServer> = Vec::new();
    for (i, (client, route)) in ports.iter().enumerate() {
        let routes: Vec<String> = ports
            .iter()
            .filter(|(_, r)| r != route)
            .map(|(_, r)| format!("nats-route://127.0.0.1:{r}"))
            .collect();
        let conf = dir.path().join(format!("n{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: n{i}\ncluster {{ name: kw\n listen: 127.0.0.1:{route}\n routes: [{}] }}\n",
                routes.join(", ")
            ),
        )
        .unwrap();
        nodes.push(
            NatsServer::start_on(dir.path(), *client, &["-c", conf.to_str().unwrap()]).unwrap(),
        );
    }
    let mut admin = Admin::connect(nodes[1].port, &Auth::None).unwrap();
    admin.create_stream("KUBE", &["kube.>"], 3).unwrap();
    // Only the first node is configured: the others come from INFO.
    let mut l = Loop::new();
    let mut sink = NatsSink::new(
        "bus",
        &config(&nodes[0], Auth::None),
        1000,
        Rng::new(6),
        Instant::now(),
    )
    .unwrap();
    for seq in 1..=40 {
        push(&mut sink, seq, 1000);
    }
    assert!(
        l.run(&mut sink, Duration::from_secs(15), |_, acks| acks.len()
            >= 10)
    );
    assert!(
        sink.client().servers().len() >= 3,
        "{:?}",
        sink.client().servers()
    );
    nodes[0].kill();
    for seq in 41..=60 {
        push(&mut sink, seq, 1000);
    }
    assert!(
        l.run(&mut sink, Duration::from_secs(20), |_, acks| acks.len()
            == 60),
        "{}",
        nodes[1].log_text()
    );
    let mut admin = Admin::connect(nodes[2].port, &Auth::None).unwrap();
    let msgs = admin.read_stream("KUBE").unwrap();
    check_exactly_once(&msgs, 60);
}

/// A CA and a certificate it signs for 127.0.0.1, as PEM: (ca, cert, key).
/// Call twice with the CA's output to get a client certificate too.
pub fn test_pki() -> Result<(String, [(String, String); 2]), rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let leaf = || -> Result<(String, String), rcgen::Error> {
        let key = KeyPair::generate()?;
        let cert =
            CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &ca, &ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    Ok((ca.pem(), [leaf()?, leaf()?]))
}

/// Readiness between turns settles PubAcks but takes no new record from
/// the queue: the daemon polls a sink only once the state store has the
/// objects of what it queued (the gate), and a record pushed since may be
/// about an object the store does not have yet.
#[test]
fn readiness_takes_no_new_record_only_poll_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path(), &[]).unwrap();
    let mut admin = Admin::connect(server.port, &Auth::None).unwrap();
    admin.create_stream("KUBE", &["kube.>"], 1).unwrap();
    let mut l = Loop::new();
    let mut sink = NatsSink::new(
        "bus",
        &config(&server, Auth::None),
        1000,
        Rng::new(1),
        Instant::now(),
    )
    .unwrap();
    push(&mut sink, 1, 100);
    assert!(
        l.run(&mut sink, Duration::from_secs(10), |_, acks| acks.len()
            == 1)
    );
    // The first record is out (poll); the second is queued after it, and
    // only readiness follows until the first one's PubAck is in.
    push(&mut sink, 2, 100);
    push(&mut sink, 3, 100);
    let mut ctx = SinkCtx {
        registry: l.poll.registry(),
        tokens: &mut l.tokens,
        resolver: &mut l.resolver,
        now: Instant::now(),
    };
    sink.poll(&mut ctx);
    assert_eq!(sink.jobs.len(), 2, "poll takes what is queued");
    push(&mut sink, 4, 100);
    let end = Instant::now() + Duration::from_secs(10);
    let mut events = Events::with_capacity(64);
    while !sink.jobs.is_empty() && Instant::now() < end {
        l.poll
            .poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        let mut ctx = SinkCtx {
            registry: l.poll.registry(),
            tokens: &mut l.tokens,
            resolver: &mut l.resolver,
            now: Instant::now(),
        };
        for e in events.iter() {
            sink.on_ready(e.token(), &mut ctx);
        }
    }
    assert!(sink.jobs.is_empty(), "records 2 and 3 acknowledged");
    assert_eq!(sink.delivery().pending(), 1, "record 4 still queued");
    assert_eq!(sink.delivery().counts().delivered, 3);
    assert!(l.run(&mut sink, Duration::from_secs(10), |s, _| s
        .delivery()
        .counts()
        .delivered
        == 4));
}
