//! `[sinks.NAME]` tables. The `type` key picks a parser from [`SINK_TYPES`];
//! adding a sink kind is a new `SinkConfig` variant, a parser function and a
//! line in that table.

use std::path::PathBuf;

use super::doc::{Ctx, TableNode};
use super::syntax::resolve_path;
use super::Env;

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// Append one JSON line per event to a file.
    File(FileSinkConfig),
}

impl SinkConfig {
    /// The `type` value this sink was configured with.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
        }
    }
}

/// `type = "file"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// Absolute path of the JSON-lines file.
    pub path: PathBuf,
}

type SinkParser = fn(&mut Ctx, &Env, &TableNode) -> Option<SinkConfig>;

/// Every sink `type`, with its parser.
const SINK_TYPES: &[(&str, SinkParser)] = &[("file", file_sink)];

/// Parses one `[sinks.NAME]` table.
pub(crate) fn sink(ctx: &mut Ctx, env: &Env, table: &TableNode) -> Option<SinkConfig> {
    let field = table.require(ctx, "type")?;
    let kind = field.str(ctx)?;
    match SINK_TYPES.iter().find(|(name, _)| *name == kind) {
        Some((_, parse)) => parse(ctx, env, table),
        None => {
            let known: Vec<&str> = SINK_TYPES.iter().map(|(name, _)| *name).collect();
            field.error(
                ctx,
                format!(
                    "unknown sink type {kind:?}; expected one of: {}",
                    known.join(", ")
                ),
            );
            None
        }
    }
}

fn file_sink(ctx: &mut Ctx, env: &Env, table: &TableNode) -> Option<SinkConfig> {
    table.check_keys(ctx, &["type", "path"]);
    let path = table
        .require(ctx, "path")?
        .parse_str(ctx, |s| resolve_path(s, env.base_dir.as_deref()))?;
    Some(SinkConfig::File(FileSinkConfig { path }))
}
