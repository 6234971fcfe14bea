//! Restart without missing changes: what every sink has handled, per
//! watch, kept in one embedded store in the state directory.
//!
//! - [`ack`]: the ref each record carries through a sink, and the outbox a
//!   sink reports finished records in;
//! - [`ledger`]: the sans-I/O commit ledger of one watch (which steps every
//!   sink has handled; the committed resourceVersion and object index);
//! - [`persistence`]: one watch's side of it, the only part the daemon's
//!   watchers talk to;
//! - [`store`]: the state directory (open, hand out what was saved, pass
//!   changes on); [`db`]: the store's file and tables; [`writer`]: the
//!   thread that commits;
//! - [`checkpoint`] and [`migrate`]: the per-watch files of older versions,
//!   taken into the store once.

pub mod ack;
pub mod checkpoint;
pub mod db;
pub mod ledger;
mod migrate;
pub mod persistence;
pub mod store;
pub mod writer;

pub use ack::{integer_rv, AckRef, Acks, WatchKey};
pub use checkpoint::Fingerprint;
pub use db::SyncMode;
pub use ledger::{AckError, CommittedView, Ledger};
pub use persistence::{Persistence, Resume};
pub use store::{StateDirError, StateStore};
