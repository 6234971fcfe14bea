//! The machine driven through its public API, one scenario per test.

use super::known::guess_kind;
use super::*;
use crate::config::EventType;
use crate::kube::discovery::DISCOVERY_ACCEPT;
use crate::kube::list_scan::ListScanner;
use crate::kube::{Selectors, JSON_ACCEPT, METADATA_LIST_ACCEPT, METADATA_WATCH_ACCEPT};
use crate::watch::index::IndexEntry;
use crate::watch::{Emitted, Origin, Progress, RequestKind};

/// A whole LIST body, through the scanner the daemon streams it with.
trait ListBody {
    fn on_list_body(&mut self, now: Instant, body: &[u8], out: &mut dyn Emit);
}

impl ListBody for WatchMachine {
    fn on_list_body(&mut self, now: Instant, body: &[u8], out: &mut dyn Emit) {
        let mut scanner = ListScanner::new(body.len());
        scanner.feed(body);
        loop {
            match scanner.next_item() {
                Ok(Some((item, info))) => {
                    if self.on_list_item(now, info, item, out) == LineOutcome::Close {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => return self.unusable_list(now, &e),
            }
        }
        match scanner.finish() {
            Ok(()) => self.on_list_end(now, scanner.info(), out),
            Err(e) => self.unusable_list(now, &e),
        }
    }
}

fn spec(on_start: OnStart) -> WatchSpec {
    WatchSpec {
        name: "pods".into(),
        record_name: "pods".into(),
        target: WatchTarget::Resource {
            api_version: "v1".into(),
            resource: "pods".into(),
        },
        base_path: String::new(),
        namespace: None,
        exclude_namespaces: Vec::new(),
        metadata_only: false,
        initial_list: InitialList::List,
        selectors: Selectors::default(),
        events: vec![EventType::Added, EventType::Modified, EventType::Deleted],
        on_start,
        page_size: 2,
        watch_timeout: Duration::from_secs(300),
    }
}

type Seen = Vec<(EventType, Origin, String, bool)>;

fn collect(seen: &mut Seen) -> impl FnMut(Emitted<'_>) + '_ {
    |e: Emitted<'_>| {
        seen.push((
            e.event_type,
            e.origin,
            e.object.to_owned(),
            e.final_state_unknown,
        ))
    }
}

fn pod(uid: &str, rv: &str) -> String {
    format!(
        r#"{{"metadata":{{"name":"p-{uid}","namespace":"ns","uid":"{uid}","resourceVersion":"{rv}"}}}}"#
    )
}

fn list_body(rv: &str, cont: &str, items: &[String]) -> Vec<u8> {
    format!(
        r#"{{"kind":"PodList","metadata":{{"resourceVersion":"{rv}","continue":"{cont}"}},"items":[{}]}}"#,
        items.join(",")
    )
    .into_bytes()
}

fn line(ty: &str, obj: &str) -> Vec<u8> {
    format!(r#"{{"type":"{ty}","object":{obj}}}"#).into_bytes()
}

/// Lists two pages and opens the watch.
fn listed(m: &mut WatchMachine, now: Instant, seen: &mut Seen) {
    let r = m.poll_request(now).unwrap();
    assert_eq!(r.kind, RequestKind::List);
    assert_eq!(r.path_and_query, "/api/v1/pods?limit=2");
    m.on_list_body(
        now,
        &list_body("10", "c1", &[pod("a", "1"), pod("b", "2")]),
        &mut collect(seen),
    );
    let r = m.poll_request(now).unwrap();
    assert_eq!(r.path_and_query, "/api/v1/pods?limit=2&continue=c1");
    m.on_list_body(
        now,
        &list_body("10", "", &[pod("c", "3")]),
        &mut collect(seen),
    );
    let r = m.poll_request(now).unwrap();
    assert_eq!(r.kind, RequestKind::Watch);
    assert!(r.path_and_query.starts_with(
        "/api/v1/pods?watch=true&resourceVersion=10&allowWatchBookmarks=true&timeoutSeconds="
    ));
    m.on_watch_opened(now);
    assert!(m.is_streaming());
}

#[test]
fn initial_list_delivers_added_then_streams_and_tracks_resume_point() {
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    let now = Instant::now();
    let mut seen = Seen::new();
    listed(&mut m, now, &mut seen);
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|s| s.0 == EventType::Added && s.1 == Origin::List));
    seen.clear();
    let out = m.on_watch_line(
        now,
        &line("MODIFIED", &pod("a", "11")),
        &mut collect(&mut seen),
    );
    assert_eq!(out, LineOutcome::Continue);
    assert_eq!(m.resume_version(), Some("11"));
    m.on_watch_line(
        now,
        br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"15"}}}"#,
        &mut collect(&mut seen),
    );
    assert_eq!(m.resume_version(), Some("15"));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, Origin::Watch);
    // A normal end after a healthy stream re-watches at once from the bookmark.
    m.on_watch_end(now + Duration::from_secs(5), true);
    let r = m.poll_request(now + Duration::from_secs(5)).unwrap();
    assert!(
        r.path_and_query.contains("resourceVersion=15"),
        "{}",
        r.path_and_query
    );
}

#[test]
fn skip_on_start_delivers_only_changes() {
    let mut m = WatchMachine::new(spec(OnStart::Skip), Rng::new(1));
    let now = Instant::now();
    let mut seen = Seen::new();
    listed(&mut m, now, &mut seen);
    assert!(seen.is_empty());
    assert_eq!(m.known_objects(), 3);
    m.on_watch_line(
        now,
        &line("DELETED", &pod("b", "12")),
        &mut collect(&mut seen),
    );
    assert_eq!(seen.len(), 1);
    assert_eq!(m.known_objects(), 2);
}

