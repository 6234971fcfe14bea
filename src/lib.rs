//! kwatchd: a Kubernetes watch daemon. See DESIGN.md in the shared docs.

pub mod config;
pub mod http;
pub mod sim;
