//! Objects, the global resourceVersion, the bounded watch history and list snapshots.
//!
//! Every mutation bumps the one global resourceVersion by exactly one and appends exactly one event, so the
//! history is contiguous: the event with rv `r` sits at index `r - compacted_through - 1`. That makes "events after
//! rv N" an O(1) lookup even with a large history.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use super::select::Filter;
use super::{EventType, HistoryEvent, ObjectRef, Resource};

/// Labels of one object version.
pub(crate) type Labels = BTreeMap<String, String>;

/// `kind` for a plural: a table of well-known resources, else the capitalised singular.
pub(crate) fn kind_for(plural: &str) -> String {
    if let Some((_, _, kind, _)) = KNOWN.iter().find(|(_, p, _, _)| *p == plural) {
        return kind.to_string();
    }
    let singular = if let Some(stem) = plural.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = plural.strip_suffix("sses") {
        format!("{stem}ss")
    } else if let Some(stem) = plural.strip_suffix('s') {
        stem.to_string()
    } else {
        plural.to_string()
    };
    let mut c = singular.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Well-known resources: (apiVersion, plural, kind, namespaced). Also what discovery lists.
pub(crate) const KNOWN: &[(&str, &str, &str, bool)] = &[
    ("v1", "pods", "Pod", true),
    ("v1", "configmaps", "ConfigMap", true),
    ("v1", "secrets", "Secret", true),
    ("v1", "services", "Service", true),
    ("v1", "endpoints", "Endpoints", true),
    ("v1", "events", "Event", true),
    ("v1", "serviceaccounts", "ServiceAccount", true),
    (
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
    ),
    ("v1", "persistentvolumes", "PersistentVolume", false),
    ("v1", "namespaces", "Namespace", false),
    ("v1", "nodes", "Node", false),
    ("apps/v1", "deployments", "Deployment", true),
    ("apps/v1", "statefulsets", "StatefulSet", true),
    ("apps/v1", "daemonsets", "DaemonSet", true),
    ("apps/v1", "replicasets", "ReplicaSet", true),
    ("batch/v1", "jobs", "Job", true),
    ("batch/v1", "cronjobs", "CronJob", true),
    ("networking.k8s.io/v1", "ingresses", "Ingress", true),
    (
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    ),
    ("coordination.k8s.io/v1", "leases", "Lease", true),
];

/// Short names of well-known resources, as kubectl knows them.
pub(crate) fn short_names_for(plural: &str) -> &'static [&'static str] {
    match plural {
        "pods" => &["po"],
        "configmaps" => &["cm"],
        "services" => &["svc"],
        "endpoints" => &["ep"],
        "events" => &["ev"],
        "serviceaccounts" => &["sa"],
        "persistentvolumeclaims" => &["pvc"],
        "persistentvolumes" => &["pv"],
        "namespaces" => &["ns"],
        "nodes" => &["no"],
        "deployments" => &["deploy"],
        "statefulsets" => &["sts"],
        "daemonsets" => &["ds"],
        "replicasets" => &["rs"],
        "cronjobs" => &["cj"],
        "ingresses" => &["ing"],
        "customresourcedefinitions" => &["crd", "crds"],
        _ => &[],
    }
}

struct Obj {
    uid: String,
    created: String,
    labels: Arc<Labels>,
    json: Arc<str>,
}

/// One entry of the watch history. Shared (`Arc`) with the watch threads, which format it outside the lock.
#[derive(Debug)]
pub(crate) struct Ev {
    pub(crate) rv: u64,
    pub(crate) kind: EventType,
    pub(crate) res: Resource,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) labels: Arc<Labels>,
    pub(crate) json: Arc<str>,
    /// For MODIFIED: labels and JSON before the update, to turn "stopped matching" into a DELETED of the old state;
    /// for DELETED: the state it had. Lists at an older resourceVersion undo events with them.
    pub(crate) prev: Option<(Arc<Labels>, Arc<str>)>,
}

/// A consistent list taken at the first page, served page by page through continue tokens.
struct Snapshot {
    items: Arc<Vec<Arc<str>>>,
    rv: u64,
    created: Instant,
}

