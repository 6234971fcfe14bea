//! Environment variable references in configuration values: `${NAME}` in
//! webhook header values, `${NAME}` and `$NAME` in file paths (so a systemd
//! unit with `LoadCredential=token:/etc/kwatchd/token` can say
//! `token_file = "${CREDENTIALS_DIRECTORY}/token"`). One syntax, one
//! expander; values are expanded when the file is parsed, so also on reload.
//!
//! `$$` is a literal `$`; a `$` that starts no reference is kept as is. An
//! unset variable is an error naming it (the caller adds key and line).
//! Offline nothing is looked up: the references are checked and kept as
//! written.

use super::fields::Env;

/// Which references a value may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
    /// `${NAME}` only: header values often hold tokens, which may contain
    /// `$word` literally.
    Braced,
    /// `${NAME}` and `$NAME`, as shells and systemd units write them.
    Shell,
}

/// A variable name as a shell accepts it: `[A-Za-z_][A-Za-z0-9_]*`.
pub(super) fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands the references in `raw`. `check` vets each variable's value
/// (given the name, for its message) before it is inserted.
pub(super) fn expand(
    raw: &str,
    env: &Env,
    syntax: Syntax,
    check: &dyn Fn(&str, &str) -> Result<(), String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, written, tail) = if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err(format!(
                    "unterminated ${{ in {raw:?}: write ${{NAME}}, or $$ for a literal $"
                ));
            };
            let name = &tail[..end];
            if !is_env_name(name) {
                return Err(format!(
                    "invalid variable name {name:?} in ${{...}}: use A-Z a-z 0-9 _, not starting with a digit"
                ));
            }
            (name, &rest[i..i + end + 3], &tail[end + 1..])
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..len];
            if syntax == Syntax::Braced || !is_env_name(name) {
                out.push('$');
                rest = after;
                continue;
            }
            (name, &rest[i..i + len + 1], &after[len..])
        };
        if env.offline() {
            out.push_str(written);
        } else {
            let value = env.var(name)?.ok_or_else(|| unset(name, written))?;
            check(name, &value)?;
            out.push_str(&value);
        }
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

fn unset(name: &str, written: &str) -> String {
    let how = if name == "CREDENTIALS_DIRECTORY" {
        "systemd sets it for a service with LoadCredential= or SetCredential=; elsewhere set it yourself, or check the file with `kwatchd check --offline`"
    } else {
        "set it in kwatchd's environment (e.g. systemd Environment= or EnvironmentFile=)"
    };
    format!("environment variable {name} is not set (referenced as {written}); {how}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fields::Reach;

    fn env(reach: Reach, vars: &[(&str, &str)]) -> Env {
        Env::fixed(reach, vars)
    }

    fn any(_: &str, _: &str) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn shell_syntax_expands_both_forms() {
        let e = env(
            Reach::Environment,
            &[("CREDENTIALS_DIRECTORY", "/run/c"), ("A_1", "x")],
        );
        let shell = |raw| expand(raw, &e, Syntax::Shell, &any);
        assert_eq!(
            shell("${CREDENTIALS_DIRECTORY}/token").unwrap(),
            "/run/c/token"
        );
        assert_eq!(
            shell("$CREDENTIALS_DIRECTORY/token").unwrap(),
            "/run/c/token"
        );
        assert_eq!(shell("/a/$A_1.pem").unwrap(), "/a/x.pem");
        assert_eq!(shell("/a/$$A_1/$1/$-/$").unwrap(), "/a/$A_1/$1/$-/$");
        let err = shell("$CREDENTIALS_DIRECTORYX/t").unwrap_err();
        assert!(
            err.contains(
                "CREDENTIALS_DIRECTORYX is not set (referenced as $CREDENTIALS_DIRECTORYX)"
            ),
            "{err}"
        );
        // Braced keeps `$NAME` literally.
        let braced = expand("$A_1 ${A_1}", &e, Syntax::Braced, &any).unwrap();
        assert_eq!(braced, "$A_1 x");
    }

    #[test]
    fn unset_credentials_directory_explains_systemd() {
        let e = env(Reach::Environment, &[]);
        let err = expand("${CREDENTIALS_DIRECTORY}/token", &e, Syntax::Shell, &any).unwrap_err();
        assert!(
            err.contains(
                "CREDENTIALS_DIRECTORY is not set (referenced as ${CREDENTIALS_DIRECTORY})"
            ),
            "{err}"
        );
        assert!(err.contains("LoadCredential="), "{err}");
        assert!(err.contains("--offline"), "{err}");
    }

    #[test]
    fn values_are_vetted() {
        let e = env(Reach::Environment, &[("EMPTY", "")]);
        let non_empty = |name: &str, v: &str| {
            if v.is_empty() {
                Err(format!("{name} is empty"))
            } else {
                Ok(())
            }
        };
        let err = expand("$EMPTY/x", &e, Syntax::Shell, &non_empty).unwrap_err();
        assert_eq!(err, "EMPTY is empty");
    }

    #[test]
    fn offline_checks_syntax_and_keeps_references() {
        // No variable is set and none is looked up.
        let e = env(Reach::Offline, &[]);
        let shell = |raw| expand(raw, &e, Syntax::Shell, &any);
        assert_eq!(
            shell("${CREDENTIALS_DIRECTORY}/t $HOME $$x").unwrap(),
            "${CREDENTIALS_DIRECTORY}/t $HOME $x"
        );
        assert!(shell("${CREDENTIALS_DIRECTORY/t")
            .unwrap_err()
            .contains("unterminated"));
        assert!(shell("${1}").unwrap_err().contains("invalid variable name"));
    }
}
