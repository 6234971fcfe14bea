//! Per-cluster connection settings: where to connect, how to verify TLS,
//! which client certificate to present and which bearer token to send.
//! Files are watched: a changed CA or client certificate/key file is picked
//! up by the next connection, a token file is re-read when it changes, at
//! least once a minute, and after a 401; an exec plugin runs when its
//! credential is missing, about to expire or refused.

use super::credential::{ExecCredentials, Readiness};
use crate::config::{ClusterConfig, PemSource, Scheme, Secret};
use crate::kube::access::exec::ClusterInfo;
use crate::net::tls::{self, ClientIdentity, TlsSetupError, Trust};
use mio::{Registry, Token};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A token file is read again after this long even when its metadata did
/// not change (a rewrite within the same second, of the same length).
const TOKEN_REREAD: Duration = Duration::from_secs(60);

/// What a connection needs for TLS.
pub type TlsTarget = (Arc<ClientConfig>, ServerName<'static>);

pub struct ClusterRuntime {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub host_header: String,
    pub connect_timeout: Duration,
    /// A watch learnt that this server refuses streaming lists; watches
    /// with `initial_list = "auto"` use LISTs without trying.
    pub streaming_rejected: bool,
    https: Option<Https>,
    bearer: Bearer,
    exec: Option<ExecCredentials>,
}

/// How TLS is set up, and the last config built from it.
struct Https {
    trust: TrustSource,
    server_name: ServerName<'static>,
    /// Certificate and key from the configuration (an exec credential's
    /// win over them).
    identity: Option<(PemSource, PemSource)>,
    built: Option<Built>,
    /// A rebuild failed while an older config was still usable: said once.
    warned: bool,
}

#[derive(Clone)]
enum TrustSource {
    System,
    Insecure,
    CaFile(PathBuf),
    CaPem(Vec<u8>),
}

struct Built {
    config: Arc<ClientConfig>,
    /// The files it was built from, as they were then.
    stamps: Vec<Option<Stamp>>,
    exec_generation: u64,
}

type Stamp = (i64, i64, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::metadata(path).ok()?;
    Some((m.mtime(), m.mtime_nsec(), m.len(), m.ino()))
}

enum Bearer {
    None,
    Static(Secret),
    File(TokenFile),
}

impl ClusterRuntime {
    /// `index` is the cluster's position in the daemon's list: part of its
    /// credential plugin's poll tokens.
    pub fn new(config: &ClusterConfig, index: usize) -> Result<ClusterRuntime, TlsSetupError> {
        let https = match config.server.scheme {
            Scheme::Http => None,
            Scheme::Https => {
                let trust = if config.insecure_skip_tls_verify {
                    log::warn!(
                        "cluster {}: insecure_skip_tls_verify = true: the server's certificate is NOT verified; anyone on the path can read the token and forge events",
                        config.name
                    );
                    TrustSource::Insecure
                } else if let Some(data) = &config.certificate_authority_data {
                    TrustSource::CaPem(data.expose().to_vec())
                } else if let Some(ca) = &config.certificate_authority {
                    TrustSource::CaFile(ca.clone())
                } else {
                    TrustSource::System
                };
                let name = config
                    .tls_server_name
                    .as_deref()
                    .unwrap_or(&config.server.host);
                let server_name = tls::server_name(name)
                    .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e)))?;
                let identity = match (&config.client_certificate, &config.client_key) {
                    (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                    _ => None,
                };
                Some(Https {
                    trust,
                    server_name,
                    identity,
                    built: None,
                    warned: false,
                })
            }
        };
        let bearer = match (&config.token_file, &config.token) {
            (Some(path), _) => Bearer::File(TokenFile::new(path.clone())),
            (None, Some(token)) => Bearer::Static(token.clone()),
            (None, None) => Bearer::None,
        };
        let exec = config.exec.clone().map(|exec| {
            let info = ClusterInfo {
                server: format!(
                    "{}://{}{}",
                    match config.server.scheme {
                        Scheme::Http => "http",
                        Scheme::Https => "https",
                    },
                    config.server.host_header(),
                    config.server.base_path
                ),
                tls_server_name: config.tls_server_name.clone(),
                insecure_skip_tls_verify: config.insecure_skip_tls_verify,
                certificate_authority_data: match (
                    &config.certificate_authority_data,
                    &config.certificate_authority,
                ) {
                    (Some(d), _) => Some(d.expose().to_vec()),
                    (None, Some(p)) => fs::read(p).ok(),
                    (None, None) => None,
                },
            };
            ExecCredentials::new(&config.name, index, exec, &info)
        });
        log::info!(
            "cluster {}: {} from {}{}",
            config.name,
            config.server.host_header(),
            config.source,
            match &config.namespace {
                Some(ns) => format!(" (namespace {ns})"),
                None => String::new(),
            }
        );
        let mut runtime = ClusterRuntime {
            name: config.name.clone(),
            host: config.server.host.clone(),
            port: config.server.port,
            host_header: config.server.host_header(),
            connect_timeout: config.connect_timeout,
            streaming_rejected: false,
            https,
            bearer,
            exec,
        };
        // Bad TLS material is a start-up error, not a retry loop.
        runtime.tls_for_connect()?;
        Ok(runtime)
    }

    /// Whether this cluster uses TLS.
    pub fn is_https(&self) -> bool {
        self.https.is_some()
    }

    /// The TLS config for a new connection, rebuilt when a CA or client
    /// certificate/key file changed or an exec plugin gave a new
    /// certificate. A rebuild that fails keeps the last good config (files
    /// are not always replaced atomically), with one warning.
    pub fn tls_for_connect(&mut self) -> Result<Option<TlsTarget>, TlsSetupError> {
        let exec_cert = self
            .exec
            .as_ref()
            .and_then(|e| e.credential())
            .and_then(|c| c.client_cert.clone());
        let exec_generation = self.exec.as_ref().map_or(0, |e| e.generation());
        let Some(https) = &mut self.https else {
            return Ok(None);
        };
        let files = https.files();
        let stamps: Vec<Option<Stamp>> = files.iter().map(|p| stamp(p)).collect();
        if let Some(b) = &https.built {
            if b.stamps == stamps && b.exec_generation == exec_generation {
                return Ok(Some((b.config.clone(), https.server_name.clone())));
            }
        }
        match https.build(exec_cert.as_ref()) {
            Ok(config) => {
                if https.built.is_some() {
                    log::info!(
                        "cluster {}: TLS material changed; new connections use it",
                        self.name
                    );
                }
                https.warned = false;
                https.built = Some(Built {
                    config: config.clone(),
                    stamps,
                    exec_generation,
                });
                Ok(Some((config, https.server_name.clone())))
            }
            Err(e) => match &https.built {
                Some(b) => {
                    if !https.warned {
                        https.warned = true;
                        log::warn!(
                            "cluster {}: {e}; keeping the previous TLS material",
                            self.name
                        );
                    }
                    Ok(Some((b.config.clone(), https.server_name.clone())))
                }
                None => Err(e),
            },
        }
    }

    /// Before a request: whether the credentials are there. Starts the
    /// exec plugin when its credential is missing or expiring.
    pub fn readiness(&mut self, registry: &Registry, now: Instant) -> Readiness {
        match &mut self.exec {
            Some(exec) => exec.readiness(registry, now),
            None => Readiness::Ready,
        }
    }

    /// `Authorization` header value, if a token is configured and readable.
    pub fn authorization(&mut self) -> Option<String> {
        let exec_token = self
            .exec
            .as_ref()
            .and_then(|e| e.credential())
            .and_then(|c| c.token.as_ref())
            .and_then(Secret::as_str);
        if let Some(t) = exec_token {
            return Some(format!("Bearer {t}"));
        }
        let token = match &mut self.bearer {
            Bearer::None => return None,
            Bearer::Static(s) => s.as_str()?,
            Bearer::File(f) => f.current()?,
        };
        Some(format!("Bearer {token}"))
    }

    /// The server answered 401: re-read the token file and drop the exec
    /// credential before the next request.
    pub fn on_unauthorized(&mut self) {
        if let Bearer::File(f) = &mut self.bearer {
            f.invalidate();
        }
        if let Some(e) = &mut self.exec {
            e.invalidate();
        }
    }

    /// Exec plugin runs so far (0 without a plugin).
    pub fn plugin_runs(&self) -> u64 {
        self.exec.as_ref().map_or(0, ExecCredentials::runs)
    }

    pub fn owns(&self, token: Token) -> bool {
        self.exec.as_ref().is_some_and(|e| e.owns(token))
    }

    /// Readiness of a plugin source; true when a credential fetch ended.
    pub fn on_ready(&mut self, registry: &Registry, token: Token) -> bool {
        self.exec
            .as_mut()
            .is_some_and(|e| e.on_ready(registry, token))
    }

    pub fn on_sigchld(&mut self, registry: &Registry) -> bool {
        self.exec.as_mut().is_some_and(|e| e.on_sigchld(registry))
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.exec.as_ref().and_then(ExecCredentials::deadline)
    }

    pub fn on_timer(&mut self, registry: &Registry, now: Instant) -> bool {
        self.exec
            .as_mut()
            .is_some_and(|e| e.on_timer(registry, now))
    }
}

