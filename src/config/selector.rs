//! Label and field selector grammars, as the Kubernetes API server parses
//! them (k8s.io/apimachinery `labels.Parse` and `fields.ParseSelector`).
//! The config keeps the selector text and sends it as is; parsing here only
//! refuses at load time what the server would refuse at watch time.

use super::syntax::check_dns_subdomain;

/// Label selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelOp {
    Exists,
    DoesNotExist,
    Equals,
    NotEquals,
    In,
    NotIn,
    GreaterThan,
    LessThan,
}

/// One comma-separated requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requirement {
    pub(crate) key: String,
    pub(crate) op: LabelOp,
    pub(crate) values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("{s:?}"),
            Token::Not => "'!'".to_string(),
            Token::Eq => "'='".to_string(),
            Token::DoubleEq => "'=='".to_string(),
            Token::NotEq => "'!='".to_string(),
            Token::Gt => "'>'".to_string(),
            Token::Lt => "'<'".to_string(),
            Token::Open => "'('".to_string(),
            Token::Close => "')'".to_string(),
            Token::Comma => "','".to_string(),
            Token::End => "the end".to_string(),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '<' | '>' | '(' | ')' | ',') || c.is_whitespace()
}

/// Splits a label selector into (1-based character position, token).
fn lex(s: &str) -> Vec<(usize, Token)> {
    let chars: Vec<char> = s.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (token, len) = match (c, next) {
            (c, _) if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ('!', Some('=')) => (Token::NotEq, 2),
            ('!', _) => (Token::Not, 1),
            ('=', Some('=')) => (Token::DoubleEq, 2),
            ('=', _) => (Token::Eq, 1),
            ('>', _) => (Token::Gt, 1),
            ('<', _) => (Token::Lt, 1),
            ('(', _) => (Token::Open, 1),
            (')', _) => (Token::Close, 1),
            (',', _) => (Token::Comma, 1),
            _ => {
                let len = chars[i..].iter().take_while(|&&c| !is_special(c)).count();
                (Token::Ident(chars[i..i + len].iter().collect()), len)
            }
        };
        tokens.push((i + 1, token));
        i += len;
    }
    tokens.push((chars.len() + 1, Token::End));
    tokens
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // `lex` always ends with `End`, and `take` never moves past it.
        self.tokens.get(self.next).map_or(&Token::End, |(_, t)| t)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.next).map_or(0, |(p, _)| *p)
    }

    fn take(&mut self) -> Token {
        let token = self.peek().clone();
        if token != Token::End {
            self.next += 1;
        }
        token
    }

    fn fail<T>(&self, expected: &str) -> Result<T, String> {
        Err(format!(
            "at character {}: expected {expected}, found {}",
            self.pos(),
            self.peek().describe()
        ))
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = vec![self.requirement()?];
        loop {
            match self.peek() {
                Token::End => return Ok(requirements),
                Token::Comma => {
                    self.take();
                    requirements.push(self.requirement()?);
                }
                _ => return self.fail("',' or the end of the selector"),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let negated = *self.peek() == Token::Not;
        if negated {
            self.take();
        }
        let key = self.key()?;
        if negated {
            return Ok(Requirement {
                key,
                op: LabelOp::DoesNotExist,
                values: Vec::new(),
            });
        }
        let (op, values) = match self.peek().clone() {
            Token::End | Token::Comma => (LabelOp::Exists, Vec::new()),
            Token::Eq | Token::DoubleEq => (LabelOp::Equals, self.after_op(Self::exact_value)?),
            Token::NotEq => (LabelOp::NotEquals, self.after_op(Self::exact_value)?),
            Token::Gt => (LabelOp::GreaterThan, self.after_op(Self::integer_value)?),
            Token::Lt => (LabelOp::LessThan, self.after_op(Self::integer_value)?),
            Token::Ident(word) if word == "in" => (LabelOp::In, self.after_op(Self::value_set)?),
            Token::Ident(word) if word == "notin" => {
                (LabelOp::NotIn, self.after_op(Self::value_set)?)
            }
            _ => return self.fail("an operator (=, ==, !=, in, notin, >, <), ',' or the end"),
        };
        Ok(Requirement { key, op, values })
    }

    fn after_op(
        &mut self,
        values: fn(&mut Self) -> Result<Vec<String>, String>,
    ) -> Result<Vec<String>, String> {
        self.take();
        values(self)
    }

    fn key(&mut self) -> Result<String, String> {
        let pos = self.pos();
        match self.peek().clone() {
            Token::Ident(key) if key != "in" && key != "notin" => {
                self.take();
                check_label_key(&key).map_err(|e| format!("at character {pos}: {e}"))?;
                Ok(key)
            }
            _ => self.fail("a label key"),
        }
    }

    /// Value after `=`, `==`, `!=`: may be empty (`tier=`).
    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        match self.peek().clone() {
            Token::End | Token::Comma => Ok(vec![String::new()]),
            Token::Ident(_) => Ok(vec![self.value()?]),
            _ => self.fail("a label value"),
        }
    }

    fn integer_value(&mut self) -> Result<Vec<String>, String> {
        let pos = self.pos();
        match self.peek().clone() {
            Token::Ident(v) if v.parse::<i64>().is_ok() => {
                self.take();
                Ok(vec![v])
            }
            Token::Ident(v) => Err(format!(
                "at character {pos}: '>' and '<' need an integer value, found {v:?}"
            )),
            _ => self.fail("an integer value"),
        }
    }

    /// `( v1, v2, ... )`; like Kubernetes, empty values are allowed.
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        if *self.peek() != Token::Open {
            return self.fail("'('");
        }
        self.take();
        let mut values = Vec::new();
        loop {
            let value = match self.peek() {
                Token::Ident(_) => self.value()?,
                _ => String::new(),
            };
            values.push(value);
            match self.peek() {
                Token::Comma => {
                    self.take();
                }
                Token::Close => {
                    self.take();
                    return Ok(values);
                }
                _ => return self.fail("',' or ')'"),
            }
        }
    }

    fn value(&mut self) -> Result<String, String> {
        let pos = self.pos();
        let Token::Ident(value) = self.take() else {
            return Err(format!("at character {pos}: expected a label value"));
        };
        check_label_value(&value).map_err(|e| format!("at character {pos}: {e}"))?;
        Ok(value)
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_qualified_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.len() <= 63
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// Label key: `[PREFIX/]NAME`, PREFIX a DNS subdomain.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        check_dns_subdomain(prefix)
            .map_err(|e| format!("invalid label key {key:?}: prefix {e}"))?;
    }
    if is_qualified_part(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid label key {key:?}: the name part must be 1-63 characters of A-Z a-z 0-9 - _ ., starting and ending with a letter or digit"
        ))
    }
}

