//! Response heads: parsing with `httparse` and the body framing decision.

use super::encoding::Coding;
use std::fmt;
use std::time::Duration;

use super::excerpt::excerpt;

/// Maximum size of a response head (status line, headers, blank line).
pub const MAX_HEAD: usize = 64 * 1024;
/// Maximum number of header fields in a response head.
pub const MAX_HEADERS: usize = 100;

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: n`.
    Length(u64),
    /// No length given: the body ends when the server closes the connection.
    UntilClose,
    /// No body at all (1xx, 204, 304).
    Empty,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    /// Header fields in received order; names as received.
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: BodyFraming,
    /// Whether the connection may be reused after this response.
    pub keep_alive: bool,
}

/// A response head that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Not a valid HTTP/1.x response head (`reason` is httparse's words).
    Malformed { reason: String, excerpt: String },
    /// The head did not end within [`MAX_HEAD`] bytes.
    TooLarge { limit: usize },
    /// More than [`MAX_HEADERS`] header fields.
    TooManyHeaders { limit: usize },
    /// A Transfer-Encoding other than exactly `chunked`.
    UnsupportedTransferEncoding { value: String },
    /// A Content-Length that is not a decimal number that fits in 64 bits.
    InvalidContentLength { value: String },
    /// More than one Content-Length value.
    DuplicateContentLength,
    /// `101 Switching Protocols`: kwatchd never asks for an upgrade.
    UnexpectedUpgrade,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Malformed { reason, excerpt } => write!(
                f,
                "malformed HTTP response head ({reason}) near \"{excerpt}\": is the endpoint an \
                 HTTP/1.1 server (check scheme http/https and port)?"
            ),
            HeadError::TooLarge { limit } => {
                write!(f, "HTTP response head larger than {limit} bytes")
            }
            HeadError::TooManyHeaders { limit } => {
                write!(f, "HTTP response has more than {limit} header fields")
            }
            HeadError::UnsupportedTransferEncoding { value } => write!(
                f,
                "unsupported Transfer-Encoding \"{value}\": only \"chunked\" is supported \
                 (a proxy may be compressing responses)"
            ),
            HeadError::InvalidContentLength { value } => {
                write!(f, "invalid Content-Length \"{value}\"")
            }
            HeadError::DuplicateContentLength => write!(
                f,
                "response has more than one Content-Length value; refusing an ambiguous body length"
            ),
            HeadError::UnexpectedUpgrade => write!(
                f,
                "server answered 101 Switching Protocols although no upgrade was requested"
            ),
        }
    }
}

impl std::error::Error for HeadError {}

/// Trims optional whitespace (SP / HTAB) around a field value or list item.
fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t');
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => v.get(s..=e).unwrap_or_default(),
        _ => &[],
    }
}

/// Items of a comma-separated list field (RFC 9110 §5.6.1), empty items
/// dropped, across every field line with that name.
fn list_items<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

impl ResponseHead {
    /// The value of the first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The body's content coding (`Content-Encoding`).
    pub fn coding(&self) -> Coding {
        Coding::of(list_items(&self.headers, "content-encoding"))
    }

    /// `Retry-After` in the delta-seconds form (`Retry-After: 120`). The
    /// HTTP-date form is ignored (returns `None`): API servers and their
    /// proxies send seconds, and a date would need a trustworthy wall clock.
    pub fn retry_after(&self) -> Option<Duration> {
        let v = trim_ows(self.header("retry-after")?);
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let secs: u64 = std::str::from_utf8(v).ok()?.parse().ok()?;
        Some(Duration::from_secs(secs))
    }

    /// The full `Content-Type` value, parameters included (e.g.
    /// `application/json; charset=utf-8`), if it is valid UTF-8.
    pub fn content_type(&self) -> Option<&str> {
        std::str::from_utf8(trim_ows(self.header("content-type")?)).ok()
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Where a complete head ends in a buffer, found incrementally.
///
/// httparse re-parses from the start on every attempt, so calling it on every
/// small read would be quadratic in the head size. The scanner looks for the
/// blank line (`\n\n` or `\n\r\n`) in the new bytes only, and the head is
/// parsed once it is there.
#[derive(Debug, Clone, Default)]
pub struct HeadScanner {
    scanned: usize,
}

impl HeadScanner {
    /// Returns the length of the head (through its blank line) if `buf`
    /// holds a complete one. `buf` must only grow between calls (or `reset`).
    pub fn find_end(&mut self, buf: &[u8]) -> Option<usize> {
        loop {
            let from = self.scanned.min(buf.len());
            let i = from + memchr::memchr(b'\n', buf.get(from..).unwrap_or_default())?;
            match (buf.get(i + 1), buf.get(i + 2)) {
                (Some(b'\n'), _) => return Some(i + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(i + 3),
                // Undecidable yet: look at this `\n` again next time.
                (None, _) | (Some(b'\r'), None) => {
                    self.scanned = i;
                    return None;
                }
                _ => self.scanned = i + 1,
            }
        }
    }

    /// Starts over (after the head was removed from the buffer).
    pub fn reset(&mut self) {
        self.scanned = 0;
    }
}

/// Parses a complete head (`bytes` ends with its blank line).
pub fn parse_head(bytes: &[u8]) -> Result<ResponseHead, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let malformed = |reason: &str| HeadError::Malformed {
        reason: reason.to_string(),
        excerpt: excerpt(bytes),
    };
    match resp.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(malformed("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooManyHeaders { limit: MAX_HEADERS })
        }
        Err(e) => return Err(malformed(&e.to_string())),
    }
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Err(malformed("missing version or status"));
    };
    // httparse takes any three digits; RFC 9110 §15 status codes are 100-599
    // (anything from 100 up is a class we can reason about). Below 100 would
    // be read as a final answer with a read-until-close body.
    if status < 100 {
        return Err(malformed(&format!(
            "status code {status:03} is not a valid HTTP status"
        )));
    }
    let headers: Vec<(String, Vec<u8>)> = resp
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    let (framing, framing_is_safe) = decide_framing(status, version, &headers)?;
    let connection = |token: &[u8]| {
        list_items(&headers, "connection").any(|item| item.eq_ignore_ascii_case(token))
    };
    let keep_alive = framing_is_safe
        && framing != BodyFraming::UntilClose
        && !connection(b"close")
        && (version >= 1 || connection(b"keep-alive"));
    Ok(ResponseHead {
        status,
        reason: resp.reason.unwrap_or_default().to_string(),
        framing,
        keep_alive,
        headers,
    })
}

/// RFC 9112 §6.3. Returns the framing and whether the connection may be
/// reused as far as framing is concerned (not after TE + CL, nor after TE in
/// HTTP/1.0, which the RFC calls faulty framing).
fn decide_framing(
    status: u16,
    version: u8,
    headers: &[(String, Vec<u8>)],
) -> Result<(BodyFraming, bool), HeadError> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok((BodyFraming::Empty, true));
    }
    let has_te = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
    let has_cl = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if has_te {
        // Only exactly "chunked" is accepted: "gzip, chunked" would need a
        // decompressor, and a final coding other than chunked means
        // read-until-close, which we refuse rather than guess.
        let mut codings = list_items(headers, "transfer-encoding");
        let only_chunked = matches!(
            (codings.next(), codings.next()),
            (Some(c), None) if c.eq_ignore_ascii_case(b"chunked")
        );
        if !only_chunked {
            let value = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(HeadError::UnsupportedTransferEncoding {
                value: excerpt(value.as_bytes()),
            });
        }
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 item 3),
        // but such a message smells of smuggling: do not reuse the connection.
        return Ok((BodyFraming::Chunked, !has_cl && version >= 1));
    }
    if has_cl {
        let mut values = list_items(headers, "content-length");
        let first = values.next();
        if values.next().is_some() {
            return Err(HeadError::DuplicateContentLength);
        }
        let raw = first.unwrap_or_default();
        let invalid = || HeadError::InvalidContentLength {
            value: excerpt(raw),
        };
        if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
            return Err(invalid());
        }
        let n = std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(invalid)?;
        return Ok((BodyFraming::Length(n), true));
    }
    Ok((BodyFraming::UntilClose, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `response_head` fuzz target (fuzz/artifacts-found).
    #[test]
    fn status_codes_below_100_are_malformed() {
        for head in [&b"HTTP/1.1 099\n\n"[..], b"HTTP/1.1 000\r\n\r\n"] {
            match parse_head(head) {
                Err(HeadError::Malformed { reason, .. }) => {
                    assert!(reason.contains("status code"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(parse_head(b"HTTP/1.1 100 Continue\r\n\r\n").is_ok());
    }

    fn parse(s: &str) -> Result<ResponseHead, HeadError> {
        parse_head(s.as_bytes())
    }

    #[test]
    fn chunked_watch_head() {
        let h = parse(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nDate: x\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.reason, "OK");
        assert_eq!(h.framing, BodyFraming::Chunked);
        assert!(h.keep_alive);
        assert_eq!(h.content_type(), Some("application/json"));
        assert_eq!(h.header("TRANSFER-encoding"), Some(&b"chunked"[..]));
        assert!(h.header("missing").is_none());
        assert!(h.is_success());
    }

    #[test]
    fn transfer_encoding_is_case_insensitive_list() {
        let h = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding:  Chunked \r\n\r\n").unwrap();
        assert_eq!(h.framing, BodyFraming::Chunked);
    }

    #[test]
    fn other_transfer_encodings_are_errors() {
        for te in [
            "gzip",
            "gzip, chunked",
            "chunked, gzip",
            "chunked, chunked",
            "",
        ] {
            let err = parse(&format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n"
            ))
            .unwrap_err();
            assert!(
                matches!(err, HeadError::UnsupportedTransferEncoding { .. }),
                "{te}: {err}"
            );
        }
        // Split over two field lines counts as a list too.
        let err = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("gzip, chunked"), "{err}");
    }

    #[test]
    fn te_overrides_cl_but_disables_reuse() {
        let h = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        assert_eq!(h.framing, BodyFraming::Chunked);
        assert!(!h.keep_alive);
    }

    #[test]
    fn content_length() {
        let h = parse("HTTP/1.1 404 Not Found\r\nContent-Length: 42\r\n\r\n").unwrap();
        assert_eq!(h.framing, BodyFraming::Length(42));
        assert!(h.keep_alive);
        assert!(!h.is_success());
        let h = parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(h.framing, BodyFraming::Length(0));
    }

    #[test]
    fn bad_content_lengths() {
        for cl in ["-1", "1.5", "abc", "0x10", "+5", "99999999999999999999", ""] {
            let r = parse(&format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\n"));
            assert!(
                matches!(r, Err(HeadError::InvalidContentLength { .. })),
                "{cl}: {r:?}"
            );
        }
        for head in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
        ] {
            assert_eq!(parse(head).unwrap_err(), HeadError::DuplicateContentLength);
        }
    }

    #[test]
    fn no_body_statuses() {
        for s in ["100 Continue", "204 No Content", "304 Not Modified"] {
            let h = parse(&format!(
                "HTTP/1.1 {s}\r\nContent-Length: 10\r\nTransfer-Encoding: gzip\r\n\r\n"
            ))
            .unwrap();
            assert_eq!(h.framing, BodyFraming::Empty);
            assert!(h.keep_alive);
        }
    }

    #[test]
    fn until_close_and_keep_alive_rules() {
        let h = parse("HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert_eq!(h.framing, BodyFraming::UntilClose);
        assert!(!h.keep_alive);
        let h = parse("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 1\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse("HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 1\r\n\r\n")
            .unwrap();
        assert!(!h.keep_alive);
        let h = parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n")
            .unwrap();
        assert!(h.keep_alive);
        // Chunked in HTTP/1.0 is faulty framing: decode, but do not reuse.
        let h = parse(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.framing, BodyFraming::Chunked);
        assert!(!h.keep_alive);
    }

    #[test]
    fn retry_after() {
        let h =
            parse("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        assert_eq!(h.retry_after(), Some(Duration::from_secs(7)));
        for v in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "-1",
            "1.5",
            "",
            "99999999999999999999999",
        ] {
            let h = parse(&format!(
                "HTTP/1.1 503 x\r\nRetry-After: {v}\r\nContent-Length: 0\r\n\r\n"
            ))
            .unwrap();
            assert_eq!(h.retry_after(), None, "{v}");
        }
    }

    #[test]
    fn malformed_heads() {
        for head in [
            "HTTP/2 200 OK\r\n\r\n",
            "<html><body>Bad Gateway</body></html>\n\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        ] {
            let err = parse(head).unwrap_err();
            assert!(matches!(err, HeadError::Malformed { .. }), "{head}: {err}");
            assert!(err.to_string().contains("malformed"));
        }
        let err = parse("\x16\x03\x01\x00\n\n").unwrap_err();
        assert!(err.to_string().contains("\\x16\\x03"), "{err}");
    }

    #[test]
    fn too_many_headers() {
        let mut s = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        assert_eq!(
            parse(&s).unwrap_err(),
            HeadError::TooManyHeaders { limit: MAX_HEADERS }
        );
    }

    #[test]
    fn scanner_finds_end_at_any_split() {
        let head = b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nBODY";
        for cut in 0..head.len() {
            let mut sc = HeadScanner::default();
            let mut buf = Vec::new();
            let mut found = None;
            for piece in [&head[..cut], &head[cut..]] {
                buf.extend_from_slice(piece);
                if let Some(n) = sc.find_end(&buf) {
                    found = Some(n);
                    break;
                }
            }
            assert_eq!(found, Some(head.len() - 4), "cut {cut}");
        }
        let mut sc = HeadScanner::default();
        assert_eq!(sc.find_end(b"HTTP/1.1 200 OK\n\nx"), Some(17));
        let mut sc = HeadScanner::default();
        let mut buf = Vec::new();
        for &b in b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n" {
            buf.push(b);
            if let Some(n) = sc.find_end(&buf) {
                assert_eq!(n, buf.len());
                return;
            }
        }
        panic!("end not found byte by byte");
    }
}
