//! Whole-document tests: `Config::parse` and `Config::load`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::rand::Rng;

const EXAMPLE: &str = include_str!("../../config/kwatchd.toml");

const MINIMAL: &str = r#"
[clusters.local]
server = "https://127.0.0.1:6443"

[[watch]]
name = "pods"
cluster = "local"
api_version = "v1"
resource = "pods"
sinks = ["out"]

[sinks.out]
type = "file"
path = "/var/log/kwatchd/events.jsonl"
"#;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, Path::new("kwatchd.toml"))
}

fn ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

fn errs(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e.0,
    }
}

/// Asserts an error at `line` about `key` whose message contains `fragment`.
#[track_caller]
fn assert_error(errors: &[ConfigError], line: usize, key: &str, fragment: &str) {
    let found = errors
        .iter()
        .any(|e| e.line == Some(line) && e.key == key && e.message.contains(fragment));
    if !found {
        let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        panic!(
            "no error at line {line} for {key:?} containing {fragment:?}; got:\n{}",
            all.join("\n")
        );
    }
}

/// MINIMAL with `extra` appended to the `[[watch]]` table.
fn with_watch_keys(extra: &str) -> String {
    MINIMAL.replace(
        "sinks = [\"out\"]\n",
        &format!("sinks = [\"out\"]\n{extra}\n"),
    )
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap()
}

// ------------------------------------------------------------------ good

#[test]
fn minimal_config_gets_defaults() {
    let c = ok(MINIMAL);
    let expected = Config {
        source: cwd().join("kwatchd.toml"),
        daemon: DaemonConfig {
            log_level: log::LevelFilter::Info,
            max_line_bytes: 16 * 1024 * 1024,
            sink_queue_events: 4096,
            metrics_listen: None,
            log_format: LogFormat::Text,
            shutdown_timeout: Duration::from_secs(30),
            state_dir: PathBuf::from("/var/lib/kwatchd"),
        },
        clusters: BTreeMap::from([(
            "local".to_string(),
            ClusterConfig {
                name: "local".to_string(),
                server: ServerUrl {
                    scheme: Scheme::Https,
                    host: "127.0.0.1".to_string(),
                    port: 6443,
                    base_path: String::new(),
                },
                certificate_authority: None,
                insecure_skip_tls_verify: false,
                token_file: None,
                connect_timeout: Duration::from_secs(10),
                source: crate::kube::access::ClusterSource::Server,
                certificate_authority_data: None,
                tls_server_name: None,
                client_certificate: None,
                client_key: None,
                token: None,
                exec: None,
                namespace: None,
            },
        )]),
        watches: vec![WatchConfig {
            name: "pods".to_string(),
            cluster: "local".to_string(),
            target: WatchTarget::Resource {
                api_version: "v1".to_string(),
                resource: "pods".to_string(),
            },
            namespaces: vec![],
            exclude_namespaces: vec![],
            metadata_only: false,
            initial_list: InitialList::Auto,
            label_selector: None,
            field_selector: None,
            events: vec![EventType::Added, EventType::Modified, EventType::Deleted],
            on_start: OnStart::Added,
            sinks: vec!["out".to_string()],
            watch_timeout: Duration::from_secs(300),
        }],
        sinks: BTreeMap::from([(
            "out".to_string(),
            SinkConfig::File(FileSinkConfig {
                path: PathBuf::from("/var/log/kwatchd/events.jsonl"),
            }),
        )]),
    };
    assert_eq!(c, expected);
}

#[test]
fn every_key_set() {
    let text = r#"
[daemon]
log_level = "debug"
max_line_bytes = 1048576
sink_queue_events = 1

[clusters."prod.eu-1"]
server = "https://[fd00::1]:6443/k8s/"
certificate_authority = "/etc/kwatchd/ca.crt"
token_file = "token"
connect_timeout = "250ms"

[[watch]]
name = "web.deploys"
cluster = "prod.eu-1"
api_version = "apps/v1"
resource = "deployments"
namespace = "web"
label_selector = "app.kubernetes.io/name in (web, api),!canary"
field_selector = 'metadata.name!=a\,b'
events = ["DELETED", "ADDED"]
on_start = "skip"
sinks = ["b", "a"]
watch_timeout = "90s"

[sinks.a]
type = "file"
path = "./out/a.jsonl"

[sinks.b]
type = "file"
path = "/b.jsonl"
"#;
    let c = ok(text);
    assert_eq!(c.daemon.log_level, log::LevelFilter::Debug);
    assert_eq!(c.daemon.max_line_bytes, 1 << 20);
    assert_eq!(c.daemon.sink_queue_events, 1);
    let cluster = c.cluster("prod.eu-1").unwrap();
    assert_eq!(cluster.server.host, "fd00::1");
    assert_eq!(cluster.server.base_path, "/k8s");
    assert_eq!(cluster.server.host_header(), "[fd00::1]:6443");
    assert_eq!(
        cluster.certificate_authority.as_deref(),
        Some(Path::new("/etc/kwatchd/ca.crt"))
    );
    assert_eq!(cluster.token_file, Some(cwd().join("token")));
    assert_eq!(cluster.connect_timeout, Duration::from_millis(250));
    let w = c.watch("web.deploys").unwrap();
    assert_eq!(w.namespaces, vec!["web"]);
    assert_eq!(
        w.label_selector.as_deref(),
        Some("app.kubernetes.io/name in (web, api),!canary")
    );
    assert_eq!(w.field_selector.as_deref(), Some(r"metadata.name!=a\,b"));
    assert_eq!(w.events, vec![EventType::Added, EventType::Deleted]);
    assert!(w.wants(EventType::Deleted) && !w.wants(EventType::Modified));
    assert_eq!(w.on_start, OnStart::Skip);
    assert_eq!(w.sinks, vec!["b", "a"]);
    assert_eq!(w.watch_timeout, Duration::from_secs(90));
    assert_eq!(resource_of(w), ("apps/v1", "deployments"));
    assert_eq!(
        c.sink("a"),
        Some(&SinkConfig::File(FileSinkConfig {
            path: cwd().join("out/a.jsonl")
        }))
    );
}