impl Https {
    /// Files whose change means a rebuild.
    fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let TrustSource::CaFile(p) = &self.trust {
            files.push(p.clone());
        }
        if let Some((c, k)) = &self.identity {
            for src in [c, k] {
                if let PemSource::File(p) = src {
                    files.push(p.clone());
                }
            }
        }
        files
    }

    fn build(
        &self,
        exec_cert: Option<&(Secret, Secret)>,
    ) -> Result<Arc<ClientConfig>, TlsSetupError> {
        let trust = match &self.trust {
            TrustSource::System => Trust::System,
            TrustSource::Insecure => Trust::Insecure,
            TrustSource::CaFile(p) => Trust::CaFile(p.clone()),
            TrustSource::CaPem(pem) => Trust::CaPem(pem.clone()),
        };
        let identity = match (exec_cert, &self.identity) {
            (Some((cert, key)), _) => Some(ClientIdentity::from_pem(
                cert.expose(),
                key.expose(),
                "from the exec credential plugin",
            )?),
            (None, Some((cert, key))) => {
                let source = format!("{} and {}", cert.describe(), key.describe());
                let read = |src: &PemSource| -> Result<Vec<u8>, TlsSetupError> {
                    match src {
                        PemSource::Data(d) => Ok(d.expose().to_vec()),
                        PemSource::File(p) => {
                            fs::read(p).map_err(|e| TlsSetupError::ClientIdentity {
                                source: source.clone(),
                                error: format!("cannot read {}: {e}", p.display()),
                            })
                        }
                    }
                };
                Some(ClientIdentity::from_pem(
                    &read(cert)?,
                    &read(key)?,
                    &source,
                )?)
            }
            (None, None) => None,
        };
        tls::client_config_with(&trust, identity)
    }
}

