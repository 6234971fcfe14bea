//! The open-file limit (`RLIMIT_NOFILE`). Every watch holds a connection,
//! so the limit caps how many watches can run; the common default soft
//! limit of 1,024 is far below what thousands of watches need, while the
//! hard limit (524,288 under systemd) is not. So at start the soft limit is
//! raised to the hard limit, as Go's runtime does for every Go program (the
//! soft limit only exists to protect programs that `select()` on
//! descriptors, which kwatchd does not), and one line says how many watches
//! the limit leaves room for.
//!
//! When descriptors run out anyway, every connect attempt of every watch
//! fails: one warning a minute says so ([`warn_exhausted`]) instead of one
//! per attempt.

use crate::config::{Config, SinkConfig};
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Exhaustion is warned about at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Descriptors the daemon may open besides watches and what `reserve`
/// counts: the resolver, the state store, a kubeconfig or token being read.
const SLACK: u64 = 32;

/// What happened to the soft limit at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raise {
    Raised {
        from: u64,
        to: u64,
    },
    /// Already at the hard limit (or unlimited).
    AtHard {
        limit: u64,
    },
    Failed {
        soft: u64,
        hard: u64,
        errno: i32,
    },
    /// `getrlimit` itself failed.
    Unknown,
}

impl Raise {
    /// The soft limit in force now.
    pub fn limit(self) -> Option<u64> {
        match self {
            Raise::Raised { to, .. } => Some(to),
            Raise::AtHard { limit } => Some(limit),
            Raise::Failed { soft, .. } => Some(soft),
            Raise::Unknown => None,
        }
    }
}

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

/// Raises the soft limit to the hard one. An unlimited hard limit is not
/// accepted by Linux for descriptors: the kernel's ceiling
/// (`fs.nr_open`) is used then.
pub fn raise_soft_limit() -> Raise {
    let Some((soft, hard)) = limits() else {
        return Raise::Unknown;
    };
    let target = if hard == libc::RLIM_INFINITY {
        match std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            Some(n) => n,
            None => return Raise::AtHard { limit: soft },
        }
    } else {
        hard
    };
    if soft >= target {
        return Raise::AtHard { limit: soft };
    }
    let wanted = libc::rlimit {
        rlim_cur: target,
        rlim_max: hard,
    };
    // SAFETY: `wanted` is a valid rlimit; raising the soft limit up to the
    // hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
        Raise::Raised {
            from: soft,
            to: target,
        }
    } else {
        Raise::Failed {
            soft,
            hard,
            errno: io::Error::last_os_error().raw_os_error().unwrap_or(0),
        }
    }
}

/// Descriptors the daemon may need besides the watches' connections and
/// what is open now: metrics connections, hook pipes, webhook connections.
pub fn reserve(config: &Config) -> u64 {
    let metrics = if config.daemon.metrics_listen.is_some() {
        crate::metrics::server::MAX_CONNECTIONS as u64
    } else {
        0
    };
    let sinks: u64 = config
        .sinks
        .values()
        .map(|s| match s {
            // stdin, stdout, stderr and a pidfd per running hook.
            SinkConfig::Exec(e) => 4 * e.delivery.max_concurrent as u64,
            SinkConfig::Webhook(w) => w.delivery.max_concurrent as u64,
            // A file, or one connection to a NATS server.
            SinkConfig::File(_) | SinkConfig::Stdout | SinkConfig::Nats(_) => 1,
        })
        .sum();
    metrics + sinks + SLACK
}

/// Descriptors a watch holds: its connection (its state lives in the one
/// state store, counted in `SLACK`).
const PER_WATCH: u64 = 1;

/// How many watches fit: the limit, less what is open, less the reserve.
pub fn room_for_watches(limit: u64, open: u64, reserve: u64) -> u64 {
    limit.saturating_sub(open).saturating_sub(reserve) / PER_WATCH
}

