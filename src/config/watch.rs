//! `[[watch]]`: what to watch (a resource path, or a kind resolved through
//! discovery), where (namespaces, selectors), which events, and which sinks
//! receive them. A watch refers to a cluster and to sinks by name.

use std::time::Duration;

use toml_edit::Value;

use super::doc::{join_key, Ctx, Field, Pos, TableNode};
use super::fields::{
    boolean, distinct_strings, duration, optional, owned, reference, required, with_default,
};
use super::jq;
use super::selector::{parse_field_selector, parse_label_selector};
use super::syntax::{
    check_api_version, check_kind_name, check_name, check_namespace, check_resource,
};

/// Default `watch.watch_timeout`.
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Every key of `[[watch]]`.
pub(crate) const KEYS: &[&str] = &[
    "name",
    "cluster",
    "api_version",
    "resource",
    "kind",
    "namespace",
    "exclude_namespaces",
    "metadata_only",
    "initial_list",
    "label_selector",
    "field_selector",
    "events",
    "on_start",
    "sinks",
    "watch_timeout",
    "select",
    "changes",
    "redact",
];

const WATCH_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));

/// One `[[watch]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    pub name: String,
    /// Name of a `[clusters.NAME]`.
    pub cluster: String,
    /// What to watch: a resource path given directly, or a name resolved
    /// through discovery.
    pub target: WatchTarget,
    /// Namespaces to watch, one watch each; empty: every namespace.
    pub namespaces: Vec<String>,
    /// Namespaces whose events are dropped (only with every namespace).
    pub exclude_namespaces: Vec<String>,
    /// Ask for `PartialObjectMetadata` objects instead of full ones.
    pub metadata_only: bool,
    /// How the initial state is read.
    pub initial_list: InitialList,
    /// Sent as is; validated with the Kubernetes grammar.
    pub label_selector: Option<String>,
    /// Sent as is; validated with the Kubernetes grammar.
    pub field_selector: Option<String>,
    /// Event types forwarded to the sinks, in canonical order
    /// (ADDED, MODIFIED, DELETED), whatever the order in the file.
    pub events: Vec<EventType>,
    pub on_start: OnStart,
    /// Names of `[sinks.NAME]`, in file order.
    pub sinks: Vec<String>,
    /// Server-side `timeoutSeconds` is drawn from `[t, 2t)`.
    pub watch_timeout: Duration,
    /// `select`: jq deciding which objects are reported (see `filter`).
    pub select: Option<String>,
    /// `changes`: jq projection; a MODIFIED with an unchanged projection
    /// is skipped.
    pub changes: Option<String>,
    /// `redact`: jq paths replaced by keyed digests. `None`: not set, so
    /// the default applies ([`WatchConfig::redact_paths`]); `Some([])`:
    /// explicitly nothing.
    pub redact: Option<Vec<String>>,
}

impl WatchConfig {
    /// Whether events of type `t` go to the sinks.
    pub fn wants(&self, t: EventType) -> bool {
        self.events.contains(&t)
    }

    /// Whether this watches core v1 Secrets (by resource or by kind).
    pub fn watches_secrets(&self) -> bool {
        match &self.target {
            WatchTarget::Resource {
                api_version,
                resource,
            } => api_version == "v1" && resource == "secrets",
            WatchTarget::Kind { name, api_version } => {
                let name = name.to_ascii_lowercase();
                matches!(name.as_str(), "secret" | "secrets")
                    && api_version.as_deref().is_none_or(|v| v == "v1")
            }
        }
    }

    /// The paths redacted: as configured, else `.data` and `.stringData`
    /// for Secrets (a Secret's values never reach a sink unless the watch
    /// says `redact = []`), else none.
    pub fn redact_paths(&self) -> Vec<String> {
        match &self.redact {
            Some(paths) => paths.clone(),
            None if self.watches_secrets() => crate::filter::redact::SECRET_DEFAULT
                .iter()
                .map(|s| s.to_string())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Whether any of `select`, `changes` or `redact` applies.
    pub fn has_filter(&self) -> bool {
        self.select.is_some() || self.changes.is_some() || !self.redact_paths().is_empty()
    }
}

/// What a `[[watch]]` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchTarget {
    /// `api_version` + `resource`: the path is built as given, no discovery.
    Resource {
        /// `v1` or `GROUP/VERSION`.
        api_version: String,
        /// Plural resource name, e.g. `pods`.
        resource: String,
    },
    /// `kind` (a kind, plural, short name or `plural.group`, matched
    /// case-insensitively), resolved through discovery at run time;
    /// `api_version` narrows the candidates.
    Kind {
        name: String,
        api_version: Option<String>,
    },
}

impl WatchTarget {
    /// For logs: `pods (v1)` or `kind Deployment`.
    pub fn describe(&self) -> String {
        match self {
            WatchTarget::Resource {
                api_version,
                resource,
            } => format!("{resource} ({api_version})"),
            WatchTarget::Kind {
                name,
                api_version: Some(v),
            } => format!("kind {name} ({v})"),
            WatchTarget::Kind { name, .. } => format!("kind {name}"),
        }
    }
}

/// `initial_list`: how a watch reads the objects that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitialList {
    /// Streaming list, falling back to LIST when the server refuses it.
    Auto,
    /// Streaming list only (`sendInitialEvents`).
    Stream,
    /// Paginated LIST only.
    List,
}

