//! One run of an exec hook, as a state machine the loop drives.
//!
//! Life of a run:
//!
//! ```text
//! Running ──timeout──▶ Terminating ──kill_grace──▶ Killed
//!    │  (SIGTERM to group)   │      (SIGKILL to group)   │
//!    └───────────────────────┴──── leader exits ─────────┴──▶ Exited ──pipes EOF / kill_grace──▶ Done
//! ```
//!
//! `abort` jumps to `Killed` from anywhere before `Exited`.
//!
//! Exit is *observed* without reaping (`waitid(WNOWAIT)`, after a pidfd
//! event or a SIGCHLD) and the leader is reaped only when the run is done.
//! While unreaped, its zombie pins its pid, which is also the process group
//! id, so `kill(-pgid)` can never hit a group that a recycled pid formed
//! later (another hook's, say). Every group signal is sent in that window.
//!
//! After the exit the output pipes are read to EOF. By default
//! ([`Leftovers::Kill`]) the group gets SIGKILL as soon as the exit is seen,
//! so a process the hook left in the background cannot hold them open. One
//! that escaped the group (`setsid`), or any leftover when the sink keeps
//! them ([`Leftovers::Keep`]: a hook may start a daemon on purpose), may
//! hold them forever: they get `kill_grace`, then they are abandoned (closed
//! unread; the holder gets EPIPE on its next write) and the log names the
//! processes that held them. A run that timed out or was aborted, or whose
//! leftovers are killed, gets a final SIGKILL to the group just before the
//! leader is reaped, so nothing in its group survives it.

use super::output::{Output, OutputStats, Stream};
use super::proc::{self, ExitStatus};
use super::{HookOutcome, HookSpec, Leftovers};
use crate::tokens::TokenAllocator;
use mio::unix::pipe::Sender;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long `Drop` waits for a SIGKILLed child to become reapable. SIGKILL
/// lands in microseconds unless the process sits in uninterruptible sleep
/// (a hung NFS mount); we would rather leave that one unreaped than stall
/// the loop.
const DROP_REAP_WAIT: Duration = Duration::from_millis(20);

/// Set when a pidfd could not be opened, so the fallback is logged once.
static PIDFD_FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// How a run learns that its child exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitDetection {
    /// A pidfd when the kernel gives one, else SIGCHLD.
    PidfdOrSigchld,
    /// SIGCHLD only, as on kernels before 5.3 (tests exercise this path).
    SigchldOnly,
}

#[derive(Debug)]
enum ExitWatch {
    /// Registered READABLE; readable once the child exited.
    Pidfd(OwnedFd),
    /// The daemon calls `on_sigchld`.
    Sigchld,
    /// Exit seen; nothing left to watch.
    Done,
}

#[derive(Debug)]
enum StdinState {
    Writing {
        pipe: Sender,
        data: Vec<u8>,
    },
    /// EOF sent (or the hook went away first).
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The hook ended by itself.
    Natural,
    /// Killed for outliving its timeout; the strongest signal sent so far.
    TimedOut { signal: i32 },
    /// `abort`: daemon shutdown.
    Aborted,
}

#[derive(Debug)]
enum Life {
    Running {
        timeout_at: Instant,
    },
    /// SIGTERM sent to the group at the timeout.
    Terminating {
        kill_at: Instant,
    },
    /// SIGKILL sent to the group (`ending` says why); waiting for the exit.
    Killed {
        ending: Ending,
    },
    /// Leader exited, not reaped; output pipes get until `abandon_at`.
    Exited {
        status: ExitStatus,
        ending: Ending,
        abandon_at: Instant,
    },
    Done(HookOutcome),
}

#[derive(Debug, Clone, Copy)]
struct Tokens {
    stdin: Token,
    stdout: Token,
    stderr: Token,
    exit: Token,
}

