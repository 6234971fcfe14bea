//! A LIST answer read item by item as its bytes arrive, so that memory per
//! response is bounded by the largest single object (`max_item`), not by
//! the page: a server that ignores `limit` may send the whole collection as
//! one page of hundreds of megabytes.
//!
//! The scanner finds where each value of the top-level object ends (depth,
//! strings and escapes), across any split of the input. It hands out each
//! element of `items` as one slice; `kind` and `metadata` (resourceVersion,
//! continue) are kept; everything else is skipped. It does not validate an
//! item's JSON: the caller does, with the strict scanner (`kube::scan`),
//! before anything acts on it. Bytes already handed out are dropped on the
//! next call, so the buffer holds one partial item plus the last input.

use std::fmt;

/// Where and why the answer is not a usable LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    /// Offset in the body.
    pub at: u64,
    pub what: String,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for ListError {}

/// What the list says about itself, as far as it has been read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListInfo {
    /// Kind of the items ("PodList" → "Pod"), when the server said.
    pub item_kind: Option<String>,
    pub resource_version: Option<String>,
    /// `None` on the last page.
    pub continue_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level `{`.
    Open,
    /// Before a key or the closing `}` (`first`: no member yet).
    Key {
        first: bool,
    },
    /// Inside a key string.
    InKey,
    Colon,
    /// Before a member's value.
    Value,
    /// Inside a member's value (not `items`).
    InValue,
    /// After a member: `,` or `}`.
    Comma,
    /// After `"items":`, before `[` (or `null`).
    ItemsOpen,
    /// Before an item or `]` (`first`: no item yet).
    Item {
        first: bool,
    },
    InItem,
    /// After an item: `,` or `]`.
    ItemComma,
    /// Inside a `null` in place of the items array.
    ItemsNull,
    /// After the top-level `}`: only whitespace.
    Done,
}

/// Where a value being scanned stands.
#[derive(Debug, Clone, Copy, Default)]
struct Value {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A number or literal at the top of the value.
    scalar: bool,
}

/// Longest top-level key kept (longer ones cannot be `items`, `kind` or
/// `metadata`; they are skipped by their value).
const MAX_KEY: usize = 64;

#[derive(Debug, Clone)]
pub struct ListScanner {
    buf: Vec<u8>,
    /// Scanning position in `buf`.
    pos: usize,
    /// Start in `buf` of the value being scanned.
    mark: usize,
    /// Body offset of `buf[0]`.
    base: u64,
    state: State,
    value: Value,
    key: Vec<u8>,
    key_escaped: bool,
    max_item: usize,
    info: ListInfo,
}

impl ListScanner {
    /// `max_item`: the largest item (or list metadata) accepted, in bytes.
    pub fn new(max_item: usize) -> Self {
        ListScanner {
            buf: Vec::new(),
            pos: 0,
            mark: 0,
            base: 0,
            state: State::Open,
            value: Value::default(),
            key: Vec::new(),
            key_escaped: false,
            max_item,
            info: ListInfo::default(),
        }
    }

