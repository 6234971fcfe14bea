//! Process figures from `/proc/self` and `getrlimit` (allowed under systemd's
//! `ProcSubset=pid`, which hides `/proc/stat`: the start time is therefore
//! derived from `CLOCK_BOOTTIME`, not from `btime`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The standard `process_*` figures (as Prometheus' client libraries
/// export them, so stock dashboards work).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time.
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE`.
    pub max_fds: Option<u64>,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the current figures; what cannot be read stays `None`.
    pub fn read() -> ProcessStats {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| Stat::parse(&s));
        let page = sysconf(libc::_SC_PAGESIZE);
        let hz = sysconf(libc::_SC_CLK_TCK);
        ProcessStats {
            cpu_seconds: stat
                .zip(hz)
                .map(|(s, hz)| (s.utime + s.stime) as f64 / hz as f64),
            resident_memory_bytes: stat.zip(page).map(|(s, page)| s.rss_pages * page),
            virtual_memory_bytes: stat.map(|s| s.vsize),
            open_fds: crate::fdlimit::open_fds(),
            max_fds: crate::fdlimit::soft_limit(),
            start_time_seconds: stat.zip(hz).and_then(|(s, hz)| start_time_seconds(s, hz)),
        }
    }
}

/// The fields of `/proc/self/stat` the figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// Clock ticks in user and in kernel mode.
    utime: u64,
    stime: u64,
    /// Clock ticks after boot.
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

impl Stat {
    /// The process name (field 2) is in parentheses and may hold spaces and
    /// parentheses itself: fields are counted after the last `)`.
    fn parse(stat: &str) -> Option<Stat> {
        let rest = &stat[stat.rfind(')')? + 1..];
        // Fields 3.. follow: field N is at index N - 3.
        let fields: Vec<&str> = rest.split_ascii_whitespace().take(22).collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            start_ticks: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

/// The start (clock ticks after boot) turned into wall time:
/// now − (time since boot − start after boot).
fn start_time_seconds(stat: Stat, hz: u64) -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    let since_boot = Duration::new(u64::try_from(ts.tv_sec).ok()?, ts.tv_nsec as u32);
    let started_after_boot = Duration::from_secs_f64(stat.start_ticks as f64 / hz as f64);
    let age = since_boot.checked_sub(started_after_boot)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Some(now.checked_sub(age)?.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_process_names() {
        let stat = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 98765 1000 200 18446744073709551615";
        assert_eq!(
            Stat::parse(stat),
            Some(Stat {
                utime: 5,
                stime: 6,
                start_ticks: 98765,
                vsize: 1000,
                rss_pages: 200,
            })
        );
        assert_eq!(Stat::parse("garbage"), None);
        assert_eq!(Stat::parse("1 (x) S 1 2 3"), None);
    }

    #[test]
    fn own_figures_are_plausible() {
        // Burn a little CPU so the counter has something to show.
        let mut x = 0u64;
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let p = ProcessStats::read();
        assert!(p.cpu_seconds.unwrap() > 0.0);
        let rss = p.resident_memory_bytes.unwrap();
        assert!(rss > 1 << 20);
        assert!(p.virtual_memory_bytes.unwrap() >= rss);
        let open = p.open_fds.unwrap();
        assert!(open >= 3);
        assert!(p.max_fds.unwrap() >= open);
        let start = p.start_time_seconds.unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
    }
}
