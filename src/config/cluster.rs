//! `[clusters.NAME]`: the API servers. A cluster takes its connection
//! settings from exactly one source: `server` (with the TLS and token keys
//! of this file), a `kubeconfig` (and `context`), or `in_cluster = true`
//! (the pod's service account).

use std::path::PathBuf;
use std::time::Duration;

use toml_edit::Value;

use super::doc::{Ctx, Field, TableNode};
use super::fields::{
    boolean, check_file, distinct_strings, duration, file_path, optional, owned, path, Env,
    FileKind,
};
use super::url::{Scheme, ServerUrl};
use crate::kube::access::{incluster, kubeconfig, ClusterSource, ExecConfig, PemSource, Secret};

/// Default `clusters.NAME.connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Every key of `[clusters.NAME]`.
pub(crate) const KEYS: &[&str] = &[
    "server",
    "certificate_authority",
    "insecure_skip_tls_verify",
    "token_file",
    "connect_timeout",
    "kubeconfig",
    "context",
    "in_cluster",
    "client_certificate",
    "client_key",
    "tls_server_name",
];
/// Keys that only go with `server`: a kubeconfig or the service account
/// provides these itself.
const SERVER_ONLY_KEYS: &[&str] = &[
    "certificate_authority",
    "insecure_skip_tls_verify",
    "token_file",
    "client_certificate",
    "client_key",
    "tls_server_name",
];
const CONNECT_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(600));

/// `[clusters.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub name: String,
    pub server: ServerUrl,
    /// PEM bundle to verify the server with (absolute path).
    pub certificate_authority: Option<PathBuf>,
    pub insecure_skip_tls_verify: bool,
    /// File holding a bearer token (absolute path); re-read by the client.
    pub token_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Where these settings came from (`server`, a kubeconfig context, the
    /// in-cluster service account).
    pub source: ClusterSource,
    /// Inline CA (kubeconfig `certificate-authority-data`), PEM; wins over
    /// `certificate_authority`.
    pub certificate_authority_data: Option<Secret>,
    /// Name for SNI and certificate verification instead of the URL host.
    pub tls_server_name: Option<String>,
    /// Client certificate and key (both or neither), PEM.
    pub client_certificate: Option<PemSource>,
    pub client_key: Option<PemSource>,
    /// Inline bearer token (kubeconfig `token`).
    pub token: Option<Secret>,
    /// Credential plugin (kubeconfig `exec`).
    pub exec: Option<ExecConfig>,
    /// The kubeconfig context's or service account's namespace. Only
    /// informative: a watch without `namespace` still sees every namespace.
    pub namespace: Option<String>,
}

