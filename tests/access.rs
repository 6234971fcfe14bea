//! Reaching clusters: kubeconfig with every supported auth form, KUBECONFIG
//! precedence, refused fields, token rotation, exec credential plugins,
//! in-cluster config, IP SANs and tls_server_name. The real binary against
//! the emulator over TLS on loopback.

mod common;

use base64::Engine;
use common::*;
use kwatchd_sim::{Resource, Sim, SimOptions};
use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// An HTTPS emulator that refuses unauthenticated requests.
fn tls_sim(opts: SimOptions) -> Sim {
    Sim::start(SimOptions {
        tls: true,
        require_auth: true,
        ..opts
    })
    .unwrap()
}

/// A config whose cluster `test` is `cluster` (TOML lines), one pods watch
/// into DIR/out.jsonl.
fn daemon_config(dir: &Path, cluster: &str) -> String {
    format!(
        "[clusters.test]\n{cluster}\n\n[[watch]]\nname = \"pods\"\ncluster = \"test\"\napi_version = \"v1\"\nresource = \"pods\"\nwatch_timeout = \"1s\"\nsinks = [\"out\"]\n\n[sinks.out]\ntype = \"file\"\npath = \"{}\"\n",
        dir.join("out.jsonl").display()
    )
}

/// Starts the daemon with extra environment variables, at trace level.
fn start(dir: tempfile::TempDir, config_text: &str, env: &[(&str, &str)]) -> Running {
    let config = dir.path().join("kwatchd.toml");
    fs::write(
        &config,
        with_state_dir(config_text, &dir.path().join("state")),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("KWATCHD_LOG_LEVEL", "trace")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Running {
        child,
        dir,
        log,
        config,
    }
}

/// The daemon lists the pod that exists, then sees a new one.
fn assert_events_flow(sim: &Sim, d: &Running) {
    let pods = Resource::pods();
    sim.create(&pods, "default", "before", &[], json!({}));
    assert!(
        wait_until(WAIT, || count_records(&d.path("out.jsonl")) >= 1),
        "no event; log:\n{}",
        d.log_text()
    );
    sim.create(&pods, "default", "after", &[], json!({}));
    assert!(
        wait_until(WAIT, || records(&d.path("out.jsonl"))
            .iter()
            .any(|r| r["object"]["metadata"]["name"] == "after")),
        "no event after the start; log:\n{}",
        d.log_text()
    );
}

/// No log line holds any of `secrets`.
fn assert_no_secrets(d: &Running, secrets: &[&str]) {
    let log = d.log_text();
    for s in secrets {
        assert!(s.len() >= 8, "secret {s:?} too short to grep for");
        assert!(!log.contains(s), "secret {s:?} in the log:\n{log}");
    }
}

/// Lines of a PEM private key's body: what must never be logged.
fn key_lines(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .collect()
}

fn kubeconfig_one(server: &str, cluster: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: c\n  cluster:\n    server: {server}\n{cluster}users:\n- name: u\n  user:\n{user}contexts:\n- name: test\n  context: {{cluster: c, user: u, namespace: default}}\n"
    )
}

