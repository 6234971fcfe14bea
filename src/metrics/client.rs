//! `kwatchd status`: asks a running daemon for `/healthz` and `/status` and
//! prints a table. A small blocking client: this is a one-shot command, not
//! the daemon's loop. The time it is given is one deadline for everything
//! (connecting, sending, and receiving both answers), so an address that
//! answers a byte at a time cannot hold it: per-read timeouts alone would
//! never fire.

use crate::config::{parse_listen_addr, Secret};
use crate::http::{BodyMode, ResponseReader};
use serde_json::Value;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Exit codes of `kwatchd status`.
pub const EXIT_HEALTHY: u8 = 0;
pub const EXIT_UNHEALTHY: u8 = 1;
pub const EXIT_UNREACHABLE: u8 = 2;

const MAX_BODY: usize = 64 << 20;

/// Where `kwatchd status` asks, and the bearer token it sends (that of
/// `[daemon] metrics_token_file`, when the config has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub token: Option<Secret>,
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target { addr, token: None }
    }
}

impl From<&Target> for Target {
    fn from(target: &Target) -> Target {
        target.clone()
    }
}

/// The address, as `IP:PORT`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)
    }
}

/// Why the daemon could not be asked.
#[derive(Debug)]
pub enum ClientError {
    Io(std::io::Error),
    /// The whole exchange did not finish within `timeout`.
    Deadline {
        timeout: Duration,
        path: &'static str,
    },
    Http(String),
    Unexpected {
        path: &'static str,
        status: u16,
    },
    /// 401: a token is required, and none or the wrong one was sent.
    Unauthorized {
        path: &'static str,
        sent: bool,
    },
    Json(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::Deadline { timeout, path } => write!(
                f,
                "no complete answer to GET {path} within the {} deadline (connecting, sending and receiving together); the daemon is overloaded or this is not a kwatchd metrics address",
                humantime::format_duration(*timeout)
            ),
            ClientError::Unauthorized { path, sent: false } => write!(
                f,
                "{path} answered 401: the daemon requires the bearer token of [daemon] metrics_token_file; pass --config with the daemon's configuration so that it is sent"
            ),
            ClientError::Unauthorized { path, sent: true } => write!(
                f,
                "{path} answered 401: the token from [daemon] metrics_token_file was refused (is it the file the daemon reads?)"
            ),
            ClientError::Http(e) => write!(f, "unusable answer: {e}"),
            ClientError::Unexpected { path, status } => {
                write!(
                    f,
                    "{path} answered {status}; is this a kwatchd metrics address?"
                )
            }
            ClientError::Json(e) => write!(f, "/status is not the JSON kwatchd sends: {e}"),
        }
    }
}

/// Where `kwatchd status` connects, from `[daemon] metrics_listen` of the
/// config file, with the token of `metrics_token_file` when set. Only those
/// keys are read (with the daemon's own validation), so a config whose
/// other parts need the daemon's environment (secrets, files only it can
/// read) still works here. A wildcard listen address is reached over
/// loopback.
pub fn listen_addr_from_config(path: &Path) -> Result<Target, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: cannot read the configuration file: {e}",
            path.display()
        )
    })?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let daemon = doc.get("daemon");
    let value = daemon
        .and_then(|d| d.get("metrics_listen"))
        .ok_or_else(|| {
            format!(
                "{}: [daemon] metrics_listen is not set, so the daemon serves no status; set it (e.g. metrics_listen = \"127.0.0.1:9464\") and restart kwatchd, or pass --addr",
                path.display()
            )
        })?;
    let text = value.as_str().ok_or_else(|| {
        format!(
            "{}: daemon.metrics_listen: expected a string like \"127.0.0.1:9464\"",
            path.display()
        )
    })?;
    let mut addr = parse_listen_addr(text)
        .map_err(|e| format!("{}: daemon.metrics_listen: {e}", path.display()))?;
    if addr.port() == 0 {
        return Err(format!(
            "{}: daemon.metrics_listen uses port 0 (any free port); pass --addr with the address the daemon logged (\"metrics: listening on http://…\")",
            path.display()
        ));
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let token = match daemon.and_then(|d| d.get("metrics_token_file")) {
        None => None,
        Some(v) => Some(
            read_token(v)
                .map_err(|e| format!("{}: daemon.metrics_token_file: {e}", path.display()))?,
        ),
    };
    Ok(Target { addr, token })
}

