//! `LoadMode::Offline`: every check that needs no file, environment
//! variable or kubeconfig, and none of those consulted.

use super::*;

fn offline(text: &str) -> Result<ConfigSummary, Vec<ConfigError>> {
    Config::check_text_offline(text, Path::new("kwatchd.toml")).map_err(|e| e.0)
}

#[test]
fn shipped_configs_pass_offline() {
    for path in ["config/kwatchd.toml", "config/demo.toml"] {
        let summary = Config::check(Path::new(path), LoadMode::Offline)
            .unwrap_or_else(|e| panic!("{path} fails the offline check:\n{e}"));
        assert!(summary.watches >= 1, "{path}: {summary}");
    }
    // With no variable set at all (the example needs WEBHOOK_TOKEN online).
    let summary = offline(EXAMPLE).unwrap_or_else(|e| panic!("{}", ConfigErrors(e)));
    assert_eq!(
        summary,
        ConfigSummary {
            clusters: 3,
            watches: 2,
            sinks: 7
        }
    );
    assert_eq!(summary.to_string(), "3 clusters, 2 watches, 7 sinks");
    let online = Config::parse_with_vars(EXAMPLE, Path::new("k.toml"), &[("WEBHOOK_TOKEN", "t")]);
    assert_eq!(online.map(|c| c.summary()), Ok(summary));
}

#[test]
fn offline_finds_what_needs_no_outside_world() {
    // Nothing here depends on the environment or on files: offline must
    // report exactly what a full parse reports.
    let text = r#"[daemon]
log_level = "loud"
shutdown_timeout = 30

[clusters.local]
server = "http://10.0.0.1:8080"
colour = "blue"

[[watch]]
name = "pods"
cluster = "prod"
api_version = "apps/v1"
resource = "Deployment"
label_selector = "app in web"
sinks = ["out", "nowhere"]

[sinks.out]
type = "webhook"
url = "https://h/"
headers = { A = "${UNTERMINATED" }
retries = 1000
"#;
    let full = errs(text);
    let off = offline(text).unwrap_err();
    assert_eq!(off, full);
    assert_eq!(off.len(), 10, "{}", ConfigErrors(off.clone()));
    assert_error(&off, 20, "sinks.out.headers.A", "unterminated ${");
    assert_error(
        &off,
        11,
        "watch[0].cluster",
        "cluster \"prod\" is not defined",
    );
}

#[test]
fn offline_reads_no_environment_kubeconfig_or_service_account() {
    let clean = [
        // Unset variables: their references are only checked for syntax.
        "server = \"https://k\"\ntoken_file = \"${CREDENTIALS_DIRECTORY}/token\"\nclient_certificate = \"$CREDENTIALS_DIRECTORY/c.crt\"\nclient_key = \"${CREDENTIALS_DIRECTORY}/c.key\"",
        // A kubeconfig that does not exist, with ~ and no HOME.
        "kubeconfig = [\"/nonexistent/kubeconfig\", \"~/.kube/config\"]\ncontext = \"prod\"",
        // Not in a pod.
        "in_cluster = true",
    ];
    for cluster in clean {
        let text = cluster_doc(cluster);
        offline(&text).unwrap_or_else(|e| panic!("{cluster}:\n{}", ConfigErrors(e)));
        assert!(
            Config::parse_with_vars(&text, Path::new("k.toml"), &[]).is_err(),
            "{cluster} should need the outside world online"
        );
    }
    // What a kubeconfig or in-cluster table gets wrong by itself is still found.
    let broken = [
        (
            "kubeconfig = []",
            2,
            "clusters.c.kubeconfig",
            "at least one kubeconfig path",
        ),
        (
            "kubeconfig = \"/k\"\ncontext = \"\"",
            3,
            "clusters.c.context",
            "must not be empty",
        ),
        (
            "kubeconfig = \"/k\"\nserver = \"https://k\"",
            2,
            "clusters.c.kubeconfig",
            "conflicts with server",
        ),
        (
            "in_cluster = true\ntoken_file = \"/t\"",
            3,
            "clusters.c.token_file",
            "cannot be combined with in_cluster",
        ),
        (
            "server = \"https://k\"\ntoken_file = \"${CREDENTIALS_DIRECTORY/token\"",
            3,
            "clusters.c.token_file",
            "unterminated ${",
        ),
        (
            "server = \"https://k\"\ncertificate_authority = \"~/ca.crt\"",
            3,
            "clusters.c.certificate_authority",
            "not expanded",
        ),
    ];
    for (cluster, line, key, fragment) in broken {
        let e = offline(&cluster_doc(cluster)).unwrap_err();
        assert_error(&e, line, key, fragment);
    }
    // Header variables likewise.
    let text = with_sink("type = \"webhook\"\nurl = \"https://h/\"\nheaders = { Authorization = \"Bearer ${TOKEN}\" }");
    offline(&text).unwrap_or_else(|e| panic!("{}", ConfigErrors(e)));
}

#[test]
fn offline_check_of_a_file_does_not_open_the_files_it_names() {
    let files = Files::new();
    let missing = files.dir.path().join("absent");
    let path = files.config(&missing, &missing);
    let hook = format!(
        "\n[sinks.hook]\ntype = \"exec\"\ncommand = [\"{dir}/absent-hook\"]\nworking_dir = \"{dir}/absent-dir\"\n",
        dir = files.dir.path().display()
    );
    let text = std::fs::read_to_string(&path).unwrap() + &hook;
    std::fs::write(&path, text).unwrap();
    let e = Config::check(&path, LoadMode::Full).unwrap_err();
    assert_eq!(e.len(), 4, "{e}");
    assert_eq!(
        Config::check(&path, LoadMode::Offline),
        Ok(ConfigSummary {
            clusters: 1,
            watches: 1,
            sinks: 2
        })
    );
    // The configuration file itself must still be readable.
    let e = Config::check(&files.dir.path().join("nope.toml"), LoadMode::Offline).unwrap_err();
    assert!(
        e.0[0]
            .message
            .contains("cannot read the configuration file"),
        "{e}"
    );
}
