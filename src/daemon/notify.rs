//! systemd's notify protocol: datagrams to `$NOTIFY_SOCKET` (a path, or an
//! abstract name written with a leading `@`), and the watchdog interval from
//! `$WATCHDOG_USEC`. A few lines of std code; no crate needed.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// Half of `WATCHDOG_USEC`, as systemd recommends.
    watchdog_every: Option<Duration>,
    next_watchdog: Option<Instant>,
}

impl Notifier {
    /// `None` when not started by systemd with `Type=notify`.
    pub fn from_env(now: Instant) -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = path.as_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name),
            None => SocketAddr::from_pathname(std::path::Path::new(&path)),
        };
        let result = addr.and_then(|addr| {
            let socket = UnixDatagram::unbound()?;
            socket.set_nonblocking(true)?;
            Ok((socket, addr))
        });
        let (socket, addr) = match result {
            Ok(pair) => pair,
            Err(e) => {
                log::warn!(
                    "NOTIFY_SOCKET {path:?} is unusable ({e}); systemd will not hear from kwatchd"
                );
                return None;
            }
        };
        // WATCHDOG_PID, when set, names the process the watchdog is for.
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0 && for_us)
            .map(|us| Duration::from_micros(us / 2));
        Some(Notifier {
            socket,
            addr,
            watchdog_every,
            next_watchdog: watchdog_every.map(|d| now + d),
        })
    }

    /// Sends one message (`KEY=value` lines). A lost notification is logged,
    /// never fatal: the datagram socket is non-blocking.
    pub fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            if e.kind() != io::ErrorKind::WouldBlock {
                log::debug!("cannot notify systemd: {e}");
            }
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.next_watchdog
    }

    /// Sends `WATCHDOG=1` (with `status`) when it is due. Called from the
    /// loop itself, so a wedged loop stops the pings and systemd restarts it.
    pub fn on_timer(&mut self, now: Instant, status: &str) {
        let (Some(due), Some(every)) = (self.next_watchdog, self.watchdog_every) else {
            return;
        };
        if due <= now {
            self.send(&format!("WATCHDOG=1\nSTATUS={status}"));
            self.next_watchdog = Some(now + every);
        }
    }
}
/// `CLOCK_MONOTONIC` in microseconds, which `RELOADING=1` carries so systemd
/// can tell this reload from an older one.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}
