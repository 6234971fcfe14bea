//! `kwatchd rbac`: the least-privilege RBAC objects a configuration needs,
//! as YAML for `kubectl apply`. Derived from the configuration alone, so it
//! can run in CI next to `kwatchd check --offline`: the rules are what the
//! daemon requests, and nothing more.
//!
//! - every watched resource: `list` and `watch`, in a Role per watched
//!   namespace, or in a ClusterRole when a watch covers every namespace;
//! - the Lease of `[daemon.leader_election]`: `get` and `update` on that one
//!   name and `create` on `leases` (RBAC cannot restrict a create by name).
//!
//! A `kind` resolved through discovery at run time is written as the
//! configuration names it (`plural.group`, or the kind lower-cased) and
//! flagged in a comment; discovery itself (`/api`, `/apis`) is open to every
//! authenticated user through the default `system:discovery` binding.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::config::{Config, WatchTarget};

/// What the objects are named, and who they are bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacOptions {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    pub service_account: String,
    /// Only watches of this `[clusters.NAME]` (and its Lease); `None`: all.
    pub cluster: Option<String>,
}

/// `(apiGroup, resource)`.
type Resource = (String, String);

/// Where the rules go: `None` is the ClusterRole.
type Scope = Option<String>;

/// The YAML documents, each preceded by `---`.
pub fn render(config: &Config, options: &RbacOptions) -> String {
    let mut scopes: BTreeMap<Scope, BTreeSet<Resource>> = BTreeMap::new();
    let mut guesses: BTreeMap<Resource, String> = BTreeMap::new();
    let watches = config
        .watches
        .iter()
        .filter(|w| options.cluster.as_ref().is_none_or(|c| *c == w.cluster));
    for w in watches {
        let (resource, guessed) = resource_of(&w.target);
        if guessed {
            guesses.insert(resource.clone(), w.target.describe());
        }
        let namespaces: Vec<Scope> = match w.namespaces.as_slice() {
            [] => vec![None],
            ns => ns.iter().cloned().map(Some).collect(),
        };
        for scope in namespaces {
            scopes.entry(scope).or_default().insert(resource.clone());
        }
    }
    let mut out = String::new();
    let name = &options.service_account;
    for (scope, resources) in &scopes {
        let rules = watch_rules(resources);
        let (role, binding) = match scope {
            None => (
                object("ClusterRole", name, None, rules),
                binding("ClusterRoleBinding", "ClusterRole", name, None, options),
            ),
            Some(ns) => (
                object("Role", name, Some(ns), rules),
                binding("RoleBinding", "Role", name, Some(ns), options),
            ),
        };
        push_docs(
            &mut out,
            &[role, binding],
            scope_comment(resources, &guesses),
        );
    }
    let lease = config
        .daemon
        .leader_election
        .as_ref()
        .filter(|le| options.cluster.as_ref().is_none_or(|c| *c == le.cluster));
    if let Some(le) = lease {
        let role_name = format!("{name}-leader-election");
        let rules = json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": [le.name], "verbs": ["get", "update"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        ]);
        let docs = [
            object("Role", &role_name, Some(&le.namespace), rules),
            binding(
                "RoleBinding",
                "Role",
                &role_name,
                Some(&le.namespace),
                options,
            ),
        ];
        push_docs(&mut out, &docs, Vec::new());
    }
    out
}

/// The API group and plural resource a watch requests; `true` when it was
/// guessed from a kind that discovery resolves at run time.
fn resource_of(target: &WatchTarget) -> (Resource, bool) {
    match target {
        WatchTarget::Resource {
            api_version,
            resource,
        } => ((group_of(api_version), resource.clone()), false),
        WatchTarget::Kind { name, api_version } => {
            let lower = name.to_ascii_lowercase();
            match lower.split_once('.') {
                Some((plural, group)) => ((group.to_string(), plural.to_string()), false),
                None => {
                    let group = api_version.as_deref().map(group_of).unwrap_or_default();
                    ((group, lower), true)
                }
            }
        }
    }
}

/// `v1` is the core group (""), `apps/v1` is `apps`.
fn group_of(api_version: &str) -> String {
    api_version
        .rsplit_once('/')
        .map_or(String::new(), |(g, _)| g.to_string())
}

fn watch_rules(resources: &BTreeSet<Resource>) -> Value {
    let mut by_group: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (group, resource) in resources {
        by_group.entry(group).or_default().push(resource);
    }
    Value::Array(
        by_group
            .into_iter()
            .map(|(group, resources)| {
                json!({"apiGroups": [group], "resources": resources, "verbs": ["list", "watch"]})
            })
            .collect(),
    )
}

fn scope_comment(
    resources: &BTreeSet<Resource>,
    guesses: &BTreeMap<Resource, String>,
) -> Vec<String> {
    resources
        .iter()
        .filter_map(|r| guesses.get(r).map(|d| (r, d)))
        .map(|((group, resource), described)| {
            format!(
                "{described}: written as resource {resource:?} in group {group:?}; discovery resolves the kind at run time, check the plural (kubectl api-resources)"
            )
        })
        .collect()
}

fn object(kind: &str, name: &str, namespace: Option<&str>, rules: Value) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "rules": rules,
    })
}