/// The token in the file `value` names (trimmed, as the daemon reads it).
fn read_token(value: &toml::Value) -> Result<Secret, String> {
    let text = value.as_str().ok_or("expected a file path string")?;
    let file = crate::config::resolve_in_process(text)?;
    let token = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("{} is empty", file.display()));
    }
    // It goes into a header line.
    if token.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!(
            "{} holds more than one line or control characters",
            file.display()
        ));
    }
    Ok(Secret::new(token))
}

/// The time left before `deadline`; none left is the deadline error.
fn left(deadline: Instant, timeout: Duration, path: &'static str) -> Result<Duration, ClientError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ClientError::Deadline { timeout, path })
    } else {
        Ok(left)
    }
}

/// One `GET path` on a fresh connection, all of it before `deadline`
/// (`timeout` is how long that was, for the message): status and body.
pub fn get(
    target: &Target,
    path: &'static str,
    deadline: Instant,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), ClientError> {
    let late = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            ClientError::Deadline { timeout, path }
        }
        _ => ClientError::Io(e),
    };
    let addr = target.addr;
    let mut stream =
        TcpStream::connect_timeout(&addr, left(deadline, timeout, path)?).map_err(late)?;
    let auth = match &target.token {
        Some(t) => format!(
            "Authorization: Bearer {}\r\n",
            String::from_utf8_lossy(t.expose())
        ),
        None => String::new(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kwatchd-status\r\n{auth}Connection: close\r\n\r\n"
    );
    let mut unsent = request.as_bytes();
    while !unsent.is_empty() {
        stream
            .set_write_timeout(Some(left(deadline, timeout, path)?))
            .map_err(ClientError::Io)?;
        match stream.write(unsent) {
            Ok(0) => return Err(ClientError::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => unsent = &unsent[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(late(e)),
        }
    }
    let mut reader = ResponseReader::new(BodyMode::Whole { max_body: MAX_BODY });
    let mut buf = [0u8; 16 << 10];
    while !reader.is_complete() {
        stream
            .set_read_timeout(Some(left(deadline, timeout, path)?))
            .map_err(ClientError::Io)?;
        match stream.read(&mut buf) {
            Ok(0) => {
                reader
                    .on_eof()
                    .map_err(|e| ClientError::Http(e.to_string()))?;
                break;
            }
            Ok(n) => reader
                .feed(&buf[..n])
                .map_err(|e| ClientError::Http(e.to_string()))?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(late(e)),
        }
    }
    let status = reader
        .head()
        .map(|h| h.status)
        .ok_or_else(|| ClientError::Http("no response head".into()))?;
    if status == 401 {
        return Err(ClientError::Unauthorized {
            path,
            sent: target.token.is_some(),
        });
    }
    Ok((status, reader.take_body().unwrap_or_default()))
}

/// What `kwatchd status` learnt.
#[derive(Debug, Clone)]
pub struct Report {
    pub healthy: bool,
    /// `/healthz`'s 503 body (the unhealthy watches), if any.
    pub unhealthy: Option<Value>,
    pub status: Value,
}

/// Asks `target` for `/healthz` and `/status`, both within `timeout`.
pub fn fetch(target: impl Into<Target>, timeout: Duration) -> Result<Report, ClientError> {
    let target = target.into();
    let deadline = Instant::now() + timeout;
    let (code, body) = get(&target, "/healthz", deadline, timeout)?;
    let (healthy, unhealthy) = match code {
        200 => (true, None),
        503 => (false, serde_json::from_slice(&body).ok()),
        status => {
            return Err(ClientError::Unexpected {
                path: "/healthz",
                status,
            })
        }
    };
    let (code, body) = get(&target, "/status", deadline, timeout)?;
    if code != 200 {
        return Err(ClientError::Unexpected {
            path: "/status",
            status: code,
        });
    }
    let status: Value =
        serde_json::from_slice(&body).map_err(|e| ClientError::Json(e.to_string()))?;
    if !status["watches"].is_array() {
        return Err(ClientError::Json("no \"watches\" list".into()));
    }
    Ok(Report {
        healthy,
        unhealthy,
        status,
    })
}

/// "4s", "3m12s", "2h5m", "3d4h".
pub fn format_age(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Left-aligned columns separated by two spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            l.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The tables and the health verdict, as printed.
pub fn render(report: &Report) -> String {
    let empty = Vec::new();
    let watches: Vec<Vec<String>> = report.status["watches"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|w| {
            let age = w["last_event"]["age_seconds"]
                .as_f64()
                .map_or_else(|| "never".to_owned(), |a| format!("{} ago", format_age(a)));
            vec![
                cell(&w["name"]),
                cell(&w["cluster"]),
                cell(&w["state"]),
                cell(&w["objects_known"]),
                age,
                cell(&w["reconnects"]),
            ]
        })
        .collect();
    let sinks: Vec<Vec<String>> = report.status["sinks"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|s| {
            [
                "name",
                "type",
                "queue_depth",
                "delivered",
                "retries",
                "given_up",
            ]
            .iter()
            .map(|k| cell(&s[*k]))
            .collect()
        })
        .collect();
    let mut out = table(
        &[
            "WATCH",
            "CLUSTER",
            "STATE",
            "OBJECTS",
            "LAST EVENT",
            "RECONNECTS",
        ],
        &watches,
    );
    out.push('\n');
    out.push_str(&table(
        &["SINK", "TYPE", "QUEUE", "DELIVERED", "RETRIES", "GIVEN UP"],
        &sinks,
    ));
    out.push('\n');
    if let Some(l) = report.status.get("leader").filter(|l| l.is_object()) {
        out.push_str(&format!(
            "leader election: {} is {} ({}, since {}); the Lease names {}\n",
            cell(&l["identity"]),
            cell(&l["role"]),
            if l["delivering"] == Value::Bool(true) {
                "delivering"
            } else {
                "standby: delivering nothing"
            },
            cell(&l["since"]),
            match l["holder"].as_str() {
                Some("") => "no holder".to_owned(),
                Some(h) => h.to_owned(),
                None => "nobody yet".to_owned(),
            },
        ));
    }
    if report.healthy {
        out.push_str("healthy\n");
    } else {
        out.push_str("UNHEALTHY\n");
        let list = report
            .unhealthy
            .as_ref()
            .and_then(|u| u["unhealthy"].as_array())
            .cloned()
            .unwrap_or_default();
        for u in list {
            out.push_str(&format!(
                "  watch {}: {}\n",
                cell(&u["watch"]),
                cell(&u["reason"])
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_are_short() {
        assert_eq!(format_age(0.4), "0s");
        assert_eq!(format_age(59.0), "59s");
        assert_eq!(format_age(192.0), "3m12s");
        assert_eq!(format_age(7500.0), "2h5m");
        assert_eq!(format_age(273_600.0), "3d4h");
    }

    #[test]
    fn tables_align_and_say_the_verdict() {
        let report = Report {
            healthy: false,
            unhealthy: Some(
                json!({"unhealthy":[{"watch":"deploys","reason":"6 failed attempts in a row (limit 5); last: refused"}]}),
            ),
            status: json!({
                "watches": [
                    {"name":"pods","cluster":"prod","state":"streaming","objects_known":12,"last_event":{"age_seconds":3.2},"reconnects":1},
                    {"name":"deploys","cluster":"prod","state":"backing off","objects_known":0,"last_event":null,"reconnects":6}
                ],
                "sinks": [{"name":"out","type":"file","queue_depth":0,"delivered":40,"retries":0,"given_up":0}]
            }),
        };
        assert_eq!(
            render(&report),
            "WATCH    CLUSTER  STATE        OBJECTS  LAST EVENT  RECONNECTS\n\
             pods     prod     streaming    12       3s ago      1\n\
             deploys  prod     backing off  0        never       6\n\
             \n\
             SINK  TYPE  QUEUE  DELIVERED  RETRIES  GIVEN UP\n\
             out   file  0      40         0        0\n\
             \n\
             UNHEALTHY\n  watch deploys: 6 failed attempts in a row (limit 5); last: refused\n"
        );
    }

    #[test]
    fn the_address_comes_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let p = dir.path().join("c.toml");
            std::fs::write(&p, text).unwrap();
            p
        };
        let p = write("[daemon]\nmetrics_listen = \"0.0.0.0:9464\"\n[[watch]]\nname = 1\n");
        assert_eq!(
            listen_addr_from_config(&p).unwrap(),
            Target {
                addr: "127.0.0.1:9464".parse().unwrap(),
                token: None
            },
            "only the key matters; a wildcard is reached over loopback"
        );
        let p = write("[daemon]\nmetrics_listen = \"[::]:9\"\n");
        assert_eq!(
            listen_addr_from_config(&p).unwrap().addr,
            "[::1]:9".parse().unwrap()
        );
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let p = write(&format!(
            "[daemon]\nmetrics_listen = \"127.0.0.1:9\"\nmetrics_token_file = {:?}\n",
            token.display().to_string()
        ));
        assert_eq!(
            listen_addr_from_config(&p).unwrap().token,
            Some(Secret::new("s3cret"))
        );
        std::fs::write(&token, " \n").unwrap();
        assert!(listen_addr_from_config(&p)
            .unwrap_err()
            .contains("daemon.metrics_token_file: "));
        std::fs::write(&token, "a\r\nX-Injected: 1\n").unwrap();
        assert!(listen_addr_from_config(&p)
            .unwrap_err()
            .contains("control characters"));
        let err = |text: &str| listen_addr_from_config(&write(text)).unwrap_err();
        assert!(err("[daemon]\n").contains("metrics_listen is not set"));
        assert!(err("").contains("metrics_listen is not set"));
        assert!(
            err("[daemon]\nmetrics_listen = \"host:1\"\n").contains("host names are not accepted")
        );
        assert!(err("[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n").contains("port 0"));
        assert!(err("[daemon\n").contains("c.toml"));
        assert!(listen_addr_from_config(&dir.path().join("missing.toml"))
            .unwrap_err()
            .contains("cannot read"));
    }

    #[test]
    fn an_unreachable_daemon_is_an_error() {
        // A port that was just free: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            fetch(addr, Duration::from_secs(2)),
            Err(ClientError::Io(_))
        ));
    }

    #[test]
    fn the_timeout_bounds_the_whole_exchange_not_each_read() {
        // Answers one byte of a never-ending head every 100 ms: each read
        // succeeds well within any per-read timeout.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let trickler = std::thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: "
                .iter()
                .chain([b'a'; 200].iter())
            {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let timeout = Duration::from_millis(700);
        let t0 = Instant::now();
        let err = fetch(addr, timeout).unwrap_err();
        let took = t0.elapsed();
        assert!(
            matches!(
                err,
                ClientError::Deadline {
                    path: "/healthz",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("within the 700ms deadline"),
            "{err}"
        );
        // Loose: the point is that it ends, not how precisely.
        assert!(took < Duration::from_secs(10), "{took:?}");
        trickler.join().unwrap();
    }

    #[test]
    fn a_401_says_what_token_is_needed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = [0u8; 1024];
                let n = s.read(&mut req).unwrap();
                seen.push(String::from_utf8_lossy(&req[..n]).into_owned());
                s.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
            }
            seen
        });
        let err = fetch(addr, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("metrics_token_file"), "{err}");
        let with_token = Target {
            addr,
            token: Some(Secret::new("t0k")),
        };
        let err = fetch(&with_token, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("was refused"), "{err}");
        let seen = server.join().unwrap();
        assert!(!seen[0].contains("Authorization"), "{}", seen[0]);
        assert!(
            seen[1].contains("Authorization: Bearer t0k\r\n"),
            "{}",
            seen[1]
        );
    }
}
