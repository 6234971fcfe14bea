//! Minimal blocking HTTP/1.1 server side: request heads via `httparse`, query decoding, response heads, chunks,
//! Status bodies, and the shaped writer that applies `StreamShape::piece_size` and byte-budget faults.

use std::io::{self, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Largest request head accepted; a Kubernetes client's head is a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body read: a Kubernetes object is at most about 1.5 MiB (etcd's request limit).
const MAX_BODY: usize = 3 << 20;
/// A keep-alive connection with no request for this long is closed.
const IDLE: Duration = Duration::from_secs(300);

/// A byte stream the server can serve: plain TCP or rustls over TCP.
pub(crate) trait Stream: Read + Write + Send {
    /// End the session politely (TLS close_notify); plain TCP has nothing to say.
    fn close_notify(&mut self) {}
    /// The client presented a certificate that the emulator's CA signed (the verifier refused any other).
    fn has_client_cert(&self) -> bool {
        false
    }
}

impl Stream for std::net::TcpStream {}

impl Stream for rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream> {
    fn close_notify(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
    }
    fn has_client_cert(&self) -> bool {
        self.conn.peer_certificates().is_some_and(|c| !c.is_empty())
    }
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// Path and query as sent.
    pub(crate) target: String,
    pub(crate) path: String,
    pub(crate) query_raw: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    /// The client wants the connection closed after this response (HTTP/1.0 or `Connection: close`).
    pub(crate) close: bool,
    /// The request body (writes: the object, the patch or `DeleteOptions`).
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Decoded query parameter; the last one wins when repeated.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `true`/`1` as Kubernetes reads boolean query parameters.
    pub(crate) fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }
}

/// Result of reading one request.
pub(crate) enum ReadOutcome {
    Request(Request),
    /// Peer closed (or we are shutting down) between requests.
    Closed,
    /// Malformed request: answer 400 and close.
    Bad(String),
}

/// `application/x-www-form-urlencoded` decoding; invalid escapes are kept as they are.
pub(crate) fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (pct_decode(k), pct_decode(v)),
            None => (pct_decode(p), String::new()),
        })
        .collect()
}

/// Read one request (head and body) from `s`. `buf` keeps bytes of pipelined requests.
/// The socket has a short read timeout so that `shutdown` is noticed.
pub(crate) fn read_request(
    s: &mut dyn Stream,
    buf: &mut Vec<u8>,
    shutdown: &AtomicBool,
) -> ReadOutcome {
    let started = Instant::now();
    let mut tmp = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let mut r = match head_to_request(&req) {
                    Ok(r) => r,
                    Err(e) => return ReadOutcome::Bad(e),
                };
                buf.drain(..n);
                if r.header("transfer-encoding").is_some() {
                    return ReadOutcome::Bad("chunked request bodies are not supported".into());
                }
                let len = match r
                    .header("content-length")
                    .map(|v| v.trim().parse::<usize>())
                {
                    None => 0,
                    Some(Ok(n)) if n <= MAX_BODY => n,
                    Some(_) => return ReadOutcome::Bad("bad or too large Content-Length".into()),
                };
                while buf.len() < len {
                    match read_some(s, &mut tmp, shutdown) {
                        Some(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                        _ => return ReadOutcome::Closed,
                    }
                }
                r.body = buf.drain(..len).collect();
                return ReadOutcome::Request(r);
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return ReadOutcome::Bad("request head too large".into())
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return ReadOutcome::Bad(format!("malformed request: {e}")),
        }
        if started.elapsed() > IDLE {
            return ReadOutcome::Closed;
        }
        match read_some(s, &mut tmp, shutdown) {
            Some(0) if buf.is_empty() => return ReadOutcome::Closed,
            Some(0) => return ReadOutcome::Bad("connection closed mid-request".into()),
            Some(n) => buf.extend_from_slice(&tmp[..n]),
            None => return ReadOutcome::Closed,
        }
    }
}

