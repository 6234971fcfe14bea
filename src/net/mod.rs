//! Sockets: non-blocking connect, TCP keepalive, TLS, and name resolution off
//! the loop. Everything above this module sees plaintext bytes.

pub mod conn;
pub mod resolve;
pub mod tls;

pub use conn::{Connection, ReadOutcome};
pub use resolve::Resolver;
