//! A strict, single-pass JSON scanner for the watch hot path.
//!
//! serde_json proves a line is JSON by walking it once for the envelope's
//! `RawValue` and again for `kind`/`metadata`; that walk was a third of the
//! daemon's time. This scanner is a pull parser over the bytes: the caller
//! walks the few levels it cares about (envelope, object, metadata) and
//! skips everything else with [`Scanner::skip_value`], which validates as it
//! goes. Nothing is copied and nothing is allocated (unless a value nests
//! deeper than 128 levels, or a wanted string holds escapes).
//!
//! Acceptance is exactly serde_json's for `from_slice::<IgnoredAny>` (and so
//! for its `RawValue` validation): RFC 8259 grammar; strings may not hold
//! control characters (below U+0020) unescaped; escapes are the RFC's, and
//! `\u` needs four hex digits but is not checked for surrogate pairing
//! (serde_json only pairs surrogates when it decodes a string, which
//! [`RawStr::decode`] does the same way); bytes at or above 0x80 inside
//! strings are not checked here (callers that hand out `&str` validate
//! UTF-8 first); no nesting limit (serde_json skips ignored values with a
//! heap stack, not recursion). The differential tests below and the
//! `json_scan` fuzz target hold it to that.

use std::borrow::Cow;
use std::fmt;

/// Where and why the bytes are not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset of the offending byte (or the end of the input).
    pub at: usize,
    pub what: &'static str,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for ScanError {}

/// The first byte of a value, once whitespace is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    Object,
    Array,
    String,
    /// A number, `true`, `false` or `null` (or a byte that starts no value:
    /// `skip_value` reports that).
    Scalar,
    Null,
    End,
}

/// A string as it appears in the input, without its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStr<'a> {
    pub body: &'a [u8],
    /// Offset of `body` in the input, for error positions.
    pub at: usize,
    pub escaped: bool,
}

impl<'a> RawStr<'a> {
    /// True when the string's value is `s` (escapes decoded).
    pub fn is(&self, s: &str) -> bool {
        if !self.escaped {
            return self.body == s.as_bytes();
        }
        matches!(self.decode(), Ok(d) if d == s)
    }

    /// The string's value: borrowed when it has no escapes. Rejects what
    /// serde_json rejects when it deserializes a `str`: invalid UTF-8 and
    /// unpaired surrogate escapes.
    pub fn decode(&self) -> Result<Cow<'a, str>, ScanError> {
        let invalid_utf8 = |e: std::str::Utf8Error| ScanError {
            at: self.at + e.valid_up_to(),
            what: "invalid UTF-8 in a string",
        };
        if !self.escaped {
            return std::str::from_utf8(self.body)
                .map(Cow::Borrowed)
                .map_err(invalid_utf8);
        }
        let b = self.body;
        let mut out: Vec<u8> = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let Some(rel) = memchr::memchr(b'\\', &b[i..]) else {
                out.extend_from_slice(&b[i..]);
                break;
            };
            out.extend_from_slice(&b[i..i + rel]);
            i += rel + 1;
            let at = self.at + i;
            let err = |what| ScanError { at, what };
            let c = *b.get(i).ok_or(err("invalid escape"))?;
            i += 1;
            let simple = match c {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let n = hex4(b, i).ok_or(err("invalid \\u escape"))?;
                    i += 4;
                    let ch = match n {
                        0xDC00..=0xDFFF => return Err(err("lone surrogate in a \\u escape")),
                        0xD800..=0xDBFF => {
                            if b.get(i..i + 2) != Some(b"\\u") {
                                return Err(err("lone surrogate in a \\u escape"));
                            }
                            let n2 = hex4(b, i + 2).ok_or(err("invalid \\u escape"))?;
                            if !(0xDC00..=0xDFFF).contains(&n2) {
                                return Err(err("lone surrogate in a \\u escape"));
                            }
                            i += 6;
                            0x1_0000 + ((u32::from(n) - 0xD800) << 10) + (u32::from(n2) - 0xDC00)
                        }
                        n => u32::from(n),
                    };
                    let ch = char::from_u32(ch).ok_or(err("invalid \\u escape"))?;
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                    continue;
                }
                _ => return Err(err("invalid escape")),
            };
            out.push(simple);
        }
        String::from_utf8(out)
            .map(Cow::Owned)
            .map_err(|e| ScanError {
                at: self.at,
                what: if e.utf8_error().valid_up_to() < b.len() {
                    "invalid UTF-8 in a string"
                } else {
                    "invalid string"
                },
            })
    }
}

