use super::*;

fn filter(select: Option<&str>, changes: Option<&str>, redact: &[&str]) -> WatchFilter {
    WatchFilter::new(
        select.map(|s| Program::compile(s).unwrap()),
        changes.map(|s| Program::compile(s).unwrap()),
        (!redact.is_empty()).then(|| {
            Redactor::compile(&redact.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        }),
        RedactKey::from_bytes(&[1u8; 32]),
    )
}

fn deploy(app: &str, image: &str, ready: u32) -> Vec<u8> {
    format!(
        r#"{{"kind":"Deployment","metadata":{{"name":"d","labels":{{"app":"{app}"}}}},
            "spec":{{"template":{{"spec":{{"containers":[{{"image":"{image}"}}]}}}}}},
            "status":{{"readyReplicas":{ready}}}}}"#
    )
    .into_bytes()
}

const SELECT: &str = r#".metadata.labels.app == "web""#;
const CHANGES: &str = "[.spec.template.spec.containers[].image]";

/// Runs a sequence of events through one object's memory; returns each
/// verdict as "skip:REASON" or "report[:unselected]".
fn run(f: &WatchFilter, events: &[(Change, Vec<u8>)]) -> Vec<String> {
    let mut memory: Option<Memory> = None;
    let mut out = Vec::new();
    for (change, object) in events {
        let (verdict, keep) = f.decide(*change, object, memory.as_ref());
        memory = keep;
        out.push(match verdict {
            Verdict::Skip(r) => format!("skip:{}", r.as_str()),
            Verdict::Report(r) if r.selected => "report".to_string(),
            Verdict::Report(_) => "report:unselected".to_string(),
        });
    }
    out
}

#[test]
fn status_only_updates_are_skipped_image_changes_reported() {
    let f = filter(Some(SELECT), Some(CHANGES), &[]);
    let mut events = vec![(Change::Added, deploy("web", "nginx:1", 0))];
    for ready in 1..=200 {
        events.push((Change::Modified, deploy("web", "nginx:1", ready)));
    }
    events.push((Change::Modified, deploy("web", "nginx:2", 200)));
    let out = run(&f, &events);
    assert_eq!(out[0], "report");
    assert!(out[1..201].iter().all(|v| v == "skip:unchanged"));
    assert_eq!(out[201], "report");
}

