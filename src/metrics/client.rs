//! `kwatchd status`: asks a running daemon for `/healthz` and `/status` and
//! prints a table. A small blocking client with timeouts: this is a one-shot
//! command, not the daemon's loop.

use crate::config::parse_listen_addr;
use crate::http::{BodyMode, ResponseReader};
use serde_json::Value;
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// Exit codes of `kwatchd status`.
pub const EXIT_HEALTHY: u8 = 0;
pub const EXIT_UNHEALTHY: u8 = 1;
pub const EXIT_UNREACHABLE: u8 = 2;

const MAX_BODY: usize = 64 << 20;

/// Why the daemon could not be asked.
#[derive(Debug)]
pub enum ClientError {
    Io(std::io::Error),
    Http(String),
    Unexpected { path: &'static str, status: u16 },
    Json(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "{e}"),
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

/// The address `kwatchd status` connects to, from `[daemon] metrics_listen`
/// of the config file. Only that key is read (with the daemon's own
/// validation), so a config whose other parts need the daemon's
/// environment (secrets, files only it can read) still works here. A
/// wildcard listen address is reached over loopback.
pub fn listen_addr_from_config(path: &Path) -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: cannot read the configuration file: {e}",
            path.display()
        )
    })?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let value = doc
        .get("daemon")
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
    Ok(addr)
}

/// One `GET path` on a fresh connection: status and body.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>), ClientError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(ClientError::Io)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(ClientError::Io)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kwatchd-status\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(ClientError::Io)?;
    let mut reader = ResponseReader::new(BodyMode::Whole { max_body: MAX_BODY });
    let mut buf = [0u8; 16 << 10];
    while !reader.is_complete() {
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
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ClientError::Io(e)),
        }
    }
    let status = reader
        .head()
        .map(|h| h.status)
        .ok_or_else(|| ClientError::Http("no response head".into()))?;
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

pub fn fetch(addr: SocketAddr, timeout: Duration) -> Result<Report, ClientError> {
    let (code, body) = get(addr, "/healthz", timeout)?;
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
    let (code, body) = get(addr, "/status", timeout)?;
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
            "127.0.0.1:9464".parse().unwrap(),
            "only the key matters; a wildcard is reached over loopback"
        );
        let p = write("[daemon]\nmetrics_listen = \"[::]:9\"\n");
        assert_eq!(
            listen_addr_from_config(&p).unwrap(),
            "[::1]:9".parse().unwrap()
        );
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
}