fn hex4(b: &[u8], i: usize) -> Option<u16> {
    let digits = b.get(i..i + 4)?;
    let mut n: u16 = 0;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        n = (n << 4) | u16::from(v);
    }
    Some(n)
}

/// Open arrays/objects of the value being skipped: one bit each (1 =
/// object). 128 levels live inline; deeper input (legal, and accepted by
/// serde_json) spills to the heap.
#[derive(Debug, Default)]
struct Nesting {
    inline: u128,
    depth: usize,
    spill: Vec<bool>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth < 128 {
            let bit = 1u128 << self.depth;
            if object {
                self.inline |= bit;
            } else {
                self.inline &= !bit;
            }
        } else {
            self.spill.push(object);
        }
        self.depth += 1;
    }

    /// Whether the innermost open value is an object; `None` when empty.
    fn top(&self) -> Option<bool> {
        match self.depth {
            0 => None,
            d if d <= 128 => Some(self.inline & (1u128 << (d - 1)) != 0),
            _ => self.spill.last().copied(),
        }
    }

    /// Removes the innermost entry and returns it.
    fn pop(&mut self) -> Option<bool> {
        let top = self.top();
        if self.depth > 128 {
            self.spill.pop();
        }
        self.depth = self.depth.saturating_sub(1);
        top
    }

    fn clear(&mut self) {
        self.depth = 0;
        self.spill.clear();
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bits of the bytes of `w` that are `"` (first) and of those that are
/// `"`, `\` or below 0x20 (second). Each flag is exact up to the lowest
/// flagged byte, which is all the caller uses (the borrow of a flagged byte
/// can only wrongly flag bytes above it).
#[inline(always)]
fn string_stops(w: u64) -> (u64, u64) {
    let quote = w ^ (LO * u64::from(b'"'));
    let backslash = w ^ (LO * u64::from(b'\\'));
    let zero_quote = quote.wrapping_sub(LO) & !quote & HI;
    let zero_backslash = backslash.wrapping_sub(LO) & !backslash;
    let control = w.wrapping_sub(LO * 0x20) & !w;
    (zero_quote, zero_quote | ((zero_backslash | control) & HI))
}

/// A pull parser over one JSON text.
#[derive(Debug)]
pub struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    nesting: Nesting,
    /// A `\u` escape of a UTF-16 surrogate was read (see
    /// [`Scanner::surrogate_escapes`]).
    surrogates: bool,
}

