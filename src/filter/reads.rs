//! What a jq program can read of its input, found from its syntax, so an
//! event's object is turned into a jaq value only where a program looks.
//!
//! A 4 KB pod parsed into a jaq value costs more than everything else a
//! filtered watch does per event, while `select = '.metadata.labels.app ==
//! "web"'` looks at one string of it. [`Reads::of`] walks the parsed program
//! (jaq's own parser, `jaq_core::load::parse`) and returns a tree of object
//! keys: the paths the program can reach from its input, each either only
//! *touched* (its presence and type observed: indexed further, tested for
//! truth) or needed *whole* (compared, printed, given to a function), and
//! what is read in every item of a value iterated with `.[]` (so
//! `[.spec.containers[].image]` keeps each container's image, not its
//! env list). `filter::partial` then builds a value holding exactly those
//! subtrees, from the raw bytes.
//!
//! The analysis is conservative and answers `None` (parse the whole object)
//! whenever it cannot prove what the program reads: the input used as a
//! whole (`.`, `..`, `keys`, `tojson`, `to_entries`, `length`, comparisons,
//! updates on it), a definition (`def`), module paths, a key that is not a
//! literal string. The invariant that makes a partial value indistinguishable
//! from the full one to the program: every object on a touched path keeps
//! its type and holds the touched keys it has (missing ones stay missing),
//! an iterated array keeps every element (cut alike) unless a key is also
//! read of it, every other non-object on such a path is kept whole, and
//! every value that can
//! be observed beyond its type and truth (an output, an operand, a bound
//! variable, a function's input or argument result, an error's payload) is
//! marked whole before it can escape into something the analysis stops
//! following ("other": constants and values built only from whole data).
//! Functions are treated by name: a few are followed exactly (`select`,
//! `first`, `last`, `limit`, `empty`, `not`, `error`, `path`, constants);
//! every other builtin needs its input and its arguments' results whole.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Pattern, Term};
use jaq_core::path::Part;

/// One place of a [`Reads`] tree and what is read below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The value here is needed as it is (nothing below it is cut).
    pub whole: bool,
    /// Keys read below (when not whole), in first-seen order; few, so a
    /// vector is faster to search than a map. After [`Reads::of`], each
    /// also holds what `each` reads.
    pub keys: Vec<(Box<str>, Node)>,
    /// What is read in every item (`.[]`): of an array without named keys
    /// read, every element is kept, each cut to this; of an object, every
    /// member is kept.
    pub each: Option<Box<Node>>,
}

impl Node {
    fn step_mut(&mut self, step: &Step) -> &mut Node {
        let key = match step {
            Step::Each => return self.each.get_or_insert_with(Box::default),
            Step::Key(key) => key,
        };
        let i = match self.keys.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                self.keys.push((key.clone(), Node::default()));
                self.keys.len() - 1
            }
        };
        &mut self.keys[i].1
    }

    fn merge(&mut self, other: &Node) {
        self.whole |= other.whole;
        for (k, n) in &other.keys {
            self.step_mut(&Step::Key(k.clone())).merge(n);
        }
        if let Some(e) = &other.each {
            self.step_mut(&Step::Each).merge(e);
        }
    }

    /// A member named by a key is an item too: it gets what every item
    /// gets, so the extraction looks in one place.
    fn settle(&mut self) {
        if let Some(each) = &mut self.each {
            each.settle();
            for (_, n) in &mut self.keys {
                n.merge(each);
            }
        }
        for (_, n) in &mut self.keys {
            n.settle();
        }
    }
}

/// The paths a program can read below its input (an object); the input
/// itself is never whole (then there is no `Reads`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    pub root: Node,
}

impl Reads {
    /// What `code` reads, `None` when the analysis cannot bound it (or the
    /// program needs all of its input).
    pub fn of(code: &str) -> Option<Reads> {
        let term = jaq_core::load::parse(code, |p| p.term())?;
        let mut a = Analysis {
            root: Node::default(),
            bounded: true,
            steps: 0,
        };
        let outs = a.term(&term, &Abs::At(Vec::new()));
        a.whole_all(&outs);
        a.root.settle();
        // Every member whole is the whole object: no cut to gain.
        let all = a.root.each.as_ref().is_some_and(|e| e.whole);
        (a.bounded && !all).then_some(Reads { root: a.root })
    }

    /// Reads of several programs together: what any of them reads. One
    /// partial value serves them all, since each sees its own paths intact.
    pub fn union<'a>(all: impl IntoIterator<Item = Option<&'a Reads>>) -> Option<Reads> {
        let mut out = Reads::default();
        for r in all {
            out.root.merge(&r?.root);
        }
        out.root.settle();
        Some(out)
    }
}

/// One step from a value to a part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(Box<str>),
    /// Any item (`.[]`).
    Each,
}

