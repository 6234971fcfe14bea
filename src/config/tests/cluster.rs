//! `[clusters.NAME]` values, the files `load` checks, and the three cluster
//! sources.

use super::*;

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

// ------------------------------------------------------------------ cluster sources

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
