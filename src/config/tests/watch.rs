//! `[[watch]]` values, targets, namespaces and references to sinks.

use super::*;

#[test]
fn watch_values() {
    let cases = [
        ("namespace = \"Kube-System\"", "invalid namespace"),
        ("namespace = \"\"", "invalid namespace"),
        ("label_selector = \"app=\"", ""),
        ("label_selector = \"\"", "empty label selector"),
        (
            "label_selector = \"app==web,,tier\"",
            "expected a label key",
        ),
        ("label_selector = \"app=web!\"", "expected ',' or the end"),
        ("field_selector = \"status.phase\"", "has no operator"),
        ("field_selector = \"a=b=c\"", "unescaped '='"),
        ("field_selector = 'a=b\\x'", "invalid escape sequence"),
        ("on_start = \"replay\"", "expected \"added\" or \"skip\""),
        ("events = []", "must list at least one event type"),
        ("events = [\"BOOKMARK\"]", "unknown event type \"BOOKMARK\""),
        ("events = [1]", "expected a string, found an integer"),
        ("watch_timeout = \"999ms\"", "too short"),
        ("watch_timeout = \"2h\"", "too long"),
        ("watch_timeout = \"5 minutes later\"", "invalid duration"),
    ];
    for (body, fragment) in cases {
        let text = with_watch_keys(body);
        let key = body.split(' ').next().unwrap();
        if fragment.is_empty() {
            ok(&text);
            continue;
        }
        let e = errs(&text);
        let found = e.iter().any(|e| {
            e.line == Some(11)
                && e.key.starts_with(&format!("watch[0].{key}"))
                && e.message.contains(fragment)
        });
        assert!(found, "{body}: {}", ConfigErrors(e.clone()));
    }
}

#[test]
fn watch_api_version_and_resource() {
    let replace = |api: &str, resource: &str| {
        MINIMAL
            .replace("api_version = \"v1\"", &format!("api_version = {api:?}"))
            .replace("resource = \"pods\"", &format!("resource = {resource:?}"))
    };
    let c = ok(&replace("networking.k8s.io/v1", "ingresses"));
    assert_eq!(
        resource_of(&c.watches[0]),
        ("networking.k8s.io/v1", "ingresses")
    );
    assert_error(
        &errs(&replace("core/v1", "pods")),
        8,
        "watch[0].api_version",
        "core group",
    );
    assert_error(
        &errs(&replace("apps/V1", "pods")),
        8,
        "watch[0].api_version",
        "invalid version",
    );
    assert_error(
        &errs(&replace("Apps/v1", "pods")),
        8,
        "watch[0].api_version",
        "invalid group",
    );
    assert_error(
        &errs(&replace("", "pods")),
        8,
        "watch[0].api_version",
        "invalid api_version",
    );
    assert_error(
        &errs(&replace("apps", "pods")),
        8,
        "watch[0].api_version",
        "GROUP/VERSION",
    );
    assert_error(
        &errs(&replace("v1", "Pod")),
        9,
        "watch[0].resource",
        "lowercase plural",
    );
    assert_error(
        &errs(&replace("v1", "pods/log")),
        9,
        "watch[0].resource",
        "subresources",
    );
}

#[test]
fn watch_sink_lists() {
    let e = errs(&MINIMAL.replace("sinks = [\"out\"]", "sinks = []"));
    assert_error(&e, 10, "watch[0].sinks", "must list at least one sink");
    let e = errs(&MINIMAL.replace("sinks = [\"out\"]", "sinks = [\"out\", \"out\", 3]"));
    assert_error(&e, 10, "watch[0].sinks[1]", "duplicate sink \"out\"");
    assert_error(
        &e,
        10,
        "watch[0].sinks[2]",
        "expected a string, found an integer",
    );
    let e = errs(&MINIMAL.replace("sinks = [\"out\"]", "sinks = \"out\""));
    assert_error(
        &e,
        10,
        "watch[0].sinks",
        "expected an array, found a string",
    );
}

#[test]
fn duplicate_watch_names_point_at_the_later_ones() {
    let text = with_watch_keys("")
        + &with_watch_keys("")
            .split("[[watch]]")
            .nth(1)
            .map(|w| format!("[[watch]]{w}"))
            .unwrap()
            .replace(
                "[sinks.out]\ntype = \"file\"\npath = \"/var/log/kwatchd/events.jsonl\"\n",
                "",
            );
    let e = errs(&text);
    assert_eq!(e.len(), 1, "{}", ConfigErrors(e.clone()));
    assert_eq!(e[0].key, "watch[1].name");
    assert!(
        e[0].message.contains("already used by watch[0] (line 6)"),
        "{}",
        e[0]
    );
    assert!(e[0].line.unwrap() > 6);
}

