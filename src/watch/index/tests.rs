//! The index's behaviour on small, hand-picked cases (`model_tests`
//! checks it against a plain map under random sequences).

use super::*;
use std::borrow::Cow;

fn meta<'a>(uid: &'a str, name: &'a str, rv: &'a str) -> ObjectMeta<'a> {
    ObjectMeta {
        name: Some(Cow::Borrowed(name)),
        namespace: Some(Cow::Borrowed("ns")),
        uid: Some(Cow::Borrowed(uid)),
        resource_version: Some(Cow::Borrowed(rv)),
    }
}

fn listed(idx: &mut ObjectIndex, round: Round, uid: &str, name: &str, rv: &str) -> Change {
    idx.replace_listed(uid, &meta(uid, name, rv), round).0
}

fn names(gone: &[(String, IndexEntry)]) -> Vec<(&str, &str)> {
    gone.iter().map(|(k, e)| (k.as_str(), e.name())).collect()
}

#[test]
fn upsert_classifies_and_drain_removes_unseen() {
    let mut idx = ObjectIndex::default();
    let round = idx.begin_round();
    assert_eq!(listed(&mut idx, round, "u1", "a", "1"), Change::New);
    assert_eq!(listed(&mut idx, round, "u1", "a", "1"), Change::Unchanged);
    assert_eq!(listed(&mut idx, round, "u1", "a", "2"), Change::Changed);
    idx.upsert("u2", &meta("u2", "b", "3"));
    let gone = idx.drain_unseen(Some(round));
    assert_eq!(names(&gone), [("u2", "b")]);
    assert_eq!(idx.len(), 1);
    assert_eq!(
        idx.get("u1").map(|e| e.resource_version().into_owned()),
        Some("2".to_owned())
    );
}

#[test]
fn filter_memory_goes_on_with_the_object_and_the_previous_entry_keeps_its_own() {
    use crate::filter::Memory;
    let mut idx = ObjectIndex::default();
    idx.upsert("u1", &meta("u1", "a", "1"));
    let m1 = Memory {
        reported: true,
        projection: Some(b"1".to_vec().into_boxed_slice()),
    };
    idx.set_memory("u1", Some(m1.clone()));
    let (_, previous) = idx.replace("u1", &meta("u1", "a", "2"));
    assert_eq!(previous.unwrap().memory(), Some(&m1));
    assert_eq!(idx.get("u1").unwrap().memory(), Some(MemoryRef::of(&m1)));
    assert_eq!(idx.take_memory("u1"), Some(m1.clone()));
    assert_eq!(idx.get("u1").unwrap().memory(), None);
    idx.set_memory("u1", Some(m1.clone()));
    assert_eq!(idx.get("u1").unwrap().memory(), Some(MemoryRef::of(&m1)));
    idx.set_memory("u1", None);
    assert_eq!(idx.get("u1").unwrap().memory(), None);
    idx.set_memory("nobody", Some(m1));
    assert!(idx.get("nobody").is_none());
}

#[test]
fn entry_keeps_its_fields_apart() {
    let e = IndexEntry::new(Some("ns-é"), "pod/ä", "42");
    assert_eq!(
        (e.namespace(), e.name(), e.resource_version()),
        (Some("ns-é"), "pod/ä", "42")
    );
    let cluster = IndexEntry::new(None, "node-1", "");
    assert_eq!(
        (
            cluster.namespace(),
            cluster.name(),
            cluster.resource_version()
        ),
        (None, "node-1", "")
    );
    // Same text, different split: not the same entry.
    assert_ne!(
        IndexEntry::new(None, "ab", "1"),
        IndexEntry::new(Some(""), "ab", "1")
    );
    assert_ne!(
        IndexEntry::new(Some("a"), "b", "1"),
        IndexEntry::new(Some("ab"), "", "1")
    );
    assert_eq!(e.clone(), e);
    assert_eq!(
        format!("{cluster:?}"),
        r#"IndexEntry { namespace: None, name: "node-1", resource_version: "" }"#
    );
}

#[test]
fn replace_returns_the_previous_entry_and_keeps_the_identity() {
    let mut idx = ObjectIndex::default();
    assert_eq!(
        idx.replace("u1", &meta("u1", "a", "1")),
        (Change::New, None)
    );
    assert_eq!(
        idx.replace("u1", &meta("u1", "a", "1")),
        (Change::Unchanged, None)
    );
    let (change, previous) = idx.replace("u1", &meta("u1", "a", "2"));
    assert_eq!(change, Change::Changed);
    assert_eq!(previous, Some(IndexEntry::new(Some("ns"), "a", "1")));
    assert_eq!(
        idx.get("u1").map(|e| e.to_entry()),
        Some(IndexEntry::new(Some("ns"), "a", "2"))
    );
    assert_eq!(
        idx.remove("u1"),
        Some(IndexEntry::new(Some("ns"), "a", "2"))
    );
    assert!(idx.is_empty());
}

