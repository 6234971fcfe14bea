//! kubeconfig files: parse, merge (KUBECONFIG semantics) and resolve one
//! context into the settings kwatchd connects with.
//!
//! Merge: with several files, the first file to set `current-context` wins,
//! and `clusters`, `users` and `contexts` are maps by name where the first
//! file to define a name wins (the whole entry, as client-go does).
//!
//! Only the chosen context, its cluster and its user are checked: other
//! entries may use features kwatchd lacks. In those three, every field is
//! either honoured or refused with a message naming the file, the entry and
//! the field; nothing is silently ignored (`extensions` excepted: it is
//! metadata for other tools by definition).

use super::{ClusterSource, ExecApiVersion, ExecConfig, PemSource, Secret};
use base64::Engine;
use serde_yaml_ng::{Mapping, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest kubeconfig read; real ones are a few KiB.
pub const MAX_KUBECONFIG_BYTES: u64 = 16 << 20;

/// A kubeconfig problem. `files` are the file(s) concerned: the one that
/// defines the offending entry, or every file when a name was not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigError {
    pub files: Vec<PathBuf>,
    pub message: String,
}

impl KubeconfigError {
    fn new(file: &Path, message: impl Into<String>) -> Self {
        KubeconfigError {
            files: vec![file.to_path_buf()],
            message: message.into(),
        }
    }
}

impl fmt::Display for KubeconfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("kubeconfig ")?;
        super::write_files(f, &self.files)?;
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for KubeconfigError {}

/// The settings of one context, with every path absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The files, in precedence order, and the context used.
    pub source: ClusterSource,
    /// As written (`https://host:port[/path]`); parsed by the caller.
    pub server: String,
    pub certificate_authority: Option<PemSource>,
    pub insecure_skip_tls_verify: bool,
    pub tls_server_name: Option<String>,
    /// Inline `token` (only when there is no `tokenFile`: client-go
    /// prefers the file).
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub client_certificate: Option<PemSource>,
    pub client_key: Option<PemSource>,
    pub exec: Option<ExecConfig>,
    /// The context's namespace.
    pub namespace: Option<String>,
}

/// One entry of `clusters`, `users` or `contexts`, with the file that
/// defined it (relative paths in it are relative to that file).
#[derive(Debug, Clone)]
struct Entry {
    body: Mapping,
    file: PathBuf,
}

/// One parsed file.
#[derive(Debug, Clone, Default)]
pub struct KubeFile {
    current_context: Option<String>,
    clusters: Vec<(String, Entry)>,
    users: Vec<(String, Entry)>,
    contexts: Vec<(String, Entry)>,
}

const TOP_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "preferences",
    "clusters",
    "users",
    "contexts",
    "current-context",
    "extensions",
];

/// Parses one kubeconfig; `path` names it in errors and is the base of its
/// relative paths.
pub fn parse(text: &str, path: &Path) -> Result<KubeFile, KubeconfigError> {
    let err = |m: String| KubeconfigError::new(path, m);
    if text.trim().is_empty() {
        // client-go treats an empty file as an empty config.
        return Ok(KubeFile::default());
    }
    let doc: Value =
        serde_yaml_ng::from_str(text).map_err(|e| err(format!("invalid YAML: {e}")))?;
    let top = match doc {
        Value::Mapping(m) => m,
        Value::Null => return Ok(KubeFile::default()),
        other => {
            return Err(err(format!(
                "expected a mapping at the top level, found {}",
                type_name(&other)
            )))
        }
    };
    let mut file = KubeFile::default();
    for (k, v) in &top {
        let Some(key) = k.as_str() else {
            return Err(err(format!(
                "top-level keys must be strings, found {}",
                type_name(k)
            )));
        };
        if !TOP_KEYS.contains(&key) {
            return Err(err(format!(
                "unknown top-level field {key:?} (known: {})",
                TOP_KEYS.join(", ")
            )));
        }
        match key {
            "current-context" => match v {
                Value::Null => {}
                Value::String(s) if s.is_empty() => {}
                Value::String(s) => file.current_context = Some(s.clone()),
                other => {
                    return Err(err(format!(
                        "current-context must be a string, found {}",
                        type_name(other)
                    )))
                }
            },
            "clusters" => file.clusters = entries(v, path, "clusters", "cluster")?,
            "users" => file.users = entries(v, path, "users", "user")?,
            "contexts" => file.contexts = entries(v, path, "contexts", "context")?,
            _ => {}
        }
    }
    Ok(file)
}

