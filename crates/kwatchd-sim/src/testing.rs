//! What the unit tests of writes and leases share: one request on its own connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::Sim;

/// Sends one request (`Connection: close`), with a bearer token when given; the status code and the body.
pub(crate) fn request(
    sim: &Sim,
    token: Option<&str>,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(sim.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp[9..12].parse().unwrap();
    let (_, body) = resp.split_once("\r\n\r\n").unwrap();
    (code, body.to_string())
}