#[test]
fn expired_error_event_relists_and_diffs() {
    let mut m = WatchMachine::new(spec(OnStart::Skip), Rng::new(1));
    let now = Instant::now();
    let mut seen = Seen::new();
    listed(&mut m, now, &mut seen);
    let err =
        r#"{"kind":"Status","status":"Failure","reason":"Expired","code":410,"message":"too old"}"#;
    assert_eq!(
        m.on_watch_line(now, &line("ERROR", err), &mut collect(&mut seen)),
        LineOutcome::Close
    );
    assert_eq!(
        m.resume_version(),
        Some("10"),
        "ERROR must not move the resume point"
    );
    let r = m.poll_request(now).unwrap();
    assert_eq!(r.kind, RequestKind::List);
    // a unchanged, b modified, c gone, d new.
    m.on_list_body(
        now,
        &list_body("20", "", &[pod("a", "1"), pod("b", "19"), pod("d", "18")]),
        &mut collect(&mut seen),
    );
    let got: Vec<_> = seen.iter().map(|s| (s.0, s.1, s.3)).collect();
    assert_eq!(
        got,
        vec![
            (EventType::Modified, Origin::Relist, false),
            (EventType::Added, Origin::Relist, false),
            (EventType::Deleted, Origin::Relist, true),
        ]
    );
    let deleted: serde_json::Value = serde_json::from_str(&seen[2].2).unwrap();
    assert_eq!(deleted["kind"], "Pod");
    assert_eq!(deleted["metadata"]["uid"], "c");
    assert_eq!(deleted["metadata"]["name"], "p-c");
    assert_eq!(deleted["metadata"]["namespace"], "ns");
    let r = m.poll_request(now).unwrap();
    assert!(r.path_and_query.contains("resourceVersion=20"));
    assert_eq!(m.stats().relists, 1);
}

/// Records emitted events and reported steps, in order.
#[derive(Default)]
struct Steps(Vec<String>);

impl Emit for Steps {
    fn emit(&mut self, e: Emitted<'_>) {
        self.0.push(format!(
            "emit {} {} {}",
            e.event_type.as_str(),
            e.origin.as_str(),
            e.identity.uid
        ));
    }

    fn progress(&mut self, p: Progress<'_>) {
        let change = match p.change {
            None => "-".to_owned(),
            Some(c) => match c.previous {
                None => format!("{} (new)", c.key),
                Some(e) => format!("{} (was {})", c.key, e.resource_version()),
            },
        };
        self.0.push(format!(
            "step {} {change}",
            p.resource_version.unwrap_or("-")
        ));
    }
}

fn checkpoint_index() -> ObjectIndex {
    let entry = |name: &str, rv: &str| IndexEntry::new(Some("ns"), name, rv);
    ObjectIndex::from_map(
        [
            ("a".to_owned(), entry("p-a", "1")),
            ("b".to_owned(), entry("p-b", "2")),
            ("c".to_owned(), entry("p-c", "3")),
        ]
        .into(),
    )
}

