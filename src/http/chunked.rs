//! Decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! Tolerances (chosen to accept what real servers send, nothing more):
//! - hex digits in either case; leading zeros allowed (the size line cap
//!   bounds them); at most 16 significant digits, a larger value is an
//!   overflow error;
//! - spaces and tabs are accepted between the size and `;` or the line end
//!   (RFC 9112's BWS before `;`, and the trailing padding some servers add),
//!   never before the first digit;
//! - chunk extensions (`;name=value...`) are skipped unparsed;
//! - every line end (size line, after chunk data, trailer lines) may be CRLF
//!   or a bare LF, as RFC 9112 §2.2 permits a recipient; a CR not followed by
//!   LF is an error;
//! - trailer fields are skipped unparsed (kwatchd has no use for them).
//!
//! Limits: the chunk-size line (extensions included) is capped at
//! [`MAX_SIZE_LINE`] bytes and the trailer section at [`MAX_TRAILERS`] bytes, so
//! a hostile peer cannot make the decoder buffer or spin without bound. The
//! decoder itself buffers nothing: it is a state machine over the input, and
//! payload is appended to the caller's vector one slice copy per data run.

use std::fmt;

use super::excerpt::excerpt;

/// Maximum length of a chunk-size line, extensions and line end included.
pub const MAX_SIZE_LINE: usize = 4096;
/// Maximum length of the trailer section, final empty line included.
pub const MAX_TRAILERS: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the chunk-size line, reading hex digits. `digits` counts the digits
    /// read so far (0 = at the start of the line, i.e. at a chunk boundary).
    Size {
        value: u64,
        digits: u32,
        line: usize,
    },
    /// After the digits: optional spaces/tabs before `;` or the line end.
    SizeWs { value: u64, line: usize },
    /// Inside chunk extensions, skipped up to the line end.
    Ext { value: u64, line: usize },
    /// Saw CR at the end of the size line, LF must follow.
    SizeLf { value: u64 },
    /// Copying chunk data.
    Data { remaining: u64 },
    /// Chunk data done, expecting CR (or a tolerated bare LF).
    DataCr,
    /// Saw CR after chunk data, LF must follow.
    DataLf,
    /// In the trailer section, at the start of a line. `total` counts the
    /// trailer bytes so far.
    TrailerStart { total: usize },
    /// Inside a trailer field line.
    TrailerLine { total: usize },
    /// Saw CR inside/at the end of a trailer line, LF must follow. `empty`
    /// says whether the line was empty (the end of the trailer section).
    TrailerLf { total: usize, empty: bool },
    /// The chunked body is complete; bytes after it belong to the next
    /// response.
    Done,
    /// An error happened; the decoder is unusable.
    Failed,
}

/// An error in the chunked framing. After an error the decoder is unusable;
/// the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk-size line did not start with a hex digit, or had an invalid
    /// byte after the digits.
    InvalidChunkSize { excerpt: String },
    /// The chunk size does not fit in 64 bits.
    ChunkSizeOverflow,
    /// The chunk-size line (with extensions) exceeds [`MAX_SIZE_LINE`].
    SizeLineTooLong { limit: usize },
    /// Chunk data was not followed by CRLF: the chunk size announced does
    /// not match the data sent.
    MissingCrlfAfterData { excerpt: String },
    /// A CR was not followed by LF.
    BareCr {
        during: &'static str,
        excerpt: String,
    },
    /// The trailer section exceeds [`MAX_TRAILERS`].
    TrailersTooLong { limit: usize },
    /// `decode` was called after an earlier error.
    AfterError,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkedError::InvalidChunkSize { excerpt } => write!(
                f,
                "invalid chunk size line starting at \"{excerpt}\": expected hex digits, optional \
                 ;extensions and CRLF (the server or a proxy sent a broken chunked body)"
            ),
            ChunkedError::ChunkSizeOverflow => {
                write!(
                    f,
                    "chunk size has more than 16 significant hex digits (overflows 64 bits)"
                )
            }
            ChunkedError::SizeLineTooLong { limit } => write!(
                f,
                "chunk size line longer than {limit} bytes (oversized chunk extensions)"
            ),
            ChunkedError::MissingCrlfAfterData { excerpt } => write!(
                f,
                "chunk data not followed by CRLF, found \"{excerpt}\": the chunk size does not \
                 match the data sent"
            ),
            ChunkedError::BareCr { during, excerpt } => {
                write!(f, "CR not followed by LF in {during}, found \"{excerpt}\"")
            }
            ChunkedError::TrailersTooLong { limit } => {
                write!(f, "chunked trailer section longer than {limit} bytes")
            }
            ChunkedError::AfterError => {
                write!(
                    f,
                    "chunked decoder used after an earlier error (bug: close the connection)"
                )
            }
        }
    }
}