#[test]
fn kubeconfig_inline_token_and_ca_data() {
    let sim = tls_sim(SimOptions {
        token: Some("inline-token-1234".into()),
        ..SimOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    fs::write(
        &kc,
        kubeconfig_one(
            &sim.url(),
            &format!(
                "    certificate-authority-data: {}\n",
                b64(&sim.ca_pem().unwrap())
            ),
            "    token: inline-token-1234\n",
        ),
    )
    .unwrap();
    let text = daemon_config(
        dir.path(),
        &format!("kubeconfig = {:?}", kc.display().to_string()),
    );
    let d = start(dir, &text, &[]);
    assert_events_flow(&sim, &d);
    assert!(sim.requests().iter().all(|r| r.had_auth && !r.client_cert));
    assert_no_secrets(&d, &["inline-token-1234"]);
}

#[test]
fn kubeconfig_token_file_and_ca_file_relative_to_the_kubeconfig() {
    let sim = tls_sim(SimOptions {
        token: Some("file-token-5678".into()),
        ..SimOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let kdir = dir.path().join("kube");
    fs::create_dir_all(kdir.join("secrets")).unwrap();
    fs::write(kdir.join("ca.pem"), sim.ca_pem().unwrap()).unwrap();
    fs::write(kdir.join("secrets/token"), "file-token-5678\n").unwrap();
    fs::write(
        kdir.join("config"),
        kubeconfig_one(
            &sim.url(),
            "    certificate-authority: ca.pem\n",
            "    token: not-this-one-inline\n    tokenFile: secrets/token\n",
        ),
    )
    .unwrap();
    let text = daemon_config(
        dir.path(),
        &format!(
            "kubeconfig = {:?}\ncontext = \"test\"",
            kdir.join("config").display().to_string()
        ),
    );
    let d = start(dir, &text, &[]);
    assert_events_flow(&sim, &d);
    assert_no_secrets(&d, &["file-token-5678", "not-this-one-inline"]);
}

#[test]
fn kubeconfig_client_certificate_files_and_data() {
    let sim = tls_sim(SimOptions::default());
    let (cert, key) = sim
        .handle()
        .issue_client_cert("kwatchd", &["watchers"])
        .unwrap();
    for data in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ca.pem"), sim.ca_pem().unwrap()).unwrap();
        let user = if data {
            format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(&cert),
                b64(&key)
            )
        } else {
            fs::create_dir(dir.path().join("pki")).unwrap();
            fs::write(dir.path().join("pki/client.crt"), &cert).unwrap();
            fs::write(dir.path().join("pki/client.key"), &key).unwrap();
            "    client-certificate: pki/client.crt\n    client-key: pki/client.key\n".to_string()
        };
        let kc = dir.path().join("kubeconfig");
        fs::write(
            &kc,
            kubeconfig_one(&sim.url(), "    certificate-authority: ca.pem\n", &user),
        )
        .unwrap();
        let text = daemon_config(
            dir.path(),
            &format!("kubeconfig = {:?}", kc.display().to_string()),
        );
        let before = sim.requests().len();
        let d = start(dir, &text, &[]);
        assert_events_flow(&sim, &d);
        let reqs = sim.requests();
        assert!(
            reqs[before..]
                .iter()
                .all(|r| r.client_cert && !r.had_auth && r.status != 401),
            "data={data}: {:?}",
            &reqs[before..]
        );
        assert_no_secrets(&d, &key_lines(&key));
        sim.delete(&Resource::pods(), "default", "before");
        sim.delete(&Resource::pods(), "default", "after");
    }
}

#[test]
fn client_certificate_keys_in_kwatchd_config_and_unauthenticated_requests_get_401() {
    let sim = tls_sim(SimOptions::default());
    let (cert, key) = sim.handle().issue_client_cert("kwatchd", &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        ("ca.pem", sim.ca_pem().unwrap()),
        ("c.crt", cert),
        ("c.key", key.clone()),
    ] {
        fs::write(dir.path().join(name), body).unwrap();
    }
    let p = |n: &str| dir.path().join(n).display().to_string();
    let text = daemon_config(
        dir.path(),
        &format!(
            "server = {:?}\ncertificate_authority = {:?}\nclient_certificate = {:?}\nclient_key = {:?}",
            sim.url(),
            p("ca.pem"),
            p("c.crt"),
            p("c.key")
        ),
    );
    let d = start(dir, &text, &[]);
    assert_events_flow(&sim, &d);
    assert_no_secrets(&d, &key_lines(&key));
    drop(d);
    // Without the certificate the emulator refuses.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ca.pem"), sim.ca_pem().unwrap()).unwrap();
    let text = daemon_config(
        dir.path(),
        &format!(
            "server = {:?}\ncertificate_authority = {:?}",
            sim.url(),
            dir.path().join("ca.pem").display().to_string()
        ),
    );
    let before = sim.requests().len();
    let d = start(dir, &text, &[]);
    assert!(
        wait_until(WAIT, || sim.requests()[before..]
            .iter()
            .any(|r| r.status == 401)),
        "{}",
        d.log_text()
    );
    assert!(wait_until(WAIT, || d.log_text().contains("401")));
}

#[test]
fn kubeconfig_list_first_file_wins() {
    let sim = tls_sim(SimOptions {
        token: Some("right-token-abcdef".into()),
        ..SimOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("a")).unwrap();
    fs::create_dir(dir.path().join("b")).unwrap();
    fs::write(dir.path().join("b/ca.pem"), sim.ca_pem().unwrap()).unwrap();
    // a: current-context and the user; b: the cluster (CA relative to b/),
    // a conflicting user and current-context that must lose.
    fs::write(
        dir.path().join("a/config"),
        "current-context: mine\ncontexts:\n- name: mine\n  context: {cluster: shared, user: me}\nusers:\n- name: me\n  user: {token: right-token-abcdef}\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("b/config"),
        format!(
            "current-context: theirs\nclusters:\n- name: shared\n  cluster: {{server: '{}', certificate-authority: ca.pem}}\ncontexts:\n- name: theirs\n  context: {{cluster: shared, user: me}}\nusers:\n- name: me\n  user: {{token: wrong-token-ghijkl}}\n",
            sim.url()
        ),
    )
    .unwrap();
    let text = daemon_config(
        dir.path(),
        &format!(
            "kubeconfig = [{:?}, {:?}]",
            dir.path().join("a/config").display().to_string(),
            dir.path().join("b/config").display().to_string()
        ),
    );
    let d = start(dir, &text, &[]);
    assert_events_flow(&sim, &d);
    assert!(sim.requests().iter().all(|r| r.status != 401));
    assert_no_secrets(&d, &["right-token-abcdef", "wrong-token-ghijkl"]);
}

/// `kwatchd check` on a config naming `kubeconfig`: exit 78 and the message.
fn check(kubeconfig: &str, context: Option<&str>) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc.yaml");
    fs::write(&kc, kubeconfig).unwrap();
    let ctx = context.map_or(String::new(), |c| format!("\ncontext = {c:?}"));
    let text = daemon_config(
        dir.path(),
        &format!("kubeconfig = {:?}{ctx}", kc.display().to_string()),
    );
    let config = dir.path().join("kwatchd.toml");
    fs::write(&config, text).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Every message names the config file, the line and column of the key,
    // and the kubeconfig file.
    if out.status.code() == Some(78) {
        assert!(
            text.contains(&format!(
                "{}:2:14: clusters.test.kubeconfig: kubeconfig {}",
                config.display(),
                kc.display()
            )),
            "{text}"
        );
    }
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn refused_kubeconfig_fields_fail_check_with_their_reason() {
    let user = |fields: &str| kubeconfig_one("https://127.0.0.1:6443", "", fields);
    let cases = [
        (user("    auth-provider:\n      name: oidc\n"), "user \"u\": auth-provider: auth-provider plugins were removed"),
        (user("    username: admin\n    password: secret-pw\n"), "basic authentication (username/password) is not supported"),
        (user("    token: t\n    as: admin\n"), "user \"u\": as: impersonation is not supported"),
        (
            kubeconfig_one("https://127.0.0.1:6443", "    proxy-url: http://proxy:3128\n", "    token: t\n"),
            "cluster \"c\": proxy-url: proxies are not supported",
        ),
        (
            user("    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: x\n      interactiveMode: Always\n"),
            "interactiveMode: Always needs a terminal",
        ),
        (user("    frobnicate: 1\n"), "user \"u\": frobnicate is not supported by kwatchd"),
        (
            kubeconfig_one("http://10.1.2.3:80", "", "    token: t\n"),
            "server: http:// is only allowed for loopback hosts",
        ),
    ];
    for (kc, expected) in &cases {
        let (code, text) = check(kc, None);
        assert_eq!(code, 78, "{expected}: {text}");
        assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
        assert!(!text.contains("secret-pw"), "{text}");
    }
    let (code, text) = check(&user("    token: t\n"), Some("missing"));
    assert_eq!(code, 78);
    assert!(
        text.contains("context \"missing\" is not defined (defined: test)"),
        "{text}"
    );
    let (code, text) = check(&user("    token: t\n"), None);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn kwatchd_config_rules_for_cluster_sources() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "server = \"https://127.0.0.1:1\"\nin_cluster = true",
            "in_cluster = true conflicts with server",
        ),
        (
            "kubeconfig = \"/x\"\ntoken_file = \"/t\"",
            "token_file cannot be combined with kubeconfig",
        ),
        (
            "server = \"https://127.0.0.1:1\"\ncontext = \"a\"",
            "context only applies with kubeconfig",
        ),
        (
            "server = \"https://127.0.0.1:1\"\nclient_certificate = \"CERT\"",
            "client_certificate needs client_key too",
        ),
        ("connect_timeout = \"5s\"", "missing required key `server`"),
        (
            "kubeconfig = \"/nonexistent/kc\"",
            "kubeconfig /nonexistent/kc: cannot read",
        ),
    ];
    let cert = dir.path().join("c.pem");
    fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
    for (cluster, expected) in cases {
        let cluster = cluster.replace("CERT", &cert.display().to_string());
        let config = dir.path().join("k.toml");
        fs::write(&config, daemon_config(dir.path(), &cluster)).unwrap();
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(78), "{cluster}: {text}");
        assert!(
            text.contains(expected),
            "{cluster}: expected {expected:?} in {text}"
        );
    }
}

