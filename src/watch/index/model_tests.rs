//! The compact index against a plain map of [`IndexEntry`] values (what the
//! index was before it was compact) under random sequences of what the
//! watch machine does: events, list rounds (started over too), relist
//! drains, deletes, the filter's memory, restores from a checkpoint.
//! Keys, versions, names and namespaces are drawn from pools that mix the
//! compact forms with everything that must fall back (uppercase and other
//! non-UUID uids, versions with leading zeros or past `u64`, unconfirmed
//! marks, names past a chunk, more namespaces than the test's limit).

use super::*;
use crate::filter::Memory;
use proptest::prelude::*;
use std::collections::HashMap;

const KEYS: &[&str] = &[
    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c",
    "6ba7b810x9dad-11d1-80b4-00c04fd430c8",
    "ns-a/web-1",
    "/node-1",
    "plain",
    "",
];

const VERSIONS: &[&str] = &[
    "1",
    "2",
    "42",
    "0",
    "007",
    "",
    "abc",
    "\u{0}5",
    "\u{0}42",
    "\u{0}x",
    "\u{0}",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "+1",
];

fn name(i: usize) -> String {
    match i {
        0 => "web-0".into(),
        1 => String::new(),
        2 => "ä-ü".into(),
        // Two-byte record length.
        3 => "n".repeat(200),
        // Longer than an arena chunk: a chunk of its own.
        4 => "x".repeat(70_000),
        i => format!("pod-{i}-{}", "a".repeat(i * 7)),
    }
}

fn namespace(i: usize) -> Option<String> {
    (i > 0).then(|| format!("ns-{i}"))
}

fn memory(i: usize) -> Option<Memory> {
    match i {
        0 => None,
        1 => Some(Memory {
            reported: true,
            projection: None,
        }),
        2 => Some(Memory {
            reported: false,
            projection: Some(b"[\"nginx:1\"]".to_vec().into_boxed_slice()),
        }),
        _ => Some(Memory {
            reported: true,
            projection: Some(Box::default()),
        }),
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A watch event (or, `listed`, an item of the current or a stale round).
    Put {
        key: usize,
        ns: usize,
        name: usize,
        rv: usize,
        listed: Option<bool>,
    },
    Remove(usize),
    BeginRound,
    /// Drain the current round, a stale one, or none.
    Drain(u8),
    SetMemory(usize, usize),
    /// Take the memory out and put it back, as the filter step does.
    TakeMemory(usize),
    /// Save the index to a map and restore it (a restart).
    Restore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KEYS.len(), 0..4usize, 0..8usize, 0..VERSIONS.len(), prop::option::of(any::<bool>()))
            .prop_map(|(key, ns, name, rv, listed)| Op::Put { key, ns, name, rv, listed }),
        2 => (0..KEYS.len()).prop_map(Op::Remove),
        1 => Just(Op::BeginRound),
        1 => (0..3u8).prop_map(Op::Drain),
        2 => (0..KEYS.len(), 0..4usize).prop_map(|(k, m)| Op::SetMemory(k, m)),
        1 => (0..KEYS.len()).prop_map(Op::TakeMemory),
        1 => Just(Op::Restore),
    ]
}

/// The index as it was: entries by key, and which ones the current round saw.
#[derive(Default)]
struct Model {
    entries: HashMap<String, (IndexEntry, bool)>,
}

fn contents(idx: &ObjectIndex) -> HashMap<String, IndexEntry> {
    idx.iter()
        .map(|(k, e)| (k.to_string(), e.to_entry()))
        .collect()
}

fn model_contents(m: &Model) -> HashMap<String, IndexEntry> {
    m.entries
        .iter()
        .map(|(k, (e, _))| (k.clone(), e.clone()))
        .collect()
}

