//! Helpers shared by the fuzz targets.
//!
//! Split-input format (used by `chunked`, `framer`, `response_head`): the
//! first byte `n` (taken mod 32) is the number of cut lengths, the next `n`
//! bytes are the lengths (0..=255) of the first pieces, and everything after
//! them is the payload. Pieces are cut from the payload in order (each length
//! clamped to what is left); whatever remains is the last piece. A seed that
//! starts with `0x00` is therefore "no split", followed by the raw stream.

/// The payload and the pieces it is fed in (their concatenation is the payload).
pub struct Split<'a> {
    pub payload: &'a [u8],
    pub pieces: Vec<&'a [u8]>,
}

pub fn split(data: &[u8]) -> Split<'_> {
    let (&n, rest) = match data.split_first() {
        Some(x) => x,
        None => {
            return Split {
                payload: &[],
                pieces: Vec::new(),
            }
        }
    };
    let n = usize::from(n % 32).min(rest.len());
    let (lengths, payload) = rest.split_at(n);
    let mut pieces = Vec::with_capacity(n + 1);
    let mut left = payload;
    for &len in lengths {
        let take = usize::from(len).min(left.len());
        let (piece, tail) = left.split_at(take);
        pieces.push(piece);
        left = tail;
    }
    pieces.push(left);
    debug_assert_eq!(pieces.concat(), payload);
    Split { payload, pieces }
}
