//! `type = "nats"`: a NATS JetStream sink. A sink type with its own file
//! (the sink section's `TYPES` names its keys and parser); it shares
//! `on_failure` with the other delivering sinks.

use super::doc::{Ctx, TableNode};
use super::fields::{distinct_strings, duration, file_path, integer, queue_events, Env, FileKind};
use super::sink::{on_failure, OnFailure, SinkConfig};
use crate::nats::subject::SubjectTemplate;
use crate::nats::{Auth, ServerUrl};
use std::path::PathBuf;
use std::time::Duration;

/// Default `max_in_flight`: publishes awaiting their PubAck at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default `ack_timeout`.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `subject`.
pub const DEFAULT_SUBJECT: &str = "kube.{cluster}.{watch}.{namespace}.{kind}.{name}";
const ACK_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(600));
const MAX_IN_FLIGHT: i64 = 65_536;

pub(super) const KEYS: &[&str] = &[
    "type",
    "servers",
    "subject",
    "stream",
    "credentials_file",
    "token_file",
    "user",
    "password_file",
    "nkey_seed_file",
    "certificate_authority",
    "client_certificate",
    "client_key",
    "max_in_flight",
    "ack_timeout",
    "on_failure",
    "dead_letter",
    "queue_events",
    "transform",
];

/// `type = "nats"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSinkConfig {
    /// Tried in turn; servers announced by the cluster are added.
    pub servers: Vec<ServerUrl>,
    pub subject: SubjectTemplate,
    /// The stream that must store the records (`Nats-Expected-Stream`).
    pub stream: String,
    pub auth: Auth,
    /// PEM CA for TLS (absolute path); setting it turns TLS on.
    pub certificate_authority: Option<PathBuf>,
    /// Client certificate and key for mutual TLS (both or neither).
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Publishes awaiting their PubAck at once (>= 1).
    pub max_in_flight: usize,
    /// A publish without a PubAck after this long is sent again.
    pub ack_timeout: Duration,
    pub on_failure: OnFailure,
    /// Per-sink queue bound overriding `[daemon] sink_queue_events`.
    pub queue_events: Option<usize>,
}

/// A JetStream stream name: what nats-server accepts.
fn stream_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 255 {
        return Err("a stream name is 1 to 255 characters".into());
    }
    match s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        Some(c) => Err(format!(
            "invalid stream name {s:?}: {c:?} is not allowed (no whitespace, '.', '*', '>', '/', '\\')"
        )),
        None => Ok(s.to_owned()),
    }
}

pub(super) fn parse(ctx: &mut Ctx, env: &Env, t: &TableNode) -> Option<SinkConfig> {
    let servers = t.require(ctx, "servers").and_then(|f| {
        let strings = distinct_strings(ctx, &f, "server")?;
        let mut out = Vec::new();
        for (field, s) in strings.items {
            out.push(field.check(ctx, ServerUrl::parse(s))?);
        }
        strings.ok.then_some(out)
    });
    let subject = match t.get("subject") {
        None => SubjectTemplate::parse(DEFAULT_SUBJECT).ok(),
        Some(f) => f.parse_str(ctx, SubjectTemplate::parse),
    };
    let stream = t
        .require(ctx, "stream")
        .and_then(|f| f.parse_str(ctx, stream_name));
    let auth = auth(ctx, env, t);
    let ca = file_path(ctx, env, t, "certificate_authority", FileKind::Pem);
    let cert = file_path(ctx, env, t, "client_certificate", FileKind::Pem);
    let key = file_path(ctx, env, t, "client_key", FileKind::Key);
    let mtls_ok = match (t.get("client_certificate"), t.get("client_key")) {
        (Some(f), None) => {
            f.error(
                ctx,
                "client_certificate needs client_key (and the other way round)",
            );
            false
        }
        (None, Some(f)) => {
            f.error(
                ctx,
                "client_key needs client_certificate (and the other way round)",
            );
            false
        }
        _ => true,
    };
    let max_in_flight = integer(
        ctx,
        t,
        "max_in_flight",
        DEFAULT_MAX_IN_FLIGHT,
        1,
        MAX_IN_FLIGHT,
    );
    let ack_timeout = duration(
        ctx,
        t,
        "ack_timeout",
        DEFAULT_ACK_TIMEOUT,
        ACK_TIMEOUT_RANGE,
    );
    let on_failure = on_failure(ctx, env, t);
    let queue_events = match t.get("queue_events") {
        None => Some(None),
        Some(f) => queue_events(ctx, &f).map(Some),
    };
    if !mtls_ok {
        return None;
    }
    Some(SinkConfig::Nats(NatsSinkConfig {
        servers: servers?,
        subject: subject?,
        stream: stream?,
        auth: auth?,
        certificate_authority: ca?,
        client_certificate: cert?,
        client_key: key?,
        max_in_flight: max_in_flight?,
        ack_timeout: ack_timeout?,
        on_failure: on_failure?,
        queue_events: queue_events?,
    }))
}

/// At most one way to authenticate; `user` and `password_file` together.
fn auth(ctx: &mut Ctx, env: &Env, t: &TableNode) -> Option<Auth> {
    let creds = file_path(ctx, env, t, "credentials_file", FileKind::Token)?;
    let token = file_path(ctx, env, t, "token_file", FileKind::Token)?;
    let seed = file_path(ctx, env, t, "nkey_seed_file", FileKind::Token)?;
    let password = file_path(ctx, env, t, "password_file", FileKind::Token)?;
    let user = match t.get("user") {
        None => None,
        Some(f) => Some(f.str(ctx)?.to_owned()),
    };
    let set: Vec<&str> = [
        ("credentials_file", creds.is_some()),
        ("token_file", token.is_some()),
        ("nkey_seed_file", seed.is_some()),
        ("user", user.is_some() || password.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(k, _)| *k)
    .collect();
    if set.len() > 1 {
        let f = t.get(set[1]).or_else(|| t.get("password_file"))?;
        f.error(
            ctx,
            format!(
                "{} and {} are both set; use one way to authenticate",
                set[0], set[1]
            ),
        );
        return None;
    }
    Some(match (creds, token, seed, user, password) {
        (Some(p), ..) => Auth::Credentials(p),
        (_, Some(p), ..) => Auth::Token(p),
        (_, _, Some(p), ..) => Auth::NkeySeed(p),
        (_, _, _, Some(user), Some(password_file)) => Auth::UserPassword {
            user,
            password_file,
        },
        (_, _, _, Some(_), None) => {
            t.get("user")?.error(ctx, "user needs password_file");
            return None;
        }
        (_, _, _, None, Some(_)) => {
            t.get("password_file")?
                .error(ctx, "password_file needs user");
            return None;
        }
        _ => Auth::None,
    })
}