fn run(ops: Vec<Op>, ns_limit: u32) {
    let mut idx = ObjectIndex::default();
    idx.limit_namespaces(ns_limit);
    let mut model = Model::default();
    let mut current: Option<Round> = None;
    let mut stale: Option<Round> = None;
    for op in ops {
        match op {
            Op::Put {
                key,
                ns,
                name: n,
                rv,
                listed,
            } => {
                let key = KEYS[key];
                let (ns, name, rv) = (namespace(ns), name(n), VERSIONS[rv]);
                let meta = ObjectMeta {
                    name: Some(Cow::Borrowed(&name)),
                    namespace: ns.as_deref().map(Cow::Borrowed),
                    uid: Some(Cow::Borrowed(key)),
                    resource_version: Some(Cow::Borrowed(rv)),
                };
                let round = match listed {
                    Some(true) => current,
                    Some(false) => stale,
                    None => None,
                };
                let got = match round {
                    Some(r) => idx.replace_listed(key, &meta, r),
                    None => idx.replace(key, &meta),
                };
                let marks = round.is_some() && round == current;
                let want = match model.entries.get_mut(key) {
                    Some((e, seen)) => {
                        *seen |= marks;
                        if e.resource_version() == rv {
                            (Change::Unchanged, None)
                        } else {
                            let next = IndexEntry::new(e.namespace(), e.name(), rv)
                                .with_memory(e.memory().cloned());
                            (Change::Changed, Some(std::mem::replace(e, next)))
                        }
                    }
                    None => {
                        let e = IndexEntry::new(ns.as_deref(), &name, rv);
                        model.entries.insert(key.to_owned(), (e, marks));
                        (Change::New, None)
                    }
                };
                assert_eq!(got, want, "put {key:?} {rv:?}");
            }
            Op::Remove(k) => {
                let want = model.entries.remove(KEYS[k]).map(|(e, _)| e);
                assert_eq!(idx.remove(KEYS[k]), want);
            }
            Op::BeginRound => {
                stale = current;
                current = Some(idx.begin_round());
                for (_, seen) in model.entries.values_mut() {
                    *seen = false;
                }
            }
            Op::Drain(which) => {
                let round = match which {
                    0 => current,
                    1 => stale,
                    _ => None,
                };
                let keeps = round.is_some() && round == current;
                let mut want: Vec<(String, IndexEntry)> = Vec::new();
                model.entries.retain(|k, (e, seen)| {
                    let keep = keeps && *seen;
                    if !keep {
                        want.push((k.clone(), e.clone()));
                    }
                    keep
                });
                let got = idx.drain_unseen(round);
                let sorted = got.windows(2).all(|w| {
                    (w[0].1.namespace(), w[0].1.name()) <= (w[1].1.namespace(), w[1].1.name())
                });
                assert!(sorted, "drained in namespace/name order");
                let mut got = got;
                got.sort_by(|a, b| a.0.cmp(&b.0));
                want.sort_by(|a, b| a.0.cmp(&b.0));
                assert_eq!(got, want);
            }
            Op::SetMemory(k, m) => {
                idx.set_memory(KEYS[k], memory(m));
                if let Some((e, _)) = model.entries.get_mut(KEYS[k]) {
                    *e = e.clone().with_memory(memory(m));
                }
            }
            Op::TakeMemory(k) => {
                let want = model
                    .entries
                    .get(KEYS[k])
                    .and_then(|(e, _)| e.memory().cloned());
                let taken = idx.take_memory(KEYS[k]);
                assert_eq!(taken, want);
                if let Some(e) = idx.get(KEYS[k]) {
                    assert_eq!(e.memory(), None, "taken out");
                }
                idx.set_memory(KEYS[k], taken);
            }
            Op::Restore => {
                idx = ObjectIndex::from_map(contents(&idx));
                idx.limit_namespaces(ns_limit);
                // A restored index belongs to no round.
                (current, stale) = (None, None);
                for (_, seen) in model.entries.values_mut() {
                    *seen = false;
                }
            }
        }
        assert_eq!(idx.len(), model.entries.len());
        assert_eq!(contents(&idx), model_contents(&model));
        for (k, (e, _)) in &model.entries {
            assert_eq!(idx.get(k).map(|v| v.to_entry()).as_ref(), Some(e), "{k:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_index_behaves_as_a_map_of_entries(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, u32::MAX >> 6);
    }

    #[test]
    fn namespaces_past_the_limit_live_in_the_name_record(
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(ops, 1);
    }
}

#[test]
fn compact_forms_turn_back_into_the_same_text() {
    use super::parts::{format_uuid, parse_uuid, parse_version};
    for k in KEYS {
        if let Some(v) = parse_uuid(k) {
            assert_eq!(std::str::from_utf8(&format_uuid(v)).ok(), Some(*k));
        }
    }
    assert!(parse_uuid(KEYS[3]).is_none(), "uppercase stays text");
    for rv in VERSIONS {
        let v = Version::of(rv);
        let mut back = String::new();
        v.write_to(&mut back);
        assert_eq!(&back, rv);
    }
    assert_eq!(parse_version("18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_version("007"), None);
    assert_eq!(Version::of("\u{0}007"), Version::Text("\u{0}007"));
}

#[test]
fn removing_many_names_compacts_the_arena_and_keeps_the_rest() {
    let mut idx = ObjectIndex::default();
    let key = |i: usize| format!("{i:08x}-0000-4000-8000-000000000000");
    let name = |i: usize| format!("pod-{i}-{}", "z".repeat(40));
    for i in 0..5_000 {
        let (k, n, rv) = (key(i), name(i), i.to_string());
        let meta = ObjectMeta {
            name: Some(Cow::Borrowed(&n)),
            namespace: Some(Cow::Borrowed("default")),
            uid: Some(Cow::Borrowed(&k)),
            resource_version: Some(Cow::Borrowed(&rv)),
        };
        idx.upsert(&k, &meta);
    }
    // Over 64 KiB of removed names, more than what stays: a rewrite.
    for i in (0..5_000).filter(|i| i % 10 != 0) {
        assert!(idx.remove(&key(i)).is_some());
    }
    assert_eq!(idx.len(), 500);
    for i in (0..5_000).step_by(10) {
        let e = idx.get(&key(i)).map(|e| e.to_entry());
        assert_eq!(
            e,
            Some(IndexEntry::new(Some("default"), &name(i), &i.to_string()))
        );
    }
    assert!(!idx.store_names_want_compaction());
}
