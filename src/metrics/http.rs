//! The server side of HTTP/1.1 for the metrics endpoint, sans-I/O: bytes
//! in, requests out; responses in, bytes out. The socket loop is in
//! `server.rs`.
//!
//! Only what a scraper, a load balancer probe or `kwatchd status` sends is
//! accepted: `GET`/`HEAD` without a body, a head of at most [`MAX_HEAD`]
//! bytes. Keep-alive follows the HTTP version and `Connection`; pipelined
//! requests are answered in order, one at a time (nothing more is read while
//! a response is unsent, so a client that does not read cannot make us
//! buffer).

use crate::kube::access::Secret;
use std::fmt::Write as _;

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8 << 10;
const MAX_HEADERS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// A parsed request: only what routing and the connection need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The target without its query string.
    pub path: String,
    /// The client may send another request on this connection.
    pub keep_alive: bool,
    /// The token of an `Authorization: Bearer …` header.
    pub bearer: Option<Secret>,
}

/// A request that cannot be served; answered with `status`, then closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub message: &'static str,
}

/// Parses one request head at the start of `buf`. `Ok(None)`: incomplete.
/// On success, also returns how many bytes the head took.
pub fn parse_request(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, Reject> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Reject {
                status: 431,
                message: "request head too large",
            })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject {
                status: 431,
                message: "too many request headers",
            })
        }
        Err(_) => {
            return Err(Reject {
                status: 400,
                message: "malformed request",
            })
        }
    };
    if len > MAX_HEAD {
        return Err(Reject {
            status: 431,
            message: "request head too large",
        });
    }
    // Complete implies method, path and version are set.
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Reject {
            status: 400,
            message: "malformed request",
        });
    };
    let mut keep_alive = version >= 1;
    let mut bearer = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("authorization") {
            bearer = bearer_token(h.value).map(Secret::new);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Reject {
                status: 413,
                message: "request bodies are not accepted",
            });
        } else if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(0) => {}
                Some(_) => {
                    return Err(Reject {
                        status: 413,
                        message: "request bodies are not accepted",
                    })
                }
                None => {
                    return Err(Reject {
                        status: 400,
                        message: "invalid Content-Length",
                    })
                }
            }
        }
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p).to_owned();
    Ok(Some((
        RequestHead {
            method,
            path,
            keep_alive,
            bearer,
        },
        len,
    )))
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, token) = value.split_at_checked(6)?;
    let token = token.strip_prefix(b" ")?.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = value.to_string().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Writes `resp` as HTTP/1.1 bytes; `head_only` for HEAD requests.
