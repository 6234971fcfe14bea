//! deploy/kubernetes: every manifest parsed (and the ConfigMap kustomize
//! generates from kwatchd.toml), and what it promises checked
//! against the daemon itself: the RBAC is exactly what `kwatchd rbac`
//! prints for the ConfigMap's configuration (no more), the probes and the
//! scrape annotations point at the port the configuration listens on, the
//! configuration passes `kwatchd check`, the pods run as restricted as
//! Kubernetes allows, and the PodDisruptionBudget, the bindings and the
//! Deployment name the same pods and ServiceAccount.

mod common;

use common::BIN;
use kwatchd::config::{Config, LoadMode};
use kwatchd::lease::Verb;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NAMESPACE: &str = "kwatchd";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every YAML document of `text`, as JSON values.
fn documents(text: &str, what: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| {
            let yaml = serde_yaml_ng::Value::deserialize(d)
                .unwrap_or_else(|e| panic!("{what}: not YAML: {e}"));
            serde_json::to_value(yaml).unwrap_or_else(|e| panic!("{what}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The manifests kustomization.yaml lists, in its order.
struct Manifests {
    objects: Vec<Value>,
}

impl Manifests {
    fn load() -> Manifests {
        let kustomization = read(&dir().join("kustomization.yaml"));
        let k = &documents(&kustomization, "kustomization.yaml")[0];
        let mut objects = Vec::new();
        for file in strings(&k["resources"]) {
            let text = read(&dir().join(&file));
            for doc in documents(&text, &file) {
                assert!(
                    doc["apiVersion"].is_string() && doc["kind"].is_string(),
                    "{file}: a document without apiVersion and kind: {doc}"
                );
                objects.push(doc);
            }
        }
        // What kustomize generates: a ConfigMap per configMapGenerator
        // entry, its files as data (the name gets a hash suffix, which
        // kustomize also writes into the Deployment's reference).
        for generator in k["configMapGenerator"].as_array().into_iter().flatten() {
            let mut data = serde_json::Map::new();
            for file in strings(&generator["files"]) {
                data.insert(file.clone(), Value::String(read(&dir().join(&file))));
            }
            objects.push(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"], "namespace": generator["namespace"]},
                "data": data,
            }));
        }
        Manifests { objects }
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        match self.of_kind(kind).as_slice() {
            [one] => one,
            other => panic!("expected one {kind}, found {}", other.len()),
        }
    }

    /// The configuration the Deployment runs, written to a file in `dir`.
    fn config_file(&self, dir: &Path) -> PathBuf {
        let text = self.one("ConfigMap")["data"]["kwatchd.toml"]
            .as_str()
            .expect("the ConfigMap has data kwatchd.toml")
            .to_string();
        let path = dir.join("kwatchd.toml");
        std::fs::write(&path, text).expect("write the config");
        path
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

fn kwatchd(args: &[&str], config: &Path, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--config").arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run kwatchd")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn kustomization_lists_every_manifest_and_all_live_in_one_namespace() {
    let kustomization = read(&dir().join("kustomization.yaml"));
    let k = &documents(&kustomization, "k")[0];
    let mut listed: BTreeSet<String> = strings(&k["resources"]).into_iter().collect();
    for generator in k["configMapGenerator"].as_array().into_iter().flatten() {
        listed.extend(strings(&generator["files"]));
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir())
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, on_disk,
        "kustomization.yaml resources and generated files"
    );

    let m = Manifests::load();
    let kinds: BTreeSet<&str> = m
        .objects
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    let expected = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Namespace",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ];
    assert_eq!(kinds, expected.into_iter().collect());
    assert_eq!(m.one("Namespace")["metadata"]["name"], NAMESPACE);
    for o in &m.objects {
        let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"]
            .contains(&o["kind"].as_str().unwrap_or_default());
        let ns = &o["metadata"]["namespace"];
        if cluster_scoped {
            assert!(ns.is_null(), "{o}");
        } else {
            assert_eq!(ns, NAMESPACE, "{o}");
        }
    }
}

#[test]
fn the_configmap_passes_kwatchd_check() {
    let m = Manifests::load();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = m.config_file(tmp.path());

    let out = kwatchd(&["check", "--offline"], &config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("valid (1 clusters, 3 watches"),
        "{}",
        text(&out)
    );

    // The full check reads the service account as a pod has it mounted.
    let sa = tmp.path().join("serviceaccount");
    std::fs::create_dir(&sa).expect("mkdir");
    let ca = rcgen::generate_simple_self_signed(vec!["kubernetes".into()]).expect("CA");
    std::fs::write(sa.join("ca.crt"), ca.cert.pem()).expect("ca.crt");
    std::fs::write(sa.join("token"), "t0ken").expect("token");
    std::fs::write(sa.join("namespace"), NAMESPACE).expect("namespace");
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--config"])
        .arg(&config)
        .env("KWATCHD_SERVICEACCOUNT_DIR", &sa)
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .env("KUBERNETES_SERVICE_PORT", "443");
    let out = cmd.output().expect("run kwatchd");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Leader election on, against the in-cluster API server.
    let c = Config::load_offline(&config).expect("offline load");
    let le = c
        .daemon
        .leader_election
        .as_ref()
        .expect("leader election on");
    assert_eq!(le.namespace, NAMESPACE);
    // Offline the service account is not read, so ask the file itself.
    let table: toml::Table = read(&config).parse().expect("TOML");
    assert_eq!(
        table["clusters"][&le.cluster]["in_cluster"].as_bool(),
        Some(true)
    );
    assert!(c.watches.iter().all(|w| w.cluster == le.cluster));
    Config::check(&config, LoadMode::Offline).expect("library check agrees");
}

/// What identifies an RBAC object, and what it grants or binds.
fn rbac_objects(objects: &[&Value]) -> BTreeMap<(String, String, String), Value> {
    objects
        .iter()
        .map(|o| {
            let key = (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            let body =
                json!({"rules": o["rules"], "roleRef": o["roleRef"], "subjects": o["subjects"]});
            (key, body)
        })
        .collect()
}

const RBAC_KINDS: [&str; 4] = ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"];

#[test]
fn rbac_is_exactly_what_kwatchd_rbac_prints_for_the_config() {
    let m = Manifests::load();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = m.config_file(tmp.path());
    let sa = m.one("ServiceAccount");
    let sa_name = sa["metadata"]["name"].as_str().expect("SA name");
    let out = kwatchd(
        &[
            "rbac",
            "--namespace",
            NAMESPACE,
            "--service-account",
            sa_name,
        ],
        &config,
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = documents(&String::from_utf8_lossy(&out.stdout), "kwatchd rbac");
    let printed: Vec<&Value> = printed.iter().collect();
    let shipped: Vec<&Value> = RBAC_KINDS.iter().flat_map(|k| m.of_kind(k)).collect();
    assert_eq!(
        rbac_objects(&shipped),
        rbac_objects(&printed),
        "deploy/kubernetes RBAC differs from `kwatchd rbac --config` of the ConfigMap"
    );

    // What that means, said directly: the Lease Role grants the elector's
    // verbs on the configured Lease, and the watches only list and watch.
    let c = Config::load_offline(&config).expect("offline load");
    let le = c.daemon.leader_election.expect("leader election on");
    let lease_role = m
        .of_kind("Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == le.namespace.as_str())
        .expect("a Role in the Lease's namespace");
    let mut verbs: Vec<String> = Vec::new();
    for rule in lease_role["rules"].as_array().expect("rules") {
        assert_eq!(rule["apiGroups"], json!(["coordination.k8s.io"]));
        assert_eq!(rule["resources"], json!(["leases"]));
        let rule_verbs = strings(&rule["verbs"]);
        if rule_verbs != ["create"] {
            assert_eq!(rule["resourceNames"], json!([le.name]), "{rule}");
        }
        verbs.extend(rule_verbs);
    }
    verbs.sort();
    let mut requested: Vec<String> = Verb::ALL.iter().map(|v| v.as_str().to_string()).collect();
    requested.sort();
    assert_eq!(verbs, requested);
    for role in m.of_kind("ClusterRole") {
        for rule in role["rules"].as_array().expect("rules") {
            assert_eq!(rule["verbs"], json!(["list", "watch"]), "{rule}");
            assert!(!rule.to_string().contains('*'), "no wildcards: {rule}");
        }
    }
    for binding in m
        .of_kind("RoleBinding")
        .into_iter()
        .chain(m.of_kind("ClusterRoleBinding"))
    {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": sa_name, "namespace": sa["metadata"]["namespace"]}]),
        );
    }
}

#[test]
fn the_deployment_runs_two_restricted_replicas_probed_on_the_metrics_port() {
    let m = Manifests::load();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config_path = m.config_file(tmp.path());
    let config = Config::load_offline(&config_path).expect("offline load");
    let d = m.one("Deployment");
    assert_eq!(d["spec"]["replicas"], 2);
    assert!(
        config.daemon.leader_election.is_some(),
        "2 replicas need leader election"
    );
    let pod = &d["spec"]["template"];
    let spec = &pod["spec"];
    assert_eq!(
        spec["serviceAccountName"],
        m.one("ServiceAccount")["metadata"]["name"]
    );
    let containers = spec["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // The metrics port: named, the configuration's, probed and scraped.
    let listen = config.daemon.metrics_listen.expect("metrics_listen");
    assert!(
        listen.ip().is_unspecified(),
        "the kubelet probes the pod IP: {listen}"
    );
    let ports = c["ports"].as_array().expect("ports");
    let metrics = ports
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a port named metrics");
    assert_eq!(metrics["containerPort"], listen.port());
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "metrics", "{probe}");
    }
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], listen.port().to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // Restricted: non-root with a numeric uid, nothing to escalate to.
    for sc in [&spec["securityContext"], &c["securityContext"]] {
        assert_eq!(sc["runAsNonRoot"], true, "{sc}");
        assert!(sc["runAsUser"].as_u64().is_some_and(|u| u > 0), "{sc}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{sc}");
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(sc["capabilities"]["add"].is_null());
    // The image runs as that uid too.
    let dockerfile = read(&dir().join("../Dockerfile"));
    let user = format!("USER {0}:{0}", sc["runAsUser"]);
    assert!(
        dockerfile.lines().any(|l| l == user),
        "Dockerfile lacks {user}"
    );

    // Requests and limits.
    for key in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][key][r].is_string(), "resources.{key}.{r}");
        }
    }

    // Volumes: the config from the ConfigMap where --config reads it, and
    // state_dir on an emptyDir (the root filesystem is read-only).
    let args = strings(&c["args"]);
    let at = args.iter().position(|a| a == "--config").expect("--config");
    let config_arg = Path::new(&args[at + 1]);
    assert_eq!(args[0], "run");
    let volumes = spec["volumes"].as_array().expect("volumes");
    let volume = |mount_path: &Path| {
        let mount = c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|v| v["mountPath"].as_str().map(Path::new) == Some(mount_path))
            .unwrap_or_else(|| panic!("nothing mounted at {}", mount_path.display()));
        volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mount's volume")
    };
    let config_volume = volume(config_arg.parent().expect("a directory"));
    assert_eq!(
        config_volume["configMap"]["name"],
        m.one("ConfigMap")["metadata"]["name"]
    );
    assert_eq!(
        config_arg.file_name().and_then(|n| n.to_str()),
        Some("kwatchd.toml")
    );
    assert!(volume(&config.daemon.state_dir)["emptyDir"].is_object());

    // Room for the drain on SIGTERM, and then some for the Lease release.
    let grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > config.daemon.shutdown_timeout.as_secs() + 5,
        "{grace}"
    );
}

#[test]
fn the_disruption_budget_keeps_one_of_the_deployments_pods() {
    let m = Manifests::load();
    let d = m.one("Deployment");
    let pdb = m.one("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(pdb["spec"]["minAvailable"].as_u64() < d["spec"]["replicas"].as_u64());
    let selector = &pdb["spec"]["selector"]["matchLabels"];
    assert_eq!(selector, &d["spec"]["selector"]["matchLabels"]);
    let labels = d["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("pod labels");
    for (k, v) in selector.as_object().expect("matchLabels") {
        assert_eq!(labels.get(k), Some(v), "pod label {k}");
    }
    assert!(!selector.as_object().expect("matchLabels").is_empty());
}
