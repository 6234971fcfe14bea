//! The ExecCredential exchange with a credential plugin, sans I/O: the
//! `KUBERNETES_EXEC_INFO` the plugin gets, and the credential it prints.
//!
//! Error messages never quote the plugin's output: it holds secrets.

use super::{ExecApiVersion, ExecConfig, Secret};
use base64::Engine;
use serde::Deserialize;
use std::time::{Duration, SystemTime};

/// What a plugin gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub token: Option<Secret>,
    /// PEM certificate and key (both or neither).
    pub client_cert: Option<(Secret, Secret)>,
    /// `None`: valid until the server refuses it (a 401).
    pub expires: Option<SystemTime>,
}

#[derive(Deserialize)]
struct ExecCredential {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Status {
    token: Option<String>,
    #[serde(rename = "expirationTimestamp")]
    expiration_timestamp: Option<String>,
    #[serde(rename = "clientCertificateData")]
    client_certificate_data: Option<String>,
    #[serde(rename = "clientKeyData")]
    client_key_data: Option<String>,
}

/// Parses the plugin's stdout. Like client-go: the apiVersion must be the
/// one configured, the kind ExecCredential, and the status must carry a
/// token or a certificate and key.
pub fn parse_credential(stdout: &[u8], expected: ExecApiVersion) -> Result<Credential, String> {
    let cred: ExecCredential = serde_json::from_slice(stdout).map_err(|e| {
        // serde_json's message names a position and category, never the input.
        format!("its output is not an ExecCredential JSON document ({e})")
    })?;
    match cred.api_version.as_deref() {
        Some(v) if v == expected.as_str() => {}
        Some(v) => {
            return Err(format!(
                "it answered apiVersion {:?} but the kubeconfig asks for {}",
                printable(v),
                expected.as_str()
            ))
        }
        None => return Err("its ExecCredential has no apiVersion".to_string()),
    }
    if cred.kind.as_deref() != Some("ExecCredential") {
        return Err("its output's kind is not ExecCredential".to_string());
    }
    let Some(status) = cred.status else {
        return Err("its ExecCredential has no status".to_string());
    };
    let token = status.token.filter(|t| !t.is_empty());
    if let Some(t) = &token {
        if t.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("its token contains control characters".to_string());
        }
    }
    let client_cert = match (
        status.client_certificate_data.filter(|s| !s.is_empty()),
        status.client_key_data.filter(|s| !s.is_empty()),
    ) {
        (Some(c), Some(k)) => Some((Secret::new(c), Secret::new(k))),
        (None, None) => None,
        _ => {
            return Err(
                "its status has only one of clientCertificateData and clientKeyData".to_string(),
            )
        }
    };
    if token.is_none() && client_cert.is_none() {
        return Err(
            "its status has neither a token nor clientCertificateData/clientKeyData".to_string(),
        );
    }
    let expires = match status.expiration_timestamp.as_deref() {
        None | Some("") => None,
        Some(ts) => Some(parse_timestamp(ts)?),
    };
    Ok(Credential {
        token: token.map(Secret::new),
        client_cert,
        expires,
    })
}

fn printable(s: &str) -> String {
    s.chars().take(80).filter(|c| !c.is_control()).collect()
}

/// RFC 3339 (`2024-05-01T12:00:00Z`, fractions and `+02:00` offsets too).
pub fn parse_timestamp(s: &str) -> Result<SystemTime, String> {
    let bad = || {
        format!(
            "expirationTimestamp {:?} is not an RFC 3339 time",
            printable(s)
        )
    };
    let (base, offset_secs) = match s.strip_suffix(['Z', 'z']) {
        Some(b) => (b, 0i64),
        None => {
            let at = s.len().checked_sub(6).ok_or_else(bad)?;
            let (b, off) = s.split_at_checked(at).ok_or_else(bad)?;
            let sign = match off.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(bad()),
            };
            let (h, m) = off[1..].split_once(':').ok_or_else(bad)?;
            let h: i64 = h.parse().map_err(|_| bad())?;
            let m: i64 = m.parse().map_err(|_| bad())?;
            if h > 23 || m > 59 {
                return Err(bad());
            }
            (b, sign * (h * 3600 + m * 60))
        }
    };
    let t = humantime::parse_rfc3339_weak(base).map_err(|_| bad())?;
    // A local time of +02:00 is two hours ahead of UTC.
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    let utc = if offset_secs >= 0 {
        t.checked_sub(shift)
    } else {
        t.checked_add(shift)
    };
    utc.ok_or_else(bad)
}

/// The cluster as the plugin may see it (`provideClusterInfo`).
#[derive(Debug, Clone, Default)]
pub struct ClusterInfo {
    pub server: String,
    pub tls_server_name: Option<String>,
    pub insecure_skip_tls_verify: bool,
    /// PEM of the CA, when there is one.
    pub certificate_authority_data: Option<Vec<u8>>,
}