/// Watch event types a sink can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// Every type, in canonical order.
    pub const ALL: [EventType; 3] = [EventType::Added, EventType::Modified, EventType::Deleted];

    /// The wire name: `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }

    /// From the wire name (exact, upper case).
    pub fn from_wire(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// What a watch does with the objects that exist when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnStart {
    /// Emit an ADDED event for each (the default).
    Added,
    /// Emit nothing for them; only changes from then on.
    Skip,
}

impl OnStart {
    pub fn as_str(self) -> &'static str {
        match self {
            OnStart::Added => "added",
            OnStart::Skip => "skip",
        }
    }
}

/// Names a watch may refer to.
pub(super) struct Refs {
    pub(super) clusters: Vec<String>,
    pub(super) sinks: Vec<String>,
}

/// Every `[[watch]]` of the root table; at least one is required.
pub(super) fn parse(ctx: &mut Ctx, root: &TableNode, refs: &Refs) -> Option<Vec<WatchConfig>> {
    let Some(field) = root.get("watch") else {
        ctx.error(
            root.pos(),
            "watch",
            "at least one [[watch]] table is required",
        );
        return None;
    };
    let tables = field.tables(ctx, "watch")?;
    if tables.is_empty() {
        field.error(ctx, "at least one [[watch]] table is required");
        return None;
    }
    let mut seen: Vec<(String, String, Pos)> = Vec::new();
    let mut watches = Some(Vec::new());
    for t in &tables {
        check_unique_name(ctx, &mut seen, t);
        let watch = watch(ctx, t, refs);
        watches = watches.zip(watch).map(|(mut all, w)| {
            all.push(w);
            all
        });
    }
    watches
}

/// Duplicate watch names are reported at the second one.
fn check_unique_name(ctx: &mut Ctx, seen: &mut Vec<(String, String, Pos)>, t: &TableNode) {
    let Some(f) = t.get("name") else { return };
    let Some(name) = f.value().and_then(Value::as_str) else {
        return;
    };
    match seen.iter().find(|(n, _, _)| n == name) {
        Some((_, first, pos)) => {
            let line = ctx
                .line_of(*pos)
                .map_or(String::new(), |l| format!(" (line {l})"));
            f.error(
                ctx,
                format!("duplicate watch name {name:?}: already used by {first}{line}"),
            );
        }
        None => seen.push((name.to_string(), t.path().to_string(), f.pos())),
    }
}

fn watch(ctx: &mut Ctx, t: &TableNode, refs: &Refs) -> Option<WatchConfig> {
    t.check_keys(ctx, KEYS);
    let name = required(ctx, t, "name", owned(|s| check_name("watch", s)));
    let cluster = required(ctx, t, "cluster", |s| {
        reference("clusters", "cluster", s, &refs.clusters)
    });
    let target = target(ctx, t);
    let namespace_list = namespaces(ctx, t, "namespace");
    let exclude_namespaces = namespaces(ctx, t, "exclude_namespaces");
    if let (Some(f), Some(_)) = (t.get("exclude_namespaces"), t.get("namespace")) {
        f.error(
            ctx,
            "exclude_namespaces filters a watch of every namespace; it cannot be combined with namespace (list the namespaces to watch there instead)",
        );
    }
    let metadata_only = boolean(ctx, t, "metadata_only", false);
    let initial_list = with_default(
        ctx,
        t,
        "initial_list",
        InitialList::Auto,
        parse_initial_list,
    );
    let label_selector = optional(
        ctx,
        t,
        "label_selector",
        owned(|s| parse_label_selector(s).map(drop)),
    );
    let field_selector = optional(
        ctx,
        t,
        "field_selector",
        owned(|s| parse_field_selector(s).map(drop)),
    );
    let events = t
        .get("events")
        .map_or(Some(EventType::ALL.to_vec()), |f| events(ctx, &f));
    let on_start = with_default(ctx, t, "on_start", OnStart::Added, parse_on_start);
    let sinks = t
        .require(ctx, "sinks")
        .and_then(|f| sink_names(ctx, &f, &refs.sinks));
    let watch_timeout = duration(
        ctx,
        t,
        "watch_timeout",
        DEFAULT_WATCH_TIMEOUT,
        WATCH_TIMEOUT_RANGE,
    );
    let select = jq::program(ctx, t, "select");
    let changes = jq::program(ctx, t, "changes");
    let redact = jq::redact(ctx, t);
    Some(WatchConfig {
        name: name?,
        cluster: cluster?,
        target: target?,
        namespaces: namespace_list?,
        exclude_namespaces: exclude_namespaces?,
        metadata_only: metadata_only?,
        initial_list: initial_list?,
        label_selector: label_selector?,
        field_selector: field_selector?,
        events: events?,
        on_start: on_start?,
        sinks: sinks?,
        watch_timeout: watch_timeout?,
        select: select?,
        changes: changes?,
        redact: redact?,
    })
}

