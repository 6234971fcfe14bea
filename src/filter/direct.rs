//! Simple jq programs run directly on a value, without jaq's interpreter.
//!
//! The programs people write for `select` and `changes` are mostly paths,
//! comparisons and collections (`.metadata.labels.app == "web"`,
//! `[.spec.containers[].image]`, `{replicas: .spec.replicas}`). jaq runs
//! each through boxed iterators and a fresh context, about a microsecond
//! per program per event: a third of what a filtered watch adds to an
//! event. [`Direct::of`] recognises that subset in the parsed program and
//! runs it by walking the value: borrowed where it can, built only for
//! what it outputs.
//!
//! It is exact by construction, not by approximation: it implements only
//! terms whose jaq semantics are a few lines (identity, literal strings,
//! integers, `true`/`false`/`null`, `.k`/`.[n]`/`.[]` steps, `[f]`,
//! `{k: f}`, `|`, `,`, `//`, comparisons with jaq's own ordering, `and`,
//! `or`, `not`, `select`, `empty`, `if`), and whenever a run would meet an
//! error (an index into a string, iterating a number) or a shape it does
//! not follow, it answers [`Bail`] and the caller runs jaq, which then
//! produces the answer and the error message. A `?` changes nothing on a
//! run that meets no error, so it is accepted and ignored. A random
//! program test holds every answer against jaq's.

use super::reads::literal;
use jaq_core::load::parse::{BinaryOp, Term as Ast};
use jaq_core::ops::Cmp;
use jaq_core::path::Part;
use jaq_json::{Map, Val};
use std::borrow::Cow;
use std::rc::Rc;

/// A program of the subset, ready to run.
#[derive(Debug)]
pub struct Direct(Term);

/// This run needs jaq: an error on the way, or a case not followed.
#[derive(Debug, PartialEq, Eq)]
pub struct Bail;

#[derive(Debug)]
enum Term {
    Id,
    Lit(Val),
    Empty,
    Not,
    Path(Box<Term>, Box<[Step]>),
    Collect(Option<Box<Term>>),
    Obj(Box<[(Val, Term)]>),
    Pipe(Box<Term>, Box<Term>),
    Comma(Box<Term>, Box<Term>),
    Alt(Box<Term>, Box<Term>),
    Cmp(Box<Term>, Cmp, Box<Term>),
    /// `and` (stop on false) and `or` (stop on true).
    Logic(Box<Term>, bool, Box<Term>),
    Select(Box<Term>),
    /// Conditions with their branches, then the `else` (`.` when absent).
    If(Box<[(Term, Term)]>, Box<Term>),
}

#[derive(Debug)]
enum Step {
    Key(Val),
    Index(usize),
    Each,
}

type Outs<'a> = Vec<Cow<'a, Val>>;

impl Direct {
    /// The program as a direct one, `None` when it uses anything outside
    /// the subset (definitions, variables, other functions, arithmetic,
    /// formats, interpolation…).
    pub fn of(code: &str) -> Option<Direct> {
        let ast = jaq_core::load::parse(code, |p| p.term())?;
        Term::of(&ast).map(Direct)
    }

    /// The first output (`None`: there is none), or [`Bail`].
    pub fn first(&self, input: &Val) -> Result<Option<Val>, Bail> {
        let mut out = Vec::new();
        self.0.run(input, &mut out)?;
        Ok(out.into_iter().next().map(Cow::into_owned))
    }

    /// Every output, or [`Bail`].
    pub fn all(&self, input: &Val) -> Result<Vec<Val>, Bail> {
        let mut out = Vec::new();
        self.0.run(input, &mut out)?;
        Ok(out.into_iter().map(Cow::into_owned).collect())
    }
}