pub fn encode_response(resp: &Response, head_only: bool, keep_alive: bool, out: &mut Vec<u8>) {
    let mut head = String::with_capacity(160);
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    if resp.status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    if resp.status == 401 {
        head.push_str("WWW-Authenticate: Bearer realm=\"kwatchd\"\r\n");
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    out.extend_from_slice(head.as_bytes());
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
}

/// One connection's protocol state.
#[derive(Debug, Default)]
pub struct Session {
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    /// No further request is read; close once the output is sent.
    closing: bool,
    peer_closed: bool,
}

impl Session {
    /// How many bytes may be read now: none while a response is unsent or
    /// the connection is closing, else what fits in one head.
    pub fn read_room(&self) -> usize {
        if self.closing || self.peer_closed || !self.output().is_empty() {
            0
        } else {
            MAX_HEAD.saturating_sub(self.input.len())
        }
    }

    /// True when no bytes of a next request are buffered.
    pub fn input_is_empty(&self) -> bool {
        self.input.is_empty()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// The client shut down its side: answer what is complete, then close.
    pub fn on_peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// The next complete request, once the previous answer is sent. A bad
    /// request gets its error response queued here, and the connection
    /// closes after it.
    pub fn next_request(&mut self) -> Option<RequestHead> {
        if self.closing || !self.output().is_empty() {
            return None;
        }
        match parse_request(&self.input) {
            Ok(Some((head, len))) => {
                self.input.drain(..len);
                Some(head)
            }
            Ok(None) => {
                if self.peer_closed {
                    self.closing = true;
                }
                None
            }
            Err(reject) => {
                self.closing = true;
                self.input.clear();
                let resp = Response::text(reject.status, format!("{}\n", reject.message));
                encode_response(&resp, false, false, &mut self.output);
                None
            }
        }
    }

    /// Queues the answer to `req`.
    pub fn respond(&mut self, req: &RequestHead, resp: &Response) {
        let keep_alive = req.keep_alive && !self.peer_closed;
        if !keep_alive {
            self.closing = true;
        }
        encode_response(
            resp,
            req.method == Method::Head,
            keep_alive,
            &mut self.output,
        );
    }

    /// Bytes to send.
    pub fn output(&self) -> &[u8] {
        &self.output[self.written..]
    }

    /// `n` bytes of `output()` were sent.
    pub fn advance(&mut self, n: usize) {
        self.written = (self.written + n).min(self.output.len());
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
        }
    }

    /// Nothing more to send or read: close the connection.
    pub fn is_finished(&self) -> bool {
        self.closing && self.output().is_empty()
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`: what is served here.
    Index,
    Metrics,
    Healthz,
    Readyz,
    Status,
}

impl Endpoint {
    /// Guarded by `[daemon] metrics_token_file` when set. Probes are not:
    /// a kubelet sends no token.
    pub fn needs_token(self) -> bool {
        match self {
            Endpoint::Metrics | Endpoint::Status => true,
            Endpoint::Index | Endpoint::Healthz | Endpoint::Readyz => false,
        }
    }
}

/// Routes a request: the endpoint, or the error response to send.
pub fn route(req: &RequestHead) -> Result<Endpoint, Response> {
    let endpoint = match req.path.as_str() {
        "/" => Endpoint::Index,
        "/metrics" => Endpoint::Metrics,
        "/healthz" => Endpoint::Healthz,
        "/readyz" => Endpoint::Readyz,
        "/status" => Endpoint::Status,
        _ => {
            return Err(Response::text(
                404,
                "not found; try /metrics, /healthz, /readyz or /status (/ lists them)\n",
            ))
        }
    };
    match req.method {
        Method::Get | Method::Head => Ok(endpoint),
        Method::Other => Err(Response::text(405, "only GET and HEAD are allowed\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> RequestHead {
        match parse_request(text.as_bytes()) {
            Ok(Some((head, len))) => {
                assert_eq!(len, text.len());
                head
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn requests_parse_with_keep_alive_by_version_and_connection() {
        let r = parsed("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/metrics");
        assert!(r.keep_alive);
        assert!(!parsed("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!parsed("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(parsed("HEAD / HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n").keep_alive);
        assert_eq!(
            parsed("POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n").method,
            Method::Other
        );
    }

    #[test]
    fn bearer_tokens_are_taken_from_authorization() {
        let bearer = |h: &str| {
            parsed(&format!("GET / HTTP/1.1\r\nAuthorization: {h}\r\n\r\n"))
                .bearer
                .map(|s| s.expose().to_vec())
        };
        assert_eq!(bearer("Bearer abc.def"), Some(b"abc.def".to_vec()));
        assert_eq!(bearer("bearer   tok "), Some(b"tok".to_vec()));
        assert_eq!(bearer("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerx tok"), None);
        let head = parsed("GET / HTTP/1.1\r\nAuthorization: Bearer hidden\r\n\r\n");
        assert!(!format!("{head:?}").contains("hidden"), "never in Debug");
    }

    #[test]
    fn incomplete_bad_oversized_and_bodies_are_told_apart() {
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\nHost"), Ok(None));
        assert_eq!(parse_request(b""), Ok(None));
        let status = |b: &[u8]| parse_request(b).unwrap_err().status;
        assert_eq!(status(b"GET /\x01 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), 413);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            413
        );
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(status(&long), 431);
        let many: String = (0..40).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(
            status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
    }

    #[test]
    fn responses_carry_length_and_connection_and_head_has_no_body() {
        let mut out = Vec::new();
        encode_response(&Response::text(200, "ok\n"), false, true, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nCache-Control: no-store\r\nConnection: keep-alive\r\n\r\nok\n"
        );
        let mut out = Vec::new();
        encode_response(&Response::text(405, "no\n"), true, false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nCache-Control: no-store\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n",
            "HEAD: the length of the body it would have, no body"
        );
    }

    #[test]
    fn routing() {
        let req = |m, p: &str| RequestHead {
            method: m,
            path: p.into(),
            keep_alive: true,
            bearer: None,
        };
        assert_eq!(route(&req(Method::Get, "/metrics")), Ok(Endpoint::Metrics));
        assert_eq!(route(&req(Method::Head, "/healthz")), Ok(Endpoint::Healthz));
        assert_eq!(route(&req(Method::Get, "/status")), Ok(Endpoint::Status));
        assert_eq!(route(&req(Method::Get, "/readyz")), Ok(Endpoint::Readyz));
        assert_eq!(route(&req(Method::Get, "/")), Ok(Endpoint::Index));
        assert_eq!(route(&req(Method::Get, "/x")).unwrap_err().status, 404);
        assert_eq!(
            route(&req(Method::Other, "/metrics")).unwrap_err().status,
            405
        );
    }

    /// Answers every request with its path, like the server does.
    fn serve(s: &mut Session) -> Vec<String> {
        let mut paths = Vec::new();
        while let Some(req) = s.next_request() {
            paths.push(req.path.clone());
            s.respond(&req, &Response::text(200, req.path.clone()));
            let n = s.output().len();
            s.advance(n);
        }
        paths
    }

    #[test]
    fn session_answers_pipelined_requests_in_order_fed_byte_by_byte() {
        let mut s = Session::default();
        let input = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut paths = Vec::new();
        for b in input {
            assert!(s.read_room() > 0);
            s.feed(&[*b]);
            paths.extend(serve(&mut s));
        }
        assert_eq!(paths, ["/a", "/b", "/c"]);
        assert!(s.is_finished(), "closed after Connection: close");
        assert_eq!(s.read_room(), 0);
    }

    #[test]
    fn session_reads_nothing_while_a_response_is_unsent() {
        let mut s = Session::default();
        s.feed(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
        let req = s.next_request().unwrap();
        s.respond(&req, &Response::text(200, "x"));
        assert_eq!(s.read_room(), 0);
        assert_eq!(s.next_request(), None, "one at a time");
        let half = s.output().len() / 2;
        s.advance(half);
        assert_eq!(s.next_request(), None);
        let rest = s.output().len();
        s.advance(rest);
        assert_eq!(s.next_request().unwrap().path, "/b");
    }

    #[test]
    fn session_rejects_then_closes_and_closes_on_eof() {
        let mut s = Session::default();
        s.feed(b"BREW / HTCPCP/1.0\r\n\r\n");
        assert_eq!(s.next_request(), None);
        let text = String::from_utf8(s.output().to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
        assert!(text.contains("Connection: close"));
        assert!(!s.is_finished(), "the error is sent first");
        let n = s.output().len();
        s.advance(n);
        assert!(s.is_finished());

        let mut s = Session::default();
        s.feed(b"GET /a HTTP/1.1\r\n\r\nGET /partial");
        s.on_peer_closed();
        assert_eq!(serve(&mut s), ["/a"]);
        assert!(s.is_finished(), "a partial request after EOF is dropped");
    }
}
