//! What a JetStream reply means for the record it answers: stored (maybe
//! as a duplicate), worth another try, or refused for good.

use crate::nats::proto::Message;
use serde::Deserialize;

/// JetStream error codes that will not heal by retrying the same message
/// (nats-server `server/errors.json`).
const MESSAGE_TOO_LARGE: u64 = 10054;
const HEADERS_TOO_LARGE: u64 = 10097;

#[derive(Debug, Deserialize)]
struct PubAck {
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u64,
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// The verdict on one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The stream holds the message (`duplicate`: it already did).
    Stored { seq: u64, duplicate: bool },
    /// Not stored; the same message may be stored later.
    Retry(String),
    /// Not stored, and never will be.
    Refused(String),
}

/// Classifies a reply to a publish meant for `stream`; `subject` gives
/// the publish's subject (rendered only for the message that needs it).
pub fn classify(message: &Message, subject: impl FnOnce() -> String, stream: &str) -> Reply {
    match message.status() {
        Some(503) => {
            return Reply::Retry(format!(
                "no JetStream stream captures subject {:?} (no responders): create stream {stream:?} with a subject filter matching it; kwatchd never creates streams",
                subject()
            ))
        }
        Some(code) if message.payload.is_empty() => {
            return Reply::Retry(format!("the server answered status {code} without a PubAck"))
        }
        _ => {}
    }
    if message.headers.is_none() {
        if let Some(stored) = plain_pub_ack(&message.payload, stream) {
            return stored;
        }
    }
    let ack: PubAck = match serde_json::from_slice(&message.payload) {
        Ok(a) => a,
        Err(e) => {
            return Reply::Retry(format!(
                "unreadable PubAck ({e}): {}",
                String::from_utf8_lossy(message.payload.get(..200).unwrap_or(&message.payload))
            ))
        }
    };
    if let Some(e) = ack.error {
        let text = format!(
            "JetStream refused the message: {} (code {}, err_code {})",
            e.description, e.code, e.err_code
        );
        return match e.err_code {
            MESSAGE_TOO_LARGE | HEADERS_TOO_LARGE => Reply::Refused(text),
            _ => Reply::Retry(text),
        };
    }
    match (ack.stream, ack.seq) {
        (Some(s), Some(seq)) if s == stream => Reply::Stored {
            seq,
            duplicate: ack.duplicate,
        },
        (Some(s), Some(_)) => Reply::Retry(format!(
            "stream {s:?} stored the message, not {stream:?} (a server without Nats-Expected-Stream support?)"
        )),
        _ => Reply::Retry("a PubAck without stream and seq".into()),
    }
}

/// The PubAck nats-server sends for almost every publish,
/// `{"stream":"<stream>","seq":N}` with `,"duplicate":true` after a
/// duplicate, read without serde (one per record). Anything else, a domain
/// or a byte out of place included, is left to the full parse.
fn plain_pub_ack(payload: &[u8], stream: &str) -> Option<Reply> {
    let rest = payload.strip_prefix(b"{\"stream\":\"")?;
    let rest = rest.strip_prefix(stream.as_bytes())?;
    let rest = rest.strip_prefix(b"\",\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, rest) = rest.split_at(digits);
    let duplicate = match rest {
        b"}" => false,
        b",\"duplicate\":true}" => true,
        _ => return None,
    };
    // No leading zeros (JSON has none), at most u64.
    if number.first() == Some(&b'0') && number.len() > 1 {
        return None;
    }
    let seq = std::str::from_utf8(number).ok()?.parse().ok()?;
    Some(Reply::Stored { seq, duplicate })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(headers: Option<&[u8]>, payload: &[u8]) -> Message {
        Message {
            subject: "_INBOX.x.1".into(),
            sid: 1,
            reply: None,
            headers: headers.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn replies_are_classified() {
        let c = |m: Message| classify(&m, || "kube.a".to_owned(), "KUBE");
        assert_eq!(
            c(msg(None, br#"{"stream":"KUBE","seq":42}"#)),
            Reply::Stored {
                seq: 42,
                duplicate: false
            }
        );
        assert_eq!(
            c(msg(None, br#"{"stream":"KUBE","seq":41,"duplicate":true}"#)),
            Reply::Stored {
                seq: 41,
                duplicate: true
            }
        );
        let Reply::Retry(r) = c(msg(Some(b"NATS/1.0 503\r\n\r\n"), b"")) else {
            panic!()
        };
        assert!(r.contains("no responders") && r.contains("KUBE"), "{r}");
        let too_big = br#"{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}"#;
        assert!(matches!(c(msg(None, too_big)), Reply::Refused(r) if r.contains("10054")));
        let unavailable = br#"{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}"#;
        assert!(matches!(c(msg(None, unavailable)), Reply::Retry(_)));
        assert!(matches!(
            c(msg(None, br#"{"stream":"OTHER","seq":1}"#)),
            Reply::Retry(_)
        ));
        assert!(matches!(c(msg(None, b"garbage")), Reply::Retry(_)));
        // Whatever the quick read does not take goes through serde, with
        // the same verdict.
        assert_eq!(
            c(msg(None, br#"{"stream":"KUBE","seq":7,"domain":"hub"}"#)),
            Reply::Stored {
                seq: 7,
                duplicate: false
            }
        );
        assert_eq!(
            c(msg(None, br#"{"stream":"KUBE", "seq":8}"#)),
            Reply::Stored {
                seq: 8,
                duplicate: false
            }
        );
        assert!(matches!(
            c(msg(None, br#"{"stream":"KUBE","seq":}"#)),
            Reply::Retry(_)
        ));
        assert!(matches!(
            c(msg(
                None,
                br#"{"stream":"KUBE","seq":99999999999999999999}"#
            )),
            Reply::Retry(_)
        ));
        assert!(matches!(
            c(msg(None, br#"{"stream":"KUBEX","seq":1}"#)),
            Reply::Retry(_)
        ));
        assert!(matches!(
            c(msg(Some(b"NATS/1.0 408 Timeout\r\n\r\n"), b"")),
            Reply::Retry(_)
        ));
    }
}
