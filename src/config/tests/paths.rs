//! `${VAR}` and `$VAR` in path-valued keys, e.g. systemd credentials:
//! `LoadCredential=token:/etc/kwatchd/token` and
//! `token_file = "${CREDENTIALS_DIRECTORY}/token"`.

use super::*;

const CREDS: &str = "/run/credentials/kwatchd.service";

fn with_creds(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse_with_vars(
        text,
        Path::new("kwatchd.toml"),
        &[
            ("CREDENTIALS_DIRECTORY", CREDS),
            ("STATE_DIRECTORY", "/var/lib/kwatchd"),
        ],
    )
}

#[test]
fn every_path_key_expands_variables() {
    let text = r#"[daemon]
state_dir = "$STATE_DIRECTORY/state"

[clusters.local]
server = "https://k"
certificate_authority = "${CREDENTIALS_DIRECTORY}/ca.crt"
token_file = "$CREDENTIALS_DIRECTORY/token"
client_certificate = "${CREDENTIALS_DIRECTORY}/client.crt"
client_key = "${CREDENTIALS_DIRECTORY}/client.key"

[[watch]]
name = "pods"
cluster = "local"
api_version = "v1"
resource = "pods"
sinks = ["file", "hook", "hooks"]

[sinks.file]
type = "file"
path = "${STATE_DIRECTORY}/events.jsonl"

[sinks.hook]
type = "exec"
command = ["$STATE_DIRECTORY/hooks/on-change", "$CREDENTIALS_DIRECTORY"]
working_dir = "$STATE_DIRECTORY"
on_failure = "dead_letter"
dead_letter = "$STATE_DIRECTORY/dead-letter.jsonl"

[sinks.hooks]
type = "webhook"
url = "https://h/"
certificate_authority = "$CREDENTIALS_DIRECTORY/hooks-ca.crt"
"#;
    let c = with_creds(text).unwrap_or_else(|e| panic!("{e}"));
    let creds = Path::new(CREDS);
    assert_eq!(c.daemon.state_dir, Path::new("/var/lib/kwatchd/state"));
    let local = &c.clusters["local"];
    assert_eq!(local.certificate_authority, Some(creds.join("ca.crt")));
    assert_eq!(local.token_file, Some(creds.join("token")));
    assert_eq!(
        local.client_certificate,
        Some(PemSource::File(creds.join("client.crt")))
    );
    assert_eq!(
        local.client_key,
        Some(PemSource::File(creds.join("client.key")))
    );
    assert_eq!(
        c.sinks["file"],
        SinkConfig::File(FileSinkConfig {
            path: "/var/lib/kwatchd/events.jsonl".into()
        })
    );
    let SinkConfig::Exec(hook) = &c.sinks["hook"] else {
        panic!("not exec");
    };
    // The program is a path; arguments are passed as written.
    assert_eq!(
        hook.command,
        vec!["/var/lib/kwatchd/hooks/on-change", "$CREDENTIALS_DIRECTORY"]
    );
    assert_eq!(hook.working_dir, Some("/var/lib/kwatchd".into()));
    assert_eq!(
        hook.delivery.on_failure,
        OnFailure::DeadLetter("/var/lib/kwatchd/dead-letter.jsonl".into())
    );
    let SinkConfig::Webhook(hooks) = &c.sinks["hooks"] else {
        panic!("not webhook");
    };
    assert_eq!(
        hooks.certificate_authority,
        Some(creds.join("hooks-ca.crt"))
    );
}

#[test]
fn both_forms_literal_dollars_and_relative_results() {
    let token = |value: &str| {
        let text = cluster_doc(&format!("server = \"https://k\"\ntoken_file = {value:?}"));
        with_creds(&text).map(|c| c.clusters["c"].token_file.clone())
    };
    let expected = Some(Path::new(CREDS).join("token"));
    assert_eq!(
        token("${CREDENTIALS_DIRECTORY}/token"),
        Ok(expected.clone())
    );
    assert_eq!(token("$CREDENTIALS_DIRECTORY/token"), Ok(expected));
    // `$$` is a literal `$`; a `$` that starts no name is kept.
    assert_eq!(token("/etc/$$x/$1"), Ok(Some("/etc/$x/$1".into())));
    // A variable holding a relative path is resolved like one written out.
    let text = cluster_doc("server = \"https://k\"\ntoken_file = \"$REL/token\"");
    let c = Config::parse_with_vars(&text, Path::new("k.toml"), &[("REL", "secrets")]).unwrap();
    assert_eq!(
        c.clusters["c"].token_file,
        Some(cwd().join("secrets/token"))
    );
}