#[test]
fn only_entries_the_round_listed_survive_it() {
    let mut idx = ObjectIndex::from_map(
        [("u1", "a"), ("u2", "b"), ("u3", "c")]
            .into_iter()
            .map(|(k, n)| (k.to_owned(), IndexEntry::new(Some("ns"), n, "1")))
            .collect(),
    );
    let round = idx.begin_round();
    assert_eq!(listed(&mut idx, round, "u2", "b", "1"), Change::Unchanged);
    assert_eq!(listed(&mut idx, round, "u4", "d", "1"), Change::New);
    // Watch events while a round runs do not count as listed: a new
    // entry is unseen, a changed one keeps its stamp.
    idx.upsert("u5", &meta("u5", "e", "1"));
    assert_eq!(idx.upsert("u2", &meta("u2", "b", "2")), Change::Changed);
    let gone = idx.drain_unseen(Some(round));
    assert_eq!(names(&gone), [("u1", "a"), ("u3", "c"), ("u5", "e")]);
    let mut left: Vec<_> = idx
        .iter()
        .map(|(k, e)| (k.to_string(), e.resource_version().into_owned()))
        .collect();
    left.sort();
    assert_eq!(left, [("u2".into(), "2".into()), ("u4".into(), "1".into())]);
    // The next round starts with nothing seen.
    let next = idx.begin_round();
    assert_ne!(next, round);
    listed(&mut idx, next, "u4", "d", "1");
    assert_eq!(names(&idx.drain_unseen(Some(next))), [("u2", "b")]);
}

#[test]
fn a_restarted_round_forgets_what_the_first_attempt_saw() {
    let mut idx = ObjectIndex::default();
    let first = idx.begin_round();
    listed(&mut idx, first, "u1", "a", "1");
    listed(&mut idx, first, "u2", "b", "1");
    let second = idx.begin_round();
    listed(&mut idx, second, "u2", "b", "1");
    assert_eq!(names(&idx.drain_unseen(Some(second))), [("u1", "a")]);
    // A round that never listed anything drains everything.
    assert_eq!(names(&idx.drain_unseen(None)), [("u2", "b")]);
    assert!(idx.is_empty());
}

#[test]
fn drained_entries_come_sorted_by_namespace_and_name() {
    let mut idx = ObjectIndex::default();
    for (uid, ns, name) in [
        ("u1", Some("b"), "x"),
        ("u2", None, "z"),
        ("u3", Some("a"), "y"),
    ] {
        let m = ObjectMeta {
            namespace: ns.map(Cow::Borrowed),
            ..meta(uid, name, "1")
        };
        idx.upsert(uid, &m);
    }
    let round = idx.begin_round();
    assert_eq!(
        names(&idx.drain_unseen(Some(round))),
        [("u2", "z"), ("u3", "y"), ("u1", "x")]
    );
}

#[test]
fn only_the_latest_round_marks_and_keeps() {
    let mut idx = ObjectIndex::default();
    let stale = idx.begin_round();
    listed(&mut idx, stale, "u1", "a", "1");
    let latest = idx.begin_round();
    // Listed under a round that was started over: not seen by the latest.
    listed(&mut idx, stale, "u2", "b", "1");
    listed(&mut idx, latest, "u1", "a", "1");
    assert_eq!(names(&idx.drain_unseen(Some(latest))), [("u2", "b")]);
    // A stale round keeps nothing.
    assert_eq!(names(&idx.drain_unseen(Some(stale))), [("u1", "a")]);
}

#[test]
fn key_falls_back_to_namespace_and_name() {
    let m = ObjectMeta {
        name: Some(Cow::Borrowed("x")),
        namespace: None,
        uid: None,
        resource_version: None,
    };
    assert_eq!(object_key(&m).as_deref(), Some("/x"));
    assert_eq!(object_key(&ObjectMeta::default()), None);
}

#[test]
fn names_survive_the_first_chunk_growing_and_big_records() {
    let mut arena = parts::Names::default();
    // One small name (a watch of one object) takes a small chunk.
    let first = arena.add(&["ns-1", "pod-1"]).expect("room");
    assert!(arena.allocated() <= 256, "{}", arena.allocated());
    let big = "b".repeat(70 * 1024);
    let mut handles = Vec::new();
    for i in 0..5000 {
        let name = format!("pod-{i}-{}", "x".repeat(i % 40));
        let ns = if i == 17 {
            big.clone()
        } else {
            format!("ns-{i}")
        };
        let h = arena.add(&[&ns, &name]).expect("room");
        handles.push((h, ns, name));
    }
    assert_eq!(arena.get(first, 1), "pod-1");
    for (h, ns, name) in &handles {
        assert_eq!(arena.get(*h, 0), ns);
        assert_eq!(arena.get(*h, 1), name);
    }
}