#[test]
fn every_step_is_reported_after_its_event_filtered_or_not() {
    let mut s = spec(OnStart::Skip);
    s.events = vec![EventType::Added, EventType::Deleted];
    let mut m = WatchMachine::new(s, Rng::new(1));
    let now = Instant::now();
    let mut steps = Steps::default();
    m.poll_request(now).unwrap();
    m.on_list_body(now, &list_body("10", "", &[pod("a", "1")]), &mut steps);
    m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    for l in [
        line("ADDED", &pod("b", "11")),
        line("MODIFIED", &pod("b", "12")),
        line("BOOKMARK", r#"{"metadata":{"resourceVersion":"13"}}"#),
        line("DELETED", &pod("a", "14")),
    ] {
        m.on_watch_line(now, &l, &mut steps);
    }
    assert_eq!(
        steps.0,
        vec![
            "step - a (new)",
            "step 10 -",
            "emit ADDED watch b",
            "step 11 b (new)",
            "step 12 b (was 11)",
            "step 13 -",
            "emit DELETED watch a",
            "step 14 a (was 1)",
        ]
    );
}

#[test]
fn resuming_from_a_checkpoint_watches_from_its_version_without_listing() {
    // on_start = "added" only applies to a first start.
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    m.resume_from("10".into(), checkpoint_index());
    assert!(m.has_listed());
    assert_eq!(m.known_objects(), 3);
    let now = Instant::now();
    let r = m.poll_request(now).unwrap();
    assert_eq!(r.kind, RequestKind::Watch);
    assert!(
        r.path_and_query.contains("resourceVersion=10&"),
        "{}",
        r.path_and_query
    );
    m.on_watch_opened(now);
    let mut steps = Steps::default();
    m.on_watch_line(now, &line("DELETED", &pod("c", "11")), &mut steps);
    assert_eq!(steps.0, vec!["emit DELETED watch c", "step 11 c (was 3)"]);
    assert_eq!(m.known_objects(), 2);
}

#[test]
fn an_expired_checkpoint_relists_and_reports_what_changed_while_down() {
    let err =
        r#"{"kind":"Status","status":"Failure","reason":"Expired","code":410,"message":"too old"}"#;
    for by_event in [true, false] {
        let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
        m.resume_from("10".into(), checkpoint_index());
        let now = Instant::now();
        m.poll_request(now).unwrap();
        if by_event {
            m.on_watch_opened(now);
            let out = m.on_watch_line(now, &line("ERROR", err), &mut Steps::default());
            assert_eq!(out, LineOutcome::Close);
        } else {
            m.on_http_error(now, 410, None, err.as_bytes());
        }
        let r = m.poll_request(now).unwrap();
        assert_eq!(r.kind, RequestKind::List);
        let mut steps = Steps::default();
        // a unchanged, b modified, c gone, d new.
        m.on_list_body(
            now,
            &list_body("20", "", &[pod("a", "1"), pod("b", "19"), pod("d", "18")]),
            &mut steps,
        );
        assert_eq!(
            steps.0,
            vec![
                "emit MODIFIED relist b",
                "step - b (was 2)",
                "emit ADDED relist d",
                "step - d (new)",
                "emit DELETED relist c",
                "step - c (was 3)",
                "step 20 -",
            ],
            "by ERROR event: {by_event}"
        );
        let mut seen = Seen::new();
        let mut m2 = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
        m2.resume_from("10".into(), checkpoint_index());
        m2.poll_request(now).unwrap();
        m2.on_http_error(now, 410, None, b"");
        m2.poll_request(now).unwrap();
        m2.on_list_body(
            now,
            &list_body("20", "", &[pod("a", "1")]),
            &mut collect(&mut seen),
        );
        let deleted: Vec<_> = seen.iter().filter(|s| s.3).collect();
        assert_eq!(deleted.len(), 2, "b and c vanished: final state unknown");
        let obj: serde_json::Value = serde_json::from_str(&deleted[0].2).unwrap();
        assert_eq!(obj["metadata"]["name"], "p-b");
        assert_eq!(obj["metadata"]["namespace"], "ns");
        let r = m.poll_request(now).unwrap();
        assert!(r.path_and_query.contains("resourceVersion=20"));
    }
}

#[test]
fn http_410_on_watch_relists_and_on_continue_restarts_the_list() {
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    let now = Instant::now();
    let mut seen = Seen::new();
    m.poll_request(now).unwrap();
    m.on_list_body(
        now,
        &list_body("10", "c1", &[pod("a", "1"), pod("b", "2")]),
        &mut collect(&mut seen),
    );
    let r = m.poll_request(now).unwrap();
    assert!(r.path_and_query.contains("continue=c1"));
    m.on_http_error(now, 410, None, br#"{"code":410,"reason":"Expired"}"#);
    let r = m.poll_request(now).unwrap();
    assert_eq!(
        r.path_and_query, "/api/v1/pods?limit=2",
        "restarted without the stale token"
    );
    m.on_list_body(
        now,
        &list_body("12", "", &[pod("a", "1"), pod("b", "2")]),
        &mut collect(&mut seen),
    );
    assert_eq!(
        seen.len(),
        2,
        "the restarted list does not deliver objects twice"
    );
    m.poll_request(now).unwrap();
    m.on_http_error(now, 410, None, b"");
    assert_eq!(m.poll_request(now).unwrap().kind, RequestKind::List);
}

#[test]
fn failures_back_off_and_honour_retry_after() {
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    let now = Instant::now();
    m.poll_request(now).unwrap();
    m.on_http_error(now, 429, Some(Duration::from_secs(2)), b"");
    assert!(!m.wants_request(now + Duration::from_millis(1999)));
    assert!(m.poll_request(now + Duration::from_millis(1999)).is_none());
    let r = m.poll_request(now + Duration::from_secs(2)).unwrap();
    assert_eq!(r.kind, RequestKind::List, "the list is retried");
    m.on_transport_error(now, &"connection refused");
    assert_eq!(m.state(), WatchState::BackingOff);
    assert!(m.deadline().unwrap() <= now + Duration::from_millis(400));
}

#[test]
fn silent_stream_is_closed_after_timeout_plus_grace() {
    let mut s = spec(OnStart::Added);
    s.watch_timeout = Duration::from_secs(2);
    let mut m = WatchMachine::new(s, Rng::new(1));
    let now = Instant::now();
    let mut seen = Seen::new();
    listed(&mut m, now, &mut seen);
    let deadline = m.deadline().unwrap();
    // timeoutSeconds is drawn from [2 s, 4 s); the grace is min(30 s, watch_timeout).
    assert!(deadline >= now + Duration::from_secs(4) && deadline < now + Duration::from_secs(6));
    assert_eq!(
        m.on_timer(deadline - Duration::from_millis(1)),
        TimerOutcome::Nothing
    );
    assert_eq!(m.on_timer(deadline), TimerOutcome::CloseConnection);
    let r = m.poll_request(deadline).unwrap();
    assert!(r.path_and_query.contains("resourceVersion=10"));
}

#[test]
fn bad_lines_are_skipped_and_an_immediate_empty_end_backs_off() {
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    let now = Instant::now();
    let mut seen = Seen::new();
    listed(&mut m, now, &mut seen);
    seen.clear();
    for bad in [&b"{not json"[..], br#"{"type":"WHAT","object":{}}"#] {
        assert_eq!(
            m.on_watch_line(now, bad, &mut collect(&mut seen)),
            LineOutcome::Continue
        );
    }
    assert_eq!(m.stats().skipped_lines, 2);
    m.on_watch_end(now, true);
    assert_eq!(m.state(), WatchState::Connecting);
    m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    m.on_watch_end(now + Duration::from_millis(10), true);
    assert_eq!(m.state(), WatchState::BackingOff);
}

#[test]
fn event_filter_still_tracks_the_index() {
    let mut s = spec(OnStart::Added);
    s.events = vec![EventType::Deleted];
    let mut m = WatchMachine::new(s, Rng::new(1));
    let now = Instant::now();
    let mut seen = Seen::new();
    listed(&mut m, now, &mut seen);
    assert!(seen.is_empty());
    m.on_watch_line(
        now,
        &line("ADDED", &pod("z", "30")),
        &mut collect(&mut seen),
    );
    assert_eq!(m.known_objects(), 4);
    m.on_watch_line(
        now,
        &line("DELETED", &pod("z", "31")),
        &mut collect(&mut seen),
    );
    assert_eq!(seen.len(), 1);
}

#[test]
fn emitted_events_carry_the_object_identity() {
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    let now = Instant::now();
    let mut ids: Vec<(String, String, String, String, String)> = Vec::new();
    let mut grab = |e: Emitted<'_>| {
        let i = e.identity;
        ids.push((
            i.kind.into(),
            i.namespace.into(),
            i.name.into(),
            i.uid.into(),
            i.resource_version.into(),
        ));
    };
    m.poll_request(now).unwrap();
    m.on_list_body(now, &list_body("10", "", &[pod("a", "1")]), &mut grab);
    m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    m.on_watch_line(now, &line("MODIFIED", &pod("a", "11")), &mut grab);
    let err = r#"{"kind":"Status","code":410}"#;
    m.on_watch_line(now, &line("ERROR", err), &mut grab);
    m.poll_request(now).unwrap();
    m.on_list_body(now, &list_body("12", "", &[]), &mut grab);
    let want = |rv: &str| {
        (
            "Pod".to_string(),
            "ns".to_string(),
            "p-a".to_string(),
            "a".to_string(),
            rv.to_string(),
        )
    };
    assert_eq!(ids, vec![want("1"), want("11"), want("11")]);
}

fn bookmark(rv: &str, end: bool) -> Vec<u8> {
    let ann = if end {
        r#","annotations":{"k8s.io/initial-events-end":"true"}"#
    } else {
        ""
    };
    format!(r#"{{"type":"BOOKMARK","object":{{"kind":"Pod","apiVersion":"v1","metadata":{{"resourceVersion":"{rv}"{ann}}}}}}}"#)
        .into_bytes()
}

fn streaming_spec(initial_list: InitialList, on_start: OnStart) -> WatchSpec {
    let mut s = spec(on_start);
    s.initial_list = initial_list;
    s
}

/// Opens a streaming list and feeds it `items` and the end bookmark.
fn stream_listed(m: &mut WatchMachine, now: Instant, rv: &str, items: &[String], seen: &mut Seen) {
    let r = m.poll_request(now).unwrap();
    assert_eq!(r.kind, RequestKind::Watch);
    assert!(
        r.path_and_query.starts_with("/api/v1/pods?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=&allowWatchBookmarks=true&timeoutSeconds="),
        "{}",
        r.path_and_query
    );
    m.on_watch_opened(now);
    assert_eq!(m.state(), WatchState::Listing);
    for item in items {
        m.on_watch_line(now, &line("ADDED", item), &mut collect(seen));
    }
    m.on_watch_line(now, &bookmark(rv, true), &mut collect(seen));
}

#[test]
fn streaming_list_delivers_initial_events_as_list_then_watches() {
    let mut m = WatchMachine::new(
        streaming_spec(InitialList::Stream, OnStart::Added),
        Rng::new(1),
    );
    let now = Instant::now();
    let mut seen = Seen::new();
    let r = m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    assert!(r.path_and_query.contains("sendInitialEvents=true"));
    m.on_watch_line(now, &line("ADDED", &pod("a", "3")), &mut collect(&mut seen));
    m.on_watch_line(now, &bookmark("4", false), &mut collect(&mut seen));
    assert!(
        !m.has_listed(),
        "a plain bookmark does not end the initial events"
    );
    assert!(!m.is_streaming());
    m.on_watch_line(now, &line("ADDED", &pod("b", "5")), &mut collect(&mut seen));
    m.on_watch_line(now, &bookmark("9", true), &mut collect(&mut seen));
    assert!(m.has_listed() && m.is_streaming());
    assert_eq!(m.resume_version(), Some("9"));
    assert_eq!(m.known_objects(), 2);
    m.on_watch_line(
        now,
        &line("MODIFIED", &pod("a", "10")),
        &mut collect(&mut seen),
    );
    let got: Vec<_> = seen.iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(
        got,
        vec![
            (EventType::Added, Origin::List),
            (EventType::Added, Origin::List),
            (EventType::Modified, Origin::Watch)
        ]
    );
    // The stream's normal end re-watches from the last resourceVersion.
    m.on_watch_end(now + Duration::from_secs(5), true);
    let r = m.poll_request(now + Duration::from_secs(5)).unwrap();
    assert!(
        r.path_and_query.contains("resourceVersion=10&"),
        "{}",
        r.path_and_query
    );
    assert!(!r.path_and_query.contains("sendInitialEvents"));
}

#[test]
fn streaming_list_obeys_on_start_skip() {
    let mut m = WatchMachine::new(
        streaming_spec(InitialList::Auto, OnStart::Skip),
        Rng::new(1),
    );
    let now = Instant::now();
    let mut seen = Seen::new();
    stream_listed(&mut m, now, "7", &[pod("a", "1"), pod("b", "2")], &mut seen);
    assert!(seen.is_empty());
    assert_eq!(m.known_objects(), 2);
    m.on_watch_line(
        now,
        &line("DELETED", &pod("a", "8")),
        &mut collect(&mut seen),
    );
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, Origin::Watch);
}

#[test]
fn auto_falls_back_to_list_when_streaming_is_refused_and_stream_does_not() {
    let now = Instant::now();
    let mut m = WatchMachine::new(
        streaming_spec(InitialList::Auto, OnStart::Added),
        Rng::new(1),
    );
    m.poll_request(now).unwrap();
    m.on_http_error(
        now,
        422,
        None,
        br#"{"kind":"Status","code":422,"reason":"Invalid"}"#,
    );
    assert!(m.streaming_rejected());
    let r = m.poll_request(now).expect("the LIST follows at once");
    assert_eq!(r.kind, RequestKind::List);
    // Relists use LISTs from now on too.
    let mut seen = Seen::new();
    m.on_list_body(
        now,
        &list_body("5", "", &[pod("a", "1")]),
        &mut collect(&mut seen),
    );
    m.poll_request(now).unwrap();
    m.on_http_error(now, 410, None, b"");
    assert_eq!(m.poll_request(now).unwrap().kind, RequestKind::List);

    let mut m = WatchMachine::new(
        streaming_spec(InitialList::Stream, OnStart::Added),
        Rng::new(1),
    );
    m.poll_request(now).unwrap();
    m.on_http_error(now, 422, None, b"");
    assert!(!m.streaming_rejected());
    assert_eq!(m.state(), WatchState::BackingOff);
    let r = m.poll_request(now + Duration::from_secs(1)).unwrap();
    assert!(r.path_and_query.contains("sendInitialEvents=true"));
}

#[test]
fn another_watch_learning_the_refusal_switches_a_pending_stream_to_list() {
    let now = Instant::now();
    let mut m = WatchMachine::new(
        streaming_spec(InitialList::Auto, OnStart::Added),
        Rng::new(1),
    );
    m.disable_streaming();
    assert_eq!(m.poll_request(now).unwrap().kind, RequestKind::List);
    let mut m = WatchMachine::new(
        streaming_spec(InitialList::Stream, OnStart::Added),
        Rng::new(1),
    );
    m.disable_streaming();
    assert_eq!(m.poll_request(now).unwrap().kind, RequestKind::Watch);
}

#[test]
fn relist_by_streaming_list_diffs_against_the_index() {
    let mut m = WatchMachine::new(
        streaming_spec(InitialList::Stream, OnStart::Added),
        Rng::new(1),
    );
    let now = Instant::now();
    let mut seen = Seen::new();
    stream_listed(
        &mut m,
        now,
        "10",
        &[pod("a", "1"), pod("b", "2"), pod("c", "3")],
        &mut seen,
    );
    seen.clear();
    let err = r#"{"kind":"Status","status":"Failure","reason":"Expired","code":410}"#;
    assert_eq!(
        m.on_watch_line(now, &line("ERROR", err), &mut collect(&mut seen)),
        LineOutcome::Close
    );
    // a unchanged, b modified, c gone, d new.
    stream_listed(
        &mut m,
        now,
        "20",
        &[pod("a", "1"), pod("b", "19"), pod("d", "18")],
        &mut seen,
    );
    let got: Vec<_> = seen.iter().map(|s| (s.0, s.1, s.3)).collect();
    assert_eq!(
        got,
        vec![
            (EventType::Modified, Origin::Relist, false),
            (EventType::Added, Origin::Relist, false),
            (EventType::Deleted, Origin::Relist, true),
        ]
    );
    assert_eq!(m.resume_version(), Some("20"));
    assert_eq!(m.stats().relists, 1);
    assert!(m.is_streaming());
}

#[test]
fn a_streaming_list_cut_before_its_end_starts_over() {
    let mut m = WatchMachine::new(
        streaming_spec(InitialList::Stream, OnStart::Added),
        Rng::new(1),
    );
    let now = Instant::now();
    let mut seen = Seen::new();
    m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    m.on_watch_line(now, &line("ADDED", &pod("a", "1")), &mut collect(&mut seen));
    m.on_watch_end(now + Duration::from_secs(2), false);
    assert!(!m.has_listed());
    assert_eq!(m.state(), WatchState::BackingOff);
    let later = now + Duration::from_secs(3);
    stream_listed(
        &mut m,
        later,
        "5",
        &[pod("a", "1"), pod("b", "2")],
        &mut seen,
    );
    assert_eq!(seen.len(), 2, "a is not delivered twice");
    assert_eq!(m.resume_version(), Some("5"));
}

#[test]
fn a_streaming_list_that_ends_cleanly_without_its_bookmark_falls_back_to_list() {
    let now = Instant::now();
    let mut seen = Seen::new();
    let mut m = WatchMachine::new(
        streaming_spec(InitialList::Auto, OnStart::Added),
        Rng::new(1),
    );
    m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    m.on_watch_line(now, &line("ADDED", &pod("a", "1")), &mut collect(&mut seen));
    m.on_watch_line(
        now,
        &line("DELETED", &pod("a", "2")),
        &mut collect(&mut seen),
    );
    assert_eq!(m.known_objects(), 0, "a DELETED is obeyed even here");
    m.on_watch_end(now + Duration::from_secs(300), true);
    assert!(m.streaming_rejected());
    assert_eq!(m.poll_request(now).unwrap().kind, RequestKind::List);
    let got: Vec<_> = seen.iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(
        got,
        vec![
            (EventType::Added, Origin::List),
            (EventType::Deleted, Origin::Watch)
        ]
    );
}

#[test]
fn excluded_namespaces_are_neither_delivered_nor_indexed() {
    let mut s = streaming_spec(InitialList::List, OnStart::Added);
    s.exclude_namespaces = vec!["ns".into()];
    let mut m = WatchMachine::new(s, Rng::new(1));
    let now = Instant::now();
    let mut seen = Seen::new();
    let other = r#"{"metadata":{"name":"q","namespace":"other","uid":"q","resourceVersion":"4"}}"#;
    m.poll_request(now).unwrap();
    m.on_list_body(
        now,
        &list_body("5", "", &[pod("a", "1"), other.into()]),
        &mut collect(&mut seen),
    );
    m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    m.on_watch_line(
        now,
        &line("MODIFIED", &pod("a", "6")),
        &mut collect(&mut seen),
    );
    assert_eq!(m.known_objects(), 1);
    assert_eq!(seen.len(), 1);
    assert!(seen[0].2.contains("\"other\""));
    assert_eq!(
        m.resume_version(),
        Some("6"),
        "excluded events still move the resume point"
    );
}

#[test]
fn metadata_only_asks_for_partial_objects_and_falls_back_on_406() {
    let mut s = streaming_spec(InitialList::List, OnStart::Added);
    s.metadata_only = true;
    let mut m = WatchMachine::new(s, Rng::new(1));
    let now = Instant::now();
    let r = m.poll_request(now).unwrap();
    assert_eq!(r.accept, METADATA_LIST_ACCEPT);
    m.on_http_error(now, 406, None, b"");
    let r = m.poll_request(now).expect("retried at once");
    assert_eq!((r.kind, r.accept), (RequestKind::List, JSON_ACCEPT));
    let mut s = streaming_spec(InitialList::List, OnStart::Added);
    s.metadata_only = true;
    let mut m = WatchMachine::new(s, Rng::new(1));
    let mut kinds = Vec::new();
    m.poll_request(now).unwrap();
    let partial = r#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"p","namespace":"ns","uid":"u","resourceVersion":"1"}}"#;
    let body = format!(
        r#"{{"kind":"PartialObjectMetadataList","metadata":{{"resourceVersion":"2"}},"items":[{partial}]}}"#
    );
    m.on_list_body(now, body.as_bytes(), &mut |e: Emitted<'_>| {
        kinds.push(e.identity.kind.to_owned())
    });
    let r = m.poll_request(now).unwrap();
    assert_eq!(r.accept, METADATA_WATCH_ACCEPT);
    m.on_watch_opened(now);
    m.on_watch_line(now, &line("MODIFIED", partial), &mut |e: Emitted<'_>| {
        kinds.push(e.identity.kind.to_owned())
    });
    assert_eq!(
        kinds,
        ["Pod", "Pod"],
        "the resource's kind, not PartialObjectMetadata"
    );
}

