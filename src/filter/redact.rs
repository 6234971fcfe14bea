//! `redact = ["PATH", …]`: values no sink, dead letter, log line or replay
//! may ever hold, replaced before anything else sees the object.
//!
//! A redacted value becomes `"<redacted hmac-sha256:XXXXXXXXXXXXXXXX>"`:
//! 16 hex digits of an HMAC-SHA256 of the value's canonical JSON. Keyed by
//! a random key kept in `state_dir` (mode 0600), so a change of a Secret's
//! value still shows (`changes = ".data"` compares digests) and stays the
//! same across restarts, while nobody without the key can test guesses of
//! a short value against the digest — a plain hash of "true" or a
//! four-digit PIN would be looked up, not cracked.
//!
//! A path that fails at run time fails *closed*: the object is cut down to
//! its identity (kind, apiVersion and metadata name, namespace, uid,
//! resourceVersion). Every other filter fails open (an event is never
//! dropped); this one must never leak.

use super::jq::{Program, RunError};
use super::json;
use super::reads::Reads;
use jaq_json::Val;
use ring::hmac;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What a Secret watch redacts unless it says otherwise.
pub const SECRET_DEFAULT: [&str; 2] = [".data", ".stringData"];

/// The file in `state_dir` that holds the key.
pub const KEY_FILE: &str = "redact.key";
const KEY_LEN: usize = 32;

/// The HMAC key. One per state directory, made on first use.
#[derive(Clone)]
pub struct RedactKey(hmac::Key);

impl std::fmt::Debug for RedactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedactKey(…)")
    }
}

impl RedactKey {
    /// Reads `dir/redact.key`, or creates it (0600, exclusively, synced)
    /// when it does not exist. A file of the wrong size is an error, never
    /// silently replaced: a new key would make every stored digest differ.
    pub fn load_or_create(dir: &Path) -> io::Result<RedactKey> {
        let path = dir.join(KEY_FILE);
        match fs::File::open(&path) {
            Ok(f) => {
                let mut bytes = Vec::with_capacity(KEY_LEN);
                f.take(KEY_LEN as u64 + 1).read_to_end(&mut bytes)?;
                if bytes.len() != KEY_LEN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: expected {KEY_LEN} bytes, found {}; move it away to make a new key \
                             (digests of redacted values then change once)",
                            path.display(),
                            bytes.len()
                        ),
                    ));
                }
                Ok(RedactKey::from_bytes(&bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let bytes = random_key()?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                Ok(RedactKey::from_bytes(&bytes))
            }
            Err(e) => Err(e),
        }
    }

    /// A key for this process only (no `state_dir`): digests stay stable
    /// while it runs.
    pub fn ephemeral() -> io::Result<RedactKey> {
        Ok(RedactKey::from_bytes(&random_key()?))
    }

    pub fn from_bytes(bytes: &[u8]) -> RedactKey {
        RedactKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// The replacement text for a value given as canonical JSON.
    pub fn digest(&self, canonical: &[u8]) -> String {
        let tag = hmac::sign(&self.0, canonical);
        let mut hex = String::with_capacity(16);
        for b in &tag.as_ref()[..8] {
            hex.push_str(&format!("{b:02x}"));
        }
        format!("<redacted hmac-sha256:{hex}>")
    }
}

fn random_key() -> io::Result<[u8; KEY_LEN]> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; KEY_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| io::Error::other("the system random source failed"))?;
    Ok(bytes)
}

/// The compiled `redact` paths of one watch.
#[derive(Debug)]
pub struct Redactor {
    /// `path(P)` for each configured `P`, so jq itself resolves the paths
    /// (including `[]` and `..`) on each object.
    paths: Vec<Program>,
    /// What the paths read, as values (`P`, not `path(P)`: a value found
    /// is hashed whole); `None` when unbounded.
    reads: Option<Reads>,
}

/// What [`Redactor::apply`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Redacted {
    /// No configured path held a value.
    Untouched,
    /// At least one value was replaced.
    Replaced,
    /// A path failed; the object was cut to its identity.
    CutToIdentity(RunError),
}

