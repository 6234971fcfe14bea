//! Changes that matter: which objects a watch reports (`select`), which of
//! their changes (`changes`, a projection compared with the last one
//! reported), what no sink may see (`redact`), and what each sink gets
//! (`transform`).
//!
//! Noise is the first complaint about every watch tool: a hook on
//! Deployments runs on every status update. These keys make kwatchd report
//! only what a user cares about, exactly once; the per-object [`Memory`]
//! lives in the watch's index so the state store carries it across restarts.
//!
//! - [`jq`]: compiling and running jq programs (jaq);
//! - [`direct`]: simple programs run without jaq's interpreter;
//! - [`json`]: bytes ⇄ jaq values, canonical JSON for projections;
//! - [`reads`]: what a program can read of its input (from its syntax);
//! - [`partial`]: a value cut to those paths, from the raw bytes;
//! - [`redact`]: keyed digests in place of secret values;
//! - [`object`]: the per-event decision;
//! - [`transform`]: a sink's reshaping of the record;
//! - [`stats`]: counters and the rate limit of error lines.

pub mod direct;
pub mod jq;
pub mod json;
pub mod object;
pub mod partial;
pub mod reads;
pub mod redact;
pub mod stats;
#[cfg(test)]
mod testgen;
pub mod transform;

pub use jq::{CompileError, Program, RunError};
pub use object::{
    Change, FilterError, FilterKey, Memory, Report, SkipReason, Verdict, WatchFilter,
};
pub use partial::Cut;
pub use redact::{RedactKey, Redacted, Redactor};
pub use stats::{FilterStats, LogLimit};
pub use transform::{Transform, Transformed};