#[test]
fn unset_or_empty_variables_name_key_and_line() {
    let text =
        cluster_doc("server = \"https://k\"\ntoken_file = \"${CREDENTIALS_DIRECTORY}/token\"");
    let e = Config::parse_with_vars(&text, Path::new("k.toml"), &[])
        .unwrap_err()
        .0;
    assert_eq!(e.len(), 1, "{}", ConfigErrors(e.clone()));
    assert_error(
        &e,
        3,
        "clusters.c.token_file",
        "environment variable CREDENTIALS_DIRECTORY is not set (referenced as ${CREDENTIALS_DIRECTORY}); systemd sets it for a service with LoadCredential=",
    );
    let text = with_sink("type = \"file\"\npath = \"$LOGS/events.jsonl\"");
    let e = Config::parse_with_vars(&text, Path::new("k.toml"), &[("LOGS", "")])
        .unwrap_err()
        .0;
    assert_error(
        &e,
        14,
        "sinks.out.path",
        "environment variable LOGS is empty",
    );
    let text = with_sink("type = \"exec\"\ncommand = [\"$HOOKS/x\"]");
    let e = Config::parse_with_vars(&text, Path::new("k.toml"), &[])
        .unwrap_err()
        .0;
    assert_error(
        &e,
        14,
        "sinks.out.command[0]",
        "HOOKS is not set (referenced as $HOOKS)",
    );
}

#[test]
fn kubeconfig_paths_expand_variables_after_the_tilde() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kubeconfig"),
        "current-context: a\nclusters:\n- name: k\n  cluster: {server: 'https://k.example:6443'}\nusers:\n- name: u\n  user: {token: tkn}\ncontexts:\n- name: a\n  context: {cluster: k, user: u}\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let home = dir.path().parent().unwrap().to_str().unwrap();
    let sub = dir.path().file_name().unwrap().to_str().unwrap();
    for (kubeconfig, vars) in [
        (
            "${CREDENTIALS_DIRECTORY}/kubeconfig",
            vec![("CREDENTIALS_DIRECTORY", d)],
        ),
        ("~/$SUB/kubeconfig", vec![("HOME", home), ("SUB", sub)]),
    ] {
        let text = cluster_doc(&format!("kubeconfig = {kubeconfig:?}"));
        let c = Config::parse_with_vars(&text, Path::new("k.toml"), &vars)
            .unwrap_or_else(|e| panic!("{kubeconfig}: {e}"));
        assert_eq!(c.clusters["c"].server.to_string(), "https://k.example:6443");
    }
}

#[test]
fn load_with_systemd_credentials() {
    // What a unit with LoadCredential=ca.crt:... and LoadCredential=token:...
    // gives the daemon: the files in $CREDENTIALS_DIRECTORY.
    let files = Files::new();
    let ca = files.write("ca.crt", PEM);
    files.write("token", "secret\n");
    let config = files.write(
        "kwatchd.toml",
        &cluster_doc(
            "server = \"https://k\"\ncertificate_authority = \"${CREDENTIALS_DIRECTORY}/ca.crt\"\ntoken_file = \"$CREDENTIALS_DIRECTORY/token\"",
        ),
    );
    let d = files.dir.path().to_str().unwrap();
    let c = Config::load_with_vars(&config, &[("CREDENTIALS_DIRECTORY", d)])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.clusters["c"].certificate_authority, Some(ca));
    // The expanded path is what is checked.
    std::fs::remove_file(files.dir.path().join("token")).unwrap();
    let e = Config::load_with_vars(&config, &[("CREDENTIALS_DIRECTORY", d)])
        .unwrap_err()
        .0;
    assert_error(&e, 4, "clusters.c.token_file", "cannot read");
    assert!(e[0].message.contains(&format!("{d}/token")), "{}", e[0]);
}
