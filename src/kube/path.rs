//! Request paths and query strings for LIST and WATCH.

use crate::http::percent_encode_query_value;
use std::fmt::Write;

/// Where a resource lives: `/api/v1/namespaces/NS/pods` or
/// `/apis/apps/v1/deployments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath(String);

impl ResourcePath {
    /// `base_path` is the server URL's path prefix ("" for most servers).
    pub fn new(base_path: &str, api_version: &str, namespace: Option<&str>, plural: &str) -> Self {
        let mut p = String::from(base_path.trim_end_matches('/'));
        if api_version.contains('/') {
            p.push_str("/apis/");
        } else {
            p.push_str("/api/");
        }
        p.push_str(api_version);
        if let Some(ns) = namespace {
            p.push_str("/namespaces/");
            p.push_str(ns);
        }
        p.push('/');
        p.push_str(plural);
        ResourcePath(p)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Selectors shared by the LIST and the WATCH of one watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors {
    pub label: Option<String>,
    pub field: Option<String>,
}

/// The query of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchQuery<'a> {
    List {
        limit: u32,
        continue_token: Option<&'a str>,
        /// The first page at exactly this resourceVersion
        /// (`resourceVersionMatch=Exact`): a standby learning the state its
        /// leader confirmed.
        exact: Option<&'a str>,
    },
    Watch {
        resource_version: Option<&'a str>,
        timeout_seconds: u64,
    },
    /// A watch that starts with the current state as ADDED events, ended
    /// by a bookmark annotated `k8s.io/initial-events-end`.
    StreamingList { timeout_seconds: u64 },
}

/// `Accept` for LISTs of `PartialObjectMetadata`.
pub const METADATA_LIST_ACCEPT: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
/// `Accept` for WATCHes of `PartialObjectMetadata` (full objects as a fallback).
pub const METADATA_WATCH_ACCEPT: &str =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
pub const JSON_ACCEPT: &str = "application/json";

impl WatchQuery<'_> {
    pub fn to_path(&self, path: &ResourcePath, selectors: &Selectors) -> String {
        let mut q = String::with_capacity(path.as_str().len() + 96);
        q.push_str(path.as_str());
        let mut sep = '?';
        let mut add = |q: &mut String, key: &str, value: &str| {
            let _ = write!(q, "{sep}{key}={}", percent_encode_query_value(value));
            sep = '&';
        };
        match self {
            WatchQuery::List {
                limit,
                continue_token,
                exact,
            } => {
                add(&mut q, "limit", &limit.to_string());
                if let Some(c) = continue_token {
                    add(&mut q, "continue", c);
                }
                if let Some(rv) = exact {
                    add(&mut q, "resourceVersion", rv);
                    add(&mut q, "resourceVersionMatch", "Exact");
                }
            }
            WatchQuery::Watch {
                resource_version,
                timeout_seconds,
            } => {
                add(&mut q, "watch", "true");
                if let Some(rv) = resource_version {
                    add(&mut q, "resourceVersion", rv);
                }
                add(&mut q, "allowWatchBookmarks", "true");
                add(&mut q, "timeoutSeconds", &timeout_seconds.to_string());
            }
            WatchQuery::StreamingList { timeout_seconds } => {
                add(&mut q, "watch", "true");
                add(&mut q, "sendInitialEvents", "true");
                add(&mut q, "resourceVersionMatch", "NotOlderThan");
                // Unset: the initial events are a consistent, current read.
                add(&mut q, "resourceVersion", "");
                add(&mut q, "allowWatchBookmarks", "true");
                add(&mut q, "timeoutSeconds", &timeout_seconds.to_string());
            }
        }
        if let Some(l) = &selectors.label {
            add(&mut q, "labelSelector", l);
        }
        if let Some(f) = &selectors.field {
            add(&mut q, "fieldSelector", f);
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_grouped_paths() {
        assert_eq!(
            ResourcePath::new("", "v1", Some("default"), "pods").as_str(),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(
            ResourcePath::new("/k8s/", "apps/v1", None, "deployments").as_str(),
            "/k8s/apis/apps/v1/deployments"
        );
    }

    #[test]
    fn queries_encode_selectors() {
        let p = ResourcePath::new("", "v1", None, "pods");
        let sel = Selectors {
            label: Some("app in (a,b)".into()),
            field: Some("metadata.name=x".into()),
        };
        let list = WatchQuery::List {
            limit: 500,
            continue_token: Some("a+b/c="),
            exact: None,
        }
        .to_path(&p, &sel);
        let exact = WatchQuery::List {
            limit: 500,
            continue_token: None,
            exact: Some("42"),
        }
        .to_path(&p, &Selectors::default());
        assert_eq!(
            exact,
            "/api/v1/pods?limit=500&resourceVersion=42&resourceVersionMatch=Exact"
        );
        assert_eq!(list, "/api/v1/pods?limit=500&continue=a%2Bb%2Fc%3D&labelSelector=app%20in%20%28a%2Cb%29&fieldSelector=metadata.name%3Dx");
        let watch = WatchQuery::Watch {
            resource_version: Some("17"),
            timeout_seconds: 300,
        }
        .to_path(&p, &Selectors::default());
        assert_eq!(watch, "/api/v1/pods?watch=true&resourceVersion=17&allowWatchBookmarks=true&timeoutSeconds=300");
        let stream = WatchQuery::StreamingList {
            timeout_seconds: 300,
        }
        .to_path(&p, &Selectors::default());
        assert_eq!(stream, "/api/v1/pods?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=&allowWatchBookmarks=true&timeoutSeconds=300");
    }
}