impl<'a> Scanner<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Scanner {
            b: bytes,
            i: 0,
            nesting: Nesting::default(),
            surrogates: false,
        }
    }

    /// True once a string read so far held a `\u` escape of a UTF-16
    /// surrogate (`\uD800`…`\uDFFF`, paired or not): the one thing this
    /// scanner accepts that another JSON parser (jaq's) may read
    /// differently. Noticed on the escape path only, so free otherwise.
    pub fn surrogate_escapes(&self) -> bool {
        self.surrogates
    }

    pub fn input(&self) -> &'a [u8] {
        self.b
    }

    /// Offset of the next unread byte.
    pub fn pos(&self) -> usize {
        self.i
    }

    /// Moves back to `pos`, an offset this scanner was at between values
    /// (a caller whose own walk of a value failed hands it back to be
    /// skipped, and so reported, from its start).
    pub fn rewind(&mut self, pos: usize) {
        self.i = pos.min(self.b.len());
    }

    fn err(&self, what: &'static str) -> ScanError {
        ScanError { at: self.i, what }
    }

    #[inline(always)]
    fn skip_ws(&mut self) -> Option<u8> {
        // Compact JSON has no whitespace: one compare in the common case.
        match self.b.get(self.i) {
            Some(&c) if c > b' ' => return Some(c),
            None => return None,
            Some(_) => {}
        }
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b' ' | b'\n' | b'\t' | b'\r' => self.i += 1,
                _ => return Some(c),
            }
        }
        None
    }

    /// Skips whitespace and says what value comes next, without reading it.
    pub fn peek(&mut self) -> Peek {
        match self.skip_ws() {
            None => Peek::End,
            Some(b'{') => Peek::Object,
            Some(b'[') => Peek::Array,
            Some(b'"') => Peek::String,
            Some(b'n') => Peek::Null,
            Some(_) => Peek::Scalar,
        }
    }

    /// Reads the `{` of an object (after whitespace).
    pub fn begin_object(&mut self) -> Result<(), ScanError> {
        match self.skip_ws() {
            Some(b'{') => {
                self.i += 1;
                Ok(())
            }
            Some(_) => Err(self.err("expected an object")),
            None => Err(self.err("unexpected end of input")),
        }
    }

    /// Reads up to and including the `:` of the next member of the object
    /// whose `{` was read last, and returns its key; `None` after reading
    /// the object's `}`. `first` is true until the first call returns.
    pub fn next_key(&mut self, first: &mut bool) -> Result<Option<RawStr<'a>>, ScanError> {
        match self.skip_ws() {
            Some(b'}') => {
                self.i += 1;
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.i += 1;
                self.skip_ws();
            }
            Some(b'"') if *first => {}
            Some(_) if *first => return Err(self.err("expected a string key or '}'")),
            Some(_) => return Err(self.err("expected ',' or '}'")),
            None => return Err(self.err("unexpected end of input in an object")),
        }
        *first = false;
        let key = self.key()?;
        Ok(Some(key))
    }

    /// A member key (whitespace before it skipped) and its `:`.
    #[inline(always)]
    fn key(&mut self) -> Result<RawStr<'a>, ScanError> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(self.err("expected a string key"));
        }
        let key = self.string_body()?;
        match self.skip_ws() {
            Some(b':') => {
                self.i += 1;
                Ok(key)
            }
            Some(_) => Err(self.err("expected ':'")),
            None => Err(self.err("unexpected end of input in an object")),
        }
    }

    /// Reads the `[` of an array (after whitespace).
    pub fn begin_array(&mut self) -> Result<(), ScanError> {
        let peek = self.peek();
        if peek == Peek::Array {
            self.i += 1;
            return Ok(());
        }
        let end = peek == Peek::End;
        Err(self.err(if end {
            "unexpected end of input"
        } else {
            "expected an array"
        }))
    }

    /// Moves to the next element of the array whose `[` was read last:
    /// true when one follows (the caller reads it next), false after
    /// reading the array's `]`. `first` is true until the first call
    /// returns.
    pub fn next_element(&mut self, first: &mut bool) -> Result<bool, ScanError> {
        match self.skip_ws() {
            Some(b']') => {
                self.i += 1;
                return Ok(false);
            }
            Some(b',') if !*first => self.i += 1,
            Some(_) if *first => {}
            Some(_) => return Err(self.err("expected ',' or ']'")),
            None => return Err(self.err("unexpected end of input in an array")),
        }
        *first = false;
        Ok(true)
    }

    /// Reads a string value (after whitespace).
    pub fn string(&mut self) -> Result<RawStr<'a>, ScanError> {
        match self.skip_ws() {
            Some(b'"') => self.string_body(),
            Some(_) => Err(self.err("expected a string")),
            None => Err(self.err("unexpected end of input")),
        }
    }

    /// `self.i` is at the opening quote; leaves it after the closing one.
    #[inline(always)]
    fn string_body(&mut self) -> Result<RawStr<'a>, ScanError> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            // Eight bytes at a time to the next quote, backslash or control
            // character: string bodies are most of a Kubernetes object.
            while let Some(chunk) = b.get(i..i + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let (quotes, stops) = string_stops(u64::from_le_bytes(word));
                if stops != 0 {
                    let first = stops & stops.wrapping_neg();
                    i += (first.trailing_zeros() / 8) as usize;
                    if quotes & first != 0 {
                        // The closing quote, known without reading it again.
                        self.i = i + 1;
                        return Ok(RawStr {
                            body: &b[start..i],
                            at: start,
                            escaped,
                        });
                    }
                    break;
                }
                i += 8;
            }
            let Some(&c) = b.get(i) else {
                self.i = i;
                return Err(self.err("unexpected end of input in a string"));
            };
            match c {
                b'"' => {
                    self.i = i + 1;
                    return Ok(RawStr {
                        body: &b[start..i],
                        at: start,
                        escaped,
                    });
                }
                b'\\' => {
                    escaped = true;
                    match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let Some(unit) = hex4(b, i + 2) else {
                                // serde_json reads four bytes before it
                                // judges them: a short input is an EOF.
                                self.i = (i + 6).min(b.len());
                                return Err(self.err(if b.len() < i + 6 {
                                    "unexpected end of input in a string"
                                } else {
                                    "invalid \\u escape"
                                }));
                            };
                            self.surrogates |= (0xD800..=0xDFFF).contains(&unit);
                            i += 6;
                        }
                        Some(_) => {
                            self.i = i + 1;
                            return Err(self.err("invalid escape"));
                        }
                        None => {
                            self.i = i + 1;
                            return Err(self.err("unexpected end of input in a string"));
                        }
                    }
                }
                c if c < 0x20 => {
                    self.i = i;
                    return Err(self.err("control character in a string"));
                }
                // The tail of the input, fewer than eight bytes.
                _ => i += 1,
            }
        }
    }

    #[inline(always)]
    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
        self.i - start
    }

    /// `self.i` at `-` or a digit.
    #[inline(always)]
    fn number(&mut self) -> Result<(), ScanError> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.b.get(self.i) {
                    return Err(self.err("invalid number (leading zero)"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number (no digit after '.')"));
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number (no digit in the exponent)"));
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn literal(&mut self, word: &'static [u8]) -> Result<(), ScanError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            return Ok(());
        }
        // Find the offending byte for the error position.
        for &expected in word {
            match self.b.get(self.i) {
                Some(&c) if c == expected => self.i += 1,
                Some(_) => return Err(self.err("invalid literal")),
                None => return Err(self.err("unexpected end of input in a literal")),
            }
        }
        Ok(())
    }

    /// Reads one complete value (after whitespace), validating it.
    pub fn skip_value(&mut self) -> Result<(), ScanError> {
        // The innermost open container (true: object) stays in a local;
        // `nesting` holds the ones around it.
        let mut top: Option<bool> = None;
        self.nesting.clear();
        loop {
            // A value is expected here.
            match self.skip_ws() {
                Some(b'"') => {
                    self.string_body()?;
                }
                Some(b'{') => {
                    self.i += 1;
                    match self.skip_ws() {
                        Some(b'}') => self.i += 1,
                        Some(b'"') => {
                            if let Some(t) = top {
                                self.nesting.push(t);
                            }
                            top = Some(true);
                            self.key()?;
                            continue;
                        }
                        Some(_) => return Err(self.err("expected a string key or '}'")),
                        None => return Err(self.err("unexpected end of input in an object")),
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    match self.skip_ws() {
                        Some(b']') => self.i += 1,
                        Some(_) => {
                            if let Some(t) = top {
                                self.nesting.push(t);
                            }
                            top = Some(false);
                            continue;
                        }
                        None => return Err(self.err("unexpected end of input in an array")),
                    }
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return Err(self.err("expected a value")),
                None => return Err(self.err("unexpected end of input, expected a value")),
            }
            // A value ended: close what it ends, or go on to the next one.
            loop {
                let Some(object) = top else {
                    return Ok(());
                };
                match self.skip_ws() {
                    Some(b',') => {
                        self.i += 1;
                        if object {
                            self.skip_ws();
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        self.i += 1;
                        top = self.nesting.pop();
                    }
                    Some(b']') if !object => {
                        self.i += 1;
                        top = self.nesting.pop();
                    }
                    Some(_) if object => return Err(self.err("expected ',' or '}'")),
                    Some(_) => return Err(self.err("expected ',' or ']'")),
                    None if object => return Err(self.err("unexpected end of input in an object")),
                    None => return Err(self.err("unexpected end of input in an array")),
                }
            }
        }
    }

    /// Only whitespace may follow.
    pub fn finish(&mut self) -> Result<(), ScanError> {
        match self.skip_ws() {
            None => Ok(()),
            Some(_) => Err(self.err("trailing characters after the JSON value")),
        }
    }
}

/// True when `bytes` is one JSON value, surrounded by whitespace at most.
pub fn validate(bytes: &[u8]) -> Result<(), ScanError> {
    let mut s = Scanner::new(bytes);
    s.skip_value()?;
    s.finish()
}

#[cfg(test)]
mod tests;
