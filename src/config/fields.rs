//! Generic field readers shared by every section: required and optional
//! strings converted by a parser, durations, bounded integers, lists of
//! distinct strings, `[table.NAME]` maps, references between sections and
//! file paths. Section files (`daemon.rs`, `cluster.rs`, `watch.rs`,
//! `sink.rs`) build on these and never on each other, so the schema has no
//! import loop.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::Value;

use super::doc::{Ctx, Field, TableNode};
use super::syntax::{check_name, closest, parse_duration, parse_size, resolve_path};
use super::vars::{expand, Syntax};

/// Largest CA bundle read when checking it holds a certificate.
const MAX_CA_BYTES: u64 = 16 << 20;

/// What parsing may consult besides the text, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Nothing: no environment variable, kubeconfig, service account or
    /// referenced file (`kwatchd check --offline`). Every check that needs
    /// none of them still runs; the configuration built is not usable.
    Offline,
    /// The environment (`${VAR}`, `HOME`, the in-cluster variables) and
    /// the kubeconfigs and service account a cluster names: everything a
    /// usable configuration needs. Referenced files are not checked.
    Environment,
    /// Also check that referenced files (CA, token, keys, hook programs,
    /// directories) are usable.
    Files,
}

/// What parsing needs from outside the text.
pub(crate) struct Env {
    /// Base for relative paths (the working directory), if known.
    pub(crate) base_dir: Option<PathBuf>,
    pub(crate) reach: Reach,
    /// Variables `${VAR}` expand from: `None` is the process environment
    /// (the normal case); tests pass a fixed map so they never have to
    /// mutate the process environment.
    pub(crate) vars: Option<BTreeMap<String, String>>,
}

impl Env {
    /// The process's environment and working directory.
    pub(crate) fn process(reach: Reach) -> Env {
        Env {
            base_dir: std::env::current_dir().ok(),
            reach,
            vars: None,
        }
    }

    /// Variables from `vars` only, never the process environment (tests).
    #[cfg(test)]
    pub(crate) fn fixed(reach: Reach, vars: &[(&str, &str)]) -> Env {
        Env {
            vars: Some(
                vars.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Env::process(reach)
        }
    }

    /// Whether referenced files are to be checked.
    pub(crate) fn check_files(&self) -> bool {
        self.reach == Reach::Files
    }

    /// Whether nothing outside the text may be consulted.
    pub(crate) fn offline(&self) -> bool {
        self.reach == Reach::Offline
    }

    /// The value of environment variable `name`, `Ok(None)` when unset.
    pub(crate) fn var(&self, name: &str) -> Result<Option<String>, String> {
        match &self.vars {
            Some(vars) => Ok(vars.get(name).cloned()),
            None => match std::env::var(name) {
                Ok(v) => Ok(Some(v)),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(format!("environment variable {name} is not valid UTF-8"))
                }
            },
        }
    }
}

/// A configured file path: `${VAR}` and `$VAR` expanded (see `vars.rs`),
/// then resolved against the working directory.
pub(super) fn path(s: &str, env: &Env) -> Result<PathBuf, String> {
    resolve_path(&expand_path_vars(s, env)?, env.base_dir.as_deref())
}

/// A path-valued key's value as the daemon resolves it (variables of the
/// process environment expanded, relative to the working directory), for
/// commands that read one key without loading the whole file.
pub(crate) fn resolve_in_process(s: &str) -> Result<PathBuf, String> {
    path(s, &Env::process(Reach::Environment))
}

/// `${VAR}` and `$VAR` in a path, expanded.
pub(super) fn expand_path_vars(s: &str, env: &Env) -> Result<String, String> {
    expand(s, env, Syntax::Shell, &|name, value| {
        // `${EMPTY}/token` would name `/token`: never what was meant.
        if value.is_empty() {
            Err(format!(
                "environment variable {name} is empty (in the path {s:?})"
            ))
        } else {
            Ok(())
        }
    })
}

/// A required string key converted by `parse`.
pub(super) fn required<T>(
    ctx: &mut Ctx,
    t: &TableNode,
    key: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    t.require(ctx, key)?.parse_str(ctx, parse)
}

