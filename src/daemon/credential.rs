//! A cluster's exec credential plugin at run time: the plugin is a child
//! process driven by the loop (a [`HookRun`] with captured output), its
//! ExecCredential cached until shortly before `expirationTimestamp` and
//! dropped after a 401.
//!
//! ```text
//! Empty ──request──▶ Running ──exit 0 + valid output──▶ Have ──expiring / 401──▶ Empty
//!                       └──failure──▶ Failed ──reported to one request──▶ Empty
//! ```
//!
//! Nothing the plugin prints is logged as is: stdout is the credential, and
//! stderr is logged only after the credential's secrets were scrubbed out.

use crate::kube::access::exec::{self, ClusterInfo, Credential};
use crate::kube::access::{redact, ExecConfig};
use crate::sink::exec::{HookRun, HookSpec, Leftovers, SpawnOptions, Stream};
use crate::tokens::TokenAllocator;
use mio::{Registry, Token};
use std::time::{Duration, Instant, SystemTime};

/// How long a plugin may run before it is killed.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
const PLUGIN_KILL_GRACE: Duration = Duration::from_secs(2);
/// Bytes of each stream kept; an ExecCredential is a few KiB.
const PLUGIN_OUTPUT_CAP: usize = 1 << 20;
/// Re-run at most this long before the expiry ...
const REFRESH_MARGIN_MAX: Duration = Duration::from_secs(60);

/// Whether a request may go out now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// The plugin runs; the daemon wakes the watches when it is done.
    Pending,
    /// The plugin failed (said once, to one request, which backs off).
    Failed(String),
}

enum State {
    Empty,
    Running(Box<HookRun>),
    Have {
        credential: Credential,
        /// When to run the plugin again (before the expiry).
        refresh_at: Option<SystemTime>,
    },
    Failed(String),
}

pub struct ExecCredentials {
    cluster: String,
    config: ExecConfig,
    /// `KUBERNETES_EXEC_INFO`.
    info: String,
    tokens: TokenAllocator,
    state: State,
    /// Bumped for every new credential: the TLS config is rebuilt when a
    /// client certificate came with it.
    generation: u64,
    runs: u64,
}

impl ExecCredentials {
    pub fn new(cluster: &str, index: usize, config: ExecConfig, info: &ClusterInfo) -> Self {
        ExecCredentials {
            cluster: cluster.to_string(),
            info: exec::exec_info(&config, info),
            config,
            tokens: TokenAllocator::for_credential(index),
            state: State::Empty,
            generation: 0,
            runs: 0,
        }
    }

    /// Plugin runs started so far.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The current credential, if one is held.
    pub fn credential(&self) -> Option<&Credential> {
        match &self.state {
            State::Have { credential, .. } => Some(credential),
            _ => None,
        }
    }

    /// Ready when a fresh credential is held; otherwise starts the plugin
    /// (or reports its failure once).
    pub fn readiness(&mut self, registry: &Registry, now: Instant) -> Readiness {
        match &self.state {
            State::Running(_) => return Readiness::Pending,
            State::Have { refresh_at, .. } => {
                if refresh_at.is_none_or(|at| SystemTime::now() < at) {
                    return Readiness::Ready;
                }
                log::debug!(
                    "cluster {}: the exec credential expires soon; running the plugin again",
                    self.cluster
                );
            }
            State::Failed(_) => {
                if let State::Failed(e) = std::mem::replace(&mut self.state, State::Empty) {
                    return Readiness::Failed(e);
                }
            }
            State::Empty => {}
        }
        self.start(registry, now)
    }

    /// The server refused the credential: the next request runs the
    /// plugin again. A run in progress is kept (it fetches a new one).
    pub fn invalidate(&mut self) {
        if let State::Have { .. } = self.state {
            log::info!(
                "cluster {}: the server refused the exec credential; the plugin runs again before the next request",
                self.cluster
            );
            self.state = State::Empty;
        }
    }

