//! A real `nats-server` for tests and benchmarks, and a small blocking
//! client to manage streams and read them back. Not used by the daemon.
//! Everything here bounds its own time and returns errors instead of
//! panicking, so a missing or broken server fails the caller's test with a
//! reason.

use super::proto::{self, Message, Parser, ServerOp};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, read, released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One `nats-server` process with JetStream on file storage.
pub struct NatsServer {
    pub port: u16,
    store: PathBuf,
    /// Extra arguments (`-c FILE` for auth or cluster configs).
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl NatsServer {
    /// Starts `nats-server -a 127.0.0.1 -p PORT -js -sd DIR/store ARGS`, logging
    /// to `DIR/nats-PORT.log`, and waits until it accepts connections.
    pub fn start(dir: &Path, args: &[&str]) -> io::Result<NatsServer> {
        Self::start_on(dir, free_port()?, args)
    }

    pub fn start_on(dir: &Path, port: u16, args: &[&str]) -> io::Result<NatsServer> {
        let mut s = NatsServer {
            port,
            store: dir.join(format!("store-{port}")),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
            log: dir.join(format!("nats-{port}.log")),
        };
        s.restart()?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the process on the same port and store.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run nats-server: {e}")))?;
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(io::Error::other(format!(
                    "nats-server exited with {status}: {}",
                    self.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::other("nats-server did not listen within 15 s"))
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no clean shutdown, as a crash or an OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A blocking client for test setup and checks: streams, their messages.
pub struct Admin {
    sock: Box<dyn Stream>,
    parser: Parser,
    next: u64,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: timed out"))
}

impl Admin {
    /// Connects, authenticating as `auth` says.
    pub fn connect(port: u16, auth: &super::Auth) -> io::Result<Admin> {
        Self::connect_with(port, auth, None)
    }

    /// [`connect`](Self::connect), over TLS with `tls` (the server's name
    /// is checked as 127.0.0.1).
    pub fn connect_with(
        port: u16,
        auth: &super::Auth,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> io::Result<Admin> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut a = Admin {
            sock: Box::new(tcp.try_clone()?),
            parser: Parser::new(64 << 20),
            next: 0,
        };
        let info = match a.read_op(Duration::from_secs(5))? {
            ServerOp::Info(info) => info,
            other => return Err(io::Error::other(format!("expected INFO, got {other:?}"))),
        };
        if let Some(config) = tls {
            let name = rustls_pki_types::ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]));
            let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
            a.sock = Box::new(rustls::StreamOwned::new(conn, tcp));
        }
        let mut connect = auth
            .connect_fields(info.nonce.as_deref())
            .map_err(io::Error::other)?;
        for (k, v) in [
            ("verbose", false),
            ("headers", true),
            ("no_responders", true),
        ] {
            connect.insert(k.into(), v.into());
        }
        let connect = serde_json::Value::Object(connect);
        let mut out = Vec::new();
        proto::encode_connect(&mut out, &connect);
        proto::encode_sub(&mut out, "_ADMIN.*", 1);
        out.extend_from_slice(b"PING\r\n");
        a.sock.write_all(&out)?;
        loop {
            match a.read_op(Duration::from_secs(5))? {
                ServerOp::Pong => return Ok(a),
                ServerOp::Err(e) => return Err(io::Error::other(format!("refused: {e}"))),
                _ => {}
            }
        }
    }

    fn read_op(&mut self, wait: Duration) -> io::Result<ServerOp> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 64 * 1024];
        loop {
            if let Some(op) = self.parser.next_op().map_err(io::Error::other)? {
                if op == ServerOp::Ping {
                    self.sock.write_all(b"PONG\r\n")?;
                    continue;
                }
                return Ok(op);
            }
            if Instant::now() > deadline {
                return Err(timed_out("reading from nats-server"));
            }
            match self.sock.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.parser.feed(&buf[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A request and its reply (a 503 status message when no one listens).
    pub fn request(&mut self, subject: &str, payload: &[u8]) -> io::Result<Message> {
        self.next += 1;
        let reply = format!("_ADMIN.{}", self.next);
        let mut out = format!("PUB {subject} {reply} {}\r\n", payload.len()).into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.sock.write_all(&out)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out(subject));
            }
            if let ServerOp::Msg(m) = self.read_op(left)? {
                if m.subject == reply {
                    return Ok(m);
                }
            }
        }
    }

    /// A JetStream API call; an `error` in the answer is an `Err`.
    pub fn api(
        &mut self,
        subject: &str,
        body: &serde_json::Value,
    ) -> io::Result<serde_json::Value> {
        let m = self.request(subject, body.to_string().as_bytes())?;
        if m.status() == Some(503) {
            return Err(io::Error::other(format!("{subject}: no responders")));
        }
        let v: serde_json::Value = serde_json::from_slice(&m.payload).map_err(io::Error::other)?;
        if let Some(e) = v.get("error") {
            return Err(io::Error::other(format!("{subject}: {e}")));
        }
        Ok(v)
    }

    /// Creates a file-backed stream capturing `subjects`.
    pub fn create_stream(
        &mut self,
        name: &str,
        subjects: &[&str],
        replicas: u32,
    ) -> io::Result<()> {
        let body = serde_json::json!({
            "name": name, "subjects": subjects, "storage": "file",
            "num_replicas": replicas, "duplicate_window": 120_000_000_000u64,
        });
        // A new cluster may still be electing its meta leader.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.api(&format!("$JS.API.STREAM.CREATE.{name}"), &body) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    log::debug!("stream create: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Messages in the stream.
    pub fn stream_messages(&mut self, name: &str) -> io::Result<u64> {
        let v = self.api(
            &format!("$JS.API.STREAM.INFO.{name}"),
            &serde_json::json!({}),
        )?;
        Ok(v["state"]["messages"].as_u64().unwrap_or(0))
    }

    /// Every message of the stream, in order: (subject, headers, data).
    pub fn read_stream(&mut self, name: &str) -> io::Result<Vec<StoredMessage>> {
        use base64::Engine;
        let info = self.api(
            &format!("$JS.API.STREAM.INFO.{name}"),
            &serde_json::json!({}),
        )?;
        let first = info["state"]["first_seq"].as_u64().unwrap_or(1);
        let last = info["state"]["last_seq"].as_u64().unwrap_or(0);
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = Vec::new();
        for seq in first..=last {
            let v = self.api(
                &format!("$JS.API.STREAM.MSG.GET.{name}"),
                &serde_json::json!({ "seq": seq }),
            )?;
            let m = &v["message"];
            let decode = |k: &str| {
                b64.decode(m[k].as_str().unwrap_or_default())
                    .map_err(io::Error::other)
            };
            out.push(StoredMessage {
                seq,
                subject: m["subject"].as_str().unwrap_or_default().to_owned(),
                headers: String::from_utf8_lossy(&decode("hdrs")?).into_owned(),
                data: decode("data")?,
            });
        }
        Ok(out)
    }
}

/// One message read back from a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub seq: u64,
    pub subject: String,
    /// The raw header block.
    pub headers: String,
    pub data: Vec<u8>,
}

impl StoredMessage {
    pub fn header(&self, key: &str) -> Option<&str> {
        proto::header_value(self.headers.as_bytes(), key)
    }
}

/// An operator → account → user JWT chain, as `nsc` would make it, for a
/// server in operator mode with a memory resolver.
pub struct Jwts {
    /// The server's config text (operator, resolver, preloaded account).
    pub server_config: String,
    /// The user's `.creds` file text.
    pub creds: String,
}

impl Jwts {
    /// `seeds`: 32 bytes each for operator, account, user and the system
    /// account (JetStream needs one in operator mode).
    pub fn generate(seeds: [[u8; 32]; 4]) -> Result<Jwts, super::nkey::NkeyError> {
        use super::nkey::{encode_seed, KeyPair, PREFIX_ACCOUNT, PREFIX_OPERATOR, PREFIX_USER};
        let key = |prefix, seed: &[u8; 32]| KeyPair::from_seed(&encode_seed(prefix, seed));
        let operator = key(PREFIX_OPERATOR, &seeds[0])?;
        let account = key(PREFIX_ACCOUNT, &seeds[1])?;
        let user_seed = encode_seed(PREFIX_USER, &seeds[2]);
        let user = KeyPair::from_seed(&user_seed)?;
        let system = key(PREFIX_ACCOUNT, &seeds[3])?;
        let unlimited = serde_json::json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
        });
        let op_jwt = jwt(
            &operator,
            &operator,
            "op",
            serde_json::json!({"type": "operator", "version": 2}),
        );
        let acc_jwt = jwt(
            &operator,
            &account,
            "acc",
            serde_json::json!({
                "limits": unlimited,
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account", "version": 2,
            }),
        );
        let sys_jwt = jwt(
            &operator,
            &system,
            "SYS",
            serde_json::json!({"type": "account", "version": 2}),
        );
        let user_jwt = jwt(
            &account,
            &user,
            "kwatchd",
            serde_json::json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2,
            }),
        );
        Ok(Jwts {
            server_config: format!(
                "operator: \"{op_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{acc_jwt}\"\n  {sys}: \"{sys_jwt}\"\n}}\n",
                account.public_key(),
                sys = system.public_key(),
            ),
            creds: format!(
                "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
                 -----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n"
            ),
        })
    }
}

/// A JWT signed by `issuer` about `subject` (nats-io/jwt v2 layout).
fn jwt(
    issuer: &super::nkey::KeyPair,
    subject: &super::nkey::KeyPair,
    name: &str,
    nats: serde_json::Value,
) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = serde_json::json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = serde_json::json!({
        "jti": "", "iat": iat, "iss": issuer.public_key(), "name": name,
        "sub": subject.public_key(), "nats": nats,
    });
    // jti: base32 of the SHA-256 of the claims without it.
    let digest = ring::digest::digest(&ring::digest::SHA256, claims.to_string().as_bytes());
    claims["jti"] = super::nkey::base32_encode(digest.as_ref()).into();
    let signing = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let sig = b64.encode(issuer.sign(signing.as_bytes()));
    format!("{signing}.{sig}")
}
