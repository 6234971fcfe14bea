//! Where and how to reach a cluster: kubeconfig contexts, the in-cluster
//! service account, client certificates, bearer tokens and exec credential
//! plugins.
//!
//! Resolution ([`kubeconfig`], [`incluster`]) happens when the configuration
//! is parsed, so a kubeconfig that asks for something kwatchd cannot honour
//! is refused by `kwatchd check` with the file, the context or user, and the
//! field. What is left for run time (re-reading token files, running exec
//! plugins, re-reading rotated certificates) lives in `daemon::cluster` and
//! [`exec`].

pub mod exec;
pub mod incluster;
pub mod kubeconfig;
pub mod redact;

use std::fmt;
use std::path::PathBuf;

/// Bytes that must never reach a log: tokens, private keys. `Debug` shows
/// only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text, when it is UTF-8 (tokens are).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// PEM material given as a file (re-read when it changes) or inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    /// Decoded `*-data` from a kubeconfig.
    Data(Secret),
}

impl PemSource {
    /// How messages name it: the path, or "inline data".
    pub fn describe(&self) -> String {
        match self {
            PemSource::File(p) => p.display().to_string(),
            PemSource::Data(_) => "inline data from the kubeconfig".to_string(),
        }
    }
}

/// `client.authentication.k8s.io` versions of the ExecCredential exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecApiVersion {
    V1,
    V1Beta1,
}

impl ExecApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecApiVersion::V1 => "client.authentication.k8s.io/v1",
            ExecApiVersion::V1Beta1 => "client.authentication.k8s.io/v1beta1",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ExecApiVersion::V1, ExecApiVersion::V1Beta1]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A kubeconfig user's `exec` credential plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// The program: a bare name looked up in `PATH`, or an absolute path
    /// (a relative path with a `/` was resolved against the kubeconfig's
    /// directory, as client-go does).
    pub command: String,
    pub args: Vec<String>,
    /// Added to the daemon's environment.
    pub env: Vec<(String, String)>,
    pub api_version: ExecApiVersion,
    /// Pass the cluster in `KUBERNETES_EXEC_INFO`.
    pub provide_cluster_info: bool,
    /// Shown when the command cannot be started.
    pub install_hint: Option<String>,
}

/// Where a cluster's settings came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterSource {
    /// `server = ...` and the other keys in kwatchd's own file.
    Server,
    Kubeconfig {
        files: Vec<PathBuf>,
        context: String,
    },
    /// The service account mounted into the pod.
    InCluster { dir: PathBuf },
}

impl fmt::Display for ClusterSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterSource::Server => f.write_str("the kwatchd configuration"),
            ClusterSource::Kubeconfig { files, context } => {
                write!(f, "context {context:?} of kubeconfig ")?;
                write_files(f, files)
            }
            ClusterSource::InCluster { dir } => {
                write!(f, "the in-cluster service account ({})", dir.display())
            }
        }
    }
}

/// `a.yaml` or `a.yaml:b.yaml` (KUBECONFIG style).
pub(crate) fn write_files(f: &mut dyn fmt::Write, files: &[PathBuf]) -> fmt::Result {
    for (i, p) in files.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{}", p.display())?;
    }
    Ok(())
}