#[test]
fn example_config_parses() {
    let c = Config::parse_with_vars(
        EXAMPLE,
        Path::new("config/kwatchd.toml"),
        &[("WEBHOOK_TOKEN", "example-token")],
    )
    .unwrap_or_else(|e| panic!("config/kwatchd.toml:\n{e}"));
    assert_eq!(
        c.daemon,
        DaemonConfig {
            metrics_listen: Some("127.0.0.1:9464".parse().unwrap()),
            ..DaemonConfig::default()
        }
    );
    assert_eq!(c.clusters.len(), 3);
    let lab = &c.clusters["lab"];
    assert_eq!(lab.tls_server_name.as_deref(), Some("kubernetes"));
    assert_eq!(
        lab.client_key,
        Some(PemSource::File(PathBuf::from(
            "/etc/kwatchd/lab-client.key"
        )))
    );
    assert_eq!(
        c.clusters["proxy"].server.to_string(),
        "http://localhost:8001"
    );
    assert_eq!(c.watches.len(), 2);
    let pods = &c.watches[0];
    assert_eq!(resource_of(pods), ("v1", "pods"));
    assert_eq!(pods.namespaces, vec!["default"]);
    assert_eq!(pods.label_selector.as_deref(), Some("app=web"));
    let deployments = &c.watches[1];
    assert!(deployments.namespaces.is_empty());
    assert_eq!(
        deployments.target,
        WatchTarget::Kind {
            name: "Deployment".into(),
            api_version: None
        }
    );
    assert_eq!(deployments.exclude_namespaces, vec!["kube-system"]);
    assert!(deployments.metadata_only);
    assert_eq!(deployments.initial_list, InitialList::Auto);
    assert_eq!(deployments.events, EventType::ALL.to_vec());
    assert_eq!(deployments.watch_timeout, DEFAULT_WATCH_TIMEOUT);
    assert_eq!(c.sinks["all-events"].type_name(), "file");
    assert_eq!(pods.sinks, vec!["all-events", "on-change", "notify"]);
    let SinkConfig::Exec(hook) = &c.sinks["on-change"] else {
        panic!("on-change is not an exec sink");
    };
    assert_eq!(hook.command, vec!["/usr/local/bin/on-change", "--verbose"]);
    assert_eq!(hook.delivery.max_concurrent, 4);
    assert_eq!(
        hook.delivery.on_failure,
        OnFailure::DeadLetter(PathBuf::from("/var/lib/kwatchd/dead-letter.jsonl"))
    );
    let SinkConfig::Webhook(notify) = &c.sinks["notify"] else {
        panic!("notify is not a webhook sink");
    };
    assert_eq!(notify.headers[0].value, "Bearer example-token");
    assert_eq!(notify.delivery.on_failure, OnFailure::Log);
    assert_eq!(c.sinks["console"], SinkConfig::Stdout);
    // Without the variable, the error names it.
    let e = Config::parse_with_vars(EXAMPLE, Path::new("config/kwatchd.toml"), &[]).unwrap_err();
    assert_eq!(e.len(), 1, "{e}");
    assert!(e.0[0].message.contains("WEBHOOK_TOKEN is not set"), "{e}");
}

#[test]
fn example_config_documents_every_key() {
    let keys = [
        "log_level",
        "max_line_bytes",
        "sink_queue_events",
        "metrics_listen",
        "log_format",
        "shutdown_timeout",
        "state_dir",
        "server",
        "certificate_authority",
        "insecure_skip_tls_verify",
        "token_file",
        "connect_timeout",
        "client_certificate",
        "client_key",
        "tls_server_name",
        "name",
        "cluster",
        "api_version",
        "resource",
        "kind",
        "namespace",
        "exclude_namespaces",
        "metadata_only",
        "initial_list",
        "label_selector",
        "field_selector",
        "events",
        "on_start",
        "sinks",
        "watch_timeout",
        "type",
        "path",
        "command",
        "timeout",
        "kill_grace",
        "kill_process_group",
        "max_concurrent",
        "retries",
        "batch_window",
        "batch_max",
        "working_dir",
        "env",
        "on_failure",
        "dead_letter",
        "queue_events",
        "url",
        "headers",
    ];
    for key in keys {
        assert!(
            EXAMPLE.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "{key} is not set in config/kwatchd.toml"
        );
    }
    // Loading reads these (a kubeconfig, the environment): shown commented.
    for key in ["kubeconfig", "context", "in_cluster"] {
        assert!(
            EXAMPLE
                .lines()
                .any(|l| l.starts_with(&format!("# {key} = "))),
            "{key} is not documented in config/kwatchd.toml"
        );
    }
}

#[test]
fn inline_tables_and_inline_watch_array() {
    let text = r#"
clusters = { local = { server = "http://127.0.0.1:8001" } }
sinks.out = { type = "file", path = "/x.jsonl" }
watch = [
  { name = "a", cluster = "local", api_version = "v1", resource = "pods", sinks = ["out"] },
  { name = "b", cluster = "local", api_version = "v1", resource = "nodes", sinks = ["out"] },
]
"#;
    let c = ok(text);
    assert_eq!(c.watches.len(), 2);
    assert_eq!(resource_of(&c.watches[1]).1, "nodes");
    assert_eq!(c.clusters["local"].server.scheme, Scheme::Http);
}

