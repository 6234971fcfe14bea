//! The NATS client protocol, sans-I/O: bytes from the server in, operations
//! out ([`Parser`]); operations to the server encoded into a buffer. It
//! knows nothing about sockets, so every edge case is a unit test and the
//! parser is a fuzz target.
//!
//! Wire format (docs.nats.io "Client Protocol"): text control lines ending
//! `\r\n`, operation names case-insensitive; `MSG`/`HMSG` are followed by a
//! payload of the announced size and `\r\n`.

use serde::Deserialize;
use std::fmt;
use std::io::Write as _;

/// nats-server's own control line limit (`MAX_CONTROL_LINE_SIZE`).
pub const MAX_CONTROL_LINE: usize = 4096;

/// What the server sent first, and again when the cluster changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ServerInfo {
    #[serde(default)]
    pub server_id: String,
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub version: String,
    /// Largest message (headers + payload) the server accepts.
    #[serde(default)]
    pub max_payload: u64,
    #[serde(default)]
    pub headers: bool,
    #[serde(default)]
    pub tls_required: bool,
    #[serde(default)]
    pub tls_available: bool,
    #[serde(default)]
    pub auth_required: bool,
    #[serde(default)]
    pub jetstream: bool,
    /// Peers of the cluster, `host:port`, for reconnects.
    #[serde(default)]
    pub connect_urls: Vec<String>,
    /// To be signed with an nkey for nkey and JWT authentication.
    #[serde(default)]
    pub nonce: Option<String>,
}

/// One operation from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    Info(Box<ServerInfo>),
    Msg(Message),
    Ping,
    Pong,
    Ok,
    /// `-ERR 'text'`, quotes removed.
    Err(String),
}

/// A message delivered on a subscription (`MSG` or `HMSG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub sid: u64,
    pub reply: Option<String>,
    /// The header block (`NATS/1.0…\r\n\r\n`) of an `HMSG`.
    pub headers: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The status code of the header block's first line (`NATS/1.0 503`).
    pub fn status(&self) -> Option<u16> {
        let headers = self.headers.as_deref()?;
        let line = headers.split(|&b| b == b'\r').next()?;
        let rest = line.strip_prefix(b"NATS/1.0")?;
        let code = rest.trim_ascii_start().split(|&b| b == b' ').next()?;
        std::str::from_utf8(code).ok()?.parse().ok()
    }
}

