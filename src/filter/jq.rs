//! jq programs, compiled once when the config loads and run per event.
//!
//! Users already write jq for shell-operator's `jqFilter` and `kubectl -o
//! jsonpath`/`jq` pipelines, so every expression kwatchd takes (`select`,
//! `changes`, `redact`, `transform`) is jq, run by jaq (a jq implementation
//! in Rust with the same semantics where jq is sound). This module hides
//! jaq's generic API behind three calls: [`Program::compile`],
//! [`Program::first`] and [`Program::all`].

use super::direct::Direct;
use super::reads::Reads;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, Compiler, Ctx, Vars};
use jaq_json::Val;
use std::fmt;

type Data = data::JustLut<Val>;

/// A compiled jq program and the text it came from.
pub struct Program {
    source: Box<str>,
    filter: jaq_core::Filter<Data>,
    /// What the program reads of its input, when that is bounded: the
    /// input may then be built from those paths only (`filter::partial`).
    reads: Option<Reads>,
    /// The program run without jaq's interpreter, when it is simple
    /// enough (`filter::direct`); jaq runs whatever it bails on.
    direct: Option<Direct>,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Program({:?})", self.source)
    }
}

impl PartialEq for Program {
    /// Two programs are the same when their text is: a reload compares
    /// definitions, not compiled graphs.
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Why a program did not compile: where in its text (a byte offset) and
/// jaq's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A run-time error of a program (`.a + "x"` on a number, `error("…")`):
/// jaq's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError(pub String);

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many outputs [`Program::all`] collects at most: a `transform` such
/// as `range(1e9)` must not fill the memory with deliveries.
pub const MAX_OUTPUTS: usize = 1024;

impl Program {
    /// Compiles `code` with jq's standard library (jaq-std and jaq-json
    /// definitions). Every problem is returned, each with its offset.
    pub fn compile(code: &str) -> Result<Program, Vec<CompileError>> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let file = File { code, path: () };
        let modules = loader
            .load(&arena, file)
            .map_err(|errs| load_errors(code, errs))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errs| {
                errs.into_iter()
                    .flat_map(|(_, es)| es)
                    .map(|(name, undefined)| CompileError {
                        offset: offset_in(code, name),
                        message: format!("undefined {} `{name}`", undefined.as_str()),
                    })
                    .collect::<Vec<_>>()
            })?;
        Ok(Program {
            source: code.into(),
            filter,
            reads: Reads::of(code),
            direct: Direct::of(code),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The paths of its input the program can read; `None`: any of it.
    pub fn reads(&self) -> Option<&Reads> {
        self.reads.as_ref()
    }

    /// The first output, `None` when there is none. Later outputs are not
    /// computed.
    pub fn first(&self, input: Val) -> Result<Option<Val>, RunError> {
        if let Some(Ok(out)) = self.direct.as_ref().map(|d| d.first(&input)) {
            return Ok(out);
        }
        self.outputs(input)
            .next()
            .transpose()
            .map_err(|e| RunError(e.to_string()))
    }

    /// Every output, up to [`MAX_OUTPUTS`] (more is an error: a transform
    /// that multiplies a record a thousandfold is a mistake to report, not
    /// to deliver).
    pub fn all(&self, input: Val) -> Result<Vec<Val>, RunError> {
        if let Some(Ok(out)) = self.direct.as_ref().map(|d| d.all(&input)) {
            if out.len() > MAX_OUTPUTS {
                return Err(too_many());
            }
            return Ok(out);
        }
        self.all_with_jaq(input)
    }

    /// Every output as jaq's interpreter finds them (the reference the
    /// direct evaluator is tested against).
    pub(crate) fn all_with_jaq(&self, input: Val) -> Result<Vec<Val>, RunError> {
        let mut out = Vec::new();
        for v in self.outputs(input) {
            if out.len() == MAX_OUTPUTS {
                return Err(too_many());
            }
            out.push(v.map_err(|e| RunError(e.to_string()))?);
        }
        Ok(out)
    }

    fn outputs(&self, input: Val) -> impl Iterator<Item = Result<Val, jaq_core::Error<Val>>> + '_ {
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        self.filter.id.run((ctx, input)).map(jaq_core::unwrap_valr)
    }
}

fn too_many() -> RunError {
    RunError(format!("more than {MAX_OUTPUTS} outputs"))
}

fn offset_in(whole: &str, part: &str) -> usize {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    if p >= w && p <= w + whole.len() {
        p - w
    } else {
        0
    }
}

fn load_errors(code: &str, errs: jaq_core::load::Errors<&str, ()>) -> Vec<CompileError> {
    use jaq_core::load::Error;
    let mut out = Vec::new();
    for (_, e) in errs {
        match e {
            Error::Io(es) => out.extend(es.into_iter().map(|(at, msg)| CompileError {
                offset: offset_in(code, at),
                message: msg,
            })),
            Error::Lex(es) => out.extend(es.into_iter().map(|(expect, at)| CompileError {
                offset: offset_in(code, at),
                message: format!("expected {}", expect.as_str()),
            })),
            Error::Parse(es) => out.extend(es.into_iter().map(|(expect, at)| {
                let found = if at.is_empty() {
                    "end of input".to_string()
                } else {
                    format!("`{}`", at.chars().take(20).collect::<String>())
                };
                CompileError {
                    offset: offset_in(code, at),
                    message: format!("expected {}, found {found}", expect.as_str()),
                }
            })),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(s: &str) -> Val {
        jaq_json::read::parse_single(s.as_bytes()).unwrap()
    }

    #[test]
    fn first_and_all_outputs() {
        let p = Program::compile(".a[]").unwrap();
        assert_eq!(p.first(val(r#"{"a":[1,2]}"#)).unwrap(), Some(val("1")));
        assert_eq!(
            p.all(val(r#"{"a":[1,2]}"#)).unwrap(),
            vec![val("1"), val("2")]
        );
        assert_eq!(p.first(val(r#"{"a":[]}"#)).unwrap(), None);
    }

    #[test]
    fn standard_library_is_there() {
        let p = Program::compile(
            r#".metadata.name | test("^web-") and (ascii_downcase | startswith("web"))"#,
        )
        .unwrap();
        assert_eq!(
            p.first(val(r#"{"metadata":{"name":"web-1"}}"#)).unwrap(),
            Some(val("true"))
        );
        let p = Program::compile("[.spec.containers[].image] | sort | join(\",\")").unwrap();
        assert_eq!(
            p.first(val(
                r#"{"spec":{"containers":[{"image":"b"},{"image":"a"}]}}"#
            ))
            .unwrap(),
            Some(val(r#""a,b""#))
        );
    }

    #[test]
    fn run_errors_are_data() {
        let p = Program::compile(r#".spec.replicas + "x""#).unwrap();
        let e = p.first(val(r#"{"spec":{"replicas":3}}"#)).unwrap_err();
        assert!(e.0.contains("cannot"), "{e}");
    }

    #[test]
    fn compile_errors_have_offsets() {
        let e = Program::compile(".a | ").unwrap_err();
        assert!(!e.is_empty());
        assert!(e[0].message.contains("expected"), "{:?}", e);
        let e = Program::compile(".a | nosuchfn").unwrap_err();
        assert_eq!(e[0].offset, 5, "{e:?}");
        assert!(
            e[0].message.contains("undefined filter `nosuchfn`"),
            "{e:?}"
        );
    }

    #[test]
    fn too_many_outputs_is_an_error() {
        let p = Program::compile("range(100000)").unwrap();
        assert!(p.all(val("null")).is_err());
    }
}