/// `KUBERNETES_EXEC_INFO`: the request, with the cluster when the
/// kubeconfig asks for it. kwatchd never has a terminal: not interactive.
pub fn exec_info(config: &ExecConfig, cluster: &ClusterInfo) -> String {
    let mut spec = serde_json::json!({ "interactive": false });
    if config.provide_cluster_info {
        let mut c = serde_json::json!({ "server": cluster.server });
        if let Some(n) = &cluster.tls_server_name {
            c["tls-server-name"] = n.clone().into();
        }
        if cluster.insecure_skip_tls_verify {
            c["insecure-skip-tls-verify"] = true.into();
        }
        if let Some(ca) = &cluster.certificate_authority_data {
            c["certificate-authority-data"] =
                base64::engine::general_purpose::STANDARD.encode(ca).into();
        }
        spec["cluster"] = c;
    }
    serde_json::json!({
        "apiVersion": config.api_version.as_str(),
        "kind": "ExecCredential",
        "spec": spec,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(provide: bool) -> ExecConfig {
        ExecConfig {
            command: "plugin".into(),
            args: vec![],
            env: vec![],
            api_version: ExecApiVersion::V1,
            provide_cluster_info: provide,
            install_hint: None,
        }
    }

    #[test]
    fn token_credential_with_expiry() {
        let out = br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t0k","expirationTimestamp":"2030-01-02T03:04:05Z"}}"#;
        let c = parse_credential(out, ExecApiVersion::V1).unwrap();
        assert_eq!(c.token.as_ref().and_then(Secret::as_str), Some("t0k"));
        assert_eq!(
            c.expires,
            Some(humantime::parse_rfc3339("2030-01-02T03:04:05Z").unwrap())
        );
        assert!(c.client_cert.is_none());
    }

    #[test]
    fn wrong_version_kind_or_empty_status_is_refused_without_quoting_secrets() {
        let out = br#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"s3cret"}}"#;
        let e = parse_credential(out, ExecApiVersion::V1).unwrap_err();
        assert!(e.contains("v1beta1") && !e.contains("s3cret"), "{e}");
        let out = br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"Other","status":{"token":"s3cret"}}"#;
        assert!(parse_credential(out, ExecApiVersion::V1).is_err());
        let out = br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}}"#;
        assert!(parse_credential(out, ExecApiVersion::V1)
            .unwrap_err()
            .contains("neither"));
        let e = parse_credential(b"token s3cret", ExecApiVersion::V1).unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        let out = br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"C"}}"#;
        assert!(parse_credential(out, ExecApiVersion::V1)
            .unwrap_err()
            .contains("only one"));
    }

    #[test]
    fn certificate_credential() {
        let out = br#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"clientCertificateData":"CERT","clientKeyData":"KEY"}}"#;
        let c = parse_credential(out, ExecApiVersion::V1Beta1).unwrap();
        let (cert, key) = c.client_cert.unwrap();
        assert_eq!((cert.expose(), key.expose()), (&b"CERT"[..], &b"KEY"[..]));
        assert_eq!(c.expires, None);
    }

    #[test]
    fn timestamps_with_offsets_and_fractions() {
        let z = parse_timestamp("2030-01-02T03:04:05Z").unwrap();
        assert_eq!(parse_timestamp("2030-01-02T05:04:05+02:00").unwrap(), z);
        assert_eq!(parse_timestamp("2030-01-02T02:04:05-01:00").unwrap(), z);
        assert!(parse_timestamp("2030-01-02T03:04:05.250Z").unwrap() > z);
        for bad in ["", "tomorrow", "2030-01-02T03:04:05+99:00", "2030-01-02"] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exec_info_has_cluster_only_when_asked() {
        let cluster = ClusterInfo {
            server: "https://10.0.0.1:6443".into(),
            tls_server_name: Some("kubernetes".into()),
            insecure_skip_tls_verify: false,
            certificate_authority_data: Some(b"PEM".to_vec()),
        };
        let v: serde_json::Value = serde_json::from_str(&exec_info(&cfg(true), &cluster)).unwrap();
        assert_eq!(v["apiVersion"], "client.authentication.k8s.io/v1");
        assert_eq!(v["spec"]["interactive"], false);
        assert_eq!(v["spec"]["cluster"]["server"], "https://10.0.0.1:6443");
        assert_eq!(v["spec"]["cluster"]["tls-server-name"], "kubernetes");
        assert_eq!(v["spec"]["cluster"]["certificate-authority-data"], "UEVN");
        let v: serde_json::Value = serde_json::from_str(&exec_info(&cfg(false), &cluster)).unwrap();
        assert!(v["spec"].get("cluster").is_none());
    }
}
