//! Problems that concern the whole document: many at once, syntax, unknown
//! keys, structure and types, names and references.

use super::*;

// ------------------------------------------------------------------ many problems at once

#[test]
fn broken_config_reports_every_problem_with_lines_and_keys() {
    let text = r#"[daemon]
log_level = "loud"
max_line_bytes = "16MB"
colour = "blue"

[clusters.local]
server = "http://10.0.0.1:8080"
connect_timeout = 10

[clusters.other]
token_file = "/t"

[[watch]]
name = "pods"
cluster = "local"
api_version = "v1"
resource = "pods"
sinks = ["out"]

[[watch]]
name = "pods"
cluster = "prod"
api_version = "apps/v1"
resource = "Deployment"
label_selector = "app in web"
events = ["ADDED", "added", "ADDED"]
sinks = ["out", "nowhere"]
watch_timeout = "500ms"

[sinks.out]
type = "file"
"#;
    let e = errs(text);
    assert_error(&e, 2, "daemon.log_level", "invalid log level \"loud\"");
    assert_error(&e, 3, "daemon.max_line_bytes", "invalid size unit");
    assert_error(&e, 4, "daemon.colour", "unknown key `colour` in [daemon]");
    assert_error(&e, 7, "clusters.local.server", "only allowed for loopback");
    assert_error(
        &e,
        8,
        "clusters.local.connect_timeout",
        "expected a string, found an integer",
    );
    assert_error(
        &e,
        10,
        "clusters.other.server",
        "missing required key `server` in [clusters.other]",
    );
    assert_error(
        &e,
        21,
        "watch[1].name",
        "duplicate watch name \"pods\": already used by watch[0] (line 14)",
    );
    assert_error(
        &e,
        22,
        "watch[1].cluster",
        "cluster \"prod\" is not defined (defined: local, other)",
    );
    assert_error(&e, 24, "watch[1].resource", "lowercase plural");
    assert_error(&e, 25, "watch[1].label_selector", "expected '('");
    assert_error(&e, 26, "watch[1].events[1]", "event types are upper case");
    assert_error(
        &e,
        26,
        "watch[1].events[2]",
        "duplicate event type \"ADDED\"",
    );
    assert_error(
        &e,
        27,
        "watch[1].sinks[1]",
        "sink \"nowhere\" is not defined (defined: out)",
    );
    assert_error(&e, 28, "watch[1].watch_timeout", "too short");
    assert_error(
        &e,
        30,
        "sinks.out.path",
        "missing required key `path` in [sinks.out]",
    );
    assert_eq!(e.len(), 15, "{}", ConfigErrors(e.clone()));
    // In file order.
    let lines: Vec<usize> = e.iter().map(|e| e.line.unwrap()).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
}

#[test]
fn error_display_matches_documented_format() {
    let text = with_watch_keys("").replace("cluster = \"local\"", "cluster = \"prod\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "kwatchd.toml:7:11: watch[0].cluster: cluster \"prod\" is not defined (defined: local)"
    );
}

#[test]
fn columns_count_characters() {
    let text = MINIMAL.replace("name = \"pods\"", "name = \"pöds é\"");
    let e = errs(&text);
    assert_eq!((e[0].line, e[0].column), (Some(6), Some(8)));
    let text = MINIMAL.replace(
        "resource = \"pods\"",
        "resource = \"pods\" # é\n\"nämlich\" = 1",
    );
    let e = errs(&text);
    assert_eq!((e[0].line, e[0].column), (Some(10), Some(1)));
    assert_eq!(e[0].key, "watch[0].\"nämlich\"");
}

// ------------------------------------------------------------------ syntax

