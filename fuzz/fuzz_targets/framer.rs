//! LineFramer with a 64-byte limit, fed in fuzzer-chosen pieces (lines pulled
//! after each piece, then `finish`): no line is longer than the limit or holds
//! a `\n`, and the lines are exactly those of a simple model of the input
//! (split at `\n`, one trailing `\r` dropped, empty lines skipped, stopping
//! with an error at the first line over the limit).
#![no_main]

use kwatchd::http::{LineFramer, LineTooLong};
use kwatchd_fuzz::split;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64;

/// The expected lines (slices of the input: no allocation per line, which
/// under ASan cost more than the framer itself), and whether a line over the
/// limit ends the stream.
fn model(input: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut lines = Vec::new();
    for seg in input.split(|&b| b == b'\n') {
        let line = seg.strip_suffix(b"\r").unwrap_or(seg);
        if line.len() > MAX {
            return (lines, true);
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    (lines, false)
}

/// The framer's lines, copied into one buffer (the framer lends each only
/// until the next call).
#[derive(Default)]
struct Lines {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Lines {
    fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.ends.push(self.bytes.len());
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, &e)| &self.bytes[s..e])
    }
}

/// Pulls lines; returns true if the framer reported the limit.
fn pull(f: &mut LineFramer, lines: &mut Lines, finish: bool) -> bool {
    loop {
        let next = if finish { f.finish() } else { f.next_line() };
        match next {
            None => return false,
            Some(Ok(line)) => {
                assert!(line.len() <= MAX, "line of {} bytes > {MAX}", line.len());
                assert!(!line.contains(&b'\n'), "line contains \\n");
                assert!(!line.is_empty(), "empty line returned");
                lines.push(line);
            }
            Some(Err(e)) => {
                assert_eq!(e, LineTooLong { limit: MAX });
                // The error is sticky.
                assert!(matches!(f.next_line(), Some(Err(_))));
                return true;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let s = split(data);
    let mut f = LineFramer::new(MAX);
    let mut lines = Lines::default();
    let mut failed = false;
    for piece in &s.pieces {
        f.extend(piece);
        if pull(&mut f, &mut lines, false) {
            failed = true;
            break;
        }
        // Memory stays bounded: at most one partial line (+ `\r`) is pending
        // once every complete line was pulled.
        assert!(f.buffered() <= MAX + 1, "{} bytes pending", f.buffered());
    }
    if !failed {
        failed = pull(&mut f, &mut lines, true);
        if !failed {
            assert_eq!(f.buffered(), 0, "bytes left after finish");
        }
    }
    let (expected, expected_failed) = model(s.payload);
    assert_eq!(failed, expected_failed, "error-ness differs from the model");
    assert!(
        lines.iter().eq(expected.iter().copied()),
        "lines differ from the model"
    );
    if !failed {
        // The lines are the input's lines, each once and in order.
        let normalised = s
            .payload
            .split(|&b| b == b'\n')
            .map(|seg| seg.strip_suffix(b"\r").unwrap_or(seg))
            .filter(|line| !line.is_empty());
        assert!(lines.iter().eq(normalised), "lines differ from the input's");
    }
});
