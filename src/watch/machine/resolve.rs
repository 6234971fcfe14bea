//! Discovery steps: a watch by kind (`kind = "deploy"`) asks the server's
//! discovery documents which resource that is, one GET at a time, before it
//! can list. The GETs and their parsing are `kube::discovery`'s; this is
//! what the watch makes of the outcome.

use super::super::spec::WatchSpec;
use crate::kube::discovery::{Discovery, Query};
use crate::kube::ResourcePath;

/// Where the watch's resource lives, known from the configuration or once
/// discovery resolved its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `v1` or `GROUP/VERSION`.
    pub api_version: String,
    /// The plural.
    pub resource: String,
    /// From discovery; `None` for a watch naming its resource directly.
    pub kind: Option<String>,
    pub path: ResourcePath,
}

impl Resolved {
    /// A watch naming its resource directly.
    pub(super) fn configured(spec: &WatchSpec, api_version: &str, resource: &str) -> Self {
        Resolved {
            api_version: api_version.to_owned(),
            resource: resource.to_owned(),
            kind: None,
            path: ResourcePath::new(
                &spec.base_path,
                api_version,
                spec.namespace.as_deref(),
                resource,
            ),
        }
    }
}

/// Where discovery stands after a document (or a 404).
#[derive(Debug)]
pub(super) enum Resolution {
    /// More documents to fetch.
    Next(Box<Discovery>),
    Resolved(Resolved),
    /// The name is not served (yet): discover again later, slowly (a CRD
    /// being installed). Says why; the caller logs it with the delay.
    NotYet {
        again: Box<Discovery>,
        why: String,
    },
    /// The name can never resolve as configured (ambiguous, or a namespace
    /// on a cluster-scoped kind); the error says why.
    Failed(String),
}

/// Says that the name is not served yet and when discovery tries again.
pub(super) fn log_not_yet(spec: &WatchSpec, why: &str, delay: std::time::Duration) {
    log::warn!(
        "watch {}: {why}; if it is a CustomResourceDefinition not installed yet, it will be picked up: discovering again in {} s",
        spec.name,
        delay.as_secs_f32().ceil()
    );
}

/// A fresh discovery for the same name (after a failure: start over).
pub(super) fn again(spec: &WatchSpec, d: &Discovery) -> Box<Discovery> {
    Box::new(Discovery::new(&spec.base_path, d.query().clone()))
}

/// Next discovery GET, or the resource once every document is in. Logs
/// what it decided.
pub(super) fn after_step(spec: &WatchSpec, d: Box<Discovery>) -> Resolution {
    if !d.is_done() {
        return Resolution::Next(d);
    }
    let query: &Query = d.query();
    let resource = match d.resolve() {
        Ok(r) => r,
        Err(e) if e.is_permanent() => {
            log::error!(
                "watch {}: kind {e}; this watch does not run (the others do); fix the configuration and reload (SIGHUP)",
                spec.name
            );
            return Resolution::Failed(format!("kind {e}"));
        }
        Err(e) => {
            return Resolution::NotYet {
                again: again(spec, &d),
                why: e.to_string(),
            }
        }
    };
    if let (Some(ns), false) = (&spec.namespace, resource.namespaced) {
        let error = format!(
            "{:?} is {} ({}), which is cluster-scoped: namespace {ns:?} cannot apply",
            query.name,
            resource.qualified(),
            resource.api_version()
        );
        log::error!(
            "watch {}: {error}; remove namespace from the watch and reload (SIGHUP). This watch does not run (the others do)",
            spec.name,
        );
        return Resolution::Failed(error);
    }
    log::info!(
        "watch {}: {:?} is {} ({}, {}; {} discovery)",
        spec.name,
        query.name,
        resource.qualified(),
        resource.api_version(),
        if resource.namespaced {
            "namespaced"
        } else {
            "cluster-scoped"
        },
        if d.was_aggregated() {
            "aggregated"
        } else {
            "legacy"
        }
    );
    let api_version = resource.api_version();
    let path = ResourcePath::new(
        &spec.base_path,
        &api_version,
        spec.namespace.as_deref(),
        &resource.plural,
    );
    Resolution::Resolved(Resolved {
        api_version,
        resource: resource.plural,
        kind: Some(resource.kind),
        path,
    })
}
