//! A typed, position-aware view of a parsed TOML document.
//!
//! The document is parsed with `toml_edit::ImDocument`, which keeps the byte
//! span of every key, value and table header. The schema code walks it field
//! by field through [`TableNode`] and [`Field`]; every type or value problem is
//! recorded in [`Ctx`] with its position and dotted key, and the walk goes on,
//! so one pass reports every problem in the file.

use std::path::Path;

use toml_edit::{Item, TableLike, Value};

use super::error::ConfigError;
use super::syntax::closest;

/// Byte offset into the document text, when known.
pub(crate) type Pos = Option<usize>;

/// Collects the errors found while walking one document.
pub(crate) struct Ctx<'t> {
    text: &'t str,
    file: &'t Path,
    errors: Vec<ConfigError>,
}

impl<'t> Ctx<'t> {
    pub(crate) fn new(text: &'t str, file: &'t Path) -> Self {
        Ctx {
            text,
            file,
            errors: Vec::new(),
        }
    }

    /// Records a problem at `pos` about the dotted `key`.
    pub(crate) fn error(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        let (line, column) = pos.map(|p| line_col(self.text, p)).unzip();
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// The document's text (to map a position inside a string value).
    pub(crate) fn text(&self) -> &'t str {
        self.text
    }

    /// 1-based line of `pos`.
    pub(crate) fn line_of(&self, pos: Pos) -> Option<usize> {
        pos.map(|p| line_col(self.text, p).0)
    }

    pub(crate) fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }
}

/// 1-based (line, column) of a byte offset; the column counts characters.
/// Offsets past the end or inside a character are clamped, never a panic.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    // Once per error, over everything before it: memchr's word-at-a-time
    // count keeps a text with thousands of errors from going quadratic byte
    // by byte.
    let line = memchr::memchr_iter(b'\n', before.as_bytes()).count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Joins a dotted key path; names that are not TOML bare keys are quoted.
pub(crate) fn join_key(parent: &str, name: &str) -> String {
    let segment = key_segment(name);
    if parent.is_empty() {
        segment
    } else {
        format!("{parent}.{segment}")
    }
}

fn key_segment(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        return name.to_string();
    }
    let mut quoted = String::from("\"");
    for c in name.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// What a TOML item or value is, for "expected X, found Y" messages.
fn describe_value(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

/// What a key or array element holds: an `Item` (in a table), a `Value`
/// (in an inline array) or a `Table` (in an array of tables).
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn value(self) -> Option<&'a Value> {
        match self {
            Node::Item(item) => item.as_value(),
            Node::Value(value) => Some(value),
            Node::Table(_) => None,
        }
    }

    fn table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(Item::Table(t)) | Node::Table(t) => Some(t as &dyn TableLike),
            Node::Item(Item::Value(Value::InlineTable(t))) | Node::Value(Value::InlineTable(t)) => {
                Some(t as &dyn TableLike)
            }
            _ => None,
        }
    }

    fn start(self) -> Pos {
        let span = match self {
            Node::Item(item) => item.span(),
            Node::Value(value) => value.span(),
            Node::Table(table) => table.span(),
        };
        span.map(|s| s.start)
    }

    fn describe(self) -> &'static str {
        match self {
            Node::Item(Item::None) => "nothing",
            Node::Item(Item::Table(_)) | Node::Table(_) => "a table",
            Node::Item(Item::ArrayOfTables(_)) => "an array of tables",
            Node::Item(Item::Value(v)) | Node::Value(v) => describe_value(v),
        }
    }
}

/// A table (standard, implicit, dotted or inline) with its position, its
/// dotted path and a label for messages such as `[clusters.local]`.
#[derive(Clone)]
pub(crate) struct TableNode<'a> {
    items: &'a dyn TableLike,
    pos: Pos,
    path: String,
    label: String,
}

impl<'a> TableNode<'a> {
    /// The document's root table.
    pub(crate) fn root(table: &'a toml_edit::Table) -> Self {
        TableNode {
            items: table,
            pos: Some(table.span().map_or(0, |s| s.start)),
            path: String::new(),
            label: "the top level".to_string(),
        }
    }

    /// Where the table starts (its header), for "missing key" errors.
    pub(crate) fn pos(&self) -> Pos {
        self.pos
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The entry `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<Field<'a>> {
        let (k, item) = self.items.get_key_value(key)?;
        Some(Field {
            node: Node::Item(item),
            key_pos: k.span().map(|s| s.start).or(self.pos),
            path: join_key(&self.path, key),
        })
    }

    /// The entry `key`; when missing, records an error at the table header.
    pub(crate) fn require(&self, ctx: &mut Ctx, key: &str) -> Option<Field<'a>> {
        let field = self.get(key);
        if field.is_none() {
            ctx.error(
                self.pos,
                &join_key(&self.path, key),
                format!("missing required key `{key}` in {}", self.label),
            );
        }
        field
    }

    /// For messages: `[daemon]`, `[[watch]] #2`, `the top level`.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// "at the top level" or "in [daemon]".
    fn place(&self) -> String {
        if self.path.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in {}", self.label)
        }
    }

    /// Every entry, in document order (for maps such as `[clusters.NAME]`).
    pub(crate) fn entries(&self) -> Vec<(String, Field<'a>)> {
        self.items
            .iter()
            .filter_map(|(key, _)| Some((key.to_string(), self.get(key)?)))
            .collect()
    }