    /// More of the body.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn info(&self) -> &ListInfo {
        &self.info
    }

    /// Bytes held (a partial item and input not scanned yet).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn error(&self, what: impl Into<String>) -> ListError {
        ListError {
            at: self.base + self.pos as u64,
            what: what.into(),
        }
    }

    /// Drops what was handed out or skipped.
    fn compact(&mut self) {
        let keep_from = match self.state {
            State::InValue | State::InItem | State::ItemsNull => self.mark,
            _ => self.pos,
        };
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.base += keep_from as u64;
            self.pos -= keep_from;
            self.mark = self.mark.saturating_sub(keep_from);
        }
    }

    /// The next complete item with what the list said of itself so far,
    /// `Ok(None)` when more input is needed.
    pub fn next_item(&mut self) -> Result<Option<(&[u8], &ListInfo)>, ListError> {
        self.compact();
        while let Some(&b) = self.buf.get(self.pos) {
            let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
            match self.state {
                State::Open | State::Key { .. } | State::Colon | State::Value if ws => {}
                State::Comma
                | State::ItemsOpen
                | State::Item { .. }
                | State::ItemComma
                | State::Done
                    if ws => {}
                State::Open if b == b'{' => self.state = State::Key { first: true },
                State::Open => return Err(self.error("a LIST answer must be a JSON object")),
                State::Key { first: true } if b == b'}' => self.state = State::Done,
                State::Key { .. } if b == b'"' => {
                    self.key.clear();
                    self.key_escaped = false;
                    self.value = Value::default();
                    self.state = State::InKey;
                }
                State::Key { .. } => return Err(self.error("expected a member name")),
                State::InKey => {
                    if self.value.escaped {
                        self.value.escaped = false;
                    } else if b == b'\\' {
                        self.value.escaped = true;
                        self.key_escaped = true;
                    } else if b == b'"' {
                        self.state = State::Colon;
                        self.pos += 1;
                        continue;
                    }
                    if self.key.len() < MAX_KEY {
                        self.key.push(b);
                    }
                }
                State::Colon if b == b':' => self.state = State::Value,
                State::Colon => return Err(self.error("expected ':'")),
                State::Value if !self.key_escaped && self.key == b"items" => {
                    self.state = State::ItemsOpen;
                    continue;
                }
                State::Value => {
                    self.begin_value();
                    self.state = State::InValue;
                    continue;
                }
                State::InValue => {
                    if self.scan_value_byte(b)? {
                        self.end_member()?;
                        self.state = State::Comma;
                        continue;
                    }
                }
                State::Comma if b == b',' => self.state = State::Key { first: false },
                State::Comma if b == b'}' => self.state = State::Done,
                State::Comma => return Err(self.error("expected ',' or '}' after a member")),
                State::ItemsOpen if b == b'[' => self.state = State::Item { first: true },
                State::ItemsOpen if b == b'n' => {
                    self.begin_value();
                    self.state = State::ItemsNull;
                    continue;
                }
                State::ItemsOpen => return Err(self.error("\"items\" must be an array")),
                State::ItemsNull => {
                    if self.scan_value_byte(b)? {
                        if self.buf.get(self.mark..self.pos) != Some(b"null".as_slice()) {
                            return Err(self.error("\"items\" must be an array"));
                        }
                        self.state = State::Comma;
                        continue;
                    }
                }
                State::Item { first: true } if b == b']' => self.state = State::Comma,
                State::Item { .. } => {
                    self.begin_value();
                    self.state = State::InItem;
                    continue;
                }
                State::InItem => {
                    if self.scan_value_byte(b)? {
                        self.state = State::ItemComma;
                        let item = self.buf.get(self.mark..self.pos).unwrap_or_default();
                        return Ok(Some((item, &self.info)));
                    }
                }
                State::ItemComma if b == b',' => self.state = State::Item { first: false },
                State::ItemComma if b == b']' => self.state = State::Comma,
                State::ItemComma => return Err(self.error("expected ',' or ']' after an item")),
                State::Done => return Err(self.error("bytes after the end of the LIST answer")),
            }
            self.pos += 1;
        }
        if matches!(
            self.state,
            State::InValue | State::InItem | State::ItemsNull
        ) && self.pos - self.mark > self.max_item
        {
            return Err(self.too_large());
        }
        Ok(None)
    }

    fn too_large(&self) -> ListError {
        self.error(format!(
            "a LIST item (or the list's metadata) is larger than {} bytes (max_line_bytes)",
            self.max_item
        ))
    }

    fn begin_value(&mut self) {
        self.mark = self.pos;
        self.value = Value::default();
    }

    /// One byte of a value at `self.pos`; true when the value ended
    /// (`self.pos` is then just past it), false when the caller moves on.
    fn scan_value_byte(&mut self, b: u8) -> Result<bool, ListError> {
        let ends_scalar = self.value.scalar
            && !self.value.in_string
            && matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r');
        if !ends_scalar && self.pos - self.mark >= self.max_item {
            return Err(self.too_large());
        }
        let v = &mut self.value;
        let first = self.pos == self.mark;
        if v.in_string {
            if v.escaped {
                v.escaped = false;
            } else if b == b'\\' {
                v.escaped = true;
            } else if b == b'"' {
                v.in_string = false;
                if v.depth == 0 {
                    self.pos += 1;
                    return Ok(true);
                }
            }
        } else if v.scalar {
            if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                // Ends before this byte.
                return Ok(true);
            }
        } else {
            match b {
                b'"' => v.in_string = true,
                b'{' | b'[' => v.depth += 1,
                b'}' | b']' if v.depth > 0 => {
                    v.depth -= 1;
                    if v.depth == 0 {
                        self.pos += 1;
                        return Ok(true);
                    }
                }
                b'}' | b']' => return Err(self.error("unbalanced brackets")),
                b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' if v.depth > 0 => {}
                _ if first => v.scalar = true,
                _ if v.depth == 0 => return Err(self.error("unexpected byte in a value")),
                _ => {}
            }
        }
        Ok(false)
    }

    /// A top-level member's value is complete: keep what matters.
    fn end_member(&mut self) -> Result<(), ListError> {
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(default, rename = "resourceVersion")]
            resource_version: Option<String>,
            #[serde(default, rename = "continue")]
            continue_token: Option<String>,
        }
        let value = self.buf.get(self.mark..self.pos).unwrap_or_default();
        if self.key_escaped {
            return Ok(());
        }
        match self.key.as_slice() {
            b"kind" => {
                let kind: Option<String> = serde_json::from_slice(value)
                    .map_err(|e| self.error(format!("unusable \"kind\": {e}")))?;
                self.info.item_kind = kind
                    .as_deref()
                    .and_then(|k| k.strip_suffix("List"))
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned);
            }
            b"metadata" => {
                let meta: Option<Meta> = serde_json::from_slice(value)
                    .map_err(|e| self.error(format!("unusable list \"metadata\": {e}")))?;
                if let Some(meta) = meta {
                    self.info.resource_version = meta.resource_version;
                    self.info.continue_token = meta.continue_token.filter(|c| !c.is_empty());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The body ended: it must have been a whole LIST answer.
    pub fn finish(&mut self) -> Result<(), ListError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        if self.state == State::Done && rest.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(());
        }
        Err(self.error("the LIST answer ended early"))
    }
}

#[cfg(test)]
mod tests;
