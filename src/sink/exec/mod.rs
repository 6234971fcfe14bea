//! Exec hooks: one run of an operator's command, driven by the mio loop.
//!
//! A [`HookRun`] is a child process plus the sources the loop watches for it:
//! the stdin pipe (the record is written non-blocking, then EOF), the stdout
//! and stderr pipes (logged line by line, capped per run) and, where the
//! kernel allows, a pidfd that becomes readable when the child exits. Without
//! a pidfd the daemon forwards SIGCHLD ([`HookRun::on_sigchld`]). Nothing here
//! ever blocks the loop: no blocking write, read or wait.
//!
//! What a run does *not* know about: retries, ordering, batching and
//! concurrency limits. The scheduler decides when to start a run and what to
//! do with its [`HookOutcome`].
//!
//! The hook is its own process group leader, so a timeout (SIGTERM, then
//! SIGKILL after `kill_grace`) reaches everything it started, and so does
//! the SIGKILL that by default ([`Leftovers::Kill`]) follows the hook's
//! exit: a background process left holding the hook's stdout would
//! otherwise delay every run by `kill_grace` and outlive the daemon. The
//! group is only ever signalled while the leader is not yet reaped: its
//! zombie pins the pid, so the group id cannot have been recycled for
//! another process (see `run.rs`).

mod env;
mod output;
mod proc;
mod run;
mod sink;
#[cfg(test)]
mod tests;

pub use env::{hook_env, DEFAULT_PATH};
pub use output::{OutputStats, Stream};
pub use proc::PipeHolder;
pub use run::{ExitDetection, HookRun, SpawnOptions};
pub use sink::{ExecSink, HookResult, HookRunCounts};

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How to run one exec sink's hook: the part of the sink's configuration a
/// single run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec {
    /// The sink's name, for messages.
    pub sink: String,
    /// argv: the program (looked up in the hook's `PATH` when not a path),
    /// then its arguments. Never a shell string.
    pub command: Vec<String>,
    /// The hook's working directory; the daemon's when `None`.
    pub working_dir: Option<PathBuf>,
    /// The operator's `env`, added after the base variables (and winning over
    /// them on a name clash, see [`hook_env`]).
    pub env: Vec<(String, String)>,
    /// From spawn until SIGTERM to the process group.
    pub timeout: Duration,
    /// From SIGTERM until SIGKILL; also how long the output pipes are given
    /// to reach EOF after the hook exited (a background process the hook left
    /// behind may hold them).
    pub kill_grace: Duration,
    /// Bytes logged per stream per run (e.g. 64 KiB); the rest is read and
    /// discarded.
    pub output_cap: usize,
    /// What happens to the rest of the hook's process group once the hook
    /// exited by itself.
    pub leftovers: Leftovers,
}

/// What becomes of the processes a hook leaves in its process group when it
/// exits by itself (the exec sink's `kill_process_group`). A hook that timed
/// out or was aborted always loses its whole group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftovers {
    /// SIGKILL to the group as soon as the exit is seen: nothing the hook
    /// started outlives it, and a background process cannot hold the
    /// output pipes open (which would delay the run's end by `kill_grace`).
    Kill,
    /// Left running, for hooks that start daemons on purpose. Output pipes
    /// they still hold are abandoned `kill_grace` after the exit.
    Keep,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// The hook exited by itself with this code.
    Exited { code: i32 },
    /// The hook died of a signal nobody in kwatchd sent because of a timeout
    /// (a crash, an operator's `kill`, or [`HookRun::abort`]'s SIGKILL).
    Signalled { signal: i32 },
    /// The hook outlived its timeout. `killed_with` is the strongest signal
    /// the group had been sent when the hook ended: SIGTERM if it gave up
    /// within the grace, SIGKILL otherwise.
    TimedOut { killed_with: i32 },
    /// The hook could not be started. [`HookRun::spawn`] reports this as its
    /// `Err`; the variant lets the caller record that failure with the
    /// others (`HookOutcome::SpawnFailed { error: err.to_string() }`).
    SpawnFailed { error: String },
    /// The hook exited but its status could not be read: something else in
    /// the process reaped it (a `waitpid(-1)`, or SIGCHLD set to SIG_IGN,
    /// which kwatchd never does). Treated as a failure.
    StatusLost { error: String },
}

impl HookOutcome {
    /// Only a clean `exit 0` is a success.
    pub fn success(&self) -> bool {
        matches!(self, HookOutcome::Exited { code: 0 })
    }
}

impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookOutcome::Exited { code } => write!(f, "exited with code {code}"),
            HookOutcome::Signalled { signal } => {
                write!(f, "killed by signal {}", proc::signal_name(*signal))
            }
            HookOutcome::TimedOut { killed_with } => write!(
                f,
                "timed out (ended by {})",
                proc::signal_name(*killed_with)
            ),
            HookOutcome::SpawnFailed { error } => write!(f, "could not start: {error}"),
            HookOutcome::StatusLost { error } => write!(f, "exit status lost: {error}"),
        }
    }
}
