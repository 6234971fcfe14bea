//! Tests of `Config::parse` and `Config::load`, one file per section like
//! the schema; this file holds the shared fixtures and the tests of whole
//! documents (the example, defaults, robustness).

mod cluster;
mod daemon;
mod document;
mod filter;
mod offline;
mod paths;
mod sink;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::rand::Rng;

const EXAMPLE: &str = include_str!("../../../config/kwatchd.toml");

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
            metrics_token_file: None,
            log_format: LogFormat::Text,
            shutdown_timeout: Duration::from_secs(30),
            state_dir: PathBuf::from("/var/lib/kwatchd"),
            sync: SyncMode::Interval,
            sync_interval: Duration::from_secs(1),
            leader_election: None,
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
            select: None,
            changes: None,
            redact: None,
        }],
        sinks: BTreeMap::from([(
            "out".to_string(),
            SinkConfig::File(FileSinkConfig {
                path: PathBuf::from("/var/log/kwatchd/events.jsonl"),
            }),
        )]),
        sink_transforms: BTreeMap::new(),
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
    use crate::config::{cluster, daemon, leader, sink, watch};
    // Loading reads these (a kubeconfig, the environment): shown commented.
    // So is the metrics token: the example keeps its endpoint on loopback.
    let commented = ["kubeconfig", "context", "in_cluster", "metrics_token_file"];
    for key in commented {
        assert!(
            cluster::KEYS.contains(&key) || daemon::KEYS.contains(&key),
            "{key} is not a key"
        );
    }
    // Leader election is off in the example: its keys are shown commented.
    for key in leader::KEYS {
        let line = format!("# {key} = ");
        assert!(
            EXAMPLE.lines().any(|l| l.starts_with(&line)),
            "{key} is not documented in config/kwatchd.toml (as `{line}...`)"
        );
    }
    let sink_keys = sink::TYPES.iter().flat_map(|t| t.keys.iter());
    let keys = daemon::KEYS
        .iter()
        .chain(cluster::KEYS)
        .chain(watch::KEYS)
        .chain(sink_keys);
    for key in keys {
        let line = if commented.contains(key) {
            format!("# {key} = ")
        } else {
            format!("{key} = ")
        };
        assert!(
            EXAMPLE.lines().any(|l| l.starts_with(&line)),
            "{key} is not documented in config/kwatchd.toml (as `{line}...`)"
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

/// A document with one cluster `c` (given by `cluster`, from line 2), one
/// watch and one stdout sink.
fn cluster_doc(cluster: &str) -> String {
    format!(
        "[clusters.c]\n{cluster}\n\n[[watch]]\nname = \"w\"\ncluster = \"c\"\napi_version = \"v1\"\nresource = \"pods\"\nsinks = [\"s\"]\n\n[sinks.s]\ntype = \"stdout\"\n"
    )
}

#[test]
fn leader_election_defaults_and_references() {
    let text = format!("{MINIMAL}\n[daemon.leader_election]\ncluster = \"local\"\n");
    let c = ok(&text);
    let le = c.daemon.leader_election.expect("parsed");
    assert_eq!(le.namespace, "kwatchd");
    assert_eq!(le.name, "kwatchd");
    assert_eq!(le.identity, None);
    assert_eq!(le.lease_duration, Duration::from_secs(15));
    assert_eq!(le.renew_deadline, Duration::from_secs(10));
    assert_eq!(le.retry_period, Duration::from_secs(2));
    let bad = text.replace(
        "cluster = \"local\"",
        "cluster = \"locla\"\nrenew_deadline = \"20s\"\nbogus = 1",
    );
    let e = Config::parse(&bad, Path::new("k.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean \"local\""), "{e}");
    assert!(e.contains("bogus"), "{e}");
    assert!(
        e.contains("renew_deadline 20s must be shorter than lease_duration 15s"),
        "{e}"
    );
}
