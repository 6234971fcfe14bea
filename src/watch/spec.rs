//! What the daemon asks of a watch and what the watch asks of the daemon:
//! the configured watch in the machine's terms, and the requests the
//! machine wants sent.

use crate::config::{EventType, InitialList, OnStart, WatchTarget};
use crate::kube::event::ObjectMeta;
use crate::kube::Selectors;
use std::time::Duration;

/// What the watch is configured to do, in the terms the machine needs.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSpec {
    /// For logs and status: the configured name, with `[NAMESPACE]` when
    /// one configured watch runs one machine per namespace.
    pub name: String,
    /// The configured name, written to records.
    pub record_name: String,
    pub target: WatchTarget,
    /// The server URL's path prefix ("" for most servers).
    pub base_path: String,
    /// `None`: every namespace.
    pub namespace: Option<String>,
    /// Objects in these namespaces are neither delivered nor indexed.
    pub exclude_namespaces: Vec<String>,
    pub metadata_only: bool,
    pub initial_list: InitialList,
    pub selectors: Selectors,
    pub events: Vec<EventType>,
    pub on_start: OnStart,
    pub page_size: u32,
    pub watch_timeout: Duration,
}

impl WatchSpec {
    /// True for objects in an excluded namespace.
    pub(crate) fn excludes(&self, meta: &ObjectMeta<'_>) -> bool {
        !self.exclude_namespaces.is_empty()
            && meta
                .namespace
                .as_deref()
                .is_some_and(|ns| self.exclude_namespaces.iter().any(|e| e == ns))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A discovery document (whole body, like a LIST).
    Discovery,
    List,
    /// A WATCH, or a streaming list (a WATCH that starts with the state).
    Watch,
}

/// A request the daemon should send for this watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlan {
    pub kind: RequestKind,
    pub path_and_query: String,
    /// The `Accept` header.
    pub accept: &'static str,
}
