//! The hook's environment: a minimal base, the event, the operator's `env`.
//!
//! Built from scratch (the child is spawned with `env_clear()`): the daemon's
//! environment may hold a bearer token, a webhook secret or cloud
//! credentials, and none of it may reach an operator's script by accident.

use super::HookSpec;
use crate::sink::EventMeta;

/// `PATH` for hooks when the daemon has none (systemd always sets one; an
/// `env -i` start does not).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The complete environment of a hook, in order: `PATH`, `HOME`, `LANG` from
/// the daemon's environment (`PATH` defaults to [`DEFAULT_PATH`] when unset
/// or empty; `HOME` and `LANG` are left out when unset or not UTF-8), then
/// the `KWATCHD_*` variables describing `meta` (in a batch: its first
/// record), `KWATCHD_BATCH_SIZE`, then `spec.env`.
///
/// Names are unique: a later entry replaces an earlier one in place, so an
/// operator's `env` may override `PATH` (or even a `KWATCHD_*` variable,
/// which is the operator's explicit choice).
pub fn hook_env(meta: &EventMeta, batch_size: usize, spec: &HookSpec) -> Vec<(String, String)> {
    build(|name| std::env::var(name).ok(), meta, batch_size, spec)
}

fn build(
    daemon_var: impl Fn(&str) -> Option<String>,
    meta: &EventMeta,
    batch_size: usize,
    spec: &HookSpec,
) -> Vec<(String, String)> {
    let mut env = Vec::with_capacity(14 + spec.env.len());
    let path = daemon_var("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PATH.to_owned());
    set(&mut env, "PATH", path);
    for name in ["HOME", "LANG"] {
        if let Some(value) = daemon_var(name) {
            set(&mut env, name, value);
        }
    }
    let event: [(&str, &str); 10] = [
        ("KWATCHD_WATCH", &meta.watch),
        ("KWATCHD_CLUSTER", &meta.cluster),
        ("KWATCHD_EVENT", meta.event_type),
        ("KWATCHD_ORIGIN", meta.origin),
        ("KWATCHD_API_VERSION", &meta.api_version),
        ("KWATCHD_KIND", &meta.kind),
        ("KWATCHD_NAMESPACE", &meta.namespace),
        ("KWATCHD_NAME", &meta.name),
        ("KWATCHD_UID", &meta.uid),
        ("KWATCHD_RESOURCE_VERSION", &meta.resource_version),
    ];
    for (name, value) in event {
        set(&mut env, name, value.to_owned());
    }
    set(&mut env, "KWATCHD_BATCH_SIZE", batch_size.to_string());
    for (name, value) in &spec.env {
        set(&mut env, name, value.clone());
    }
    env
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name.to_owned(), value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(env: &[(&str, &str)]) -> HookSpec {
        HookSpec {
            sink: "s".into(),
            command: vec!["/bin/true".into()],
            working_dir: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            timeout: Duration::from_secs(1),
            kill_grace: Duration::from_secs(1),
            output_cap: 1024,
            leftovers: crate::sink::exec::Leftovers::Kill,
        }
    }

    fn meta() -> EventMeta {
        EventMeta {
            watch: "pods".into(),
            cluster: "prod".into(),
            event_type: "MODIFIED",
            origin: "watch",
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "web-1".into(),
            uid: "u-1".into(),
            resource_version: "42".into(),
        }
    }

    #[test]
    fn order_defaults_and_overrides() {
        let daemon = |name: &str| match name {
            "HOME" => Some("/root".to_owned()),
            "KUBE_TOKEN" => Some("secret".to_owned()),
            _ => None,
        };
        let env = build(
            daemon,
            &meta(),
            3,
            &spec(&[("PATH", "/opt/bin"), ("X", "1")]),
        );
        let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "HOME",
                "KWATCHD_WATCH",
                "KWATCHD_CLUSTER",
                "KWATCHD_EVENT",
                "KWATCHD_ORIGIN",
                "KWATCHD_API_VERSION",
                "KWATCHD_KIND",
                "KWATCHD_NAMESPACE",
                "KWATCHD_NAME",
                "KWATCHD_UID",
                "KWATCHD_RESOURCE_VERSION",
                "KWATCHD_BATCH_SIZE",
                "X",
            ]
        );
        // The operator's PATH replaced the default in place.
        assert_eq!(env[0].1, "/opt/bin");
        assert_eq!(env[12].1, "3");
        assert_eq!(env[4].1, "MODIFIED");
    }

    #[test]
    fn path_defaults_when_unset_or_empty() {
        for daemon_path in [None, Some(String::new())] {
            let env = build(|_| daemon_path.clone(), &meta(), 1, &spec(&[]));
            assert_eq!(env[0], ("PATH".to_owned(), DEFAULT_PATH.to_owned()));
        }
    }
}
