//! What a daemon under test reported, against what happened on the
//! emulator: sink files read back as records, and the pod history they
//! are checked against (the kill -9, restart and takeover tests).

use kwatchd_sim::{HistoryEvent, Resource, Sim};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// Records of a sink file; a torn last line (right after a SIGKILL) is
/// left out.
pub fn file_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l:?}: {e}")))
        .collect()
}

/// (type, uid, rv) of a record.
pub fn key(r: &Value) -> (String, String, String) {
    let meta = &r["object"]["metadata"];
    (
        r["type"].as_str().unwrap_or("").to_owned(),
        meta["uid"].as_str().unwrap_or("").to_owned(),
        meta["resourceVersion"].as_str().unwrap_or("").to_owned(),
    )
}

/// Every pod change the emulator made, in order.
pub fn pod_history(sim: &Sim) -> Vec<HistoryEvent> {
    sim.history()
        .into_iter()
        .filter(|e| e.resource == Resource::pods())
        .collect()
}

/// The changes a set of records reports.
pub struct Reported(BTreeSet<(String, String, String)>);

impl Reported {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a Value>) -> Reported {
        Reported(records.into_iter().map(key).collect())
    }

    /// The change (`type` of object `uid` at `rv`) is among the records;
    /// an update may be reported as ADDED by a list or relist.
    pub fn has(&self, t: &str, uid: &str, rv: &str) -> bool {
        let k = |t: &str| (t.to_owned(), uid.to_owned(), rv.to_owned());
        match t {
            "ADDED" | "MODIFIED" => self.0.contains(&k("ADDED")) || self.0.contains(&k("MODIFIED")),
            _ => self.0.contains(&k(t)),
        }
    }

    /// Some record reports the deletion of `uid`.
    pub fn deleted(&self, uid: &str) -> bool {
        self.0.iter().any(|(t, u, _)| t == "DELETED" && u == uid)
    }

    pub fn has_event(&self, e: &HistoryEvent) -> bool {
        self.has(e.event_type.as_str(), &e.uid, &e.resource_version)
    }
}

/// "TYPE NAME rv RV", as the tests list what is missing.
pub fn describe(e: &HistoryEvent) -> String {
    format!(
        "{} {} rv {}",
        e.event_type.as_str(),
        e.name,
        e.resource_version
    )
}