/// An optional string key converted by `parse`; `Some(None)` when absent.
pub(super) fn optional<T>(
    ctx: &mut Ctx,
    t: &TableNode,
    key: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<Option<T>> {
    match t.get(key) {
        None => Some(None),
        Some(f) => f.parse_str(ctx, parse).map(Some),
    }
}

/// An optional string key converted by `parse`, else `default`.
pub(super) fn with_default<T>(
    ctx: &mut Ctx,
    t: &TableNode,
    key: &str,
    default: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    optional(ctx, t, key, parse).map(|v| v.unwrap_or(default))
}

/// An optional duration string within `[min, max]`, else `default`.
pub(super) fn duration(
    ctx: &mut Ctx,
    t: &TableNode,
    key: &str,
    default: Duration,
    (min, max): (Duration, Duration),
) -> Option<Duration> {
    let Some(f) = t.get(key) else {
        return Some(default);
    };
    let s = f.str_or_hint(ctx, duration_hint)?;
    f.check(ctx, parse_duration(s, min, max))
}

/// A bare number where a duration belongs: the string to write instead
/// (`300` -> `"300s"`, `1.5` -> `"1500ms"`).
fn duration_hint(value: &Value) -> Option<String> {
    let written = match value {
        Value::Integer(n) if *n.value() >= 0 => format!("{}s", n.value()),
        Value::Float(x) if x.value().is_finite() && *x.value() >= 0.0 => {
            let ms = (x.value() * 1000.0).round();
            // Saturating casts: a huge number still gets a (too long) hint.
            if ms % 1000.0 == 0.0 {
                format!("{}s", (ms / 1000.0) as u64)
            } else {
                format!("{}ms", ms as u64)
            }
        }
        _ => return None,
    };
    Some(format!(
        "durations are strings with a unit: write \"{written}\""
    ))
}

/// An optional boolean, else `default`.
pub(super) fn boolean(ctx: &mut Ctx, t: &TableNode, key: &str, default: bool) -> Option<bool> {
    t.get(key).map_or(Some(default), |f| f.bool(ctx))
}

/// An optional integer key within `[min, max]`, else `default`.
pub(super) fn integer<T: TryFrom<i64>>(
    ctx: &mut Ctx,
    t: &TableNode,
    key: &str,
    default: T,
    min: i64,
    max: i64,
) -> Option<T> {
    let Some(f) = t.get(key) else {
        return Some(default);
    };
    let n = f.expect(ctx, "an integer", Value::as_integer)?;
    let checked = if (min..=max).contains(&n) {
        T::try_from(n).map_err(|_| format!("{n} does not fit on this platform"))
    } else {
        Err(format!("must be from {min} to {max}, got {n}"))
    };
    f.check(ctx, checked)
}

/// A queue bound in events (`sink_queue_events`, a sink's `queue_events`).
pub(super) fn queue_events(ctx: &mut Ctx, f: &Field) -> Option<usize> {
    let n = f.expect(ctx, "an integer", Value::as_integer)?;
    let checked = match usize::try_from(n) {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("must be at least 1, got {n}")),
    };
    f.check(ctx, checked)
}

/// A size in bytes: an integer or a size string like `"16MiB"`, within
/// `(min, max)` (both included).
pub(super) fn size(ctx: &mut Ctx, f: &Field, (min, max): (u64, u64)) -> Option<usize> {
    let expected = "an integer number of bytes or a size string like \"16MiB\"";
    let value = f.expect(ctx, expected, |v| match v {
        Value::Integer(i) => Some(Ok(*i.value())),
        Value::String(s) => Some(Err(s.value().as_str())),
        _ => None,
    })?;
    let bytes = match value {
        Ok(n) => u64::try_from(n).map_err(|_| format!("size {n} is negative")),
        Err(s) => parse_size(s),
    };
    let in_range = bytes.and_then(|b| {
        if (min..=max).contains(&b) {
            usize::try_from(b).map_err(|_| format!("size {b} does not fit in memory"))
        } else {
            Err(format!(
                "{b} bytes is out of range; allowed: {} ({min}) to {} ({max})",
                human_size(min),
                human_size(max)
            ))
        }
    });
    f.check(ctx, in_range)
}

