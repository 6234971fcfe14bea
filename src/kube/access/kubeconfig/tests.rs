use super::*;

fn file(text: &str, path: &str) -> (PathBuf, KubeFile) {
    let p = PathBuf::from(path);
    let f = parse(text, &p).unwrap_or_else(|e| panic!("{e}"));
    (p, f)
}

fn one(text: &str, context: Option<&str>) -> Result<Resolved, KubeconfigError> {
    resolve(&merge(vec![file(text, "/home/op/.kube/config")]), context)
}

const BASIC: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
preferences: {}
clusters:
- name: dev-cluster
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority: ca.crt
    tls-server-name: kubernetes
    extensions:
    - name: x
      extension: {}
users:
- name: dev-user
  user:
    client-certificate: certs/client.crt
    client-key: /abs/client.key
contexts:
- name: dev
  context:
    cluster: dev-cluster
    user: dev-user
    namespace: team-a
- name: other
  context:
    cluster: elsewhere
    user: nobody
"#;

#[test]
fn current_context_with_relative_paths_resolved_against_the_file() {
    let r = one(BASIC, None).unwrap();
    assert_eq!(r.server, "https://10.0.0.1:6443");
    assert_eq!(
        r.certificate_authority,
        Some(PemSource::File("/home/op/.kube/ca.crt".into()))
    );
    assert_eq!(r.tls_server_name.as_deref(), Some("kubernetes"));
    assert_eq!(
        r.client_certificate,
        Some(PemSource::File("/home/op/.kube/certs/client.crt".into()))
    );
    assert_eq!(
        r.client_key,
        Some(PemSource::File("/abs/client.key".into()))
    );
    assert_eq!(r.namespace.as_deref(), Some("team-a"));
    assert_eq!(
        r.source,
        ClusterSource::Kubeconfig {
            files: vec!["/home/op/.kube/config".into()],
            context: "dev".into()
        }
    );
}

#[test]
fn missing_names_are_errors_naming_the_files_and_candidates() {
    let e = one(BASIC, Some("nope")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "kubeconfig /home/op/.kube/config: context \"nope\" is not defined (defined: dev, other)"
    );
    let e = one(BASIC, Some("other")).unwrap_err();
    assert!(
        e.to_string()
            .contains("cluster \"elsewhere\" (named by context \"other\") is not defined"),
        "{e}"
    );
    let e = one("clusters: []\n", None).unwrap_err();
    assert!(e.to_string().contains("no current-context"), "{e}");
}

#[test]
fn data_fields_win_over_files_and_token_file_over_token() {
    let text = r#"
current-context: c
clusters:
- name: k
  cluster:
    server: https://k:443
    certificate-authority: /ca.pem
    certificate-authority-data: UEVNIENB
users:
- name: u
  user:
    token: inline-token
    tokenFile: tok
    client-certificate: /c.crt
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
contexts:
- name: c
  context: {cluster: k, user: u}
"#;
    let r = one(text, None).unwrap();
    assert_eq!(
        r.certificate_authority,
        Some(PemSource::Data(Secret::new("PEM CA")))
    );
    assert_eq!(r.token_file, Some("/home/op/.kube/tok".into()));
    assert_eq!(r.token, None);
    assert_eq!(
        r.client_certificate,
        Some(PemSource::Data(Secret::new("CERT")))
    );
    assert_eq!(r.client_key, Some(PemSource::Data(Secret::new("KEY"))));
}