impl std::error::Error for ChunkedError {}

/// Incremental chunked decoder. Feed it any split of the body; the payload
/// appended to `out` is the same for every split.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

const START: State = State::Size {
    value: 0,
    digits: 0,
    line: 0,
};

fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder { state: START }
    }

    /// Decodes as much of `input` as possible, appending chunk payload to
    /// `out`. Returns how many bytes of `input` were consumed: all of them,
    /// unless the body ended (`is_done()`), in which case the rest belongs to
    /// whatever follows the response on the connection.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        if self.state == State::Failed {
            return Err(ChunkedError::AfterError);
        }
        let mut pos = 0;
        while self.state != State::Done {
            let rest = input.get(pos..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            match step(self.state, rest, out) {
                Ok((state, used)) => {
                    self.state = state;
                    pos += used;
                }
                Err(e) => {
                    self.state = State::Failed;
                    return Err(e);
                }
            }
        }
        Ok(pos)
    }

    /// True once the last chunk and the trailer section were received.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// True when the input so far ends between chunks: every announced chunk
    /// was received with its CRLF (or the last chunk was seen and only the
    /// trailers are missing). A watch treats EOF there as a normal end.
    pub fn at_chunk_boundary(&self) -> bool {
        matches!(
            self.state,
            State::Size {
                digits: 0,
                line: 0,
                ..
            } | State::TrailerStart { .. }
                | State::TrailerLine { .. }
                | State::TrailerLf { .. }
                | State::Done
        )
    }

    /// Where the decoder is, in words, for "unexpected EOF during ..." errors.
    pub fn phase(&self) -> &'static str {
        match self.state {
            State::Size { .. }
            | State::SizeWs { .. }
            | State::Ext { .. }
            | State::SizeLf { .. } => "chunk size line",
            State::Data { .. } => "chunk data",
            State::DataCr | State::DataLf => "CRLF after chunk data",
            State::TrailerStart { .. } | State::TrailerLine { .. } | State::TrailerLf { .. } => {
                "chunk trailers"
            }
            State::Done => "end of chunked body",
            State::Failed => "failed chunked body",
        }
    }
}

