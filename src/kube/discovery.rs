//! Discovery: which resources a server serves, and resolving a name the way
//! kubectl does (kind, plural, singular, short name or `plural.group`,
//! case-insensitive) to a group, version, plural and scope.
//!
//! Sans-I/O: [`Discovery`] says which path to GET next and takes the
//! answers. It asks `/api` and `/apis` for aggregated discovery (one answer
//! each, every group and version with its resources); a server that does
//! not offer it answers the legacy documents, and the group-version lists
//! of the groups that matter are fetched one by one.

use serde::Deserialize;
use std::collections::VecDeque;
use std::fmt;

/// Offers aggregated discovery v2, then v2beta1, then the legacy documents.
pub const DISCOVERY_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

/// One listable, watchable resource of one group version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResource {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// The group's preferred version.
    pub preferred: bool,
}

impl ApiResource {
    /// `v1` or `GROUP/VERSION`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods` for the core group: what a user writes
    /// to name exactly this resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// What a watch asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub name: String,
    /// `v1` or `GROUP/VERSION`: only resources of this group version.
    pub api_version: Option<String>,
}

impl Query {
    fn group_version(&self) -> Option<(&str, &str)> {
        let v = self.api_version.as_deref()?;
        Some(v.rsplit_once('/').unwrap_or(("", v)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// Nothing of that name (yet: a CRD may be installed later).
    NotFound {
        name: String,
        api_version: Option<String>,
    },
    /// Several resources answer to the name.
    Ambiguous {
        name: String,
        candidates: Vec<String>,
    },
}

impl ResolveError {
    /// Retrying can help (a CRD being installed); an ambiguity needs a fix
    /// in the configuration.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ResolveError::Ambiguous { .. })
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NotFound {
                name,
                api_version: Some(v),
            } => write!(f, "the server serves no resource {name:?} in {v} (a kind, plural, short name or plural.group that can be listed and watched)"),
            ResolveError::NotFound { name, .. } => write!(f, "the server serves no resource {name:?} (a kind, plural, short name or plural.group that can be listed and watched)"),
            ResolveError::Ambiguous { name, candidates } => write!(
                f,
                "{name:?} is ambiguous: it names {}; write one of these as kind, or set api_version",
                candidates.join(", ")
            ),
        }
    }
}

/// Resolves `query` among `resources` (in discovery order).
///
/// Matches are tried in tiers, as kubectl does: the plural or singular
/// name (or `plural.group`), then short names, then the kind; the first
/// tier with a match decides. Within one group the preferred version wins;
/// matches in several groups are ambiguous.
pub fn resolve(resources: &[ApiResource], query: &Query) -> Result<ApiResource, ResolveError> {
    let name = query.name.to_ascii_lowercase();
    let gv = query.group_version();
    let in_scope = |r: &&ApiResource| gv.is_none_or(|(g, v)| r.group == g && r.version == v);
    let tiers: [&dyn Fn(&ApiResource) -> bool; 3] = [
        &|r| r.plural == name || r.singular == name || r.qualified() == name,
        &|r| r.short_names.iter().any(|s| s.eq_ignore_ascii_case(&name)),
        &|r| r.kind.eq_ignore_ascii_case(&name),
    ];
    for tier in tiers {
        let matches: Vec<&ApiResource> = resources
            .iter()
            .filter(in_scope)
            .filter(|r| tier(r))
            .collect();
        if matches.is_empty() {
            continue;
        }
        // One per (group, plural): the preferred version, else the first.
        let mut picked: Vec<&ApiResource> = Vec::new();
        for r in &matches {
            match picked
                .iter_mut()
                .find(|p| p.group == r.group && p.plural == r.plural)
            {
                Some(p) if r.preferred && !p.preferred => *p = r,
                Some(_) => {}
                None => picked.push(r),
            }
        }
        if picked.len() == 1 {
            return Ok(picked[0].clone());
        }
        let mut candidates: Vec<String> = picked.iter().map(|r| r.qualified()).collect();
        candidates.sort();
        candidates.dedup();
        return Err(ResolveError::Ambiguous {
            name: query.name.clone(),
            candidates,
        });
    }
    Err(ResolveError::NotFound {
        name: query.name.clone(),
        api_version: query.api_version.clone(),
    })
}

#[derive(Debug)]
pub enum DiscoveryError {
    /// An answer that is not a discovery document.
    Malformed { path: String, error: String },
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Malformed { path, error } => {
                write!(f, "unusable discovery answer from {path}: {error}")
            }
        }
    }
}