#[test]
fn first_file_wins_for_current_context_and_each_name() {
    let a = r#"
current-context: from-a
clusters:
- name: shared
  cluster: {server: "https://a:1"}
contexts:
- name: from-a
  context: {cluster: shared, user: ua}
users:
- name: ua
  user: {token: a-token}
"#;
    let b = r#"
current-context: from-b
clusters:
- name: shared
  cluster: {server: "https://b:1"}
- name: only-b
  cluster: {server: "https://only-b:1"}
contexts:
- name: from-b
  context: {cluster: only-b, user: ua}
users:
- name: ua
  user: {token: b-token}
"#;
    let merged = merge(vec![file(a, "/a/config"), file(b, "/b/config")]);
    let r = resolve(&merged, None).unwrap();
    assert_eq!(r.server, "https://a:1");
    assert_eq!(r.token, Some(Secret::new("a-token")));
    // A context only b defines, using b's cluster and a's user.
    let r = resolve(&merged, Some("from-b")).unwrap();
    assert_eq!(r.server, "https://only-b:1");
    assert_eq!(r.token, Some(Secret::new("a-token")));
    // b first: b wins.
    let merged = merge(vec![file(b, "/b/config"), file(a, "/a/config")]);
    let r = resolve(&merged, None).unwrap();
    assert_eq!(r.server, "https://only-b:1");
    assert_eq!(r.token, Some(Secret::new("b-token")));
    let e = resolve(&merged, Some("zzz")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("kubeconfig /b/config:/a/config: "),
        "{e}"
    );
}

#[test]
fn relative_paths_are_relative_to_the_file_that_defines_the_entry() {
    let a = "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n";
    let b = "clusters:\n- name: k\n  cluster: {server: 'https://k:1', certificate-authority: ca.pem}\nusers:\n- name: u\n  user: {tokenFile: t/token}\n";
    let r = resolve(&merge(vec![file(a, "/one/a"), file(b, "/two/b")]), None).unwrap();
    assert_eq!(
        r.certificate_authority,
        Some(PemSource::File("/two/ca.pem".into()))
    );
    assert_eq!(r.token_file, Some("/two/t/token".into()));
}

fn user(fields: &str) -> String {
    format!(
        "current-context: c\nclusters:\n- name: k\n  cluster: {{server: 'https://k:1'}}\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers:\n- name: u\n  user:\n{fields}"
    )
}

#[test]
fn exec_plugins_v1_and_v1beta1() {
    let text = user(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: ./bin/plugin\n      args: [get-token, --x]\n      env:\n      - {name: A, value: b}\n      provideClusterInfo: true\n      interactiveMode: IfAvailable\n      installHint: install it\n",
    );
    let r = one(&text, None).unwrap();
    let e = r.exec.unwrap();
    assert_eq!(e.command, "/home/op/.kube/bin/plugin");
    assert_eq!(e.args, ["get-token", "--x"]);
    assert_eq!(e.env, [("A".to_string(), "b".to_string())]);
    assert_eq!(e.api_version, ExecApiVersion::V1Beta1);
    assert!(e.provide_cluster_info);
    let text = user("    exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}\n");
    let e = one(&text, None).unwrap().exec.unwrap();
    assert_eq!(
        (e.command.as_str(), e.api_version),
        ("aws", ExecApiVersion::V1)
    );
}

