//! Realistic pod bodies of a chosen size, for benchmarks and the demo.

use serde_json::{json, Value};

/// A pod's `spec` and `status` (containers, env, volumes, conditions) padded with env vars to about
/// `size_bytes` of JSON (never less than the unpadded pod, a bit under 1 KB).
pub fn pod_extra(size_bytes: usize) -> Value {
    let mut v = json!({
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.example.com/team/app:1.24.3",
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "env": [],
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/app", "readOnly": true},
                    {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
                ],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
            }],
            "volumes": [
                {"name": "config", "configMap": {"name": "app-config"}},
                {"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}
            ],
            "nodeName": "node-1",
            "restartPolicy": "Always",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.17",
            "hostIP": "172.18.0.3",
            "qosClass": "Burstable",
            "startTime": "2024-05-01T10:00:00Z",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:00:05Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2024-05-01T10:00:05Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"}
            ],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "started": true,
                "image": "registry.example.com/team/app:1.24.3", "state": {"running": {"startedAt": "2024-05-01T10:00:02Z"}}}]
        }
    });
    let base = v.to_string().len();
    let mut missing = size_bytes.saturating_sub(base);
    let mut env = Vec::new();
    let mut i = 0;
    // Each entry costs its value plus about 40 bytes of JSON around it.
    while missing > 0 {
        let overhead = format!("{{\"name\":\"SETTING_{i:05}\",\"value\":\"\"}},").len();
        let len = missing.saturating_sub(overhead).min(200);
        env.push(json!({"name": format!("SETTING_{i:05}"), "value": "v".repeat(len)}));
        missing = missing.saturating_sub(overhead + len);
        i += 1;
    }
    v["spec"]["containers"][0]["env"] = Value::Array(env);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_close() {
        for want in [2000usize, 4096, 65_536, 1 << 20] {
            let got = pod_extra(want).to_string().len();
            assert!(got.abs_diff(want) <= 64, "want {want} got {got}");
        }
        assert!(pod_extra(0).to_string().len() > 500);
    }
}