#[test]
fn toml_syntax_error_reports_its_position() {
    let e = errs("[daemon]\nlog_level = \"info\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, Some(2));
    assert!(e[0].column.is_some());
    assert_eq!(e[0].key, "");
    assert!(e[0].message.starts_with("TOML syntax error"), "{}", e[0]);

    let e = errs("[clusters.a]\nserver = 1\nserver = 2\n");
    assert_eq!(e[0].line, Some(3), "{}", e[0]);
    assert!(e[0].message.contains("duplicate key"), "{}", e[0]);
}

// ------------------------------------------------------------------ unknown keys

#[test]
fn unknown_keys_at_every_level() {
    let text = r#"verbose = true
[daemon]
loglevel = "info"
[clusters.local]
server = "https://127.0.0.1"
ca = "/x"
[[watch]]
name = "a"
cluster = "local"
api_version = "v1"
resource = "pods"
sinks = ["out"]
[[watch]]
name = "b"
cluster = "local"
api_version = "v1"
resource = "pods"
sinks = ["out"]
selector = "x"
[sinks.out]
type = "file"
path = "/x"
format = "json"
[watches]
"#;
    let e = errs(text);
    assert_error(
        &e,
        1,
        "verbose",
        "unknown key `verbose` at the top level; expected one of: daemon, clusters, watch, sinks",
    );
    assert_error(&e, 3, "daemon.loglevel", "unknown key `loglevel` in [daemon]; did you mean `log_level`? (expected one of: log_level, max_line_bytes, sink_queue_events, metrics_listen, metrics_token_file, log_format, shutdown_timeout, state_dir, sync, sync_interval, leader_election)");
    assert_error(
        &e,
        6,
        "clusters.local.ca",
        "unknown key `ca` in [clusters.local]; expected one of: server, certificate_authority,",
    );
    assert_error(
        &e,
        19,
        "watch[1].selector",
        "unknown key `selector` in [[watch]] #2; did you mean `select`? (expected one of: name, cluster,",
    );
    assert_error(
        &e,
        23,
        "sinks.out.format",
        "unknown key `format` in [sinks.out]; expected one of: type, path",
    );
    assert_error(
        &e,
        24,
        "watches",
        "unknown key `watches` at the top level; did you mean `watch`?",
    );
    assert_eq!(e.len(), 6);
}

#[test]
fn unknown_keys_and_names_suggest_the_closest() {
    let text = r#"[daemon]
Log-Level = "info"
[clusters.local]
server = "https://127.0.0.1"
tokenfile = "/t"
[[watch]]
name = "a"
cluster = "locla"
api_version = "v1"
resrouce = "pods"
namespaces = ["a"]
sink = ["out"]
[sinks.out]
type = "webhok"
[sinks.other]
type = "file"
pth = "/x"
[sink.x]
"#;
    let e = errs(text);
    assert_error(
        &e,
        2,
        "daemon.Log-Level",
        "unknown key `Log-Level` in [daemon]; did you mean `log_level`?",
    );
    assert_error(
        &e,
        5,
        "clusters.local.tokenfile",
        "did you mean `token_file`?",
    );
    assert_error(
        &e,
        8,
        "watch[0].cluster",
        "cluster \"locla\" is not defined; did you mean \"local\"? (defined: local)",
    );
    assert_error(&e, 10, "watch[0].resrouce", "unknown key `resrouce` in [[watch]] #1; did you mean `resource`? (expected one of: name, cluster,");
    assert_error(&e, 11, "watch[0].namespaces", "did you mean `namespace`?");
    assert_error(&e, 12, "watch[0].sink", "did you mean `sinks`?");
    // The misspelt key does not hide that the watch names nothing.
    assert_error(
        &e,
        6,
        "watch[0].kind",
        "one of `kind` or `resource` is required in [[watch]] #1: `kind` to find it through discovery (e.g. \"Deployment\"), or `resource` with `api_version` to name it directly (e.g. \"pods\" and \"v1\"); `resrouce` looks like a misspelt `resource`",
    );
    assert_error(&e, 6, "watch[0].sinks", "missing required key `sinks`");
    assert_error(
        &e,
        14,
        "sinks.out.type",
        "unknown sink type \"webhok\"; did you mean \"webhook\"? (expected one of: file, exec, webhook, stdout, nats)",
    );
    assert_error(&e, 17, "sinks.other.pth", "did you mean `path`?");
    assert_error(
        &e,
        18,
        "sink",
        "unknown key `sink` at the top level; did you mean `sinks`?",
    );
    assert_error(&e, 15, "sinks.other.path", "missing required key `path`");
    assert_eq!(e.len(), 12, "{}", ConfigErrors(e.clone()));
}

#[test]
fn unknown_keys_in_dotted_and_inline_tables() {
    let text = MINIMAL.to_string() + "daemon.bogus = 1\n";
    // `daemon.bogus` at the end of the file belongs to [sinks.out].
    assert_error(
        &errs(&text),
        15,
        "sinks.out.daemon",
        "unknown key `daemon` in [sinks.out]",
    );
    let text = "daemon = { log_level = \"info\", x = 1 }\n".to_string() + MINIMAL;
    assert_error(&errs(&text), 1, "daemon.x", "unknown key `x` in [daemon]");
}

// ------------------------------------------------------------------ structure and types

#[test]
fn missing_required_keys_point_at_the_table_header() {
    let text = r#"
[clusters.local]
insecure_skip_tls_verify = false

[[watch]]
events = ["ADDED"]

[sinks.out]
path = "/x"
"#;
    let e = errs(text);
    assert_error(
        &e,
        2,
        "clusters.local.server",
        "missing required key `server`",
    );
    assert_error(
        &e,
        5,
        "watch[0].kind",
        "one of `kind` or `resource` is required in [[watch]] #1",
    );
    for key in ["name", "cluster", "sinks"] {
        assert_error(
            &e,
            5,
            &format!("watch[0].{key}"),
            &format!("missing required key `{key}` in [[watch]] #1"),
        );
    }
    assert_error(
        &e,
        8,
        "sinks.out.type",
        "missing required key `type` in [sinks.out]",
    );
    assert_eq!(e.len(), 6);
}

#[test]
fn no_watch_is_an_error() {
    let text = "[clusters.local]\nserver = \"https://k\"\n";
    assert_error(&errs(text), 1, "watch", "at least one [[watch]]");
    let text = "watch = []\n";
    assert_error(&errs(text), 1, "watch", "at least one [[watch]]");
}

#[test]
fn wrong_types() {
    let e = errs("daemon = 5\nclusters = \"x\"\nsinks = []\n[watch]\nname = \"a\"\n");
    assert_error(
        &e,
        1,
        "daemon",
        "expected a table [daemon], found an integer",
    );
    assert_error(
        &e,
        2,
        "clusters",
        "expected a table [clusters.NAME], found a string",
    );
    assert_error(
        &e,
        3,
        "sinks",
        "expected a table [sinks.NAME], found an array",
    );
    assert_error(
        &e,
        4,
        "watch",
        "expected an array of tables ([[watch]]), found a table",
    );

    let e = errs("[clusters]\nserver = \"https://k\"\n[sinks]\nout = 1\nwatch = [1]\n");
    assert_error(
        &e,
        2,
        "clusters.server",
        "expected a table [clusters.server], found a string",
    );
    assert_error(
        &e,
        4,
        "sinks.out",
        "expected a table [sinks.out], found an integer",
    );
    assert_error(
        &e,
        5,
        "sinks.watch",
        "expected a table [sinks.watch], found an array",
    );

    let e = errs(&with_watch_keys(
        "namespace = 1\nevents = \"ADDED\"\non_start = true\nwatch_timeout = 300\nlabel_selector = [\"a\"]",
    ));
    assert_error(
        &e,
        11,
        "watch[0].namespace",
        "expected a string, found an integer",
    );
    assert_error(
        &e,
        12,
        "watch[0].events",
        "expected an array, found a string",
    );
    assert_error(
        &e,
        13,
        "watch[0].on_start",
        "expected a string, found a boolean",
    );
    assert_error(
        &e,
        14,
        "watch[0].watch_timeout",
        "expected a string, found an integer",
    );
    assert_error(
        &e,
        15,
        "watch[0].label_selector",
        "expected a string, found an array",
    );

    let e = errs(&MINIMAL.replace(
        "server = \"https://127.0.0.1:6443\"",
        "server = \"https://127.0.0.1:6443\"\ninsecure_skip_tls_verify = \"no\"\ntoken_file = 1979-05-27",
    ));
    assert_error(
        &e,
        4,
        "clusters.local.insecure_skip_tls_verify",
        "expected a boolean (true or false), found a string",
    );
    assert_error(
        &e,
        5,
        "clusters.local.token_file",
        "expected a string, found a datetime",
    );

    let e = errs(&MINIMAL.replace("name = \"pods\"", "name = 1.5"));
    assert_error(&e, 6, "watch[0].name", "expected a string, found a float");
}

#[test]
fn watch_array_of_non_tables() {
    let text = MINIMAL.to_string() + "[daemon]\n";
    ok(&text);
    let e = errs("watch = [\"pods\", {}]\n");
    assert_error(
        &e,
        1,
        "watch[0]",
        "expected a table [[watch]] #1, found a string",
    );
    assert_error(
        &e,
        1,
        "watch[1].name",
        "missing required key `name` in [[watch]] #2",
    );
}

// ------------------------------------------------------------------ names and references

#[test]
fn names_are_checked() {
    let text = r#"
[clusters."my cluster"]
server = "https://k"
[sinks."a/b"]
type = "file"
path = "/x"
[[watch]]
name = "pods!"
cluster = "my cluster"
api_version = "v1"
resource = "pods"
sinks = ["a/b"]
"#;
    let e = errs(text);
    assert_error(
        &e,
        2,
        "clusters.\"my cluster\"",
        "invalid cluster name \"my cluster\"",
    );
    assert_error(&e, 4, "sinks.\"a/b\"", "invalid sink name \"a/b\"");
    assert_error(&e, 8, "watch[0].name", "invalid watch name \"pods!\"");
    // The references themselves are fine: no cascade of "not defined".
    assert_eq!(e.len(), 3, "{}", ConfigErrors(e.clone()));
}

#[test]
fn undefined_references_list_what_is_defined() {
    let text = r#"
[[watch]]
name = "a"
cluster = "local"
api_version = "v1"
resource = "pods"
sinks = ["out"]
"#;
    let e = errs(text);
    assert_error(
        &e,
        4,
        "watch[0].cluster",
        "cluster \"local\" is not defined (there is no [clusters.NAME] table)",
    );
    assert_error(
        &e,
        7,
        "watch[0].sinks[0]",
        "sink \"out\" is not defined (there is no [sinks.NAME] table)",
    );
}