/// `- name: N\n  <field>: {...}` items; a name defined twice in one file is
/// an error (client-go refuses it too).
fn entries(
    v: &Value,
    path: &Path,
    list: &str,
    field: &str,
) -> Result<Vec<(String, Entry)>, KubeconfigError> {
    let err = |m: String| KubeconfigError::new(path, m);
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(items) => items,
        other => {
            return Err(err(format!(
                "{list} must be a list, found {}",
                type_name(other)
            )))
        }
    };
    let mut out: Vec<(String, Entry)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Mapping(m) = item else {
            return Err(err(format!(
                "{list}[{i}] must be a mapping with name and {field}"
            )));
        };
        let mut name = None;
        let mut body = None;
        for (k, v) in m {
            match (k.as_str(), v) {
                (Some("name"), Value::String(s)) if !s.is_empty() => name = Some(s.clone()),
                (Some("name"), _) => {
                    return Err(err(format!("{list}[{i}].name must be a non-empty string")))
                }
                (Some(f), Value::Mapping(b)) if f == field => body = Some(b.clone()),
                (Some(f), Value::Null) if f == field => body = Some(Mapping::new()),
                (Some(f), other) if f == field => {
                    return Err(err(format!(
                        "{list}[{i}].{field} must be a mapping, found {}",
                        type_name(other)
                    )))
                }
                (Some("extensions"), _) => {}
                (k, _) => {
                    return Err(err(format!(
                        "{list}[{i}]: unknown field {} (expected name and {field})",
                        key_text(k)
                    )))
                }
            }
        }
        let Some(name) = name else {
            return Err(err(format!("{list}[{i}] has no name")));
        };
        if out.iter().any(|(n, _)| *n == name) {
            return Err(err(format!("{list}: {name:?} is defined twice")));
        }
        out.push((
            name,
            Entry {
                body: body.unwrap_or_default(),
                file: path.to_path_buf(),
            },
        ));
    }
    Ok(out)
}

/// KUBECONFIG merge of files in precedence order.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    files: Vec<PathBuf>,
    current_context: Option<String>,
    clusters: Vec<(String, Entry)>,
    users: Vec<(String, Entry)>,
    contexts: Vec<(String, Entry)>,
}

pub fn merge(files: Vec<(PathBuf, KubeFile)>) -> Merged {
    let mut merged = Merged::default();
    for (path, file) in files {
        merged.files.push(path);
        if merged.current_context.is_none() {
            merged.current_context = file.current_context;
        }
        first_wins(&mut merged.clusters, file.clusters);
        first_wins(&mut merged.users, file.users);
        first_wins(&mut merged.contexts, file.contexts);
    }
    merged
}

fn first_wins(into: &mut Vec<(String, Entry)>, from: Vec<(String, Entry)>) {
    for (name, entry) in from {
        if !into.iter().any(|(n, _)| *n == name) {
            into.push((name, entry));
        }
    }
}

/// Reads, parses and merges `paths` (a missing file is an error: kwatchd
/// was told to use it), then resolves `context` (default: current-context).
pub fn load(paths: &[PathBuf], context: Option<&str>) -> Result<Resolved, KubeconfigError> {
    let mut files = Vec::new();
    for path in paths {
        let text = read_limited(path).map_err(|e| KubeconfigError::new(path, e))?;
        files.push((path.clone(), parse(&text, path)?));
    }
    resolve(&merge(files), context)
}

