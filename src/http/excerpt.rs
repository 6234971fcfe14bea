//! Short, escaped excerpts of untrusted bytes for error messages.
//!
//! Errors quote the bytes that broke the protocol so that an operator can see
//! what the peer actually sent (a proxy's HTML error page, a TLS alert, garbage)
//! without flooding the log or writing control characters to it.

/// Maximum number of characters of escaped text in an excerpt (before the `…`).
pub const EXCERPT_MAX: usize = 40;

/// Escapes `bytes` (Rust byte-string escapes: `\r`, `\n`, `\x00`, `\"`, ...) and
/// cuts the result at [`EXCERPT_MAX`] characters, appending `…` when cut.
pub fn excerpt(bytes: &[u8]) -> String {
    // One allocation: errors about hostile input are built often (a peer
    // sending garbage, the fuzzers), and a String per byte showed up there.
    let mut out = String::with_capacity(EXCERPT_MAX + '…'.len_utf8());
    for &b in bytes {
        let escaped = b.escape_ascii();
        if out.len() + escaped.len() > EXCERPT_MAX {
            out.push('…');
            return out;
        }
        out.extend(escaped.map(char::from));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_bytes_and_quotes() {
        assert_eq!(excerpt(b"zz\r\n"), "zz\\r\\n");
        assert_eq!(excerpt(b"\x00\"\xff"), "\\x00\\\"\\xff");
    }

    #[test]
    fn cuts_long_input() {
        let s = excerpt(&[b'a'; 100]);
        assert_eq!(s.chars().count(), EXCERPT_MAX + 1);
        assert!(s.ends_with('…'));
        assert_eq!(excerpt(&[b'a'; EXCERPT_MAX]), "a".repeat(EXCERPT_MAX));
    }

    #[test]
    fn never_splits_an_escape() {
        let s = excerpt(&[0u8; 30]);
        assert!(s.trim_end_matches('…').ends_with("\\x00"));
    }
}