/// Parses one `[clusters.NAME]` table.
pub(super) fn parse(ctx: &mut Ctx, env: &Env, name: &str, t: &TableNode) -> Option<ClusterConfig> {
    t.check_keys(ctx, KEYS);
    let connect_timeout = duration(
        ctx,
        t,
        "connect_timeout",
        DEFAULT_CONNECT_TIMEOUT,
        CONNECT_TIMEOUT_RANGE,
    );
    let server_f = t.get("server");
    let kube_f = t.get("kubeconfig");
    let in_cluster_f = t.get("in_cluster");
    let in_cluster = match &in_cluster_f {
        Some(f) => f.bool(ctx)?,
        None => false,
    };
    let mut sources: Vec<(&str, Field)> = Vec::new();
    if let Some(f) = server_f {
        sources.push(("server", f));
    }
    if let Some(f) = kube_f {
        sources.push(("kubeconfig", f));
    }
    if let (Some(f), true) = (in_cluster_f, in_cluster) {
        sources.push(("in_cluster = true", f));
    }
    if sources.is_empty() {
        ctx.error(
            t.pos(),
            &format!("{}.server", t.path()),
            format!(
                "missing required key `server` in [{}] (or, instead of server, kubeconfig or in_cluster = true)",
                t.path()
            ),
        );
        return None;
    }
    if let [(first, _), rest @ ..] = sources.as_slice() {
        if !rest.is_empty() {
            for (what, f) in rest {
                f.error(
                    ctx,
                    format!(
                        "{what} conflicts with {first}: a cluster takes exactly one of server, kubeconfig and in_cluster = true"
                    ),
                );
            }
            return None;
        }
    }
    let (source_key, source_f) = sources.swap_remove(0);
    if source_key != "kubeconfig" {
        if let Some(f) = t.get("context") {
            f.error(ctx, "context only applies with kubeconfig");
        }
    }
    if source_key != "server" {
        let mut ok = true;
        for key in SERVER_ONLY_KEYS {
            if let Some(f) = t.get(key) {
                f.error(
                    ctx,
                    format!(
                        "{key} cannot be combined with {source_key}, which provides the connection settings; set it {}",
                        if source_key == "kubeconfig" {
                            "in the kubeconfig"
                        } else {
                            "with server instead of in_cluster"
                        }
                    ),
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
    }
    let base = ClusterConfig {
        name: name.to_string(),
        server: ServerUrl::parse("https://127.0.0.1").ok()?,
        certificate_authority: None,
        insecure_skip_tls_verify: false,
        token_file: None,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        source: ClusterSource::Server,
        certificate_authority_data: None,
        tls_server_name: None,
        client_certificate: None,
        client_key: None,
        token: None,
        exec: None,
        namespace: None,
    };
    let cluster = match source_key {
        "server" => server_cluster(ctx, env, t, &source_f, base),
        "kubeconfig" => kubeconfig_cluster(ctx, env, t, &source_f, base),
        _ => in_cluster_cluster(ctx, env, &source_f, base),
    };
    Some(ClusterConfig {
        connect_timeout: connect_timeout?,
        ..cluster?
    })
}

/// `server = ...` with the keys of this file.
fn server_cluster(
    ctx: &mut Ctx,
    env: &Env,
    t: &TableNode,
    f: &Field,
    base: ClusterConfig,
) -> Option<ClusterConfig> {
    let server = server(ctx, f);
    let certificate_authority = file_path(ctx, env, t, "certificate_authority", FileKind::Pem);
    let insecure = boolean(ctx, t, "insecure_skip_tls_verify", false);
    let token_file = file_path(ctx, env, t, "token_file", FileKind::Token);
    let client_certificate = file_path(ctx, env, t, "client_certificate", FileKind::Pem);
    let client_key = file_path(ctx, env, t, "client_key", FileKind::Key);
    let tls_server_name = optional(ctx, t, "tls_server_name", |s| {
        crate::net::tls::server_name(s).map(|_| s.to_string())
    });
    check_tls_options(ctx, t, &certificate_authority, insecure);
    if let (Some(Some(_)), Some(None)) = (&client_certificate, &client_key) {
        t.get("client_certificate")?
            .error(ctx, "client_certificate needs client_key too");
        return None;
    }
    if let (Some(None), Some(Some(_))) = (&client_certificate, &client_key) {
        t.get("client_key")?
            .error(ctx, "client_key needs client_certificate too");
        return None;
    }
    let server = server?;
    if server.scheme == Scheme::Http {
        for key in ["client_certificate", "tls_server_name"] {
            if let Some(f) = t.get(key) {
                f.error(ctx, format!("{key} needs an https:// server"));
                return None;
            }
        }
    }
    Some(ClusterConfig {
        server,
        certificate_authority: certificate_authority?,
        insecure_skip_tls_verify: insecure?,
        token_file: token_file?,
        client_certificate: client_certificate?.map(PemSource::File),
        client_key: client_key?.map(PemSource::File),
        tls_server_name: tls_server_name?,
        ..base
    })
}

/// `kubeconfig = "path"` or a list of paths, and `context`.
fn kubeconfig_cluster(
    ctx: &mut Ctx,
    env: &Env,
    t: &TableNode,
    f: &Field,
    base: ClusterConfig,
) -> Option<ClusterConfig> {
    let expand = |s: &str| -> Result<PathBuf, String> {
        let Some(rest) = s.strip_prefix("~/").or((s == "~").then_some("")) else {
            return path(s, env);
        };
        if env.offline() {
            // HOME is not consulted; the rest is still checked.
            return if rest.is_empty() {
                Ok(PathBuf::from(s))
            } else {
                path(rest, env)
            };
        }
        match env.var("HOME")? {
            Some(home) if !home.is_empty() => path(&format!("{home}/{rest}"), env),
            _ => Err(format!("cannot expand {s:?}: HOME is not set")),
        }
    };
    let paths = match f.value() {
        Some(Value::Array(_)) => {
            let strings = distinct_strings(ctx, f, "kubeconfig path")?;
            let mut paths = Vec::new();
            for (element, s) in &strings.items {
                paths.push(element.check(ctx, expand(s)));
            }
            if !strings.ok {
                return None;
            }
            paths.into_iter().collect::<Option<Vec<_>>>()?
        }
        _ => vec![f.parse_str(ctx, expand)?],
    };
    let context = optional(
        ctx,
        t,
        "context",
        owned(|s| {
            if s.is_empty() {
                Err("context must not be empty".to_string())
            } else {
                Ok(())
            }
        }),
    )?;
    if env.offline() {
        // Reading the kubeconfig is what offline leaves out.
        return Some(base);
    }
    let resolved = f.check(
        ctx,
        kubeconfig::load(&paths, context.as_deref()).map_err(|e| e.to_string()),
    )?;
    let in_kubeconfig = |m: String| {
        let mut files = String::new();
        let mut context = String::new();
        if let ClusterSource::Kubeconfig {
            files: f,
            context: c,
        } = &resolved.source
        {
            let _ = crate::kube::access::write_files(&mut files, f);
            context = format!("context {c:?}: ");
        }
        format!("kubeconfig {files}: {context}{m}")
    };
    let server = f.check(
        ctx,
        ServerUrl::parse(&resolved.server)
            .and_then(check_server_url)
            .map_err(|e| in_kubeconfig(format!("server: {e}"))),
    )?;
    let (certificate_authority, certificate_authority_data) = match resolved.certificate_authority {
        Some(PemSource::File(p)) => (Some(p), None),
        Some(PemSource::Data(d)) => (None, Some(d)),
        None => (None, None),
    };
    if let Some(n) = &resolved.tls_server_name {
        f.check(
            ctx,
            crate::net::tls::server_name(n)
                .map_err(|e| in_kubeconfig(format!("tls-server-name: {e}"))),
        )?;
    }
    if env.check_files() {
        let mut files = Vec::new();
        if let Some(p) = &certificate_authority {
            files.push(("certificate-authority", p.clone(), FileKind::Pem));
        }
        if let Some(p) = &resolved.token_file {
            files.push(("tokenFile", p.clone(), FileKind::Token));
        }
        if let Some(PemSource::File(p)) = &resolved.client_certificate {
            files.push(("client-certificate", p.clone(), FileKind::Pem));
        }
        if let Some(PemSource::File(p)) = &resolved.client_key {
            files.push(("client-key", p.clone(), FileKind::Key));
        }
        for (key, path, kind) in files {
            f.check(
                ctx,
                check_file(&path, kind).map_err(|e| in_kubeconfig(format!("{key}: {e}"))),
            )?;
        }
    }
    Some(ClusterConfig {
        server,
        certificate_authority,
        certificate_authority_data,
        insecure_skip_tls_verify: resolved.insecure_skip_tls_verify,
        token_file: resolved.token_file,
        token: resolved.token,
        client_certificate: resolved.client_certificate,
        client_key: resolved.client_key,
        tls_server_name: resolved.tls_server_name,
        exec: resolved.exec,
        namespace: resolved.namespace,
        source: resolved.source,
        ..base
    })
}

/// `in_cluster = true`: the service account of the pod.
fn in_cluster_cluster(
    ctx: &mut Ctx,
    env: &Env,
    f: &Field,
    base: ClusterConfig,
) -> Option<ClusterConfig> {
    if env.offline() {
        // The service account is found through the environment.
        return Some(base);
    }
    let ic = f.check(ctx, incluster::from_env(&|k| env.var(k)))?;
    let server = f.check(ctx, ServerUrl::parse(&ic.server))?;
    if env.check_files() {
        f.check(ctx, check_file(&ic.ca_file, FileKind::Pem))?;
        f.check(ctx, check_file(&ic.token_file, FileKind::Token))?;
    }
    Some(ClusterConfig {
        server,
        certificate_authority: Some(ic.ca_file),
        token_file: Some(ic.token_file),
        namespace: ic.namespace,
        source: ClusterSource::InCluster { dir: ic.dir },
        ..base
    })
}

/// A URL; `http://` only to loopback hosts so tokens never travel in clear.
fn server(ctx: &mut Ctx, f: &Field) -> Option<ServerUrl> {
    let url = f.parse_str(ctx, ServerUrl::parse)?;
    f.check(ctx, check_server_url(url))
}

fn check_server_url(url: ServerUrl) -> Result<ServerUrl, String> {
    if url.scheme == Scheme::Http && !url.is_loopback() {
        return Err(format!(
            "http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost), not {:?}: the bearer token would travel in clear; use https://",
            url.host
        ));
    }
    Ok(url)
}

/// Like kubectl: a CA file and "skip verification" contradict each other.
fn check_tls_options(
    ctx: &mut Ctx,
    t: &TableNode,
    ca: &Option<Option<PathBuf>>,
    insecure: Option<bool>,
) {
    if let (Some(Some(_)), Some(true), Some(f)) = (ca, insecure, t.get("insecure_skip_tls_verify"))
    {
        f.error(
            ctx,
            "insecure_skip_tls_verify = true conflicts with certificate_authority; remove one of them",
        );
    }
}
