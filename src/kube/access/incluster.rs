//! In-cluster access: the API server from `KUBERNETES_SERVICE_HOST` and
//! `KUBERNETES_SERVICE_PORT`, the credentials from the service-account
//! mount.

use std::path::PathBuf;

/// Where the kubelet mounts the service account.
pub const SERVICEACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Overrides [`SERVICEACCOUNT_DIR`]. Meant for tests, which cannot write
/// under `/var/run/secrets`.
pub const SERVICEACCOUNT_DIR_ENV: &str = "KWATCHD_SERVICEACCOUNT_DIR";

/// What the environment says; the files are only named, not read (the
/// token is re-read at run time, the CA checked by `kwatchd check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InCluster {
    /// `https://HOST:PORT`, IPv6 hosts in brackets.
    pub server: String,
    pub dir: PathBuf,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    /// The pod's namespace, when the mount has the file.
    pub namespace: Option<String>,
}

/// `var` reads an environment variable (`Ok(None)` when unset).
pub fn from_env(var: &dyn Fn(&str) -> Result<Option<String>, String>) -> Result<InCluster, String> {
    let host = var("KUBERNETES_SERVICE_HOST")?.unwrap_or_default();
    let port = var("KUBERNETES_SERVICE_PORT")?.unwrap_or_default();
    if host.is_empty() || port.is_empty() {
        return Err(
            "in_cluster = true but KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not both set: kwatchd is not running in a pod (use server or kubeconfig instead)"
                .to_string(),
        );
    }
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!(
            "KUBERNETES_SERVICE_PORT {port:?} is not a port number"
        ));
    }
    let server = if host.contains(':') && !host.starts_with('[') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    };
    let dir = match var(SERVICEACCOUNT_DIR_ENV)? {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(SERVICEACCOUNT_DIR),
    };
    let namespace = std::fs::read_to_string(dir.join("namespace"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    Ok(InCluster {
        server,
        token_file: dir.join("token"),
        ca_file: dir.join("ca.crt"),
        namespace,
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| Ok(map.get(k).cloned())
    }

    #[test]
    fn server_from_env_with_ipv6_in_brackets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("namespace"), "kube-system\n").unwrap();
        let d = dir.path().to_str().unwrap();
        let ic = from_env(&env(&[
            ("KUBERNETES_SERVICE_HOST", "fd00::1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            (SERVICEACCOUNT_DIR_ENV, d),
        ]))
        .unwrap();
        assert_eq!(ic.server, "https://[fd00::1]:443");
        assert_eq!(ic.token_file, dir.path().join("token"));
        assert_eq!(ic.ca_file, dir.path().join("ca.crt"));
        assert_eq!(ic.namespace.as_deref(), Some("kube-system"));
        let v4 = from_env(&env(&[
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "6443"),
        ]))
        .unwrap();
        assert_eq!(v4.server, "https://10.0.0.1:6443");
        assert_eq!(v4.dir, PathBuf::from(SERVICEACCOUNT_DIR));
    }

    #[test]
    fn missing_env_or_bad_port_is_explained() {
        let e = from_env(&env(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")])).unwrap_err();
        assert!(e.contains("KUBERNETES_SERVICE_PORT"), "{e}");
        let e = from_env(&env(&[
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "https"),
        ]))
        .unwrap_err();
        assert!(e.contains("not a port"), "{e}");
    }
}
