//! `select`, `changes`, `redact` on watches; `transform` on every sink and
//! `coalesce` on exec and webhook sinks.

use super::*;

#[test]
fn jq_keys_are_kept_as_written() {
    let c = ok(&with_watch_keys(
        "select = '.metadata.labels.app == \"web\"'\nchanges = '[.spec.containers[].image]'\nredact = ['.data', '.spec.x[]']",
    ));
    let w = &c.watches[0];
    assert_eq!(w.select.as_deref(), Some(".metadata.labels.app == \"web\""));
    assert_eq!(w.changes.as_deref(), Some("[.spec.containers[].image]"));
    assert_eq!(w.redact_paths(), [".data", ".spec.x[]"]);
    assert!(w.has_filter());
    assert!(!ok(MINIMAL).watches[0].has_filter());
}

#[test]
fn compile_errors_point_into_the_program() {
    // Line 11 is the first added key; `select = '` is 10 characters, so
    // the program starts at column 11 and `nosuchfn` at column 16.
    let e = errs(&with_watch_keys("select = '.a | nosuchfn'"));
    let found = e.iter().find(|e| e.key == "watch[0].select").unwrap();
    assert_eq!((found.line, found.column), (Some(11), Some(16)), "{found}");
    assert!(
        found.message.contains("undefined filter `nosuchfn`"),
        "{found}"
    );
    assert_eq!(
        found.to_string(),
        "kwatchd.toml:11:16: watch[0].select: undefined filter `nosuchfn`"
    );
    // Same in a basic string without escapes.
    let e = errs(&with_watch_keys("changes = \".spec | nope\""));
    let found = e.iter().find(|e| e.key == "watch[0].changes").unwrap();
    assert_eq!((found.line, found.column), (Some(11), Some(20)), "{found}");
    // A string with escapes: the string's start.
    let e = errs(&with_watch_keys("changes = \"\\\"x\\\" | nope\""));
    let found = e.iter().find(|e| e.key == "watch[0].changes").unwrap();
    assert_eq!((found.line, found.column), (Some(11), Some(11)), "{found}");
    // A syntax error.
    assert_error(
        &errs(&with_watch_keys("changes = '.a |'")),
        11,
        "watch[0].changes",
        "expected",
    );
}

#[test]
fn redact_takes_path_expressions_only() {
    assert_error(
        &errs(&with_watch_keys("redact = ['.data', '.a + 1']")),
        11,
        "watch[0].redact[1]",
        "path expression",
    );
    assert_error(
        &errs(&with_watch_keys("redact = '.data'")),
        11,
        "watch[0].redact",
        "expected an array",
    );
}

#[test]
fn secrets_are_redacted_unless_the_watch_opts_out() {
    let secrets = |extra: &str| {
        with_watch_keys(extra).replace("resource = \"pods\"", "resource = \"secrets\"")
    };
    let c = ok(&secrets(""));
    assert_eq!(c.watches[0].redact_paths(), [".data", ".stringData"]);
    assert!(c.warnings().is_empty());
    let c = ok(&secrets("redact = ['.data.password']"));
    assert_eq!(c.watches[0].redact_paths(), [".data.password"]);
    let c = ok(&secrets("redact = []"));
    assert!(c.watches[0].redact_paths().is_empty());
    let w = c.warnings();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("watch[0].redact") && w[0].contains("secret values"),
        "{w:?}"
    );
    // By kind too; other resources get nothing by default.
    let by_kind = MINIMAL
        .replace("api_version = \"v1\"\n", "")
        .replace("resource = \"pods\"", "kind = \"Secret\"");
    assert_eq!(
        ok(&by_kind).watches[0].redact_paths(),
        [".data", ".stringData"]
    );
    assert!(ok(MINIMAL).watches[0].redact_paths().is_empty());
    assert!(ok(&with_watch_keys("redact = []")).warnings().is_empty());
}

#[test]
fn transform_on_every_sink_type_and_coalesce_on_exec_and_webhook() {
    let c = ok(&with_sink("type = \"stdout\"\ntransform = '{text: .type}'"));
    assert_eq!(c.sink_transforms["out"], "{text: .type}");
    assert!(ok(MINIMAL).sink_transforms.is_empty());
    assert_error(
        &errs(&with_sink("type = \"stdout\"\ntransform = '{text: nope}'")),
        14,
        "sinks.out.transform",
        "undefined filter `nope`",
    );
    let c = ok(&with_sink(
        "type = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\ncoalesce = true",
    ));
    assert_eq!(c.sinks["out"].delivery().map(|d| d.coalesce), Some(true));
    let c = ok(&with_sink(
        "type = \"webhook\"\nurl = \"http://127.0.0.1:9/\"",
    ));
    assert_eq!(c.sinks["out"].delivery().map(|d| d.coalesce), Some(false));
    assert_error(
        &errs(&with_sink("type = \"stdout\"\ncoalesce = true")),
        14,
        "sinks.out.coalesce",
        "unknown key",
    );
}

#[test]
fn offline_check_compiles_too() {
    let e = Config::check_text_offline(
        &with_watch_keys("select = '.a | nosuchfn'"),
        Path::new("kwatchd.toml"),
    )
    .unwrap_err();
    assert!(e.0.iter().any(|e| e.key == "watch[0].select"), "{e}");
}
