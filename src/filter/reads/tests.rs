//! The analysis and the cut value against the truth: every program, run on
//! the value cut to what the analysis says it reads, gives exactly what it
//! gives on the whole object (outputs, their key order, error messages).

use super::*;
use crate::filter::jq::Program;
use crate::filter::json::{parse, parse_for};
use crate::filter::testgen::{json_text, program};
use proptest::prelude::*;

/// Runs `code` on `object` parsed whole and cut; both answers, printed.
fn both(program: &Program, object: &str) -> (String, String) {
    let run = |v: Result<Val, String>| match v {
        Ok(v) => format!("{:?}", program.all(v)),
        Err(e) => format!("parse error {e}"),
    };
    let whole = run(parse(object.as_bytes()));
    let cut = run(parse_for(object.as_bytes(), program.reads()));
    (whole, cut)
}

use jaq_json::Val;

fn keys(code: &str) -> Option<String> {
    fn show(n: &Node, out: &mut String) {
        if n.whole {
            out.push('*');
        }
        if !n.keys.is_empty() {
            out.push('{');
            for (i, (k, c)) in n.keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                show(c, out);
            }
            out.push('}');
        }
        if let Some(e) = &n.each {
            out.push_str("[]");
            show(e, out);
        }
    }
    let r = Reads::of(code)?;
    let mut s = String::new();
    show(&r.root, &mut s);
    Some(s)
}