/// Processes the start of `rest` (non-empty) in state `state`: at most one
/// state's worth of input. Returns the next state and how many bytes were
/// consumed. Byte-at-a-time except for chunk data (one slice copy), chunk
/// extensions and trailer lines (skipped with memchr).
fn step(state: State, rest: &[u8], out: &mut Vec<u8>) -> Result<(State, usize), ChunkedError> {
    let Some(&b) = rest.first() else {
        return Ok((state, 0));
    };
    let next = match state {
        State::Size {
            value,
            digits,
            line,
        } => {
            let line = check_size_line(line + 1)?;
            match hex_value(b) {
                Some(v) => {
                    let value = value
                        .checked_mul(16)
                        .and_then(|x| x.checked_add(v))
                        .ok_or(ChunkedError::ChunkSizeOverflow)?;
                    State::Size {
                        value,
                        digits: digits + 1,
                        line,
                    }
                }
                None if digits == 0 => {
                    return Err(ChunkedError::InvalidChunkSize {
                        excerpt: excerpt(rest),
                    });
                }
                None => after_size(b, value, line, rest)?,
            }
        }
        State::SizeWs { value, line } => {
            let line = check_size_line(line + 1)?;
            after_size(b, value, line, rest)?
        }
        State::Ext { value, line } => {
            // Extensions are ignored: skip to the line end in bulk.
            return match memchr::memchr2(b'\r', b'\n', rest) {
                None => {
                    let line = check_size_line(line + rest.len())?;
                    Ok((State::Ext { value, line }, rest.len()))
                }
                Some(i) => {
                    check_size_line(line + i + 1)?;
                    let next = if rest.get(i) == Some(&b'\r') {
                        State::SizeLf { value }
                    } else {
                        size_line_done(value)
                    };
                    Ok((next, i + 1))
                }
            };
        }
        State::SizeLf { value } => {
            if b != b'\n' {
                return Err(ChunkedError::BareCr {
                    during: "chunk size line",
                    excerpt: excerpt(rest),
                });
            }
            size_line_done(value)
        }
        State::Data { remaining } => {
            let take = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            out.extend_from_slice(rest.get(..take).unwrap_or_default());
            let remaining = remaining - take as u64;
            let next = if remaining == 0 {
                State::DataCr
            } else {
                State::Data { remaining }
            };
            return Ok((next, take));
        }
        State::DataCr => match b {
            b'\r' => State::DataLf,
            b'\n' => START,
            _ => {
                return Err(ChunkedError::MissingCrlfAfterData {
                    excerpt: excerpt(rest),
                })
            }
        },
        State::DataLf => {
            if b != b'\n' {
                return Err(ChunkedError::MissingCrlfAfterData {
                    excerpt: excerpt(rest),
                });
            }
            START
        }
        State::TrailerStart { total } => {
            let total = check_trailers(total + 1)?;
            match b {
                b'\r' => State::TrailerLf { total, empty: true },
                b'\n' => State::Done,
                _ => State::TrailerLine { total },
            }
        }
        State::TrailerLine { total } => {
            // Trailer fields are ignored: skip to the line end in bulk.
            return match memchr::memchr2(b'\r', b'\n', rest) {
                None => {
                    let total = check_trailers(total + rest.len())?;
                    Ok((State::TrailerLine { total }, rest.len()))
                }
                Some(i) => {
                    let total = check_trailers(total + i + 1)?;
                    let next = if rest.get(i) == Some(&b'\r') {
                        State::TrailerLf {
                            total,
                            empty: false,
                        }
                    } else {
                        State::TrailerStart { total }
                    };
                    Ok((next, i + 1))
                }
            };
        }
        State::TrailerLf { total, empty } => {
            let total = check_trailers(total + 1)?;
            if b != b'\n' {
                return Err(ChunkedError::BareCr {
                    during: "chunk trailers",
                    excerpt: excerpt(rest),
                });
            }
            if empty {
                State::Done
            } else {
                State::TrailerStart { total }
            }
        }
        State::Done => return Ok((State::Done, 0)),
        State::Failed => return Err(ChunkedError::AfterError),
    };
    Ok((next, 1))
}

/// Handles byte `b` of a size line after at least one digit was read.
fn after_size(b: u8, value: u64, line: usize, rest: &[u8]) -> Result<State, ChunkedError> {
    Ok(match b {
        b' ' | b'\t' => State::SizeWs { value, line },
        b';' => State::Ext { value, line },
        b'\r' => State::SizeLf { value },
        b'\n' => size_line_done(value),
        _ => {
            return Err(ChunkedError::InvalidChunkSize {
                excerpt: excerpt(rest),
            })
        }
    })
}

