//! ResponseReader in Lines and Whole mode, fed arbitrary bytes in
//! fuzzer-chosen pieces (lines pulled after every piece, as the connection
//! code does), then EOF: never panics; a returned head has a status in
//! 100..=999 (and never an interim 1xx or a 101); and the same bytes fed in
//! one piece give the same head, lines, body, leftover and error-ness.
#![no_main]

use kwatchd::http::{BodyMode, ResponseHead, ResponseReader};
use kwatchd_fuzz::split;
use libfuzzer_sys::fuzz_target;

const MAX_LINE: usize = 64;
const MAX_BODY: usize = 256;

#[derive(Debug, PartialEq)]
struct Outcome {
    head: Option<ResponseHead>,
    lines: Vec<Vec<u8>>,
    body: Option<Vec<u8>>,
    /// Leftover bytes, compared only without an error.
    leftover: Vec<u8>,
    error: bool,
    body_done: bool,
}

/// Pulls lines until none is buffered; returns true on an error.
fn pull(r: &mut ResponseReader, lines: &mut Vec<Vec<u8>>) -> bool {
    while let Some(line) = r.next_line() {
        match line {
            Ok(l) => {
                assert!(l.len() <= MAX_LINE, "line of {} bytes", l.len());
                assert!(!l.contains(&b'\n'));
                lines.push(l.to_vec());
            }
            Err(_) => return true,
        }
    }
    false
}

fn check_head(r: &ResponseReader) {
    if let Some(h) = r.head() {
        assert!((100..=999).contains(&h.status), "status {}", h.status);
        assert!(
            !(100..200).contains(&h.status),
            "interim head {} returned",
            h.status
        );
    }
}

fn run(mode: BodyMode, pieces: &[&[u8]]) -> Outcome {
    let mut r = ResponseReader::new(mode);
    let mut lines = Vec::new();
    let mut error = false;
    for piece in pieces {
        if r.feed(piece).is_err() {
            error = true;
            // Errors are sticky.
            assert!(r.feed(b"x").is_err());
        }
        check_head(&r);
        if error {
            break;
        }
        if pull(&mut r, &mut lines) {
            error = true;
            break;
        }
    }
    if !error && r.on_eof().is_err() {
        error = true;
    }
    // Complete lines received before an error (or EOF) can still be pulled.
    if pull(&mut r, &mut lines) {
        error = true;
    }
    check_head(&r);
    let body = r.take_body();
    if body.is_some() {
        assert!(!error);
        assert!(r.body_done());
    }
    if let Some(b) = &body {
        assert!(
            b.len() <= MAX_BODY,
            "body of {} bytes > {MAX_BODY}",
            b.len()
        );
    }
    Outcome {
        head: r.head().cloned(),
        lines,
        body,
        leftover: if error { Vec::new() } else { r.take_leftover() },
        error,
        body_done: r.body_done(),
    }
}

fuzz_target!(|data: &[u8]| {
    let s = split(data);
    for mode in [
        BodyMode::Lines { max_line: MAX_LINE },
        BodyMode::Whole { max_body: MAX_BODY },
    ] {
        let whole = run(mode, &[s.payload]);
        let parts = run(mode, &s.pieces);
        assert_eq!(whole.head, parts.head, "{mode:?}: head differs");
        assert_eq!(whole.error, parts.error, "{mode:?}: error-ness differs");
        assert_eq!(whole.lines, parts.lines, "{mode:?}: lines differ");
        assert_eq!(whole.body, parts.body, "{mode:?}: body differs");
        assert_eq!(whole.leftover, parts.leftover, "{mode:?}: leftover differs");
        if !whole.error {
            assert_eq!(
                whole.body_done, parts.body_done,
                "{mode:?}: body_done differs"
            );
        }
    }
});