impl Term {
    fn of(t: &Ast<&str>) -> Option<Term> {
        let boxed = |t| Term::of(t).map(Box::new);
        Some(match t {
            Ast::Id => Term::Id,
            Ast::Num(n) => Term::Lit(Val::from(n.parse::<isize>().ok()?)),
            Ast::Str(None, _) => Term::Lit(Val::from(literal(t)?)),
            Ast::Arr(None) => Term::Collect(None),
            Ast::Arr(Some(f)) => Term::Collect(Some(boxed(f)?)),
            Ast::Obj(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let key = literal(k)?;
                    let value = match v {
                        Some(v) => Term::of(v)?,
                        // `{a}` is `{a: .a}`.
                        None => Term::Path(
                            Box::new(Term::Id),
                            Box::new([Step::Key(Val::from(key.clone()))]),
                        ),
                    };
                    out.push((Val::from(key), value));
                }
                Term::Obj(out.into())
            }
            Ast::BinOp(l, op, r) => {
                let (l, r) = (boxed(l)?, boxed(r)?);
                match op {
                    BinaryOp::Pipe(None) => Term::Pipe(l, r),
                    BinaryOp::Comma => Term::Comma(l, r),
                    BinaryOp::Alt => Term::Alt(l, r),
                    BinaryOp::And => Term::Logic(l, false, r),
                    BinaryOp::Or => Term::Logic(l, true, r),
                    BinaryOp::Cmp(op) => Term::Cmp(l, *op, r),
                    _ => return None,
                }
            }
            Ast::IfThenElse(branches, otherwise) => {
                let mut bs = Vec::with_capacity(branches.len());
                for (cond, then) in branches {
                    bs.push((Term::of(cond)?, Term::of(then)?));
                }
                let otherwise = match otherwise {
                    Some(e) => boxed(e)?,
                    None => Box::new(Term::Id),
                };
                Term::If(bs.into(), otherwise)
            }
            Ast::Call(name, args) => match (*name, &args[..]) {
                ("empty", []) => Term::Empty,
                ("not", []) => Term::Not,
                ("true", []) => Term::Lit(Val::Bool(true)),
                ("false", []) => Term::Lit(Val::Bool(false)),
                ("null", []) => Term::Lit(Val::Null),
                ("select", [f]) => Term::Select(boxed(f)?),
                _ => return None,
            },
            Ast::Path(base, path) => {
                let mut steps = Vec::with_capacity(path.0.len());
                for (part, _optional) in &path.0 {
                    steps.push(match part {
                        Part::Range(None, None) => Step::Each,
                        // As jaq reads an index: an `isize`, else a
                        // float, which this does not follow.
                        Part::Index(Ast::Num(n)) => {
                            Step::Index(usize::try_from(n.parse::<isize>().ok()?).ok()?)
                        }
                        Part::Index(k) => Step::Key(Val::from(literal(k)?)),
                        Part::Range(..) => return None,
                    });
                }
                Term::Path(boxed(base)?, steps.into())
            }
            _ => return None,
        })
    }

    /// Appends the outputs on `input` to `out`, in jaq's order.
    fn run<'a>(&'a self, input: &'a Val, out: &mut Outs<'a>) -> Result<(), Bail> {
        match self {
            Term::Id => out.push(Cow::Borrowed(input)),
            Term::Lit(v) => out.push(Cow::Borrowed(v)),
            Term::Empty => {}
            Term::Not => out.push(Cow::Owned(Val::Bool(!truthy(input)))),
            Term::Path(base, steps) => {
                let mut bases = Vec::new();
                base.run(input, &mut bases)?;
                for b in bases {
                    match b {
                        Cow::Borrowed(b) => walk(b, steps, out)?,
                        Cow::Owned(b) => {
                            let mut tmp = Vec::new();
                            walk(&b, steps, &mut tmp)?;
                            out.extend(tmp.into_iter().map(owned));
                        }
                    }
                }
            }
            Term::Collect(None) => out.push(Cow::Owned(Val::Arr(Rc::default()))),
            Term::Collect(Some(f)) => {
                let mut items = Vec::new();
                f.run(input, &mut items)?;
                let items: Vec<Val> = items.into_iter().map(Cow::into_owned).collect();
                out.push(Cow::Owned(Val::Arr(Rc::new(items))));
            }
            Term::Obj(entries) => {
                let mut map = Map::default();
                for (key, f) in entries.iter() {
                    let value = single(f, input)?;
                    match value {
                        Some(v) => {
                            map.insert(key.clone(), v.into_owned());
                        }
                        // An entry without output: no object at all.
                        None => return Ok(()),
                    }
                }
                out.push(Cow::Owned(Val::obj(map)));
            }
            Term::Pipe(l, r) => {
                let mut mid = Vec::new();
                l.run(input, &mut mid)?;
                for v in mid {
                    match v {
                        Cow::Borrowed(v) => r.run(v, out)?,
                        // The outputs may borrow from `v`: copied out
                        // before it goes.
                        Cow::Owned(v) => {
                            let mut tmp = Vec::new();
                            r.run(&v, &mut tmp)?;
                            out.extend(tmp.into_iter().map(owned));
                        }
                    }
                }
            }
            Term::Comma(l, r) => {
                l.run(input, out)?;
                r.run(input, out)?;
            }
            Term::Alt(l, r) => {
                let before = out.len();
                let mut ls = Vec::new();
                l.run(input, &mut ls)?;
                out.extend(ls.into_iter().filter(|v| truthy(v)));
                if out.len() == before {
                    r.run(input, out)?;
                }
            }
            Term::Cmp(l, op, r) => {
                let (mut ls, mut rs) = (Vec::new(), Vec::new());
                l.run(input, &mut ls)?;
                r.run(input, &mut rs)?;
                bounded(ls.len(), rs.len())?;
                for x in &ls {
                    for y in &rs {
                        out.push(Cow::Owned(Val::Bool(op.run(&**x, &**y))));
                    }
                }
            }
            Term::Logic(l, stop, r) => {
                let mut ls = Vec::new();
                l.run(input, &mut ls)?;
                // `r` runs on the same input for each `l` that does not
                // decide: once, when first needed.
                let mut rs: Option<Vec<bool>> = None;
                for x in &ls {
                    if truthy(x) == *stop {
                        out.push(Cow::Owned(Val::Bool(*stop)));
                        continue;
                    }
                    let rs = match &mut rs {
                        Some(rs) => rs,
                        None => {
                            let mut outs = Vec::new();
                            r.run(input, &mut outs)?;
                            bounded(ls.len(), outs.len())?;
                            rs.insert(outs.iter().map(|y| truthy(y)).collect())
                        }
                    };
                    out.extend(rs.iter().map(|&y| Cow::Owned(Val::Bool(y))));
                }
            }
            Term::Select(f) => {
                let mut conds = Vec::new();
                f.run(input, &mut conds)?;
                for c in conds {
                    if truthy(&c) {
                        out.push(Cow::Borrowed(input));
                    }
                }
            }
            Term::If(branches, otherwise) => if_then(branches, otherwise, input, out)?,
        }
        Ok(())
    }
}

