//! The NATS protocol parser (`nats::proto::Parser`, payload limit 256),
//! fed in fuzzer-chosen pieces (operations pulled after each) versus in one
//! piece: never panics; the same operations and the same error-ness either
//! way; a message's payload (headers included) is at most the limit, its
//! header block never longer than the message; errors are sticky; once
//! every operation is pulled without error, only a partial operation is
//! left (an unfinished control line stays under the control-line limit).
#![no_main]

use kwatchd::nats::proto::{Parser, ServerOp, MAX_CONTROL_LINE};
use kwatchd_fuzz::split;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 256;

/// Pulls every complete operation; `Err` once the parser reports one.
fn pull(p: &mut Parser, ops: &mut Vec<ServerOp>) -> Result<(), ()> {
    loop {
        match p.next_op() {
            Ok(Some(op)) => {
                if let ServerOp::Msg(m) = &op {
                    let h = m.headers.as_ref().map_or(0, Vec::len);
                    assert!(h + m.payload.len() <= LIMIT, "message over the limit");
                }
                ops.push(op);
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                // Sticky: the stream cannot be resynchronised.
                assert_eq!(p.next_op(), Err(e));
                return Err(());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let s = split(data);
    let mut pieces = Parser::new(LIMIT);
    let mut ops = Vec::new();
    let mut failed = false;
    for piece in &s.pieces {
        pieces.feed(piece);
        if pull(&mut pieces, &mut ops).is_err() {
            failed = true;
            break;
        }
    }
    let mut whole = Parser::new(LIMIT);
    whole.feed(s.payload);
    let mut whole_ops = Vec::new();
    let whole_failed = pull(&mut whole, &mut whole_ops).is_err();
    assert_eq!(failed, whole_failed, "error-ness depends on the split");
    if failed {
        // Pieces stop at the first error: what came before is the same.
        assert!(whole_ops.starts_with(&ops) || ops.starts_with(&whole_ops));
    } else {
        assert_eq!(ops, whole_ops, "operations depend on the split");
        // What is left is one unfinished operation: a control line under
        // the limit, or a message waiting for its payload.
        assert!(whole.buffered() <= MAX_CONTROL_LINE + LIMIT + 2);
    }
});
