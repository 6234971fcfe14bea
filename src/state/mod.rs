//! Restart without missing changes: per watch, what every sink has fully
//! handled, kept on disk as a checkpoint.
//!
//! - [`ack`]: the ref each record carries through a sink, and the outbox a
//!   sink reports finished records in;
//! - [`ledger`]: the sans-I/O commit ledger of one watch (which steps every
//!   sink has handled; the committed resourceVersion and object index);
//! - [`checkpoint`]: the file format and the watch-definition fingerprint;
//! - [`journal`]: objects first reported since the last checkpoint;
//! - [`writer`]: the thread that writes checkpoint files atomically;
//! - [`store`]: the state directory (check at start, load, save);
//! - [`persistence`]: one watch's side of it, the only part the daemon's
//!   watchers talk to.

pub mod ack;
pub mod checkpoint;
pub mod journal;
pub mod ledger;
pub mod persistence;
pub mod store;
pub mod writer;

pub use ack::{AckRef, Acks, WatchKey};
pub use checkpoint::{Checkpoint, Fingerprint};
pub use journal::Journal;
pub use ledger::{AckError, CommittedView, Ledger};
pub use persistence::{Persistence, Resume};
pub use store::{CheckpointTarget, StateDirError, StateStore};
