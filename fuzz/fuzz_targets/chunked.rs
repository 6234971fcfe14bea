//! ChunkedDecoder: decoding the payload fed in fuzzer-chosen pieces gives the
//! same output, the same end-of-body position, the same final state and the
//! same error (up to its excerpt, which quotes the current piece) as decoding
//! it in one call.
#![no_main]

use kwatchd::http::{ChunkedDecoder, ChunkedError};
use kwatchd_fuzz::split;
use libfuzzer_sys::fuzz_target;

/// The error without its excerpt (the excerpt quotes the slice being decoded,
/// which legitimately depends on the split).
fn kind(e: &ChunkedError) -> String {
    match e {
        ChunkedError::InvalidChunkSize { .. } => "InvalidChunkSize".into(),
        ChunkedError::MissingCrlfAfterData { .. } => "MissingCrlfAfterData".into(),
        ChunkedError::BareCr { during, .. } => format!("BareCr during {during}"),
        other => format!("{other:?}"),
    }
}

struct Outcome {
    out: Vec<u8>,
    /// Bytes of the payload consumed (the end of the body when done).
    consumed: usize,
    error: Option<String>,
    done: bool,
    boundary: bool,
    phase: &'static str,
}

fn run(pieces: &[&[u8]]) -> Outcome {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut error = None;
    for piece in pieces {
        let before = out.len();
        match d.decode(piece, &mut out) {
            Ok(n) => {
                assert!(
                    n <= piece.len(),
                    "consumed {n} of a {}-byte piece",
                    piece.len()
                );
                if n < piece.len() {
                    assert!(
                        d.is_done(),
                        "stopped early at {n}/{} but not done",
                        piece.len()
                    );
                }
                assert!(out.len() - before <= n, "more output than input consumed");
                consumed += n;
            }
            Err(e) => {
                error = Some(kind(&e));
                // The decoder is unusable afterwards and says so.
                assert_eq!(
                    d.decode(b"0\r\n\r\n", &mut Vec::new()),
                    Err(ChunkedError::AfterError)
                );
                break;
            }
        }
    }
    Outcome {
        out,
        consumed,
        error,
        done: d.is_done(),
        boundary: d.at_chunk_boundary(),
        phase: d.phase(),
    }
}

fuzz_target!(|data: &[u8]| {
    let s = split(data);
    let whole = run(&[s.payload]);
    let parts = run(&s.pieces);
    assert_eq!(whole.out, parts.out, "payload differs");
    assert_eq!(whole.error, parts.error, "error differs");
    assert_eq!(whole.done, parts.done, "is_done differs");
    assert_eq!(whole.phase, parts.phase, "phase differs");
    if whole.error.is_none() {
        assert_eq!(whole.consumed, parts.consumed, "end of body differs");
        assert_eq!(whole.boundary, parts.boundary, "at_chunk_boundary differs");
        if !whole.done {
            assert_eq!(
                whole.consumed,
                s.payload.len(),
                "not done but input left over"
            );
        }
    }
});
