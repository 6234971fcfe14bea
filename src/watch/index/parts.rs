//! The pieces an [`ObjectIndex`](super::ObjectIndex) entry is made of, each
//! stored the cheapest way its common case allows: uids as 16 bytes when
//! they are UUIDs, resourceVersions as a `u64` when they are integers
//! (KEP-5504: comparable positive integers since Kubernetes 1.35),
//! namespaces interned, names in one arena. What does not fit (a server
//! that sends something else) goes to a side table of strings, so it costs
//! what it did before and the common case pays nothing for it.
//!
//! Every conversion is a bijection on strings: a string takes the compact
//! form only when turning it back gives the same bytes (lowercase, hyphenated
//! UUIDs; decimal integers without leading zeros), so comparing compact
//! forms is comparing the strings.

use std::fmt::Write as _;

/// A uid in the canonical textual form (`8-4-4-4-12` lowercase hex), as its
/// 128 bits; anything else (uppercase, braces, another length) is `None`.
pub fn parse_uuid(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut v: u128 = 0;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u128::from(d);
    }
    Some(v)
}

/// The canonical text of a UUID, in a stack buffer.
pub fn format_uuid(v: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut nibble = 32;
    for (i, o) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        nibble -= 1;
        *o = HEX[((v >> (nibble * 4)) & 0xf) as usize];
    }
    out
}

/// A resourceVersion as an integer when its text is one in canonical form
/// (digits, no sign, no leading zero unless it is "0", within `u64`).
pub fn parse_version(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 20 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    if !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse().ok()
}

/// A resourceVersion as an index stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version<'a> {
    /// An integer; `unconfirmed` is the mark of
    /// [`unconfirmed_version`](super::unconfirmed_version) (a NUL in front).
    Int {
        value: u64,
        unconfirmed: bool,
    },
    Text(&'a str),
}

impl<'a> Version<'a> {
    pub fn of(s: &'a str) -> Self {
        if let Some(value) = parse_version(s) {
            return Version::Int {
                value,
                unconfirmed: false,
            };
        }
        if let Some(value) = s.strip_prefix('\0').and_then(parse_version) {
            return Version::Int {
                value,
                unconfirmed: true,
            };
        }
        Version::Text(s)
    }

    /// The text the version was made from.
    pub fn write_to(self, out: &mut String) {
        match self {
            Version::Int { value, unconfirmed } => {
                if unconfirmed {
                    out.push('\0');
                }
                let _ = write!(out, "{value}");
            }
            Version::Text(s) => out.push_str(s),
        }
    }
}

/// Strings that did not fit a compact form (text uids, text versions), by a
/// `u32` handle; freed handles are reused.
#[derive(Debug, Default)]
pub struct Texts {
    items: Vec<Box<str>>,
    free: Vec<u32>,
}

impl Texts {
    /// `None` after 2^32 live strings.
    pub fn add(&mut self, s: &str) -> Option<u32> {
        if let Some(i) = self.free.pop() {
            if let Some(slot) = self.items.get_mut(i as usize) {
                *slot = s.into();
                return Some(i);
            }
        }
        let i = u32::try_from(self.items.len()).ok()?;
        self.items.push(s.into());
        Some(i)
    }

    pub fn get(&self, i: u32) -> &str {
        self.items.get(i as usize).map_or("", |s| s)
    }

    pub fn set(&mut self, i: u32, s: &str) {
        if let Some(slot) = self.items.get_mut(i as usize) {
            *slot = s.into();
        }
    }

    pub fn remove(&mut self, i: u32) {
        if let Some(slot) = self.items.get_mut(i as usize) {
            *slot = Box::default();
            self.free.push(i);
        }
    }
}

/// Namespaces, each stored once with a count of the entries that use it
/// (a namespace deleted from the cluster leaves nothing behind).
#[derive(Debug, Default)]
pub struct Namespaces {
    /// By id: the name and how many entries use it (0: free).
    names: Vec<(Box<str>, u32)>,
    ids: std::collections::HashMap<Box<str>, u32>,
    free: Vec<u32>,
}

impl Namespaces {
    /// The id of `ns`, counted once more; `None` when `limit` ids are in use.
    pub fn intern(&mut self, ns: &str, limit: u32) -> Option<u32> {
        if let Some(&id) = self.ids.get(ns) {
            if let Some(e) = self.names.get_mut(id as usize) {
                e.1 = e.1.saturating_add(1);
            }
            return Some(id);
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = u32::try_from(self.names.len())
                    .ok()
                    .filter(|&i| i < limit)?;
                self.names.push((Box::default(), 0));
                id
            }
        };
        if let Some(e) = self.names.get_mut(id as usize) {
            *e = (ns.into(), 1);
        }
        self.ids.insert(ns.into(), id);
        Some(id)
    }

    pub fn get(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |e| &e.0)
    }

    /// One entry less uses `id`.
    pub fn release(&mut self, id: u32) {
        if let Some(e) = self.names.get_mut(id as usize) {
            e.1 = e.1.saturating_sub(1);
            if e.1 == 0 {
                self.ids.remove(&e.0);
                e.0 = Box::default();
                self.free.push(id);
            }
        }
    }
}

