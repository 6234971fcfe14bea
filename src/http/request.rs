//! Encoding of HTTP/1.1 requests.
//!
//! The request is written into a caller-owned `Vec<u8>` (the connection's
//! output buffer). Every field that comes from configuration or from the API
//! server (paths built from object names, label selectors, tokens read from
//! files) is validated first, so a stray CR/LF can never inject a header or a
//! second request.

use std::fmt;

use super::excerpt::excerpt;

/// One request to send. All fields are borrowed; `encode` copies them out.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method token, e.g. `GET`.
    pub method: &'a str,
    /// Value of the `Host` header, e.g. `127.0.0.1:6443` or `[::1]:80`.
    pub host: &'a str,
    /// Request target in origin form, e.g. `/api/v1/pods?watch=1`.
    pub path_and_query: &'a str,
    /// Extra headers, written in order after `Host` and `User-Agent`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Request body; `Content-Length` is added by `encode`.
    pub body: &'a [u8],
}

/// `User-Agent` sent unless the caller passes its own.
pub const USER_AGENT: &str = concat!("kwatchd/", env!("CARGO_PKG_VERSION"));

/// A request that cannot be encoded safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The method is empty or not an RFC 9110 token.
    InvalidMethod { excerpt: String },
    /// The path is empty, does not start with `/`, or contains whitespace or
    /// control characters (percent-encode them).
    InvalidPath { excerpt: String },
    /// The host is empty or contains whitespace or control characters.
    InvalidHost { excerpt: String },
    /// A header name is empty or not an RFC 9110 token.
    InvalidHeaderName { excerpt: String },
    /// A header value contains CR, LF, NUL or another control character.
    InvalidHeaderValue { name: String, excerpt: String },
    /// The caller passed a header that `encode` writes itself (`Host`,
    /// `Content-Length`) or one it cannot honour (`Transfer-Encoding`).
    ReservedHeader { name: String },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::InvalidMethod { excerpt } => write!(
                f,
                "invalid HTTP method \"{excerpt}\": use an uppercase token such as GET"
            ),
            RequestError::InvalidPath { excerpt } => write!(
                f,
                "invalid request path \"{excerpt}\": it must start with '/' and contain no spaces or \
                 control characters (percent-encode query values)"
            ),
            RequestError::InvalidHost { excerpt } => write!(
                f,
                "invalid Host \"{excerpt}\": expected host[:port] without spaces or control characters"
            ),
            RequestError::InvalidHeaderName { excerpt } => write!(
                f,
                "invalid header name \"{excerpt}\": only letters, digits and !#$%&'*+-.^_`|~ are allowed"
            ),
            RequestError::InvalidHeaderValue { name, excerpt } => write!(
                f,
                "invalid value for header {name}: \"{excerpt}\" contains CR, LF, NUL or another \
                 control character (check the token or config value for a trailing newline)"
            ),
            RequestError::ReservedHeader { name } => write!(
                f,
                "header {name} must not be set by the caller: the HTTP client writes it itself"
            ),
        }
    }
}

impl std::error::Error for RequestError {}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Visible ASCII or obs-text, no space, no controls: what a request target
/// and a Host value may contain.
fn is_visible(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b > b' ' && b != 0x7f)
}

/// A field value may contain SP, HTAB, VCHAR and obs-text (RFC 9110 §5.5);
/// any other control character (CR, LF and NUL included) is refused.
fn is_field_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b == b'\t' || b == b' ' || (b > b' ' && b != 0x7f))
}

impl Request<'_> {
    /// Appends the encoded request to `out`. On error nothing is appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RequestError> {
        self.validate()?;
        let mut user_agent = true;
        for (name, _) in self.headers {
            if name.eq_ignore_ascii_case("user-agent") {
                user_agent = false;
            }
        }
        out.reserve(128 + self.path_and_query.len() + self.body.len());
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path_and_query.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b"\r\n");
        if user_agent {
            out.extend_from_slice(b"User-Agent: ");
            out.extend_from_slice(USER_AGENT.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.trim_matches([' ', '\t']).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // Methods that carry a body get an explicit length even when it is 0,
        // otherwise some servers wait for a body or answer 411.
        let body_method = matches!(self.method, "POST" | "PUT" | "PATCH");
        if !self.body.is_empty() || body_method {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(self.body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body);
        Ok(())
    }

    fn validate(&self) -> Result<(), RequestError> {
        if !is_token(self.method) {
            return Err(RequestError::InvalidMethod {
                excerpt: excerpt(self.method.as_bytes()),
            });
        }
        let p = self.path_and_query;
        if !(p.starts_with('/') || p == "*") || !is_visible(p) {
            return Err(RequestError::InvalidPath {
                excerpt: excerpt(p.as_bytes()),
            });
        }
        if !is_visible(self.host) {
            return Err(RequestError::InvalidHost {
                excerpt: excerpt(self.host.as_bytes()),
            });
        }
        for (name, value) in self.headers {
            if !is_token(name) {
                return Err(RequestError::InvalidHeaderName {
                    excerpt: excerpt(name.as_bytes()),
                });
            }
            if ["host", "content-length", "transfer-encoding"]
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r))
            {
                return Err(RequestError::ReservedHeader {
                    name: (*name).to_string(),
                });
            }
            if !is_field_value(value) {
                return Err(RequestError::InvalidHeaderValue {
                    name: (*name).to_string(),
                    excerpt: excerpt(value.as_bytes()),
                });
            }
        }
        Ok(())
    }
}

