//! Scrubbing secrets out of text that is about to be logged (an exec
//! plugin's stderr, say).

/// Replaces every occurrence of each secret (at least 4 bytes long, so a
/// stray short value cannot blank out a whole message) and every PEM
/// private-key block with `[redacted]`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 4 && out.contains(s) {
            out = out.replace(s, "[redacted]");
        }
    }
    redact_pem_keys(&out)
}

/// A line inside a private key block is dropped whole, from its BEGIN line
/// to its END line (or to the end of the text).
fn redact_pem_keys(text: &str) -> String {
    if !text.contains("PRIVATE KEY") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        if line.contains("-----BEGIN") && line.contains("PRIVATE KEY") {
            inside = true;
            out.push_str("[redacted private key]\n");
        }
        if !inside {
            out.push_str(line);
        }
        if line.contains("-----END") && line.contains("PRIVATE KEY") {
            inside = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_key_blocks_are_removed() {
        let text = "got token abc123xyz for you\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\nbye\n";
        let r = redact(text, &["abc123xyz", "ab"]);
        assert_eq!(
            r,
            "got token [redacted] for you\n[redacted private key]\nbye\n"
        );
        assert_eq!(redact("plain", &[]), "plain");
    }
}