impl Redactor {
    /// Compiles each path as `path(P)`. A path that is no path expression
    /// (`.a + 1`) is refused here, when jq says so on an empty object.
    pub fn compile(paths: &[String]) -> Result<Redactor, (usize, String)> {
        let mut out = Vec::with_capacity(paths.len());
        for (i, p) in paths.iter().enumerate() {
            let program = Program::compile(&format!("path({p})")).map_err(|errs| {
                let msg = errs
                    .first()
                    .map(|e| e.message.clone())
                    .unwrap_or_else(|| "does not compile".into());
                (i, msg)
            })?;
            if let Err(e) = program.all(Val::obj(Default::default())) {
                if e.0.contains("path expression") {
                    return Err((i, e.0));
                }
            }
            out.push(program);
        }
        let each: Vec<Option<Reads>> = paths.iter().map(|p| Reads::of(p)).collect();
        Ok(Redactor {
            paths: out,
            reads: Reads::union(each.iter().map(Option::as_ref)),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// What applying the paths reads of an object; `None`: any of it.
    pub fn reads(&self) -> Option<&Reads> {
        self.reads.as_ref()
    }

    /// Replaces every value the paths name in `object`.
    pub fn apply(&self, key: &RedactKey, object: &mut Val) -> Redacted {
        let mut replaced = false;
        for program in &self.paths {
            let paths = match program.all(object.clone()) {
                Ok(p) => p,
                // `.spec.containers[].env` on an object without containers:
                // nothing there to redact. jaq says so in words only; if
                // they change, this fails closed, never open.
                Err(e) if e.0.contains("cannot use null as iterable") => continue,
                Err(e) => {
                    *object = identity_of(object);
                    return Redacted::CutToIdentity(e);
                }
            };
            for path in paths {
                let Val::Arr(steps) = path else { continue };
                match replace_at(object, &steps, key) {
                    Ok(true) => replaced = true,
                    Ok(false) => {}
                    Err(e) => {
                        *object = identity_of(object);
                        return Redacted::CutToIdentity(RunError(e));
                    }
                }
            }
        }
        if replaced {
            Redacted::Replaced
        } else {
            Redacted::Untouched
        }
    }
}

/// Replaces the value at `steps` (object keys and array indices) by its
/// digest. A missing step is nothing to redact.
fn replace_at(v: &mut Val, steps: &[Val], key: &RedactKey) -> Result<bool, String> {
    let Some((step, rest)) = steps.split_first() else {
        if matches!(v, Val::Null) {
            return Ok(false);
        }
        let canonical = json::to_canonical_json(v)?;
        *v = Val::from(key.digest(&canonical));
        return Ok(true);
    };
    match (v, step) {
        (Val::Obj(map), k) => match std::rc::Rc::make_mut(map).get_mut(k) {
            Some(child) => replace_at(child, rest, key),
            None => Ok(false),
        },
        (Val::Arr(items), Val::Num(n)) => {
            let len = items.len() as isize;
            let Some(i) = n.as_isize() else {
                return Ok(false);
            };
            let i = if i < 0 { len + i } else { i };
            if i < 0 || i >= len {
                return Ok(false);
            }
            match std::rc::Rc::make_mut(items).get_mut(i as usize) {
                Some(child) => replace_at(child, rest, key),
                None => Ok(false),
            }
        }
        _ => Ok(false),
    }
}

/// kind, apiVersion and the identifying part of metadata.
fn identity_of(object: &Val) -> Val {
    let get = |v: &Val, k: &str| -> Option<Val> {
        match v {
            Val::Obj(m) => m.get(&Val::from(k.to_string())).cloned(),
            _ => None,
        }
    };
    let mut out = jaq_json::Map::default();
    for k in ["kind", "apiVersion"] {
        if let Some(v) = get(object, k) {
            out.insert(Val::from(k.to_string()), v);
        }
    }
    if let Some(meta) = get(object, "metadata") {
        let mut m = jaq_json::Map::default();
        for k in ["name", "namespace", "uid", "resourceVersion"] {
            if let Some(v) = get(&meta, k) {
                m.insert(Val::from(k.to_string()), v);
            }
        }
        out.insert(Val::from("metadata".to_string()), Val::obj(m));
    }
    Val::obj(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RedactKey {
        RedactKey::from_bytes(&[7u8; 32])
    }

    fn redact(paths: &[&str], object: &str) -> (String, Redacted) {
        let r =
            Redactor::compile(&paths.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut v = json::parse(object.as_bytes()).unwrap();
        let what = r.apply(&key(), &mut v);
        (String::from_utf8(json::to_json(&v).unwrap()).unwrap(), what)
    }

    #[test]
    fn secret_data_is_replaced_by_a_keyed_digest() {
        let (out, what) = redact(
            &SECRET_DEFAULT,
            r#"{"kind":"Secret","metadata":{"name":"s"},"data":{"password":"aHVudGVyMg=="}}"#,
        );
        assert_eq!(what, Redacted::Replaced);
        assert!(!out.contains("aHVudGVyMg"), "{out}");
        assert!(out.contains(r#""data":"<redacted hmac-sha256:"#), "{out}");
        // Same value, same digest; another value, another digest.
        let (again, _) = redact(&[".data"], r#"{"data":{"password":"aHVudGVyMg=="}}"#);
        let (other, _) = redact(&[".data"], r#"{"data":{"password":"b3RoZXI="}}"#);
        let digest = |s: &str| s.split("hmac-sha256:").nth(1).unwrap()[..16].to_string();
        assert_eq!(digest(&out), digest(&again));
        assert_ne!(digest(&out), digest(&other));
    }

    #[test]
    fn another_key_gives_another_digest() {
        let a = key().digest(b"\"x\"");
        let b = RedactKey::from_bytes(&[8u8; 32]).digest(b"\"x\"");
        assert_ne!(a, b);
        assert_eq!(a.len(), "<redacted hmac-sha256:>".len() + 16);
    }

    #[test]
    fn bracketed_keys_and_iteration() {
        let (out, _) = redact(
            &[
                r#".metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]"#,
                ".spec.containers[].env",
            ],
            r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":1}","keep":"me"}},
               "spec":{"containers":[{"name":"a","env":[{"name":"P","value":"secret"}]},{"name":"b"}]}}"#,
        );
        assert!(!out.contains("secret"), "{out}");
        assert!(!out.contains(r#"\"data\""#), "{out}");
        assert!(out.contains(r#""keep":"me""#), "{out}");
        assert!(
            out.contains(r#"{"name":"b"}"#),
            "absent paths stay absent: {out}"
        );
    }

    #[test]
    fn absent_paths_are_untouched() {
        let (out, what) = redact(&[".data"], r#"{"kind":"Secret"}"#);
        assert_eq!(what, Redacted::Untouched);
        assert_eq!(out, r#"{"kind":"Secret"}"#);
    }

    #[test]
    fn a_failing_path_fails_closed() {
        let (out, what) = redact(
            &[r#".data[error("boom")]"#],
            r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s","annotations":{"x":"y"}},"data":{"p":"c2VjcmV0"}}"#,
        );
        assert!(matches!(what, Redacted::CutToIdentity(_)), "{what:?}");
        assert_eq!(
            out,
            r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s"}}"#
        );
    }

    #[test]
    fn non_paths_are_refused_at_compile_time() {
        let e = Redactor::compile(&[".data".into(), ".a + 1".into()]).unwrap_err();
        assert_eq!(e.0, 1);
        assert!(e.1.contains("path expression"), "{}", e.1);
        assert!(Redactor::compile(&[".a |".into()]).is_err());
    }

    #[test]
    fn key_file_is_made_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = RedactKey::load_or_create(dir.path()).unwrap();
        let b = RedactKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.digest(b"1"), b.digest(b"1"));
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let e = RedactKey::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("expected 32 bytes"), "{e}");
    }
}