/// The requests of one discovery round and what they found.
#[derive(Debug, Clone)]
pub struct Discovery {
    base_path: String,
    query: Query,
    /// Paths still to GET, first is next.
    pending: VecDeque<String>,
    found: Vec<ApiResource>,
    /// Whether any answer was aggregated (for logs).
    aggregated: bool,
}

impl Discovery {
    /// `base_path` is the server URL's path prefix ("" for most servers).
    pub fn new(base_path: &str, query: Query) -> Self {
        let base = base_path.trim_end_matches('/').to_owned();
        let pending = [format!("{base}/api"), format!("{base}/apis")].into();
        Discovery {
            base_path: base,
            query,
            pending,
            found: Vec::new(),
            aggregated: false,
        }
    }

    pub fn query(&self) -> &Query {
        &self.query
    }

    /// The next path to GET (with [`DISCOVERY_ACCEPT`]); `None` when done.
    pub fn next_path(&self) -> Option<&str> {
        self.pending.front().map(String::as_str)
    }

    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn was_aggregated(&self) -> bool {
        self.aggregated
    }

    /// The answer to [`Discovery::next_path`].
    pub fn on_body(&mut self, body: &[u8]) -> Result<(), DiscoveryError> {
        let Some(path) = self.pending.pop_front() else {
            return Ok(());
        };
        let malformed = |error: String| DiscoveryError::Malformed {
            path: path.clone(),
            error,
        };
        let doc: AnyDoc = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
        match doc.kind.as_deref() {
            Some("APIGroupDiscoveryList") => {
                let list: AggregatedList =
                    serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
                self.aggregated = true;
                self.found.extend(list.resources());
            }
            Some("APIVersions") => {
                let v: ApiVersions =
                    serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
                if self.wants_group("") {
                    let preferred = v.versions.first().cloned();
                    for version in v.versions {
                        if self.wants_version("", &version, preferred.as_deref()) {
                            self.pending
                                .push_back(format!("{}/api/{version}", self.base_path));
                        }
                    }
                }
            }
            Some("APIGroupList") => {
                let list: ApiGroupList =
                    serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
                for g in list.groups {
                    if !self.wants_group(&g.name) {
                        continue;
                    }
                    let preferred = g
                        .preferred_version
                        .map(|p| p.version)
                        .or_else(|| g.versions.first().map(|v| v.version.clone()));
                    for v in g.versions {
                        if self.wants_version(&g.name, &v.version, preferred.as_deref()) {
                            self.pending.push_back(format!(
                                "{}/apis/{}/{}",
                                self.base_path, g.name, v.version
                            ));
                        }
                    }
                }
            }
            Some("APIResourceList") => {
                let list: ApiResourceList =
                    serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
                self.found.extend(list.resources());
            }
            other => {
                return Err(malformed(format!(
                    "unexpected kind {:?}",
                    other.unwrap_or("(none)")
                )))
            }
        }
        Ok(())
    }

    /// The GET of [`Discovery::next_path`] answered 404 (a group version
    /// removed meanwhile, or a server without `/apis`): nothing there.
    pub fn on_not_found(&mut self) {
        self.pending.pop_front();
    }

    /// Resolves the query against everything found; meaningful once done.
    pub fn resolve(&self) -> Result<ApiResource, ResolveError> {
        resolve(&self.found, &self.query)
    }

    /// Group-version lists worth fetching: of the asked api_version's
    /// group, or of the group a `plural.group` name names (resource and
    /// short names have no dots, so a dotted name can only be that).
    fn wants_group(&self, group: &str) -> bool {
        let named = match self.query.name.split_once('.') {
            Some((_, g)) => g.eq_ignore_ascii_case(group),
            None => true,
        };
        named && self.query.group_version().is_none_or(|(g, _)| g == group)
    }

    /// Legacy discovery fetches the preferred version of every group (the
    /// one a name resolves to), or exactly the asked api_version.
    fn wants_version(&self, group: &str, version: &str, preferred: Option<&str>) -> bool {
        match self.query.group_version() {
            Some((g, v)) => g == group && v == version,
            None => preferred == Some(version),
        }
    }
}

#[derive(Deserialize)]
struct AnyDoc {
    #[serde(default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct ApiVersions {
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Deserialize)]
struct ApiGroupList {
    #[serde(default)]
    groups: Vec<ApiGroup>,
}

#[derive(Deserialize)]
struct ApiGroup {
    name: String,
    #[serde(default)]
    versions: Vec<GroupVersion>,
    #[serde(default, rename = "preferredVersion")]
    preferred_version: Option<GroupVersion>,
}