/// What a continue token points at: a whole snapshot and where the next page starts.
pub(crate) struct SnapshotPage {
    pub(crate) items: Arc<Vec<Arc<str>>>,
    pub(crate) rv: u64,
    pub(crate) offset: usize,
    pub(crate) id: u64,
}

/// Why a continue token cannot be served.
pub(crate) enum ContinueError {
    Malformed,
    Expired,
}

pub(crate) struct Store {
    rv: u64,
    objects: HashMap<Resource, BTreeMap<(String, String), Obj>>,
    history: VecDeque<Arc<Ev>>,
    history_bytes: usize,
    history_limit: usize,
    history_max_bytes: usize,
    /// rv of the newest event no longer in the history (0: nothing forgotten yet).
    compacted_through: u64,
    log: Vec<HistoryEvent>,
    snapshots: HashMap<u64, Snapshot>,
    next_snapshot: u64,
    uid_seed: u64,
    uid_seq: u64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn to_labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `json` with `metadata.resourceVersion` replaced (deletions carry the deletion's rv).
pub(crate) fn with_rv(json: &str, rv: u64) -> String {
    match serde_json::from_str::<Value>(json) {
        Ok(mut v) => {
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            }
            v.to_string()
        }
        Err(_) => json.to_string(),
    }
}

struct NewObj<'a> {
    res: &'a Resource,
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
    created: &'a str,
    rv: u64,
    labels: &'a Labels,
}

/// The served object: our metadata, plus the caller's fields (`extra.metadata` keys such as annotations merge in).
fn build(o: NewObj, extra: Value) -> String {
    let mut meta = Map::new();
    meta.insert("name".into(), o.name.into());
    if !o.namespace.is_empty() {
        meta.insert("namespace".into(), o.namespace.into());
    }
    meta.insert("uid".into(), o.uid.into());
    meta.insert("resourceVersion".into(), o.rv.to_string().into());
    meta.insert("creationTimestamp".into(), o.created.into());
    let labels: Map<String, Value> = o
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    meta.insert("labels".into(), Value::Object(labels));
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), o.res.api_version.clone().into());
    obj.insert("kind".into(), kind_for(&o.res.plural).into());
    if let Value::Object(fields) = extra {
        for (k, v) in fields {
            match (k.as_str(), v) {
                ("metadata", Value::Object(m)) => {
                    for (mk, mv) in m {
                        meta.entry(mk).or_insert(mv);
                    }
                }
                ("apiVersion" | "kind" | "metadata", _) => {}
                (_, v) => {
                    obj.insert(k, v);
                }
            }
        }
    }
    obj.insert("metadata".into(), Value::Object(meta));
    Value::Object(obj).to_string()
}