/// The one start-up line: the limit, and whether `watches` fit in it.
pub fn report(raise: Raise, watches: usize, reserve: u64) {
    let Some(limit) = raise.limit() else {
        return;
    };
    let open = open_fds().unwrap_or(0);
    let room = room_for_watches(limit, open, reserve);
    let what = match raise {
        Raise::Raised { from, to } => {
            format!("soft limit raised from {from} to {to} (the hard limit)")
        }
        Raise::Failed { soft, hard, errno } => format!(
            "limit {soft} (could not raise it to the hard limit {hard}: {})",
            io::Error::from_raw_os_error(errno)
        ),
        Raise::AtHard { limit } => format!("limit {limit} (the hard limit)"),
        Raise::Unknown => return,
    };
    if (watches as u64) > room {
        log::warn!(
            "open files: {what} leaves room for about {room} watches, but {watches} are configured: the others cannot connect until descriptors free up; raise LimitNOFILE= in the unit (or ulimit -n)"
        );
    } else {
        log::info!("open files: {what}: room for about {room} watches ({watches} configured)");
    }
}

/// Descriptors open now.
pub fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory's own descriptor is listed too; it is closed right after.
    Some((dir.count() as u64).saturating_sub(1))
}

/// True when `e` says the process or the system is out of descriptors.
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// When the last warning went out, and failures since.
static EXHAUSTION: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));

/// Reports that `what` failed for lack of descriptors: a warning at most
/// once a minute with the count since the last one. The caller logs its
/// own line at debug level.
pub fn warn_exhausted(what: &dyn std::fmt::Display) {
    let now = Instant::now();
    let Ok(mut state) = EXHAUSTION.lock() else {
        return;
    };
    let (last, since) = &mut *state;
    *since += 1;
    if last.is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY) {
        return;
    }
    let more = *since - 1;
    *last = Some(now);
    *since = 0;
    let limit = soft_limit().map_or_else(|| "unlimited".to_owned(), |l| l.to_string());
    let open = open_fds().map_or_else(|| "?".to_owned(), |n| n.to_string());
    let earlier = if more > 0 {
        format!(" ({more} more such failures since the last warning)")
    } else {
        String::new()
    };
    log::warn!(
        "out of file descriptors (limit {limit}, {open} open): {what}{earlier}; connections fail until some close, and this is warned about at most once a minute (each failure is logged at debug level); raise LimitNOFILE= in the unit (or ulimit -n)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_the_limit_less_what_is_open_and_reserved() {
        assert_eq!(room_for_watches(1024, 20, 100), 904);
        assert_eq!(room_for_watches(64, 20, 100), 0);
    }

    #[test]
    fn exhaustion_is_emfile_or_enfile() {
        assert!(is_exhaustion(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_exhaustion(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNREFUSED
        )));
    }

    #[test]
    fn the_reserve_counts_metrics_hooks_and_webhooks() {
        let config = Config::parse(
            "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n[clusters.c]\nserver = \"http://127.0.0.1:1\"\n[[watch]]\nname = \"w\"\ncluster = \"c\"\napi_version = \"v1\"\nresource = \"pods\"\nsinks = [\"h\", \"s\"]\n[sinks.h]\ntype = \"exec\"\ncommand = [\"/bin/true\"]\nmax_concurrent = 3\n[sinks.s]\ntype = \"stdout\"\n",
            std::path::Path::new("k.toml"),
        )
        .unwrap();
        assert_eq!(reserve(&config), 64 + 4 * 3 + 1 + SLACK);
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        // The test process's own limit: raising twice is idempotent.
        let first = raise_soft_limit();
        let (soft, hard) = limits().unwrap();
        match first {
            Raise::Raised { to, .. } | Raise::AtHard { limit: to } => assert_eq!(soft, to),
            other => panic!("{other:?}"),
        }
        assert!(hard == libc::RLIM_INFINITY || soft == hard);
        assert_eq!(raise_soft_limit(), Raise::AtHard { limit: soft });
        assert_eq!(soft_limit(), Some(soft));
    }
}