#[test]
fn watch_by_kind_with_namespace_lists_and_streaming_options() {
    let c = ok(&with_target_keys(
        "kind = \"deployments.apps\"\napi_version = \"apps/v1\"\nnamespace = [\"a\", \"b\"]\nmetadata_only = true\ninitial_list = \"stream\"\n",
    ));
    let w = &c.watches[0];
    assert_eq!(
        w.target,
        WatchTarget::Kind {
            name: "deployments.apps".into(),
            api_version: Some("apps/v1".into())
        }
    );
    assert_eq!(w.namespaces, vec!["a", "b"]);
    assert!(w.metadata_only);
    assert_eq!(w.initial_list, InitialList::Stream);
    let c = ok(&with_target_keys(
        "kind = \"Widget\"\nexclude_namespaces = [\"kube-system\"]\ninitial_list = \"list\"\n",
    ));
    assert_eq!(c.watches[0].exclude_namespaces, vec!["kube-system"]);
    assert_eq!(c.watches[0].initial_list, InitialList::List);
    assert!(!c.watches[0].metadata_only);
}

#[test]
fn watch_target_and_namespace_errors() {
    // Line 8 is the first line after `cluster = "local"`.
    let e = errs(&with_target_keys("kind = \"Pod\"\nresource = \"pods\"\n"));
    assert_error(&e, 9, "watch[0].resource", "either kind");
    let e = errs(&with_target_keys("resource = \"pods\"\n"));
    assert_error(
        &e,
        5,
        "watch[0].api_version",
        "missing required key `api_version`",
    );
    let e = errs(&with_target_keys("kind = \"pods/log\"\n"));
    assert_error(&e, 8, "watch[0].kind", "subresources cannot be watched");
    let e = errs(&with_target_keys(
        "kind = \"Pod\"\nnamespace = \"a\"\nexclude_namespaces = [\"b\"]\n",
    ));
    assert_error(
        &e,
        10,
        "watch[0].exclude_namespaces",
        "cannot be combined with namespace",
    );
    let e = errs(&with_target_keys(
        "kind = \"Pod\"\nnamespace = [\"a\", \"a\", \"B\"]\n",
    ));
    assert_error(&e, 9, "watch[0].namespace[1]", "duplicate namespace");
    assert_error(&e, 9, "watch[0].namespace[2]", "invalid namespace");
    let e = errs(&with_target_keys("kind = \"Pod\"\nnamespace = []\n"));
    assert_error(&e, 9, "watch[0].namespace", "at least one namespace");
    let e = errs(&with_target_keys(
        "kind = \"Pod\"\ninitial_list = \"watch\"\n",
    ));
    assert_error(
        &e,
        9,
        "watch[0].initial_list",
        "expected \"auto\", \"stream\" or \"list\"",
    );
    let e = errs(&with_target_keys(
        "kind = \"Pod\"\nmetadata_only = \"yes\"\n",
    ));
    assert_error(&e, 9, "watch[0].metadata_only", "expected");
}

#[test]
fn bare_numbers_for_durations_suggest_a_string_with_a_unit() {
    let cases = [
        ("watch_timeout = 300", "expected a string, found an integer; durations are strings with a unit: write \"300s\""),
        ("watch_timeout = 1.5", "found a float; durations are strings with a unit: write \"1500ms\""),
        ("watch_timeout = 2.0", "write \"2s\""),
        ("watch_timeout = \"300\"", "invalid duration \"300\": a unit is needed, e.g. \"300s\""),
    ];
    for (body, fragment) in cases {
        assert_error(
            &errs(&with_watch_keys(body)),
            11,
            "watch[0].watch_timeout",
            fragment,
        );
    }
    // No guess where there is nothing sensible to suggest.
    for body in [
        "watch_timeout = -5",
        "watch_timeout = true",
        "watch_timeout = [\"5m\"]",
    ] {
        let e = errs(&with_watch_keys(body));
        assert_eq!(e.len(), 1, "{}", ConfigErrors(e.clone()));
        assert!(
            e[0].message.starts_with("expected a string, found "),
            "{}",
            e[0]
        );
        assert!(!e[0].message.contains("write"), "{}", e[0]);
    }
    // Every duration key gets the hint, in every section.
    let e = errs(&format!("[daemon]\nshutdown_timeout = 30\n{MINIMAL}"));
    assert_error(&e, 2, "daemon.shutdown_timeout", "write \"30s\"");
    let e = errs(&with_sink(
        "type = \"exec\"\ncommand = [\"/x\"]\nkill_grace = 0",
    ));
    assert_error(&e, 15, "sinks.out.kill_grace", "write \"0s\"");
}