fn kind_spec(name: &str, namespace: Option<&str>) -> WatchSpec {
    let mut s = streaming_spec(InitialList::List, OnStart::Added);
    s.target = WatchTarget::Kind {
        name: name.into(),
        api_version: None,
    };
    s.namespace = namespace.map(Into::into);
    s
}

const AGG_CORE: &str = r#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","items":[{"metadata":{},"versions":[{"version":"v1","resources":[
    {"resource":"nodes","responseKind":{"kind":"Node"},"scope":"Cluster","singularResource":"node","verbs":["list","watch"],"shortNames":["no"]},
    {"resource":"events","responseKind":{"kind":"Event"},"scope":"Namespaced","singularResource":"event","verbs":["list","watch"]}]}]}]}"#;
const AGG_GROUPS: &str = r#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","items":[{"metadata":{"name":"apps"},"versions":[{"version":"v1","resources":[
    {"resource":"deployments","responseKind":{"kind":"Deployment"},"scope":"Namespaced","singularResource":"deployment","verbs":["list","watch"],"shortNames":["deploy"]}]}]},
    {"metadata":{"name":"events.k8s.io"},"versions":[{"version":"v1","resources":[
    {"resource":"events","responseKind":{"kind":"Event"},"scope":"Namespaced","singularResource":"event","verbs":["list","watch"]}]}]}]}"#;

