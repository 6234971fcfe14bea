//! Discovery: what the emulator says it serves (`/api`, `/apis`, `/api/v1`, `/apis/G/V`, aggregated v2), from the
//! well-known table, the resource types installed at run time (CRDs) and whatever objects were created under.

use std::collections::BTreeSet;

use serde_json::json;

use super::server::Ctx;
use super::store::{self, KNOWN};
use super::ResourceDef;

/// What every served resource type allows (`deletecollection` is not among them: it is not emulated).
const VERBS: [&str; 7] = [
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// The resources served before any is installed: the well-known table and `gadgets` in two groups (a name that
/// is ambiguous without its group).
pub(crate) fn default_resources() -> Vec<ResourceDef> {
    let mut defs: Vec<ResourceDef> = KNOWN
        .iter()
        .map(|(gv, p, _, n)| ResourceDef::new(gv, p, *n, store::short_names_for(p)))
        .collect();
    defs.push(ResourceDef::new("example.com/v1", "gadgets", true, &["gd"]));
    defs.push(ResourceDef::new("acme.io/v1", "gadgets", true, &[]));
    defs
}

/// Resources to advertise: the installed ones plus everything objects were created under, by group version.
pub(crate) fn known_resources(ctx: &Ctx) -> Vec<ResourceDef> {
    let st = ctx.sh.lock();
    let mut defs = st.resources.clone();
    for res in st.store.resources() {
        if !defs.iter().any(|d| d.resource == res) {
            defs.push(ResourceDef {
                kind: res.kind(),
                resource: res,
                namespaced: true,
                short_names: Vec::new(),
            });
        }
    }
    defs.sort_by(|a, b| a.resource.cmp(&b.resource));
    defs
}

pub(crate) fn wants_aggregated(ctx: &Ctx) -> bool {
    ctx.sh.settings.aggregated_discovery
        && ctx
            .req
            .header("accept")
            .is_some_and(|a| a.contains("as=APIGroupDiscoveryList") && a.contains("v=v2"))
}

/// An `APIGroupDiscoveryList` (v2) of the core group (`core`) or of every other group.
pub(crate) fn aggregated(ctx: &Ctx, core: bool) -> String {
    let defs = known_resources(ctx);
    let mut groups: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for d in defs
        .iter()
        .filter(|d| d.resource.api_version.contains('/') != core)
    {
        let gv = &d.resource.api_version;
        let (g, v) = gv.split_once('/').unwrap_or(("", gv));
        let resource = json!({
            "resource": d.resource.plural,
            "responseKind": {"group": g, "version": v, "kind": d.kind},
            "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": d.kind.to_lowercase(),
            "shortNames": d.short_names,
            "verbs": VERBS,
        });
        match groups.iter_mut().find(|(name, _)| name == g) {
            Some((_, versions)) => match versions.iter_mut().find(|x| x["version"] == v) {
                Some(x) => {
                    if let Some(list) = x["resources"].as_array_mut() {
                        list.push(resource);
                    }
                }
                None => versions
                    .push(json!({"version": v, "resources": [resource], "freshness": "Current"})),
            },
            None => groups.push((
                g.to_string(),
                vec![json!({"version": v, "resources": [resource], "freshness": "Current"})],
            )),
        }
    }
    let items: Vec<_> = groups
        .into_iter()
        .map(|(name, versions)| {
            let meta = if name.is_empty() {
                json!({"creationTimestamp": null})
            } else {
                json!({"name": name, "creationTimestamp": null})
            };
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
        .to_string()
}

pub(crate) fn api_groups(ctx: &Ctx) -> String {
    let gvs: BTreeSet<String> = known_resources(ctx)
        .into_iter()
        .map(|d| d.resource.api_version)
        .filter(|gv| gv.contains('/'))
        .collect();
    let groups: Vec<_> = gvs
        .iter()
        .map(|gv| {
            let (g, v) = gv.split_once('/').unwrap_or((gv, ""));
            let ver = json!({"groupVersion": gv, "version": v});
            json!({"name": g, "versions": [ver], "preferredVersion": ver})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}).to_string()
}

pub(crate) fn resource_list(ctx: &Ctx, gv: &str) -> Option<String> {
    let resources: Vec<_> = known_resources(ctx)
        .into_iter()
        .filter(|d| d.resource.api_version == gv)
        .map(|d| {
            json!({
                "name": d.resource.plural, "singularName": d.kind.to_lowercase(), "namespaced": d.namespaced,
                "kind": d.kind, "verbs": VERBS, "shortNames": d.short_names,
            })
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}).to_string())
}

/// `/openapi/v3`: where each group version's document is. kubectl reads it before it creates, replaces or
/// patches, to learn whether the server validates fields itself (`fieldValidation`); without it, it refuses to
/// send anything unless told `--validate=false`.
pub(crate) fn openapi_root(ctx: &Ctx) -> String {
    let gvs: BTreeSet<String> = known_resources(ctx)
        .into_iter()
        .map(|d| d.resource.api_version)
        .collect();
    let paths: serde_json::Map<String, serde_json::Value> = gvs
        .iter()
        .map(|gv| {
            let prefix = openapi_prefix(gv);
            let hash = fnv(&openapi_gv(ctx, gv).unwrap_or_default());
            let url = format!("/openapi/v3/{prefix}?hash={hash:016X}");
            (prefix, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths}).to_string()
}

fn openapi_prefix(gv: &str) -> String {
    if gv.contains('/') {
        format!("apis/{gv}")
    } else {
        format!("api/{gv}")
    }
}

/// FNV-1a, for the `hash` parameter clients cache documents by: it changes when a group version's resources do.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The OpenAPI v3 document of one group version (`api/v1` or `apis/G/V` as in the root's keys): a PATCH
/// operation per resource, tagged with its group, version and kind and taking `fieldValidation`. No schemas:
/// the emulator does not validate fields, and kubectl needs none for the commands it is meant for.
pub(crate) fn openapi_gv(ctx: &Ctx, gv: &str) -> Option<String> {
    let defs: Vec<ResourceDef> = known_resources(ctx)
        .into_iter()
        .filter(|d| d.resource.api_version == gv)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let (group, version) = gv.split_once('/').unwrap_or(("", gv));
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let mut paths = serde_json::Map::new();
    for d in defs {
        let base = openapi_prefix(gv);
        let path = if d.namespaced {
            format!(
                "/{base}/namespaces/{{namespace}}/{}/{{name}}",
                d.resource.plural
            )
        } else {
            format!("/{base}/{}/{{name}}", d.resource.plural)
        };
        let patch = json!({
            "operationId": format!("patch{}", d.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": d.kind},
            "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(path, json!({"patch": patch}));
    }
    Some(
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.31.0-kwatchd-sim"},
            "paths": paths,
            "components": {"schemas": {}},
        })
        .to_string(),
    )
}
