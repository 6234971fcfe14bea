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

/// Server config (HTTP/1.1 only in ALPN) and the CA certificate as PEM.
pub(crate) fn server_config() -> io::Result<(Arc<rustls::ServerConfig>, String)> {
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kwatchd-sim-ca");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;

    let key = KeyPair::generate().map_err(err)?;
    let names = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    let mut params = CertificateParams::new(names).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kwatchd-sim");
    params.distinguished_name = dn;
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(err)?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(err)?;
    // The Kubernetes watch protocol here is HTTP/1.1 only; a client offering only h2 fails the handshake.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), ca.pem()))
}