/// Answers the two aggregated discovery GETs.
fn discover(m: &mut WatchMachine, now: Instant, groups: &str) {
    for (path, body) in [("/api", AGG_CORE), ("/apis", groups)] {
        assert!(matches!(
            m.state(),
            WatchState::Resolving | WatchState::BackingOff
        ));
        let r = m.poll_request(now).unwrap();
        assert_eq!(
            (r.kind, r.path_and_query.as_str(), r.accept),
            (RequestKind::Discovery, path, DISCOVERY_ACCEPT)
        );
        m.on_discovery_body(now, body.as_bytes());
    }
}

#[test]
fn a_kind_is_resolved_through_discovery_before_listing() {
    let mut m = WatchMachine::new(kind_spec("deploy", Some("web")), Rng::new(1));
    let now = Instant::now();
    assert_eq!(m.api_version(), None);
    discover(&mut m, now, AGG_GROUPS);
    assert_eq!(m.api_version(), Some("apps/v1"));
    let r = m.poll_request(now).unwrap();
    assert_eq!(
        r.path_and_query,
        "/apis/apps/v1/namespaces/web/deployments?limit=2"
    );
}

#[test]
fn a_missing_kind_is_discovered_again_with_backoff() {
    let mut m = WatchMachine::new(kind_spec("Widget", None), Rng::new(1));
    let now = Instant::now();
    discover(&mut m, now, AGG_GROUPS);
    assert_eq!(m.state(), WatchState::BackingOff);
    let due = m.deadline().unwrap();
    assert!(
        due > now && due <= now + Duration::from_secs(2),
        "{:?}",
        due - now
    );
    assert!(m.poll_request(now).is_none());
    let widgets = AGG_GROUPS
        .replace("\"deployments\"", "\"widgets\"")
        .replace("Deployment", "Widget");
    discover(&mut m, due, &widgets);
    assert_eq!(m.api_version(), Some("apps/v1"));
    assert_eq!(m.poll_request(due).unwrap().kind, RequestKind::List);
}

