//! Where a file sink's bytes go, and the file operations around it:
//! opening for append, the torn-tail repair at start, reserving room.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub(super) enum Target {
    Path(PathBuf),
    /// A duplicate of fd 1. Its file status flags are shared with whoever
    /// else holds stdout (a terminal, journald's socket), so it is never set
    /// non-blocking: sockets get `MSG_DONTWAIT` sends, anything else is
    /// written only when `poll` says there is room, at most `PIPE_BUF` bytes
    /// at a time (a pipe with room for that never blocks).
    Stdout {
        socket: bool,
    },
}

impl Target {
    pub(super) fn write(&self, file: &mut File, buf: &[u8]) -> io::Result<usize> {
        let fd = file.as_raw_fd();
        match self {
            Target::Path(_) => file.write(buf),
            Target::Stdout { socket: true } => {
                // SAFETY: `buf` is valid for `buf.len()` bytes; `fd` is open.
                let n = unsafe {
                    libc::send(
                        fd,
                        buf.as_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }
            Target::Stdout { socket: false } => {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, zero timeout.
                let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
                if ready < 0 {
                    return Err(io::Error::last_os_error());
                }
                if ready == 0 || pfd.revents & libc::POLLOUT == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                file.write(&buf[..buf.len().min(libc::PIPE_BUF)])
            }
        }
    }
}

/// A close-on-exec duplicate of fd 1, and whether it is a socket.
pub(super) fn dup_stdout() -> io::Result<(File, bool)> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain fcntl on fd 1; the result is checked.
    let fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let is_socket = {
        use std::os::unix::fs::FileTypeExt;
        file.metadata()?.file_type().is_socket()
    };
    Ok((file, is_socket))
}

/// After a crash mid-write (SIGKILL, OOM) the file may end in a partial
/// record. That record was never acknowledged, so it is delivered again;
/// the torn bytes are cut back to the last complete line so the file stays
/// valid JSON lines. Only regular files: a FIFO has no tail to repair.
pub(super) fn repair_torn_tail(sink: &str, path: &Path) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // Let the append open report the problem in its own words.
        Err(_) => return Ok(()),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(());
    }
    let len = meta.len();
    let mut keep = 0;
    let mut end = len;
    let mut chunk = vec![0u8; 64 << 10];
    'scan: while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            keep = start + i as u64 + 1;
            break 'scan;
        }
        end = start;
    }
    if keep == len {
        return Ok(());
    }
    file.set_len(keep)?;
    file.sync_all()?;
    log::warn!(
        "sink {sink}: {} ended with a partial record (kwatchd was stopped while writing it); cut {} bytes back to the last complete line; that record is written again",
        path.display(),
        len - keep
    );
    Ok(())
}

/// Allocates `len` bytes of disk past `offset` without changing the
/// file's size: a later write there cannot fail for want of room (on
/// filesystems that do not copy on write).
pub(super) fn reserve(file: &File, offset: u64, len: usize) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    loop {
        // SAFETY: plain syscall on an open descriptor and integers.
        let r =
            unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Opens for append with mode 0640, creating the parent directory (0750).
pub(super) fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    Ok(file)
}