impl Store {
    pub(crate) fn new(history_limit: usize, history_max_bytes: usize) -> Store {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7);
        Store {
            rv: 0,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_bytes: 0,
            history_limit,
            history_max_bytes,
            compacted_through: 0,
            log: Vec::new(),
            snapshots: HashMap::new(),
            next_snapshot: 1,
            uid_seed: splitmix(seed ^ u64::from(std::process::id())),
            uid_seq: 0,
        }
    }

    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn log(&self) -> &[HistoryEvent] {
        &self.log
    }

    /// Oldest rv a watch may start from: anything older has lost events.
    pub(crate) fn compacted_through(&self) -> u64 {
        self.compacted_through
    }

    /// uuid-shaped; random per store (a restarted server gives new uids) and unique through the counter.
    pub(crate) fn new_uid(&mut self) -> String {
        self.uid_seq += 1;
        let a = splitmix(self.uid_seed ^ self.uid_seq);
        let b = splitmix(a);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:04x}{:08x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff,
            self.uid_seq & 0xffff_ffff
        )
    }

    fn record(&mut self, ev: Ev, uid: &str) {
        self.log.push(HistoryEvent {
            event_type: ev.kind,
            resource: ev.res.clone(),
            namespace: ev.namespace.clone(),
            name: ev.name.clone(),
            uid: uid.to_string(),
            resource_version: ev.rv.to_string(),
        });
        self.history_bytes += ev.json.len();
        self.history.push_back(Arc::new(ev));
        while self.history.len() > self.history_limit || self.history_bytes > self.history_max_bytes
        {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= old.json.len();
            self.compacted_through = old.rv;
        }
    }

    pub(crate) fn create(
        &mut self,
        res: &Resource,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        extra: Value,
    ) -> ObjectRef {
        if self.get(res, namespace, name).is_some() {
            if let Some(r) = self.update(res, namespace, name, extra.clone(), Some(labels)) {
                return r;
            }
        }
        self.rv += 1;
        let uid = self.new_uid();
        let created = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let labels = Arc::new(to_labels(labels));
        let o = NewObj {
            res,
            namespace,
            name,
            uid: &uid,
            created: &created,
            rv: self.rv,
            labels: &labels,
        };
        let json: Arc<str> = build(o, extra).into();
        let obj = Obj {
            uid: uid.clone(),
            created,
            labels: labels.clone(),
            json: json.clone(),
        };
        let key = (namespace.to_string(), name.to_string());
        self.objects
            .entry(res.clone())
            .or_default()
            .insert(key, obj);
        let ev = Ev {
            rv: self.rv,
            kind: EventType::Added,
            res: res.clone(),
            namespace: namespace.into(),
            name: name.into(),
            labels,
            json: json.clone(),
            prev: None,
        };
        self.record(ev, &uid);
        ObjectRef {
            uid,
            resource_version: self.rv.to_string(),
            json: json.to_string(),
        }
    }

    pub(crate) fn update(
        &mut self,
        res: &Resource,
        namespace: &str,
        name: &str,
        extra: Value,
        labels: Option<&[(&str, &str)]>,
    ) -> Option<ObjectRef> {
        let key = (namespace.to_string(), name.to_string());
        let rv = self.rv + 1;
        let obj = self.objects.get_mut(res)?.get_mut(&key)?;
        let new_labels = match labels {
            Some(l) => Arc::new(to_labels(l)),
            None => obj.labels.clone(),
        };
        let o = NewObj {
            res,
            namespace,
            name,
            uid: &obj.uid,
            created: &obj.created,
            rv,
            labels: &new_labels,
        };
        let json: Arc<str> = build(o, extra).into();
        let prev = (
            std::mem::replace(&mut obj.labels, new_labels.clone()),
            std::mem::replace(&mut obj.json, json.clone()),
        );
        let uid = obj.uid.clone();
        self.rv = rv;
        let ev = Ev {
            rv,
            kind: EventType::Modified,
            res: res.clone(),
            namespace: namespace.into(),
            name: name.into(),
            labels: new_labels,
            json: json.clone(),
            prev: Some(prev),
        };
        self.record(ev, &uid);
        Some(ObjectRef {
            uid,
            resource_version: rv.to_string(),
            json: json.to_string(),
        })
    }

    pub(crate) fn delete(
        &mut self,
        res: &Resource,
        namespace: &str,
        name: &str,
    ) -> Option<ObjectRef> {
        let key = (namespace.to_string(), name.to_string());
        let obj = self.objects.get_mut(res)?.remove(&key)?;
        self.rv += 1;
        let json: Arc<str> = with_rv(&obj.json, self.rv).into();
        let ev = Ev {
            rv: self.rv,
            kind: EventType::Deleted,
            res: res.clone(),
            namespace: namespace.into(),
            name: name.into(),
            labels: obj.labels.clone(),
            json: json.clone(),
            // The state it had, for lists at an older resourceVersion.
            prev: Some((obj.labels, obj.json)),
        };
        self.record(ev, &obj.uid);
        Some(ObjectRef {
            uid: obj.uid,
            resource_version: self.rv.to_string(),
            json: json.to_string(),
        })
    }

    /// Store a complete object written by a client, whose server-owned metadata (uid, creationTimestamp,
    /// generation) the caller has already settled: ADDED when new, MODIFIED otherwise. Sets its resourceVersion.
    pub(crate) fn put(
        &mut self,
        res: &Resource,
        namespace: &str,
        name: &str,
        mut obj: Map<String, Value>,
    ) -> ObjectRef {
        let rv = self.rv + 1;
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        let text = |m: &Value, k: &str| m[k].as_str().unwrap_or("").to_string();
        let (uid, created) = (text(meta, "uid"), text(meta, "creationTimestamp"));
        let labels: Labels = meta["labels"]
            .as_object()
            .map(|l| {
                l.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(m) = meta.as_object_mut() {
            m.insert("resourceVersion".into(), rv.to_string().into());
        }
        let json: Arc<str> = Value::Object(obj).to_string().into();
        let labels = Arc::new(labels);
        let key = (namespace.to_string(), name.to_string());
        let new = Obj {
            uid: uid.clone(),
            created,
            labels: labels.clone(),
            json: json.clone(),
        };
        let prev = self
            .objects
            .entry(res.clone())
            .or_default()
            .insert(key, new)
            .map(|old| (old.labels, old.json));
        self.rv = rv;
        let ev = Ev {
            rv,
            kind: match prev {
                Some(_) => EventType::Modified,
                None => EventType::Added,
            },
            res: res.clone(),
            namespace: namespace.into(),
            name: name.into(),
            labels,
            json: json.clone(),
            prev,
        };
        self.record(ev, &uid);
        ObjectRef {
            uid,
            resource_version: rv.to_string(),
            json: json.to_string(),
        }
    }

    /// The keys of every object of `res` (in namespace `namespace` when given), for cascading deletions.
    pub(crate) fn keys(&self, res: &Resource, namespace: Option<&str>) -> Vec<(String, String)> {
        self.objects
            .get(res)
            .map(|objs| {
                objs.keys()
                    .filter(|(ns, _)| namespace.is_none_or(|want| ns == want))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn get(&self, res: &Resource, namespace: &str, name: &str) -> Option<Arc<str>> {
        let key = (namespace.to_string(), name.to_string());
        self.objects.get(res)?.get(&key).map(|o| o.json.clone())
    }

    /// Stop listing `res` among the types that had objects (its CRD is gone); its objects must be deleted first.
    pub(crate) fn forget(&mut self, res: &Resource) {
        if self.objects.get(res).is_some_and(BTreeMap::is_empty) {
            self.objects.remove(res);
        }
    }

    /// Resource types that have (or had) objects.
    pub(crate) fn resources(&self) -> Vec<Resource> {
        self.objects.keys().cloned().collect()
    }

    /// Current objects matching `filter`, ordered by namespace then name.
    pub(crate) fn list(&self, filter: &Filter) -> Vec<Arc<str>> {
        let Some(objs) = self.objects.get(&filter.res) else {
            return Vec::new();
        };
        objs.iter()
            .filter(|((ns, name), o)| {
                filter.matches_key(ns, name) && filter.labels.matches(&o.labels)
            })
            .map(|(_, o)| o.json.clone())
            .collect()
    }

    /// Objects matching `filter` as they were at `rv` (`resourceVersionMatch=Exact`), ordered by namespace then
    /// name: the current ones with every later event undone. `None` when the history no longer reaches back to
    /// `rv` (compacted: 410) or `rv` is in the future.
    pub(crate) fn list_at(&self, filter: &Filter, rv: u64) -> Option<Vec<Arc<str>>> {
        if rv < self.compacted_through || rv > self.rv {
            return None;
        }
        let mut objs: BTreeMap<(String, String), (Arc<Labels>, Arc<str>)> = self
            .objects
            .get(&filter.res)
            .map(|o| {
                o.iter()
                    .map(|(k, o)| (k.clone(), (o.labels.clone(), o.json.clone())))
                    .collect()
            })
            .unwrap_or_default();
        for ev in self.history.iter().rev().take_while(|ev| ev.rv > rv) {
            if ev.res != filter.res {
                continue;
            }
            let key = (ev.namespace.clone(), ev.name.clone());
            match (&ev.kind, &ev.prev) {
                (EventType::Added, _) => {
                    objs.remove(&key);
                }
                (_, Some(prev)) => {
                    objs.insert(key, prev.clone());
                }
                (_, None) => {}
            }
        }
        Some(
            objs.iter()
                .filter(|((ns, name), (labels, _))| {
                    filter.matches_key(ns, name) && filter.labels.matches(labels)
                })
                .map(|(_, (_, json))| json.clone())
                .collect(),
        )
    }

    /// Events with rv > `after`, or `Err(oldest available rv)` when some of them were forgotten.
    pub(crate) fn events_after(&self, after: u64) -> Result<impl Iterator<Item = &Arc<Ev>>, u64> {
        if after < self.compacted_through {
            return Err(self.compacted_through + 1);
        }
        let skip = (after - self.compacted_through) as usize;
        Ok(self.history.iter().skip(skip))
    }

    /// Drop the whole history and every list snapshot.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.history_bytes = 0;
        self.compacted_through = self.rv;
        self.snapshots.clear();
    }

    /// Keep `items` (a full list at `rv`) for later pages; returns the token for the page starting at `offset`.
    pub(crate) fn save_snapshot(
        &mut self,
        items: Vec<Arc<str>>,
        rv: u64,
        offset: usize,
        ttl: Duration,
    ) -> String {
        self.snapshots.retain(|_, s| s.created.elapsed() < ttl);
        let id = self.next_snapshot;
        self.next_snapshot += 1;
        self.snapshots.insert(
            id,
            Snapshot {
                items: Arc::new(items),
                rv,
                created: Instant::now(),
            },
        );
        continue_token(id, offset)
    }

    /// The snapshot and offset a token refers to.
    pub(crate) fn snapshot(
        &self,
        token: &str,
        ttl: Duration,
    ) -> Result<SnapshotPage, ContinueError> {
        let (id, offset) = parse_token(token).ok_or(ContinueError::Malformed)?;
        let s = self.snapshots.get(&id).ok_or(ContinueError::Expired)?;
        if s.created.elapsed() >= ttl {
            return Err(ContinueError::Expired);
        }
        Ok(SnapshotPage {
            items: s.items.clone(),
            rv: s.rv,
            offset,
            id,
        })
    }
}

/// Opaque to clients; `s<id>.<offset>` so that retrying a page is idempotent.
pub(crate) fn continue_token(id: u64, offset: usize) -> String {
    format!("s{id:x}.{offset:x}")
}

fn parse_token(t: &str) -> Option<(u64, usize)> {
    let (id, off) = t.strip_prefix('s')?.split_once('.')?;
    Some((
        u64::from_str_radix(id, 16).ok()?,
        usize::from_str_radix(off, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds() {
        assert_eq!(kind_for("pods"), "Pod");
        assert_eq!(kind_for("configmaps"), "ConfigMap");
        assert_eq!(kind_for("widgets"), "Widget");
        assert_eq!(kind_for("policies"), "Policy");
        assert_eq!(kind_for("classes"), "Class");
        assert_eq!(kind_for(""), "");
    }

    #[test]
    fn rv_and_history_are_contiguous_and_bounded() {
        let mut s = Store::new(3, usize::MAX);
        let pods = Resource::pods();
        let a = s.create(&pods, "ns", "a", &[("k", "v")], json!({"spec": {"x": 1}}));
        assert_eq!(a.resource_version, "1");
        let v: Value = serde_json::from_str(&a.json).unwrap();
        assert_eq!(v["kind"], "Pod");
        assert_eq!(v["metadata"]["labels"]["k"], "v");
        assert_eq!(v["spec"]["x"], 1);
        let b = s.update(&pods, "ns", "a", json!({}), None).unwrap();
        assert_eq!(b.uid, a.uid);
        s.create(&pods, "ns", "b", &[], json!({}));
        let d = s.delete(&pods, "ns", "a").unwrap();
        assert_eq!(d.resource_version, "4");
        assert!(d.json.contains("\"resourceVersion\":\"4\""));
        assert!(s.update(&pods, "ns", "a", json!({}), None).is_none());
        // limit 3: event 1 forgotten, watches from 0 are expired, from 1 fine.
        assert_eq!(s.events_after(0).err(), Some(2));
        let rvs: Vec<u64> = s.events_after(2).ok().unwrap().map(|e| e.rv).collect();
        assert_eq!(rvs, vec![3, 4]);
        assert_eq!(s.log().len(), 4);
        s.compact();
        assert!(s.events_after(3).is_err());
        assert_eq!(s.events_after(4).ok().unwrap().count(), 0);
        assert_ne!(s.new_uid(), s.new_uid());
    }
}