/// Label value: empty, or like a key's name part.
fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_qualified_part(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {value:?}: at most 63 characters of A-Z a-z 0-9 - _ ., starting and ending with a letter or digit"
        ))
    }
}

/// Parses a label selector (`app=web,tier in (a,b),!canary`).
pub(crate) fn parse_label_selector(s: &str) -> Result<Vec<Requirement>, String> {
    if s.trim().is_empty() {
        return Err("empty label selector; omit the key to select every object".to_string());
    }
    let mut parser = Parser {
        tokens: lex(s),
        next: 0,
    };
    parser
        .selector()
        .map_err(|e| format!("invalid label selector {s:?}: {e}"))
}

/// Field selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldOp {
    Equals,
    NotEquals,
}

/// One term of a field selector; `value` has its escapes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldTerm {
    pub(crate) field: String,
    pub(crate) op: FieldOp,
    pub(crate) value: String,
}

/// Splits on commas not escaped by a backslash.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

/// First `!=`, `==` or `=` in the term (Kubernetes does not look at escapes
/// on the left-hand side).
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        let (op, len) = if rest.starts_with("!=") {
            (FieldOp::NotEquals, 2)
        } else if rest.starts_with("==") {
            (FieldOp::Equals, 2)
        } else if rest.starts_with('=') {
            (FieldOp::Equals, 1)
        } else {
            return None;
        };
        Some((&term[..i], op, &term[i + len..]))
    })
}

/// Removes `\\`, `\,` and `\=` escapes; other escapes and bare `,`/`=` are
/// errors.
fn unescape_field_value(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence \\{e} in {value:?}")),
                None => return Err(format!("{value:?} ends with an unfinished escape '\\'")),
            },
            ',' | '=' => return Err(format!("unescaped {c:?} in value {value:?} (write \\{c})")),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn check_field_path(field: &str) -> Result<(), String> {
    let ok = !field.is_empty()
        && field.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid field {field:?}: expected a dotted field path such as \"status.phase\""
        ))
    }
}

fn parse_field_term(term: &str) -> Result<FieldTerm, String> {
    if term.is_empty() {
        return Err("empty term (stray ',')".to_string());
    }
    let (field, op, value) = split_term(term).ok_or_else(|| {
        format!("term {term:?} has no operator; expected field=value, field==value or field!=value")
    })?;
    check_field_path(field)?;
    let value = unescape_field_value(value)?;
    Ok(FieldTerm {
        field: field.to_string(),
        op,
        value,
    })
}

