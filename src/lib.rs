//! kwatchd: a Kubernetes watch daemon.
//!
//! One thread, one `mio` poll loop: watch streams are read as they become
//! readable, decoded by sans-I/O protocol layers (`http`, `kube`, `watch`),
//! and each event is handed to the configured sinks.

pub mod config;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod fdlimit;
pub mod filter;
pub mod http;
pub mod kube;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod nats;
pub mod net;
pub mod rbac;
pub mod replay;
/// The PRNG lives in its own crate so that the emulator (`kwatchd-sim`) shares it without depending on the daemon.
pub use kwatchd_rand as rand;
pub mod sink;
pub mod state;
pub mod tokens;
pub mod watch;
