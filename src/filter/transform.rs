//! `transform = "JQ"` on a sink: the record reshaped into what the
//! receiver wants (a Slack `{text: …}`, a smaller object for a hook).
//!
//! Each output is one delivery; no output means the sink gets nothing for
//! this record (it is still acknowledged). A runtime error delivers the
//! record untransformed (fail open: an event is never dropped because a
//! template broke) and the caller logs and counts it.

use super::jq::{Program, RunError};
use super::json;

/// What a transform made of one record.
#[derive(Debug, PartialEq, Eq)]
pub enum Transformed {
    /// Zero or more deliveries, each compact JSON without a newline.
    Deliveries(Vec<Vec<u8>>),
    /// The transform failed: deliver the record as it was.
    Failed(String),
}

#[derive(Debug)]
pub struct Transform {
    program: Program,
}

impl Transform {
    pub fn new(program: Program) -> Transform {
        Transform { program }
    }

    pub fn source(&self) -> &str {
        self.program.source()
    }

    /// Runs the transform on one record (its JSON, with or without the
    /// trailing newline).
    pub fn apply(&self, record: &[u8]) -> Transformed {
        let run = || -> Result<Vec<Vec<u8>>, String> {
            let input = json::parse_for(record.trim_ascii_end(), self.program.reads())?;
            let outputs = self.program.all(input).map_err(|RunError(m)| m)?;
            outputs.iter().map(json::to_json).collect()
        };
        match run() {
            Ok(d) => Transformed::Deliveries(d),
            Err(m) => Transformed::Failed(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(code: &str) -> Transform {
        Transform::new(Program::compile(code).unwrap())
    }

    const RECORD: &[u8] = br#"{"time":"2026-12-04T18:00:00Z","watch":"deploys","cluster":"prod","type":"MODIFIED","origin":"watch","object":{"metadata":{"name":"web","namespace":"shop"}},"projection":["nginx:2"],"previous_projection":["nginx:1"]}
"#;

    #[test]
    fn slack_shaped_message() {
        let out = t(r#"{text: "\(.type) \(.object.metadata.namespace)/\(.object.metadata.name): \(.previous_projection) -> \(.projection)"}"#)
            .apply(RECORD);
        let Transformed::Deliveries(d) = out else {
            panic!("{out:?}")
        };
        assert_eq!(d.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&d[0]).unwrap();
        assert_eq!(
            v["text"],
            r#"MODIFIED shop/web: ["nginx:1"] -> ["nginx:2"]"#
        );
    }

    #[test]
    fn several_outputs_and_none() {
        assert_eq!(
            t(".projection[], .type").apply(RECORD),
            Transformed::Deliveries(vec![br#""nginx:2""#.to_vec(), br#""MODIFIED""#.to_vec()])
        );
        assert_eq!(
            t(r#"select(.type == "DELETED")"#).apply(RECORD),
            Transformed::Deliveries(vec![])
        );
    }

    #[test]
    fn errors_fail_open() {
        let out = t(r#".object.metadata.name + 1"#).apply(RECORD);
        let Transformed::Failed(m) = out else {
            panic!("{out:?}")
        };
        assert!(m.contains("cannot"), "{m}");
        assert!(matches!(t("nan").apply(RECORD), Transformed::Failed(_)));
    }
}