/// Parses a field selector (`status.phase=Running,metadata.name!=x`).
pub(crate) fn parse_field_selector(s: &str) -> Result<Vec<FieldTerm>, String> {
    if s.trim().is_empty() {
        return Err("empty field selector; omit the key to select every object".to_string());
    }
    split_terms(s)
        .into_iter()
        .map(parse_field_term)
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| format!("invalid field selector {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: LabelOp, values: &[&str]) -> Requirement {
        Requirement {
            key: key.to_string(),
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn label_selectors_good() {
        use LabelOp::*;
        assert_eq!(
            parse_label_selector("app=web"),
            Ok(vec![req("app", Equals, &["web"])])
        );
        assert_eq!(
            parse_label_selector("app == web , tier!=db"),
            Ok(vec![
                req("app", Equals, &["web"]),
                req("tier", NotEquals, &["db"])
            ])
        );
        assert_eq!(
            parse_label_selector("env in (prod, staging),tier notin (db)"),
            Ok(vec![
                req("env", In, &["prod", "staging"]),
                req("tier", NotIn, &["db"])
            ])
        );
        assert_eq!(
            parse_label_selector("canary,!legacy"),
            Ok(vec![
                req("canary", Exists, &[]),
                req("legacy", DoesNotExist, &[])
            ])
        );
        assert_eq!(
            parse_label_selector("app.kubernetes.io/name=my-app"),
            Ok(vec![req("app.kubernetes.io/name", Equals, &["my-app"])])
        );
        assert_eq!(
            parse_label_selector("tier="),
            Ok(vec![req("tier", Equals, &[""])])
        );
        assert_eq!(
            parse_label_selector("tier=="),
            Ok(vec![req("tier", Equals, &[""])])
        );
        assert_eq!(
            parse_label_selector("a=in"),
            Ok(vec![req("a", Equals, &["in"])])
        );
        assert_eq!(
            parse_label_selector("replicas>3"),
            Ok(vec![req("replicas", GreaterThan, &["3"])])
        );
        assert_eq!(
            parse_label_selector("x in ()"),
            Ok(vec![req("x", In, &[""])])
        );
        assert_eq!(
            parse_label_selector("Version=v1.2_3-rc.1"),
            Ok(vec![req("Version", Equals, &["v1.2_3-rc.1"])])
        );
        let long = format!("k={}", "v".repeat(63));
        assert!(parse_label_selector(&long).is_ok());
    }

    #[test]
    fn label_selectors_bad() {
        let bad = [
            "",
            "  ",
            "app=web,",
            ",app",
            "app=web tier=db",
            "app in web",
            "app in (web",
            "app in (a b)",
            "app notin",
            "app=(web)",
            "=web",
            "!",
            "!app=web",
            "app=we b",
            "app=-web",
            "app=web-",
            "app=w/b",
            "app=w@b",
            "in=x",
            "-app=web",
            "Example.COM/app=web",
            "a/b/c=d",
            "/app=x",
            "app/=x",
            "x>y",
            "x<",
            "app!web",
        ];
        for s in bad {
            assert!(parse_label_selector(s).is_err(), "{s:?} accepted");
        }
        let too_long = format!("k={}", "v".repeat(64));
        assert!(parse_label_selector(&too_long).is_err());
        let long_key = format!("{}=v", "k".repeat(64));
        assert!(parse_label_selector(&long_key).is_err());
        let e = parse_label_selector("app in web").unwrap_err();
        assert!(e.contains("at character 8: expected '('"), "{e}");
    }

    #[test]
    fn field_selectors_good() {
        use FieldOp::*;
        let term = |f: &str, op, v: &str| FieldTerm {
            field: f.to_string(),
            op,
            value: v.to_string(),
        };
        assert_eq!(
            parse_field_selector("status.phase=Running"),
            Ok(vec![term("status.phase", Equals, "Running")])
        );
        assert_eq!(
            parse_field_selector("metadata.name==a,spec.nodeName!=node-1"),
            Ok(vec![
                term("metadata.name", Equals, "a"),
                term("spec.nodeName", NotEquals, "node-1")
            ])
        );
        assert_eq!(
            parse_field_selector("spec.nodeName="),
            Ok(vec![term("spec.nodeName", Equals, "")])
        );
        assert_eq!(
            parse_field_selector(r"metadata.annotations.x=a\,b\=c\\d"),
            Ok(vec![term("metadata.annotations.x", Equals, r"a,b=c\d")])
        );
    }

    #[test]
    fn field_selectors_bad() {
        for s in [
            "",
            "status.phase",
            "status.phase=Running,",
            ",a=b",
            "a=b,,c=d",
            "=Running",
            "status..phase=x",
            " status.phase=x",
            r"a=b\x",
            r"a=b\",
            "a=b=c",
            r"a\=b=c",
            "a!b",
        ] {
            assert!(parse_field_selector(s).is_err(), "{s:?} accepted");
        }
        let e = parse_field_selector(r"a=b\x").unwrap_err();
        assert!(e.contains("invalid escape"), "{e}");
    }
}
