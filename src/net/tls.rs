//! rustls client configuration for a cluster.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug)]
pub enum TlsSetupError {
    ReadCa {
        path: PathBuf,
        error: String,
    },
    NoCertificates {
        path: PathBuf,
    },
    NoSystemRoots,
    /// Inline CA data (kubeconfig `certificate-authority-data`).
    BadCaData {
        error: String,
    },
    /// Client certificate or key: where they came from, what is wrong.
    /// Never holds the key's content.
    ClientIdentity {
        source: String,
        error: String,
    },
    Rustls(rustls::Error),
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadCa { path, error } => {
                write!(f, "cannot read certificate_authority {}: {error}", path.display())
            }
            Self::NoCertificates { path } => write!(
                f,
                "certificate_authority {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                path.display()
            ),
            Self::NoSystemRoots => write!(
                f,
                "no certificate_authority is configured and the system trust store has no usable certificate; set certificate_authority"
            ),
            Self::BadCaData { error } => {
                write!(f, "certificate-authority-data is unusable: {error}")
            }
            Self::ClientIdentity { source, error } => {
                write!(f, "client certificate/key ({source}): {error}")
            }
            Self::Rustls(e) => write!(f, "TLS setup failed: {e}"),
        }
    }
}

impl std::error::Error for TlsSetupError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let read_err = |e: &dyn fmt::Display| TlsSetupError::ReadCa {
        path: path.to_owned(),
        error: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(&e))?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// How the server's certificate is checked.
#[derive(Debug, Clone)]
pub enum Trust {
    /// PEM CA file.
    CaFile(PathBuf),
    /// PEM CA bundle given inline.
    CaPem(Vec<u8>),
    /// The operating system's trust store.
    System,
    /// No verification at all (`insecure_skip_tls_verify`).
    Insecure,
}

pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, TlsSetupError> {
    client_config_with(trust, None)
}

/// A client certificate chain and its private key, for mutual TLS.
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClientIdentity({} certificates, key hidden)",
            self.chain.len()
        )
    }
}

impl ClientIdentity {
    /// Parses PEM; `source` names where it came from in errors (which never
    /// quote the PEM).
    pub fn from_pem(cert: &[u8], key: &[u8], source: &str) -> Result<Self, TlsSetupError> {
        let err = |error: String| TlsSetupError::ClientIdentity {
            source: source.to_string(),
            error,
        };
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("the certificate is not valid PEM ({e})")))?;
        if chain.is_empty() {
            return Err(err(
                "the certificate holds no -----BEGIN CERTIFICATE----- block".to_string(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
            err(
                "the key holds no usable PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)"
                    .to_string(),
            )
        })?;
        Ok(ClientIdentity { chain, key })
    }
}

/// [`client_config`] presenting `identity` when the server asks for a
/// client certificate.
pub fn client_config_with(
    trust: &Trust,
    identity: Option<ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Rustls)?;
    let builder = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))),
        Trust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            for cert in load_ca_file(path)? {
                roots.add(cert).map_err(TlsSetupError::Rustls)?;
            }
            builder.with_root_certificates(roots)
        }
        Trust::CaPem(pem) => {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsSetupError::BadCaData {
                    error: format!("not valid PEM ({e})"),
                })?;
            if certs.is_empty() {
                return Err(TlsSetupError::BadCaData {
                    error: "no -----BEGIN CERTIFICATE----- block".to_string(),
                });
            }
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert).map_err(TlsSetupError::Rustls)?;
            }
            builder.with_root_certificates(roots)
        }
        Trust::System => {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsSetupError::NoSystemRoots);
            }
            builder.with_root_certificates(roots)
        }
    };
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| TlsSetupError::ClientIdentity {
                source: "client certificate".to_string(),
                error: format!("the key does not fit the certificate or is unsupported ({e})"),
            })?,
    };
    // HTTP/1.1 only: no ALPN offer of h2 (the default offers nothing).
    Ok(Arc::new(config))
}

/// The name the certificate must carry: a DNS name or an IP address.
///
/// An IP address (bracketed or not) becomes `ServerName::IpAddress`, so
/// rustls matches it against the certificate's IP SANs (in-cluster API
/// servers are reached by IP).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))
}

/// `insecure_skip_tls_verify = true`: signatures are still checked so the
/// handshake is well-formed, but the certificate chain and name are not.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_hosts_are_ip_server_names() {
        for host in ["10.0.0.1", "::1", "[fd00::1]"] {
            assert!(
                matches!(server_name(host), Ok(ServerName::IpAddress(_))),
                "{host}"
            );
        }
        assert!(matches!(
            server_name("kubernetes.default.svc"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name").is_err());
    }

    #[test]
    fn identity_errors_never_quote_the_key() {
        let e = ClientIdentity::from_pem(b"nope", b"SECRETKEY", "x").unwrap_err();
        assert!(!e.to_string().contains("SECRETKEY"), "{e}");
        let cert = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
        let e =
            ClientIdentity::from_pem(cert.cert.pem().as_bytes(), b"SECRETKEY", "x").unwrap_err();
        assert!(e.to_string().contains("private key") && !e.to_string().contains("SECRETKEY"));
        let id = ClientIdentity::from_pem(
            cert.cert.pem().as_bytes(),
            cert.key_pair.serialize_pem().as_bytes(),
            "x",
        )
        .unwrap();
        assert!(client_config_with(&Trust::Insecure, Some(id)).is_ok());
    }
}
