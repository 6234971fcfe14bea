//! `type = "nats"`: a NATS JetStream sink.

use super::OnFailure;
use crate::nats::subject::SubjectTemplate;
use crate::nats::{Auth, ServerUrl};
use std::path::PathBuf;
use std::time::Duration;

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