    /// Records an error for every key that is not in `allowed`, with the
    /// closest allowed key when one is close enough to be what was meant.
    pub(crate) fn check_keys(&self, ctx: &mut Ctx, allowed: &[&str]) {
        for (key, field) in self.entries() {
            if !allowed.contains(&key.as_str()) {
                let place = self.place();
                let list = allowed.join(", ");
                let message = match closest(&key, allowed.iter().copied()) {
                    Some(near) => format!(
                        "unknown key `{key}` {place}; did you mean `{near}`? (expected one of: {list})"
                    ),
                    None => format!("unknown key `{key}` {place}; expected one of: {list}"),
                };
                ctx.error(field.key_pos, &field.path, message);
            }
        }
    }

    /// Entries not in `known` that look like a misspelling of one of
    /// `wanted`, as `(written, meant)`.
    pub(crate) fn misspellings<'w>(
        &self,
        known: &[&str],
        wanted: &[&'w str],
    ) -> Vec<(String, &'w str)> {
        self.entries()
            .into_iter()
            .filter(|(key, _)| !known.contains(&key.as_str()))
            .filter_map(|(key, _)| {
                let meant = closest(&key, wanted.iter().copied())?;
                Some((key, meant))
            })
            .collect()
    }
}

/// One key's value in the document, with its position and dotted path.
#[derive(Clone)]
pub(crate) struct Field<'a> {
    node: Node<'a>,
    key_pos: Pos,
    path: String,
}

impl<'a> Field<'a> {
    /// Dotted key of this field, e.g. `watch[0].events[2]`.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Position of the value (falls back to the key).
    pub(crate) fn pos(&self) -> Pos {
        self.node.start().or(self.key_pos)
    }

    /// Position of the key (for inline array elements: the element).
    pub(crate) fn key_pos(&self) -> Pos {
        self.key_pos
    }

    /// Records an error about this field's value.
    pub(crate) fn error(&self, ctx: &mut Ctx, message: impl Into<String>) {
        ctx.error(self.pos(), &self.path, message);
    }

    fn type_error(&self, ctx: &mut Ctx, expected: &str) {
        let found = self.node.describe();
        self.error(ctx, format!("expected {expected}, found {found}"));
    }

    /// A string; when the value is another type, `hint` may say what to
    /// write instead (e.g. a duration given as a bare number).
    pub(crate) fn str_or_hint(
        &self,
        ctx: &mut Ctx,
        hint: impl FnOnce(&Value) -> Option<String>,
    ) -> Option<&'a str> {
        let value = self.node.value();
        if let Some(s) = value.and_then(Value::as_str) {
            return Some(s);
        }
        let found = self.node.describe();
        let hint = value
            .and_then(hint)
            .map_or(String::new(), |h| format!("; {h}"));
        self.error(ctx, format!("expected a string, found {found}{hint}"));
        None
    }

    /// The value converted by `get`, or a type error naming `expected`.
    pub(crate) fn expect<T>(
        &self,
        ctx: &mut Ctx,
        expected: &str,
        get: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Option<T> {
        let value = self.node.value().and_then(get);
        if value.is_none() {
            self.type_error(ctx, expected);
        }
        value
    }

    pub(crate) fn str(&self, ctx: &mut Ctx) -> Option<&'a str> {
        self.expect(ctx, "a string", Value::as_str)
    }

    pub(crate) fn bool(&self, ctx: &mut Ctx) -> Option<bool> {
        self.expect(ctx, "a boolean (true or false)", Value::as_bool)
    }

    /// The raw value, for keys that accept more than one type.
    pub(crate) fn value(&self) -> Option<&'a Value> {
        self.node.value()
    }

    /// A string converted by `parse`; its error message is recorded here.
    pub(crate) fn parse_str<T>(
        &self,
        ctx: &mut Ctx,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.str(ctx)?;
        self.check(ctx, parse(s))
    }

    /// Records the error of `result`, if any, against this field.
    pub(crate) fn check<T>(&self, ctx: &mut Ctx, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.error(ctx, message)).ok()
    }

    /// This field as a table labelled `label` (e.g. `[clusters.local]`).
    pub(crate) fn table(&self, ctx: &mut Ctx, label: String) -> Option<TableNode<'a>> {
        let Some(items) = self.node.table_like() else {
            self.type_error(ctx, &format!("a table {label}"));
            return None;
        };
        Some(TableNode {
            items,
            pos: self.pos(),
            path: self.path.clone(),
            label,
        })
    }

    /// The elements of an array value.
    pub(crate) fn array(&self, ctx: &mut Ctx) -> Option<Vec<Field<'a>>> {
        let array = self.expect(ctx, "an array", Value::as_array)?;
        let fields = array
            .iter()
            .enumerate()
            .map(|(i, value)| self.element(Node::Value(value), i))
            .collect();
        Some(fields)
    }

    /// The tables of an array of tables (`[[name]]`, or an inline array of
    /// inline tables), labelled `[[name]] #n` (1-based).
    pub(crate) fn tables(&self, ctx: &mut Ctx, name: &str) -> Option<Vec<TableNode<'a>>> {
        let elements: Vec<Field<'a>> = match self.node {
            Node::Item(Item::ArrayOfTables(tables)) => tables
                .iter()
                .enumerate()
                .map(|(i, t)| self.element(Node::Table(t), i))
                .collect(),
            _ => match self.node.value() {
                Some(Value::Array(_)) => self.array(ctx)?,
                _ => {
                    self.type_error(ctx, &format!("an array of tables ([[{name}]])"));
                    return None;
                }
            },
        };
        let tables = elements
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.table(ctx, format!("[[{name}]] #{}", i + 1)))
            .collect();
        Some(tables)
    }

    fn element(&self, node: Node<'a>, index: usize) -> Field<'a> {
        Field {
            node,
            key_pos: node.start().or(self.key_pos),
            path: format!("{}[{index}]", self.path),
        }
    }
}
