//! Stream throughput: one watch streaming N pre-rendered pod events (one
//! chunk per line, as the API server writes them) into a file sink, against
//! a socket drain of the same bytes measured in the same run. Three
//! scenarios: ~4 KB pods over plain HTTP, the same over TLS, and ~1 MiB
//! pods over plain HTTP; and `filter`: the 4 KB pods (one in four of
//! another app) through a watch with `select` and `changes`, timed next to
//! the plain watch on the same stream in the same round; and `leader`: the
//! plain watch with `[daemon.leader_election]` on (the Lease on the
//! in-repo emulator, a second cluster: this server does not serve one), so
//! every record passes the hold in front of the sink, timed next to the
//! plain watch in the same round; and `standby` (not in the default set):
//! a leader and a standby replica on the same stream, the standby's CPU
//! per event against the leader's.
//!
//! `cargo bench --bench throughput` (`KWATCHD_BENCH_EVENTS` overrides the
//! 4 KB event count, 100000; `KWATCHD_BENCH_ROUNDS` sets the rounds, default
//! 3; `KWATCHD_BENCH_SCENARIOS=plain,tls,1mib,filter,leader,standby` picks
//! scenarios;
//! `KWATCHD_BENCH_BIN=path/to/kwatchd` times another build of the daemon).

mod common;

use common::{cpu_seconds, render_with, serve, WATCH_HEAD};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What the drain and the daemon connect with.
#[derive(Clone)]
enum Transport {
    Plain,
    Tls {
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        ca_pem: String,
    },
}

/// A CA, a server certificate for 127.0.0.1 it signs, and both ends'
/// configs (the daemon gets the CA as `certificate_authority`).
fn tls_transport() -> Transport {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("cert");
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Transport::Tls {
        server: Arc::new(server),
        client: Arc::new(client),
        ca_pem: ca.pem(),
    }
}

/// Serves the stream on a fresh listener, plain or TLS.
fn start_server(transport: &Transport, body: &Arc<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let b = body.clone();
    match transport {
        Transport::Plain => {
            thread::spawn(move || serve(listener, common::Stream::Burst(b)));
        }
        Transport::Tls { server, .. } => {
            let server = server.clone();
            thread::spawn(move || serve_tls(listener, server, b));
        }
    }
    addr
}

/// `common::serve` over TLS: an empty LIST, the body to the first WATCH,
/// later watches held open and silent.
fn serve_tls(listener: TcpListener, config: Arc<rustls::ServerConfig>, body: Arc<Vec<u8>>) {
    let streamed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { return };
        let (config, body, streamed) = (config.clone(), body.clone(), streamed.clone());
        thread::spawn(move || {
            let Ok(tls) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut reader = BufReader::new(rustls::StreamOwned::new(tls, conn));
            loop {
                let mut first = String::new();
                if reader.read_line(&mut first).unwrap_or(0) == 0 {
                    return;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let out = reader.get_mut();
                if first.contains("watch=") {
                    let _ = out.write_all(WATCH_HEAD);
                    if streamed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        let _ = out.flush();
                        thread::sleep(Duration::from_secs(3600));
                        return;
                    }
                    let _ = out.write_all(&body);
                    let _ = out.flush();
                } else {
                    let list = br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        list.len()
                    );
                    let _ = out.write_all(head.as_bytes());
                    let _ = out.write_all(list);
                    let _ = out.flush();
                }
            }
        });
    }
}

