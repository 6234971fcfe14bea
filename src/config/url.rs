//! The API server address: `http[s]://HOST[:PORT][/BASE/PATH]`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A parsed API server URL. Host names are lowercased; IPv6 addresses are
/// kept without brackets; `base_path` is `""` or `/seg[/seg...]` without a
/// trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub base_path: String,
}

impl ServerUrl {
    /// Parses `http[s]://HOST[:PORT][/PATH]`. Refused: other schemes, user
    /// info, query, fragment, empty or invalid host, invalid port.
    pub fn parse(s: &str) -> Result<ServerUrl, String> {
        let (scheme, rest) = split_scheme(s)?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(
                "user info (user:password@) is not allowed in the server URL; use token_file"
                    .to_string(),
            );
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            Some(p) => parse_port(p)?,
            None => scheme.default_port(),
        };
        Ok(ServerUrl {
            scheme,
            host,
            port,
            base_path: parse_base_path(path)?,
        })
    }

    /// Value for the `Host` header: `host:port`, IPv6 in brackets.
    pub fn host_header(&self) -> String {
        format!("{}:{}", self.bracketed_host(), self.port)
    }

    /// 127.0.0.0/8, ::1 or `localhost`.
    pub fn is_loopback(&self) -> bool {
        if self.host == "localhost" {
            return true;
        }
        if let Ok(v4) = self.host.parse::<Ipv4Addr>() {
            return v4.is_loopback();
        }
        self.host
            .parse::<Ipv6Addr>()
            .is_ok_and(|v6| v6.is_loopback())
    }

    /// Name to verify the server certificate against (host without brackets).
    pub fn server_name(&self) -> &str {
        &self.host
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.bracketed_host())?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        write!(f, "{}", self.base_path)
    }
}

/// A webhook endpoint: `http[s]://HOST[:PORT][/PATH][?QUERY]`.
///
/// Unlike [`ServerUrl`] (a base that API paths are appended to), the path is
/// kept exactly as written (a trailing slash can matter to the receiver) and
/// a query is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebhookUrl {
    /// Scheme, host and port; its `base_path` is always empty.
    pub origin: ServerUrl,
    /// The request-target sent on the request line: the path (at least
    /// `/`) and the query, if any, e.g. `/hooks/kwatchd?team=web`.
    pub target: String,
}

impl WebhookUrl {
    /// Parses `http[s]://HOST[:PORT][/PATH][?QUERY]`. Refused: other
    /// schemes, user info, fragment, invalid host or port, spaces, control
    /// and non-ASCII characters in the path or query.
    pub fn parse(s: &str) -> Result<WebhookUrl, String> {
        let webhook = |e: String| e.replace("invalid server URL", "invalid webhook URL");
        let (scheme, rest) = split_scheme(s).map_err(webhook)?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        if authority.contains('@') {
            // Credentials in a URL end up in logs; headers are kept out of them.
            return Err(
                "user info (user:password@) is not allowed in the webhook URL; send credentials in `headers`, e.g. Authorization = \"Bearer ${TOKEN}\""
                    .to_string(),
            );
        }
        let (host, port) = split_host_port(authority).map_err(webhook)?;
        let port = match port {
            Some(p) => parse_port(p).map_err(webhook)?,
            None => scheme.default_port(),
        };
        if target.contains('#') {
            return Err("invalid webhook URL: a fragment (#...) is not allowed".to_string());
        }
        let bad = target
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || !c.is_ascii());
        if let Some(c) = bad {
            return Err(format!(
                "invalid webhook URL: character {c:?} is not allowed in the path or query (percent-encode it)"
            ));
        }
        let target = if target.starts_with('/') {
            target.to_string()
        } else {
            // "https://h" or "https://h?x=1": the path is "/".
            format!("/{target}")
        };
        Ok(WebhookUrl {
            origin: ServerUrl {
                scheme,
                host,
                port,
                base_path: String::new(),
            },
            target,
        })
    }

    pub fn is_loopback(&self) -> bool {
        self.origin.is_loopback()
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin, self.target)
    }
}

fn split_scheme(s: &str) -> Result<(Scheme, &str), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!(
            "invalid server URL {s:?}: missing scheme; expected https://HOST[:PORT][/PATH]"
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok((Scheme::Https, rest)),
        "http" => Ok((Scheme::Http, rest)),
        _ => Err(format!(
            "invalid server URL {s:?}: unsupported scheme {scheme:?}; expected https or http"
        )),
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(String, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("invalid server URL: '[' without ']' around the IPv6 address")?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| format!("invalid server URL: {v6:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                format!("invalid server URL: unexpected {after:?} after the IPv6 address")
            })?),
        };
        return Ok((v6.to_ascii_lowercase(), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    check_host(host)?;
    Ok((host.to_ascii_lowercase(), port))
}

/// A DNS name or dotted-quad IPv4 address.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("invalid server URL: the host is missing".to_string());
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return host
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| format!("invalid server URL: {host:?} is not a valid IPv4 address"));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "invalid server URL: {host:?} is not a valid host name"
        ))
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    let valid = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(p) if valid && p != 0 => Ok(p),
        _ => Err(format!(
            "invalid server URL: port {port:?} is not a number from 1 to 65535"
        )),
    }
}