/// One run of an exec hook. See the module docs for its life.
///
/// The daemon routes readiness for [`owns`](Self::owns) tokens to
/// [`on_ready`](Self::on_ready), calls [`on_timer`](Self::on_timer) once
/// [`deadline`](Self::deadline) has passed, forwards SIGCHLD to
/// [`on_sigchld`](Self::on_sigchld), and drops the run once
/// [`outcome`](Self::outcome) is `Some` (all sources are deregistered by
/// then).
///
/// Exit detection: a run without a pidfd (see [`uses_pidfd`](Self::uses_pidfd);
/// pidfd_open can fail per spawn, e.g. EMFILE) only learns of the exit
/// through `on_sigchld`, so the daemon should register SIGCHLD with
/// signal-hook-mio before the first spawn and forward it to every
/// unfinished run. SIGCHLD must never be set to SIG_IGN: the kernel would
/// then reap hooks itself and their status would be lost.
///
/// SIGPIPE: like every Rust binary the daemon ignores it, so a hook that
/// exits without reading its stdin shows up as EPIPE, which is not an error.
/// Hooks get the default SIGPIPE back (std resets it in the child).
///
/// Dropping a run whose child was not reaped yet SIGKILLs the process group
/// and waits at most 20 ms (in 1 ms steps) for the leader to become
/// reapable; past that it logs and leaves a zombie rather than stall the
/// loop. Its descriptors close, which also removes them from the poller.
#[derive(Debug)]
pub struct HookRun {
    label: String,
    pid: libc::pid_t,
    started: Instant,
    timeout: Duration,
    kill_grace: Duration,
    leftovers: Leftovers,
    child: Child,
    tokens: Tokens,
    stdin: StdinState,
    stdin_written: usize,
    stdout: Output,
    stderr: Output,
    exit: ExitWatch,
    life: Life,
}

/// What [`HookRun::spawn`] starts, and how: everything a run needs except
/// the loop's registry, token allocator and clock.
#[derive(Debug)]
pub struct SpawnOptions<'a> {
    spec: &'a HookSpec,
    env: &'a [(String, String)],
    label: String,
    stdin: Vec<u8>,
    detection: ExitDetection,
    capture: bool,
}

impl<'a> SpawnOptions<'a> {
    /// `spec.command` with exactly `env` (see [`hook_env`](super::hook_env)),
    /// its output logged under `label` (e.g. "sink on-change, watch pods,
    /// default/web-1"); no input, exit detection by pidfd where possible.
    pub fn new(spec: &'a HookSpec, env: &'a [(String, String)], label: String) -> Self {
        SpawnOptions {
            spec,
            env,
            label,
            stdin: Vec::new(),
            detection: ExitDetection::PidfdOrSigchld,
            capture: false,
        }
    }

    /// Written to the hook through the loop, then closed.
    pub fn stdin(mut self, stdin: Vec<u8>) -> Self {
        self.stdin = stdin;
        self
    }

    /// Forcing SIGCHLD is for tests of the fallback, and a way out should
    /// pidfds misbehave somewhere.
    pub fn detection(mut self, detection: ExitDetection) -> Self {
        self.detection = detection;
        self
    }

    /// stdout and stderr are kept (up to `spec.output_cap` each) for
    /// [`HookRun::take_output`] instead of logged: for children whose
    /// output holds secrets, like credential plugins.
    pub fn captured(mut self) -> Self {
        self.capture = true;
        self
    }
}