/// The state after a complete size line: data, or trailers after the last chunk.
fn size_line_done(value: u64) -> State {
    if value == 0 {
        State::TrailerStart { total: 0 }
    } else {
        State::Data { remaining: value }
    }
}

fn check_size_line(line: usize) -> Result<usize, ChunkedError> {
    if line > MAX_SIZE_LINE {
        Err(ChunkedError::SizeLineTooLong {
            limit: MAX_SIZE_LINE,
        })
    } else {
        Ok(line)
    }
}

fn check_trailers(total: usize) -> Result<usize, ChunkedError> {
    if total > MAX_TRAILERS {
        Err(ChunkedError::TrailersTooLong {
            limit: MAX_TRAILERS,
        })
    } else {
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `input` in one call; returns (payload, consumed, done).
    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let n = d.decode(input, &mut out)?;
        Ok((out, n, d.is_done()))
    }

    /// Decodes `input` fed in pieces of `piece` bytes.
    fn decode_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for p in input.chunks(piece) {
            consumed += d.decode(p, &mut out)?;
            if d.is_done() {
                break;
            }
        }
        Ok((out, consumed, d.is_done()))
    }

    #[test]
    fn simple_body() {
        let (out, n, done) = decode_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(n, 26);
        assert!(done);
    }

    #[test]
    fn hex_sizes_upper_and_lower_case() {
        let data = vec![b'x'; 0x1af];
        for size in ["1aF", "1AF", "1af", "001AF"] {
            let mut body = format!("{size}\r\n").into_bytes();
            body.extend_from_slice(&data);
            body.extend_from_slice(b"\r\n0\r\n\r\n");
            let (out, _, done) = decode_all(&body).unwrap();
            assert_eq!(out, data, "size {size}");
            assert!(done);
        }
    }

    #[test]
    fn extensions_are_ignored() {
        let body = b"4;name=value;other=\"q;uoted\"\r\nabcd\r\n2 ; x\r\nef\r\n0;last\r\n\r\n";
        let (out, _, done) = decode_all(body).unwrap();
        assert_eq!(out, b"abcdef");
        assert!(done);
    }

    #[test]
    fn whitespace_after_size_is_tolerated_but_not_before() {
        assert_eq!(decode_all(b"3  \t\r\nabc\r\n0\r\n\r\n").unwrap().0, b"abc");
        assert!(matches!(
            decode_all(b" 3\r\nabc\r\n"),
            Err(ChunkedError::InvalidChunkSize { .. })
        ));
        // Whitespace then garbage.
        assert!(matches!(
            decode_all(b"3 x\r\nabc\r\n"),
            Err(ChunkedError::InvalidChunkSize { .. })
        ));
    }

    #[test]
    fn trailers_are_skipped() {
        let body = b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: two\r\n\r\nNEXT";
        let (out, n, done) = decode_all(body).unwrap();
        assert_eq!(out, b"abc");
        assert!(done);
        assert_eq!(&body[n..], b"NEXT");
    }

    #[test]
    fn stops_at_end_and_leaves_rest() {
        let body = b"0\r\n\r\nHTTP/1.1 200 OK\r\n";
        let (out, n, done) = decode_all(body).unwrap();
        assert!(out.is_empty());
        assert!(done);
        assert_eq!(n, 5);
        // Further calls consume nothing.
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        d.decode(b"0\r\n\r\n", &mut out).unwrap();
        assert_eq!(d.decode(b"more", &mut out).unwrap(), 0);
    }

    #[test]
    fn bare_lf_is_tolerated_everywhere() {
        let body = b"3\nabc\n2;ext\nde\n0\nTrailer: x\n\n";
        let (out, n, done) = decode_all(body).unwrap();
        assert_eq!(out, b"abcde");
        assert_eq!(n, body.len());
        assert!(done);
    }

    #[test]
    fn bare_cr_is_rejected() {
        for body in [
            &b"3\rabc"[..],
            b"3;e\rabc",
            b"3\r\nabc\rX",
            b"0\r\nT: 1\rX",
            b"0\r\n\rX",
        ] {
            let err = decode_all(body).unwrap_err();
            assert!(
                matches!(
                    err,
                    ChunkedError::BareCr { .. } | ChunkedError::MissingCrlfAfterData { .. }
                ),
                "{body:?}: {err}"
            );
        }
    }

    #[test]
    fn garbage_chunk_size_gives_clear_error() {
        let err = decode_all(b"zz\r\n").unwrap_err();
        assert_eq!(
            err,
            ChunkedError::InvalidChunkSize {
                excerpt: "zz\\r\\n".into()
            }
        );
        let text = err.to_string();
        assert!(text.contains("\"zz\\r\\n\""), "{text}");
        assert!(matches!(
            decode_all(b"\r\n"),
            Err(ChunkedError::InvalidChunkSize { .. })
        ));
        assert!(matches!(
            decode_all(b"5x\r\n"),
            Err(ChunkedError::InvalidChunkSize { .. })
        ));
        assert!(matches!(
            decode_all(b"-1\r\n"),
            Err(ChunkedError::InvalidChunkSize { .. })
        ));
    }

    #[test]
    fn overflowing_size() {
        // 16 significant digits fit; 17 do not.
        let mut d = ChunkedDecoder::new();
        assert!(d.decode(b"ffffffffffffffff\r\nab", &mut Vec::new()).is_ok());
        assert_eq!(
            decode_all(b"10000000000000000\r\n").unwrap_err(),
            ChunkedError::ChunkSizeOverflow
        );
        // Leading zeros do not count.
        let mut d = ChunkedDecoder::new();
        assert!(d
            .decode(b"0000000000000000001\r\na", &mut Vec::new())
            .is_ok());
    }

    #[test]
    fn size_line_cap() {
        let mut body = b"1;".to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_SIZE_LINE));
        assert_eq!(
            decode_pieces(&body, 100).unwrap_err(),
            ChunkedError::SizeLineTooLong {
                limit: MAX_SIZE_LINE
            }
        );
        let mut zeros = vec![b'0'; MAX_SIZE_LINE + 1];
        zeros.push(b'1');
        assert!(matches!(
            decode_all(&zeros),
            Err(ChunkedError::SizeLineTooLong { .. })
        ));
        // Exactly at the cap is fine.
        let mut body = b"1;".to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_SIZE_LINE - 4));
        body.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert_eq!(decode_all(&body).unwrap().0, b"a");
    }

    #[test]
    fn trailer_cap() {
        let mut body = b"0\r\n".to_vec();
        for _ in 0..MAX_TRAILERS / 10 + 1 {
            body.extend_from_slice(b"X-A: 123\r\n");
        }
        assert_eq!(
            decode_pieces(&body, 7).unwrap_err(),
            ChunkedError::TrailersTooLong {
                limit: MAX_TRAILERS
            }
        );
    }

    #[test]
    fn missing_crlf_after_data() {
        let err = decode_all(b"3\r\nabcd\r\n").unwrap_err();
        assert_eq!(
            err,
            ChunkedError::MissingCrlfAfterData {
                excerpt: "d\\r\\n".into()
            }
        );
        assert!(err.to_string().contains("does not match"));
        assert!(matches!(
            decode_all(b"3\r\nabc\rd"),
            Err(ChunkedError::MissingCrlfAfterData { .. })
        ));
    }

    #[test]
    fn zero_chunk_only() {
        let (out, n, done) = decode_all(b"0\r\n\r\n").unwrap();
        assert!(out.is_empty() && done && n == 5);
        let (_, _, done) = decode_all(b"000;x=y\r\n\r\n").unwrap();
        assert!(done);
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert!(d.decode(b"zz", &mut out).is_err());
        assert_eq!(
            d.decode(b"3\r\nabc", &mut out).unwrap_err(),
            ChunkedError::AfterError
        );
    }

    #[test]
    fn size_line_split_at_every_byte() {
        let body = b"1A;ext=\"v\"  \r\nabcdefghijklmnopqrstuvwxyz\r\n0;e\r\nT: v\r\n\r\n";
        let (whole, _, _) = decode_all(body).unwrap();
        assert_eq!(whole, b"abcdefghijklmnopqrstuvwxyz");
        for cut in 0..=body.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let a = d.decode(&body[..cut], &mut out).unwrap();
            let b = d.decode(&body[cut..], &mut out).unwrap();
            assert_eq!(a + b, body.len(), "cut {cut}");
            assert_eq!(out, whole, "cut {cut}");
            assert!(d.is_done());
        }
        let (out, n, done) = decode_pieces(body, 1).unwrap();
        assert_eq!((out, n, done), (whole, body.len(), true));
    }

    #[test]
    fn chunk_boundary_tracking() {
        let body = b"3\r\nabc\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert!(d.at_chunk_boundary());
        let mut boundaries = Vec::new();
        for (i, b) in body.iter().enumerate() {
            d.decode(std::slice::from_ref(b), &mut out).unwrap();
            if d.at_chunk_boundary() {
                boundaries.push(i + 1);
            }
        }
        // After "3\r\nabc\r\n", after "0\r\n" (trailers), and at the end.
        assert_eq!(boundaries, vec![8, 11, 12, 13]);
        assert_eq!(d.phase(), "end of chunked body");
        let mut d = ChunkedDecoder::new();
        d.decode(b"3\r\nab", &mut out).unwrap();
        assert!(!d.at_chunk_boundary());
        assert_eq!(d.phase(), "chunk data");
    }

    /// Encodes `chunks` as a chunked body with the given extension on every
    /// size line and a trailer.
    fn encode(chunks: &[Vec<u8>], ext: &str, upper: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            let size = if upper {
                format!("{:X}", c.len())
            } else {
                format!("{:x}", c.len())
            };
            out.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("0{ext}\r\nX-T: 1\r\n\r\n").as_bytes());
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn any_split_gives_the_same_output(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            ext in "(;[a-z]{0,5}(=[a-z0-9\"]{0,6})?){0,2}",
            upper in any::<bool>(),
            cuts in proptest::collection::vec(1usize..64, 1..50),
        ) {
            let body = encode(&chunks, &ext, upper);
            let expected: Vec<u8> = chunks.concat();
            let (whole, n, done) = decode_all(&body).unwrap();
            prop_assert_eq!(&whole, &expected);
            prop_assert_eq!(n, body.len());
            prop_assert!(done);

            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < body.len() {
                let len = cuts[i % cuts.len()].min(body.len() - pos);
                pos += d.decode(&body[pos..pos + len], &mut out).unwrap();
                i += 1;
            }
            prop_assert_eq!(out, expected);
            prop_assert!(d.is_done());
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_splits_agree(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            piece in 1usize..16,
        ) {
            let whole = decode_all(&bytes);
            let split = decode_pieces(&bytes, piece);
            match (whole, split) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(a), Err(b)) => prop_assert_eq!(
                    std::mem::discriminant(&a),
                    std::mem::discriminant(&b)
                ),
                (a, b) => prop_assert!(false, "whole {:?} vs split {:?}", a, b),
            }
        }

        #[test]
        fn mostly_valid_bytes_never_panic(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'0'), Just(b'1'), Just(b'a'), Just(b'\r'), Just(b'\n'),
                            Just(b';'), Just(b' '), Just(b'x'), Just(b':')],
                0..256),
        ) {
            let whole = decode_all(&bytes);
            let split = decode_pieces(&bytes, 1);
            prop_assert_eq!(whole.is_ok(), split.is_ok());
            if let (Ok(a), Ok(b)) = (whole, split) {
                prop_assert_eq!(a, b);
            }
        }
    }
}