/// Pairs of outputs (a comparison's, a logic operator's) computed at
/// most: the run is eager, jaq's is lazy, so `.a[] == .b[]` on two long
/// arrays is left to jaq, whose `first` stops at the first pair.
const MAX_PAIRS: usize = super::jq::MAX_OUTPUTS;

fn bounded(left: usize, right: usize) -> Result<(), Bail> {
    if left.saturating_mul(right) > MAX_PAIRS {
        return Err(Bail);
    }
    Ok(())
}

/// The one output of `f` (`None`: none); more than one is left to jaq
/// (the cartesian products of objects).
fn single<'a>(f: &'a Term, input: &'a Val) -> Result<Option<Cow<'a, Val>>, Bail> {
    let mut out = Vec::new();
    f.run(input, &mut out)?;
    if out.len() > 1 {
        return Err(Bail);
    }
    Ok(out.pop())
}

fn if_then<'a>(
    branches: &'a [(Term, Term)],
    otherwise: &'a Term,
    input: &'a Val,
    out: &mut Outs<'a>,
) -> Result<(), Bail> {
    let Some(((cond, then), rest)) = branches.split_first() else {
        return otherwise.run(input, out);
    };
    let mut conds = Vec::new();
    cond.run(input, &mut conds)?;
    for c in conds {
        if truthy(&c) {
            then.run(input, out)?;
        } else {
            if_then(rest, otherwise, input, out)?;
        }
    }
    Ok(())
}

fn owned<'a>(v: Cow<'_, Val>) -> Cow<'a, Val> {
    Cow::Owned(v.into_owned())
}

/// The values a path's steps reach from `v`, as jaq's `index_opt` and
/// `values` find them.
fn walk<'a>(v: &'a Val, steps: &[Step], out: &mut Outs<'a>) -> Result<(), Bail> {
    let Some((step, rest)) = steps.split_first() else {
        out.push(Cow::Borrowed(v));
        return Ok(());
    };
    match (step, v) {
        (Step::Key(_) | Step::Index(_), Val::Null) => null_rest(rest, out),
        (Step::Key(k), Val::Obj(o)) => match o.get(k) {
            Some(child) => walk(child, rest, out),
            None => null_rest(rest, out),
        },
        (Step::Index(i), Val::Arr(a)) => match a.get(*i) {
            Some(child) => walk(child, rest, out),
            None => null_rest(rest, out),
        },
        (Step::Each, Val::Arr(a)) => a.iter().try_for_each(|c| walk(c, rest, out)),
        (Step::Each, Val::Obj(o)) => o.values().try_for_each(|c| walk(c, rest, out)),
        _ => Err(Bail),
    }
}

/// A missing member is `null`, and so is every key or index of it.
fn null_rest(rest: &[Step], out: &mut Outs<'_>) -> Result<(), Bail> {
    if rest.iter().any(|s| matches!(s, Step::Each)) {
        // Iterating null is an error.
        return Err(Bail);
    }
    out.push(Cow::Owned(Val::Null));
    Ok(())
}

fn truthy(v: &Val) -> bool {
    !matches!(v, Val::Null | Val::Bool(false))
}

#[cfg(test)]
mod tests;
