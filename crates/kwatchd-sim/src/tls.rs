//! TLS material: a CA generated per emulator and a server certificate it signs, valid for the loopback names.
//!
//! A real CA (rather than a self-signed leaf) matches what clients meet in clusters: they trust the CA from the
//! kubeconfig and verify the server's IP SAN, which is exactly what the daemon's TLS code must get right.

use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("sim tls: {e}"))
}

/// The CA, kept to issue client certificates.
pub(crate) struct Issuer {
    ca: rcgen::Certificate,
    key: KeyPair,
}

impl Issuer {
    /// A client certificate (CN = `user`, O = `groups`) and its PKCS#8 key, as PEM.
    pub(crate) fn client_cert(&self, user: &str, groups: &[&str]) -> io::Result<(String, String)> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        for g in groups {
            dn.push(DnType::OrganizationName, *g);
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca, &self.key).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Server config (HTTP/1.1 only in ALPN), the CA certificate as PEM, and the issuer of client certificates.
///
/// Client certificates are optional (bearer tokens keep working); one that is presented must be signed by the
/// CA. `server_names` are the SANs of the server certificate (IP addresses become IP SANs).
pub(crate) fn server_config(
    server_names: &[String],
) -> io::Result<(Arc<rustls::ServerConfig>, String, Issuer)> {
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kwatchd-sim-ca");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;

    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(server_names.to_vec()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kwatchd-sim");
    params.distinguished_name = dn;
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).map_err(err)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(err)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(err)?;
    // The Kubernetes watch protocol here is HTTP/1.1 only; a client offering only h2 fails the handshake.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let pem = ca.pem();
    Ok((Arc::new(cfg), pem, Issuer { ca, key: ca_key }))
}