    fn start(&mut self, registry: &Registry, now: Instant) -> Readiness {
        let spec = HookSpec {
            sink: format!("cluster {} credential plugin", self.cluster),
            command: std::iter::once(self.config.command.clone())
                .chain(self.config.args.iter().cloned())
                .collect(),
            working_dir: None,
            env: Vec::new(),
            timeout: PLUGIN_TIMEOUT,
            kill_grace: PLUGIN_KILL_GRACE,
            output_cap: PLUGIN_OUTPUT_CAP,
            // As before the knob existed (and as client-go does): a plugin
            // that leaves a helper running is trusted to mean it.
            leftovers: Leftovers::Keep,
        };
        // Like client-go: the daemon's environment, the kubeconfig's env,
        // and the exec info.
        let mut env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| !self.config.env.iter().any(|(n, _)| n == k))
            .collect();
        env.extend(self.config.env.iter().cloned());
        env.retain(|(k, _)| k != "KUBERNETES_EXEC_INFO");
        env.push(("KUBERNETES_EXEC_INFO".to_string(), self.info.clone()));
        let label = format!("cluster {}: credential plugin", self.cluster);
        self.runs += 1;
        let options = SpawnOptions::new(&spec, &env, label).captured();
        match HookRun::spawn(options, registry, &mut self.tokens, now) {
            Ok(run) => {
                log::debug!(
                    "cluster {}: running credential plugin {:?} (pid {})",
                    self.cluster,
                    self.config.command,
                    run.pid()
                );
                self.state = State::Running(Box::new(run));
                Readiness::Pending
            }
            Err(e) => {
                let hint = match &self.config.install_hint {
                    Some(h) => format!("; {}", h.trim()),
                    None => String::new(),
                };
                // HookRun names the sink the command belongs to; here that
                // is the cluster, which the log line already says.
                let error = e.to_string();
                let error = error
                    .strip_prefix(&format!("sink {}: ", spec.sink))
                    .unwrap_or(&error);
                let error = format!("credential plugin: {error}{hint}");
                self.state = State::Empty;
                Readiness::Failed(error)
            }
        }
    }

    pub fn owns(&self, token: Token) -> bool {
        matches!(&self.state, State::Running(run) if run.owns(token))
    }

    /// Readiness of a plugin pipe or pidfd. True when the run finished
    /// (the daemon then lets the waiting watches go on).
    pub fn on_ready(&mut self, registry: &Registry, token: Token) -> bool {
        if let State::Running(run) = &mut self.state {
            if run.owns(token) {
                run.on_ready(registry, token);
            }
        }
        self.try_finish()
    }

    pub fn on_sigchld(&mut self, registry: &Registry) -> bool {
        if let State::Running(run) = &mut self.state {
            run.on_sigchld(registry);
        }
        self.try_finish()
    }

    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Running(run) => run.deadline(),
            _ => None,
        }
    }

    pub fn on_timer(&mut self, registry: &Registry, now: Instant) -> bool {
        if let State::Running(run) = &mut self.state {
            if run.deadline().is_some_and(|d| d <= now) {
                run.on_timer(now, registry);
            }
        }
        self.try_finish()
    }

    fn try_finish(&mut self) -> bool {
        let State::Running(run) = &mut self.state else {
            return false;
        };
        let Some(outcome) = run.outcome().cloned() else {
            return false;
        };
        let (stdout, stdout_cut) = run.take_output(Stream::Stdout);
        let (stderr, _) = run.take_output(Stream::Stderr);
        let result = if !outcome.success() {
            Err(format!("the credential plugin {outcome}"))
        } else if stdout_cut {
            Err(format!(
                "the credential plugin printed more than {PLUGIN_OUTPUT_CAP} bytes"
            ))
        } else {
            exec::parse_credential(&stdout, self.config.api_version)
                .map_err(|e| format!("the credential plugin is unusable: {e}"))
        };
        self.log_stderr(&stderr, &stdout, result.as_ref().ok());
        self.state = match result {
            Ok(credential) => {
                self.generation += 1;
                let refresh_at = credential.expires.map(refresh_time);
                log::info!(
                    "cluster {}: got a credential from the exec plugin ({}{})",
                    self.cluster,
                    match (&credential.token, &credential.client_cert) {
                        (Some(_), Some(_)) => "token and client certificate",
                        (Some(_), None) => "token",
                        _ => "client certificate",
                    },
                    match credential.expires {
                        Some(t) => format!(", expires {}", humantime::format_rfc3339_seconds(t)),
                        None => String::new(),
                    }
                );
                State::Have {
                    credential,
                    refresh_at,
                }
            }
            Err(e) => {
                log::error!("cluster {}: {e}", self.cluster);
                State::Failed(e)
            }
        };
        true
    }

    /// The plugin's stderr, line by line, with the credential (and anything
    /// that looks like it came from stdout) scrubbed out.
    fn log_stderr(&self, stderr: &[u8], stdout: &[u8], credential: Option<&Credential>) {
        if stderr.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(stderr);
        let stdout = String::from_utf8_lossy(stdout);
        let mut secrets: Vec<&str> = Vec::new();
        if let Some(c) = credential {
            secrets.extend(c.token.as_ref().and_then(|t| t.as_str()));
            if let Some((cert, key)) = &c.client_cert {
                secrets.extend(cert.as_str());
                secrets.extend(key.as_str());
            }
        }
        // Whatever the plugin printed on stdout is a secret too (a failed
        // run's credential was not parsed): every JSON string in it, or every
        // word when it is not JSON.
        let mut words: Vec<String> = Vec::new();
        match serde_json::from_str::<serde_json::Value>(&stdout) {
            Ok(v) => json_strings(&v, &mut words),
            Err(_) => words.extend(stdout.split_whitespace().map(str::to_string)),
        }
        secrets.extend(words.iter().map(String::as_str).filter(|w| w.len() >= 8));
        for line in redact::redact(&text, &secrets).lines() {
            log::warn!("cluster {}: credential plugin stderr: {line}", self.cluster);
        }
    }
}

fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|i| json_strings(i, out)),
        serde_json::Value::Object(m) => m.values().for_each(|i| json_strings(i, out)),
        _ => {}
    }
}

/// Shortly before `expires`: a fifth of the time left, at most a minute.
fn refresh_time(expires: SystemTime) -> SystemTime {
    let left = expires
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    expires - (left / 5).min(REFRESH_MARGIN_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_cluster_and_are_not_watch_tokens() {
        let mut c = ExecCredentials::new(
            "c",
            3,
            ExecConfig {
                command: "true".into(),
                args: vec![],
                env: vec![],
                api_version: crate::kube::access::ExecApiVersion::V1,
                provide_cluster_info: false,
                install_hint: None,
            },
            &ClusterInfo::default(),
        );
        let t = c.tokens.allocate();
        assert_eq!(
            crate::tokens::Source::of(t),
            Some(crate::tokens::Source::Credential { cluster: 3, run: 0 })
        );
    }

    #[test]
    fn refresh_comes_before_expiry() {
        let now = SystemTime::now();
        let soon = now + Duration::from_secs(10);
        let r = refresh_time(soon);
        assert!(r < soon && r > now + Duration::from_secs(7));
        let later = now + Duration::from_secs(3600);
        assert_eq!(refresh_time(later), later - REFRESH_MARGIN_MAX);
    }
}
