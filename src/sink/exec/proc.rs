//! Thin wrappers over the process syscalls a run needs: pidfd, a
//! non-reaping exit check, and signalling a process group.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// How the leader ended, read without reaping it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ExitStatus {
    Code(i32),
    Signal(i32),
    /// `waitid` failed (ECHILD: reaped behind our back).
    Lost(String),
}

/// A pidfd for `pid` (Linux ≥ 5.3). It becomes readable when the process
/// exits, and is close-on-exec by definition, so later hooks never inherit it.
pub(super) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "pidfd out of range"))?;
    // SAFETY: the kernel just gave us this descriptor and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `pid` (our child) has exited, without reaping it (`WNOWAIT`): the
/// zombie keeps the pid, and with it the process group id, from being reused
/// while the run may still signal the group. `None`: still running.
pub(super) fn peek_exit(pid: libc::pid_t) -> Option<ExitStatus> {
    let Ok(id) = libc::id_t::try_from(pid) else {
        return Some(ExitStatus::Lost(format!("invalid pid {pid}")));
    };
    loop {
        // SAFETY: a zeroed siginfo_t is a valid value; waitid writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, exclusively borrowed siginfo_t.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                id,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Some(ExitStatus::Lost(err.to_string()));
        }
        // SAFETY: waitid filled a SIGCHLD-shaped siginfo (or left it zeroed,
        // which reads as pid 0: not exited yet).
        let (si_pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if si_pid == 0 {
            return None;
        }
        return Some(match info.si_code {
            libc::CLD_EXITED => ExitStatus::Code(status),
            // CLD_KILLED, CLD_DUMPED; stops and continues are not asked for.
            _ => ExitStatus::Signal(status),
        });
    }
}

/// Sends `signal` to the process group `pgid`.
///
/// Callers only do this while the group leader is unreaped (see
/// [`peek_exit`]), so the id still names the hook's group. ESRCH (group
/// already empty) is not an error worth reporting.
pub(super) fn kill_group(pgid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // kill(0) and kill(-1) would signal our own group or every process we
    // may signal; a child's pid is never 0 or 1, but make it impossible.
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        ));
    }
    // SAFETY: plain syscall on integers.
    if unsafe { libc::kill(-pgid, signal) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Most `/proc/PID/fd` entries [`pipe_holders`] reads: it runs on the loop,
/// once per run whose output outlived it, so its cost must stay bounded on a
/// host with many processes (about a millisecond per thousand entries).
const HOLDER_SCAN_BUDGET: usize = 20_000;
/// Holders worth naming in one log line.
const HOLDERS_MAX: usize = 4;

/// A process that holds one of a hook's output pipes open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeHolder {
    pub pid: libc::pid_t,
    /// Its `comm` (the kernel's short name), empty when unreadable.
    pub name: String,
}

impl std::fmt::Display for PipeHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name.is_empty() {
            write!(f, "pid {}", self.pid)
        } else {
            write!(f, "pid {} ({})", self.pid, self.name)
        }
    }
}

/// Processes other than this one whose descriptors point at a pipe with one
/// of `inodes`, found through `/proc/*/fd` (only processes we may inspect:
/// our own user's, or all as root). Pids from `after` (the hook's) upwards
/// are looked at first, since what a hook left behind was started after it;
/// the scan stops at [`HOLDERS_MAX`] holders or [`HOLDER_SCAN_BUDGET`]
/// entries.
pub(super) fn pipe_holders(inodes: &[u64], after: libc::pid_t) -> Vec<PipeHolder> {
    let links: Vec<String> = inodes.iter().map(|i| format!("pipe:[{i}]")).collect();
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<libc::pid_t> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p: &libc::pid_t| u32::try_from(*p).is_ok_and(|p| p != me))
        .collect();
    // Pids from `after` up first (ascending), then the ones below it.
    pids.sort_unstable_by_key(|p| (*p < after, *p));
    let mut budget = HOLDER_SCAN_BUDGET;
    let mut holders = Vec::new();
    for pid in pids {
        if budget == 0 || holders.len() == HOLDERS_MAX {
            break;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if budget == 0 {
                break;
            }
            budget -= 1;
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if links.iter().any(|l| target.as_os_str() == l.as_str()) {
                let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|n| n.trim_end().to_owned())
                    .unwrap_or_default();
                holders.push(PipeHolder { pid, name });
                break;
            }
        }
    }
    holders
}

pub(super) fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGPIPE => "SIGPIPE".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::process::{Command, Stdio};

    #[test]
    fn pipe_holders_finds_the_process_holding_a_pipe() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors are fresh and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::from(write))
            .spawn()
            .expect("spawn sleep");
        // SAFETY: a zeroed stat is valid; fstat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `read` is open.
        assert_eq!(unsafe { libc::fstat(read.as_raw_fd(), &mut st) }, 0);
        let pid = child.id() as libc::pid_t;
        let holders = pipe_holders(&[st.st_ino], pid);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            holders,
            vec![PipeHolder {
                pid,
                name: "sleep".into()
            }],
            "only the writer holds it: our own read end is not reported"
        );
        assert!(
            pipe_holders(&[st.st_ino], pid).is_empty(),
            "gone with the child"
        );
    }
}