/// Routes a credential plugin's poll token; true when a fetch ended.
pub fn on_token(clusters: &mut [ClusterRuntime], registry: &Registry, token: Token) -> bool {
    // The token carries the cluster's id, not its position (a reload moves
    // clusters); plugin events are rare, so a search is fine.
    match clusters.iter_mut().find(|c| c.owns(token)) {
        Some(c) => c.on_ready(registry, token),
        // A stale event for a finished run.
        None => false,
    }
}

/// SIGCHLD for every running plugin; true when a fetch ended.
pub fn on_sigchld(clusters: &mut [ClusterRuntime], registry: &Registry) -> bool {
    clusters
        .iter_mut()
        .fold(false, |done, c| c.on_sigchld(registry) | done)
}

/// Plugin timeouts; true when a fetch ended.
pub fn on_timers(clusters: &mut [ClusterRuntime], registry: &Registry, now: Instant) -> bool {
    clusters
        .iter_mut()
        .filter(|c| c.deadline().is_some_and(|d| d <= now))
        .fold(false, |done, c| c.on_timer(registry, now) | done)
}

/// A bearer token file. Checked before every request (one `stat`), re-read
/// when it changed; a failed or empty read keeps the last good token, since
/// rotation writes are not always atomic.
pub struct TokenFile {
    path: PathBuf,
    token: Option<String>,
    stamp: Option<(i64, i64, u64, u64)>,
    /// When the file was last read.
    read_at: Option<Instant>,
    warned: bool,
    /// What the warning says happens while no token was ever read.
    without: &'static str,
}