#[test]
fn projection_and_previous_projection() {
    let f = filter(None, Some(CHANGES), &[]);
    let (v, m) = f.decide(Change::Added, &deploy("web", "a", 0), None);
    let Verdict::Report(r) = v else {
        panic!("{v:?}")
    };
    assert_eq!(r.projection.as_deref(), Some(&br#"["a"]"#[..]));
    assert_eq!(r.previous_projection, None);
    let (v, _) = f.decide(Change::Modified, &deploy("web", "b", 0), m.as_ref());
    let Verdict::Report(r) = v else {
        panic!("{v:?}")
    };
    assert_eq!(r.projection.as_deref(), Some(&br#"["b"]"#[..]));
    assert_eq!(r.previous_projection.as_deref(), Some(&br#"["a"]"#[..]));
}

#[test]
fn added_and_deleted_are_always_reported_when_selected() {
    let f = filter(None, Some(CHANGES), &[]);
    let out = run(
        &f,
        &[
            (Change::Added, deploy("web", "a", 0)),
            (Change::Added, deploy("web", "a", 0)),
            (Change::Deleted, deploy("web", "a", 0)),
        ],
    );
    assert_eq!(out, ["report", "report", "report"]);
}

#[test]
fn leaving_the_selection_is_reported_once_then_skipped_until_back() {
    let f = filter(Some(SELECT), None, &[]);
    let out = run(
        &f,
        &[
            (Change::Added, deploy("web", "a", 0)),
            (Change::Modified, deploy("db", "a", 0)),
            (Change::Modified, deploy("db", "b", 0)),
            (Change::Modified, deploy("web", "b", 0)),
            (Change::Modified, deploy("web", "b", 1)),
            (Change::Deleted, deploy("web", "b", 1)),
        ],
    );
    assert_eq!(
        out,
        [
            "report",
            "report:unselected",
            "skip:unselected",
            "report",
            "report",
            "report"
        ]
    );
}

#[test]
fn unselected_objects_and_their_deletes_are_skipped() {
    let f = filter(Some(SELECT), None, &[]);
    let out = run(
        &f,
        &[
            (Change::Added, deploy("db", "a", 0)),
            (Change::Modified, deploy("db", "b", 0)),
            (Change::Deleted, deploy("db", "b", 0)),
        ],
    );
    assert_eq!(
        out,
        ["skip:unselected", "skip:unselected", "skip:unselected"]
    );
    // A DELETED of an object known as never reported, whose last state
    // happens to be selected, is skipped too.
    let never = Memory {
        reported: false,
        projection: None,
    };
    let (v, m) = f.decide(Change::Deleted, &deploy("web", "a", 0), Some(&never));
    assert_eq!(v, Verdict::Skip(SkipReason::Unselected));
    assert_eq!(m, None);
}

#[test]
fn deleted_object_that_was_reported_and_is_unselected_in_its_last_state() {
    let f = filter(Some(SELECT), None, &[]);
    let out = run(
        &f,
        &[
            (Change::Added, deploy("web", "a", 0)),
            (Change::Deleted, deploy("db", "a", 0)),
        ],
    );
    assert_eq!(out, ["report", "report:unselected"]);
}

#[test]
fn restart_keeps_memory_status_change_skipped_spec_change_reported() {
    // The memory is what a checkpoint carries; a relist after a restart
    // derives MODIFIED events for objects whose version changed.
    let f = filter(Some(SELECT), Some(CHANGES), &[]);
    let (_, m) = f.decide(Change::Added, &deploy("web", "a", 0), None);
    let stored = m.clone();
    let (v, _) = f.decide(Change::Modified, &deploy("web", "a", 3), stored.as_ref());
    assert_eq!(v, Verdict::Skip(SkipReason::Unchanged));
    let (v, _) = f.decide(Change::Modified, &deploy("web", "b", 3), stored.as_ref());
    let Verdict::Report(r) = v else {
        panic!("{v:?}")
    };
    assert_eq!(r.previous_projection.as_deref(), Some(&br#"["a"]"#[..]));
}

#[test]
fn runtime_errors_fail_open() {
    let f = filter(
        Some(r#".spec.replicas + "x" == "y""#),
        Some(".metadata.name"),
        &[],
    );
    let obj = br#"{"metadata":{"name":"d"},"spec":{"replicas":3}}"#;
    let (v, m) = f.decide(Change::Added, obj, None);
    let Verdict::Report(r) = v else {
        panic!("{v:?}")
    };
    assert!(r.selected);
    let e = r.error.unwrap();
    assert_eq!(e.key, FilterKey::Select);
    assert!(e.message.contains("cannot"), "{}", e.message);
    // The next event is treated as changed too (nothing to compare).
    let (v, _) = f.decide(Change::Modified, obj, m.as_ref());
    assert!(matches!(v, Verdict::Report(_)), "{v:?}");

    let f = filter(None, Some(".spec.replicas + \"x\""), &[]);
    let (_, m) = f.decide(Change::Added, obj, None);
    let (v, _) = f.decide(Change::Modified, obj, m.as_ref());
    let Verdict::Report(r) = v else {
        panic!("{v:?}")
    };
    assert_eq!(r.error.unwrap().key, FilterKey::Changes);
    assert_eq!(r.projection, None);
}

#[test]
fn redaction_happens_before_select_and_changes_see_the_object() {
    let f = filter(None, Some(".data"), &[".data"]);
    let secret = |v: &str| format!(r#"{{"kind":"Secret","data":{{"p":"{v}"}}}}"#).into_bytes();
    let (v, m) = f.decide(Change::Added, &secret("c2VjcmV0"), None);
    let Verdict::Report(r) = v else {
        panic!("{v:?}")
    };
    let object = String::from_utf8(r.object.unwrap()).unwrap();
    let projection = String::from_utf8(r.projection.unwrap()).unwrap();
    assert!(!object.contains("c2VjcmV0") && !projection.contains("c2VjcmV0"));
    assert!(
        projection.starts_with("\"<redacted hmac-sha256:"),
        "{projection}"
    );
    // Same value: unchanged; another value: a change, still no value shown.
    let (v, _) = f.decide(Change::Modified, &secret("c2VjcmV0"), m.as_ref());
    assert_eq!(v, Verdict::Skip(SkipReason::Unchanged));
    let (v, _) = f.decide(Change::Modified, &secret("bmV3"), m.as_ref());
    let Verdict::Report(r) = v else {
        panic!("{v:?}")
    };
    assert!(!String::from_utf8(r.object.unwrap())
        .unwrap()
        .contains("bmV3"));
}

#[test]
fn no_keys_means_report_everything_without_memory() {
    let f = filter(None, None, &[]);
    assert!(!f.remembers());
    let out = run(
        &f,
        &[
            (Change::Added, deploy("web", "a", 0)),
            (Change::Modified, deploy("web", "a", 0)),
        ],
    );
    assert_eq!(out, ["report", "report"]);
}

#[test]
fn a_baseline_makes_later_status_updates_unchanged() {
    let f = filter(Some(SELECT), Some(CHANGES), &[]);
    let base = f.baseline(&deploy("web", "nginx:1", 0));
    assert_eq!(base.as_ref().map(|m| m.reported), Some(true));
    let (v, _) = f.decide(
        Change::Modified,
        &deploy("web", "nginx:1", 5),
        base.as_ref(),
    );
    assert_eq!(v, Verdict::Skip(SkipReason::Unchanged));
    let (v, _) = f.decide(
        Change::Modified,
        &deploy("web", "nginx:2", 5),
        base.as_ref(),
    );
    assert!(matches!(v, Verdict::Report(_)), "{v:?}");
    assert_eq!(filter(None, None, &[".data"]).baseline(b"{}"), None);
}

/// Every decision made on values cut to what `select`, `changes` and
/// `redact` read equals the one made on whole objects: verdicts, records
/// (projections, re-rendered redacted objects, errors) and memories.
#[test]
fn cut_values_decide_as_whole_ones() {
    let keys: [(Option<&str>, Option<&str>, &[&str]); 8] = [
        (
            Some(r#".metadata.labels.app == "web""#),
            Some("[.spec.template.spec.containers[].image]"),
            &[],
        ),
        (None, Some(".status"), &[]),
        (Some(".status.readyReplicas > 1"), None, &[]),
        (
            Some(".metadata.labels.app"),
            Some(".data"),
            &[".data", ".stringData"],
        ),
        (None, Some(".data"), &[".data"]),
        (Some(".kind == \"Secret\""), None, &[".. | .password?"]),
        (None, Some("keys"), &[".metadata.labels.app"]),
        (Some(".spec.replicas + \"x\""), Some(".metadata.name"), &[]),
    ];
    let objects: Vec<Vec<u8>> = vec![
        deploy("web", "nginx:1", 1),
        deploy("api", "nginx:2", 3),
        br#"{"kind":"Secret","metadata":{"name":"s","labels":{"app":"web"}},"data":{"password":"aHVudGVyMg=="}}"#.to_vec(),
        br#"{"kind":"Secret","metadata":{"name":"s"},"stringData":{"k":"v"}}"#.to_vec(),
        br#"{"kind":"Secret","metadata":{"name":"e"},"data":null,"spec":{"replicas":2}}"#.to_vec(),
        br#"{"metadata":{"name":"x"},"data":{"password":"\ud83d\ude00"}}"#.to_vec(),
        br#"{"metadata":"#.to_vec(),
    ];
    let memories = [
        None,
        Some(Memory::default()),
        Some(Memory {
            reported: true,
            projection: Some(br#"["nginx:1"]"#.to_vec().into_boxed_slice()),
        }),
    ];
    let mut one_passes = 0;
    for (select, changes, redact) in keys {
        let cut = filter(select, changes, redact);
        let whole = filter(select, changes, redact).without_cut();
        for object in &objects {
            let one_pass = one_pass_cut(&cut, object);
            one_passes += usize::from(one_pass.is_some());
            for change in [Change::Added, Change::Modified, Change::Deleted] {
                for memory in &memories {
                    let want = whole.decide(change, object, memory.as_ref());
                    let context = format!(
                        "{select:?} {changes:?} {redact:?} {change:?} {memory:?} on {}",
                        String::from_utf8_lossy(object)
                    );
                    assert_eq!(
                        cut.decide(change, object, memory.as_ref()),
                        want,
                        "{context}"
                    );
                    if let Some(c) = &one_pass {
                        let got = cut.decide_with(change, object, Some(c), memory.as_ref());
                        assert_eq!(got, want, "one pass: {context}");
                    }
                }
            }
        }
    }
    assert!(one_passes >= 20, "{one_passes} objects cut in one pass");
}

/// The cut a streamed event of `object` carries to `f`'s decision (see
/// `partial::OnePass`), when it gets one.
fn one_pass_cut(f: &WatchFilter, object: &[u8]) -> Option<super::super::partial::Cut> {
    let mut line = br#"{"type":"MODIFIED","object":"#.to_vec();
    line.extend_from_slice(object);
    line.push(b'}');
    let mut pass = super::super::partial::OnePass::new(&line, f.reads()?);
    crate::kube::WatchEvent::parse_with(&line, &mut pass).ok()?;
    pass.finish()
}
