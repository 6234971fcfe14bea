//! One watch: list, then watch, resume, relist, back off. Sans-I/O: the
//! daemon performs the requests this state machine asks for and feeds it the
//! answers; it emits the events the sinks receive.

pub mod backoff;
pub mod index;
pub mod machine;
pub mod progress;

pub use machine::{
    Decided, Emit, Emitted, LineOutcome, Origin, ReconnectReason, RequestKind, RequestPlan,
    TimerOutcome, WatchMachine, WatchSpec, WatchStats,
};
pub use progress::{IndexChange, Progress};