impl TokenFile {
    pub fn new(path: PathBuf) -> Self {
        TokenFile {
            path,
            token: None,
            stamp: None,
            read_at: None,
            warned: false,
            without: "sending requests without a token",
        }
    }

    /// The same file checked on the receiving side (the metrics endpoint):
    /// `without` says what happens while no token was ever read.
    pub fn required(path: PathBuf, without: &'static str) -> Self {
        TokenFile {
            without,
            ..TokenFile::new(path)
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The server refused the token: read the file again before the next
    /// request, whatever its metadata says.
    pub fn invalidate(&mut self) {
        self.stamp = None;
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
        let fresh = self.read_at.is_some_and(|t| t.elapsed() < TOKEN_REREAD);
        if self.stamp == Some(stamp) && fresh {
            return;
        }
        self.read_at = Some(Instant::now());
        match fs::read_to_string(&self.path) {
            Ok(text) if !text.trim().is_empty() => {
                if self.token.as_deref().is_some_and(|t| t != text.trim()) {
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
                    self.without
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

    fn cluster_with_client_cert(dir: &std::path::Path) -> ClusterConfig {
        let mut c = crate::config::Config::parse(
            &format!(
                "[clusters.c]\nserver = \"https://127.0.0.1:6443\"\ncertificate_authority = \"{d}/ca.pem\"\nclient_certificate = \"{d}/c.crt\"\nclient_key = \"{d}/c.key\"\n\n[[watch]]\nname = \"w\"\ncluster = \"c\"\napi_version = \"v1\"\nresource = \"pods\"\nsinks = [\"s\"]\n\n[sinks.s]\ntype = \"stdout\"\n",
                d = dir.display()
            ),
            std::path::Path::new("k.toml"),
        )
        .unwrap();
        c.clusters.remove("c").unwrap()
    }

    fn write_pair(dir: &std::path::Path) {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_string()]).unwrap();
        fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
        let leaf = rcgen::generate_simple_self_signed(vec!["client".to_string()]).unwrap();
        fs::write(dir.join("c.crt"), leaf.cert.pem()).unwrap();
        fs::write(dir.join("c.key"), leaf.key_pair.serialize_pem()).unwrap();
    }

    #[test]
    fn rotated_tls_files_are_picked_up_by_the_next_connection() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path());
        let mut c = ClusterRuntime::new(&cluster_with_client_cert(dir.path()), 0).unwrap();
        let first = c.tls_for_connect().unwrap().unwrap().0;
        let same = c.tls_for_connect().unwrap().unwrap().0;
        assert!(Arc::ptr_eq(&first, &same), "unchanged files: same config");
        // A new pair (different length, so the stamp changes even within
        // one mtime tick).
        std::thread::sleep(Duration::from_millis(20));
        write_pair(dir.path());
        fs::write(
            dir.path().join("ca.pem"),
            format!(
                "{}\n",
                fs::read_to_string(dir.path().join("ca.pem")).unwrap()
            ),
        )
        .unwrap();
        let second = c.tls_for_connect().unwrap().unwrap().0;
        assert!(!Arc::ptr_eq(&first, &second), "rotated files: new config");
        // A half-written key keeps the last good config.
        fs::write(dir.path().join("c.key"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
        let kept = c.tls_for_connect().unwrap().unwrap().0;
        assert!(Arc::ptr_eq(&second, &kept));
    }

    #[test]
    fn an_ip_host_verifies_by_ip_unless_tls_server_name_is_set() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path());
        let mut config = cluster_with_client_cert(dir.path());
        let mut c = ClusterRuntime::new(&config, 0).unwrap();
        let name = c.tls_for_connect().unwrap().unwrap().1;
        assert!(matches!(name, ServerName::IpAddress(_)), "{name:?}");
        config.tls_server_name = Some("kubernetes".into());
        let mut c = ClusterRuntime::new(&config, 0).unwrap();
        let name = c.tls_for_connect().unwrap().unwrap().1;
        assert_eq!(name, ServerName::try_from("kubernetes").unwrap());
    }
}
