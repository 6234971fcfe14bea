//! What a configuration reload changes: which clusters, sinks and watches
//! survive with their connections, queues and running hooks, which are
//! replaced, started or stopped. Pure: the daemon applies the plan.

use crate::config::{Config, WatchConfig};
use std::collections::BTreeSet;
use std::fmt;

/// What happens to one named thing on reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Same definition: it keeps running untouched.
    Keep,
    /// Defined differently: the old one is stopped (sinks drain first) and
    /// a new one starts.
    Replace,
    /// Only in the new configuration.
    Add,
    /// Only in the old configuration.
    Remove,
}

/// The difference between the running configuration and a new one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadPlan {
    /// By cluster name.
    pub clusters: Vec<(String, Change)>,
    /// By sink name.
    pub sinks: Vec<(String, Change)>,
    /// By watch name. A kept watch may still feed a different set of sinks.
    pub watches: Vec<(String, Change)>,
    /// `[daemon]` keys whose new value only applies after a restart.
    pub restart_needed: Vec<&'static str>,
}

impl ReloadPlan {
    pub fn new(old: &Config, new: &Config) -> ReloadPlan {
        let clusters = diff(old.clusters.keys(), new.clusters.keys(), |name| {
            old.clusters.get(name) == new.clusters.get(name)
        });
        let sinks = diff(old.sinks.keys(), new.sinks.keys(), |name| {
            old.sinks.get(name) == new.sinks.get(name)
                && old.sink_transforms.get(name) == new.sink_transforms.get(name)
        });
        let cluster_kept = |name: &str| {
            clusters
                .iter()
                .any(|(c, change)| c == name && *change == Change::Keep)
        };
        let find = |config: &'_ Config, name: &str| -> Option<WatchConfig> {
            config.watches.iter().find(|w| w.name == name).cloned()
        };
        let watches = diff(
            old.watches.iter().map(|w| &w.name),
            new.watches.iter().map(|w| &w.name),
            |name| match (find(old, name), find(new, name)) {
                (Some(a), Some(b)) => same_source(&a, &b) && cluster_kept(&b.cluster),
                _ => false,
            },
        );
        ReloadPlan {
            clusters,
            sinks,
            watches,
            restart_needed: restart_needed(old, new),
        }
    }

    pub fn sink(&self, name: &str) -> Option<Change> {
        lookup(&self.sinks, name)
    }

    pub fn watch(&self, name: &str) -> Option<Change> {
        lookup(&self.watches, name)
    }

    pub fn cluster(&self, name: &str) -> Option<Change> {
        lookup(&self.clusters, name)
    }

    pub fn is_empty(&self) -> bool {
        [&self.clusters, &self.sinks, &self.watches]
            .iter()
            .all(|list| list.iter().all(|(_, c)| *c == Change::Keep))
    }
}

/// Whether two watch definitions read the same stream: everything but the
/// sinks they feed, which can be re-routed without reconnecting.
pub fn same_source(a: &WatchConfig, b: &WatchConfig) -> bool {
    let strip = |w: &WatchConfig| WatchConfig {
        sinks: Vec::new(),
        ..w.clone()
    };
    strip(a) == strip(b)
}

fn lookup(list: &[(String, Change)], name: &str) -> Option<Change> {
    list.iter().find(|(n, _)| n == name).map(|(_, c)| *c)
}

fn diff<'a>(
    old: impl Iterator<Item = &'a String>,
    new: impl Iterator<Item = &'a String>,
    unchanged: impl Fn(&str) -> bool,
) -> Vec<(String, Change)> {
    let old: BTreeSet<&String> = old.collect();
    let new: BTreeSet<&String> = new.collect();
    let mut out = Vec::new();
    for name in old.union(&new) {
        let change = match (old.contains(name), new.contains(name)) {
            (true, true) if unchanged(name) => Change::Keep,
            (true, true) => Change::Replace,
            (false, _) => Change::Add,
            (true, false) => Change::Remove,
        };
        out.push(((*name).clone(), change));
    }
    out
}

/// `[daemon]` settings the running daemon does not fully take over. The log
/// level and the shutdown timeout are applied at once; queue bounds and the
/// line limit apply to the sinks and watches a reload starts; the metrics
/// address, the log format and leader election only at the next start.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let (a, b) = (&old.daemon, &new.daemon);
    if a.max_line_bytes != b.max_line_bytes {
        keys.push("max_line_bytes");
    }
    if a.sink_queue_events != b.sink_queue_events {
        keys.push("sink_queue_events");
    }
    if a.metrics_listen != b.metrics_listen {
        keys.push("metrics_listen");
    }
    if a.log_format != b.log_format {
        keys.push("log_format");
    }
    if a.sync != b.sync {
        keys.push("sync");
    }
    if a.sync_interval != b.sync_interval {
        keys.push("sync_interval");
    }
    // Which Lease a replica competes for is fixed for its life: switching
    // Leases while leading would let two replicas deliver.
    if a.leader_election != b.leader_election {
        keys.push("leader_election");
    }
    keys
}