impl HookRun {
    /// Starts the hook `options` describe, in its own process group.
    ///
    /// `Err` when the command cannot be started (no such file, not
    /// executable, missing working directory, empty command), with a
    /// message naming the sink and the command; or when its pipes cannot be
    /// registered, in which case the child was already killed.
    pub fn spawn(
        options: SpawnOptions<'_>,
        registry: &Registry,
        tokens: &mut TokenAllocator,
        now: Instant,
    ) -> io::Result<HookRun> {
        let SpawnOptions {
            spec,
            env,
            label,
            stdin,
            detection,
            capture,
        } = options;
        let Some((program, args)) = spec.command.split_first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("sink {}: the exec hook's command is empty", spec.sink),
            ));
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            // Own group: a timeout must reach what the hook started too.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &spec.working_dir {
            command.current_dir(dir);
        }
        // std creates every pipe with O_CLOEXEC, so a hook started later
        // never inherits this one's pipe ends (which would hold its stdin
        // open and its output pipes alive).
        let mut child = command.spawn().map_err(|e| {
            let dir = match &spec.working_dir {
                Some(d) => format!(" in {}", d.display()),
                None => String::new(),
            };
            io::Error::new(
                e.kind(),
                format!(
                    "sink {}: cannot run {:?}{dir}: {e}",
                    spec.sink, spec.command
                ),
            )
        })?;
        // Linux pids are below 2^22 (PID_MAX_LIMIT): the cast cannot wrap.
        let pid = child.id() as libc::pid_t;
        let tokens = Tokens {
            stdin: tokens.allocate(),
            stdout: tokens.allocate(),
            stderr: tokens.allocate(),
            exit: tokens.allocate(),
        };
        let output = |stream, token, pipe| {
            let out = Output::new(stream, token, pipe, spec.output_cap);
            if capture {
                out.capture()
            } else {
                out
            }
        };
        let stdin_pipe = child.stdin.take().map(Sender::from);
        let stdout = child.stdout.take().map(mio::unix::pipe::Receiver::from);
        let stderr = child.stderr.take().map(mio::unix::pipe::Receiver::from);
        let mut run = HookRun {
            label,
            pid,
            started: now,
            timeout: spec.timeout,
            kill_grace: spec.kill_grace,
            leftovers: spec.leftovers,
            child,
            tokens,
            stdin: match stdin_pipe {
                Some(pipe) if !stdin.is_empty() => StdinState::Writing { pipe, data: stdin },
                // Empty input: dropping the pipe here sends EOF at once.
                _ => StdinState::Closed,
            },
            stdin_written: 0,
            stdout: output(Stream::Stdout, tokens.stdout, stdout),
            stderr: output(Stream::Stderr, tokens.stderr, stderr),
            exit: ExitWatch::Sigchld,
            life: Life::Running {
                timeout_at: later(now, spec.timeout),
            },
        };
        // From here on an error drops `run`, and Drop kills the child.
        run.register(registry, detection)?;
        log::debug!("{}: started hook, pid {}", run.label, run.pid);
        // Write at once rather than wait for the first WRITABLE edge.
        run.write_stdin(registry);
        Ok(run)
    }

    /// The captured output of a [`captured`](SpawnOptions::captured) run,
    /// once (complete after [`outcome`](Self::outcome) is `Some`), and
    /// whether it went past the cap.
    pub fn take_output(&mut self, stream: Stream) -> (Vec<u8>, bool) {
        let out = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        (out.take_captured(), out.stats().truncated)
    }

    fn register(&mut self, registry: &Registry, detection: ExitDetection) -> io::Result<()> {
        if let StdinState::Writing { pipe, .. } = &mut self.stdin {
            pipe.set_nonblocking(true)?;
            registry.register(pipe, self.tokens.stdin, Interest::WRITABLE)?;
        }
        self.stdout.register(registry)?;
        self.stderr.register(registry)?;
        if detection == ExitDetection::PidfdOrSigchld {
            match proc::pidfd_open(self.pid).and_then(|fd| {
                registry.register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    self.tokens.exit,
                    Interest::READABLE,
                )?;
                Ok(fd)
            }) {
                Ok(fd) => self.exit = ExitWatch::Pidfd(fd),
                Err(e) => {
                    // ENOSYS on old kernels, EPERM under some seccomp
                    // profiles, EMFILE when out of descriptors.
                    if !PIDFD_FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                        log::info!("pidfd_open failed ({e}); hook exits are detected via SIGCHLD");
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `token` belongs to one of this run's sources (also after the
    /// source was closed: a stale event is then ignored by `on_ready`).
    pub fn owns(&self, token: Token) -> bool {
        let t = self.tokens;
        token == t.stdin || token == t.stdout || token == t.stderr || token == t.exit
    }

    /// Readiness of one of this run's sources: writes stdin, reads output,
    /// or notices the exit (pidfd).
    pub fn on_ready(&mut self, registry: &Registry, token: Token) {
        if token == self.tokens.stdin {
            self.write_stdin(registry);
        } else if token == self.stdout.token() {
            self.stdout.pump(registry, &self.label);
        } else if token == self.stderr.token() {
            self.stderr.pump(registry, &self.label);
        } else if token == self.tokens.exit {
            self.check_exit(registry);
        }
        self.try_finish(registry);
    }

    /// SIGCHLD arrived (for some child). One signal may stand for several
    /// exits, so the daemon calls this on every run; a run that is not done
    /// just looks whether its own child exited, which is cheap.
    pub fn on_sigchld(&mut self, registry: &Registry) {
        self.check_exit(registry);
        self.try_finish(registry);
    }

    /// Call once `deadline()` has passed: escalates a timeout, gives up on
    /// output pipes held past the grace, resumes output reads that stopped
    /// at their per-turn budget.
    pub fn on_timer(&mut self, now: Instant, registry: &Registry) {
        if self.stdout.has_backlog() {
            self.stdout.pump(registry, &self.label);
        }
        if self.stderr.has_backlog() {
            self.stderr.pump(registry, &self.label);
        }
        match self.life {
            Life::Running { timeout_at } if now >= timeout_at => {
                // A hook that just exited must not be reported as timed out.
                self.check_exit(registry);
                if matches!(self.life, Life::Running { .. }) {
                    log::warn!(
                        "{}: hook (pid {}) still running after {:?}; sending SIGTERM to its process group",
                        self.label,
                        self.pid,
                        self.timeout
                    );
                    self.signal_group(libc::SIGTERM);
                    // Nobody will read the rest now; EOF may help it end.
                    self.close_stdin(registry);
                    self.life = Life::Terminating {
                        kill_at: later(now, self.kill_grace),
                    };
                }
            }
            Life::Terminating { kill_at } if now >= kill_at => {
                self.check_exit(registry);
                if matches!(self.life, Life::Terminating { .. }) {
                    log::warn!(
                        "{}: hook (pid {}) still running {:?} after SIGTERM; sending SIGKILL to its process group",
                        self.label,
                        self.pid,
                        self.kill_grace
                    );
                    self.signal_group(libc::SIGKILL);
                    self.life = Life::Killed {
                        ending: Ending::TimedOut {
                            signal: libc::SIGKILL,
                        },
                    };
                }
            }
            Life::Exited { abandon_at, .. } if now >= abandon_at => {
                let inodes: Vec<u64> = [&self.stdout, &self.stderr]
                    .iter()
                    .filter_map(|o| o.pipe_inode())
                    .collect();
                if !inodes.is_empty() {
                    self.log_held_pipes(&inodes);
                }
                self.stdout.abandon(registry, &self.label);
                self.stderr.abandon(registry, &self.label);
            }
            _ => {}
        }
        self.try_finish(registry);
    }

    /// When `on_timer` is due: the timeout, the SIGKILL after the grace, or
    /// the end of the wait for output after the exit. A moment already past
    /// (the start) when output reading stopped at its per-turn budget and
    /// must resume. `None` once done, or while waiting for a SIGKILLed
    /// child to die.
    pub fn deadline(&self) -> Option<Instant> {
        if self.stdout.has_backlog() || self.stderr.has_backlog() {
            return Some(self.started);
        }
        match &self.life {
            Life::Running { timeout_at } => Some(*timeout_at),
            Life::Terminating { kill_at } => Some(*kill_at),
            Life::Exited { abandon_at, .. } => Some(*abandon_at),
            Life::Killed { .. } | Life::Done(_) => None,
        }
    }

    /// `Some` once the child was reaped and its output pipes reached EOF
    /// (or were abandoned after the exit); every source is deregistered by
    /// then.
    pub fn outcome(&self) -> Option<&HookOutcome> {
        match &self.life {
            Life::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether exits come from a pidfd (else the run needs `on_sigchld`).
    pub fn uses_pidfd(&self) -> bool {
        matches!(self.exit, ExitWatch::Pidfd(_))
    }

    /// Bytes of the input written to the hook so far.
    pub fn stdin_written(&self) -> usize {
        self.stdin_written
    }

    pub fn stdout_stats(&self) -> OutputStats {
        self.stdout.stats()
    }

    pub fn stderr_stats(&self) -> OutputStats {
        self.stderr.stats()
    }

    /// Daemon shutdown: SIGKILL the group now. The run still has to be
    /// driven (pidfd or `on_sigchld`, then pipe EOF) until `outcome()`.
    /// A run that had already timed out still reports `TimedOut`; otherwise
    /// the outcome is `Signalled { SIGKILL }`, or the exit status if the hook
    /// had already exited.
    pub fn abort(&mut self, registry: &Registry) {
        self.close_stdin(registry);
        let ending = match &mut self.life {
            Life::Running { .. } => Ending::Aborted,
            Life::Terminating { .. } => Ending::TimedOut {
                signal: libc::SIGKILL,
            },
            Life::Exited { ending, .. } => {
                // The leader is gone but unreaped: the group id is still
                // ours, so leftovers holding the pipes can go now.
                if *ending == Ending::Natural {
                    *ending = Ending::Aborted;
                }
                self.signal_group(libc::SIGKILL);
                self.try_finish(registry);
                return;
            }
            Life::Killed { .. } | Life::Done(_) => return,
        };
        log::warn!(
            "{}: shutting down; sending SIGKILL to hook (pid {}) and its process group",
            self.label,
            self.pid
        );
        self.signal_group(libc::SIGKILL);
        self.life = Life::Killed { ending };
        self.try_finish(registry);
    }

    fn write_stdin(&mut self, registry: &Registry) {
        let StdinState::Writing { pipe, data } = &mut self.stdin else {
            return;
        };
        // Bounded by the input's size, so no per-turn budget is needed.
        let done = loop {
            match pipe.write(&data[self.stdin_written..]) {
                Ok(0) => break true,
                Ok(n) => {
                    self.stdin_written += n;
                    if self.stdin_written == data.len() {
                        break true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    // The hook exited or closed stdin without reading it
                    // all: its business, not an error. (The daemon, like
                    // every Rust binary, ignores SIGPIPE, so this is EPIPE.)
                    log::debug!(
                        "{}: hook stopped reading stdin after {} of {} bytes",
                        self.label,
                        self.stdin_written,
                        data.len()
                    );
                    break true;
                }
                Err(e) => {
                    log::warn!("{}: writing the hook's stdin: {e}", self.label);
                    break true;
                }
            }
        };
        if done {
            self.close_stdin(registry);
        }
    }

    fn close_stdin(&mut self, registry: &Registry) {
        if let StdinState::Writing { mut pipe, .. } =
            std::mem::replace(&mut self.stdin, StdinState::Closed)
        {
            let _ = registry.deregister(&mut pipe);
            // Dropping the pipe closes it: the hook reads EOF.
        }
    }

    /// Notices the leader's exit (without reaping it).
    fn check_exit(&mut self, registry: &Registry) {
        let ending = match self.life {
            Life::Running { .. } => Ending::Natural,
            Life::Terminating { .. } => Ending::TimedOut {
                signal: libc::SIGTERM,
            },
            Life::Killed { ending } => ending,
            Life::Exited { .. } | Life::Done(_) => return,
        };
        let Some(status) = proc::peek_exit(self.pid) else {
            return;
        };
        log::debug!("{}: hook (pid {}) exited: {status:?}", self.label, self.pid);
        if let ExitWatch::Pidfd(fd) = std::mem::replace(&mut self.exit, ExitWatch::Done) {
            let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        self.exit = ExitWatch::Done;
        // The reader is gone; anything still unwritten is moot.
        self.close_stdin(registry);
        if ending == Ending::Natural && self.leftovers == Leftovers::Kill {
            // While the unreaped leader pins the group id: whatever the
            // hook left behind goes now, and with it the pipes it holds.
            log::debug!(
                "{}: SIGKILL to what is left of process group {}",
                self.label,
                self.pid
            );
            self.signal_group(libc::SIGKILL);
        }
        self.life = Life::Exited {
            status,
            ending,
            abandon_at: later(Instant::now(), self.kill_grace),
        };
    }

    fn try_finish(&mut self, registry: &Registry) {
        let Life::Exited { status, ending, .. } = &self.life else {
            return;
        };
        if self.stdout.is_open() || self.stderr.is_open() {
            return;
        }
        let outcome = match (ending, status) {
            (Ending::TimedOut { signal }, _) => HookOutcome::TimedOut {
                killed_with: *signal,
            },
            (_, ExitStatus::Code(code)) => HookOutcome::Exited { code: *code },
            (_, ExitStatus::Signal(signal)) => HookOutcome::Signalled { signal: *signal },
            (_, ExitStatus::Lost(error)) => HookOutcome::StatusLost {
                error: error.clone(),
            },
        };
        if *ending != Ending::Natural || self.leftovers == Leftovers::Kill {
            // A killed hook leaves nothing behind: sweep its group while the
            // unreaped leader still pins the id.
            self.signal_group(libc::SIGKILL);
        }
        // The pipes are closed already; stdin and the exit watch were
        // released when the exit was seen. Nothing stays registered.
        self.close_stdin(registry);
        match self.child.try_wait() {
            Ok(Some(_)) => {}
            Ok(None) => log::error!(
                "{}: hook (pid {}) reported exited but cannot be reaped yet",
                self.label,
                self.pid
            ),
            // ECHILD: already reaped elsewhere (then the status is Lost).
            Err(e) => log::debug!("{}: reaping pid {}: {e}", self.label, self.pid),
        }
        log::debug!("{}: hook (pid {}) {outcome}", self.label, self.pid);
        self.life = Life::Done(outcome);
    }

    /// The output pipes (by inode) are still open `kill_grace` after the
    /// exit: says who holds them, so the operator can fix the hook.
    fn log_held_pipes(&self, inodes: &[u64]) {
        let holders = proc::pipe_holders(inodes, self.pid);
        let who = if holders.is_empty() {
            "by a process kwatchd cannot see".to_owned()
        } else {
            let list: Vec<String> = holders.iter().map(|h| h.to_string()).collect();
            format!("by {}", list.join(", "))
        };
        let why = match self.leftovers {
            Leftovers::Kill => {
                "it left its process group, so the SIGKILL at the hook's exit missed it"
            }
            Leftovers::Keep => {
                "the sink keeps what hooks leave running (kill_process_group = false)"
            }
        };
        log::warn!(
            "{}: hook (pid {}) exited but its output is still held open {:?} later {who} ({why}); \
             no longer reading it",
            self.label,
            self.pid,
            self.kill_grace,
        );
    }

    fn signal_group(&self, signal: libc::c_int) {
        if let Err(e) = proc::kill_group(self.pid, signal) {
            log::error!(
                "{}: sending {} to process group {}: {e}",
                self.label,
                proc::signal_name(signal),
                self.pid
            );
        }
    }
}

impl Drop for HookRun {
    fn drop(&mut self) {
        if matches!(self.life, Life::Done(_)) {
            return;
        }
        // Not reaped yet, so the group id is still this hook's.
        let _ = proc::kill_group(self.pid, libc::SIGKILL);
        let give_up = Instant::now() + DROP_REAP_WAIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= give_up => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        log::warn!(
            "{}: hook (pid {}) did not die within {:?} of SIGKILL; leaving it unreaped",
            self.label,
            self.pid,
            DROP_REAP_WAIT
        );
    }
}

/// `now + d`, saturating far in the future instead of panicking on an
/// absurd duration.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}
