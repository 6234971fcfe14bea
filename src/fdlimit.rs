//! The open-file limit (`RLIMIT_NOFILE`): every watch holds a connection,
//! so the limit caps how many watches can run.

/// The current soft limit; `None` when unlimited or unreadable.
pub fn soft_limit() -> Option<u64> {
    limits()
        .map(|(soft, _)| soft)
        .filter(|s| *s != libc::RLIM_INFINITY)
}

/// Soft and hard limit.
fn limits() -> Option<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `l` is a valid rlimit to write to.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0)
        .then_some((l.rlim_cur, l.rlim_max))
}