fn binding(
    kind: &str,
    role_kind: &str,
    role: &str,
    namespace: Option<&str>,
    options: &RbacOptions,
) -> Value {
    let mut b = object(kind, role, namespace, Value::Null);
    if let Some(o) = b.as_object_mut() {
        o.remove("rules");
        o.insert(
            "roleRef".into(),
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}),
        );
        o.insert(
            "subjects".into(),
            json!([{"kind": "ServiceAccount", "name": options.service_account,
                    "namespace": options.namespace}]),
        );
    }
    b
}

fn push_docs(out: &mut String, docs: &[Value], comments: Vec<String>) {
    for (i, doc) in docs.iter().enumerate() {
        out.push_str("---\n");
        if i == 0 {
            for c in &comments {
                let _ = writeln!(out, "# {c}");
            }
        }
        // A Value of strings, numbers, arrays and objects always serializes.
        if let Ok(yaml) = serde_yaml_ng::to_string(doc) {
            out.push_str(&yaml);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::Verb;
    use std::path::Path;

    const CONFIG: &str = r#"
[daemon.leader_election]
cluster = "lo"
namespace = "ops"
name = "kw"
[clusters.lo]
server = "http://127.0.0.1:1"
[clusters.other]
server = "http://127.0.0.1:2"
[sinks.out]
type = "stdout"
[[watch]]
name = "pods"
cluster = "lo"
api_version = "v1"
resource = "pods"
sinks = ["out"]
[[watch]]
name = "cms"
cluster = "lo"
api_version = "v1"
resource = "configmaps"
namespace = ["a", "b"]
sinks = ["out"]
[[watch]]
name = "deploys"
cluster = "lo"
kind = "Deployment"
api_version = "apps/v1"
namespace = ["a"]
sinks = ["out"]
[[watch]]
name = "widgets"
cluster = "lo"
kind = "widgets.example.com"
sinks = ["out"]
[[watch]]
name = "elsewhere"
cluster = "other"
api_version = "v1"
resource = "secrets"
sinks = ["out"]
"#;

    fn docs(cluster: Option<&str>) -> (String, Vec<Value>) {
        let config = Config::parse(CONFIG, Path::new("k.toml")).unwrap();
        let options = RbacOptions {
            namespace: "kwatchd".into(),
            service_account: "kwatchd".into(),
            cluster: cluster.map(str::to_string),
        };
        let text = render(&config, &options);
        let docs = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde_json::to_value(serde_yaml_ng::Value::deserialize(d).unwrap()).unwrap())
            .collect();
        (text, docs)
    }

    use serde::Deserialize;

    fn find<'a>(docs: &'a [Value], kind: &str, name: &str, ns: Option<&str>) -> &'a Value {
        docs.iter()
            .find(|d| {
                d["kind"] == kind
                    && d["metadata"]["name"] == name
                    && d["metadata"]["namespace"].as_str() == ns
            })
            .unwrap_or_else(|| panic!("no {kind} {name} in {ns:?}: {docs:#?}"))
    }

    #[test]
    fn rules_are_list_and_watch_per_resource_and_namespace() {
        let (text, docs) = docs(Some("lo"));
        assert_eq!(docs.len(), 8, "{text}");
        let cluster = find(&docs, "ClusterRole", "kwatchd", None);
        assert_eq!(
            cluster["rules"],
            json!([
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
                {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["list", "watch"]},
            ])
        );
        let a = find(&docs, "Role", "kwatchd", Some("a"));
        assert_eq!(
            a["rules"],
            json!([
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]},
                {"apiGroups": ["apps"], "resources": ["deployment"], "verbs": ["list", "watch"]},
            ])
        );
        assert!(
            text.contains("# kind Deployment (apps/v1): written as resource \"deployment\""),
            "{text}"
        );
        let b = find(&docs, "Role", "kwatchd", Some("b"));
        assert_eq!(b["rules"].as_array().map(Vec::len), Some(1));
        let bind = find(&docs, "RoleBinding", "kwatchd", Some("b"));
        assert_eq!(bind["roleRef"]["kind"], "Role");
        assert_eq!(bind["subjects"][0]["namespace"], "kwatchd");
        let cbind = find(&docs, "ClusterRoleBinding", "kwatchd", None);
        assert_eq!(cbind["roleRef"]["kind"], "ClusterRole");
        assert!(!text.contains("secrets"), "another cluster's watch: {text}");
    }

    #[test]
    fn the_lease_role_grants_exactly_what_the_elector_requests() {
        let (_, docs) = docs(None);
        let role = find(&docs, "Role", "kwatchd-leader-election", Some("ops"));
        let mut granted: Vec<&str> = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
            })
            .collect();
        granted.sort_unstable();
        let mut requested: Vec<&str> = Verb::ALL.iter().map(|v| v.as_str()).collect();
        requested.sort_unstable();
        assert_eq!(granted, requested);
        assert_eq!(role["rules"][0]["resourceNames"], json!(["kw"]));
        find(&docs, "RoleBinding", "kwatchd-leader-election", Some("ops"));
        // Without --cluster, every cluster's watches are included.
        let all = find(&docs, "ClusterRole", "kwatchd", None);
        assert!(all["rules"].to_string().contains("secrets"));
        // The Lease's cluster filtered out: no Lease role.
        let (text, _) = self::docs(Some("other"));
        assert!(!text.contains("leases"), "{text}");
    }
}
