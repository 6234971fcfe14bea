//! Per-cluster connection settings, resolved once at start: where to
//! connect, how to verify TLS, and the bearer token (re-read when its file
//! changes).

use crate::config::{ClusterConfig, Scheme};
use crate::net::tls::{self, TlsSetupError, Trust};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct ClusterRuntime {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub host_header: String,
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    pub token: Option<TokenFile>,
    pub connect_timeout: Duration,
    /// A watch learnt that this server refuses streaming lists; watches
    /// with `initial_list = "auto"` use LISTs without trying.
    pub streaming_rejected: bool,
}

impl ClusterRuntime {
    pub fn new(config: &ClusterConfig) -> Result<ClusterRuntime, TlsSetupError> {
        let tls = match config.server.scheme {
            Scheme::Http => None,
            Scheme::Https => {
                let trust = if config.insecure_skip_tls_verify {
                    log::warn!(
                        "cluster {}: insecure_skip_tls_verify = true: the server's certificate is NOT verified; anyone on the path can read the token and forge events",
                        config.name
                    );
                    Trust::Insecure
                } else if let Some(ca) = &config.certificate_authority {
                    Trust::CaFile(ca.clone())
                } else {
                    Trust::System
                };
                let name = tls::server_name(&config.server.host)
                    .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e)))?;
                Some((tls::client_config(&trust)?, name))
            }
        };
        Ok(ClusterRuntime {
            name: config.name.clone(),
            host: config.server.host.clone(),
            port: config.server.port,
            host_header: config.server.host_header(),
            tls,
            token: config.token_file.clone().map(TokenFile::new),
            connect_timeout: config.connect_timeout,
            streaming_rejected: false,
        })
    }

    /// `Authorization` header value, if a token is configured and readable.
    pub fn authorization(&mut self) -> Option<String> {
        let token = self.token.as_mut()?.current()?;
        Some(format!("Bearer {token}"))
    }
}

/// A bearer token file. Checked before every request (one `stat`), re-read
/// when it changed; a failed or empty read keeps the last good token, since
/// rotation writes are not always atomic.
pub struct TokenFile {
    path: PathBuf,
    token: Option<String>,
    stamp: Option<(i64, i64, u64, u64)>,
    warned: bool,
}

impl TokenFile {
    pub fn new(path: PathBuf) -> Self {
        TokenFile {
            path,
            token: None,
            stamp: None,
            warned: false,
        }
    }

    pub fn current(&mut self) -> Option<&str> {
        self.refresh();
        self.token.as_deref()
    }

    fn refresh(&mut self) {
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => return self.warn(&format!("cannot stat: {e}")),
        };
        let stamp = (meta.mtime(), meta.mtime_nsec(), meta.len(), meta.ino());
        if self.stamp == Some(stamp) {
            return;
        }
        match fs::read_to_string(&self.path) {
            Ok(text) if !text.trim().is_empty() => {
                if self.token.is_some() {
                    log::info!(
                        "token file {} changed; using the new token",
                        self.path.display()
                    );
                }
                self.token = Some(text.trim().to_owned());
                self.stamp = Some(stamp);
                self.warned = false;
            }
            Ok(_) => self.warn("the file is empty"),
            Err(e) => self.warn(&format!("cannot read: {e}")),
        }
    }

    fn warn(&mut self, what: &str) {
        if !self.warned {
            self.warned = true;
            log::warn!(
                "token file {}: {what}; {}",
                self.path.display(),
                if self.token.is_some() {
                    "keeping the last good token"
                } else {
                    "sending requests without a token"
                }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_reread_on_change_and_kept_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "one\n").unwrap();
        let mut t = TokenFile::new(path.clone());
        assert_eq!(t.current(), Some("one"));
        fs::write(&path, "two-longer").unwrap();
        assert_eq!(t.current(), Some("two-longer"));
        fs::remove_file(&path).unwrap();
        assert_eq!(t.current(), Some("two-longer"));
        fs::write(&path, "   ").unwrap();
        assert_eq!(t.current(), Some("two-longer"));
    }
}
