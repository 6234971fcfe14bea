//! Random programs and objects shared by the tests that hold a shortcut
//! (the cut value, the direct evaluator) against jaq on the whole value.

use proptest::prelude::*;

/// A random JSON text: Kubernetes-ish keys, every kind of value, escapes,
/// odd numbers, duplicate keys, whitespace.
pub fn json_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("metadata"),
        Just("labels"),
        Just("app"),
        Just("name"),
        Just("spec"),
        Just("containers"),
        Just("image"),
        Just("status"),
        Just("a"),
        Just("b"),
        Just("\\u0061"),
        Just("x y"),
    ];
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("0".to_owned()),
        Just("-0".to_owned()),
        Just("1.50".to_owned()),
        Just("1e400".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        Just("\"web\"".to_owned()),
        Just("\"a\\\"b\\n\\u00e9\"".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"\\ud83d\\ude00\"".to_owned()),
        Just("\"\\\\ud800\"".to_owned()),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(|v| {
                let members: Vec<String> = v
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\" : {v}"))
                    .collect();
                format!("{{ {} }}", members.join(","))
            }),
        ]
    })
}

/// A random program from pieces that reach into the input in every way the
/// analysis knows, and many it must refuse.
pub fn program() -> impl Strategy<Value = String> {
    compose(ATOMS, FORMS, 3, 24)
}

/// A random program mostly of what `filter::direct` runs itself (paths,
/// literals, comparisons, collections, logic), with a few terms it must
/// leave to jaq mixed in.
pub fn simple_program() -> impl Strategy<Value = String> {
    compose(SIMPLE_ATOMS, SIMPLE_FORMS, 4, 32)
}

/// Programs from `atoms`, nested in `forms` (templates with the places of
/// one or two subprograms marked ‹a› and ‹b›) up to `depth` levels.
fn compose(
    atoms: &'static [&'static str],
    forms: &'static [&'static str],
    depth: u32,
    size: u32,
) -> impl Strategy<Value = String> {
    let atom = prop::sample::select(atoms).prop_map(str::to_owned);
    atom.prop_recursive(depth, size, 3, move |inner| {
        (prop::sample::select(forms), inner.clone(), inner)
            .prop_map(|(form, a, b)| form.replace("‹a›", &a).replace("‹b›", &b))
    })
}

const ATOMS: &[&str] = &[
    ".",
    ".metadata",
    ".labels",
    ".app",
    ".name?",
    ".spec.containers",
    ".image",
    ".a",
    ".[\"b\"]",
    ".[]?",
    ".[0]?",
    "..",
    "\"web\"",
    "1",
    "null",
    "keys?",
    "length?",
    "type",
    "tostring",
    "not",
    "empty",
    "$__loc__",
    ".[]",
    ".containers[]?.image",
    "map(.image?)?",
    "to_entries?",
    "with_entries(.value |= tostring)?",
    "del(.a)?",
    ".a |= 1",
    "getpath([\"a\"])?",
    "[paths]?",
    "tojson",
    "@json",
    "keys_unsorted?",
    "add?",
    "any?",
    "[.[]?.name?]",
    "(.a, .b)",
    "label $f | (.[]? | ., break $f)",
    "[foreach .[]? as $x (0; . + 1; [$x, .])]",
    ".metadata.labels[\"app\"]?",
    "type == \"object\"",
];

const FORMS: &[&str] = &[
    "‹a› | ‹b›",
    "(‹a›), (‹b›)",
    "(‹a›) // (‹b›)",
    "(‹a›) and (‹b›)",
    "(‹a›) == (‹b›)",
    "if ‹a› then ‹b› else . end",
    "if ‹a› then ‹b› end",
    "(‹a›) as $v | ‹b› | [$v, .]",
    "{k: (‹a›), (‹b› | tostring): 1}",
    "reduce (‹a›) as $x ((‹b›); [., $x])",
    "(.‹a›)?[‹b›]?",
    "select(‹a›)",
    "[‹a›]",
    "try (‹a›) catch .",
    "first(‹a›)",
    "[limit(2; ‹a›)]",
    "try error(‹a›) catch .",
    "[path(‹a›)]?",
    "has(\"a\")? // (‹a›)",
    "\"<\\(‹a›)>\"",
    "(‹a›)?",
];

const SIMPLE_ATOMS: &[&str] = &[
    ".",
    ".metadata",
    ".metadata.labels.app",
    ".spec.containers[].image",
    ".spec.containers[0].image",
    ".name?",
    ".a",
    ".[\"b\"]",
    ".[]",
    ".[]?",
    ".[1]",
    ".a[]?.b",
    "\"web\"",
    "\"\"",
    "0",
    "1",
    "1.50",
    "null",
    "true",
    "false",
    "not",
    "empty",
    "[]",
    "{}",
    "length",
    "$__loc__",
];

const SIMPLE_FORMS: &[&str] = &[
    "‹a› | ‹b›",
    "(‹a›), (‹b›)",
    "(‹a›) // (‹b›)",
    "(‹a›) and (‹b›)",
    "(‹a›) or (‹b›)",
    "(‹a›) == (‹b›)",
    "(‹a›) != (‹b›)",
    "(‹a›) < (‹b›)",
    "(‹a›) >= (‹b›)",
    "if ‹a› then ‹b› else . end",
    "if ‹a› then ‹b› elif . then 1 end",
    "{k: (‹a›), \"x y\": (‹b›), k: 2}",
    "{a: (‹a›), b: (‹b›)}",
    "{a, b: (‹a›)}",
    "select(‹a›)",
    "[‹a›]",
    "(‹a›).a",
    "(‹a›)[]?",
    "(‹a›)?",
];
