//! A small threaded HTTP/1.1 receiver for webhook tests (plain or TLS).
//!
//! Blocking std::net, one thread per connection, scripted replies, and a
//! record of every request with the id of the connection it came on. Every
//! wait in it is bounded and it stops (threads and all) when dropped.
//!
//! ```ignore
//! let server = TestServer::start(None);
//! server.script([Reply::status(503).header("Retry-After", "7"), Reply::ok()]);
//! // ... POST to server.addr() ...
//! assert_eq!(server.requests()[0].body, b"{}");
//! ```

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(10);
/// Upper bound for anything a test waits on inside the server.
const MAX_WAIT: Duration = Duration::from_secs(20);

/// One scripted answer. Without a script, every request gets `Reply::ok()`.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Never answer; hold the connection until the client closes it.
    pub hang: bool,
    /// Close the connection without answering.
    pub drop: bool,
    /// Send `Connection: close` and close after the response.
    pub close: bool,
    /// Close the kept-alive connection when no next request arrived within this.
    pub idle_close: Option<Duration>,
}

impl Reply {
    pub fn ok() -> Self {
        Reply::status(200)
    }

    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: b"{}".to_vec(),
            delay: Duration::ZERO,
            hang: false,
            drop: false,
            close: false,
            idle_close: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    pub fn hang() -> Self {
        Reply {
            hang: true,
            ..Reply::ok()
        }
    }

    pub fn drop_connection() -> Self {
        Reply {
            drop: true,
            ..Reply::ok()
        }
    }

    pub fn close(mut self) -> Self {
        self.close = true;
        self
    }

    pub fn idle_close(mut self, d: Duration) -> Self {
        self.idle_close = Some(d);
        self
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// 1 for the first accepted connection, then 2, ...
    pub conn: usize,
    pub method: String,
    pub path: String,
    /// Names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    accepted: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
}

pub(crate) struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

impl TestServer {
    /// Listens on 127.0.0.1 (an ephemeral port); TLS when `tls` is given.
    pub fn start(tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let acceptor = thread::spawn(move || {
            let mut workers = Vec::new();
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let id = s.accepted.fetch_add(1, Ordering::SeqCst) + 1;
                        let open = s.open.fetch_add(1, Ordering::SeqCst) + 1;
                        s.max_open.fetch_max(open, Ordering::SeqCst);
                        let s2 = s.clone();
                        let tls = tls.clone();
                        workers.push(thread::spawn(move || {
                            // Errors end the connection; tests look at records.
                            let _ = serve(id, stream, tls, &s2);
                            s2.open.fetch_sub(1, Ordering::SeqCst);
                        }));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(TICK),
                    Err(_) => thread::sleep(TICK),
                }
            }
            for w in workers {
                let _ = w.join();
            }
        });
        TestServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends replies for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared
            .script
            .lock()
            .expect("script lock")
            .extend(replies);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared.received.lock().expect("received lock").clone()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Most connections open at the same time.
    pub fn max_open(&self) -> usize {
        self.shared.max_open.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn serve(
    id: usize,
    tcp: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: &Shared,
) -> io::Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(TICK))?;
    tcp.set_nodelay(true)?;
    let mut stream: Box<dyn Stream> = match tls {
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
            Box::new(rustls::StreamOwned::new(conn, tcp.try_clone()?))
        }
        None => Box::new(tcp.try_clone()?),
    };
    let mut buf: Vec<u8> = Vec::new();
    // After a response: close if no request starts before this instant.
    let mut idle_until: Option<Instant> = None;
    let started = Instant::now();
    loop {
        // Read one request: head, then Content-Length bytes of body.
        let (head_len, req) = loop {
            if shared.stop.load(Ordering::SeqCst) || started.elapsed() > MAX_WAIT {
                return Ok(());
            }
            if let Some(parsed) = parse_request(&buf)? {
                break parsed;
            }
            if buf.is_empty() && idle_until.is_some_and(|t| Instant::now() >= t) {
                let _ = tcp.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if timed_out(&e) => {}
                Err(e) => return Err(e),
            }
        };
        let len: usize = req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_len + len {
            if shared.stop.load(Ordering::SeqCst) || started.elapsed() > MAX_WAIT {
                return Ok(());
            }
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if timed_out(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let body = buf[head_len..head_len + len].to_vec();
        buf.drain(..head_len + len);
        shared
            .received
            .lock()
            .expect("received lock")
            .push(Received {
                conn: id,
                body,
                ..req
            });
        let reply = shared
            .script
            .lock()
            .expect("script lock")
            .pop_front()
            .unwrap_or_else(Reply::ok);
        if reply.drop {
            drop(stream);
            let _ = tcp.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        if reply.hang {
            // Hold the connection until the client gives up (EOF) or stop.
            loop {
                if shared.stop.load(Ordering::SeqCst) || started.elapsed() > MAX_WAIT {
                    return Ok(());
                }
                let mut chunk = [0u8; 1024];
                match stream.read(&mut chunk) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if timed_out(&e) => {}
                    Err(_) => return Ok(()),
                }
            }
        }
        let until = Instant::now() + reply.delay;
        while Instant::now() < until {
            if shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
        }
        let mut out = format!("HTTP/1.1 {} Test\r\n", reply.status);
        for (n, v) in &reply.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
        if reply.close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&reply.body);
        stream.write_all(&bytes)?;
        stream.flush()?;
        if reply.close {
            drop(stream);
            let _ = tcp.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        idle_until = reply.idle_close.map(|d| Instant::now() + d);
    }
}

/// A complete request head in `buf`: its length and the parsed request
/// (body still empty).
fn parse_request(buf: &[u8]) -> io::Result<Option<(usize, Received)>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => Ok(Some((
            n,
            Received {
                conn: 0,
                method: req.method.unwrap_or_default().to_string(),
                path: req.path.unwrap_or_default().to_string(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
                body: Vec::new(),
            },
        ))),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

/// A CA and a server certificate it signs for 127.0.0.1, ::1 and localhost:
/// the server config, and the CA as PEM for the client to trust.
pub(crate) fn tls_material() -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kwatchd-webhook-test-ca");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");

    let key = KeyPair::generate().expect("key");
    let names = vec!["127.0.0.1".into(), "::1".into(), "localhost".into()];
    let params = CertificateParams::new(names).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(cfg), ca.pem())
}