#[test]
fn typical_programs_read_little() {
    assert_eq!(
        keys(r#".metadata.labels.app == "web""#).as_deref(),
        Some("{metadata{labels{app*}}}")
    );
    assert_eq!(
        keys("[.spec.containers[].image]").as_deref(),
        Some("{spec{containers[]{image*}}}")
    );
    assert_eq!(
        keys(r#"select(.metadata.labels.app) | .metadata.name"#).as_deref(),
        Some("{metadata{labels{app},name*}}")
    );
    assert_eq!(
        keys(r#".metadata.annotations["a.b/c"] // "none""#).as_deref(),
        Some("{metadata{annotations{a.b/c*}}}")
    );
    assert_eq!(keys("empty").as_deref(), Some(""));
    // Every member, each cut: correct, if no cheaper than the whole.
    assert_eq!(keys(".[] | .a").as_deref(), Some("[]{a*}"));
    assert_eq!(keys("{metadata}").as_deref(), Some("{metadata*}"));
}

/// Programs that need their input whole, or that the analysis cannot
/// follow: no `Reads`, so the whole object is parsed.
#[test]
fn unbounded_programs_are_refused() {
    for code in [
        ".",
        "..",
        "keys",
        "length",
        "tojson",
        "to_entries",
        "has(\"spec\")",
        ".[]",
        ".[.metadata.name]",
        "[paths]",
        "def f: .a; f",
        ". as $o | $o.metadata",
        ". as {metadata: $m} | $m",
        ".metadata |= 1",
        "del(.status)",
        "getpath([\"a\"])",
        "reduce .[] as $x (0; . + 1)",
        "select(.a) | .",
        "if .a then .b end",
        "error",
        "@json",
        "{a: .}",
        "[.]",
        "\"\\(.)\"",
        "any(.spec.containers[]; .image == \"x\")",
        ".a, .",
        ".a // .",
        "first(.)",
    ] {
        assert_eq!(keys(code), None, "{code}");
    }
}

/// A chain of pipes whose left sides have several outputs would take
/// exponential time to analyse: past a budget it is refused, at once.
#[test]
fn pathological_programs_are_refused_quickly() {
    let code = vec!["(.a, .b, .c)"; 40].join(" | ");
    // Without the budget this would run for ages: the test bounds its time.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(keys(&code)));
    let answer = rx.recv_timeout(std::time::Duration::from_secs(120));
    assert_eq!(answer, Ok(None));
    let fine = ["(.a, .b, .c)"; 4].join(" | ");
    assert!(keys(&fine).is_some());
}

/// Hand-written objects: every shape a program can stumble on (missing keys,
/// wrong types, arrays on a path, duplicate and escaped keys).
const OBJECTS: [&str; 12] = [
    r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-1","namespace":"shop","labels":{"app":"web","tier":"front"},"annotations":{"a.b/c":"{\"spec\":{\"x\":1}}"}},"spec":{"replicas":3,"nodeName":"n1","containers":[{"name":"c","image":"registry/web:1","ports":[{"containerPort":80}],"env":[{"name":"X","value":"1"}]},{"name":"d","image":"r/side:2"}]},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
    r#"{"kind":"Pod","metadata":{"name":"api","labels":{"app":"api"}},"spec":{"containers":[]},"status":null}"#,
    r#"{"metadata":"oops","spec":[1,2,3],"status":{"phase":7}}"#,
    r#"{"metadata":{"labels":null,"name":null},"spec":{"containers":{"image":"x"}}}"#,
    r#"{"metadata":{"labels":{"app":"web"}},"metadata":{"name":"second"},"\u0073pec":{"replicas":1.50,"containers":[{"image":-0}]}}"#,
    r#"{"spec":{"replicas":123456789012345678901234567890,"x":1e400}}"#,
    r#" { "metadata" : { "name" : "spaced" , "labels" : { } } } "#,
    r#"{}"#,
    r#"[]"#,
    r#""text""#,
    r#"{"a":1"#,
    r#"{"metadata":{"name":"\ud83d\ude00"}}"#,
];

/// Hand-written programs reaching into them in every way the analysis knows.
const PROGRAMS: &[&str] = &[
    r#".metadata.labels.app == "web""#,
    "[.spec.containers[].image]",
    ".metadata.name",
    ".metadata",
    ".metadata.labels",
    ".metadata.labels | keys",
    ".metadata | has(\"labels\")",
    ".metadata.labels.app // \"none\"",
    "if .status then .status.phase else \"x\" end",
    ".spec.replicas + 1",
    ".spec.replicas + \"x\"",
    ".metadata.name | test(\"^web\")",
    "select(.metadata.labels.app == \"web\") | .metadata.name",
    "[.spec.containers[] | select(.image | startswith(\"r\")) | .name]",
    ".spec.containers[0].image",
    ".spec.containers | length",
    ".metadata | to_entries",
    ".metadata[\"name\"], .[\"metadata\"].name, .metadata.\"name\"",
    ".metadata.name as $n | .spec.x // $n",
    "{name: .metadata.name, img: [.spec.containers[]?.image]}",
    "{metadata}",
    "\"\\(.metadata.name)-\\(.spec.nodeName)\"",
    "@base64 \"\\(.metadata.name)\"",
    ".metadata.labels.app and .spec",
    ".spec | not",
    ".status.conditions[]? | select(.type == \"Ready\") | .status",
    "try .spec.replicas.x catch \"e\"",
    "try (.metadata | error) catch .",
    "try error(.metadata.name) catch .",
    ".metadata.annotations[\"a.b/c\"] | fromjson? | .spec",
    "first(.spec.containers[])",
    "limit(1; .spec.containers[].image)",
    "reduce .spec.containers[] as $c (0; . + 1)",
    "foreach .spec.containers[] as $c (0; . + 1; [$c.name, .])",
    ".metadata.labels[.metadata.name]",
    "path(.metadata.labels.app)",
    "[.metadata.labels | ..]",
    "(.metadata, .spec) | .name",
    ".metadata | .name, .namespace",
    "if .metadata.labels then \"yes\" else \"no\" end",
    ".metadata.labels | type",
    "[.spec.containers[].ports[]?.containerPort] | add",
    "label $f | .spec.containers[] | if .image then ., break $f else empty end",
    ".status.phase | ascii_downcase? // \"none\"",
    ".metadata | del(.labels)",
    ".spec.containers | map(.image) | sort | join(\",\")",
    "[.spec.containers[] | .image] == [\"x\"]",
    "{(.metadata.name): 1}",
    ".metadata.labels | with_entries(.value |= ascii_upcase)",
    ".metadata.labels as {app: $a} | $a",
    ".metadata.name[1:3]",
    ".spec.containers[-1:]",
    ".spec.containers[1:][0].image",
    ".metadata | keys_unsorted",
    ".metadata.name | ltrimstr(\"web-\")",
    ".a // .b // .metadata",
    "[.spec.containers[].image] | unique | length > 1",
    ".spec.containers | any(.image == \"x\")",
    ".metadata.labels | .app, .tier",
    "null, empty, \"const\", .x.y",
    ".spec.replicas // 0 | . * 2",
    "-(.spec.replicas)",
    ".metadata | @json",
    "[.metadata.labels[]]",
    ".metadata.labels | keys[0]",
    ".spec.containers[0] | keys",
    ".spec.containers[].env[]? | select(.name == \"X\") | .value",
    "try (.spec.containers.x) catch .",
    "try (.metadata.x.y.z) catch .",
    "try (.metadata.name.x) catch .",
    "try (.metadata | .[0]) catch .",
    ".spec.x, .spec.replicas",
    "[.metadata?.labels?.app?]",
    ".metadata.labels.app? // empty",
    "select(.metadata.labels) | .spec.replicas",
    ".metadata | select(.name) | .labels",
    ".spec | first(.containers[]?, .replicas)",
    "path(.spec.containers[0].image), path(.a.b)",
    ".metadata.labels | to_entries | map(.key)",
    "[limit(2; .spec.containers[]?.image)]",
    "isempty(.spec.containers[]?)",
    "last(.spec.containers[]?)",
    ".metadata.labels | .[\"ap\" + \"p\"]",
    ".status.phase | if . == \"Running\" then 1 elif . then 2 else 3 end",
    "try ([.spec.containers[].image], .spec.containers.image) catch .",
    "[.spec.containers[].name?], [.metadata[]?]",
    ".spec.containers[] | .env[]? | .name",
];

/// Hand-written programs on hand-written objects, including every shape a
/// program can stumble on (missing keys, wrong types, arrays on a path,
/// duplicate and escaped keys).
#[test]
fn cut_values_give_the_same_answers() {
    for code in PROGRAMS {
        let program = Program::compile(code).unwrap_or_else(|e| panic!("{code}: {e:?}"));
        for object in OBJECTS {
            let (whole, cut) = both(&program, object);
            assert_eq!(whole, cut, "program {code} on {object}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 800, ..ProptestConfig::default() })]

    #[test]
    fn random_programs_on_random_objects(
        code in program(),
        objects in prop::collection::vec(json_text(), 1..8),
    ) {
        let Ok(program) = Program::compile(&code) else {
            return Ok(());
        };
        for object in &objects {
            let (whole, cut) = both(&program, object);
            prop_assert_eq!(whole, cut, "program {} on {}", code, object);
        }
    }
}

/// The cut made in the event scan's pass (`partial::OnePass`, what a
/// streamed event gets) against `partial::extract` on the same object
/// (what list items get), and the event scan's own answer with and without
/// it: all three must agree, or the one pass changed something.
fn one_pass_agrees(code: &str, object: &str) -> Result<(), String> {
    use crate::filter::partial::{extract, OnePass};
    use crate::kube::WatchEvent;
    let Some(reads) = Reads::of(code) else {
        return Ok(());
    };
    let line = format!(r#"{{"type":"MODIFIED","object":{object}}}"#);
    let line = line.as_bytes();
    let mut pass = OnePass::new(line, &reads);
    let parsed = WatchEvent::parse_with(line, &mut pass);
    let (plain, with) = (
        format!("{:?}", WatchEvent::parse(line)),
        format!("{parsed:?}"),
    );
    if plain != with {
        return Err(format!("the scan changed: {plain} ≠ {with}"));
    }
    if parsed.is_err() {
        // No event, nothing to decide.
        return Ok(());
    }
    let show = |v: Option<Val>| {
        v.map(|v| {
            crate::filter::json::to_json(&v).map(|b| String::from_utf8_lossy(&b).into_owned())
        })
    };
    let one = show(pass.finish().map(|c| c.value().clone()));
    let two = show(extract(object.as_bytes(), &reads));
    if one != two {
        return Err(format!("one pass {one:?} ≠ extract {two:?}"));
    }
    Ok(())
}

/// The hand-written programs and objects above, and objects with what the
/// event scan reads itself (identity strings, `kind`) or refuses.
#[test]
fn one_pass_cut_equals_extract_on_hand_written_objects() {
    let objects = [
        r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-1","namespace":"shop","uid":"u","resourceVersion":"7","labels":{"app":"web","tier":"front"},"annotations":{"a.b/c":"x"}},"spec":{"containers":[{"name":"c","image":"registry/web:1"}]},"status":{"phase":"Running"}}"#,
        r#"{"metadata":{"labels":{"app":"web"},"labels":{"app":"api","x":1},"name":"dup"},"spec":{"containers":[{"image":"a"}]},"\u0073pec":{"containers":[{"image":"b"}]}}"#,
        r#"{"spec":{"containers":[{"image":"a"}]},"metadata":{"\u006cabels":{"\u0061pp":"web"},"n\u0061me":"esc"},"kind":"Pod"}"#,
        r#"{"\u006detadata":{"labels":{"app":"web"}},"kind":null}"#,
        r#"{"metadata":{"name":"\ud83d\ude00","labels":{"app":"web"}}}"#,
        r#"{"metadata":{"labels":{"app":"\ud800"}}}"#,
        r#"{"metadata":"oops","spec":[1,2,3]}"#,
        r#"{"metadata":{},"spec":"not an object","status":null}"#,
        r#"{"metadata":{"labels":[1,{"app":2}]},"spec":{"containers":{"image":"x"}}}"#,
        r#" { "metadata" : { "name" : "spaced" , "labels" : { } } , "spec" : { } } "#,
        r#"{"kind":7}"#,
    ];
    let programs = [".metadata[]", ".kind, .metadata.namespace, .metadata.uid"];
    for code in PROGRAMS.iter().chain(&programs) {
        for object in OBJECTS.iter().chain(&objects) {
            if let Err(e) = one_pass_agrees(code, object) {
                panic!("program {code} on {object}: {e}");
            }
        }
    }
}

/// An object shaped like a Kubernetes one (so the event scan accepts it
/// more often than not): `kind`, a `metadata` object with identity strings
/// and random members, random `spec`/`status`, escaped and duplicate keys.
fn event_object() -> impl Strategy<Value = String> {
    let identity = prop_oneof![
        Just("\"web\"".to_owned()),
        Just("null".to_owned()),
        Just("\"a\\u0062\"".to_owned()),
        Just("\"\\ud83d\\ude00\"".to_owned()),
    ];
    let meta_member = prop_oneof![
        (Just("name"), identity.clone()),
        (Just("uid"), identity.clone()),
        (Just("n\\u0061mespace"), identity),
        (Just("labels"), json_text()),
        (Just("\\u006cabels"), json_text()),
        (Just("annotations"), json_text()),
        (Just("app"), json_text()),
    ];
    let metadata = prop::collection::vec(meta_member, 0..5).prop_map(object_text);
    let member = prop_oneof![
        (Just("kind"), Just("\"Pod\"".to_owned())),
        (Just("metadata"), metadata.clone()),
        (Just("\\u006detadata"), metadata),
        (Just("spec"), json_text()),
        (Just("\\u0073pec"), json_text()),
        (Just("status"), json_text()),
        (Just("a"), json_text()),
    ];
    prop::collection::vec(member, 0..5).prop_map(object_text)
}

fn object_text(members: Vec<(&str, String)>) -> String {
    let members: Vec<String> = members
        .into_iter()
        .map(|(k, v)| format!("\"{k}\" : {v}"))
        .collect();
    format!("{{ {} }}", members.join(" , "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 800, ..ProptestConfig::default() })]

    #[test]
    fn one_pass_cut_equals_extract_on_random_objects(
        code in program(),
        objects in prop::collection::vec(prop_oneof![json_text(), event_object()], 1..8),
    ) {
        for object in &objects {
            let agrees = one_pass_agrees(&code, object);
            prop_assert!(agrees.is_ok(), "program {} on {}: {:?}", code, object, agrees);
        }
    }
}