/// `bytes` in the largest binary unit that divides it.
fn human_size(bytes: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes % factor == 0 {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// Keeps a valid string as an owned value.
pub(super) fn owned(
    check: impl FnOnce(&str) -> Result<(), String>,
) -> impl FnOnce(&str) -> Result<String, String> {
    move |s| check(s).map(|()| s.to_string())
}

/// `name` must be one of `defined` (the keys of `[table.NAME]`).
pub(super) fn reference(
    table: &str,
    kind: &str,
    name: &str,
    defined: &[String],
) -> Result<String, String> {
    if defined.iter().any(|d| d == name) {
        return Ok(name.to_string());
    }
    if defined.is_empty() {
        return Err(format!(
            "{kind} {name:?} is not defined (there is no [{table}.NAME] table)"
        ));
    }
    let list = defined.join(", ");
    Err(match closest(name, defined.iter().map(String::as_str)) {
        Some(near) => {
            format!("{kind} {name:?} is not defined; did you mean {near:?}? (defined: {list})")
        }
        None => format!("{kind} {name:?} is not defined (defined: {list})"),
    })
}

/// The entries of a `[table.NAME]` map.
pub(super) struct NamedTables<'a> {
    /// Every key, valid or not, so that references to it do not cascade.
    pub(super) names: Vec<String>,
    tables: Vec<(String, TableNode<'a>)>,
    ok: bool,
}

impl<'a> NamedTables<'a> {
    /// Builds every table; `None` if any entry (or the map) was invalid.
    pub(super) fn build<T>(
        self,
        mut build: impl FnMut(&str, &TableNode<'a>) -> Option<T>,
    ) -> Option<BTreeMap<String, T>> {
        let mut ok = self.ok;
        let mut map = BTreeMap::new();
        for (name, table) in &self.tables {
            match build(name, table) {
                Some(value) => {
                    map.insert(name.clone(), value);
                }
                None => ok = false,
            }
        }
        ok.then_some(map)
    }
}

/// Reads `[key.NAME]` tables (`key` itself optional), checking each NAME.
pub(super) fn named_tables<'a>(
    ctx: &mut Ctx,
    root: &TableNode<'a>,
    key: &str,
    kind: &str,
) -> NamedTables<'a> {
    let mut named = NamedTables {
        names: Vec::new(),
        tables: Vec::new(),
        ok: true,
    };
    let Some(field) = root.get(key) else {
        return named;
    };
    let Some(map) = field.table(ctx, format!("[{key}.NAME]")) else {
        named.ok = false;
        return named;
    };
    for (name, entry) in map.entries() {
        named.names.push(name.clone());
        if let Err(e) = check_name(kind, &name) {
            ctx.error(entry.key_pos(), entry.path(), e);
            named.ok = false;
        }
        match entry.table(ctx, format!("[{}]", entry.path())) {
            Some(table) => named.tables.push((name, table)),
            None => named.ok = false,
        }
    }
    named
}

/// A validated list of distinct strings, with each element's field.
pub(super) struct Strings<'a> {
    pub(super) items: Vec<(Field<'a>, &'a str)>,
    pub(super) ok: bool,
}

/// A non-empty array of distinct strings; records every problem.
pub(super) fn distinct_strings<'a>(
    ctx: &mut Ctx,
    field: &Field<'a>,
    what: &str,
) -> Option<Strings<'a>> {
    let elements = field.array(ctx)?;
    if elements.is_empty() {
        field.error(ctx, format!("must list at least one {what}"));
        return None;
    }
    let mut strings = Strings {
        items: Vec::new(),
        ok: true,
    };
    for element in elements {
        let Some(s) = element.str(ctx) else {
            strings.ok = false;
            continue;
        };
        if strings.items.iter().any(|(_, seen)| *seen == s) {
            element.error(ctx, format!("duplicate {what} {s:?}"));
            strings.ok = false;
            continue;
        }
        strings.items.push((element, s));
    }
    Some(strings)
}

/// What a referenced file must hold.
#[derive(Clone, Copy)]
pub(super) enum FileKind {
    Pem,
    Token,
    /// A PEM private key.
    Key,
}

/// An optional file path, expanded and resolved, and with
/// `env.check_files()` readable.
pub(super) fn file_path(
    ctx: &mut Ctx,
    env: &Env,
    t: &TableNode,
    key: &str,
    kind: FileKind,
) -> Option<Option<PathBuf>> {
    let Some(f) = t.get(key) else {
        return Some(None);
    };
    let path = f.parse_str(ctx, |s| path(s, env))?;
    if env.check_files() {
        f.check(ctx, check_file(&path, kind))?;
    }
    Some(Some(path))
}

/// A readable regular file; a CA bundle must hold a PEM certificate.
pub(super) fn check_file(path: &Path, kind: FileKind) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let (marker, what): (&[u8], &str) = match kind {
        FileKind::Token => return Ok(()),
        FileKind::Pem => (b"-----BEGIN CERTIFICATE-----", "certificate"),
        // Never quote a key file's content in a message.
        FileKind::Key => (b"PRIVATE KEY-----", "private key"),
    };
    let mut text = Vec::new();
    file.take(MAX_CA_BYTES)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !text.windows(marker.len()).any(|w| w == marker) {
        let line = match kind {
            FileKind::Key => "-----BEGIN ... PRIVATE KEY-----",
            _ => "-----BEGIN CERTIFICATE-----",
        };
        return Err(format!("{shown} holds no PEM {what} (no \"{line}\" line)"));
    }
    Ok(())
}