/// Reads the whole stream; with `sink`, also writes every byte read to it
/// (the cost of putting that many bytes into a file, without any decoding).
fn drain(
    transport: &Transport,
    addr: SocketAddr,
    expect: usize,
    mut sink: Option<std::fs::File>,
) -> Duration {
    let start = Instant::now();
    let tcp = TcpStream::connect(addr).expect("connect");
    let mut s: Box<dyn ReadWrite> = match transport {
        Transport::Plain => Box::new(tcp),
        Transport::Tls { client, .. } => {
            let name = ServerName::try_from("127.0.0.1").expect("name");
            let conn = rustls::ClientConnection::new(client.clone(), name).expect("client");
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
    };
    s.write_all(b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0;
    while got < expect {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "server closed early");
        if let Some(f) = sink.as_mut() {
            f.write_all(&buf[..n]).expect("write");
        }
        got += n;
    }
    start.elapsed()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Wall time until the file holds every record (its exact size is known,
/// so completion is seen with a `stat`, not by reading 400 MB back), and the
/// daemon's CPU seconds.
fn daemon(
    transport: &Transport,
    addr: SocketAddr,
    events: usize,
    record_bytes: u64,
    watch_extra: &str,
    tables: &str,
) -> (Duration, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, out) = write_config(dir.path(), transport, addr, watch_extra, tables);
    let start = Instant::now();
    // KWATCHD_BENCH_WRAP="perf record -g -o /tmp/perf.data" profiles the
    // daemon (its CPU seconds are then the tool's).
    // KWATCHD_BENCH_BIN runs another build (e.g. an older commit's) against
    // the same streams and baselines.
    let bin = std::env::var("KWATCHD_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_kwatchd").to_owned());
    let child = common::spawn_daemon(&bin, &config);
    let deadline = start + Duration::from_secs(300);
    let size = || std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    while size() < record_bytes && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let took = start.elapsed();
    let cpu = cpu_seconds(child.id());
    common::stop(child);
    let text = std::fs::read(&out).expect("read records");
    assert_eq!(text.len() as u64, record_bytes, "unexpected output size");
    assert_eq!(
        text.iter().filter(|b| **b == b'\n').count(),
        events,
        "the daemon did not write every event"
    );
    (took, cpu)
}

/// The daemon's config in `dir`: one watch of pods at `addr` into the
/// file sink DIR/events.jsonl, with `watch_extra` keys and `tables`
/// before the cluster. Returns the config's path and the sink's.
fn write_config(
    dir: &std::path::Path,
    transport: &Transport,
    addr: SocketAddr,
    watch_extra: &str,
    tables: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = dir.join("events.jsonl");
    let config = dir.join("kwatchd.toml");
    let cluster = match transport {
        Transport::Plain => format!("server = \"http://{addr}\"\n"),
        Transport::Tls { ca_pem, .. } => {
            let ca = dir.join("ca.crt");
            std::fs::write(&ca, ca_pem).unwrap();
            format!(
                "server = \"https://{addr}\"\ncertificate_authority = \"{}\"\n",
                ca.display()
            )
        }
    };
    std::fs::write(
        &config,
        format!(
            "[daemon]\nlog_level = \"warn\"\nstate_dir = \"{}\"\n{tables}[clusters.b]\n{cluster}[[watch]]\nname = \"pods\"\ncluster = \"b\"\napi_version = \"v1\"\nresource = \"pods\"\ninitial_list = \"list\"\nsinks = [\"f\"]\n{watch_extra}\n[sinks.f]\ntype = \"file\"\npath = \"{}\"\n",
            dir.join("state").display(),
            out.display()
        ),
    )
    .unwrap();
    (config, out)
}

/// A pod of about `target` bytes: the 4 KB pod with its env list grown
/// (many small members, like real objects, not one huge string).
fn big_pod(i: usize, rv: usize, target: usize) -> String {
    let small = common::pod(i, rv);
    let entry =
        |k: usize| format!(r#"{{"name":"BIG_{k}","value":"value-{k}-{i}-padding-padding"}}"#);
    let mut extra = String::new();
    let mut k = 0;
    while small.len() + extra.len() < target {
        extra.push_str(&entry(k));
        extra.push(',');
        k += 1;
    }
    // Into the env list, right after its opening bracket.
    small.replacen(r#""env":["#, &format!(r#""env":[{extra}"#), 1)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scenario(name: &str, transport: &Transport, events: usize, rendered: (Vec<u8>, usize, u64)) {
    let (body, payload, record_bytes) = rendered;
    let body = Arc::new(body);
    println!(
        "[{name}] stream: {events} events, {:.1} MB of event lines ({} B per event), {:.1} MB on the wire",
        payload as f64 / 1e6,
        payload / events,
        body.len() as f64 / 1e6
    );
    let wire = WATCH_HEAD.len() + body.len();
    for round in 1..=env_usize("KWATCHD_BENCH_ROUNDS", 3) {
        let d = drain(transport, start_server(transport, &body), wire, None);
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = std::fs::File::create(tmp.path().join("copy")).expect("create");
        let c = drain(transport, start_server(transport, &body), wire, Some(file));
        drop(tmp);
        let (k, cpu) = daemon(
            transport,
            start_server(transport, &body),
            events,
            record_bytes,
            "",
            "",
        );

        let rate = |t: Duration| {
            (
                events as f64 / t.as_secs_f64(),
                payload as f64 / 1e6 / t.as_secs_f64(),
            )
        };
        let (de, dm) = rate(d);
        let (ke, km) = rate(k);
        let (ce, cm) = rate(c);
        println!(
            "[{name}] round {round}: socket drain {:.3} s ({de:.0} ev/s, {dm:.0} MB/s) | drain+copy to file {:.3} s ({ce:.0} ev/s, {cm:.0} MB/s) | kwatchd → file {:.3} s ({ke:.0} ev/s, {km:.0} MB/s, incl. start-up, {cpu:.2} CPU s) | kwatchd/drain = {:.0}%, kwatchd/copy = {:.0}%",
            d.as_secs_f64(),
            c.as_secs_f64(),
            k.as_secs_f64(),
            100.0 * d.as_secs_f64() / k.as_secs_f64(),
            100.0 * c.as_secs_f64() / k.as_secs_f64()
        );
    }
}

/// The filter scenario's watch keys.
const FILTER_KEYS: &str =
    "select = '.metadata.labels.app == \"web\"'\nchanges = '[.spec.containers[].image]'";
/// What each selected record gains: the pods' one image as projection.
const FILTER_FIELDS: &str =
    r#","projection":["registry.example.com/web:1.2.3"],"previous_projection":null"#;

/// Pod `i` of the filter scenario: one in four is another app's.
fn filter_pod(i: usize) -> String {
    let pod = common::pod(i, 2 + i);
    if i % 4 == 3 {
        pod.replacen(r#""app":"web""#, r#""app":"api""#, 1)
    } else {
        pod
    }
}

/// The plain watch and the filtering watch on the same stream, each round.
fn filter_scenario(events: usize) {
    let (body, payload, plain_bytes) = render_with(events, filter_pod);
    let body = Arc::new(body);
    let frame = r#"{"time":"2026-11-22T03:16:53.123Z","watch":"pods","cluster":"b","type":"ADDED","origin":"watch","object":}"#.len() + 1;
    let selected: Vec<usize> = (0..events).filter(|i| i % 4 != 3).collect();
    let filter_bytes: u64 = selected
        .iter()
        .map(|&i| (frame + filter_pod(i).len() + FILTER_FIELDS.len()) as u64)
        .sum();
    println!(
        "[filter] stream: {events} events, {:.1} MB of event lines ({} B per event); {} selected",
        payload as f64 / 1e6,
        payload / events,
        selected.len()
    );
    let t = Transport::Plain;
    for round in 1..=env_usize("KWATCHD_BENCH_ROUNDS", 3) {
        let (p, pcpu) = daemon(&t, start_server(&t, &body), events, plain_bytes, "", "");
        let (f, fcpu) = daemon(
            &t,
            start_server(&t, &body),
            selected.len(),
            filter_bytes,
            FILTER_KEYS,
            "",
        );
        let rate = |d: Duration| events as f64 / d.as_secs_f64();
        println!(
            "[filter] round {round}: plain watch {:.3} s ({:.0} ev/s, {pcpu:.2} CPU s) | select+changes {:.3} s ({:.0} ev/s, {fcpu:.2} CPU s) | filtered/plain throughput = {:.0}%",
            p.as_secs_f64(),
            rate(p),
            f.as_secs_f64(),
            rate(f),
            100.0 * p.as_secs_f64() / f.as_secs_f64()
        );
    }
}

/// The 4 KB pods' stream for a scenario, said on stdout; and the size of
/// the records a file sink makes of it.
fn pod_stream(scenario: &str, events: usize) -> (Arc<Vec<u8>>, u64) {
    let (body, payload, record_bytes) = render_with(events, |i| common::pod(i, 2 + i));
    println!(
        "[{scenario}] stream: {events} events, {:.1} MB of event lines ({} B per event)",
        payload as f64 / 1e6,
        payload / events
    );
    (Arc::new(body), record_bytes)
}

/// The plain watch without and with leader election, each round: what the
/// hold in front of the sink costs a leader per event. The Lease lives on
/// the emulator (in this process: its CPU is not the daemon's); the
/// daemon takes it at start (a GET answered 404, then a CREATE) and renews
/// it every `retry_period` (2 s, client-go's default) while it streams.
fn leader_scenario(events: usize) {
    let (body, record_bytes) = pod_stream("leader", events);
    let t = Transport::Plain;
    for round in 1..=env_usize("KWATCHD_BENCH_ROUNDS", 3) {
        // A fresh Lease per round: the daemon leads from its first write.
        let sim = kwatchd_sim::Sim::start(kwatchd_sim::SimOptions::default()).expect("emulator");
        let tables = format!(
            "[daemon.leader_election]\ncluster = \"lease\"\nnamespace = \"kwatchd\"\nidentity = \"bench\"\n[clusters.lease]\nserver = \"{}\"\n",
            sim.url()
        );
        let run = |tables: &str| {
            daemon(
                &t,
                start_server(&t, &body),
                events,
                record_bytes,
                "",
                tables,
            )
        };
        // Alternate which goes first: the second run of a pair tends to
        // find the machine warmer (caches, clock) on this shared host.
        let ((p, pcpu), (l, lcpu)) = if round % 2 == 1 {
            let p = run("");
            (p, run(&tables))
        } else {
            let l = run(&tables);
            (run(""), l)
        };
        let rate = |d: Duration| events as f64 / d.as_secs_f64();
        println!(
            "[leader] round {round}: plain watch {:.3} s ({:.0} ev/s, {pcpu:.2} CPU s) | leader {:.3} s ({:.0} ev/s, {lcpu:.2} CPU s) | leader/plain CPU = {:.2}, leader/plain throughput = {:.0}%",
            p.as_secs_f64(),
            rate(p),
            l.as_secs_f64(),
            rate(l),
            lcpu / pcpu,
            100.0 * p.as_secs_f64() / l.as_secs_f64()
        );
    }
}

/// A leader and a standby on the same stream, each round: what the
/// standby spends on each event (it holds the record until the leader's
/// advert in the Lease covers it, then drops it) against what the leader
/// spends delivering it. The Lease lives on the emulator; the leader starts
/// first and leads; the standby starts once the leader delivers, reads the
/// whole stream (its hold bounded, so at the pace of the adverts, every
/// `retry_period` = 100 ms here) and is measured when its own metrics count
/// every event. Its CPU includes its Lease polls over that time.
fn standby_scenario(events: usize) {
    let (body, record_bytes) = pod_stream("standby", events);
    let t = Transport::Plain;
    let bin = env!("CARGO_BIN_EXE_kwatchd");
    for round in 1..=env_usize("KWATCHD_BENCH_ROUNDS", 3) {
        let sim = kwatchd_sim::Sim::start(kwatchd_sim::SimOptions::default()).expect("emulator");
        // Every connection gets the stream once: both replicas see it all.
        let addr = start_server(&t, &body);
        let metrics = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let tables = |identity: &str, listen: &str| {
            format!(
                "{listen}[daemon.leader_election]\ncluster = \"lease\"\nnamespace = \"kwatchd\"\nidentity = \"{identity}\"\nretry_period = \"100ms\"\n[clusters.lease]\nserver = \"{}\"\n",
                sim.url()
            )
        };
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (config_a, out_a) = write_config(dir_a.path(), &t, addr, "", &tables("leader", ""));
        let listen = format!("metrics_listen = \"{metrics}\"\n");
        let (config_b, out_b) =
            write_config(dir_b.path(), &t, addr, "", &tables("standby", &listen));
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(300);
        let wait = |done: &dyn Fn() -> bool| {
            while !done() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(2));
            }
        };
        let leader = common::spawn_daemon(bin, &config_a);
        wait(&|| size(&out_a) > 0);
        let standby = common::spawn_daemon(bin, &config_b);
        wait(&|| size(&out_a) >= record_bytes);
        let leader_cpu = cpu_seconds(leader.id());
        let start = Instant::now();
        wait(&|| events_read(metrics) >= events as u64);
        let standby_cpu = cpu_seconds(standby.id());
        let read = events_read(metrics);
        let held = start.elapsed();
        common::stop(standby);
        common::stop(leader);
        assert_eq!(
            size(&out_a),
            record_bytes,
            "the leader delivered every event"
        );
        assert_eq!(size(&out_b), 0, "the standby delivered nothing");
        assert_eq!(read, events as u64, "the standby read every event");
        println!(
            "[standby] round {round}: leader {leader_cpu:.2} CPU s | standby {standby_cpu:.2} CPU s (all read {:.2} s after the leader's last record) | standby/leader CPU = {:.2}",
            held.as_secs_f64(),
            standby_cpu / leader_cpu
        );
    }
}

/// `kwatchd_watch_events_total` summed, from the daemon's metrics
/// endpoint (0 while it does not answer).
fn events_read(metrics: SocketAddr) -> u64 {
    let Ok(mut conn) = TcpStream::connect(metrics) else {
        return 0;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    if conn.write_all(request.as_bytes()).is_err() || conn.read_to_string(&mut text).is_err() {
        return 0;
    }
    text.lines()
        .filter(|l| l.starts_with("kwatchd_watch_events_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events = env_usize("KWATCHD_BENCH_EVENTS", 100_000);
    let scenarios = std::env::var("KWATCHD_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "plain,tls,1mib,filter".to_owned());
    for name in scenarios.split(',') {
        match name.trim() {
            "plain" => scenario(
                "plain",
                &Transport::Plain,
                events,
                render_with(events, |i| common::pod(i, 2 + i)),
            ),
            "tls" => scenario(
                "tls",
                &tls_transport(),
                events,
                render_with(events, |i| common::pod(i, 2 + i)),
            ),
            "1mib" => {
                let big = env_usize("KWATCHD_BENCH_BIG_EVENTS", 400);
                scenario(
                    "1mib",
                    &Transport::Plain,
                    big,
                    render_with(big, |i| big_pod(i, 2 + i, 1 << 20)),
                )
            }
            "filter" => filter_scenario(events),
            "leader" => leader_scenario(events),
            "standby" => standby_scenario(events),
            other => {
                eprintln!("unknown scenario {other:?} (plain, tls, 1mib, filter, leader, standby)")
            }
        }
    }
}
