//! `kwatchd sim`: the API server emulator on its own, as a cluster to point kubectl, a hook under development
//! or a kwatchd at. It writes a kubeconfig for it and serves until SIGINT or SIGTERM.
//!
//! Plain HTTP without authentication by default; `--tls` serves HTTPS with a freshly generated CA (in the
//! kubeconfig) and requires a bearer token (in the kubeconfig too). Nothing is kept between runs.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use kwatchd_sim::{Resource, Sim, SimHandle, SimOptions};
use serde_json::json;

/// What `kwatchd sim` was asked for.
#[derive(Debug, Clone, Default)]
pub struct SimCommand {
    /// Where to listen; default 127.0.0.1 on a free port.
    pub listen: Option<SocketAddr>,
    /// Where to write the kubeconfig; default `./kwatchd-sim.kubeconfig`.
    pub kubeconfig_out: Option<PathBuf>,
    /// HTTPS with a generated CA and a bearer token.
    pub tls: bool,
}

/// The namespaces a fresh cluster has.
pub const NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Create the namespaces a fresh cluster has, Active, as the API server would show them.
pub fn seed_namespaces(sim: &SimHandle) {
    let namespaces = Resource::namespaces();
    for ns in NAMESPACES {
        sim.create(
            &namespaces,
            "",
            ns,
            &[("kubernetes.io/metadata.name", ns)],
            json!({"spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        );
    }
}

/// A kubeconfig for the emulator: its URL, its CA (TLS) and token (when it has one), namespace `default`.
pub fn kubeconfig(url: &str, ca_pem: Option<&str>, token: Option<&str>) -> String {
    let mut out =
        String::from("apiVersion: v1\nkind: Config\nclusters:\n- name: kwatchd-sim\n  cluster:\n");
    let _ = writeln!(out, "    server: {url}");
    if let Some(ca) = ca_pem {
        let b64 = base64::engine::general_purpose::STANDARD.encode(ca);
        let _ = writeln!(out, "    certificate-authority-data: {b64}");
    }
    out.push_str("users:\n- name: kwatchd-sim\n  user:");
    match token {
        Some(t) => {
            let _ = write!(out, "\n    token: {t}\n");
        }
        None => out.push_str(" {}\n"),
    }
    out.push_str(
        "contexts:\n- name: kwatchd-sim\n  context:\n    cluster: kwatchd-sim\n    user: kwatchd-sim\n    namespace: default\ncurrent-context: kwatchd-sim\n",
    );
    out
}

/// A token for `--tls`: random enough that another local user cannot guess it while the emulator runs.
fn new_token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Write `text` to `path` readable by its owner only (it may hold a token), replacing what was there.
pub fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    io::Write::write_all(&mut f, text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// Start the emulator as asked, with its namespaces, and write its kubeconfig; returns it and the path.
pub fn start(cmd: &SimCommand) -> Result<(Sim, PathBuf), Box<dyn std::error::Error>> {
    let token = if cmd.tls { Some(new_token()?) } else { None };
    let sim = Sim::start(SimOptions {
        tls: cmd.tls,
        token: token.clone(),
        addr: cmd.listen,
        bookmark_interval: Some(Duration::from_secs(60)),
        ..SimOptions::default()
    })
    .map_err(|e| format!("cannot start the emulator: {e}"))?;
    seed_namespaces(&sim.handle());
    let path = cmd
        .kubeconfig_out
        .clone()
        .unwrap_or_else(|| PathBuf::from("kwatchd-sim.kubeconfig"));
    let text = kubeconfig(&sim.url(), sim.ca_pem().as_deref(), token.as_deref());
    write_private(&path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((sim, path))
}

/// `kwatchd sim`: serve until SIGINT or SIGTERM.
pub fn run(cmd: &SimCommand) -> Result<(), Box<dyn std::error::Error>> {
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])?;
    let (sim, path) = start(cmd)?;
    let kc = path.display();
    println!("kwatchd sim: API server emulator at {}", sim.url());
    println!("kwatchd sim: kubeconfig written to {kc}");
    println!(
        "  kubectl --kubeconfig {kc} create deployment web --image=nginx --dry-run=client -o yaml | kubectl --kubeconfig {kc} create -f -"
    );
    println!("  kubectl --kubeconfig {kc} get deployments,pods,configmaps -A");
    println!("  a kwatchd config:  [clusters.sim]  kubeconfig = \"{kc}\"");
    println!("kwatchd sim: serves pods, configmaps, secrets, namespaces, deployments, CRDs, leases…; press Ctrl-C to stop");
    let _ = signals.forever().next();
    println!("kwatchd sim: stopping");
    sim.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_with_and_without_credentials() {
        let plain = kubeconfig("http://127.0.0.1:1", None, None);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&plain).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"].as_str(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(v["current-context"].as_str(), Some("kwatchd-sim"));
        assert!(v["users"][0]["user"]["token"].is_null());
        let tls = kubeconfig("https://127.0.0.1:1", Some("PEM"), Some("t0k"));
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&tls).unwrap();
        assert_eq!(v["users"][0]["user"]["token"].as_str(), Some("t0k"));
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"].as_str(),
            Some("UEVN")
        );
    }
}