/// Bytes per arena chunk: records never straddle two, and a chunk is
/// allocated whole, so the arena wastes at most the tail of one chunk per
/// chunk instead of the half a doubling `Vec` can.
const CHUNK: usize = 64 * 1024;
/// Bytes of an arena's first chunk, which doubles (in place: handles are
/// offsets) up to [`CHUNK`]: a daemon with 10,000 watches of one or two
/// objects each would otherwise hold 10,000 mostly empty 64 KiB chunks.
const FIRST_CHUNK: usize = 256;
/// Bits of a name handle that address the byte within its chunk.
const POS_BITS: u32 = 16;

/// Names (and, past the namespace limit, namespaces), each a record of a
/// LEB128 length and the bytes, addressed by a `u32` handle (chunk, offset).
/// Removing a record leaves a hole; when holes outweigh live bytes the
/// owner rewrites the live records into a fresh arena ([`Names::compact`]).
#[derive(Debug, Default)]
pub struct Names {
    chunks: Vec<Box<[u8]>>,
    /// Bytes used in the last chunk.
    tail: usize,
    /// Bytes of live records, and of removed ones still taking room.
    live: usize,
    dead: usize,
}

fn record_len(len: usize) -> usize {
    let mut n = 1;
    let mut v = len >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n + len
}

impl Names {
    /// Stores the record of `parts` (each behind its length); `None` once
    /// 2^16 chunks (4 GiB of names) are in use.
    pub fn add(&mut self, parts: &[&str]) -> Option<u32> {
        let size: usize = parts.iter().map(|p| record_len(p.len())).sum();
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| self.tail + size <= c.len());
        let need = self.tail + size;
        let growable = match self.chunks.as_slice() {
            [only] => only.len() < CHUNK && need <= CHUNK,
            _ => false,
        };
        if !fits && growable {
            if let Some(last) = self.chunks.last_mut() {
                let mut grown = std::mem::take(last).into_vec();
                let len = need.max(grown.len() * 2).min(CHUNK);
                grown.reserve_exact(len - grown.len());
                grown.resize(len, 0);
                *last = grown.into_boxed_slice();
            }
        } else if !fits {
            if self.chunks.len() >= 1 << (32 - POS_BITS) {
                return None;
            }
            // A record longer than a chunk gets a chunk of its own.
            let min = if self.chunks.is_empty() {
                FIRST_CHUNK
            } else {
                CHUNK
            };
            self.chunks
                .push(vec![0u8; size.max(min)].into_boxed_slice());
            self.tail = 0;
        }
        let chunk = self.chunks.len() - 1;
        let start = self.tail;
        let buf = self.chunks.last_mut()?;
        let mut at = start;
        for p in parts {
            let mut v = p.len();
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                *buf.get_mut(at)? = if v > 0 { byte | 0x80 } else { byte };
                at += 1;
                if v == 0 {
                    break;
                }
            }
            buf.get_mut(at..at + p.len())?.copy_from_slice(p.as_bytes());
            at += p.len();
        }
        self.tail = at;
        self.live += size;
        // start < CHUNK: a big record starts its chunk at 0.
        Some(((chunk as u32) << POS_BITS) | start as u32)
    }

    /// Part `n` of the record at `handle`.
    pub fn get(&self, handle: u32, n: usize) -> &str {
        self.parts(handle).nth(n).unwrap_or("")
    }

    pub fn parts(&self, handle: u32) -> impl Iterator<Item = &str> {
        let chunk = (handle >> POS_BITS) as usize;
        let mut at = (handle & ((1 << POS_BITS) - 1)) as usize;
        let buf: &[u8] = self.chunks.get(chunk).map_or(&[], |c| c);
        std::iter::from_fn(move || {
            let mut len = 0usize;
            let mut shift = 0;
            loop {
                let b = *buf.get(at)?;
                at += 1;
                len |= usize::from(b & 0x7f).checked_shl(shift)?;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            let s = buf.get(at..at.checked_add(len)?)?;
            at += len;
            // Written from `&str`s only.
            Some(std::str::from_utf8(s).unwrap_or(""))
        })
    }

    /// The record at `handle` (of `parts` parts) is no longer used.
    pub fn remove(&mut self, handle: u32, parts: usize) {
        let size: usize = self
            .parts(handle)
            .take(parts)
            .map(|p| record_len(p.len()))
            .sum();
        self.live = self.live.saturating_sub(size);
        self.dead += size;
    }

    /// Bytes of the chunks.
    #[cfg(test)]
    pub fn allocated(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    /// Holes outweigh live records (and are worth a rewrite).
    pub fn wants_compaction(&self) -> bool {
        self.dead > self.live && self.dead >= CHUNK
    }
}