/// The server broke the protocol; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    ControlLineTooLong,
    UnknownOp(String),
    BadArgs {
        op: &'static str,
        line: String,
    },
    BadInfo(String),
    PayloadTooLarge {
        size: u64,
        limit: usize,
    },
    /// The bytes after a payload were not `\r\n`.
    MissingPayloadEnd,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ControlLineTooLong => {
                write!(f, "control line longer than {MAX_CONTROL_LINE} bytes")
            }
            Self::UnknownOp(op) => write!(f, "unknown operation {op:?}"),
            Self::BadArgs { op, line } => write!(f, "malformed {op}: {line:?}"),
            Self::BadInfo(e) => write!(f, "malformed INFO: {e}"),
            Self::PayloadTooLarge { size, limit } => {
                write!(f, "message of {size} bytes, over the {limit}-byte limit")
            }
            Self::MissingPayloadEnd => write!(f, "message payload not followed by CRLF"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// A `MSG`/`HMSG` whose control line is read, waiting for its payload.
#[derive(Debug)]
struct PendingMsg {
    subject: String,
    sid: u64,
    reply: Option<String>,
    header_len: usize,
    total_len: usize,
}

/// Splits the server's byte stream into [`ServerOp`]s. Feed bytes as they
/// come, then call [`Parser::next_op`] until it returns `Ok(None)`. An error is
/// sticky: the stream is out of step and cannot be resynchronised.
#[derive(Debug)]
pub struct Parser {
    buf: Vec<u8>,
    /// Bytes of `buf` already parsed.
    pos: usize,
    pending: Option<PendingMsg>,
    max_payload: usize,
    error: Option<ProtoError>,
}

impl Parser {
    /// `max_payload`: the largest message accepted (replies to kwatchd are
    /// small; this bounds what a broken or hostile server can make us hold).
    pub fn new(max_payload: usize) -> Self {
        Parser {
            buf: Vec::new(),
            pos: 0,
            pending: None,
            max_payload,
            error: None,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed and not yet parsed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete operation, `Ok(None)` when more bytes are needed.
    pub fn next_op(&mut self) -> Result<Option<ServerOp>, ProtoError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let r = self.step();
        if let Err(e) = &r {
            self.error = Some(e.clone());
        }
        r
    }

    fn step(&mut self) -> Result<Option<ServerOp>, ProtoError> {
        if let Some(p) = &self.pending {
            let need = p.total_len + 2;
            let avail = self.buf.get(self.pos..).unwrap_or_default();
            if avail.len() < need {
                return Ok(None);
            }
            if avail.get(p.total_len..need) != Some(b"\r\n") {
                return Err(ProtoError::MissingPayloadEnd);
            }
            let body = avail.get(..p.total_len).unwrap_or_default();
            let (headers, payload) = if p.header_len > 0 {
                let (h, b) = body.split_at(p.header_len.min(body.len()));
                (Some(h.to_vec()), b.to_vec())
            } else {
                (None, body.to_vec())
            };
            self.pos += need;
            let Some(p) = self.pending.take() else {
                return Ok(None);
            };
            return Ok(Some(ServerOp::Msg(Message {
                subject: p.subject,
                sid: p.sid,
                reply: p.reply,
                headers,
                payload,
            })));
        }
        // Blank lines carry nothing; what follows them may (a loop, not
        // recursion: a peer may send any number of them).
        let line = loop {
            let avail = self.buf.get(self.pos..).unwrap_or_default();
            let Some(nl) = memchr::memchr(b'\n', avail) else {
                if avail.len() > MAX_CONTROL_LINE {
                    return Err(ProtoError::ControlLineTooLong);
                }
                return Ok(None);
            };
            if nl > MAX_CONTROL_LINE {
                return Err(ProtoError::ControlLineTooLong);
            }
            let raw = avail.get(..nl).unwrap_or_default();
            self.pos += nl + 1;
            if !raw.iter().all(u8::is_ascii_whitespace) {
                break String::from_utf8_lossy(raw).trim().to_owned();
            }
        };
        self.control(&line)
    }

    fn control(&mut self, line: &str) -> Result<Option<ServerOp>, ProtoError> {
        let (op, args) = match line.find([' ', '\t']) {
            Some(i) => (&line[..i], line[i..].trim()),
            None => (line, ""),
        };
        let is = |name: &str| op.eq_ignore_ascii_case(name);
        if is("MSG") {
            self.msg_line("MSG", args, false)
        } else if is("HMSG") {
            self.msg_line("HMSG", args, true)
        } else if is("PING") {
            Ok(Some(ServerOp::Ping))
        } else if is("PONG") {
            Ok(Some(ServerOp::Pong))
        } else if is("+OK") {
            Ok(Some(ServerOp::Ok))
        } else if is("-ERR") {
            let text = args.trim_matches('\'');
            Ok(Some(ServerOp::Err(text.to_owned())))
        } else if is("INFO") {
            serde_json::from_str::<ServerInfo>(args)
                .map(|i| Some(ServerOp::Info(Box::new(i))))
                .map_err(|e| ProtoError::BadInfo(e.to_string()))
        } else {
            Err(ProtoError::UnknownOp(op.chars().take(32).collect()))
        }
    }

    fn msg_line(
        &mut self,
        op: &'static str,
        args: &str,
        with_headers: bool,
    ) -> Result<Option<ServerOp>, ProtoError> {
        let bad = || ProtoError::BadArgs {
            op,
            line: args.chars().take(200).collect(),
        };
        let parts: Vec<&str> = args.split_ascii_whitespace().collect();
        let sizes = if with_headers { 2 } else { 1 };
        let (subject, sid, reply, nums) = match parts.as_slice() {
            [s, sid, rest @ ..] if rest.len() == sizes => (*s, *sid, None, rest),
            [s, sid, reply, rest @ ..] if rest.len() == sizes => (*s, *sid, Some(*reply), rest),
            _ => return Err(bad()),
        };
        let sid: u64 = sid.parse().map_err(|_| bad())?;
        let nums: Vec<u64> = nums
            .iter()
            .map(|n| n.parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let (header_len, total) = match nums.as_slice() {
            [h, t] if h <= t => (*h, *t),
            [t] => (0, *t),
            _ => return Err(bad()),
        };
        if total > self.max_payload as u64 {
            return Err(ProtoError::PayloadTooLarge {
                size: total,
                limit: self.max_payload,
            });
        }
        self.pending = Some(PendingMsg {
            subject: subject.to_owned(),
            sid,
            reply: reply.map(str::to_owned),
            header_len: header_len as usize,
            total_len: total as usize,
        });
        self.step()
    }
}

// ---------------------------------------------------------------- encoding

/// `CONNECT {json}\r\n`. A PING after it tells whether the server accepted
/// it: with `verbose: false` there is no `+OK`, only the PONG or `-ERR`.
pub fn encode_connect(out: &mut Vec<u8>, connect: &serde_json::Value) {
    out.extend_from_slice(b"CONNECT ");
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, connect);
    out.extend_from_slice(b"\r\n");
}

pub fn encode_sub(out: &mut Vec<u8>, subject: &str, sid: u64) {
    out.extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes());
}

/// `HPUB subject reply hdr_len total_len\r\n headers payload \r\n`.
/// `headers` is a complete block (see [`HeaderBlock`]).
pub fn encode_hpub(out: &mut Vec<u8>, subject: &str, reply: &str, headers: &[u8], payload: &[u8]) {
    let total = headers.len() + payload.len();
    out.reserve(subject.len() + reply.len() + 32 + total);
    out.extend_from_slice(b"HPUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    out.extend_from_slice(reply.as_bytes());
    // Writing into a Vec cannot fail.
    let _ = write!(out, " {} {total}\r\n", headers.len());
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// A NATS header block: `NATS/1.0\r\n` then `Key: Value\r\n` lines and an
/// empty line. Values are cleaned of CR and LF (they would end the header).
#[derive(Debug, Default)]
pub struct HeaderBlock(Vec<u8>);

impl HeaderBlock {
    pub fn new() -> Self {
        Self::reusing(Vec::new())
    }

    /// A block written into `buf` (cleared first), so a caller building one
    /// per message can hand the last one's buffer back.
    pub fn reusing(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(b"NATS/1.0\r\n");
        HeaderBlock(buf)
    }

    pub fn add(&mut self, key: &str, value: &str) {
        self.add_display(key, value);
    }

    /// [`add`](Self::add) with a value formatted in place.
    pub fn add_display(&mut self, key: &str, value: impl fmt::Display) {
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b": ");
        let start = self.0.len();
        // Writing into a Vec cannot fail.
        let _ = write!(self.0, "{value}");
        for b in self.0.get_mut(start..).unwrap_or_default() {
            if *b == b'\r' || *b == b'\n' {
                *b = b' ';
            }
        }
        self.0.extend_from_slice(b"\r\n");
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(b"\r\n");
        self.0
    }
}

/// The value of `key` (case-insensitive) in a header block.
pub fn header_value<'a>(block: &'a [u8], key: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(block).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut Parser) -> Result<Vec<ServerOp>, ProtoError> {
        let mut out = Vec::new();
        while let Some(op) = p.next_op()? {
            out.push(op);
        }
        Ok(out)
    }

    const STREAM: &[u8] = b"INFO {\"server_id\":\"X\",\"max_payload\":1048576,\"headers\":true,\"connect_urls\":[\"10.0.0.2:4222\"],\"nonce\":\"abc\"}\r\n\
PING\r\npong\r\n+OK\r\n-ERR 'Authorization Violation'\r\n\
MSG a.b 1 5\r\nhello\r\n\
MSG a.b 2 _INBOX.x.7 0\r\n\r\n\
HMSG _INBOX.x.9 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n\
HMSG s 3 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";

    #[test]
    fn every_operation_parses_whole_and_byte_by_byte() {
        let mut whole = Parser::new(1 << 20);
        whole.feed(STREAM);
        let ops = all(&mut whole).unwrap();
        assert_eq!(ops.len(), 9, "{ops:?}");
        let ServerOp::Info(info) = &ops[0] else {
            panic!("{:?}", ops[0])
        };
        assert_eq!(info.max_payload, 1 << 20);
        assert_eq!(info.connect_urls, vec!["10.0.0.2:4222"]);
        assert_eq!(info.nonce.as_deref(), Some("abc"));
        assert_eq!(ops[1], ServerOp::Ping);
        assert_eq!(ops[2], ServerOp::Pong);
        assert_eq!(ops[3], ServerOp::Ok);
        assert_eq!(ops[4], ServerOp::Err("Authorization Violation".into()));
        assert_eq!(
            ops[5],
            ServerOp::Msg(Message {
                subject: "a.b".into(),
                sid: 1,
                reply: None,
                headers: None,
                payload: b"hello".to_vec()
            })
        );
        let ServerOp::Msg(m) = &ops[6] else { panic!() };
        assert_eq!(m.reply.as_deref(), Some("_INBOX.x.7"));
        assert!(m.payload.is_empty());
        let ServerOp::Msg(m) = &ops[7] else { panic!() };
        assert_eq!(m.status(), Some(503));
        assert!(m.payload.is_empty());
        let ServerOp::Msg(m) = &ops[8] else { panic!() };
        assert_eq!(m.status(), None);
        assert_eq!(m.payload, b"hi");

        let mut bytewise = Parser::new(1 << 20);
        let mut ops2 = Vec::new();
        for b in STREAM {
            bytewise.feed(&[*b]);
            ops2.extend(all(&mut bytewise).unwrap());
        }
        assert_eq!(ops, ops2);
        assert_eq!(bytewise.buffered(), 0);
    }

    #[test]
    fn protocol_violations_are_sticky_errors() {
        for (input, want) in [
            (&b"HELLO\r\n"[..], "unknown operation"),
            (b"MSG a 1\r\n", "malformed MSG"),
            (b"MSG a x 1\r\n", "malformed MSG"),
            (b"HMSG a 1 5 3\r\n", "malformed HMSG"),
            (b"MSG a 1 3\r\nabcd\r\n", "not followed by CRLF"),
            (b"MSG a 1 99999999\r\n", "over the"),
            (b"INFO {nope\r\n", "malformed INFO"),
        ] {
            let mut p = Parser::new(1 << 20);
            p.feed(input);
            let e = all(&mut p).unwrap_err();
            assert!(e.to_string().contains(want), "{input:?}: {e}");
            p.feed(b"PING\r\n");
            assert_eq!(p.next_op().unwrap_err(), e);
        }
        let mut p = Parser::new(16);
        p.feed(&vec![b'x'; MAX_CONTROL_LINE + 1]);
        assert_eq!(p.next_op(), Err(ProtoError::ControlLineTooLong));
    }

    #[test]
    fn fuzz_regression_an_empty_line_does_not_stop_the_parse() {
        // Found by the nats_proto target: an empty line returned "need more
        // bytes", so the operations after it waited for the next read.
        let mut p = Parser::new(64);
        p.feed(b"\r\n\r\nPING\r\n");
        assert_eq!(all(&mut p).unwrap(), vec![ServerOp::Ping]);
        let mut p = Parser::new(64);
        p.feed(&b"\r\n".repeat(1 << 20));
        p.feed(b"PONG\r\n");
        assert_eq!(all(&mut p).unwrap(), vec![ServerOp::Pong]);
        // The same for a line that starts with a blank: the operation is
        // read after it (here, whatever it is, the parse goes on or fails
        // at once, never waits).
        let mut p = Parser::new(64);
        p.feed(b" PONG\r\n _x 5\r\nPING\r\n");
        assert_eq!(p.next_op(), Ok(Some(ServerOp::Pong)));
        assert!(p.next_op().is_err());
    }

    #[test]
    fn encodings_are_exact() {
        let mut out = Vec::new();
        let mut h = HeaderBlock::new();
        h.add("Nats-Msg-Id", "c/u/1/ADDED");
        h.add("Bad", "a\r\nb");
        let h = h.finish();
        assert_eq!(
            h,
            b"NATS/1.0\r\nNats-Msg-Id: c/u/1/ADDED\r\nBad: a  b\r\n\r\n"
        );
        assert_eq!(header_value(&h, "nats-msg-id"), Some("c/u/1/ADDED"));
        encode_hpub(&mut out, "s.t", "_INBOX.a.1", &h, b"{}");
        let want = format!("HPUB s.t _INBOX.a.1 {} {}\r\n", h.len(), h.len() + 2);
        assert!(out.starts_with(want.as_bytes()));
        assert!(out.ends_with(b"{}\r\n"));
        // What we encode, the parser (as a server would echo it) reads back.
        let echoed = String::from_utf8(out.clone()).unwrap().replacen(
            "HPUB s.t _INBOX.a.1",
            "HMSG s.t 4 _INBOX.a.1",
            1,
        );
        let mut p = Parser::new(1024);
        p.feed(echoed.as_bytes());
        let Some(ServerOp::Msg(m)) = p.next_op().unwrap() else {
            panic!()
        };
        assert_eq!(m.headers.as_deref(), Some(&h[..]));
        assert_eq!(m.payload, b"{}");
        out.clear();
        encode_sub(&mut out, "_INBOX.a.*", 1);
        assert_eq!(out, b"SUB _INBOX.a.* 1\r\n");
    }
}