#[test]
fn rotated_token_file_is_used_and_a_401_is_survived() {
    let sim = tls_sim(SimOptions {
        token: Some("rotation-one-111".into()),
        ..SimOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    fs::write(&token, "rotation-one-111").unwrap();
    fs::write(dir.path().join("ca.pem"), sim.ca_pem().unwrap()).unwrap();
    let text = daemon_config(
        dir.path(),
        &format!(
            "server = {:?}\ncertificate_authority = {:?}\ntoken_file = {:?}",
            sim.url(),
            dir.path().join("ca.pem").display().to_string(),
            token.display().to_string()
        ),
    );
    let d = start(dir, &text, &[]);
    assert_events_flow(&sim, &d);
    // Rotation first on the client side (the server accepts both tokens
    // meanwhile, as during a real rotation): from then on only the new
    // token works, and the next requests use it.
    sim.handle().accept_token("rotation-two-222");
    fs::write(&token, "rotation-two-222").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    sim.set_token(Some("rotation-two-222".into()));
    sim.handle().clear_accepted_tokens();
    sim.end_watches();
    let pods = Resource::pods();
    sim.create(&pods, "default", "second", &[], json!({}));
    assert!(wait_until(WAIT, || records(&d.path("out.jsonl"))
        .iter()
        .any(|r| r["object"]["metadata"]["name"] == "second")));
    assert!(
        sim.requests().iter().all(|r| r.status != 401),
        "{:?}",
        sim.requests()
    );
    // The server first: the watch gets 401, re-reads the file, goes on.
    sim.set_token(Some("rotation-three-333".into()));
    sim.end_watches();
    assert!(wait_until(WAIT, || sim
        .requests()
        .iter()
        .any(|r| r.status == 401)));
    fs::write(&token, "rotation-three-333").unwrap();
    sim.create(&pods, "default", "third", &[], json!({}));
    assert!(
        wait_until(WAIT, || records(&d.path("out.jsonl"))
            .iter()
            .any(|r| r["object"]["metadata"]["name"] == "third")),
        "{}",
        d.log_text()
    );
    assert_no_secrets(
        &d,
        &["rotation-one-111", "rotation-two-222", "rotation-three-333"],
    );
}

/// A plugin script: counts its runs in DIR/runs, saves KUBERNETES_EXEC_INFO
/// to DIR/info, prints a token `exec-token-N` valid for `ttl` seconds (or a
/// client certificate), and says the token on stderr (which must not be
/// logged as is).
fn plugin(dir: &Path, api_version: &str, ttl: u32, cert: Option<(&Path, &Path)>) -> String {
    let status = match cert {
        None => "\"token\":\"exec-token-$n\",\"expirationTimestamp\":\"$exp\"".to_string(),
        Some((c, k)) => format!(
            "\"clientCertificateData\":\"$(awk '{{printf \"%s\\\\n\", $0}}' {})\",\"clientKeyData\":\"$(awk '{{printf \"%s\\\\n\", $0}}' {})\"",
            c.display(),
            k.display()
        ),
    };
    let script = format!(
        "#!/bin/sh\nset -e\nd={dir}\nn=$(( $(cat $d/runs 2>/dev/null || echo 0) + 1 ))\necho $n > $d/runs.tmp\nmv $d/runs.tmp $d/runs\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > $d/info.tmp\nmv $d/info.tmp $d/info\nexp=$(date -u -d \"+{ttl} seconds\" +%Y-%m-%dT%H:%M:%SZ)\necho \"plugin: issuing exec-token-$n\" >&2\ncat <<EOF\n{{\"apiVersion\":\"{api_version}\",\"kind\":\"ExecCredential\",\"status\":{{{status}}}}}\nEOF\n",
        dir = dir.display()
    );
    let path = dir.join("plugin.sh");
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn runs(dir: &Path) -> u32 {
    fs::read_to_string(dir.join("runs"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn exec_plugin_v1_short_lived_tokens_are_renewed() {
    let sim = tls_sim(SimOptions::default());
    for n in 1..=200 {
        sim.handle().accept_token(&format!("exec-token-{n}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("plugin");
    fs::create_dir(&pdir).unwrap();
    let cmd = plugin(&pdir, "client.authentication.k8s.io/v1", 3, None);
    fs::write(dir.path().join("ca.pem"), sim.ca_pem().unwrap()).unwrap();
    fs::write(
        dir.path().join("kubeconfig"),
        kubeconfig_one(
            &sim.url(),
            "    certificate-authority: ca.pem\n",
            &format!("    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {cmd}\n      args: [get-token]\n      env:\n      - {{name: PLUGIN_MODE, value: test}}\n      provideClusterInfo: true\n      interactiveMode: Never\n"),
        ),
    )
    .unwrap();
    let text = daemon_config(
        dir.path(),
        &format!(
            "kubeconfig = {:?}",
            dir.path().join("kubeconfig").display().to_string()
        ),
    );
    let d = start(dir, &text, &[]);
    assert_events_flow(&sim, &d);
    // Watches restart every 1–2 s; tokens live 3 s: the plugin runs again
    // before they expire, with no 401 on the way.
    assert!(wait_until(WAIT, || runs(&pdir) >= 3), "{}", d.log_text());
    assert!(sim.requests().iter().all(|r| r.status != 401 && r.had_auth));
    let info: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(pdir.join("info")).unwrap()).unwrap();
    assert_eq!(info["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(info["spec"]["interactive"], false);
    assert_eq!(info["spec"]["cluster"]["server"], sim.url());
    // A refused token: the plugin runs again at once and the watch goes on.
    let before = runs(&pdir);
    sim.handle().clear_accepted_tokens();
    for n in before + 1..=200 {
        sim.handle().accept_token(&format!("exec-token-{n}"));
    }
    sim.end_watches();
    sim.create(&Resource::pods(), "default", "late", &[], json!({}));
    assert!(
        wait_until(WAIT, || records(&d.path("out.jsonl"))
            .iter()
            .any(|r| r["object"]["metadata"]["name"] == "late")),
        "{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains("credential plugin stderr: plugin: issuing [redacted]"),
        "{log}"
    );
    let secrets: Vec<String> = (1..=runs(&pdir))
        .map(|n| format!("exec-token-{n}"))
        .collect();
    for s in &secrets {
        // "exec-token-1" is a prefix of "exec-token-10": grep whole tokens.
        let needle = format!("{s}\"");
        assert!(
            !log.contains(&needle) && !log.contains(&format!("{s}\n")),
            "{s} in log:\n{log}"
        );
    }
}

#[test]
fn exec_plugin_v1beta1_client_certificate() {
    let sim = tls_sim(SimOptions::default());
    let (cert, key) = sim.handle().issue_client_cert("from-plugin", &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("plugin");
    fs::create_dir(&pdir).unwrap();
    fs::write(pdir.join("c.crt"), &cert).unwrap();
    fs::write(pdir.join("c.key"), &key).unwrap();
    let cmd = plugin(
        &pdir,
        "client.authentication.k8s.io/v1beta1",
        3600,
        Some((&pdir.join("c.crt"), &pdir.join("c.key"))),
    );
    fs::write(
        dir.path().join("kubeconfig"),
        kubeconfig_one(
            &sim.url(),
            &format!("    certificate-authority-data: {}\n", b64(&sim.ca_pem().unwrap())),
            &format!("    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {cmd}\n"),
        ),
    )
    .unwrap();
    let text = daemon_config(
        dir.path(),
        &format!(
            "kubeconfig = {:?}",
            dir.path().join("kubeconfig").display().to_string()
        ),
    );
    let d = start(dir, &text, &[]);
    assert_events_flow(&sim, &d);
    assert!(sim
        .requests()
        .iter()
        .all(|r| r.client_cert && r.status != 401));
    // No expiry: one run is enough.
    assert_eq!(runs(&pdir), 1);
    let info: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(pdir.join("info")).unwrap()).unwrap();
    assert!(info["spec"].get("cluster").is_none(), "{info}");
    assert_no_secrets(&d, &key_lines(&key));
}

#[test]
fn exec_plugin_failures_are_retried_with_backoff() {
    let sim = tls_sim(SimOptions::default());
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("kubeconfig"),
        kubeconfig_one(
            &sim.url(),
            &format!("    certificate-authority-data: {}\n", b64(&sim.ca_pem().unwrap())),
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /nonexistent/plugin\n      installHint: install the plugin\n",
        ),
    )
    .unwrap();
    let text = daemon_config(
        dir.path(),
        &format!(
            "kubeconfig = {:?}",
            dir.path().join("kubeconfig").display().to_string()
        ),
    );
    let d = start(dir, &text, &[]);
    assert!(
        wait_until(WAIT, || {
            d
            .log_text()
            .contains("credential plugin: cannot run [\"/nonexistent/plugin\"]: No such file or directory (os error 2); install the plugin; retrying in")
        }),
        "{}",
        d.log_text()
    );
    assert!(sim.requests().is_empty());
}

#[test]
fn in_cluster_service_account() {
    let sim = tls_sim(SimOptions {
        token: Some("sa-token-in-cluster".into()),
        ..SimOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("serviceaccount");
    fs::create_dir(&sa).unwrap();
    fs::write(sa.join("token"), "sa-token-in-cluster").unwrap();
    fs::write(sa.join("ca.crt"), sim.ca_pem().unwrap()).unwrap();
    fs::write(sa.join("namespace"), "monitoring").unwrap();
    let text = daemon_config(dir.path(), "in_cluster = true");
    let port = sim.addr().port().to_string();
    let sa_dir = sa.display().to_string();
    let d = start(
        dir,
        &text,
        &[
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &port),
            ("KWATCHD_SERVICEACCOUNT_DIR", &sa_dir),
        ],
    );
    assert_events_flow(&sim, &d);
    assert!(
        d.log_text().contains("(namespace monitoring)"),
        "{}",
        d.log_text()
    );
    assert_no_secrets(&d, &["sa-token-in-cluster"]);
}

#[test]
fn ip_san_and_tls_server_name() {
    // A certificate for the IP only: an https://127.0.0.1 URL verifies
    // through the IP SAN.
    let sim = tls_sim(SimOptions {
        token: Some("ip-token-abcdefgh".into()),
        server_names: vec!["127.0.0.1".into()],
        ..SimOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ca.pem"), sim.ca_pem().unwrap()).unwrap();
    fs::write(dir.path().join("token"), "ip-token-abcdefgh").unwrap();
    let base = format!(
        "server = {:?}\ncertificate_authority = {:?}\ntoken_file = {:?}",
        sim.url(),
        dir.path().join("ca.pem").display().to_string(),
        dir.path().join("token").display().to_string()
    );
    let text = daemon_config(dir.path(), &base);
    let d = start(dir, &text, &[]);
    assert_events_flow(&sim, &d);
    drop(d);

    // A certificate for a name only: the IP URL fails verification unless
    // tls_server_name names it.
    let sim = tls_sim(SimOptions {
        token: Some("ip-token-abcdefgh".into()),
        server_names: vec!["kubernetes.internal".into()],
        ..SimOptions::default()
    });
    let files = tempfile::tempdir().unwrap();
    fs::write(files.path().join("ca.pem"), sim.ca_pem().unwrap()).unwrap();
    fs::write(files.path().join("token"), "ip-token-abcdefgh").unwrap();
    let base = format!(
        "server = {:?}\ncertificate_authority = {:?}\ntoken_file = {:?}",
        sim.url(),
        files.path().join("ca.pem").display().to_string(),
        files.path().join("token").display().to_string()
    );
    let dir = tempfile::tempdir().unwrap();
    let text = daemon_config(dir.path(), &base);
    let d = start(dir, &text, &[]);
    assert!(
        wait_until(WAIT, || d.log_text().contains("invalid peer certificate")),
        "{}",
        d.log_text()
    );
    assert!(
        sim.requests().is_empty(),
        "a request got through an unverified server"
    );
    drop(d);
    let dir = tempfile::tempdir().unwrap();
    let text = daemon_config(
        dir.path(),
        &format!("{base}\ntls_server_name = \"kubernetes.internal\""),
    );
    let d = start(dir, &text, &[]);
    assert_events_flow(&sim, &d);
    assert_no_secrets(&d, &["ip-token-abcdefgh"]);
}
