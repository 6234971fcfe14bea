//! jq-valued keys (`select`, `changes`, `redact` on watches, `transform`
//! on sinks): compiled when the file loads, in every load mode, so a
//! mistake is a config error at its place in the file and never a
//! surprise at the first event.
//!
//! The config keeps the source text (it compares and clones cheaply and
//! crosses threads); the daemon compiles it again from there.

use super::doc::{Ctx, Field, TableNode};
use crate::filter::{Program, Redactor};

/// An optional jq program under `key`; `Some(None)` when absent.
pub(super) fn program(ctx: &mut Ctx, t: &TableNode, key: &str) -> Option<Option<String>> {
    let Some(f) = t.get(key) else {
        return Some(None);
    };
    let code = f.str(ctx)?;
    match Program::compile(code) {
        Ok(_) => Some(Some(code.to_owned())),
        Err(errors) => {
            for e in &errors {
                ctx.error(at_offset(ctx, &f, code, e.offset), f.path(), &e.message);
            }
            None
        }
    }
}

/// `redact`: a list of jq paths; `Some(None)` when absent (the watch's
/// default applies), `Some(Some([]))` when explicitly empty.
pub(super) fn redact(ctx: &mut Ctx, t: &TableNode) -> Option<Option<Vec<String>>> {
    let Some(f) = t.get("redact") else {
        return Some(None);
    };
    let elements = f.array(ctx)?;
    let mut ok = true;
    let mut out = Vec::with_capacity(elements.len());
    for element in &elements {
        let Some(path) = element.str(ctx) else {
            ok = false;
            continue;
        };
        match Redactor::compile(&[path.to_owned()]) {
            Ok(_) => out.push(path.to_owned()),
            Err((_, message)) => {
                element.error(ctx, format!("not a jq path expression: {message}"));
                ok = false;
            }
        }
    }
    ok.then_some(Some(out))
}

/// Where in the file byte `offset` of the program `code` (the value of
/// `f`) is: exact when the TOML string is a plain one-line string (its
/// text between the quotes is the program itself), else the string's
/// start.
fn at_offset(ctx: &Ctx, f: &Field, code: &str, offset: usize) -> Option<usize> {
    let start = f.pos()?;
    let text = ctx.text();
    let rest = text.get(start..)?;
    let plain = match rest.as_bytes() {
        [b'"', b'"', b'"', ..] | [b'\'', b'\'', b'\'', ..] => false,
        [b'"' | b'\'', ..] => rest.get(1..1 + code.len()) == Some(code) && !code.contains('\n'),
        _ => false,
    };
    Some(if plain && offset <= code.len() {
        start + 1 + offset
    } else {
        start
    })
}