fn read_limited(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_KUBECONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_KUBECONFIG_BYTES {
        return Err(format!(
            "larger than {MAX_KUBECONFIG_BYTES} bytes; not a kubeconfig"
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())
}

impl Merged {
    fn all_files_error(&self, message: String) -> KubeconfigError {
        KubeconfigError {
            files: self.files.clone(),
            message,
        }
    }

    fn find<'a>(
        &self,
        list: &'a [(String, Entry)],
        what: &str,
        name: &str,
        by: &str,
    ) -> Result<&'a Entry, KubeconfigError> {
        list.iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
            .ok_or_else(|| {
                let known: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
                let known = if known.is_empty() {
                    format!("there are no {what}s")
                } else {
                    format!("defined: {}", known.join(", "))
                };
                self.all_files_error(format!("{what} {name:?}{by} is not defined ({known})"))
            })
    }
}

/// Picks the context and checks its cluster and user field by field.
pub fn resolve(merged: &Merged, context: Option<&str>) -> Result<Resolved, KubeconfigError> {
    let context_name = match context {
        Some(c) => c.to_string(),
        None => merged.current_context.clone().ok_or_else(|| {
            merged.all_files_error(
                "no current-context is set; name one with `context` in the cluster's table"
                    .to_string(),
            )
        })?,
    };
    let ctx_entry = merged.find(&merged.contexts, "context", &context_name, "")?;
    let mut ctx = Fields::new(ctx_entry, format!("context {context_name:?}"));
    let cluster_name = ctx.required_str("cluster")?;
    let user_name = ctx.opt_str("user")?;
    let namespace = ctx.opt_str("namespace")?;
    ctx.finish(&[])?;

    let by = format!(" (named by context {context_name:?})");
    let cl_entry = merged.find(&merged.clusters, "cluster", &cluster_name, &by)?;
    let mut cl = Fields::new(cl_entry, format!("cluster {cluster_name:?}"));
    let server = cl.required_str("server")?;
    let ca_file = cl.opt_path("certificate-authority")?;
    let ca_data = cl.opt_data("certificate-authority-data")?;
    let insecure = cl.opt_bool("insecure-skip-tls-verify")?.unwrap_or(false);
    let tls_server_name = cl.opt_str("tls-server-name")?;
    // We never ask for compression, so either value is honoured.
    cl.opt_bool("disable-compression")?;
    cl.finish(&[(
        "proxy-url",
        "proxies are not supported by kwatchd; connect directly or through a tunnel, and remove proxy-url",
    )])?;
    // -data wins over the file, as in client-go.
    let certificate_authority = match (ca_data, ca_file) {
        (Some(d), _) => Some(PemSource::Data(d)),
        (None, Some(p)) => Some(PemSource::File(p)),
        (None, None) => None,
    };
    if insecure && certificate_authority.is_some() {
        return Err(cl.error(
            "insecure-skip-tls-verify: true conflicts with certificate-authority; remove one of them",
        ));
    }

    let mut resolved = Resolved {
        source: ClusterSource::Kubeconfig {
            files: merged.files.clone(),
            context: context_name.clone(),
        },
        server,
        certificate_authority,
        insecure_skip_tls_verify: insecure,
        tls_server_name,
        token: None,
        token_file: None,
        client_certificate: None,
        client_key: None,
        exec: None,
        namespace,
    };
    if let Some(user_name) = user_name {
        let u_entry = merged.find(&merged.users, "user", &user_name, &by)?;
        let mut u = Fields::new(u_entry, format!("user {user_name:?}"));
        let token = u.opt_str("token")?;
        resolved.token_file = u.opt_path("tokenFile")?;
        if resolved.token_file.is_none() {
            resolved.token = token.map(Secret::new);
        }
        let cert_file = u.opt_path("client-certificate")?;
        let cert_data = u.opt_data("client-certificate-data")?;
        let key_file = u.opt_path("client-key")?;
        let key_data = u.opt_data("client-key-data")?;
        resolved.client_certificate = cert_data
            .map(PemSource::Data)
            .or(cert_file.map(PemSource::File));
        resolved.client_key = key_data
            .map(PemSource::Data)
            .or(key_file.map(PemSource::File));
        match (&resolved.client_certificate, &resolved.client_key) {
            (Some(_), None) => {
                return Err(u.error("client-certificate is set but client-key is not"))
            }
            (None, Some(_)) => {
                return Err(u.error("client-key is set but client-certificate is not"))
            }
            _ => {}
        }
        resolved.exec = u.opt_exec()?;
        u.finish(REFUSED_USER_FIELDS)?;
    }
    Ok(resolved)
}