#[derive(Deserialize)]
struct GroupVersion {
    version: String,
}

#[derive(Deserialize)]
struct ApiResourceList {
    #[serde(rename = "groupVersion")]
    group_version: String,
    #[serde(default)]
    resources: Vec<LegacyResource>,
}

#[derive(Deserialize)]
struct LegacyResource {
    name: String,
    #[serde(default, rename = "singularName")]
    singular_name: String,
    #[serde(default)]
    namespaced: bool,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default, rename = "shortNames")]
    short_names: Vec<String>,
}

/// Subresources (`pods/log`) and resources that cannot be listed and
/// watched are not candidates.
fn watchable(name: &str, verbs: &[String]) -> bool {
    !name.contains('/') && verbs.iter().any(|v| v == "list") && verbs.iter().any(|v| v == "watch")
}

fn singular_of(singular: &str, kind: &str) -> String {
    if singular.is_empty() {
        kind.to_ascii_lowercase()
    } else {
        singular.to_owned()
    }
}

impl ApiResourceList {
    fn resources(self) -> impl Iterator<Item = ApiResource> {
        let (group, version) = match self.group_version.rsplit_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), self.group_version.clone()),
        };
        self.resources
            .into_iter()
            .filter(|r| watchable(&r.name, &r.verbs))
            .map(move |r| ApiResource {
                group: group.clone(),
                version: version.clone(),
                singular: singular_of(&r.singular_name, &r.kind),
                plural: r.name,
                kind: r.kind,
                namespaced: r.namespaced,
                short_names: r.short_names,
                // Legacy discovery only fetches preferred versions unless a
                // version was asked for, which then is the only one.
                preferred: true,
            })
    }
}

#[derive(Deserialize)]
struct AggregatedList {
    #[serde(default)]
    items: Vec<AggregatedGroup>,
}

#[derive(Deserialize)]
struct AggregatedGroup {
    #[serde(default)]
    metadata: NameMeta,
    /// In order of preference.
    #[serde(default)]
    versions: Vec<AggregatedVersion>,
}

#[derive(Deserialize, Default)]
struct NameMeta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct AggregatedVersion {
    version: String,
    #[serde(default)]
    resources: Vec<AggregatedResource>,
}

#[derive(Deserialize)]
struct AggregatedResource {
    resource: String,
    #[serde(default, rename = "responseKind")]
    response_kind: Option<ResponseKind>,
    #[serde(default)]
    scope: String,
    #[serde(default, rename = "singularResource")]
    singular_resource: String,
    #[serde(default, rename = "shortNames")]
    short_names: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
}

#[derive(Deserialize)]
struct ResponseKind {
    #[serde(default)]
    kind: String,
}