#[test]
fn reparse_is_equal_and_event_order_does_not_matter() {
    let a = ok(&with_watch_keys(r#"events = ["DELETED", "ADDED"]"#));
    let b = ok(&with_watch_keys(r#"events = ["ADDED", "DELETED"]"#));
    assert_eq!(a, b);
    assert_eq!(ok(MINIMAL), ok(MINIMAL));
    assert_ne!(ok(MINIMAL), a);
}

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
    assert_error(&e, 3, "daemon.loglevel", "unknown key `loglevel` in [daemon]; expected one of: log_level, max_line_bytes, sink_queue_events, metrics_listen, log_format, shutdown_timeout, state_dir");
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
        "unknown key `selector` in [[watch]] #2; expected one of: name, cluster,",
    );
    assert_error(
        &e,
        23,
        "sinks.out.format",
        "unknown key `format` in [sinks.out]; expected one of: type, path",
    );
    assert_error(&e, 24, "watches", "unknown key `watches` at the top level");
    assert_eq!(e.len(), 6);
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
    for key in ["name", "cluster", "kind", "sinks"] {
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

// ------------------------------------------------------------------ [daemon] values

#[test]
fn daemon_values() {
    let daemon = |body: &str| format!("[daemon]\n{body}\n{MINIMAL}");
    assert_eq!(
        ok(&daemon("max_line_bytes = \"1GiB\""))
            .daemon
            .max_line_bytes,
        1 << 30
    );
    assert_eq!(
        ok(&daemon("max_line_bytes = \"64 KiB\""))
            .daemon
            .max_line_bytes,
        64 << 10
    );
    assert_eq!(
        ok(&daemon("max_line_bytes = 1024")).daemon.max_line_bytes,
        1024
    );
    assert_eq!(
        ok(&daemon("log_level = \"trace\"")).daemon.log_level,
        log::LevelFilter::Trace
    );
    let d = ok(&daemon(
        "metrics_listen = \"[::1]:9464\"\nlog_format = \"json\"\nshutdown_timeout = \"0s\"",
    ))
    .daemon;
    assert_eq!(d.metrics_listen, Some("[::1]:9464".parse().unwrap()));
    assert_eq!(d.log_format, LogFormat::Json);
    assert_eq!(d.shutdown_timeout, Duration::ZERO);
    assert_eq!(
        ok(&daemon("metrics_listen = \"127.0.0.1:0\""))
            .daemon
            .metrics_listen,
        Some("127.0.0.1:0".parse().unwrap())
    );
    assert_eq!(
        ok(&daemon("sink_queue_events = 100000"))
            .daemon
            .sink_queue_events,
        100000
    );
    assert_eq!(
        ok(&daemon("state_dir = \"state\"")).daemon.state_dir,
        cwd().join("state"),
        "relative state_dir is resolved against the current directory"
    );
    let cases = [
        ("max_line_bytes = 1023", "out of range"),
        ("max_line_bytes = \"2GiB\"", "out of range"),
        ("max_line_bytes = -1", "negative"),
        (
            "max_line_bytes = 1.5",
            "expected an integer number of bytes or a size string",
        ),
        ("max_line_bytes = \"lots\"", "invalid size"),
        ("max_line_bytes = \"16\"", "invalid size unit"),
        (
            "max_line_bytes = \"99999999999999999999999GiB\"",
            "too large",
        ),
        ("sink_queue_events = 0", "at least 1"),
        ("sink_queue_events = -5", "at least 1"),
        (
            "sink_queue_events = \"4096\"",
            "expected an integer, found a string",
        ),
        ("log_level = \"Info\"", "invalid log level"),
        ("log_level = 3", "expected a string"),
        (
            "metrics_listen = \"localhost:9464\"",
            "host names are not accepted",
        ),
        ("metrics_listen = \"127.0.0.1\"", "expected IP:PORT"),
        (
            "metrics_listen = \"127.0.0.1:99999\"",
            "invalid listen address",
        ),
        ("metrics_listen = 9464", "expected a string"),
        ("log_format = \"JSON\"", "expected \"text\" or \"json\""),
        ("shutdown_timeout = \"2h\"", "too long"),
        ("shutdown_timeout = 30", "expected a string"),
    ];
    for (body, fragment) in cases {
        let key = format!("daemon.{}", body.split(' ').next().unwrap());
        assert_error(&errs(&daemon(body)), 2, &key, fragment);
    }
}

// ------------------------------------------------------------------ [clusters] values

fn cluster_errors(body: &str) -> Vec<ConfigError> {
    errs(&MINIMAL.replace("server = \"https://127.0.0.1:6443\"", body))
}

#[test]
fn server_urls() {
    let cases = [
        ("127.0.0.1:6443", "missing scheme"),
        ("ftp://k.example", "unsupported scheme \"ftp\""),
        ("https://admin:pw@k.example", "user info"),
        ("https://k.example/?timeout=1", "query"),
        ("https://k.example:99999", "port"),
        ("https://k.example:", "port"),
        ("http://k.example:8080", "only allowed for loopback hosts"),
        ("http://10.0.0.1", "only allowed for loopback hosts"),
        ("http://[fd00::1]", "only allowed for loopback hosts"),
        ("https://", "host is missing"),
    ];
    for (url, fragment) in cases {
        let e = cluster_errors(&format!("server = {url:?}"));
        assert_error(&e, 3, "clusters.local.server", fragment);
    }
    for url in [
        "http://127.0.0.1:8001",
        "http://localhost",
        "http://[::1]:8080",
        "https://k.example",
    ] {
        ok(&MINIMAL.replace("https://127.0.0.1:6443", url));
    }
}

#[test]
fn cluster_values() {
    let e = cluster_errors(
        "server = \"https://k\"\ncertificate_authority = \"/ca.crt\"\ninsecure_skip_tls_verify = true",
    );
    assert_error(
        &e,
        5,
        "clusters.local.insecure_skip_tls_verify",
        "conflicts with certificate_authority",
    );
    let c = ok(&MINIMAL.replace(
        "server = \"https://127.0.0.1:6443\"",
        "server = \"https://k\"\ninsecure_skip_tls_verify = true",
    ));
    assert!(c.clusters["local"].insecure_skip_tls_verify);
    let cases = [
        ("connect_timeout = \"10\"", "invalid duration"),
        ("connect_timeout = \"50ms\"", "too short"),
        ("connect_timeout = \"1h\"", "too long"),
        ("token_file = \"\"", "must not be empty"),
        ("certificate_authority = \"~/ca.crt\"", "not expanded"),
    ];
    for (body, fragment) in cases {
        let e = cluster_errors(&format!("server = \"https://k\"\n{body}"));
        let key = format!("clusters.local.{}", body.split(' ').next().unwrap());
        assert_error(&e, 4, &key, fragment);
    }
}

#[test]
fn relative_paths_are_resolved_against_the_working_directory() {
    let c = ok(&MINIMAL
        .replace("/var/log/kwatchd/events.jsonl", "logs/./events.jsonl")
        .replace(
            "server = \"https://127.0.0.1:6443\"",
            "server = \"https://k\"\ncertificate_authority = \"ca.crt\"",
        ));
    let cwd = cwd();
    assert_eq!(
        c.clusters["local"].certificate_authority,
        Some(cwd.join("ca.crt"))
    );
    assert_eq!(
        c.sinks["out"],
        SinkConfig::File(FileSinkConfig {
            path: cwd.join("logs/events.jsonl")
        })
    );
    assert!(c.source.is_absolute());
}

// ------------------------------------------------------------------ [[watch]] values

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

// ------------------------------------------------------------------ [sinks] values

#[test]
fn sink_types() {
    let e = errs(&MINIMAL.replace("type = \"file\"", "type = \"kafka\""));
    assert_error(
        &e,
        13,
        "sinks.out.type",
        "unknown sink type \"kafka\"; expected one of: file",
    );
    let e = errs(&MINIMAL.replace("type = \"file\"", "type = 1"));
    assert_error(&e, 13, "sinks.out.type", "expected a string");
    let e = errs(&MINIMAL.replace("path = \"/var/log/kwatchd/events.jsonl\"", "path = \"\""));
    assert_error(&e, 14, "sinks.out.path", "must not be empty");
}

// ------------------------------------------------------------------ load

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// MINIMAL with the cluster's CA and token set to `ca` and `token`.
    fn config(&self, ca: &Path, token: &Path) -> PathBuf {
        let text = MINIMAL.replace(
            "server = \"https://127.0.0.1:6443\"",
            &format!(
                "server = \"https://127.0.0.1:6443\"\ncertificate_authority = {:?}\ntoken_file = {:?}",
                ca.display().to_string(),
                token.display().to_string()
            ),
        );
        self.write("kwatchd.toml", &text)
    }
}

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn load_reads_and_checks_files() {
    let files = Files::new();
    let ca = files.write("ca.crt", PEM);
    let token = files.write("token", "secret\n");
    let path = files.config(&ca, &token);
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.source, path);
    assert_eq!(c.clusters["local"].certificate_authority, Some(ca));
    assert_eq!(c.clusters["local"].token_file, Some(token));
}

#[test]
fn load_reports_missing_and_unusable_files() {
    let files = Files::new();
    let missing_ca = files.dir.path().join("nope.crt");
    let missing_token = files.dir.path().join("nope-token");
    let path = files.config(&missing_ca, &missing_token);
    let e = Config::load(&path).unwrap_err().0;
    assert_error(&e, 4, "clusters.local.certificate_authority", "cannot read");
    assert_error(&e, 5, "clusters.local.token_file", "cannot read");
    assert!(e[0].message.contains("nope.crt"), "{}", e[0]);
    assert_eq!(e[0].file, path);

    let not_pem = files.write("junk.crt", "hello");
    let path = files.config(&not_pem, files.dir.path());
    let e = Config::load(&path).unwrap_err().0;
    assert_error(
        &e,
        4,
        "clusters.local.certificate_authority",
        "holds no PEM certificate",
    );
    assert_error(&e, 5, "clusters.local.token_file", "is not a regular file");
    assert_eq!(e.len(), 2);

    // `parse` does not look at the files.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(Config::parse(&text, &path).is_ok());
}

#[test]
fn load_of_unreadable_config() {
    let files = Files::new();
    let path = files.dir.path().join("absent.toml");
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e.0[0].file, path);
    assert_eq!(e.0[0].line, None);
    assert!(
        e.0[0]
            .message
            .contains("cannot read the configuration file"),
        "{e}"
    );
    let e = Config::load(files.dir.path()).unwrap_err();
    assert!(e.0[0].message.contains("cannot read"), "{e}");
    let bad_utf8 = files.dir.path().join("latin1.toml");
    std::fs::write(&bad_utf8, b"[daemon]\nlog_level = \"\xe9\"\n").unwrap();
    assert!(Config::load(&bad_utf8).is_err());
}

// ------------------------------------------------------------------ robustness

#[test]
fn garbage_and_truncated_input_never_panics() {
    let source = Path::new("fuzz.toml");
    let mut inputs: Vec<String> = Vec::new();
    // Every truncation of the example and of a broken config, except
    // inside comment lines (the same as cutting at the comment's start;
    // skipping them keeps this quadratic loop fast as the example grows).
    for text in [EXAMPLE, MINIMAL] {
        let mut line_start = 0;
        for (i, c) in text.char_indices() {
            let in_comment = text[line_start..].starts_with('#') && i > line_start;
            if !in_comment {
                inputs.push(text[..i].to_string());
            }
            if c == '\n' {
                line_start = i + 1;
            }
        }
    }
    // Random byte-level mutations of the example, with TOML-significant bytes.
    let alphabet = b"[]{}=,.\"'\\\n #:/-_aZ09\x00\xff";
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let mut bytes = EXAMPLE.as_bytes().to_vec();
        for _ in 0..1 + rng.index(8) {
            let at = rng.index(bytes.len());
            let b = alphabet[rng.index(alphabet.len())];
            match rng.index(3) {
                0 => bytes[at] = b,
                1 => bytes.insert(at, b),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        inputs.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    // Pure noise.
    for _ in 0..500 {
        let len = rng.index(200);
        let s: String = (0..len)
            .map(|_| alphabet[rng.index(alphabet.len())] as char)
            .collect();
        inputs.push(s);
    }
    inputs.push("[".repeat(10_000));
    inputs.push("a = ".to_string() + &"[".repeat(10_000));
    for input in &inputs {
        if let Err(errors) = Config::parse(input, source) {
            assert!(!errors.is_empty());
            let _ = errors.to_string();
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Arbitrary text through every parser: errors are fine, panics are not.
    #[test]
    fn arbitrary_text_never_panics(s in proptest::prelude::any::<String>()) {
        let _ = Config::parse(&s, Path::new("p.toml"));
        let _ = ServerUrl::parse(&s);
        let _ = super::selector::parse_label_selector(&s);
        let _ = super::selector::parse_field_selector(&s);
        let _ = super::syntax::parse_size(&s);
        let _ = super::syntax::check_api_version(&s);
        let _ = super::syntax::resolve_path(&s, Some(Path::new("/base")));
    }

    /// Arbitrary values in every key of a valid document never panic.
    #[test]
    fn arbitrary_values_never_panic(v in "[ -~]{0,40}") {
        for key in ["server", "connect_timeout", "token_file"] {
            let text = MINIMAL.replace(
                "server = \"https://127.0.0.1:6443\"",
                &format!("server = \"https://k\"\n{key} = {v:?}"),
            );
            let _ = Config::parse(&text, Path::new("p.toml"));
        }
        let _ = Config::parse(&with_watch_keys(&format!("label_selector = {v:?}")), Path::new("p.toml"));
        let _ = Config::parse(&with_watch_keys(&format!("field_selector = {v:?}")), Path::new("p.toml"));
        let _ = Config::parse(&with_watch_keys(&format!("watch_timeout = {v:?}")), Path::new("p.toml"));
        let _ = Config::parse(&format!("[daemon]\nmax_line_bytes = {v:?}\n{MINIMAL}"), Path::new("p.toml"));
        let p = Path::new("p.toml");
        let _ = Config::parse(&with_sink(&format!("type = \"webhook\"\nurl = {v:?}")), p);
        let _ = Config::parse_with_vars(
            &with_sink(&format!("type = \"webhook\"\nurl = \"https://h\"\nheaders = {{ X = {v:?} }}")),
            p,
            &[("A", "1")],
        );
        let _ = Config::parse(
            &with_sink(&format!("type = \"exec\"\ncommand = [{v:?}, {v:?}]\nenv = {{ A = {v:?} }}\nbatch_window = {v:?}")),
            p,
        );
        let _ = super::url::WebhookUrl::parse(&v);
    }
}

// ------------------------------------------------------------------ exec, webhook, stdout sinks

/// MINIMAL with the body of `[sinks.out]` (line 12) replaced: the first
/// line of `body` is line 13.
fn with_sink(body: &str) -> String {
    MINIMAL.replace(
        "type = \"file\"\npath = \"/var/log/kwatchd/events.jsonl\"\n",
        &format!("{body}\n"),
    )
}

fn sink_of(text: &str) -> SinkConfig {
    ok(text).sinks["out"].clone()
}

fn exec_of(text: &str) -> ExecSinkConfig {
    match sink_of(text) {
        SinkConfig::Exec(e) => e,
        other => panic!("not exec: {other:?}"),
    }
}

fn webhook_of(text: &str, vars: &[(&str, &str)]) -> WebhookSinkConfig {
    match Config::parse_with_vars(text, Path::new("kwatchd.toml"), vars) {
        Ok(c) => match &c.sinks["out"] {
            SinkConfig::Webhook(w) => w.clone(),
            other => panic!("not webhook: {other:?}"),
        },
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn webhook_errs(text: &str, vars: &[(&str, &str)]) -> Vec<ConfigError> {
    match Config::parse_with_vars(text, Path::new("kwatchd.toml"), vars) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e.0,
    }
}

#[test]
fn exec_sink_defaults() {
    let e = exec_of(&with_sink(
        "type = \"exec\"\ncommand = [\"/usr/local/bin/on-change\"]",
    ));
    assert_eq!(
        e,
        ExecSinkConfig {
            command: vec!["/usr/local/bin/on-change".to_string()],
            timeout: Duration::from_secs(30),
            kill_grace: Duration::from_secs(5),
            kill_process_group: true,
            working_dir: None,
            env: BTreeMap::new(),
            delivery: DeliveryConfig {
                max_concurrent: 1,
                retries: 3,
                batch_window: Duration::ZERO,
                batch_max: 100,
                on_failure: OnFailure::Log,
                queue_events: None,
            },
        }
    );
    assert_eq!(e.delivery.queue_events_or(4096), 4096);
}

#[test]
fn exec_sink_every_key() {
    let e = exec_of(&with_sink(
        r#"type = "exec"
command = ["hooks/on-change", "--verbose", ""]
timeout = "2m"
kill_grace = "0s"
kill_process_group = false
max_concurrent = 4
retries = 0
batch_window = "250ms"
batch_max = 1
working_dir = "hooks/work/"
env = { CLUSTER_NAME = "prod", PATH = "/opt/bin:/usr/bin", _x = "" }
on_failure = "dead_letter"
dead_letter = "dead.jsonl"
queue_events = 10"#,
    ));
    let cwd = cwd();
    assert_eq!(
        e.command,
        vec![
            cwd.join("hooks/on-change").display().to_string(),
            "--verbose".to_string(),
            String::new()
        ]
    );
    assert_eq!(e.timeout, Duration::from_secs(120));
    assert_eq!(e.kill_grace, Duration::ZERO);
    assert!(!e.kill_process_group);
    assert_eq!(e.working_dir, Some(cwd.join("hooks/work")));
    assert_eq!(
        e.env,
        BTreeMap::from([
            ("CLUSTER_NAME".to_string(), "prod".to_string()),
            ("PATH".to_string(), "/opt/bin:/usr/bin".to_string()),
            ("_x".to_string(), String::new()),
        ])
    );
    assert_eq!(
        e.delivery,
        DeliveryConfig {
            max_concurrent: 4,
            retries: 0,
            batch_window: Duration::from_millis(250),
            batch_max: 1,
            on_failure: OnFailure::DeadLetter(cwd.join("dead.jsonl")),
            queue_events: Some(10),
        }
    );
    assert_eq!(e.delivery.queue_events_or(4096), 10);
    // A bare name stays bare (looked up in PATH when spawned); an [env]
    // sub-table works like the inline one.
    let e = exec_of(&with_sink(
        "type = \"exec\"\ncommand = [\"logger\", \"-t\", \"kwatchd\"]\n[sinks.out.env]\nA = \"1\"",
    ));
    assert_eq!(e.command[0], "logger");
    assert_eq!(e.env["A"], "1");
}

#[test]
fn exec_sink_errors_name_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("command = []", "command", "must not be empty"),
        (
            "command = \"/bin/hook --x\"",
            "command",
            "expected an array, found a string",
        ),
        (
            "command = [\"/bin/on-change --verbose\", 1]",
            "command[1]",
            "expected a string, found an integer",
        ),
        (
            "command = [\"on-change --verbose\"]",
            "command[0]",
            "argv array, not a shell string",
        ),
        ("command = [\"\"]", "command[0]", "must not be empty"),
        ("command = [\"~/hook\"]", "command[0]", "not expanded"),
        ("command = [\"/bin/x\", \"a\\u0000b\"]", "command[1]", "NUL"),
        (
            "command = [\"/bin/x\"]\ntimeout = \"10ms\"",
            "timeout",
            "too short",
        ),
        (
            "command = [\"/bin/x\"]\ntimeout = \"2d\"",
            "timeout",
            "too long",
        ),
        (
            "command = [\"/bin/x\"]\ntimeout = 30",
            "timeout",
            "expected a string, found an integer",
        ),
        (
            "command = [\"/bin/x\"]\nkill_grace = \"11m\"",
            "kill_grace",
            "too long",
        ),
        (
            "command = [\"/bin/x\"]\nmax_concurrent = 0",
            "max_concurrent",
            "must be from 1 to 1024, got 0",
        ),
        (
            "command = [\"/bin/x\"]\nmax_concurrent = \"4\"",
            "max_concurrent",
            "expected an integer",
        ),
        (
            "command = [\"/bin/x\"]\nretries = -1",
            "retries",
            "must be from 0 to 100, got -1",
        ),
        (
            "command = [\"/bin/x\"]\nretries = 101",
            "retries",
            "must be from 0 to 100",
        ),
        (
            "command = [\"/bin/x\"]\nbatch_window = \"2h\"",
            "batch_window",
            "too long",
        ),
        (
            "command = [\"/bin/x\"]\nbatch_max = 0",
            "batch_max",
            "must be from 1 to 100000",
        ),
        (
            "command = [\"/bin/x\"]\nqueue_events = 0",
            "queue_events",
            "must be at least 1",
        ),
        (
            "command = [\"/bin/x\"]\nworking_dir = \"\"",
            "working_dir",
            "must not be empty",
        ),
        (
            "command = [\"/bin/x\"]\nenv = [\"A=1\"]",
            "env",
            "expected a table { NAME = \"value\", ... }, found an array",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { KWATCHD_EVENT = \"x\" }",
            "env.KWATCHD_EVENT",
            "reserved",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { kwatchd_uid = \"x\" }",
            "env.kwatchd_uid",
            "reserved",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { \"MY-VAR\" = \"x\" }",
            "env.MY-VAR",
            "invalid environment variable name",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { 1X = \"x\" }",
            "env.1X",
            "not starting with a digit",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { A = 1 }",
            "env.A",
            "expected a string, found an integer",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { A = \"a\\u0000\" }",
            "env.A",
            "NUL",
        ),
        (
            "command = [\"/bin/x\"]\nshell = true",
            "shell",
            "unknown key `shell` in [sinks.out]; expected one of: type, command,",
        ),
        (
            "command = [\"/bin/x\"]\nurl = \"https://h\"",
            "url",
            "unknown key `url`",
        ),
    ];
    for (body, key, fragment) in cases {
        let text = with_sink(&format!("type = \"exec\"\n{body}"));
        let line = 13 + body.lines().count();
        let e = errs(&text);
        assert_error(&e, line, &format!("sinks.out.{key}"), fragment);
    }
    let e = errs(&with_sink("type = \"exec\""));
    assert_error(
        &e,
        12,
        "sinks.out.command",
        "missing required key `command` in [sinks.out]",
    );
}

#[test]
fn on_failure_and_dead_letter_go_together() {
    let text = |body: &str| with_sink(&format!("type = \"exec\"\ncommand = [\"/bin/x\"]\n{body}"));
    assert_eq!(
        exec_of(&text("on_failure = \"log\"")).delivery.on_failure,
        OnFailure::Log
    );
    assert_eq!(
        exec_of(&text(
            "on_failure = \"dead_letter\"\ndead_letter = \"/var/lib/k/dl.jsonl\""
        ))
        .delivery
        .on_failure,
        OnFailure::DeadLetter(PathBuf::from("/var/lib/k/dl.jsonl"))
    );
    let e = errs(&text("on_failure = \"dead_letter\""));
    assert_error(&e, 15, "sinks.out.dead_letter", "missing key `dead_letter`");
    let e = errs(&text("dead_letter = \"/x.jsonl\""));
    assert_error(
        &e,
        15,
        "sinks.out.dead_letter",
        "on_failure is \"log\" (the default), so it would never be written",
    );
    let e = errs(&text("on_failure = \"log\"\ndead_letter = \"/x.jsonl\""));
    assert_error(&e, 16, "sinks.out.dead_letter", "on_failure is \"log\", so");
    let e = errs(&text("on_failure = \"retry\""));
    assert_error(
        &e,
        15,
        "sinks.out.on_failure",
        "expected \"log\" or \"dead_letter\"",
    );
    let e = errs(&text("on_failure = \"dead_letter\"\ndead_letter = \"\""));
    assert_error(&e, 16, "sinks.out.dead_letter", "must not be empty");
    assert_eq!(e.len(), 1, "no second error about the missing file");
}

#[test]
fn webhook_sink_defaults_and_every_key() {
    let w = webhook_of(
        &with_sink("type = \"webhook\"\nurl = \"https://hooks.example.com\""),
        &[],
    );
    assert_eq!(
        w,
        WebhookSinkConfig {
            url: WebhookUrl::parse("https://hooks.example.com/").unwrap(),
            headers: vec![],
            certificate_authority: None,
            timeout: Duration::from_secs(10),
            delivery: DeliveryConfig {
                max_concurrent: 8,
                retries: 5,
                batch_window: Duration::ZERO,
                batch_max: 100,
                on_failure: OnFailure::Log,
                queue_events: None,
            },
        }
    );
    let w = webhook_of(
        &with_sink(
            r#"type = "webhook"
url = "https://hooks.example.com:8443/kwatchd/?team=web"
headers = { Authorization = "Bearer ${WEBHOOK_TOKEN}", X-Cost = "$$5", X-Env = "${CLUSTER}-${CLUSTER}" }
certificate_authority = "ca.pem"
timeout = "30s"
retries = 0
max_concurrent = 1
batch_window = "5s"
batch_max = 500
on_failure = "dead_letter"
dead_letter = "/var/lib/kwatchd/webhook-dead.jsonl"
queue_events = 1000"#,
        ),
        &[("WEBHOOK_TOKEN", "t0k3n"), ("CLUSTER", "prod")],
    );
    assert_eq!(w.url.origin.host, "hooks.example.com");
    assert_eq!(w.url.origin.port, 8443);
    assert_eq!(w.url.target, "/kwatchd/?team=web");
    assert_eq!(
        w.headers,
        vec![
            HttpHeader {
                name: "Authorization".into(),
                value: "Bearer t0k3n".into()
            },
            HttpHeader {
                name: "X-Cost".into(),
                value: "$5".into()
            },
            HttpHeader {
                name: "X-Env".into(),
                value: "prod-prod".into()
            },
        ]
    );
    assert!(!format!("{w:?}").contains("t0k3n"), "Debug leaks the token");
    assert_eq!(w.certificate_authority, Some(cwd().join("ca.pem")));
    assert_eq!(w.timeout, Duration::from_secs(30));
    assert_eq!(
        w.delivery,
        DeliveryConfig {
            max_concurrent: 1,
            retries: 0,
            batch_window: Duration::from_secs(5),
            batch_max: 500,
            on_failure: OnFailure::DeadLetter(PathBuf::from("/var/lib/kwatchd/webhook-dead.jsonl")),
            queue_events: Some(1000),
        }
    );
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost/x?y=1",
        "http://[::1]/",
    ] {
        let w = webhook_of(
            &with_sink(&format!("type = \"webhook\"\nurl = {url:?}")),
            &[],
        );
        assert!(w.url.is_loopback(), "{url}");
    }
}

#[test]
fn webhook_sink_errors_name_line_and_key() {
    let vars = [("TOKEN", "t"), ("MULTI", "a\nb")];
    let cases: &[(&str, &str, &str)] = &[
        ("url = \"hooks.example.com\"", "url", "missing scheme"),
        ("url = \"ftp://h/x\"", "url", "unsupported scheme"),
        (
            "url = \"http://hooks.example.com/x\"",
            "url",
            "only allowed for loopback hosts",
        ),
        ("url = \"http://10.1.2.3/x\"", "url", "travel in clear"),
        (
            "url = \"https://u:p@h/x\"",
            "url",
            "send credentials in `headers`",
        ),
        ("url = \"https://h/x#top\"", "url", "fragment"),
        ("url = \"https://h/a b\"", "url", "percent-encode"),
        (
            "url = \"https://h\"\nheaders = \"Authorization: x\"",
            "headers",
            "expected a table { Header-Name = \"value\", ... }, found a string",
        ),
        (
            "url = \"https://h\"\nheaders = { Authorization = \"Bearer ${NOPE}\" }",
            "headers.Authorization",
            "environment variable NOPE is not set",
        ),
        (
            "url = \"https://h\"\nheaders = { X = \"${TOKEN\" }",
            "headers.X",
            "unterminated ${",
        ),
        (
            "url = \"https://h\"\nheaders = { X = \"${MULTI}\" }",
            "headers.X",
            "${MULTI} contains a line break",
        ),
        (
            "url = \"https://h\"\nheaders = { X = \"a\\r\\nEvil: 1\" }",
            "headers.X",
            "must not contain a line break",
        ),
        (
            "url = \"https://h\"\nheaders = { X = \"a\\u0001\" }",
            "headers.X",
            "control character",
        ),
        (
            "url = \"https://h\"\nheaders = { X = 1 }",
            "headers.X",
            "expected a string, found an integer",
        ),
        (
            "url = \"https://h\"\nheaders = { host = \"evil\" }",
            "headers.host",
            "header Host is set by kwatchd",
        ),
        (
            "url = \"https://h\"\nheaders = { Content-Length = \"1\" }",
            "headers.Content-Length",
            "cannot be configured",
        ),
        (
            "url = \"https://h\"\nheaders = { transfer-encoding = \"x\" }",
            "headers.transfer-encoding",
            "cannot be configured",
        ),
        (
            "url = \"https://h\"\nheaders = { Connection = \"close\" }",
            "headers.Connection",
            "cannot be configured",
        ),
        (
            "url = \"https://h\"\nheaders = { \"X Y\" = \"1\" }",
            "headers.\"X Y\"",
            "invalid header name",
        ),
        (
            "url = \"https://h\"\nheaders = { \"X:Y\" = \"1\" }",
            "headers.\"X:Y\"",
            "invalid header name",
        ),
        (
            "url = \"https://h\"\nheaders = { X-A = \"1\", x-a = \"2\" }",
            "headers.x-a",
            "duplicate header \"x-a\"",
        ),
        (
            "url = \"http://127.0.0.1/\"\ncertificate_authority = \"/ca.pem\"",
            "certificate_authority",
            "the url is http://",
        ),
        (
            "url = \"https://h\"\ncertificate_authority = \"\"",
            "certificate_authority",
            "must not be empty",
        ),
        (
            "url = \"https://h\"\ntimeout = \"50ms\"",
            "timeout",
            "too short",
        ),
        (
            "url = \"https://h\"\ntimeout = \"11m\"",
            "timeout",
            "too long",
        ),
        (
            "url = \"https://h\"\nmax_concurrent = 2000",
            "max_concurrent",
            "must be from 1 to 1024",
        ),
        (
            "url = \"https://h\"\nretries = 1.5",
            "retries",
            "expected an integer, found a float",
        ),
        (
            "url = \"https://h\"\nbatch_max = 100001",
            "batch_max",
            "must be from 1 to 100000",
        ),
        (
            "url = \"https://h\"\non_failure = \"dead_letter\"",
            "dead_letter",
            "missing key `dead_letter`",
        ),
        (
            "url = \"https://h\"\ncommand = [\"/x\"]",
            "command",
            "unknown key `command`",
        ),
    ];
    for (body, key, fragment) in cases {
        let text = with_sink(&format!("type = \"webhook\"\n{body}"));
        let line = 13 + body.lines().count();
        let e = webhook_errs(&text, &vars);
        assert_error(&e, line, &format!("sinks.out.{key}"), fragment);
        for error in &e {
            assert!(
                !error.message.contains("a\nb"),
                "a variable's value leaked: {error}"
            );
        }
    }
    let e = webhook_errs(&with_sink("type = \"webhook\""), &[]);
    assert_error(&e, 12, "sinks.out.url", "missing required key `url`");
}

#[test]
fn stdout_sink_takes_only_its_type() {
    assert_eq!(sink_of(&with_sink("type = \"stdout\"")), SinkConfig::Stdout);
    assert_eq!(SinkConfig::Stdout.type_name(), "stdout");
    assert_eq!(SinkConfig::Stdout.delivery(), None);
    let e = errs(&with_sink("type = \"stdout\"\npath = \"/x\""));
    assert_error(
        &e,
        14,
        "sinks.out.path",
        "unknown key `path` in [sinks.out]; expected one of: type",
    );
    let e = errs(&with_sink("type = \"kafka\""));
    assert_error(
        &e,
        13,
        "sinks.out.type",
        "expected one of: file, exec, webhook, stdout",
    );
}

#[test]
fn load_checks_hook_programs_directories_and_webhook_ca() {
    use std::os::unix::fs::PermissionsExt;
    let files = Files::new();
    let hook = files.write("hook.sh", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let not_exec = files.write("plain.sh", "#!/bin/sh\n");
    let ca = files.write("ca.pem", PEM);
    let junk = files.write("junk.pem", "x");
    let dir = files.dir.path().display().to_string();
    let sinks = format!(
        r#"
[sinks.good]
type = "exec"
command = [{hook:?}]
working_dir = {dir:?}

[sinks.bare]
type = "exec"
command = ["sh", "-c", "true"]

[sinks.hooks]
type = "webhook"
url = "https://h/"
certificate_authority = {ca:?}
"#,
        hook = hook.display().to_string(),
        ca = ca.display().to_string(),
    );
    let path = files.write("good.toml", &(MINIMAL.to_string() + &sinks));
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sinks.len(), 4);

    let bad = format!(
        r#"
[sinks.a]
type = "exec"
command = [{not_exec:?}]
working_dir = "{dir}/absent"

[sinks.b]
type = "exec"
command = ["no-such-program-kwatchd-test"]
on_failure = "dead_letter"
dead_letter = {dir:?}

[sinks.c]
type = "exec"
command = ["{dir}/absent hook --verbose"]

[sinks.d]
type = "exec"
command = [{dir:?}]

[sinks.e]
type = "webhook"
url = "https://h/"
certificate_authority = {junk:?}
"#,
        not_exec = not_exec.display().to_string(),
        junk = junk.display().to_string(),
    );
    let path = files.write("bad.toml", &(MINIMAL.to_string() + &bad));
    let e = Config::load(&path).unwrap_err().0;
    let base = MINIMAL.lines().count();
    assert_error(
        &e,
        base + 4,
        "sinks.a.command[0]",
        "is not executable (chmod +x it",
    );
    assert_error(
        &e,
        base + 5,
        "sinks.a.working_dir",
        "is not an existing directory",
    );
    assert_error(
        &e,
        base + 9,
        "sinks.b.command[0]",
        "not an executable file in any directory of PATH",
    );
    assert_error(&e, base + 11, "sinks.b.dead_letter", "is a directory");
    assert_error(&e, base + 15, "sinks.c.command[0]", "argv array");
    assert_error(&e, base + 19, "sinks.d.command[0]", "is not a regular file");
    assert_error(
        &e,
        base + 24,
        "sinks.e.certificate_authority",
        "holds no PEM certificate",
    );
    assert_eq!(e.len(), 7, "{}", ConfigErrors(e.clone()));
    // `parse` does not look at the files.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(Config::parse(&text, &path).is_ok());
}

/// `(api_version, resource)` of a watch naming its resource directly.
fn resource_of(w: &WatchConfig) -> (&str, &str) {
    match &w.target {
        WatchTarget::Resource {
            api_version,
            resource,
        } => (api_version, resource),
        WatchTarget::Kind { name, .. } => panic!("watch {} names kind {name}", w.name),
    }
}

/// MINIMAL with the watch's `api_version` and `resource` lines replaced.
fn with_target_keys(keys: &str) -> String {
    MINIMAL.replace("api_version = \"v1\"\nresource = \"pods\"\n", keys)
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

// ------------------------------------------------------------------ cluster sources

fn cluster_doc(cluster: &str) -> String {
    format!(
        "[clusters.c]\n{cluster}\n\n[[watch]]\nname = \"w\"\ncluster = \"c\"\napi_version = \"v1\"\nresource = \"pods\"\nsinks = [\"s\"]\n\n[sinks.s]\ntype = \"stdout\"\n"
    )
}

#[test]
fn in_cluster_reads_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("namespace"), "ops\n").unwrap();
    let d = dir.path().to_str().unwrap();
    let c = Config::parse_with_vars(
        &cluster_doc("in_cluster = true"),
        Path::new("k.toml"),
        &[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KWATCHD_SERVICEACCOUNT_DIR", d),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let c = &c.clusters["c"];
    assert_eq!(c.server.host_header(), "10.96.0.1:443");
    assert_eq!(c.token_file, Some(dir.path().join("token")));
    assert_eq!(c.certificate_authority, Some(dir.path().join("ca.crt")));
    assert_eq!(c.namespace.as_deref(), Some("ops"));
    let e = Config::parse_with_vars(&cluster_doc("in_cluster = true"), Path::new("k.toml"), &[])
        .unwrap_err()
        .0;
    assert_error(&e, 2, "clusters.c.in_cluster", "KUBERNETES_SERVICE_HOST");
    // in_cluster = false is no source at all.
    let e = errs(&cluster_doc("in_cluster = false"));
    assert_error(&e, 1, "clusters.c.server", "missing required key `server`");
}

#[test]
fn kubeconfig_path_with_tilde_and_context() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".kube")).unwrap();
    std::fs::write(
        home.path().join(".kube/config"),
        "current-context: a\nclusters:\n- name: k\n  cluster: {server: 'https://k.example:6443', certificate-authority-data: UEVN}\nusers:\n- name: u\n  user: {token: tkn}\ncontexts:\n- name: a\n  context: {cluster: k, user: u}\n- name: b\n  context: {cluster: k}\n",
    )
    .unwrap();
    let h = home.path().to_str().unwrap();
    let parse = |cluster: &str| {
        Config::parse_with_vars(&cluster_doc(cluster), Path::new("k.toml"), &[("HOME", h)])
    };
    let c = parse("kubeconfig = \"~/.kube/config\"").unwrap_or_else(|e| panic!("{e}"));
    let c = &c.clusters["c"];
    assert_eq!(c.server.to_string(), "https://k.example:6443");
    assert_eq!(c.token, Some(Secret::new("tkn")));
    assert_eq!(c.certificate_authority_data, Some(Secret::new("PEM")));
    let c = parse("kubeconfig = [\"~/.kube/config\"]\ncontext = \"b\"").unwrap();
    assert_eq!(c.clusters["c"].token, None);
    let e = parse("kubeconfig = \"~/.kube/config\"\ncontext = \"zz\"")
        .unwrap_err()
        .0;
    assert_error(
        &e,
        2,
        "clusters.c.kubeconfig",
        "context \"zz\" is not defined",
    );
    let e = parse("kubeconfig = \"~/.kube/config\"\nserver = \"https://x\"")
        .unwrap_err()
        .0;
    assert_error(
        &e,
        2,
        "clusters.c.kubeconfig",
        "kubeconfig conflicts with server",
    );
    let e = parse("kubeconfig = \"~/.kube/config\"\ncertificate_authority = \"/ca\"")
        .unwrap_err()
        .0;
    assert_error(
        &e,
        3,
        "clusters.c.certificate_authority",
        "cannot be combined with kubeconfig",
    );
}

#[test]
fn client_certificate_and_tls_server_name_keys() {
    let c = ok(&cluster_doc(
        "server = \"https://10.0.0.1\"\nclient_certificate = \"/c.crt\"\nclient_key = \"/c.key\"\ntls_server_name = \"kubernetes\"",
    ));
    let c = &c.clusters["c"];
    assert_eq!(c.client_certificate, Some(PemSource::File("/c.crt".into())));
    assert_eq!(c.tls_server_name.as_deref(), Some("kubernetes"));
    let e = errs(&cluster_doc(
        "server = \"https://10.0.0.1\"\nclient_key = \"/c.key\"",
    ));
    assert_error(
        &e,
        3,
        "clusters.c.client_key",
        "needs client_certificate too",
    );
    let e = errs(&cluster_doc(
        "server = \"http://127.0.0.1\"\ntls_server_name = \"kubernetes\"",
    ));
    assert_error(
        &e,
        3,
        "clusters.c.tls_server_name",
        "needs an https:// server",
    );
    let e = errs(&cluster_doc(
        "server = \"https://10.0.0.1\"\ntls_server_name = \"a b\"",
    ));
    assert_error(
        &e,
        3,
        "clusters.c.tls_server_name",
        "not a valid TLS server name",
    );
}