#[test]
fn refused_fields_name_file_entry_and_field() {
    let cases: &[(&str, &str)] = &[
        ("    auth-provider: {name: gcp}\n", "user \"u\": auth-provider: auth-provider plugins were removed"),
        ("    username: admin\n    password: pw\n", "user \"u\": "),
        ("    as: someone\n", "user \"u\": as: impersonation is not supported"),
        ("    as-groups: [g]\n", "as-groups: impersonation"),
        ("    made-up: 1\n", "user \"u\": made-up is not supported by kwatchd"),
        ("    client-certificate: /c\n", "client-certificate is set but client-key is not"),
        ("    client-key-data: S0VZ\n", "client-key is set but client-certificate is not"),
        ("    exec: {command: x}\n", "exec: apiVersion is required"),
        (
            "    exec: {command: x, apiVersion: client.authentication.k8s.io/v1alpha1}\n",
            "apiVersion \"client.authentication.k8s.io/v1alpha1\" is not supported",
        ),
        (
            "    exec: {command: x, apiVersion: client.authentication.k8s.io/v1, interactiveMode: Always}\n",
            "interactiveMode: Always needs a terminal",
        ),
        (
            "    exec: {command: x, apiVersion: client.authentication.k8s.io/v1, extra: 1}\n",
            "exec: extra is not supported",
        ),
        ("    token-data: x\n", "token-data is not supported"),
        ("    client-key-data: '%%%'\n    client-certificate: /c\n", "client-key-data is not valid base64"),
    ];
    for (fields, expected) in cases {
        let e = one(&user(fields), None).unwrap_err().to_string();
        assert!(
            e.starts_with("kubeconfig /home/op/.kube/config: ") && e.contains(expected),
            "{fields:?}: {e}"
        );
    }
    let proxy = "current-context: c\nclusters:\n- name: k\n  cluster: {server: 'https://k:1', proxy-url: 'http://p:3128'}\ncontexts:\n- name: c\n  context: {cluster: k}\n";
    let e = one(proxy, None).unwrap_err().to_string();
    assert!(
        e.contains("cluster \"k\": proxy-url: proxies are not supported"),
        "{e}"
    );
    let insecure = "current-context: c\nclusters:\n- name: k\n  cluster: {server: 'https://k:1', insecure-skip-tls-verify: true, certificate-authority: /ca}\ncontexts:\n- name: c\n  context: {cluster: k}\n";
    let e = one(insecure, None).unwrap_err().to_string();
    assert!(e.contains("conflicts with certificate-authority"), "{e}");
}

#[test]
fn unused_entries_may_use_unsupported_features() {
    let text = format!(
        "{}- name: gcp-user\n  user:\n    auth-provider: {{name: gcp}}\n",
        user("    token: t\n")
    );
    assert_eq!(one(&text, None).unwrap().token, Some(Secret::new("t")));
}

#[test]
fn malformed_documents_are_errors_naming_the_file() {
    for (text, expected) in [
        ("clusters: [", "invalid YAML"),
        ("- a\n- b\n", "expected a mapping at the top level"),
        ("clusters: {a: 1}\n", "clusters must be a list"),
        ("clusters:\n- cluster: {}\n", "clusters[0] has no name"),
        (
            "users:\n- {name: a, user: {}}\n- {name: a, user: {}}\n",
            "users: \"a\" is defined twice",
        ),
        ("colors: true\n", "unknown top-level field \"colors\""),
    ] {
        let e = parse(text, Path::new("/k/cfg")).unwrap_err().to_string();
        assert!(
            e.starts_with("kubeconfig /k/cfg: ") && e.contains(expected),
            "{text:?}: {e}"
        );
    }
    // Empty and null documents are empty configs, as in client-go.
    assert!(parse("", Path::new("/k")).is_ok());
    assert!(parse("---\n", Path::new("/k")).is_ok());
}

#[test]
fn empty_strings_count_as_unset() {
    let r = one(&user("    token: ''\n    tokenFile: ''\n"), None).unwrap();
    assert_eq!((r.token, r.token_file), (None, None));
}

#[test]
fn render_round_trips() {
    let text = user(
        "    client-certificate-data: Q0VSVA==\n    client-key: k.pem\n    token: tok\n    exec: {command: /bin/p, apiVersion: client.authentication.k8s.io/v1, args: [a], env: [{name: N, value: V}]}\n",
    );
    let r = one(&text, None).unwrap();
    let again = one(&render(&r), None).unwrap();
    assert_eq!(
        Resolved {
            source: r.source.clone(),
            ..again
        },
        r
    );
}

#[test]
fn load_reads_files_and_names_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::write(&a, BASIC).unwrap();
    let missing = dir.path().join("missing");
    let r = load(std::slice::from_ref(&a), Some("dev")).unwrap();
    assert_eq!(
        r.certificate_authority,
        Some(PemSource::File(dir.path().join("ca.crt")))
    );
    let e = load(&[a, missing.clone()], None).unwrap_err();
    assert_eq!(e.files, vec![missing]);
    assert!(e.message.starts_with("cannot read"), "{e}");
}