#[test]
fn ambiguous_names_and_namespaced_cluster_kinds_fail_for_good() {
    let now = Instant::now();
    let mut m = WatchMachine::new(kind_spec("Event", None), Rng::new(1));
    discover(&mut m, now, AGG_GROUPS);
    assert!(m.has_failed());
    assert_eq!(m.state(), WatchState::Failed);
    assert!(!m.wants_request(now + Duration::from_secs(3600)));
    assert_eq!(m.deadline(), None);
    let mut m = WatchMachine::new(kind_spec("nodes", Some("web")), Rng::new(1));
    discover(&mut m, now, AGG_GROUPS);
    assert!(m.has_failed());
    let mut m = WatchMachine::new(kind_spec("nodes", None), Rng::new(1));
    discover(&mut m, now, AGG_GROUPS);
    assert_eq!(
        m.poll_request(now).unwrap().path_and_query,
        "/api/v1/nodes?limit=2"
    );
}

#[test]
fn discovery_failures_restart_discovery_and_404s_skip_a_group_version() {
    let now = Instant::now();
    let mut m = WatchMachine::new(kind_spec("deploy", None), Rng::new(1));
    m.poll_request(now).unwrap();
    m.on_http_error(now, 503, Some(Duration::from_secs(1)), b"");
    assert_eq!(m.state(), WatchState::BackingOff);
    let later = now + Duration::from_secs(1);
    assert_eq!(m.poll_request(later).unwrap().path_and_query, "/api");
    m.on_discovery_body(later, br#"{"kind":"APIVersions","versions":["v1"]}"#);
    assert_eq!(m.poll_request(later).unwrap().path_and_query, "/apis");
    m.on_discovery_body(later, br#"{"kind":"APIGroupList","groups":[{"name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}]}]}"#);
    assert_eq!(m.poll_request(later).unwrap().path_and_query, "/api/v1");
    m.on_http_error(later, 404, None, b"");
    assert_eq!(
        m.poll_request(later).unwrap().path_and_query,
        "/apis/apps/v1"
    );
    m.on_discovery_body(later, br#"{"kind":"APIResourceList","groupVersion":"apps/v1","resources":[{"name":"deployments","singularName":"deployment","namespaced":true,"kind":"Deployment","verbs":["list","watch"],"shortNames":["deploy"]}]}"#);
    assert_eq!(
        m.poll_request(later).unwrap().path_and_query,
        "/apis/apps/v1/deployments?limit=2"
    );
    // Garbage is a transport error: discovery starts over after a backoff.
    let mut m = WatchMachine::new(kind_spec("deploy", None), Rng::new(1));
    m.poll_request(now).unwrap();
    m.on_discovery_body(now, b"<html>");
    assert_eq!(m.state(), WatchState::BackingOff);
    assert_eq!(
        m.poll_request(now + Duration::from_secs(1))
            .unwrap()
            .path_and_query,
        "/api"
    );
}

#[test]
fn stats_count_types_reasons_and_consecutive_failures() {
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    let t0 = Instant::now();
    let mut seen = Seen::new();
    listed(&mut m, t0, &mut seen);
    let st = m.stats();
    assert_eq!(st.events_by_type, [3, 0, 0]);
    assert_eq!(st.last_event, Some(t0));
    let t1 = t0 + Duration::from_secs(3);
    m.on_watch_line(
        t1,
        &line("MODIFIED", &pod("a", "11")),
        &mut collect(&mut seen),
    );
    m.on_watch_line(
        t1,
        &line("DELETED", &pod("b", "12")),
        &mut collect(&mut seen),
    );
    m.note_bytes(100);
    let st = m.stats();
    assert_eq!((st.events, st.events_by_type), (5, [3, 1, 1]));
    assert_eq!((st.last_event, st.bytes), (Some(t1), 100));
    // A normal end is a reconnect, not a failure.
    m.on_watch_end(t1 + Duration::from_secs(5), true);
    let reason = |m: &WatchMachine, r: ReconnectReason| m.stats().reconnects_by_reason[r as usize];
    assert_eq!(reason(&m, ReconnectReason::StreamEnded), 1);
    assert_eq!(m.stats().consecutive_failures, 0);
    // Failures in a row count up, across kinds, until a success.
    let mut now = t1 + Duration::from_secs(6);
    for i in 1..=3 {
        now += Duration::from_secs(60);
        m.poll_request(now).unwrap();
        if i == 2 {
            m.on_http_error(now, 500, None, b"");
        } else {
            m.on_transport_error(now, &"connection refused");
        }
        assert_eq!(m.stats().consecutive_failures, i);
    }
    assert_eq!(m.last_error(), Some("connection refused"));
    assert_eq!(reason(&m, ReconnectReason::TransportError), 2);
    assert_eq!(reason(&m, ReconnectReason::HttpError), 1);
    // A stream that ends at once counts once, as a transport failure.
    now += Duration::from_secs(60);
    m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    m.on_watch_end(now, true);
    assert_eq!(reason(&m, ReconnectReason::TransportError), 3);
    assert_eq!(reason(&m, ReconnectReason::StreamEnded), 1);
    assert_eq!(m.stats().consecutive_failures, 4);
    assert_eq!(
        m.stats().reconnects,
        m.stats().reconnects_by_reason.iter().sum::<u64>()
    );
    // A line on an open stream is a success.
    now += Duration::from_secs(60);
    m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    m.on_watch_line(
        now,
        br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"15"}}}"#,
        &mut collect(&mut seen),
    );
    assert_eq!(m.stats().consecutive_failures, 0);
    assert_eq!(
        m.last_error(),
        Some("the watch ended at once without any event")
    );
    // 410 relists without counting a failure.
    let err = r#"{"kind":"Status","code":410,"reason":"Expired"}"#;
    m.on_watch_line(now, &line("ERROR", err), &mut collect(&mut seen));
    assert_eq!(reason(&m, ReconnectReason::Expired), 1);
    assert_eq!(m.stats().consecutive_failures, 0);
}

