//! Subject templates: `kube.{cluster}.{watch}.{namespace}.{kind}.{name}`.
//!
//! A placeholder's value becomes (part of) one subject token. Bytes a token
//! cannot hold are written `%XX` (two upper-case hex digits of the byte):
//! `.`, `*`, `>`, `%` itself, space and other ASCII control or whitespace
//! bytes, and bytes outside ASCII. An empty value is written `_` (a
//! cluster-scoped object's `{namespace}`); Kubernetes names never are `_`.
//! So a consumer recovers the value with percent-decoding, after mapping a
//! lone `_` to empty. Example: name `web.v1` → `web%2Ev1`.

use std::fmt;
use std::fmt::Write as _;

/// What a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Cluster,
    Watch,
    Namespace,
    Kind,
    Name,
    Type,
}

impl Placeholder {
    pub const ALL: [Placeholder; 6] = [
        Placeholder::Cluster,
        Placeholder::Watch,
        Placeholder::Namespace,
        Placeholder::Kind,
        Placeholder::Name,
        Placeholder::Type,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Placeholder::Cluster => "cluster",
            Placeholder::Watch => "watch",
            Placeholder::Namespace => "namespace",
            Placeholder::Kind => "kind",
            Placeholder::Name => "name",
            Placeholder::Type => "type",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Value(Placeholder),
}

/// A parsed, validated subject template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate {
    text: String,
    parts: Vec<Part>,
}

impl fmt::Display for SubjectTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl SubjectTemplate {
    pub fn parse(text: &str) -> Result<SubjectTemplate, String> {
        let names = || {
            Placeholder::ALL
                .iter()
                .map(|p| format!("{{{}}}", p.as_str()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("unclosed {{ in subject {text:?}"))?;
                    let name = &rest[1..end];
                    let p = Placeholder::ALL
                        .into_iter()
                        .find(|p| p.as_str() == name)
                        .ok_or_else(|| {
                            format!(
                                "unknown placeholder {{{name}}} in subject (known: {})",
                                names()
                            )
                        })?;
                    parts.push(Part::Value(p));
                    rest = &rest[end + 1..];
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    parts.push(Part::Literal(rest[..end].to_owned()));
                    rest = &rest[end..];
                }
            }
        }
        // Every token must be non-empty and free of wildcards; a token with
        // a placeholder never renders empty.
        let mut token_has_value = false;
        let mut token_len = 0;
        let check_token = |has_value: bool, len: usize| {
            if !has_value && len == 0 {
                Err(format!(
                    "subject {text:?} has an empty token (leading, trailing or double dot)"
                ))
            } else {
                Ok(())
            }
        };
        for part in &parts {
            match part {
                Part::Value(_) => token_has_value = true,
                Part::Literal(l) => {
                    if l.contains('}') {
                        return Err(format!("unmatched }} in subject {text:?}"));
                    }
                    if let Some(c) = l
                        .chars()
                        .find(|c| c.is_whitespace() || c.is_control() || *c == '*' || *c == '>')
                    {
                        return Err(format!(
                            "subject {text:?} contains {c:?}; a publish subject cannot hold wildcards or whitespace"
                        ));
                    }
                    let mut pieces = l.split('.').peekable();
                    while let Some(piece) = pieces.next() {
                        token_len += piece.len();
                        if pieces.peek().is_some() {
                            check_token(token_has_value, token_len)?;
                            token_has_value = false;
                            token_len = 0;
                        }
                    }
                }
            }
        }
        check_token(token_has_value, token_len)?;
        Ok(SubjectTemplate {
            text: text.to_owned(),
            parts,
        })
    }

    /// The subject for one record; `value` gives each placeholder's text.
    pub fn render_with<'a>(&self, value: impl Fn(Placeholder) -> &'a str) -> String {
        let mut out = String::with_capacity(self.text.len() + 64);
        self.render_into(&mut out, value);
        out
    }

    /// [`render_with`](Self::render_with) into a reused buffer (cleared
    /// first): the sink renders one subject per record.
    pub fn render_into<'a>(&self, out: &mut String, value: impl Fn(Placeholder) -> &'a str) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Value(p) => escape_token(out, value(*p)),
            }
        }
    }
}

/// Appends `value` as (part of) a subject token; see the module docs.
pub fn escape_token(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('_');
        return;
    }
    for b in value.bytes() {
        let keep = b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>' | b'%');
        if keep {
            out.push(b as char);
        } else {
            // Writing into a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The inverse of [`escape_token`], for consumers and tests.
pub fn unescape_token(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(p: Placeholder) -> &'static str {
        match p {
            Placeholder::Cluster => "prod",
            Placeholder::Watch => "pods",
            Placeholder::Namespace => "",
            Placeholder::Kind => "Pod",
            Placeholder::Name => "web.v1 *>%é",
            Placeholder::Type => "ADDED",
        }
    }

    #[test]
    fn templates_render_and_escape_reversibly() {
        let t = SubjectTemplate::parse("kube.{cluster}.{watch}.{namespace}.{kind}.{name}").unwrap();
        let s = t.render_with(vals);
        assert_eq!(s, "kube.prod.pods._.Pod.web%2Ev1%20%2A%3E%25%C3%A9");
        let tokens: Vec<&str> = s.split('.').collect();
        assert_eq!(tokens.len(), 6);
        assert_eq!(unescape_token(tokens[5]).unwrap(), "web.v1 *>%é");
        assert_eq!(unescape_token(tokens[3]).unwrap(), "");
        let t = SubjectTemplate::parse("k8s-{type}.x").unwrap();
        assert_eq!(t.render_with(vals), "k8s-ADDED.x");
        for value in ["", "a", "_x", "%", "a.b.c", "\t\n", "ünï"] {
            let mut out = String::new();
            escape_token(&mut out, value);
            assert!(!out.contains(['.', '*', '>', ' ']) && !out.is_empty());
            assert_eq!(unescape_token(&out).unwrap(), value);
        }
    }

    #[test]
    fn bad_templates_are_refused_with_reasons() {
        for (t, want) in [
            ("a.{nope}", "unknown placeholder"),
            ("a.{name", "unclosed"),
            ("a}", "unmatched"),
            ("a..{name}", "empty token"),
            (".a", "empty token"),
            ("a.", "empty token"),
            ("", "empty token"),
            ("a.*", "wildcards"),
            ("a.>", "wildcards"),
            ("a b", "whitespace"),
        ] {
            let e = SubjectTemplate::parse(t).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
        assert!(SubjectTemplate::parse("{name}").is_ok());
        assert!(SubjectTemplate::parse("a.{namespace}{name}.b").is_ok());
    }
}