impl AggregatedList {
    fn resources(self) -> Vec<ApiResource> {
        let mut out = Vec::new();
        for g in self.items {
            for (i, v) in g.versions.into_iter().enumerate() {
                for r in v.resources {
                    if !watchable(&r.resource, &r.verbs) {
                        continue;
                    }
                    let kind = r.response_kind.map(|k| k.kind).unwrap_or_default();
                    out.push(ApiResource {
                        group: g.metadata.name.clone(),
                        version: v.version.clone(),
                        singular: singular_of(&r.singular_resource, &kind),
                        plural: r.resource,
                        kind,
                        namespaced: r.scope != "Cluster",
                        short_names: r.short_names,
                        preferred: i == 0,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like a real 1.30 server's `/api` and `/apis` aggregated
    /// answers (trimmed).
    const AGG_API: &str = r#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{},"items":[{"metadata":{"creationTimestamp":null},"versions":[{"version":"v1","resources":[
        {"resource":"pods","responseKind":{"group":"","version":"","kind":"Pod"},"scope":"Namespaced","singularResource":"pod","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["po"],"categories":["all"],"subresources":[{"subresource":"log","responseKind":{"group":"","version":"","kind":"Pod"},"verbs":["get"]}]},
        {"resource":"namespaces","responseKind":{"group":"","version":"","kind":"Namespace"},"scope":"Cluster","singularResource":"namespace","verbs":["create","delete","get","list","patch","update","watch"],"shortNames":["ns"]},
        {"resource":"bindings","responseKind":{"group":"","version":"","kind":"Binding"},"scope":"Namespaced","singularResource":"binding","verbs":["create"]},
        {"resource":"events","responseKind":{"group":"","version":"","kind":"Event"},"scope":"Namespaced","singularResource":"event","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["ev"]}
    ],"freshness":"Current"}]}]}"#;

    const AGG_APIS: &str = r#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{},"items":[
        {"metadata":{"name":"apps","creationTimestamp":null},"versions":[{"version":"v1","resources":[
            {"resource":"deployments","responseKind":{"group":"","version":"","kind":"Deployment"},"scope":"Namespaced","singularResource":"deployment","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["deploy"],"categories":["all"]}
        ],"freshness":"Current"}]},
        {"metadata":{"name":"events.k8s.io","creationTimestamp":null},"versions":[{"version":"v1","resources":[
            {"resource":"events","responseKind":{"group":"","version":"","kind":"Event"},"scope":"Namespaced","singularResource":"event","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["ev"]}
        ],"freshness":"Current"}]},
        {"metadata":{"name":"example.com","creationTimestamp":null},"versions":[
            {"version":"v2","resources":[{"resource":"widgets","responseKind":{"group":"example.com","version":"v2","kind":"Widget"},"scope":"Namespaced","singularResource":"widget","verbs":["delete","deletecollection","get","list","patch","create","update","watch"],"shortNames":["wd"]}],"freshness":"Current"},
            {"version":"v1","resources":[{"resource":"widgets","responseKind":{"group":"example.com","version":"v1","kind":"Widget"},"scope":"Namespaced","singularResource":"widget","verbs":["delete","deletecollection","get","list","patch","create","update","watch"],"shortNames":["wd"]}],"freshness":"Current"}
        ]}
    ]}"#;

    fn aggregated() -> Discovery {
        let mut d = Discovery::new(
            "",
            Query {
                name: "x".into(),
                api_version: None,
            },
        );
        assert_eq!(d.next_path(), Some("/api"));
        d.on_body(AGG_API.as_bytes()).unwrap();
        assert_eq!(d.next_path(), Some("/apis"));
        d.on_body(AGG_APIS.as_bytes()).unwrap();
        assert!(d.is_done() && d.was_aggregated());
        d
    }

    fn q(name: &str, v: Option<&str>) -> Query {
        Query {
            name: name.into(),
            api_version: v.map(Into::into),
        }
    }

    #[test]
    fn kind_plural_short_and_qualified_names_resolve() {
        let d = aggregated();
        for name in [
            "Deployment",
            "deployment",
            "deployments",
            "DEPLOY",
            "deployments.apps",
        ] {
            let r = resolve(&d.found, &q(name, None)).unwrap();
            assert_eq!(
                (r.api_version().as_str(), r.plural.as_str()),
                ("apps/v1", "deployments"),
                "{name}"
            );
            assert!(r.namespaced);
        }
        let ns = resolve(&d.found, &q("ns", None)).unwrap();
        assert_eq!((ns.plural.as_str(), ns.namespaced), ("namespaces", false));
        assert_eq!(
            resolve(&d.found, &q("po", None)).unwrap().api_version(),
            "v1"
        );
    }

    #[test]
    fn preferred_version_wins_unless_a_version_is_asked() {
        let d = aggregated();
        let r = resolve(&d.found, &q("wd", None)).unwrap();
        assert_eq!(r.api_version(), "example.com/v2");
        let r = resolve(&d.found, &q("Widget", Some("example.com/v1"))).unwrap();
        assert_eq!(r.api_version(), "example.com/v1");
    }

    #[test]
    fn names_in_several_groups_are_ambiguous_and_list_candidates() {
        let d = aggregated();
        let e = resolve(&d.found, &q("Event", None)).unwrap_err();
        assert_eq!(
            e,
            ResolveError::Ambiguous {
                name: "Event".into(),
                candidates: vec!["events".into(), "events.events.k8s.io".into()]
            }
        );
        assert!(e.is_permanent());
        assert!(
            e.to_string().contains("events, events.events.k8s.io"),
            "{e}"
        );
        // Either qualification settles it.
        assert_eq!(
            resolve(&d.found, &q("events.events.k8s.io", None))
                .unwrap()
                .group,
            "events.k8s.io"
        );
        assert_eq!(
            resolve(&d.found, &q("events", Some("v1"))).unwrap().group,
            ""
        );
    }

    #[test]
    fn unknown_names_subresources_and_unwatchable_resources_are_not_found() {
        let d = aggregated();
        for name in ["gadgets", "pods/log", "bindings"] {
            let e = resolve(&d.found, &q(name, None)).unwrap_err();
            assert!(matches!(e, ResolveError::NotFound { .. }), "{name}: {e:?}");
            assert!(!e.is_permanent());
        }
        let e = resolve(&d.found, &q("deploy", Some("apps/v2"))).unwrap_err();
        assert!(e.to_string().contains("in apps/v2"), "{e}");
    }

    #[test]
    fn legacy_discovery_fetches_preferred_group_versions() {
        let mut d = Discovery::new("/k8s/", q("wd", None));
        assert_eq!(d.next_path(), Some("/k8s/api"));
        d.on_body(br#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}"#)
            .unwrap();
        d.on_body(br#"{"kind":"APIGroupList","apiVersion":"v1","groups":[
            {"name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}],"preferredVersion":{"groupVersion":"apps/v1","version":"v1"}},
            {"name":"example.com","versions":[{"groupVersion":"example.com/v2","version":"v2"},{"groupVersion":"example.com/v1","version":"v1"}],"preferredVersion":{"groupVersion":"example.com/v2","version":"v2"}}]}"#)
            .unwrap();
        let mut paths = Vec::new();
        while let Some(p) = d.next_path() {
            paths.push(p.to_owned());
            let body = match p {
                "/k8s/api/v1" => {
                    r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[
                    {"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list","watch"],"shortNames":["po"]},
                    {"name":"pods/status","singularName":"","namespaced":true,"kind":"Pod","verbs":["get","patch"]}]}"#
                }
                "/k8s/apis/apps/v1" => {
                    d.on_not_found();
                    continue;
                }
                _ => {
                    r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"example.com/v2","resources":[
                    {"name":"widgets","singularName":"widget","namespaced":true,"kind":"Widget","verbs":["list","watch"],"shortNames":["wd"]}]}"#
                }
            };
            d.on_body(body.as_bytes()).unwrap();
        }
        assert_eq!(
            paths,
            [
                "/k8s/api/v1",
                "/k8s/apis/apps/v1",
                "/k8s/apis/example.com/v2"
            ]
        );
        assert!(!d.was_aggregated());
        let r = d.resolve().unwrap();
        assert_eq!(
            (r.api_version().as_str(), r.kind.as_str()),
            ("example.com/v2", "Widget")
        );
        assert_eq!(resolve(&d.found, &q("pod", None)).unwrap().plural, "pods");
    }