const REFUSED_USER_FIELDS: &[(&str, &str)] = &[
    (
        "auth-provider",
        "auth-provider plugins were removed from Kubernetes clients; use an exec credential plugin (e.g. kubelogin, gke-gcloud-auth-plugin)",
    ),
    (
        "username",
        "basic authentication (username/password) is not supported; use a token, a client certificate or an exec plugin",
    ),
    (
        "password",
        "basic authentication (username/password) is not supported; use a token, a client certificate or an exec plugin",
    ),
    ("as", "impersonation is not supported; give the user itself the permissions"),
    ("as-uid", "impersonation is not supported; give the user itself the permissions"),
    ("as-groups", "impersonation is not supported; give the user itself the permissions"),
    (
        "as-user-extra",
        "impersonation is not supported; give the user itself the permissions",
    ),
];

/// The fields of one entry, consumed as they are read; what is left at
/// `finish` is refused.
struct Fields<'a> {
    map: Mapping,
    entry: &'a Entry,
    what: String,
}

impl<'a> Fields<'a> {
    fn new(entry: &'a Entry, what: String) -> Self {
        Fields {
            map: entry.body.clone(),
            entry,
            what,
        }
    }

    fn error(&self, message: impl fmt::Display) -> KubeconfigError {
        KubeconfigError::new(&self.entry.file, format!("{}: {message}", self.what))
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    /// A string; empty means unset (as in client-go).
    fn opt_str(&mut self, key: &str) -> Result<Option<String>, KubeconfigError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(format!(
                "{key} must be a string, found {}",
                type_name(&other)
            ))),
        }
    }

    fn required_str(&mut self, key: &str) -> Result<String, KubeconfigError> {
        self.opt_str(key)?
            .ok_or_else(|| self.error(format!("{key} is required")))
    }

    fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, KubeconfigError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(self.error(format!(
                "{key} must be true or false, found {}",
                type_name(&other)
            ))),
        }
    }

    /// A path, relative ones made absolute against the file's directory.
    fn opt_path(&mut self, key: &str) -> Result<Option<PathBuf>, KubeconfigError> {
        let Some(s) = self.opt_str(key)? else {
            return Ok(None);
        };
        if s.contains('\0') {
            return Err(self.error(format!("{key} must not contain a NUL character")));
        }
        Ok(Some(relative_to(&self.entry.file, &s)))
    }

    /// Base64 of PEM bytes.
    fn opt_data(&mut self, key: &str) -> Result<Option<Secret>, KubeconfigError> {
        let Some(s) = self.opt_str(key)? else {
            return Ok(None);
        };
        let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| self.error(format!("{key} is not valid base64: {e}")))?;
        if bytes.is_empty() {
            return Ok(None);
        }
        Ok(Some(Secret::new(bytes)))
    }

    fn opt_exec(&mut self) -> Result<Option<ExecConfig>, KubeconfigError> {
        let exec = match self.take("exec") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Mapping(m)) => m,
            Some(other) => {
                return Err(self.error(format!(
                    "exec must be a mapping, found {}",
                    type_name(&other)
                )))
            }
        };
        let mut e = Fields {
            map: exec,
            entry: self.entry,
            what: format!("{}: exec", self.what),
        };
        let command = e.required_str("command")?;
        let command = if command.contains('/') {
            relative_to(&self.entry.file, &command)
                .to_string_lossy()
                .into_owned()
        } else {
            command
        };
        let args = match e.take("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(e.error(format!(
                        "args must be a list of strings, found {}",
                        type_name(&other)
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(e.error(format!(
                    "args must be a list of strings, found {}",
                    type_name(&other)
                )))
            }
        };
        let env = e.exec_env()?;
        let api_version = match e.opt_str("apiVersion")? {
            None => {
                return Err(e.error(format!(
                    "apiVersion is required ({} or {})",
                    ExecApiVersion::V1.as_str(),
                    ExecApiVersion::V1Beta1.as_str()
                )))
            }
            Some(v) => ExecApiVersion::parse(&v).ok_or_else(|| {
                e.error(format!(
                    "apiVersion {v:?} is not supported; use {} or {}",
                    ExecApiVersion::V1.as_str(),
                    ExecApiVersion::V1Beta1.as_str()
                ))
            })?,
        };
        let install_hint = e.opt_str("installHint")?;
        let provide_cluster_info = e.opt_bool("provideClusterInfo")?.unwrap_or(false);
        match e.opt_str("interactiveMode")?.as_deref() {
            None | Some("Never") | Some("IfAvailable") => {}
            Some("Always") => {
                return Err(e.error(
                    "interactiveMode: Always needs a terminal, and kwatchd runs without one; use a plugin that works with Never",
                ))
            }
            Some(other) => {
                return Err(e.error(format!(
                    "interactiveMode {other:?} is not one of Never, IfAvailable, Always"
                )))
            }
        }
        e.finish(&[])?;
        Ok(Some(ExecConfig {
            command,
            args,
            env,
            api_version,
            provide_cluster_info,
            install_hint,
        }))
    }

    fn exec_env(&mut self) -> Result<Vec<(String, String)>, KubeconfigError> {
        let items = match self.take("env") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                return Err(self.error(format!(
                    "env must be a list of {{name, value}}, found {}",
                    type_name(&other)
                )))
            }
        };
        let mut env = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Value::Mapping(m) = item else {
                return Err(self.error(format!("env[{i}] must be a mapping with name and value")));
            };
            let get = |k: &str| match m.get(k) {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            let (Some(name), Some(value)) = (get("name"), get("value")) else {
                return Err(self.error(format!("env[{i}] needs string name and value")));
            };
            if m.len() != 2 || name.is_empty() || name.contains(['=', '\0']) || value.contains('\0')
            {
                return Err(self.error(format!(
                    "env[{i}]: expected exactly name and value, a name without '=' or NUL"
                )));
            }
            env.push((name, value));
        }
        Ok(env)
    }

    /// Refuses what is left: `refused` fields with their reason, anything
    /// else as unknown. `extensions` is metadata and may stay.
    fn finish(&mut self, refused: &[(&str, &str)]) -> Result<(), KubeconfigError> {
        self.map.remove("extensions");
        let Some((k, _)) = self.map.iter().next() else {
            return Ok(());
        };
        let key = key_text(k.as_str());
        if let Some((_, why)) = refused.iter().find(|(f, _)| Some(*f) == k.as_str()) {
            return Err(self.error(format!("{key}: {why}")));
        }
        Err(self.error(format!(
            "{key} is not supported by kwatchd (refused rather than ignored)"
        )))
    }
}

