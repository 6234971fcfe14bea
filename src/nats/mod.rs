//! A NATS client for the mio loop, built from sans-I/O parts: the protocol
//! parser and encoders ([`proto`]), nkeys and creds files ([`nkey`]), and a
//! connection state machine ([`client`]) the loop drives with readiness
//! events and timers, like the HTTP client. The official Rust client needs a
//! tokio runtime; this one runs on the daemon's own loop (see BENCHMARKS.md
//! for the measurement behind that choice).

pub mod client;
pub mod nkey;
pub mod proto;
pub mod subject;
pub mod testing;
pub mod url;

pub use client::{ClientEvent, NatsClient};
pub use url::ServerUrl;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the client proves who it is. Secrets are read from files at each
/// connection attempt, so a rotated file is picked up on the next reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Token(PathBuf),
    UserPassword {
        user: String,
        password_file: PathBuf,
    },
    /// An nkey seed file (`SU…`); the server's nonce is signed with it.
    NkeySeed(PathBuf),
    /// A `.creds` file: user JWT plus the seed that signs the nonce.
    Credentials(PathBuf),
}

impl Auth {
    /// The CONNECT fields for this method, given the server's nonce.
    pub fn connect_fields(
        &self,
        nonce: Option<&str>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        use serde_json::Value;
        let read = |p: &PathBuf, what: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("cannot read {what} {}: {e}", p.display()))
        };
        let nonce = || {
            nonce.ok_or_else(|| {
                "the server sent no nonce to sign (is nkey/JWT auth enabled on it?)".to_string()
            })
        };
        let mut m = serde_json::Map::new();
        match self {
            Auth::None => {}
            Auth::Token(p) => {
                m.insert("auth_token".into(), Value::String(read(p, "token_file")?));
            }
            Auth::UserPassword {
                user,
                password_file,
            } => {
                m.insert("user".into(), Value::String(user.clone()));
                let pass = read(password_file, "password_file")?;
                m.insert("pass".into(), Value::String(pass));
            }
            Auth::NkeySeed(p) => {
                let key = nkey::KeyPair::from_seed(&read(p, "nkey_seed_file")?)
                    .map_err(|e| format!("nkey_seed_file {}: {e}", p.display()))?;
                m.insert("nkey".into(), Value::String(key.public_key()));
                m.insert("sig".into(), Value::String(key.sign_nonce(nonce()?)));
            }
            Auth::Credentials(p) => {
                let creds = nkey::Credentials::parse(&read(p, "credentials_file")?)
                    .map_err(|e| format!("credentials_file {}: {e}", p.display()))?;
                m.insert("jwt".into(), Value::String(creds.jwt.clone()));
                m.insert("sig".into(), Value::String(creds.key.sign_nonce(nonce()?)));
            }
        }
        Ok(m)
    }
}

/// What a [`NatsClient`] connects to and how.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// For log lines and the CONNECT `name`.
    pub name: String,
    pub servers: Vec<ServerUrl>,
    pub auth: Auth,
    /// Used for `tls://` servers and whenever a server's INFO requires TLS.
    /// `None`: the system trust store is used if TLS turns out needed.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Connect, TLS, CONNECT and the first PONG must fit in this.
    pub connect_timeout: Duration,
    /// A PING goes out this long after the last one; two unanswered PINGs
    /// mean the connection is dead.
    pub ping_interval: Duration,
}

/// The connection's state, as /status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Waiting before the next attempt.
    Disconnected,
    Resolving,
    Connecting,
    /// INFO, TLS, CONNECT: connected, not yet accepted.
    Handshaking,
    Connected,
}

impl ConnState {
    pub const ALL: [ConnState; 5] = [
        ConnState::Disconnected,
        ConnState::Resolving,
        ConnState::Connecting,
        ConnState::Handshaking,
        ConnState::Connected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Disconnected => "disconnected",
            ConnState::Resolving => "resolving",
            ConnState::Connecting => "connecting",
            ConnState::Handshaking => "handshaking",
            ConnState::Connected => "connected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_fields_read_files_and_sign_the_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("tok");
        std::fs::write(&tok, "s3cret\n").unwrap();
        let m = Auth::Token(tok).connect_fields(None).unwrap();
        assert_eq!(m["auth_token"], "s3cret");
        let seed = dir.path().join("seed");
        std::fs::write(
            &seed,
            "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU\n",
        )
        .unwrap();
        let e = Auth::NkeySeed(seed.clone())
            .connect_fields(None)
            .unwrap_err();
        assert!(e.contains("nonce"), "{e}");
        let m = Auth::NkeySeed(seed).connect_fields(Some("n0nce")).unwrap();
        assert!(m["nkey"].as_str().unwrap().starts_with('U'));
        assert!(!m["sig"].as_str().unwrap().contains('='));
        let e = Auth::Token(dir.path().join("missing"))
            .connect_fields(None)
            .unwrap_err();
        assert!(e.contains("token_file"), "{e}");
        assert_eq!(ConnState::ALL.len(), 5);
    }
}