/// Where a value the program holds came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Abs {
    /// The input's value at this path (the value itself, possibly cut to
    /// the touched keys).
    At(Vec<Step>),
    /// Anything else: constants, and values built only from whole data.
    Other,
}

/// Output sets larger than this are widened (marked whole, then "other"):
/// `(.a, .b) | (.c, .d) | …` would otherwise grow exponentially.
const MAX_OUTS: usize = 32;

/// Terms analysed at most per program. The right side of a pipe is
/// analysed once per output of its left side, so a long chain of
/// `(.a, .b) | …` costs exponential time; past this budget the program
/// counts as unbounded (the full parse, as before), which no sane filter
/// comes near.
const MAX_STEPS: usize = 20_000;

struct Analysis {
    root: Node,
    bounded: bool,
    steps: usize,
}

impl Analysis {
    fn node(&mut self, path: &[Step]) -> &mut Node {
        path.iter().fold(&mut self.root, |n, s| n.step_mut(s))
    }

    fn whole(&mut self, v: &Abs) {
        if let Abs::At(path) = v {
            if path.is_empty() {
                self.bounded = false;
            } else {
                self.node(path).whole = true;
            }
        }
    }

    fn whole_all(&mut self, vs: &[Abs]) {
        for v in vs {
            self.whole(v);
        }
    }

    /// Analyses `t` and marks its outputs whole: for terms whose results
    /// are consumed as values.
    fn consumed(&mut self, t: &Term<&str>, input: &Abs) {
        let outs = self.term(t, input);
        self.whole_all(&outs);
    }

    /// What `t` outputs when run on `input`, marking what it reads.
    fn term(&mut self, t: &Term<&str>, input: &Abs) -> Vec<Abs> {
        if *input == Abs::Other {
            // Nothing reachable from here leads back to the input: variables
            // and "other" values only hold whole data.
            return vec![Abs::Other];
        }
        self.steps += 1;
        if self.steps > MAX_STEPS {
            self.bounded = false;
        }
        if !self.bounded {
            return vec![Abs::Other];
        }
        let other = || vec![Abs::Other];
        let mut outs = match t {
            Term::Id => vec![input.clone()],
            Term::Recurse => {
                self.whole(input);
                other()
            }
            Term::Num(_) | Term::Var(_) | Term::Arr(None) => other(),
            Term::Str(_, parts) => {
                // A format (`@base64 "…\(f)"`) applies to the interpolated
                // values only.
                for p in parts {
                    if let StrPart::Term(f) = p {
                        self.consumed(f, input);
                    }
                }
                other()
            }
            Term::Arr(Some(f)) | Term::Neg(f) => {
                self.consumed(f, input);
                other()
            }
            Term::Obj(entries) => {
                for (k, v) in entries {
                    self.consumed(k, input);
                    match (v, k) {
                        (Some(v), _) => self.consumed(v, input),
                        (None, Term::Var(_)) => {}
                        // `{a}` is `{a: .a}`.
                        (None, k) => match (literal(k), input) {
                            (Some(key), Abs::At(p)) => self.whole(&child(p, Step::Key(key.into()))),
                            _ => self.whole(input),
                        },
                    }
                }
                other()
            }
            Term::BinOp(l, op, r) => self.binop(l, op, r, input),
            Term::Label(_, body) => self.term(body, input),
            Term::Break(_) => Vec::new(),
            Term::Fold(_, xs, pattern, args) => {
                self.consumed(xs, input);
                self.pattern(pattern, input);
                // The initial accumulator can be the output; the update and
                // extract run on the accumulator ("other").
                if let Some(init) = args.first() {
                    self.consumed(init, input);
                }
                other()
            }
            Term::TryCatch(body, catch) => {
                let mut outs = self.term(body, input);
                if catch.is_some() {
                    // The handler's input is an error value: whole data
                    // (`error(f)` marks its payload whole; jaq's own
                    // messages only quote values kept whole).
                    outs.push(Abs::Other);
                }
                outs
            }
            Term::IfThenElse(branches, otherwise) => {
                let mut outs = Vec::new();
                for (cond, then) in branches {
                    // Only the truth of a condition is seen: an object cut
                    // to some keys is as true as the whole one.
                    self.term(cond, input);
                    outs.extend(self.term(then, input));
                }
                match otherwise {
                    Some(e) => outs.extend(self.term(e, input)),
                    None => outs.push(input.clone()),
                }
                outs
            }
            Term::Def(..) => {
                self.bounded = false;
                other()
            }
            Term::Call(name, args) => self.call(name, args, input),
            Term::Path(base, path) => {
                let mut outs = self.term(base, input);
                for (part, _optional) in &path.0 {
                    outs = self.part(part, outs, input);
                }
                outs
            }
        };
        outs.dedup();
        if outs.len() > MAX_OUTS {
            self.whole_all(&outs);
            outs = other();
        }
        outs
    }