    #[test]
    fn legacy_discovery_with_an_api_version_fetches_only_that() {
        let mut d = Discovery::new("", q("deploy", Some("apps/v1")));
        d.on_body(br#"{"kind":"APIVersions","versions":["v1"]}"#)
            .unwrap();
        d.on_body(br#"{"kind":"APIGroupList","groups":[{"name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}]},{"name":"batch","versions":[{"groupVersion":"batch/v1","version":"v1"}]}]}"#).unwrap();
        assert_eq!(d.next_path(), Some("/apis/apps/v1"));
        d.on_body(br#"{"kind":"APIResourceList","groupVersion":"apps/v1","resources":[{"name":"deployments","singularName":"deployment","namespaced":true,"kind":"Deployment","verbs":["list","watch"],"shortNames":["deploy"]}]}"#).unwrap();
        assert!(d.is_done());
        assert_eq!(d.resolve().unwrap().plural, "deployments");
    }

    #[test]
    fn legacy_discovery_of_a_qualified_name_fetches_only_its_group() {
        let mut d = Discovery::new("", q("Deployments.Apps", None));
        d.on_body(br#"{"kind":"APIVersions","versions":["v1"]}"#)
            .unwrap();
        d.on_body(br#"{"kind":"APIGroupList","groups":[{"name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}]},{"name":"batch","versions":[{"groupVersion":"batch/v1","version":"v1"}]}]}"#).unwrap();
        assert_eq!(d.next_path(), Some("/apis/apps/v1"));
        d.on_body(br#"{"kind":"APIResourceList","groupVersion":"apps/v1","resources":[{"name":"deployments","singularName":"deployment","namespaced":true,"kind":"Deployment","verbs":["list","watch"]}]}"#).unwrap();
        assert!(d.is_done());
        assert_eq!(d.resolve().unwrap().api_version(), "apps/v1");
    }

    #[test]
    fn garbage_is_an_error_naming_the_path() {
        let mut d = Discovery::new("", q("x", None));
        let e = d.on_body(b"<html>").unwrap_err();
        assert!(e.to_string().contains("/api"), "{e}");
        let e = d.on_body(br#"{"kind":"Status"}"#).unwrap_err();
        assert!(e.to_string().contains("unexpected kind"), "{e}");
    }
}