/// Percent-encodes a query parameter value (RFC 3986): unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) are kept, every other UTF-8 byte becomes `%XX`
/// (uppercase hex). Use it for `labelSelector`, `fieldSelector`,
/// `resourceVersion`, `continue`, ...
pub fn percent_encode_query_value(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(path: &'a str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method: "GET",
            host: "127.0.0.1:6443",
            path_and_query: path,
            headers,
            body: b"",
        }
    }

    fn encode(r: &Request<'_>) -> Result<String, RequestError> {
        let mut out = Vec::new();
        r.encode(&mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn encodes_a_get() {
        let s = encode(&get(
            "/api/v1/pods?watch=1",
            &[
                ("Accept", "application/json"),
                ("Authorization", "Bearer abc"),
            ],
        ))
        .unwrap();
        assert_eq!(
            s,
            format!(
                "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: 127.0.0.1:6443\r\n\
                 User-Agent: {USER_AGENT}\r\nAccept: application/json\r\n\
                 Authorization: Bearer abc\r\n\r\n"
            )
        );
        assert!(USER_AGENT.starts_with("kwatchd/"));
    }

    #[test]
    fn caller_user_agent_replaces_default() {
        let s = encode(&get("/", &[("user-agent", "me/1")])).unwrap();
        assert!(!s.contains("kwatchd/"));
        assert!(s.contains("\r\nuser-agent: me/1\r\n"));
    }

    #[test]
    fn ipv6_host() {
        let mut r = get("/", &[]);
        r.host = "[::1]:80";
        assert!(encode(&r).unwrap().contains("\r\nHost: [::1]:80\r\n"));
    }

    #[test]
    fn post_with_body_and_empty_post() {
        let r = Request {
            method: "POST",
            host: "h",
            path_and_query: "/hook",
            headers: &[("Content-Type", "application/json")],
            body: b"{}",
        };
        let s = encode(&r).unwrap();
        assert!(s.ends_with("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"));
        let r = Request { body: b"", ..r };
        assert!(encode(&r).unwrap().ends_with("Content-Length: 0\r\n\r\n"));
        // GET without body: no Content-Length.
        assert!(!encode(&get("/", &[])).unwrap().contains("Content-Length"));
    }

    #[test]
    fn header_injection_is_rejected() {
        for v in ["a\r\nX-Evil: 1", "a\n", "a\r", "a\0b", "\x7f"] {
            let h = [("Authorization", v)];
            assert!(matches!(
                encode(&get("/", &h)),
                Err(RequestError::InvalidHeaderValue { .. })
            ));
        }
        let h = [("X-Evil\r\nA", "1")];
        assert!(matches!(
            encode(&get("/", &h)),
            Err(RequestError::InvalidHeaderName { .. })
        ));
        for p in ["/a\r\nHost: x", "/a b", "/a\0", "", "noslash"] {
            assert!(matches!(
                encode(&get(p, &[])),
                Err(RequestError::InvalidPath { .. })
            ));
        }
        let mut r = get("/", &[]);
        r.method = "GET /x HTTP/1.1\r\n";
        assert!(matches!(
            encode(&r),
            Err(RequestError::InvalidMethod { .. })
        ));
        r.method = "";
        assert!(matches!(
            encode(&r),
            Err(RequestError::InvalidMethod { .. })
        ));
        let mut r = get("/", &[]);
        r.host = "h\r\nX: y";
        assert!(matches!(encode(&r), Err(RequestError::InvalidHost { .. })));
    }

    #[test]
    fn error_leaves_output_untouched_and_is_readable() {
        let mut out = b"prev".to_vec();
        let h = [("Authorization", "Bearer tok\n")];
        let err = get("/", &h).encode(&mut out).unwrap_err();
        assert_eq!(out, b"prev");
        let text = err.to_string();
        assert!(text.contains("Authorization"), "{text}");
        assert!(text.contains("\\n"), "{text}");
    }

    #[test]
    fn reserved_headers_are_rejected() {
        for n in ["Host", "content-length", "Transfer-Encoding"] {
            let h = [(n, "1")];
            assert!(matches!(
                encode(&get("/", &h)),
                Err(RequestError::ReservedHeader { .. })
            ));
        }
    }

    #[test]
    fn tab_in_value_is_allowed() {
        assert!(encode(&get("/", &[("X", "a\tb")])).is_ok());
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode_query_value("aZ09-._~"), "aZ09-._~");
        assert_eq!(
            percent_encode_query_value("app in (a,b),tier!=x"),
            "app%20in%20%28a%2Cb%29%2Ctier%21%3Dx"
        );
        assert_eq!(percent_encode_query_value("é/&+"), "%C3%A9%2F%26%2B");
        assert_eq!(percent_encode_query_value(""), "");
    }
}