/// `kind` (with an optional `api_version`) or `api_version` + `resource`.
fn target(ctx: &mut Ctx, t: &TableNode) -> Option<WatchTarget> {
    let api_version = optional(ctx, t, "api_version", owned(check_api_version));
    match (t.get("kind"), t.get("resource")) {
        (Some(kind), Some(resource)) => {
            resource.error(
                ctx,
                "give either kind (resolved through discovery) or resource (with api_version), not both",
            );
            let _ = kind.parse_str(ctx, owned(check_kind_name));
            None
        }
        (Some(kind), None) => {
            let name = kind.parse_str(ctx, owned(check_kind_name));
            Some(WatchTarget::Kind {
                name: name?,
                api_version: api_version?,
            })
        }
        (None, Some(_)) => {
            let resource = required(ctx, t, "resource", owned(check_resource));
            // Reported like any missing key; a kind needs no api_version.
            let api_version = match api_version {
                Some(None) => t.require(ctx, "api_version").and(None),
                other => other.flatten(),
            };
            Some(WatchTarget::Resource {
                api_version: api_version?,
                resource: resource?,
            })
        }
        (None, None) => {
            let hint: String = t
                .misspellings(KEYS, &["kind", "resource"])
                .iter()
                .map(|(written, meant)| format!("; `{written}` looks like a misspelt `{meant}`"))
                .collect();
            ctx.error(
                t.pos(),
                &join_key(t.path(), "kind"),
                format!(
                    "one of `kind` or `resource` is required in {}: `kind` to find it through discovery (e.g. \"Deployment\"), or `resource` with `api_version` to name it directly (e.g. \"pods\" and \"v1\"){hint}",
                    t.label()
                ),
            );
            None
        }
    }
}

/// A namespace string, or a non-empty list of distinct namespaces.
fn namespaces(ctx: &mut Ctx, t: &TableNode, key: &str) -> Option<Vec<String>> {
    let Some(f) = t.get(key) else {
        return Some(Vec::new());
    };
    if !f.value().is_some_and(Value::is_array) {
        return f.parse_str(ctx, owned(check_namespace)).map(|s| vec![s]);
    }
    let strings = distinct_strings(ctx, &f, "namespace")?;
    let mut ok = strings.ok;
    let mut out = Vec::new();
    for (element, s) in &strings.items {
        match element.check(ctx, check_namespace(s)) {
            Some(()) => out.push(s.to_string()),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn parse_initial_list(s: &str) -> Result<InitialList, String> {
    match s {
        "auto" => Ok(InitialList::Auto),
        "stream" => Ok(InitialList::Stream),
        "list" => Ok(InitialList::List),
        _ => Err(format!(
            "invalid initial_list {s:?}; expected \"auto\", \"stream\" or \"list\""
        )),
    }
}

fn parse_on_start(s: &str) -> Result<OnStart, String> {
    match s {
        "added" => Ok(OnStart::Added),
        "skip" => Ok(OnStart::Skip),
        _ => Err(format!(
            "invalid on_start {s:?}; expected \"added\" or \"skip\""
        )),
    }
}

/// Distinct event types, stored in canonical order.
fn events(ctx: &mut Ctx, f: &Field) -> Option<Vec<EventType>> {
    let strings = distinct_strings(ctx, f, "event type")?;
    let mut ok = strings.ok;
    let mut events = Vec::new();
    for (element, s) in &strings.items {
        match EventType::from_wire(s) {
            Some(t) => events.push(t),
            None => {
                element.error(ctx, unknown_event(s));
                ok = false;
            }
        }
    }
    events.sort();
    ok.then_some(events)
}

fn unknown_event(s: &str) -> String {
    let upper = s.to_ascii_uppercase();
    let hint = if EventType::from_wire(&upper).is_some() {
        format!(" (event types are upper case: {upper:?})")
    } else {
        String::new()
    };
    format!("unknown event type {s:?}; expected one of: ADDED, MODIFIED, DELETED{hint}")
}

/// Distinct names of defined sinks, in file order.
fn sink_names(ctx: &mut Ctx, f: &Field, defined: &[String]) -> Option<Vec<String>> {
    let strings = distinct_strings(ctx, f, "sink")?;
    let mut ok = strings.ok;
    let mut names = Vec::new();
    for (element, s) in &strings.items {
        match element.check(ctx, reference("sinks", "sink", s, defined)) {
            Some(name) => names.push(name),
            None => ok = false,
        }
    }
    ok.then_some(names)
}
