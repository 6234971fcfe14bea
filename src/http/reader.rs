//! One HTTP/1.1 response on a connection: head, body framing, and either
//! lines (watch streams) or the whole body (lists, discovery, Status errors).
//!
//! Data path in `Lines` mode with a chunked body: socket buffer →
//! `ChunkedDecoder::decode` → the `LineFramer`'s own buffer (the only copy) →
//! lines handed out as slices of it.

use std::fmt;

use super::chunked::{ChunkedDecoder, ChunkedError};
use super::encoding::{Coding, Gunzip};
use super::framer::{LineFramer, LineTooLong};
use super::response::{parse_head, BodyFraming, HeadError, HeadScanner, ResponseHead, MAX_HEAD};

/// What to do with the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Split into lines of at most `max_line` bytes (watch streams).
    Lines { max_line: usize },
    /// Collect the whole body, refusing more than `max_body` bytes. A
    /// Content-Length above the limit fails as soon as the head arrives; a
    /// chunked or read-until-close body fails in the `feed` that crosses the
    /// limit (memory overshoots by at most that one input slice).
    Whole { max_body: usize },
    /// Hand the decoded bytes to the caller as they arrive
    /// ([`ResponseReader::body_bytes`]); the caller bounds its memory.
    Stream,
}

/// Anything that makes a response unusable. The connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The response head is invalid.
    Head(HeadError),
    /// The chunked framing is broken.
    Chunked(ChunkedError),
    /// A body line exceeds the configured limit.
    LineTooLong { limit: usize },
    /// The body exceeds the configured limit.
    BodyTooLarge { limit: usize },
    /// The peer closed the connection before sending any byte of a response.
    /// On a reused keep-alive connection this is the server's idle timeout
    /// racing the request: retrying on a new connection is safe.
    ClosedBeforeResponse,
    /// The peer closed the connection in the middle of the response.
    /// `at_chunk_boundary`: every chunk received so far was complete (only the
    /// terminating 0-chunk or trailers were missing); a watch treats that as
    /// a normal end of the stream.
    UnexpectedEof {
        during: &'static str,
        at_chunk_boundary: bool,
    },
    /// The peer closed the connection before `Content-Length` bytes arrived.
    BodyTruncated { expected: u64, received: u64 },
    /// `set_mode` was called after lines were already taken from the body.
    ModeChangeTooLate,
    /// The body is in a content coding that was not asked for (named as
    /// the server sent it).
    UnrequestedEncoding { encoding: String },
    /// The gzip body cannot be decoded.
    Gzip { detail: String },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Head(e) => e.fmt(f),
            HttpError::Chunked(e) => e.fmt(f),
            HttpError::LineTooLong { limit } => LineTooLong { limit: *limit }.fmt(f),
            HttpError::BodyTooLarge { limit } => write!(
                f,
                "response body larger than {limit} bytes; raise the body size limit or narrow the \
                 request (label/field selectors, limit=)"
            ),
            HttpError::ClosedBeforeResponse => write!(
                f,
                "connection closed by the server before any response (idle keep-alive timeout or \
                 the server refused the request); retry on a new connection"
            ),
            HttpError::UnexpectedEof {
                during,
                at_chunk_boundary,
            } => {
                write!(f, "connection closed by the server during the {during}")?;
                if *at_chunk_boundary {
                    write!(f, " (at a chunk boundary: no partial chunk was lost)")
                } else {
                    write!(f, " (response truncated)")
                }
            }
            HttpError::BodyTruncated { expected, received } => write!(
                f,
                "connection closed after {received} of {expected} body bytes (Content-Length)"
            ),
            HttpError::UnrequestedEncoding { encoding } => write!(
                f,
                "the server sent a body with Content-Encoding {encoding}, which kwatchd did not ask \
                 for (it asks for gzip on LIST requests only); is a proxy compressing responses?"
            ),
            HttpError::Gzip { detail } => write!(f, "cannot decode the gzip body: {detail}"),
            HttpError::ModeChangeTooLate => write!(
                f,
                "body mode changed after lines were taken from the body (bug: decide on the mode \
                 right after the head arrives)"
            ),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::Head(e) => Some(e),
            HttpError::Chunked(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HeadError> for HttpError {
    fn from(e: HeadError) -> Self {
        HttpError::Head(e)
    }
}

impl From<ChunkedError> for HttpError {
    fn from(e: ChunkedError) -> Self {
        HttpError::Chunked(e)
    }
}

impl From<LineTooLong> for HttpError {
    fn from(e: LineTooLong) -> Self {
        HttpError::LineTooLong { limit: e.limit }
    }
}

/// How the end of the body is found.
#[derive(Debug, Clone)]
enum BodyDecoder {
    Chunked(ChunkedDecoder),
    Length { remaining: u64, expected: u64 },
    UntilClose,
}

/// Where the decoded body goes.
#[derive(Debug, Clone)]
enum BodySink {
    Lines(LineFramer),
    Whole { body: Vec<u8>, max_body: usize },
    Stream(Vec<u8>),
}

impl BodySink {
    fn new(mode: BodyMode) -> Self {
        match mode {
            BodyMode::Lines { max_line } => BodySink::Lines(LineFramer::new(max_line)),
            BodyMode::Whole { max_body } => BodySink::Whole {
                body: Vec::new(),
                max_body,
            },
            BodyMode::Stream => BodySink::Stream(Vec::new()),
        }
    }

    /// The vector decoded body bytes are appended to.
    fn buffer(&mut self) -> &mut Vec<u8> {
        match self {
            BodySink::Lines(f) => f.buffer_mut(),
            BodySink::Whole { body, .. } | BodySink::Stream(body) => body,
        }
    }

    fn check_size(&self) -> Result<(), HttpError> {
        self.check_len(match self {
            BodySink::Whole { body, .. } => body.len(),
            BodySink::Lines(_) | BodySink::Stream(_) => 0,
        })
    }

    /// Whether a body of `len` bytes fits (Whole mode has a limit).
    fn check_len(&self, len: usize) -> Result<(), HttpError> {
        match self {
            BodySink::Whole { max_body, .. } if len > *max_body => {
                Err(HttpError::BodyTooLarge { limit: *max_body })
            }
            _ => Ok(()),
        }
    }
}

/// Progress through the response.
#[derive(Debug, Clone)]
enum Phase {
    /// Collecting head bytes (interim 1xx heads are dropped as they complete).
    Head { buf: Vec<u8>, scanner: HeadScanner },
    /// Receiving the body.
    Body(BodyDecoder),
    /// The body is complete; further input is leftover.
    Done,
}

/// Parser for one response. Feed it everything read from the connection.
#[derive(Debug, Clone)]
pub struct ResponseReader {
    phase: Phase,
    head: Option<ResponseHead>,
    sink: BodySink,
    leftover: Vec<u8>,
    /// First protocol error; every later `feed` returns it again.
    error: Option<HttpError>,
    /// The request said `Accept-Encoding: gzip`.
    accepts_gzip: bool,
    /// Set while a gzip body is being decoded: framing-decoded bytes go
    /// through it (via `compressed`) into the sink.
    gunzip: Option<Box<Gunzip>>,
    compressed: Vec<u8>,
    body_taken: bool,
}

/// Takes the body's bytes out of the transfer framing onto `to`; returns
/// how much of `input` was this body's (the rest is the next response's).
fn decode_framing(phase: &mut Phase, input: &[u8], to: &mut Vec<u8>) -> Result<usize, HttpError> {
    Ok(match phase {
        Phase::Head { .. } => 0, // unreachable: the head is handled first
        Phase::Done => 0,
        Phase::Body(BodyDecoder::Chunked(d)) => {
            let n = d.decode(input, to)?;
            if d.is_done() {
                *phase = Phase::Done;
            }
            n
        }
        Phase::Body(BodyDecoder::Length { remaining, .. }) => {
            let n = usize::try_from(*remaining)
                .unwrap_or(usize::MAX)
                .min(input.len());
            to.extend_from_slice(input.get(..n).unwrap_or_default());
            *remaining -= n as u64;
            if *remaining == 0 {
                *phase = Phase::Done;
            }
            n
        }
        Phase::Body(BodyDecoder::UntilClose) => {
            to.extend_from_slice(input);
            input.len()
        }
    })
}

impl ResponseReader {
    pub fn new(mode: BodyMode) -> Self {
        ResponseReader {
            phase: Phase::Head {
                buf: Vec::new(),
                scanner: HeadScanner::default(),
            },
            head: None,
            sink: BodySink::new(mode),
            leftover: Vec::new(),
            error: None,
            accepts_gzip: false,
            gunzip: None,
            compressed: Vec::new(),
            body_taken: false,
        }
    }

    /// The request asked for `Accept-Encoding: gzip`: a gzip body is
    /// decoded as it arrives (any other coding is refused).
    pub fn accepting_gzip(mut self) -> Self {
        self.accepts_gzip = true;
        self
    }

    /// Consumes all of `input`. Bytes after the end of this response are
    /// kept for [`take_leftover`](Self::take_leftover). After an error the
    /// reader is unusable and returns that error again; complete lines
    /// received before the error can still be pulled.
    pub fn feed(&mut self, input: &[u8]) -> Result<(), HttpError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = self.feed_inner(input);
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<(), HttpError> {
        if let Phase::Head { buf, scanner } = &mut self.phase {
            buf.extend_from_slice(input);
            loop {
                // Empty lines before a status line are ignored (some servers
                // send a stray CRLF after a previous body); dropping them
                // also keeps a stream of CRLFs from filling the buffer.
                let blank = buf
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                if blank > 0 {
                    buf.drain(..blank);
                    scanner.reset();
                }
                let Some(end) = scanner.find_end(buf) else {
                    if buf.len() > MAX_HEAD {
                        return Err(HeadError::TooLarge { limit: MAX_HEAD }.into());
                    }
                    return Ok(());
                };
                if end > MAX_HEAD {
                    return Err(HeadError::TooLarge { limit: MAX_HEAD }.into());
                }
                let head = parse_head(buf.get(..end).unwrap_or_default())?;
                if head.status == 101 {
                    return Err(HeadError::UnexpectedUpgrade.into());
                }
                // Interim responses (100 Continue, 103 Early Hints) are
                // followed by the real one on the same connection.
                let interim = (100..200).contains(&head.status);
                buf.drain(..end.min(buf.len()));
                scanner.reset();
                if !interim {
                    let rest = std::mem::take(buf);
                    self.start_body(head)?;
                    return self.feed_body(&rest);
                }
            }
        }
        self.feed_body(input)
    }

    fn start_body(&mut self, head: ResponseHead) -> Result<(), HttpError> {
        let empty = matches!(head.framing, BodyFraming::Length(0) | BodyFraming::Empty);
        match head.coding() {
            _ if empty => {}
            Coding::Identity => {}
            Coding::Gzip if self.accepts_gzip => self.gunzip = Some(Box::default()),
            Coding::Gzip => return self.refuse(head, "gzip".into()),
            Coding::Other(encoding) => return self.refuse(head, encoding),
        }
        self.phase = match head.framing {
            BodyFraming::Chunked => Phase::Body(BodyDecoder::Chunked(ChunkedDecoder::new())),
            BodyFraming::Length(0) | BodyFraming::Empty => Phase::Done,
            BodyFraming::Length(n) => {
                if let BodySink::Whole { max_body, .. } = self.sink {
                    if n > max_body as u64 {
                        self.head = Some(head);
                        return Err(HttpError::BodyTooLarge { limit: max_body });
                    }
                }
                Phase::Body(BodyDecoder::Length {
                    remaining: n,
                    expected: n,
                })
            }
            BodyFraming::UntilClose => Phase::Body(BodyDecoder::UntilClose),
        };
        self.head = Some(head);
        self.finish_lines_if_done();
        Ok(())
    }

    fn refuse(&mut self, head: ResponseHead, encoding: String) -> Result<(), HttpError> {
        self.head = Some(head);
        Err(HttpError::UnrequestedEncoding { encoding })
    }

    fn feed_body(&mut self, input: &[u8]) -> Result<(), HttpError> {
        if input.is_empty() {
            return Ok(());
        }
        let consumed = match self.gunzip.take() {
            None => decode_framing(&mut self.phase, input, self.sink.buffer())?,
            Some(mut g) => {
                let n = decode_framing(&mut self.phase, input, &mut self.compressed)?;
                let result = self.inflate(&mut g);
                self.gunzip = Some(g);
                result?;
                n
            }
        };
        self.sink.check_size()?;
        self.finish_lines_if_done();
        self.leftover
            .extend_from_slice(input.get(consumed..).unwrap_or_default());
        Ok(())
    }

    /// The gzip bytes taken out of the framing so far, decoded into the
    /// sink (its size limit checked as the output grows).
    fn inflate(&mut self, g: &mut Gunzip) -> Result<(), HttpError> {
        let sink = &mut self.sink;
        let mut out = std::mem::take(sink.buffer());
        let result = g.decode(
            &self.compressed,
            &mut out,
            |o| sink.check_len(o.len()),
            |detail| HttpError::Gzip { detail },
        );
        self.compressed.clear();
        let result = result.and_then(|()| match self.phase {
            Phase::Done => g
                .finish(&mut out)
                .map_err(|detail| HttpError::Gzip { detail }),
            _ => Ok(()),
        });
        *sink.buffer() = out;
        result
    }

    /// Once the body is complete, its unterminated last line is a line too.
    fn finish_lines_if_done(&mut self) {
        if let (Phase::Done, BodySink::Lines(f)) = (&self.phase, &mut self.sink) {
            // Mark only; the line itself is returned by `next_line`.
            f.set_finished();
        }
    }

    /// The final response head, once received (interim 1xx heads are never
    /// shown).
    pub fn head(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    /// The next complete body line (Lines mode), without its line end; empty
    /// lines are skipped. `None` when no complete line is buffered (feed more)
    /// or in Whole mode. The caller may stop pulling at any time and resume
    /// later; lines always come out in order.
    ///
    /// After the peer closed the connection mid-body (an `on_eof` error), the
    /// complete lines still come out, but an unterminated last line does not.
    pub fn next_line(&mut self) -> Option<Result<&[u8], HttpError>> {
        let BodySink::Lines(f) = &mut self.sink else {
            return None;
        };
        match f.next_range()? {
            Ok((s, e)) => f.line_at(s, e).map(Ok),
            Err(e) => {
                let e = HttpError::from(e);
                self.error.get_or_insert(e.clone());
                Some(Err(e))
            }
        }
    }

    /// True when the whole body has been received (final chunk and trailers,
    /// Content-Length reached, or EOF for a read-until-close body).
    pub fn body_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// True when the body has been received and, in Lines mode, every line
    /// has been pulled: the response is finished for the caller.
    pub fn is_complete(&self) -> bool {
        self.body_done()
            && match &self.sink {
                BodySink::Lines(f) => f.buffered() == 0,
                BodySink::Stream(bytes) => bytes.is_empty(),
                BodySink::Whole { .. } => true,
            }
    }

    /// The whole body (Whole mode), once received. Returns it only once.
    pub fn take_body(&mut self) -> Option<Vec<u8>> {
        if !self.body_done() || self.body_taken || self.error.is_some() {
            return None;
        }
        match &mut self.sink {
            BodySink::Whole { body, .. } => {
                self.body_taken = true;
                Some(std::mem::take(body))
            }
            BodySink::Lines(_) | BodySink::Stream(_) => None,
        }
    }

    /// Stream mode: the decoded body bytes not taken yet; the caller
    /// drains what it has consumed. `None` in the other modes.
    pub fn body_bytes(&mut self) -> Option<&mut Vec<u8>> {
        match &mut self.sink {
            BodySink::Stream(bytes) => Some(bytes),
            BodySink::Lines(_) | BodySink::Whole { .. } => None,
        }
    }

    /// Switches the body mode after the head arrived, e.g. to read a non-2xx
    /// watch or list response (a Kubernetes `Status` JSON) whole. Bytes already
    /// received are kept. Fails with `ModeChangeTooLate` if lines were
    /// already pulled, and with `BodyTooLarge` if the new limit is already
    /// exceeded.
    pub fn set_mode(&mut self, mode: BodyMode) -> Result<(), HttpError> {
        let current = std::mem::replace(&mut self.sink, BodySink::new(mode));
        let buffered = match current {
            BodySink::Lines(f) => {
                if !f.untouched() {
                    self.sink = BodySink::Lines(f);
                    return Err(HttpError::ModeChangeTooLate);
                }
                f.into_unconsumed()
            }
            BodySink::Whole { body, .. } | BodySink::Stream(body) => body,
        };
        self.sink = match mode {
            BodyMode::Lines { max_line } => {
                BodySink::Lines(LineFramer::with_buffer(buffered, max_line))
            }
            BodyMode::Whole { max_body } => BodySink::Whole {
                body: buffered,
                max_body,
            },
            BodyMode::Stream => BodySink::Stream(buffered),
        };
        if let (
            BodySink::Whole { max_body, .. },
            Phase::Body(BodyDecoder::Length { expected, .. }),
        ) = (&self.sink, &self.phase)
        {
            if *expected > *max_body as u64 {
                return Err(HttpError::BodyTooLarge { limit: *max_body });
            }
        }
        self.sink.check_size()?;
        self.finish_lines_if_done();
        Ok(())
    }

    /// The peer closed the connection. Completes a read-until-close body;
    /// anything else unfinished is an error saying where the stream broke.
    pub fn on_eof(&mut self) -> Result<(), HttpError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let err = match &self.phase {
            Phase::Done => return Ok(()),
            Phase::Head { buf, .. } if buf.is_empty() && self.head.is_none() => {
                HttpError::ClosedBeforeResponse
            }
            Phase::Head { .. } => HttpError::UnexpectedEof {
                during: "response head",
                at_chunk_boundary: false,
            },
            Phase::Body(BodyDecoder::UntilClose) => {
                self.phase = Phase::Done;
                if let Some(mut g) = self.gunzip.take() {
                    let result = self.inflate(&mut g);
                    self.gunzip = Some(g);
                    if let Err(e) = result {
                        self.error = Some(e.clone());
                        return Err(e);
                    }
                }
                self.finish_lines_if_done();
                return Ok(());
            }
            Phase::Body(BodyDecoder::Chunked(d)) => HttpError::UnexpectedEof {
                during: d.phase(),
                at_chunk_boundary: d.at_chunk_boundary(),
            },
            Phase::Body(BodyDecoder::Length {
                remaining,
                expected,
            }) => HttpError::BodyTruncated {
                expected: *expected,
                received: expected - remaining,
            },
        };
        self.error = Some(err.clone());
        Err(err)
    }

    /// Bytes received after the end of this response (the start of the next
    /// one on a reused connection).
    pub fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.leftover)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                  Transfer-Encoding: chunked\r\n\r\n";

    fn lines_reader() -> ResponseReader {
        ResponseReader::new(BodyMode::Lines { max_line: 1024 })
    }

    fn pull(r: &mut ResponseReader) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(l) = r.next_line() {
            v.push(String::from_utf8(l.unwrap().to_vec()).unwrap());
        }
        v
    }

    fn chunk(data: &[u8]) -> Vec<u8> {
        let mut v = format!("{:x}\r\n", data.len()).into_bytes();
        v.extend_from_slice(data);
        v.extend_from_slice(b"\r\n");
        v
    }

    #[test]
    fn watch_stream_lines() {
        let mut r = lines_reader();
        r.feed(CHUNKED_HEAD).unwrap();
        assert_eq!(r.head().unwrap().framing, BodyFraming::Chunked);
        assert!(r.next_line().is_none());
        // Several lines per chunk, a line split across chunks, CRLF endings.
        r.feed(&chunk(b"{\"a\":1}\n{\"b\":2}\r\n{\"c\"")).unwrap();
        assert_eq!(pull(&mut r), ["{\"a\":1}", "{\"b\":2}"]);
        r.feed(&chunk(b":3}\n")).unwrap();
        assert_eq!(pull(&mut r), ["{\"c\":3}"]);
        assert!(!r.body_done());
        r.feed(b"0\r\n\r\n").unwrap();
        assert!(r.body_done());
        assert!(r.is_complete());
        assert!(r.take_leftover().is_empty());
    }

    #[test]
    fn head_and_body_in_one_feed_with_leftover() {
        let mut input = CHUNKED_HEAD.to_vec();
        input.extend_from_slice(&chunk(b"x\ny"));
        input.extend_from_slice(b"0\r\n\r\nHTTP/1.1 200 OK\r\n");
        let mut r = lines_reader();
        r.feed(&input).unwrap();
        assert!(r.body_done());
        assert!(!r.is_complete());
        assert_eq!(pull(&mut r), ["x", "y"]);
        assert!(r.is_complete());
        assert_eq!(r.take_leftover(), b"HTTP/1.1 200 OK\r\n");
        r.feed(b"more").unwrap();
        assert_eq!(r.take_leftover(), b"more");
    }

    #[test]
    fn backpressure_keeps_order() {
        let mut r = lines_reader();
        r.feed(CHUNKED_HEAD).unwrap();
        r.feed(&chunk(b"1\n2\n")).unwrap();
        assert_eq!(r.next_line().unwrap().unwrap(), b"1");
        r.feed(&chunk(b"3\n4")).unwrap();
        r.feed(&chunk(b"\n5\n")).unwrap();
        assert_eq!(pull(&mut r), ["2", "3", "4", "5"]);
    }

    #[test]
    fn interim_responses_are_skipped() {
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 100 });
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n\
                      HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for b in input.iter() {
            r.feed(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(r.head().unwrap().status, 200);
        assert_eq!(r.take_body().unwrap(), b"hello");
        assert!(r.take_body().is_none());
    }

    #[test]
    fn blank_lines_before_status_line_are_ignored() {
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 100 });
        for piece in [
            &b"\r\n"[..],
            b"\n",
            b"\r",
            b"\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        ] {
            r.feed(piece).unwrap();
        }
        assert_eq!(r.head().unwrap().status, 200);
        assert_eq!(r.take_body().unwrap(), b"x");
        let mut r = lines_reader();
        r.feed(b"\r\n").unwrap();
        assert_eq!(r.on_eof().unwrap_err(), HttpError::ClosedBeforeResponse);
    }

    #[test]
    fn switching_protocols_is_an_error() {
        let mut r = lines_reader();
        let err = r
            .feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n")
            .unwrap_err();
        assert_eq!(err, HttpError::Head(HeadError::UnexpectedUpgrade));
    }

    #[test]
    fn content_length_body() {
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 100 });
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello")
            .unwrap();
        assert!(!r.body_done());
        assert!(r.take_body().is_none());
        r.feed(b" worldEXTRA").unwrap();
        assert!(r.is_complete());
        assert_eq!(r.take_body().unwrap(), b"hello world");
        assert_eq!(r.take_leftover(), b"EXTRA");
        assert!(r.on_eof().is_ok());
    }

    #[test]
    fn content_length_lines_with_unterminated_last_line() {
        let mut r = lines_reader();
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\na\nb\nccc")
            .unwrap();
        assert!(r.body_done());
        assert_eq!(pull(&mut r), ["a", "b", "ccc"]);
        assert!(r.is_complete());
    }

    #[test]
    fn empty_bodies() {
        for head in [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ] {
            let mut r = ResponseReader::new(BodyMode::Whole { max_body: 10 });
            r.feed(head).unwrap();
            assert!(r.is_complete());
            assert_eq!(r.take_body().unwrap(), b"");
        }
    }

    #[test]
    fn until_close_body() {
        let mut r = lines_reader();
        r.feed(b"HTTP/1.0 200 OK\r\n\r\nline1\nline2").unwrap();
        assert!(!r.head().unwrap().keep_alive);
        assert_eq!(pull(&mut r), ["line1"]);
        assert!(!r.body_done());
        r.on_eof().unwrap();
        assert!(r.body_done());
        assert_eq!(pull(&mut r), ["line2"]);
        assert!(r.is_complete());
    }

    #[test]
    fn eof_before_any_byte() {
        let mut r = lines_reader();
        assert_eq!(r.on_eof().unwrap_err(), HttpError::ClosedBeforeResponse);
        assert!(r.on_eof().unwrap_err().to_string().contains("retry"));
    }

    #[test]
    fn eof_in_head() {
        let mut r = lines_reader();
        r.feed(b"HTTP/1.1 200 OK\r\nContent-").unwrap();
        assert_eq!(
            r.on_eof().unwrap_err(),
            HttpError::UnexpectedEof {
                during: "response head",
                at_chunk_boundary: false
            }
        );
    }

    #[test]
    fn eof_at_chunk_boundary_vs_mid_chunk() {
        let mut r = lines_reader();
        r.feed(CHUNKED_HEAD).unwrap();
        r.feed(&chunk(b"a\nb\n")).unwrap();
        let err = r.on_eof().unwrap_err();
        assert_eq!(
            err,
            HttpError::UnexpectedEof {
                during: "chunk size line",
                at_chunk_boundary: true
            }
        );
        assert!(err.to_string().contains("no partial chunk"), "{err}");
        // Complete lines received before the EOF are still delivered.
        assert_eq!(pull(&mut r), ["a", "b"]);

        let mut r = lines_reader();
        r.feed(CHUNKED_HEAD).unwrap();
        r.feed(b"10\r\nabc\n").unwrap();
        let err = r.on_eof().unwrap_err();
        assert_eq!(
            err,
            HttpError::UnexpectedEof {
                during: "chunk data",
                at_chunk_boundary: false
            }
        );
        assert!(err.to_string().contains("truncated"));
        assert_eq!(pull(&mut r), ["abc"]);

        // Last chunk seen, trailers missing: still a boundary.
        let mut r = lines_reader();
        r.feed(CHUNKED_HEAD).unwrap();
        r.feed(b"0\r\n").unwrap();
        assert!(matches!(
            r.on_eof(),
            Err(HttpError::UnexpectedEof {
                at_chunk_boundary: true,
                ..
            })
        ));
    }

    #[test]
    fn eof_mid_content_length() {
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 100 });
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        assert_eq!(
            r.on_eof().unwrap_err(),
            HttpError::BodyTruncated {
                expected: 10,
                received: 3
            }
        );
        assert!(r.take_body().is_none());
    }

    #[test]
    fn body_too_large() {
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 4 });
        let err = r
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            .unwrap_err();
        assert_eq!(err, HttpError::BodyTooLarge { limit: 4 });
        assert!(r.head().is_some());

        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 4 });
        r.feed(CHUNKED_HEAD).unwrap();
        r.feed(&chunk(b"abc")).unwrap();
        assert_eq!(
            r.feed(&chunk(b"de")).unwrap_err(),
            HttpError::BodyTooLarge { limit: 4 }
        );
        // Sticky.
        assert!(r.feed(b"0\r\n\r\n").is_err());
    }

    #[test]
    fn oversized_line_aborts_early_with_bounded_memory() {
        let mut r = ResponseReader::new(BodyMode::Lines { max_line: 1000 });
        r.feed(CHUNKED_HEAD).unwrap();
        r.feed(&chunk(b"ok\n")).unwrap();
        assert_eq!(pull(&mut r), ["ok"]);
        let mut fed = 0;
        let err = loop {
            r.feed(&chunk(&[b'x'; 300])).unwrap();
            fed += 300;
            if let Some(l) = r.next_line() {
                break l.unwrap_err();
            }
            assert!(fed < 10_000);
        };
        assert_eq!(err, HttpError::LineTooLong { limit: 1000 });
        assert!(fed <= 1300, "fed {fed}");
        assert!(r.feed(&chunk(b"\n")).is_err());
    }

    #[test]
    fn garbage_chunk_size_error_is_readable() {
        let mut r = lines_reader();
        r.feed(CHUNKED_HEAD).unwrap();
        let err = r.feed(b"zz\r\n").unwrap_err();
        assert!(matches!(
            err,
            HttpError::Chunked(ChunkedError::InvalidChunkSize { .. })
        ));
        let text = err.to_string();
        assert!(text.contains("zz\\r\\n"), "{text}");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn head_too_large() {
        let mut r = lines_reader();
        r.feed(b"HTTP/1.1 200 OK\r\n").unwrap();
        let line = format!("X-Pad: {}\r\n", "p".repeat(1000));
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = r.feed(line.as_bytes()) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(
            err.unwrap(),
            HttpError::Head(HeadError::TooLarge { limit: MAX_HEAD })
        );
    }

    #[test]
    fn malformed_head_mentions_bytes() {
        let mut r = lines_reader();
        let err = r.feed(b"<html>\n<h1>502 Bad Gateway</h1>\n\n").unwrap_err();
        assert!(err.to_string().contains("<html>"), "{err}");
    }

    #[test]
    fn set_mode_for_error_status() {
        let mut r = lines_reader();
        let status = b"{\"kind\":\"Status\",\"code\":410}\n";
        let mut input = b"HTTP/1.1 410 Gone\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        input.extend_from_slice(&chunk(&status[..10]));
        r.feed(&input).unwrap();
        assert_eq!(r.head().unwrap().status, 410);
        r.set_mode(BodyMode::Whole { max_body: 1000 }).unwrap();
        r.feed(&chunk(&status[10..])).unwrap();
        r.feed(b"0\r\n\r\n").unwrap();
        assert!(r.next_line().is_none());
        assert_eq!(r.take_body().unwrap(), status);
    }

    #[test]
    fn set_mode_limits() {
        let mut r = lines_reader();
        r.feed(CHUNKED_HEAD).unwrap();
        r.feed(&chunk(b"a\nb")).unwrap();
        assert!(r.next_line().is_some());
        assert_eq!(
            r.set_mode(BodyMode::Whole { max_body: 100 }).unwrap_err(),
            HttpError::ModeChangeTooLate
        );
        // Still in Lines mode and usable.
        r.feed(&chunk(b"\n")).unwrap();
        assert_eq!(pull(&mut r), ["b"]);

        let mut r = lines_reader();
        r.feed(b"HTTP/1.1 500 x\r\nContent-Length: 50\r\n\r\n")
            .unwrap();
        assert_eq!(
            r.set_mode(BodyMode::Whole { max_body: 10 }).unwrap_err(),
            HttpError::BodyTooLarge { limit: 10 }
        );

        // Whole -> Lines after the body is complete.
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 100 });
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\na\nb")
            .unwrap();
        r.set_mode(BodyMode::Lines { max_line: 10 }).unwrap();
        assert_eq!(pull(&mut r), ["a", "b"]);
        assert!(r.is_complete());
    }

    #[test]
    fn whole_mode_has_no_lines() {
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 100 });
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\na\n")
            .unwrap();
        assert!(r.next_line().is_none());
        assert_eq!(r.take_body().unwrap(), b"a\n");
    }

    /// Chunks `body` with the given sizes (cycled) and extensions.
    fn chunk_body(body: &[u8], sizes: &[usize], exts: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < body.len() {
            let n = sizes[i % sizes.len()].min(body.len() - pos);
            let ext = &exts[i % exts.len()];
            out.extend_from_slice(format!("{n:X}{ext}\r\n").as_bytes());
            out.extend_from_slice(&body[pos..pos + n]);
            out.extend_from_slice(b"\r\n");
            pos += n;
            i += 1;
        }
        out.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn chunked_lines_survive_any_split(
            lines in proptest::collection::vec("[ -~]{1,60}", 0..20),
            crlf in any::<bool>(),
            sizes in proptest::collection::vec(1usize..80, 1..10),
            exts in proptest::collection::vec("(;[a-z]{1,4}(=[a-z0-9]{0,4})?)?", 1..4),
            pieces in proptest::collection::vec(1usize..100, 1..20),
            one_byte in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let body: String = lines.iter().map(|l| format!("{l}{eol}")).collect();
            let mut input = CHUNKED_HEAD.to_vec();
            input.extend(chunk_body(body.as_bytes(), &sizes, &exts));

            let mut r = ResponseReader::new(BodyMode::Lines { max_line: 60 });
            let mut got = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < input.len() {
                let n = if one_byte { 1 } else { pieces[i % pieces.len()] };
                let n = n.min(input.len() - pos);
                r.feed(&input[pos..pos + n]).unwrap();
                pos += n;
                i += 1;
                // Pull only sometimes, to exercise backpressure.
                if i % 3 != 0 {
                    while let Some(l) = r.next_line() {
                        got.push(String::from_utf8(l.unwrap().to_vec()).unwrap());
                    }
                }
            }
            while let Some(l) = r.next_line() {
                got.push(String::from_utf8(l.unwrap().to_vec()).unwrap());
            }
            prop_assert_eq!(got, lines);
            prop_assert!(r.is_complete());
            prop_assert!(r.take_leftover().is_empty());
        }

        #[test]
        fn arbitrary_input_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            piece in 1usize..64,
            chunked_prefix in any::<bool>(),
        ) {
            let mut r = ResponseReader::new(BodyMode::Lines { max_line: 50 });
            let mut input = if chunked_prefix { CHUNKED_HEAD.to_vec() } else { Vec::new() };
            input.extend_from_slice(&bytes);
            for p in input.chunks(piece) {
                if r.feed(p).is_err() {
                    break;
                }
                while let Some(Ok(l)) = r.next_line() {
                    prop_assert!(l.len() <= 50);
                }
            }
            let _ = r.on_eof();
            while let Some(Ok(_)) = r.next_line() {}
            let _ = r.take_leftover();
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn chunked_response(head: &str, body: &[u8]) -> Vec<u8> {
        let mut r =
            format!("HTTP/1.1 200 OK\r\n{head}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
        for c in body.chunks(100) {
            r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            r.extend_from_slice(c);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    }

    #[test]
    fn a_gzip_body_asked_for_is_decoded_as_it_arrives() {
        let body: Vec<u8> = (0..5000)
            .flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
            .collect();
        let wire = chunked_response("Content-Encoding: gzip\r\n", &gzip(&body));
        for mode in [
            BodyMode::Whole { max_body: 1 << 20 },
            BodyMode::Lines { max_line: 100 },
            BodyMode::Stream,
        ] {
            let mut r = ResponseReader::new(mode).accepting_gzip();
            let mut streamed = Vec::new();
            for b in wire.chunks(7) {
                r.feed(b).unwrap();
                if let Some(bytes) = r.body_bytes() {
                    streamed.append(bytes);
                    assert!(!r.is_complete() || r.body_done());
                }
            }
            let got = match mode {
                BodyMode::Stream => streamed,
                BodyMode::Whole { .. } => r.take_body().unwrap(),
                BodyMode::Lines { .. } => {
                    let mut all = Vec::new();
                    while let Some(l) = r.next_line() {
                        all.extend_from_slice(l.unwrap());
                        all.push(b'\n');
                    }
                    all
                }
            };
            assert_eq!(got, body, "{mode:?}");
            assert!(r.is_complete());
        }
        // Read until close.
        let mut wire =
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n".to_vec();
        wire.extend_from_slice(&gzip(b"hello"));
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 100 }).accepting_gzip();
        r.feed(&wire).unwrap();
        r.on_eof().unwrap();
        assert_eq!(r.take_body().unwrap(), b"hello");
    }

    #[test]
    fn an_encoding_not_asked_for_is_refused_by_name() {
        let wire = chunked_response("Content-Encoding: gzip\r\n", &gzip(b"{}"));
        let mut r = ResponseReader::new(BodyMode::Lines { max_line: 100 });
        let err = r.feed(&wire).unwrap_err();
        assert_eq!(
            err,
            HttpError::UnrequestedEncoding {
                encoding: "gzip".into()
            }
        );
        assert!(err.to_string().contains("Content-Encoding gzip"), "{err}");
        assert_eq!(
            r.head().map(|h| h.status),
            Some(200),
            "the head is still shown"
        );
        let wire = chunked_response("Content-Encoding: br\r\n", b"xx");
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 100 }).accepting_gzip();
        assert_eq!(
            r.feed(&wire).unwrap_err(),
            HttpError::UnrequestedEncoding {
                encoding: "br".into()
            }
        );
        // No body, nothing to misread.
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 100 });
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert_eq!(r.take_body().unwrap(), b"");
    }

    #[test]
    fn broken_or_oversized_gzip_bodies_fail_clearly() {
        let wire = chunked_response("Content-Encoding: gzip\r\n", b"this is not gzip data");
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 100 }).accepting_gzip();
        assert!(matches!(r.feed(&wire), Err(HttpError::Gzip { .. })));
        let z = gzip(b"truncated body here");
        let wire = chunked_response("Content-Encoding: gzip\r\n", &z[..z.len() - 3]);
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 100 }).accepting_gzip();
        let err = r.feed(&wire).unwrap_err();
        assert!(err.to_string().contains("incomplete"), "{err}");
        let wire = chunked_response("Content-Encoding: gzip\r\n", &gzip(&vec![b'a'; 8 << 20]));
        let mut r = ResponseReader::new(BodyMode::Whole { max_body: 1 << 20 }).accepting_gzip();
        assert_eq!(
            r.feed(&wire).unwrap_err(),
            HttpError::BodyTooLarge { limit: 1 << 20 }
        );
    }
}
