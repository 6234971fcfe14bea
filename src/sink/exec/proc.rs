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