fn key_text(k: Option<&str>) -> String {
    match k {
        Some(k) => k.to_string(),
        None => "(a non-string key)".to_string(),
    }
}

fn relative_to(file: &Path, s: &str) -> PathBuf {
    let p = Path::new(s);
    if p.is_absolute() {
        return p.components().collect();
    }
    let dir = file.parent().unwrap_or(Path::new(""));
    dir.join(p).components().collect()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Renders `r` as a one-context kubeconfig (inline data as `-data`): the
/// fuzz target checks that resolving it again gives `r` back.
pub fn render(r: &Resolved) -> String {
    use serde_yaml_ng::Value as V;
    let b64 = |s: &Secret| V::from(base64::engine::general_purpose::STANDARD.encode(s.expose()));
    let path = |p: &Path| V::from(p.to_string_lossy().into_owned());
    let mut cluster = Mapping::new();
    cluster.insert("server".into(), r.server.clone().into());
    match &r.certificate_authority {
        Some(PemSource::File(p)) => {
            cluster.insert("certificate-authority".into(), path(p));
        }
        Some(PemSource::Data(d)) => {
            cluster.insert("certificate-authority-data".into(), b64(d));
        }
        None => {}
    }
    if r.insecure_skip_tls_verify {
        cluster.insert("insecure-skip-tls-verify".into(), true.into());
    }
    if let Some(n) = &r.tls_server_name {
        cluster.insert("tls-server-name".into(), n.clone().into());
    }
    let mut user = Mapping::new();
    if let Some(t) = &r.token {
        user.insert(
            "token".into(),
            String::from_utf8_lossy(t.expose()).into_owned().into(),
        );
    }
    if let Some(p) = &r.token_file {
        user.insert("tokenFile".into(), path(p));
    }
    for (src, file_key, data_key) in [
        (
            &r.client_certificate,
            "client-certificate",
            "client-certificate-data",
        ),
        (&r.client_key, "client-key", "client-key-data"),
    ] {
        match src {
            Some(PemSource::File(p)) => {
                user.insert(file_key.into(), path(p));
            }
            Some(PemSource::Data(d)) => {
                user.insert(data_key.into(), b64(d));
            }
            None => {}
        }
    }
    if let Some(e) = &r.exec {
        let mut m = Mapping::new();
        m.insert("command".into(), e.command.clone().into());
        m.insert(
            "args".into(),
            V::Sequence(e.args.iter().cloned().map(V::from).collect()),
        );
        let env = e
            .env
            .iter()
            .map(|(n, v)| {
                let mut item = Mapping::new();
                item.insert("name".into(), n.clone().into());
                item.insert("value".into(), v.clone().into());
                V::Mapping(item)
            })
            .collect();
        m.insert("env".into(), V::Sequence(env));
        m.insert("apiVersion".into(), e.api_version.as_str().into());
        m.insert("provideClusterInfo".into(), e.provide_cluster_info.into());
        if let Some(h) = &e.install_hint {
            m.insert("installHint".into(), h.clone().into());
        }
        user.insert("exec".into(), V::Mapping(m));
    }
    let mut context = Mapping::new();
    context.insert("cluster".into(), "c".into());
    context.insert("user".into(), "u".into());
    if let Some(ns) = &r.namespace {
        context.insert("namespace".into(), ns.clone().into());
    }
    let named = |field: &str, body: Mapping| {
        let mut item = Mapping::new();
        item.insert("name".into(), field[..1].into());
        item.insert(field.into(), V::Mapping(body));
        V::Sequence(vec![V::Mapping(item)])
    };
    let mut top = Mapping::new();
    top.insert("apiVersion".into(), "v1".into());
    top.insert("kind".into(), "Config".into());
    top.insert("current-context".into(), "x".into());
    top.insert("clusters".into(), named("cluster", cluster));
    top.insert("users".into(), named("user", user));
    let mut ctx_item = Mapping::new();
    ctx_item.insert("name".into(), "x".into());
    ctx_item.insert("context".into(), V::Mapping(context));
    top.insert("contexts".into(), V::Sequence(vec![V::Mapping(ctx_item)]));
    serde_yaml_ng::to_string(&V::Mapping(top)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
