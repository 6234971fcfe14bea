//! `servers` entries and INFO `connect_urls`: where a NATS client connects.

use std::fmt;

pub const DEFAULT_PORT: u16 = 4222;

/// One NATS server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `tls://`: TLS is required even if the server's INFO does not ask.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Learnt from a server's INFO rather than configured.
    pub discovered: bool,
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "tls" } else { "nats" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl ServerUrl {
    /// `nats://HOST[:PORT]`, `tls://HOST[:PORT]` or `HOST[:PORT]` (port 4222
    /// by default). Credentials in the URL are refused: they would end up
    /// in logs; the sink's auth keys read them from files.
    pub fn parse(text: &str) -> Result<ServerUrl, String> {
        let (tls, rest) = match text.split_once("://") {
            Some(("nats", rest)) => (false, rest),
            Some(("tls", rest)) => (true, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "unsupported scheme {scheme:?} in NATS server URL (use nats:// or tls://)"
                ))
            }
            None => (false, text),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            return Err("credentials in the NATS server URL are not allowed; use token_file, user + password_file, nkey_seed_file or credentials_file".into());
        }
        if rest.contains('/') || rest.contains('?') {
            return Err(format!("a NATS server URL has no path: {text:?}"));
        }
        let (host, port) = split_host_port(rest)?;
        Ok(ServerUrl {
            tls,
            host,
            port,
            discovered: false,
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let bad_port = |p: &str| format!("invalid port {p:?} in NATS server address {s:?}");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in NATS server address {s:?}"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("invalid NATS server address {s:?}")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => (s, None), // bare IPv6
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace()) {
        return Err(format!("no valid host in NATS server address {s:?}"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad_port(p))?,
        None => DEFAULT_PORT,
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults() {
        let u = ServerUrl::parse("nats://127.0.0.1:4333").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 4333));
        let u = ServerUrl::parse("tls://nats.example").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (true, "nats.example", 4222)
        );
        let u = ServerUrl::parse("[::1]:5").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 5));
        assert_eq!(u.to_string(), "nats://[::1]:5");
        assert_eq!(ServerUrl::parse("::1").unwrap().host, "::1");
        for bad in [
            "http://x",
            "nats://u:p@h",
            "nats://h:0",
            "nats://h:x",
            "nats://h/p",
            "",
            "[::1",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
