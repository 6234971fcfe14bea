//! Splits a byte stream into `\n`-terminated lines with a hard length limit.
//!
//! The framer owns the buffer the body decoder writes into (see
//! [`LineFramer::buffer_mut`]), so payload bytes are copied exactly once from
//! the socket buffer, and lines are handed out as slices of that buffer.
//!
//! Bookkeeping: `start` is the first byte not yet handed out, `scanned` the
//! first byte not yet searched for `\n` (`start <= scanned <= buf.len()`), so
//! `memchr` never looks at a byte twice however the input is split. Consumed
//! bytes are dropped by moving the tail to the front only when the consumed
//! prefix is at least as long as the tail, which makes the copying amortised
//! O(1) per byte instead of O(pending) per line.

use std::fmt;

/// A line (or the unterminated start of one) exceeds the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    /// The configured maximum line length in bytes.
    pub limit: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line longer than {} bytes; raise the maximum line length if objects this large are expected",
            self.limit
        )
    }
}

impl std::error::Error for LineTooLong {}

/// Line splitter over an owned, append-only buffer.
#[derive(Debug, Clone)]
pub struct LineFramer {
    buf: Vec<u8>,
    start: usize,
    scanned: usize,
    max_line: usize,
    /// Set by `finish`: the end of the buffer also ends a line.
    finished: bool,
    /// Set once a line was too long: the stream cannot be resynchronised
    /// reliably, so the error repeats and no more lines are returned.
    failed: bool,
}

impl LineFramer {
    /// A framer whose lines (without their `\n` or `\r\n`) may be at most
    /// `max_line` bytes long.
    pub fn new(max_line: usize) -> Self {
        Self::with_buffer(Vec::new(), max_line)
    }

    /// A framer that starts with `buf` as its unconsumed input.
    pub fn with_buffer(buf: Vec<u8>, max_line: usize) -> Self {
        LineFramer {
            buf,
            start: 0,
            scanned: 0,
            max_line,
            finished: false,
            failed: false,
        }
    }

    /// The maximum line length.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The buffer to append new input to. Only append: bytes already in it
    /// belong to the framer. (Anything else cannot make the framer panic, but
    /// lines would be garbage.) Compacts first, when that is cheap enough.
    pub fn buffer_mut(&mut self) -> &mut Vec<u8> {
        self.compact();
        &mut self.buf
    }

    /// Appends `bytes` to the buffer.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer_mut().extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned as lines.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// True if no line has been handed out and nothing was dropped yet, so
    /// the buffered bytes are the whole input so far.
    pub fn untouched(&self) -> bool {
        self.start == 0 && !self.failed
    }

    /// Gives back the unconsumed bytes.
    pub fn into_unconsumed(mut self) -> Vec<u8> {
        let start = self.start.min(self.buf.len());
        self.buf.drain(..start);
        self.buf
    }

    /// Marks the end of input: after this, bytes after the last `\n` form a
    /// final line. Returns the next line like [`next_line`](Self::next_line),
    /// so calling `finish` until it returns `None` drains every line.
    pub fn finish(&mut self) -> Option<Result<&[u8], LineTooLong>> {
        self.set_finished();
        self.next_line()
    }

    /// Marks the end of input without taking a line (see `finish`).
    pub fn set_finished(&mut self) {
        self.finished = true;
    }

    /// The bytes of a range returned by `next_range`.
    pub(crate) fn line_at(&self, start: usize, end: usize) -> Option<&[u8]> {
        self.buf.get(start..end)
    }

    /// Returns the next complete line without its `\n` (and without a `\r`
    /// before it), skipping empty lines, or `None` if no complete line is
    /// buffered. Fails as soon as the buffered partial line is longer than
    /// the limit, without waiting for its end, so memory stays bounded.
    pub fn next_line(&mut self) -> Option<Result<&[u8], LineTooLong>> {
        match self.next_range()? {
            Ok((s, e)) => self.line_at(s, e).map(Ok),
            Err(e) => Some(Err(e)),
        }
    }

    /// Like `next_line`, but returns the position of the line in the buffer
    /// (valid until the next mutation), so that callers can map errors
    /// without holding a borrow.
    pub(crate) fn next_range(&mut self) -> Option<Result<(usize, usize), LineTooLong>> {
        let limit = LineTooLong {
            limit: self.max_line,
        };
        if self.failed {
            return Some(Err(limit));
        }
        // Defensive: the caller could have shrunk the buffer.
        let len = self.buf.len();
        self.start = self.start.min(len);
        self.scanned = self.scanned.clamp(self.start, len);
        loop {
            let unscanned = self.buf.get(self.scanned..).unwrap_or_default();
            let (line_start, mut line_end) = match memchr::memchr(b'\n', unscanned) {
                Some(i) => {
                    let nl = self.scanned + i;
                    let line = (self.start, nl);
                    self.start = nl + 1;
                    self.scanned = self.start;
                    line
                }
                None => {
                    self.scanned = len;
                    let pending = len - self.start;
                    // One byte of slack for a `\r` that may precede the `\n`.
                    if pending > self.max_line.saturating_add(1) {
                        self.failed = true;
                        return Some(Err(limit));
                    }
                    if !self.finished || pending == 0 {
                        return None;
                    }
                    let line = (self.start, len);
                    self.start = len;
                    line
                }
            };
            if line_end > line_start && self.buf.get(line_end - 1) == Some(&b'\r') {
                line_end -= 1;
            }
            if line_end - line_start > self.max_line {
                self.failed = true;
                return Some(Err(limit));
            }
            if line_end > line_start {
                return Some(Ok((line_start, line_end)));
            }
        }
    }

