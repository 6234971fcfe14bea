//! One watch: list, then watch, resume, relist, back off. Sans-I/O: the
//! daemon performs the requests this state machine asks for and feeds it the
//! answers; it emits the events the sinks receive.

pub mod backoff;
pub mod event;
pub mod index;
pub mod machine;
pub mod progress;
pub mod spec;
pub mod stats;

pub use event::{Decided, Emit, Emitted, Identity, Origin};
pub use machine::{LineOutcome, TimerOutcome, WatchMachine};
pub use progress::{IndexChange, Progress};
pub use spec::{RequestKind, RequestPlan, WatchSpec};
pub use stats::{ReconnectReason, WatchState, WatchStats};
