//! `[daemon.leader_election]`: which Lease the replicas of one deployment
//! share and how fast they judge it. Absent: no election, every replica
//! delivers (the behaviour without HA). Defaults are client-go's.

use std::time::Duration;

use super::doc::{Ctx, TableNode};
use super::fields::{duration, optional, owned, reference, required, size, with_default};
use super::syntax::{check_dns_subdomain, check_namespace};

/// Every key of `[daemon.leader_election]`.
pub(crate) const KEYS: &[&str] = &[
    "cluster",
    "namespace",
    "name",
    "identity",
    "lease_duration",
    "renew_deadline",
    "retry_period",
    "standby_buffer",
];

pub const DEFAULT_LEASE_NAMESPACE: &str = "kwatchd";
pub const DEFAULT_LEASE_NAME: &str = "kwatchd";
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Default `standby_buffer`: bytes of records a standby keeps per sink.
pub const DEFAULT_STANDBY_BUFFER: usize = 64 << 20;
const STANDBY_BUFFER_RANGE: (u64, u64) = (64 << 10, 64 << 30);

/// `leaseDurationSeconds` is whole seconds: so are the bounds.
const LEASE_DURATION_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));
const PERIOD_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(3600));

/// `[daemon.leader_election]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// The `[clusters.NAME]` whose API server holds the Lease.
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    /// `None`: `<hostname>_<8 random hex>`, chosen once per process (so a
    /// reload never changes it and a restart never inherits a Lease).
    pub identity: Option<String>,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    /// Bytes of records a standby keeps per sink (with the sink's event
    /// bound) until the leader confirms them or this replica takes over;
    /// beyond it the watches stop reading (TCP backpressure).
    pub standby_buffer: usize,
}

/// Parses `leader_election` of the `[daemon]` table; `Some(None)` when absent.
pub(super) fn parse(
    ctx: &mut Ctx,
    daemon: &TableNode,
    clusters: &[String],
) -> Option<Option<LeaderElectionConfig>> {
    let Some(field) = daemon.get("leader_election") else {
        return Some(None);
    };
    let t = field.table(ctx, "[daemon.leader_election]".to_string())?;
    t.check_keys(ctx, KEYS);
    let cluster = required(ctx, &t, "cluster", |s| {
        reference("clusters", "cluster", s, clusters)
    });
    let namespace = with_default(
        ctx,
        &t,
        "namespace",
        DEFAULT_LEASE_NAMESPACE.to_string(),
        owned(check_namespace),
    );
    let name = with_default(
        ctx,
        &t,
        "name",
        DEFAULT_LEASE_NAME.to_string(),
        owned(|s| check_dns_subdomain(s).map_err(|e| format!("invalid Lease name: {e}"))),
    );
    let identity = optional(ctx, &t, "identity", owned(check_identity));
    let lease_duration = duration(
        ctx,
        &t,
        "lease_duration",
        DEFAULT_LEASE_DURATION,
        LEASE_DURATION_RANGE,
    );
    let renew_deadline = duration(
        ctx,
        &t,
        "renew_deadline",
        DEFAULT_RENEW_DEADLINE,
        PERIOD_RANGE,
    );
    let retry_period = duration(ctx, &t, "retry_period", DEFAULT_RETRY_PERIOD, PERIOD_RANGE);
    let standby_buffer = t
        .get("standby_buffer")
        .map_or(Some(DEFAULT_STANDBY_BUFFER), |f| {
            size(ctx, &f, STANDBY_BUFFER_RANGE)
        });
    let (lease_duration, renew_deadline, retry_period) =
        (lease_duration?, renew_deadline?, retry_period?);
    let order = check_order(lease_duration, renew_deadline, retry_period);
    let at = |key| t.get(key).unwrap_or_else(|| field.clone());
    match order {
        Err((key, message)) => {
            at(key).error(ctx, message);
            None
        }
        Ok(()) => Some(Some(LeaderElectionConfig {
            cluster: cluster?,
            namespace: namespace?,
            name: name?,
            identity: identity?,
            lease_duration,
            renew_deadline,
            retry_period,
            standby_buffer: standby_buffer?,
        })),
    }
}

/// client-go's `NewLeaderElector` checks, plus whole seconds for the Lease
/// (its `leaseDurationSeconds` is an integer): the key to blame and why.
fn check_order(
    lease: Duration,
    renew: Duration,
    retry: Duration,
) -> Result<(), (&'static str, String)> {
    let fmt = humantime::format_duration;
    if lease.subsec_nanos() != 0 {
        return Err((
            "lease_duration",
            format!(
                "lease_duration {} is not whole seconds (the Lease stores seconds)",
                fmt(lease)
            ),
        ));
    }
    if renew >= lease {
        return Err((
            "renew_deadline",
            format!(
                "renew_deadline {} must be shorter than lease_duration {}: a leader must stop before another may take over",
                fmt(renew),
                fmt(lease)
            ),
        ));
    }
    // client-go: RenewDeadline > JitterFactor * RetryPeriod.
    if renew <= retry.mul_f64(1.2) {
        return Err((
            "retry_period",
            format!(
                "renew_deadline {} must be longer than 1.2 x retry_period {}: a leader needs more than one try per deadline",
                fmt(renew),
                fmt(retry)
            ),
        ));
    }
    Ok(())
}

/// The holder identity is any non-empty printable string without spaces
/// (client-go only requires it non-empty; spaces would make logs ambiguous).
fn check_identity(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid identity {s:?}: 1 to 253 characters, no spaces or control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_ordered_as_client_go_requires() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let cases: &[(Duration, Duration, Duration, Option<&str>)] = &[
            (s(15), s(10), s(2), None),
            (s(3), s(2), ms(500), None),
            (s(10), s(10), s(2), Some("renew_deadline")),
            (s(10), s(12), s(2), Some("renew_deadline")),
            (s(15), s(10), s(9), Some("retry_period")),
            (ms(1500), ms(1000), ms(100), Some("lease_duration")),
        ];
        for &(lease, renew, retry, blamed) in cases {
            let got = check_order(lease, renew, retry).err().map(|(k, _)| k);
            assert_eq!(got, blamed, "{lease:?} {renew:?} {retry:?}");
        }
    }

    #[test]
    fn identities() {
        assert!(check_identity("node-a_0badc0de").is_ok());
        assert!(check_identity("").is_err());
        assert!(check_identity("a b").is_err());
    }
}