    fn binop(
        &mut self,
        l: &Term<&str>,
        op: &BinaryOp<&str>,
        r: &Term<&str>,
        input: &Abs,
    ) -> Vec<Abs> {
        match op {
            BinaryOp::Pipe(None) => {
                let mut outs = Vec::new();
                for o in self.term(l, input) {
                    outs.extend(self.term(r, &o));
                }
                outs
            }
            BinaryOp::Pipe(Some(pattern)) => {
                // `l as $x | r`: `$x` is bound to whole data, `r` runs on
                // the same input as `l`.
                self.consumed(l, input);
                self.pattern(pattern, input);
                self.term(r, input)
            }
            BinaryOp::Comma | BinaryOp::Alt => {
                let mut outs = self.term(l, input);
                outs.extend(self.term(r, input));
                outs
            }
            BinaryOp::Or | BinaryOp::And => {
                self.term(l, input);
                self.term(r, input);
                vec![Abs::Other]
            }
            BinaryOp::Math(_) | BinaryOp::Cmp(_) => {
                self.consumed(l, input);
                self.consumed(r, input);
                vec![Abs::Other]
            }
            BinaryOp::Assign | BinaryOp::Update | BinaryOp::UpdateMath(_) | BinaryOp::UpdateAlt => {
                // An update rebuilds its input.
                self.whole(input);
                self.consumed(l, input);
                self.consumed(r, input);
                vec![Abs::Other]
            }
        }
    }

    fn pattern(&mut self, p: &Pattern<&str>, input: &Abs) {
        match p {
            Pattern::Var(_) => {}
            Pattern::Arr(ps) => ps.iter().for_each(|p| self.pattern(p, input)),
            Pattern::Obj(entries) => {
                for (k, p) in entries {
                    self.consumed(k, input);
                    self.pattern(p, input);
                }
            }
        }
    }

    fn call(&mut self, name: &str, args: &[Term<&str>], input: &Abs) -> Vec<Abs> {
        match (name, args) {
            ("empty", []) => Vec::new(),
            ("true" | "false" | "null" | "nan" | "infinite" | "now" | "not", []) => {
                vec![Abs::Other]
            }
            ("select", [f]) => {
                self.term(f, input);
                vec![input.clone()]
            }
            ("first" | "last", [f]) => self.term(f, input),
            ("limit", [n, f]) => {
                self.consumed(n, input);
                self.term(f, input)
            }
            ("error", []) => {
                self.whole(input);
                Vec::new()
            }
            ("error", [f]) => {
                self.consumed(f, input);
                Vec::new()
            }
            // Path mode yields key paths, never the values; what `f` reads
            // on the way is analysed as usual (a non-path result is quoted
            // in jaq's error only when it is a value marked whole).
            ("path", [f]) => {
                self.term(f, input);
                vec![Abs::Other]
            }
            _ if name.contains("::") => {
                self.bounded = false;
                vec![Abs::Other]
            }
            _ => {
                // Any other builtin: its input and what its arguments yield
                // (run on the input or on parts of it) are used as values.
                self.whole(input);
                for a in args {
                    self.consumed(a, input);
                }
                vec![Abs::Other]
            }
        }
    }

    /// One step of a path (`.a`, `[f]`, `[]`, `[f:g]`) applied to `outs`;
    /// index terms run on the path's own input.
    fn part(&mut self, part: &Part<Term<&str>>, outs: Vec<Abs>, input: &Abs) -> Vec<Abs> {
        let step = match part {
            Part::Index(k) => literal(k).map(|k| Step::Key(k.into())),
            Part::Range(None, None) => Some(Step::Each),
            Part::Range(..) => None,
        };
        if let Some(step) = step {
            return outs
                .into_iter()
                .map(|o| match o {
                    Abs::At(p) => {
                        let c = child(&p, step.clone());
                        if let Abs::At(cp) = &c {
                            self.node(cp);
                        }
                        c
                    }
                    Abs::Other => Abs::Other,
                })
                .collect();
        }
        match part {
            Part::Index(k) => self.consumed(k, input),
            Part::Range(from, to) => {
                for b in [from, to].into_iter().flatten() {
                    self.consumed(b, input);
                }
            }
        }
        self.whole_all(&outs);
        if outs.is_empty() {
            outs
        } else {
            vec![Abs::Other]
        }
    }
}

fn child(path: &[Step], step: Step) -> Abs {
    let mut p = path.to_vec();
    p.push(step);
    Abs::At(p)
}

/// The text of a string literal without interpolation or format.
pub(crate) fn literal(t: &Term<&str>) -> Option<String> {
    let Term::Str(None, parts) = t else {
        return None;
    };
    let mut s = String::new();
    for p in parts {
        match p {
            StrPart::Str(text) => s.push_str(text),
            StrPart::Char(c) => s.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests;