impl fmt::Display for ReloadPlan {
    /// "watches: 2 kept, 1 started, 1 stopped; sinks: ...".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |f: &mut fmt::Formatter<'_>, what: &str, list: &[(String, Change)]| {
            let names = |c: Change| -> Vec<&str> {
                list.iter()
                    .filter(|(_, x)| *x == c)
                    .map(|(n, _)| n.as_str())
                    .collect()
            };
            write!(f, "{what}: {} kept", names(Change::Keep).len())?;
            for (c, word) in [
                (Change::Replace, "replaced"),
                (Change::Add, "added"),
                (Change::Remove, "removed"),
            ] {
                let n = names(c);
                if !n.is_empty() {
                    write!(f, ", {word} {}", n.join(", "))?;
                }
            }
            Ok(())
        };
        part(f, "watches", &self.watches)?;
        f.write_str("; ")?;
        part(f, "sinks", &self.sinks)?;
        f.write_str("; ")?;
        part(f, "clusters", &self.clusters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[clusters.lo]
server = "http://127.0.0.1:1"

[sinks.a]
type = "file"
path = "/tmp/a.jsonl"

[sinks.b]
type = "file"
path = "/tmp/b.jsonl"

[[watch]]
name = "pods"
cluster = "lo"
api_version = "v1"
resource = "pods"
sinks = ["a"]

[[watch]]
name = "cms"
cluster = "lo"
api_version = "v1"
resource = "configmaps"
sinks = ["a"]
"#;

    fn config(text: &str) -> Config {
        match Config::parse(text, Path::new("t.toml")) {
            Ok(c) => c,
            Err(e) => panic!("test config invalid: {e}"),
        }
    }

    #[test]
    fn identical_configs_change_nothing() {
        let plan = ReloadPlan::new(&config(BASE), &config(BASE));
        assert!(plan.is_empty());
        assert_eq!(plan.watch("pods"), Some(Change::Keep));
        assert!(plan.restart_needed.is_empty());
    }

    #[test]
    fn new_sinks_for_a_watch_keep_its_stream() {
        let new = BASE.replacen(
            "resource = \"pods\"\nsinks = [\"a\"]",
            "resource = \"pods\"\nsinks = [\"a\", \"b\"]",
            1,
        );
        assert_ne!(new, BASE);
        let plan = ReloadPlan::new(&config(BASE), &config(&new));
        assert_eq!(plan.watch("pods"), Some(Change::Keep));
    }

    #[test]
    fn changed_selector_replaces_the_watch_only() {
        let new = BASE.replacen(
            "resource = \"pods\"",
            "resource = \"pods\"\nlabel_selector = \"app=web\"",
            1,
        );
        let plan = ReloadPlan::new(&config(BASE), &config(&new));
        assert_eq!(plan.watch("pods"), Some(Change::Replace));
        assert_eq!(plan.watch("cms"), Some(Change::Keep));
        assert_eq!(plan.sink("a"), Some(Change::Keep));
    }

    #[test]
    fn changed_cluster_replaces_its_watches() {
        let new = BASE.replace("127.0.0.1:1", "127.0.0.1:2");
        let plan = ReloadPlan::new(&config(BASE), &config(&new));
        assert_eq!(plan.cluster("lo"), Some(Change::Replace));
        assert_eq!(plan.watch("pods"), Some(Change::Replace));
        assert_eq!(plan.watch("cms"), Some(Change::Replace));
        assert_eq!(plan.sink("a"), Some(Change::Keep));
    }

    #[test]
    fn added_removed_and_changed_sinks_and_watches() {
        let new = r#"
[clusters.lo]
server = "http://127.0.0.1:1"

[sinks.a]
type = "file"
path = "/tmp/a2.jsonl"

[sinks.c]
type = "stdout"

[[watch]]
name = "pods"
cluster = "lo"
api_version = "v1"
resource = "pods"
sinks = ["a"]

[[watch]]
name = "svcs"
cluster = "lo"
api_version = "v1"
resource = "services"
sinks = ["c"]
"#;
        let plan = ReloadPlan::new(&config(BASE), &config(new));
        assert_eq!(plan.sink("a"), Some(Change::Replace));
        assert_eq!(plan.sink("b"), Some(Change::Remove));
        assert_eq!(plan.sink("c"), Some(Change::Add));
        assert_eq!(plan.watch("pods"), Some(Change::Keep));
        assert_eq!(plan.watch("cms"), Some(Change::Remove));
        assert_eq!(plan.watch("svcs"), Some(Change::Add));
        assert_eq!(
            plan.to_string(),
            "watches: 1 kept, added svcs, removed cms; sinks: 0 kept, replaced a, added c, removed b; clusters: 1 kept"
        );
    }

    #[test]
    fn daemon_keys_that_need_a_restart_are_named() {
        let new = format!("[daemon]\nmax_line_bytes = 1048576\nlog_level = \"debug\"\n{BASE}");
        let plan = ReloadPlan::new(&config(BASE), &config(&new));
        assert_eq!(plan.restart_needed, vec!["max_line_bytes"]);
        let le = format!("{BASE}\n[daemon.leader_election]\ncluster = \"lo\"\n");
        let plan = ReloadPlan::new(&config(BASE), &config(&le));
        assert_eq!(plan.restart_needed, vec!["leader_election"]);
    }
}
