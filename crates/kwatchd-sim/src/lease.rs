//! Faults aimed at one client's Lease requests, for leader-election tests: a partition of the leader from the
//! API server, a slow renew, while every other client (and every other request of that client) goes through.
//!
//! Leases themselves need nothing special: `coordination.k8s.io/v1` `leases` are served like every resource
//! (get, list, watch, create, update with a resourceVersion precondition answered 409 when stale, delete).
//! A client is named by its bearer token (every request of the client) or by the `spec.holderIdentity` its
//! request body carries (its creates, updates and patches of a Lease, as a leader's renewals are).

use std::time::Duration;

use serde_json::Value;

use super::http::Request;

/// Whose Lease requests a [`LeaseFault`] hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseClient {
    /// Requests with this bearer token.
    Token(String),
    /// Requests whose body names this `spec.holderIdentity` (creates, updates, patches).
    Holder(String),
}

/// What happens to a hit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// Answer this status (a `Status` body) without touching the Lease.
    Fail {
        /// HTTP status code, e.g. 500, 503 or 504.
        code: u16,
    },
    /// Wait this long, then serve the request as usual.
    Delay(Duration),
}

/// A fault for one client's requests on `leases`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFault {
    pub client: LeaseClient,
    pub action: LeaseAction,
    /// How many requests it hits; `None`: until removed with `clear_lease_faults`.
    pub times: Option<usize>,
}

impl LeaseFault {
    /// Every Lease request of this client fails with `code` until cleared: a partition.
    pub fn partition(client: LeaseClient, code: u16) -> LeaseFault {
        LeaseFault {
            client,
            action: LeaseAction::Fail { code },
            times: None,
        }
    }
}

/// A request on a `coordination.k8s.io` `leases` collection or object (subresources included).
fn is_lease_request(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    matches!(
        segs.as_slice(),
        ["apis", "coordination.k8s.io", _, "leases", ..]
            | [
                "apis",
                "coordination.k8s.io",
                _,
                "namespaces",
                _,
                "leases",
                ..
            ]
    )
}

fn holder(req: &Request) -> Option<String> {
    let v: Value = serde_json::from_slice(&req.body).ok()?;
    v.pointer("/spec/holderIdentity")?
        .as_str()
        .map(str::to_string)
}

/// The action of the first fault that hits this request, consuming one of its `times`; `hits` counts it.
pub(crate) fn take(
    faults: &mut Vec<LeaseFault>,
    hits: &mut u64,
    req: &Request,
    bearer: Option<&str>,
) -> Option<LeaseAction> {
    if faults.is_empty() || !is_lease_request(&req.path) {
        return None;
    }
    let holder = holder(req);
    let i = faults.iter().position(|f| match &f.client {
        LeaseClient::Token(t) => bearer == Some(t.as_str()),
        LeaseClient::Holder(h) => holder.as_deref() == Some(h.as_str()),
    })?;
    *hits += 1;
    let action = faults[i].action.clone();
    if let Some(n) = faults[i].times.as_mut() {
        *n = n.saturating_sub(1);
        if *n == 0 {
            faults.remove(i);
        }
    }
    Some(action)
}

#[cfg(test)]
mod tests;