    /// Drops consumed bytes when the tail to move is no longer than the
    /// consumed prefix (or free, when everything was consumed).
    fn compact(&mut self) {
        let len = self.buf.len();
        let start = self.start.min(len);
        if start == 0 {
            return;
        }
        if start == len {
            self.buf.clear();
        } else if start >= len - start {
            self.buf.copy_within(start.., 0);
            self.buf.truncate(len - start);
        } else {
            return;
        }
        self.scanned = self.scanned.saturating_sub(start);
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines(f: &mut LineFramer) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(l) = f.next_line() {
            v.push(String::from_utf8(l.unwrap().to_vec()).unwrap());
        }
        v
    }

    #[test]
    fn splits_lines_and_skips_empty_ones() {
        let mut f = LineFramer::new(100);
        f.extend(b"a\nbb\r\n\n\r\nccc\nrest");
        assert_eq!(lines(&mut f), ["a", "bb", "ccc"]);
        assert_eq!(f.buffered(), 4);
        f.extend(b"\n");
        assert_eq!(lines(&mut f), ["rest"]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn line_across_appends() {
        let mut f = LineFramer::new(100);
        for piece in [&b"{\"type\":"[..], b"\"ADDED\"", b"}\r", b"\n{", b"}\n"] {
            f.extend(piece);
        }
        assert_eq!(lines(&mut f), ["{\"type\":\"ADDED\"}", "{}"]);
    }

    #[test]
    fn cr_inside_line_is_kept() {
        let mut f = LineFramer::new(100);
        f.extend(b"a\rb\n\r\r\n");
        assert_eq!(lines(&mut f), ["a\rb", "\r"]);
    }

    #[test]
    fn finish_returns_unterminated_tail() {
        let mut f = LineFramer::new(100);
        f.extend(b"one\ntwo");
        assert_eq!(f.finish().unwrap().unwrap(), b"one");
        assert_eq!(f.finish().unwrap().unwrap(), b"two");
        assert!(f.finish().is_none());
        let mut f = LineFramer::new(100);
        f.extend(b"x\r");
        assert_eq!(f.finish().unwrap().unwrap(), b"x");
        assert!(f.finish().is_none());
    }

    #[test]
    fn exact_limit_is_accepted_with_crlf() {
        let mut f = LineFramer::new(4);
        f.extend(b"abcd\r");
        assert!(f.next_line().is_none());
        f.extend(b"\nabcd\n");
        assert_eq!(lines(&mut f), ["abcd", "abcd"]);
        f.extend(b"abcde\n");
        assert_eq!(f.next_line().unwrap(), Err(LineTooLong { limit: 4 }));
        // Sticky.
        f.extend(b"ok\n");
        assert_eq!(f.next_line().unwrap(), Err(LineTooLong { limit: 4 }));
    }

    #[test]
    fn overlong_line_fails_before_its_end() {
        let mut f = LineFramer::new(1000);
        let mut fed = 0;
        let err = loop {
            f.extend(&[b'x'; 100]);
            fed += 100;
            if let Some(r) = f.next_line() {
                break r.unwrap_err();
            }
            assert!(fed < 2000, "no error after {fed} bytes");
        };
        assert_eq!(err.limit, 1000);
        assert!(fed <= 1100);
        assert!(err.to_string().contains("1000"));
    }

    #[test]
    fn finish_checks_limit() {
        let mut f = LineFramer::new(3);
        f.extend(b"abcd");
        assert!(f.finish().unwrap().is_err());
    }

    #[test]
    fn compaction_keeps_memory_bounded() {
        let mut f = LineFramer::new(100);
        let mut got = 0;
        for i in 0..10_000 {
            f.extend(format!("line {i}\nhalf").as_bytes());
            while let Some(l) = f.next_line() {
                l.unwrap();
                got += 1;
            }
            f.extend(b" done\n");
            while let Some(l) = f.next_line() {
                assert!(l.unwrap().ends_with(b" done"));
                got += 1;
            }
        }
        assert_eq!(got, 20_000);
        assert!(f.buffer_mut().capacity() < 4096);
    }

    #[test]
    fn shrunk_buffer_does_not_panic() {
        let mut f = LineFramer::new(10);
        f.extend(b"abc\ndef");
        assert!(f.next_line().is_some());
        assert!(f.next_line().is_none());
        f.buf.clear();
        assert!(f.next_line().is_none());
        f.extend(b"x\n");
        assert_eq!(f.next_line().unwrap().unwrap(), b"x");
    }

    #[test]
    fn into_unconsumed() {
        let mut f = LineFramer::new(10);
        f.extend(b"a\nbc");
        assert!(f.untouched());
        f.next_line();
        assert!(!f.untouched());
        assert_eq!(f.into_unconsumed(), b"bc");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn never_returns_a_line_longer_than_the_limit(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'\r'), Just(b'\n')], 0..400),
            limit in 0usize..20,
            piece in 1usize..30,
        ) {
            let mut f = LineFramer::new(limit);
            let mut out = Vec::new();
            'outer: for p in bytes.chunks(piece) {
                f.extend(p);
                while let Some(r) = f.next_line() {
                    match r {
                        Ok(l) => {
                            prop_assert!(l.len() <= limit && !l.is_empty());
                            prop_assert!(!l.contains(&b'\n'));
                            out.push(l.to_vec());
                        }
                        Err(_) => break 'outer,
                    }
                }
                prop_assert!(f.buffered() <= limit + 1 + piece);
            }
            while let Some(Ok(l)) = f.finish() {
                prop_assert!(l.len() <= limit && !l.is_empty());
                out.push(l.to_vec());
            }
            // Whatever came out is a prefix of the real lines.
            let expected: Vec<Vec<u8>> = bytes
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
                .filter(|l| !l.is_empty())
                .collect();
            prop_assert_eq!(&expected[..out.len()], &out[..]);
        }
    }
}