#[test]
fn kind_guessing() {
    assert_eq!(guess_kind("pods"), "Pod");
    assert_eq!(guess_kind("ingresses"), "Ingress");
    assert_eq!(guess_kind("networkpolicies"), "Networkpolicy");
}

#[test]
fn an_error_event_during_a_streaming_list_is_a_counted_failure_and_starts_over() {
    let mut m = WatchMachine::new(
        streaming_spec(InitialList::Stream, OnStart::Added),
        Rng::new(1),
    );
    let now = Instant::now();
    let mut seen = Seen::new();
    m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    m.on_watch_line(now, &line("ADDED", &pod("a", "1")), &mut collect(&mut seen));
    let err = r#"{"kind":"Status","code":500,"reason":"InternalError"}"#;
    assert_eq!(
        m.on_watch_line(now, &line("ERROR", err), &mut collect(&mut seen)),
        LineOutcome::Close
    );
    assert_eq!(m.state(), WatchState::BackingOff);
    let st = m.stats();
    assert_eq!(
        st.reconnects_by_reason[ReconnectReason::ErrorEvent as usize],
        1
    );
    assert_eq!((st.reconnects, st.consecutive_failures), (1, 1));
    assert_eq!(m.last_error(), Some("ERROR event: 500 InternalError"));
    let later = now + Duration::from_secs(1);
    stream_listed(&mut m, later, "5", &[pod("a", "1")], &mut seen);
    assert_eq!(seen.len(), 1, "a is not delivered twice");
}

#[test]
fn a_refused_checkpoint_position_relists_after_a_backoff_and_reports_the_difference() {
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    m.resume_from("abc".into(), checkpoint_index());
    let now = Instant::now();
    assert_eq!(m.poll_request(now).unwrap().kind, RequestKind::Watch);
    let refused = br#"{"kind":"Status","code":400,"reason":"BadRequest","message":"resourceVersion: Invalid value: \"abc\": strconv.ParseUint: parsing \"abc\": invalid syntax"}"#;
    m.on_http_error(now, 400, None, refused);
    assert_eq!(m.state(), WatchState::BackingOff);
    assert_eq!(m.stats().relists, 1);
    assert_eq!(m.stats().consecutive_failures, 1);
    let due = m.deadline().unwrap();
    assert!(due <= now + Duration::from_millis(200), "{:?}", due - now);
    let r = m.poll_request(due).unwrap();
    assert_eq!(r.kind, RequestKind::List, "the position is not retried");
    let mut steps = Steps::default();
    m.on_list_body(
        due,
        &list_body("20", "", &[pod("a", "1"), pod("b", "19")]),
        &mut steps,
    );
    assert_eq!(
        steps.0,
        vec![
            "emit MODIFIED relist b",
            "step - b (was 2)",
            "emit DELETED relist c",
            "step - c (was 3)",
            "step 20 -",
        ]
    );
    assert_eq!(m.stats().consecutive_failures, 0);
    let r = m.poll_request(due).unwrap();
    assert!(r.path_and_query.contains("resourceVersion=20&"));
    // Any other 400 on a WATCH is a failure that retries the WATCH.
    m.on_watch_opened(due);
    m.on_watch_end(due + Duration::from_secs(5), true);
    m.poll_request(due + Duration::from_secs(5)).unwrap();
    m.on_http_error(due, 400, None, br#"{"code":400,"message":"bad"}"#);
    let later = due + Duration::from_secs(60);
    assert_eq!(m.poll_request(later).unwrap().kind, RequestKind::Watch);
}

#[test]
fn a_trickled_response_head_has_its_own_deadline() {
    let mut s = spec(OnStart::Added);
    s.watch_timeout = Duration::from_secs(20);
    let mut m = WatchMachine::new(s, Rng::new(1));
    let now = Instant::now();
    let mut seen = Seen::new();
    listed(&mut m, now, &mut seen);
    m.on_watch_end(now + Duration::from_secs(5), true);
    let sent = now + Duration::from_secs(5);
    m.poll_request(sent).unwrap();
    // One byte of head a second: bytes alone do not move the deadline.
    for i in 1..20 {
        m.note_activity(sent + Duration::from_secs(i));
    }
    assert_eq!(m.deadline(), Some(sent + Duration::from_secs(20)));
    let at = sent + Duration::from_secs(20);
    assert_eq!(
        m.on_timer(at - Duration::from_millis(1)),
        TimerOutcome::Nothing
    );
    assert_eq!(m.on_timer(at), TimerOutcome::CloseConnection);
    assert_eq!(
        m.last_error(),
        Some("no complete response head from the server within 20s")
    );
    assert_eq!(m.stats().consecutive_failures, 1);
    // A head in time: the stream's own deadline applies from then on.
    m.poll_request(at).unwrap();
    m.on_response_head(at + Duration::from_secs(19));
    let deadline = m.deadline().unwrap();
    assert!(
        deadline >= at + Duration::from_secs(19 + 20 + 20),
        "{deadline:?}"
    );
}

#[test]
fn keep_alive_bytes_do_not_keep_an_eventless_stream_and_its_failures_add_up() {
    let mut s = spec(OnStart::Added);
    s.watch_timeout = Duration::from_secs(2);
    let mut m = WatchMachine::new(s, Rng::new(1));
    let mut now = Instant::now();
    let mut seen = Seen::new();
    listed(&mut m, now, &mut seen);
    for round in 1..=3 {
        let deadline = m.deadline().unwrap();
        // Blank lines every 100 ms: bytes, no line for the machine.
        let mut t = now;
        while t < deadline {
            m.note_activity(t);
            t += Duration::from_millis(100);
        }
        assert_eq!(m.deadline(), Some(deadline), "round {round}");
        assert_eq!(m.on_timer(deadline), TimerOutcome::CloseConnection);
        assert_eq!(
            m.stats().consecutive_failures,
            round,
            "an eventless stream is a failure, its opening no success"
        );
        assert!(m
            .last_error()
            .is_some_and(|e| e.starts_with("no event or bookmark from the server for ")));
        now = deadline;
        m.poll_request(now).unwrap();
        m.on_response_head(now);
        m.on_watch_opened(now);
        assert_eq!(
            m.stats().consecutive_failures,
            round,
            "after a silent stream, opening one is no success"
        );
    }
    // A bookmark is an event: it moves the deadline and ends the failures.
    let later = now + Duration::from_secs(1);
    m.on_watch_line(
        later,
        br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"15"}}}"#,
        &mut collect(&mut seen),
    );
    assert_eq!(m.stats().consecutive_failures, 0);
    assert!(m.deadline().unwrap() >= later + Duration::from_secs(4));
}