/// One read; `Some(0)` at EOF, `None` on error or shutdown; timeouts are retried.
fn read_some(s: &mut dyn Stream, tmp: &mut [u8], shutdown: &AtomicBool) -> Option<usize> {
    let started = Instant::now();
    loop {
        if shutdown.load(Ordering::SeqCst) {
            return None;
        }
        match s.read(tmp) {
            Ok(n) => return Some(n),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                if started.elapsed() > IDLE {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

fn head_to_request(req: &httparse::Request) -> Result<Request, String> {
    let method = req.method.ok_or("no method")?.to_string();
    let target = req.path.ok_or("no path")?.to_string();
    let (path, query_raw) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let mut headers = Vec::new();
    for h in req.headers.iter() {
        let v =
            std::str::from_utf8(h.value).map_err(|_| format!("header {} is not UTF-8", h.name))?;
        headers.push((h.name.to_string(), v.trim().to_string()));
    }
    let version_close = req.version == Some(0);
    let mut r = Request {
        method,
        target,
        path,
        query: parse_query(&query_raw),
        query_raw,
        headers,
        close: version_close,
        body: Vec::new(),
    };
    if let Some(c) = r.header("connection") {
        if c.to_ascii_lowercase().contains("close") {
            r.close = true;
        }
    }
    Ok(r)
}

/// Reason phrase for the status line.
pub(crate) fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        415 => "Unsupported Media Type",
        409 => "Conflict",
        410 => "Gone",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// The `Status.reason` Kubernetes uses for a code.
pub(crate) fn status_reason(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        415 => "UnsupportedMediaType",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

/// A `Status` object.
pub(crate) fn status_json(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
    .to_string()
}

/// Status line and headers; `extra` are added as given.
pub(crate) fn head(code: u16, extra: &[(&str, String)], close: bool) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {code} {}\r\n", reason_phrase(code));
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// A complete JSON response with Content-Length.
pub(crate) fn json_response(
    code: u16,
    body: &str,
    extra: &[(&str, String)],
    close: bool,
) -> Vec<u8> {
    typed_response(code, "application/json", body, extra, close)
}

/// A complete response of this Content-Type (aggregated discovery names its document type there, and clients
/// such as client-go read the body as what that type says).
pub(crate) fn typed_response(
    code: u16,
    content_type: &str,
    body: &str,
    extra: &[(&str, String)],
    close: bool,
) -> Vec<u8> {
    let mut headers = vec![
        ("Content-Type", content_type.to_string()),
        ("Cache-Control", "no-cache, private".to_string()),
        ("Content-Length", body.len().to_string()),
    ];
    headers.extend(extra.iter().cloned());
    let mut out = head(code, &headers, close);
    out.extend_from_slice(body.as_bytes());
    out
}

/// One chunk of the chunked transfer coding.
pub(crate) fn chunk(data: &[u8], extensions: bool) -> Vec<u8> {
    let ext = if extensions { ";ext=1;name=\"v\"" } else { "" };
    let mut out = format!("{:x}{ext}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The terminating 0-chunk (no trailers).
pub(crate) fn last_chunk(extensions: bool) -> &'static [u8] {
    if extensions {
        b"0;ext=1\r\n\r\n"
    } else {
        b"0\r\n\r\n"
    }
}

/// Writes a response: in pieces of `piece` bytes when shaped, each flushed; stops with an error once a
/// `CutAfterBytes` budget is spent (the caller then closes the connection).
pub(crate) struct Out<'a> {
    pub(crate) w: &'a mut dyn Stream,
    pub(crate) piece: Option<usize>,
    pub(crate) budget: Option<usize>,
}

impl Out<'_> {
    pub(crate) fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let mut data = data;
        let mut cut = false;
        if let Some(b) = self.budget.as_mut() {
            if data.len() >= *b {
                data = &data[..*b];
                cut = true;
            }
            *b -= data.len();
        }
        match self.piece {
            Some(p) => {
                for piece in data.chunks(p.max(1)) {
                    self.w.write_all(piece)?;
                    self.w.flush()?;
                }
            }
            None => {
                self.w.write_all(data)?;
                self.w.flush()?;
            }
        }
        if cut {
            return Err(io::Error::new(
                ErrorKind::ConnectionAborted,
                "fault: response cut",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(pct_decode("a%3Db%2Cc"), "a=b,c");
        assert_eq!(pct_decode("a+b"), "a b");
        assert_eq!(pct_decode("100%"), "100%");
        assert_eq!(pct_decode("%zz%4"), "%zz%4");
        let q = parse_query("watch=1&labelSelector=app%3Dweb&x&watch=true");
        assert_eq!(q.len(), 4);
        assert_eq!(q[1], ("labelSelector".into(), "app=web".into()));
    }

    #[test]
    fn chunks() {
        assert_eq!(chunk(b"hello", false), b"5\r\nhello\r\n");
        assert!(chunk(b"hi", true).starts_with(b"2;ext=1"));
        assert_eq!(last_chunk(false), b"0\r\n\r\n");
    }
}