fn parse_base_path(path: &str) -> Result<String, String> {
    if path.contains('?') {
        return Err("invalid server URL: a query (?...) is not allowed".to_string());
    }
    if path.contains('#') {
        return Err("invalid server URL: a fragment (#...) is not allowed".to_string());
    }
    let bad = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || !c.is_ascii());
    if let Some(c) = bad {
        return Err(format!(
            "invalid server URL: character {c:?} is not allowed in the path (percent-encode it)"
        ));
    }
    Ok(path.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ServerUrl {
        ServerUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn https_with_port() {
        let u = url("https://127.0.0.1:6443");
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 6443);
        assert_eq!(u.base_path, "");
        assert_eq!(u.host_header(), "127.0.0.1:6443");
        assert!(u.is_loopback());
        assert_eq!(u.to_string(), "https://127.0.0.1:6443");
    }

    #[test]
    fn default_ports_and_base_path() {
        let u = url("https://Kube.Example.com/k8s/api-proxy/");
        assert_eq!((u.host.as_str(), u.port), ("kube.example.com", 443));
        assert_eq!(u.base_path, "/k8s/api-proxy");
        assert!(!u.is_loopback());
        assert_eq!(u.to_string(), "https://kube.example.com/k8s/api-proxy");
        assert_eq!(url("http://localhost").port, 80);
        assert_eq!(url("https://a.example/").base_path, "");
        assert_eq!(url("HTTPS://a.example").scheme, Scheme::Https);
    }

    #[test]
    fn ipv6() {
        let u = url("https://[::1]:6443");
        assert_eq!(u.host, "::1");
        assert_eq!(u.host_header(), "[::1]:6443");
        assert!(u.is_loopback());
        assert_eq!(u.to_string(), "https://[::1]:6443");
        let u = url("https://[fd00::10]");
        assert_eq!((u.host.as_str(), u.port), ("fd00::10", 443));
        assert!(!u.is_loopback());
    }

    #[test]
    fn loopback() {
        for s in [
            "http://127.0.0.1",
            "http://127.9.8.7:8080",
            "http://localhost:8001",
            "http://[::1]",
        ] {
            assert!(url(s).is_loopback(), "{s}");
        }
        for s in [
            "http://128.0.0.1",
            "http://localhost.example.com",
            "http://[::2]",
            "http://10.0.0.1",
        ] {
            assert!(!url(s).is_loopback(), "{s}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "https://k.example:6443/base",
            "http://[::1]:8080",
            "https://10.0.0.1",
        ] {
            let u = url(s);
            assert_eq!(url(&u.to_string()), u);
            assert_eq!(u.to_string(), s);
        }
    }

    #[test]
    fn bad_shapes() {
        let cases = [
            ("127.0.0.1:6443", "missing scheme"),
            ("kube.example.com", "missing scheme"),
            ("ftp://kube.example.com", "unsupported scheme"),
            ("unix:///var/run/k.sock", "unsupported scheme"),
            ("https://user:pw@kube.example.com", "user info"),
            ("https://token@kube.example.com", "user info"),
            ("https://kube.example.com/?watch=1", "query"),
            ("https://kube.example.com?x", "query"),
            ("https://kube.example.com/#frag", "fragment"),
            ("https://kube.example.com:0", "port"),
            ("https://kube.example.com:65536", "port"),
            ("https://kube.example.com:", "port"),
            ("https://kube.example.com:+443", "port"),
            ("https://kube.example.com:http", "port"),
            ("https://kube.example.com:443:1", "port"),
            ("https://", "host is missing"),
            ("https://:6443", "host is missing"),
            ("https://kube example.com", "host name"),
            ("https://-kube.example.com", "host name"),
            ("https://kube..example.com", "host name"),
            ("https://127.1", "IPv4"),
            ("https://300.0.0.1", "IPv4"),
            ("https://[::1", "']'"),
            ("https://[zz::1]", "IPv6"),
            ("https://[::1]x", "after the IPv6"),
            ("https://::1", "host is missing"),
            ("https://k.example/a b", "not allowed in the path"),
            ("", "missing scheme"),
        ];
        for (s, want) in cases {
            let e = ServerUrl::parse(s).expect_err(s);
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn webhook_urls() {
        let u = WebhookUrl::parse("https://Hooks.Example.com/kwatchd/?team=web&x=%20").unwrap();
        assert_eq!(u.origin.host, "hooks.example.com");
        assert_eq!(u.origin.port, 443);
        assert_eq!(u.origin.base_path, "");
        assert_eq!(u.target, "/kwatchd/?team=web&x=%20");
        assert_eq!(
            u.to_string(),
            "https://hooks.example.com/kwatchd/?team=web&x=%20"
        );
        let u = WebhookUrl::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(u.target, "/");
        assert!(u.is_loopback());
        assert_eq!(u.to_string(), "http://127.0.0.1:9000/");
        assert_eq!(WebhookUrl::parse("https://h?a=1").unwrap().target, "/?a=1");
        assert_eq!(
            WebhookUrl::parse("https://[::1]:8443/x")
                .unwrap()
                .origin
                .host,
            "::1"
        );
        let cases = [
            ("hooks.example.com/x", "invalid webhook URL"),
            ("ftp://h/x", "unsupported scheme"),
            ("https://user:pw@h/x", "send credentials in `headers`"),
            ("https://h/x#frag", "fragment"),
            ("https://h/a b", "not allowed in the path or query"),
            ("https://h/?q=é", "not allowed in the path or query"),
            ("https://h:0/", "port"),
            ("https:///x", "host is missing"),
        ];
        for (s, want) in cases {
            let e = WebhookUrl::parse(s).expect_err(s);
            assert!(e.contains(want), "{s}: {e}");
            assert!(!e.contains("server URL"), "{s}: {e}");
        }
    }
}
