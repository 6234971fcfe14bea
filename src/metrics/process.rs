//! Process figures from `/proc/self` (allowed under systemd's
//! `ProcSubset=pid`, which hides `/proc/stat`: the start time is therefore
//! derived from `CLOCK_BOOTTIME`, not from `btime`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_memory_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the current figures; what cannot be read stays `None`.
    pub fn read() -> ProcessStats {
        ProcessStats {
            resident_memory_bytes: resident_memory_bytes(),
            open_fds: open_fds(),
            start_time_seconds: start_time_seconds(),
        }
    }
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(pages * sysconf(libc::_SC_PAGESIZE)?)
}

fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory's own descriptor is listed too; it is closed right after.
    Some((dir.count() as u64).saturating_sub(1))
}

/// The 22nd field of `/proc/self/stat` (clock ticks after boot) turned into
/// wall time: now − (time since boot − start after boot).
fn start_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let ticks = parse_start_ticks(&stat)?;
    let hz = sysconf(libc::_SC_CLK_TCK)?;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    let since_boot = Duration::new(u64::try_from(ts.tv_sec).ok()?, ts.tv_nsec as u32);
    let started_after_boot = Duration::from_secs_f64(ticks as f64 / hz as f64);
    let age = since_boot.checked_sub(started_after_boot)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Some(now.checked_sub(age)?.as_secs_f64())
}

/// The process name (field 2) is in parentheses and may hold spaces and
/// parentheses itself: fields are counted after the last `)`.
fn parse_start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; starttime is field 22, the 20th of them.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_survive_odd_process_names() {
        let stat = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 98765 1000 200 18446744073709551615";
        assert_eq!(parse_start_ticks(stat), Some(98765));
        assert_eq!(parse_start_ticks("garbage"), None);
    }

    #[test]
    fn own_figures_are_plausible() {
        let p = ProcessStats::read();
        assert!(p.resident_memory_bytes.unwrap() > 1 << 20);
        assert!(p.open_fds.unwrap() >= 3);
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