#[test]
fn list_bytes_count_as_progress_once_the_head_is_in() {
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    let now = Instant::now();
    m.poll_request(now).unwrap();
    m.note_activity(now + Duration::from_secs(30));
    assert_eq!(m.deadline(), Some(now + Duration::from_secs(60)));
    m.on_response_head(now + Duration::from_secs(40));
    m.note_activity(now + Duration::from_secs(90));
    assert_eq!(m.deadline(), Some(now + Duration::from_secs(150)));
}

#[test]
fn a_standby_lists_at_its_leaders_position_or_takes_a_silent_baseline() {
    let now = Instant::now();
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    let mut seen = Seen::new();
    m.list_first_at("7".into());
    let r = m.poll_request(now).unwrap();
    assert_eq!(
        r.path_and_query,
        "/api/v1/pods?limit=2&resourceVersion=7&resourceVersionMatch=Exact"
    );
    m.on_list_body(
        now,
        &list_body("7", "c1", &[pod("a", "1"), pod("b", "2")]),
        &mut collect(&mut seen),
    );
    let r = m.poll_request(now).unwrap();
    assert_eq!(
        r.path_and_query, "/api/v1/pods?limit=2&continue=c1",
        "the token carries the position"
    );
    m.on_list_body(
        now,
        &list_body("7", "", &[pod("c", "3")]),
        &mut collect(&mut seen),
    );
    assert_eq!(seen.len(), 3, "reported (the leader's advert covers them)");
    let r = m.poll_request(now).unwrap();
    assert!(
        r.path_and_query.contains("&resourceVersion=7&"),
        "{}",
        r.path_and_query
    );
    // The position was compacted: the current state, not reported.
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    let mut seen = Seen::new();
    m.list_first_at("7".into());
    m.poll_request(now).unwrap();
    m.on_http_error(now, 410, None, br#"{"code":410,"reason":"Expired"}"#);
    let r = m.poll_request(now).unwrap();
    assert_eq!(r.path_and_query, "/api/v1/pods?limit=2");
    m.on_list_body(
        now,
        &list_body("20", "", &[pod("a", "15")]),
        &mut collect(&mut seen),
    );
    assert!(seen.is_empty(), "the baseline is not reported: {seen:?}");
    let r = m.poll_request(now).unwrap();
    assert!(r.path_and_query.contains("&resourceVersion=20&"));
}

/// A filtering owner that wants `.metadata.name` cut: notes, per decided
/// event, the cut it got with it ("-": none, it cuts the object itself).
struct Cuts {
    reads: crate::filter::reads::Reads,
    got: Vec<String>,
}

impl Cuts {
    fn new() -> Self {
        Cuts {
            reads: crate::filter::reads::Reads::of(".metadata.name").unwrap(),
            got: Vec::new(),
        }
    }
}

impl Emit for Cuts {
    fn emit(&mut self, _: Emitted<'_>) {}

    fn filtering(&self) -> bool {
        true
    }

    fn cut(&self) -> Option<&crate::filter::reads::Reads> {
        Some(&self.reads)
    }

    fn decide(
        &mut self,
        e: &Emitted<'_>,
        _: Option<&crate::filter::Memory>,
    ) -> Option<crate::watch::Decided> {
        let cut = e.cut.map_or("-".to_owned(), |c| {
            String::from_utf8(crate::filter::json::to_json(c.value()).unwrap()).unwrap()
        });
        self.got
            .push(format!("{} {} {cut}", e.origin.as_str(), e.identity.uid));
        None
    }
}

/// Streamed events get their object cut in the scan's pass; list items
/// (a LIST's, a streaming list's initial events) do not, nor does a line
/// that is not an event.
#[test]
fn only_streamed_events_carry_a_cut_made_while_scanning() {
    let now = Instant::now();
    let mut cuts = Cuts::new();
    let mut m = WatchMachine::new(spec(OnStart::Added), Rng::new(1));
    m.poll_request(now).unwrap();
    m.on_list_body(now, &list_body("10", "", &[pod("a", "1")]), &mut cuts);
    m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    m.on_watch_line(now, &line("MODIFIED", &pod("a", "11")), &mut cuts);
    m.on_watch_line(
        now,
        b"{\"type\":\"ADDED\",\"object\":{\"metadata\":1}}",
        &mut cuts,
    );
    m.on_watch_line(now, &line("DELETED", &pod("a", "12")), &mut cuts);

    let mut m = WatchMachine::new(
        streaming_spec(InitialList::Stream, OnStart::Added),
        Rng::new(1),
    );
    m.poll_request(now).unwrap();
    m.on_watch_opened(now);
    m.on_watch_line(now, &line("ADDED", &pod("b", "3")), &mut cuts);
    m.on_watch_line(now, &bookmark("9", true), &mut cuts);
    m.on_watch_line(now, &line("ADDED", &pod("c", "10")), &mut cuts);
    assert_eq!(
        cuts.got,
        vec![
            "list a -",
            r#"watch a {"metadata":{"name":"p-a"}}"#,
            r#"watch a {"metadata":{"name":"p-a"}}"#,
            "list b -",
            r#"watch c {"metadata":{"name":"p-c"}}"#,
        ]
    );
}
