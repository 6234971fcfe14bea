//! Pure value checks: each takes the text of a value and returns the parsed
//! value or a message saying what is wrong. No positions here; the caller
//! attaches them.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Names of watches, clusters and sinks: `[A-Za-z0-9_.-]+`.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {name:?}: use one or more of A-Z a-z 0-9 _ . -"
        ))
    }
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label as Kubernetes checks it: at most 63 characters of
/// `[a-z0-9-]`, starting and ending with `[a-z0-9]`.
pub(crate) fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    if s.len() > 63 {
        return Err(format!("{s:?} is longer than 63 characters"));
    }
    let ok = s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS-1123 label: lowercase a-z, 0-9 and '-', starting and ending with a letter or digit"
        ))
    }
}

/// RFC 1035 label: a DNS-1123 label that starts with a letter.
pub(crate) fn check_dns1035_label(s: &str) -> Result<(), String> {
    check_dns_label(s)?;
    if s.starts_with(|c: char| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(format!("{s:?} must start with a lowercase letter"))
    }
}

/// RFC 1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
pub(crate) fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err(format!("{s:?} is longer than 253 characters"));
    }
    for label in s.split('.') {
        check_dns_label(label).map_err(|_| {
            format!(
                "{s:?} is not a DNS-1123 subdomain: dot-separated labels of lowercase a-z, 0-9 and '-', each starting and ending with a letter or digit"
            )
        })?;
    }
    Ok(())
}

/// `VERSION` (core group) or `GROUP/VERSION`: the group a DNS subdomain,
/// the version a DNS-1035 label; core versions look like `v1`, `v2beta1`.
pub(crate) fn check_api_version(s: &str) -> Result<(), String> {
    let Some((group, version)) = s.split_once('/') else {
        return check_core_version(s);
    };
    if group == "core" || group.is_empty() {
        return Err(format!(
            "invalid api_version {s:?}: the core group is written without a group, e.g. \"v1\""
        ));
    }
    check_dns_subdomain(group).map_err(|e| format!("invalid group in api_version: {e}"))?;
    check_dns1035_label(version).map_err(|e| {
        format!("invalid version in api_version (expected e.g. \"v1\" or \"apps/v1\"): {e}")
    })
}

/// A core-group version: `v` and digits, optionally `alpha`/`beta` and digits.
fn check_core_version(s: &str) -> Result<(), String> {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let ok = s.strip_prefix('v').is_some_and(|rest| {
        let major_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (major, stage) = rest.split_at(major_end);
        let stage_ok = stage.is_empty()
            || ["alpha", "beta"]
                .iter()
                .any(|p| stage.strip_prefix(p).is_some_and(digits));
        digits(major) && stage_ok
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid api_version {s:?}: expected \"v1\" for the core group, or GROUP/VERSION such as \"apps/v1\""
        ))
    }
}

/// Plural resource name such as `pods` or `deployments`.
pub(crate) fn check_resource(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "invalid resource {s:?}: use the lowercase plural resource name (e.g. \"deployments\"), not the kind"
        ));
    }
    if s.contains('/') {
        return Err(format!(
            "invalid resource {s:?}: subresources cannot be watched; use the plural resource name"
        ));
    }
    check_dns_label(s).map_err(|e| format!("invalid resource: {e}"))
}

/// A kind, plural, short name or `plural.group`: letters, digits, `-` and
/// `.`, as the API server allows in names; no subresource.
pub(crate) fn check_kind_name(s: &str) -> Result<(), String> {
    if s.contains('/') {
        return Err(format!(
            "invalid kind {s:?}: write a kind (\"Deployment\"), a plural (\"deployments\"), a short name (\"deploy\") or plural.group (\"deployments.apps\"); the version goes in api_version, subresources cannot be watched"
        ));
    }
    let lower = s.to_ascii_lowercase();
    check_dns_subdomain(&lower).map_err(|e| format!("invalid kind: {e}"))
}

pub(crate) fn check_namespace(s: &str) -> Result<(), String> {
    check_dns_label(s).map_err(|e| format!("invalid namespace: {e}"))
}

/// `error`, `warn`, `info`, `debug` or `trace`.
pub(crate) fn parse_log_level(s: &str) -> Result<log::LevelFilter, String> {
    use log::LevelFilter::*;
    match s {
        "error" => Ok(Error),
        "warn" => Ok(Warn),
        "info" => Ok(Info),
        "debug" => Ok(Debug),
        "trace" => Ok(Trace),
        _ => Err(format!(
            "invalid log level {s:?}; expected one of: error, warn, info, debug, trace"
        )),
    }
}

/// A humantime duration such as `10s`, `5m`, `250ms`, within `[min, max]`.
pub(crate) fn parse_duration(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid duration {s:?}: a unit is needed, e.g. \"{s}s\" (or \"ms\", \"m\", \"h\")"
        ));
    }
    let d = humantime::parse_duration(s).map_err(|e| {
        format!("invalid duration {s:?} ({e}); expected e.g. \"10s\", \"5m\", \"250ms\"")
    })?;
    if d < min {
        return Err(format!(
            "duration {s:?} is too short; the minimum is {}",
            humantime::format_duration(min)
        ));
    }
    if d > max {
        return Err(format!(
            "duration {s:?} is too long; the maximum is {}",
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
];

/// A size string: an integer and a binary unit, e.g. `16MiB` or `512 KiB`.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let expected =
        "expected an integer number of bytes or a string like \"16MiB\" (units: B, KiB, MiB, GiB)";
    if number.is_empty() {
        return Err(format!("invalid size {s:?}; {expected}"));
    }
    let Some(&(_, factor)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!("invalid size unit in {s:?}; {expected}"));
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// The candidate `word` was most likely meant to be, if one is close: at
/// most a third of the word's length in edits (at least one; swapping two
/// neighbours counts as one), ignoring case and `-` versus `_`. Ties go
/// to the earlier candidate.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let normal = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let word_normal = normal(word);
    let length = word.chars().count();
    let limit = (length / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        // The difference in length is a lower bound of the distance: a
        // long unknown word skips the quadratic comparison entirely.
        if length.abs_diff(candidate.chars().count()) > limit {
            continue;
        }
        let distance = strsim::osa_distance(&word_normal, &normal(candidate));
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Resolves a configured file path: relative paths are taken relative to
/// `base` (the working directory at load time); `.` segments and repeated
/// slashes are dropped. `~` is not expanded.
pub(crate) fn resolve_path(s: &str, base: Option<&Path>) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("path must not be empty".to_string());
    }
    if s.contains('\0') {
        return Err("path must not contain a NUL character".to_string());
    }
    if s == "~" || s.starts_with("~/") {
        return Err(format!(
            "path {s:?} starts with `~`, which is not expanded; use an absolute path"
        ));
    }
    let path = Path::new(s);
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        let base = base.ok_or_else(|| {
            format!("cannot resolve relative path {s:?}: the current directory is unknown")
        })?;
        base.join(path)
    };
    Ok(full.components().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["pods", "a", "web-1.prod_eu", "A.B-C_9"] {
            assert!(check_name("watch", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "pods/x", "é", "a:b", "x\n"] {
            let e = check_name("watch", bad).unwrap_err();
            assert!(e.contains("invalid watch name"), "{e}");
        }
    }

    #[test]
    fn dns_labels() {
        assert!(check_dns_label("default").is_ok());
        assert!(check_dns_label("kube-system").is_ok());
        assert!(check_dns_label("0abc").is_ok());
        assert!(check_dns_label(&"a".repeat(63)).is_ok());
        for bad in ["", "-a", "a-", "Default", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
        assert!(check_dns1035_label("v1").is_ok());
        assert!(check_dns1035_label("1v").is_err());
    }

    #[test]
    fn dns_subdomains() {
        assert!(check_dns_subdomain("apps").is_ok());
        assert!(check_dns_subdomain("cert-manager.io").is_ok());
        for bad in ["", "a..b", ".a", "a.", "A.io", "a_b.io", &"a.".repeat(127)] {
            assert!(check_dns_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_versions() {
        let good = [
            "v1",
            "v2beta1",
            "v1alpha1",
            "apps/v1",
            "batch/v1",
            "networking.k8s.io/v1",
            "example.com/v1beta1",
            "example.com/stable",
        ];
        for ok in good {
            assert!(check_api_version(ok).is_ok(), "{ok}");
        }
        let bad = [
            "",
            "V1",
            "1",
            "v",
            "apps",
            "v1gamma1",
            "v1beta",
            "apps/",
            "/v1",
            "core/v1",
            "apps/v1/x",
            "Apps/v1",
            "apps/v_1",
            "apps v1",
        ];
        for bad in bad {
            assert!(check_api_version(bad).is_err(), "{bad}");
        }
        let core = check_api_version("core/v1").unwrap_err();
        assert!(core.contains("core group"), "{core}");
        let apps = check_api_version("apps").unwrap_err();
        assert!(apps.contains("\"apps/v1\""), "{apps}");
    }

    #[test]
    fn resources_and_namespaces() {
        assert!(check_resource("pods").is_ok());
        assert!(check_resource("customresourcedefinitions").is_ok());
        assert!(check_resource("Pod")
            .unwrap_err()
            .contains("lowercase plural"));
        assert!(check_resource("pods/status")
            .unwrap_err()
            .contains("subresources"));
        assert!(check_resource("").is_err());
        assert!(check_resource("my_things").is_err());
        assert!(check_namespace("kube-system").is_ok());
        assert!(check_namespace("Kube").is_err());
        assert!(check_namespace("a.b").is_err());
    }

    #[test]
    fn log_levels() {
        assert_eq!(parse_log_level("debug"), Ok(log::LevelFilter::Debug));
        assert_eq!(parse_log_level("error"), Ok(log::LevelFilter::Error));
        assert!(parse_log_level("INFO").is_err());
        assert!(parse_log_level("off").is_err());
        assert!(parse_log_level("verbose")
            .unwrap_err()
            .contains("error, warn, info"));
    }

    #[test]
    fn durations() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(3600));
        assert_eq!(parse_duration("10s", min, max), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m", min, max), Ok(Duration::from_secs(300)));
        assert_eq!(
            parse_duration("1m 30s", min, max),
            Ok(Duration::from_secs(90))
        );
        assert!(parse_duration("250ms", min, max)
            .unwrap_err()
            .contains("too short"));
        assert!(parse_duration("2h", min, max)
            .unwrap_err()
            .contains("too long"));
        assert!(parse_duration("300", min, max)
            .unwrap_err()
            .contains("a unit is needed, e.g. \"300s\""));
        for bad in [
            "",
            "10",
            "ten seconds",
            "-5s",
            "5 parsecs",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(bad, min, max).is_err(), "{bad}");
        }
    }

    #[test]
    fn closest_names() {
        let keys = [
            "name",
            "cluster",
            "api_version",
            "resource",
            "kind",
            "sinks",
        ];
        assert_eq!(closest("resrouce", keys), Some("resource"));
        assert_eq!(closest("Resource", keys), Some("resource"));
        assert_eq!(closest("api-version", keys), Some("api_version"));
        assert_eq!(closest("sink", keys), Some("sinks"));
        assert_eq!(closest("kinds", keys), Some("kind"));
        assert_eq!(closest("clusters", keys), Some("cluster"));
        // Too far from everything: no guess.
        for far in ["selector", "ca", "x", "", "namespace", "label"] {
            assert_eq!(closest(far, keys), None, "{far}");
        }
        assert_eq!(
            closest("loglevel", ["log_format", "log_level"]),
            Some("log_level")
        );
        assert_eq!(
            closest("webhok", ["file", "exec", "webhook", "stdout"]),
            Some("webhook")
        );
        assert_eq!(closest("anything", []), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("100B"), Ok(100));
        for bad in [
            "", "MiB", "16", "16MB", "16mib", "16  MiB", "1.5MiB", "-1MiB", " 16MiB", "16MiB ",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("99999999999999999999GiB")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("17179869184GiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn paths() {
        let base = Path::new("/srv/kwatchd");
        assert_eq!(
            resolve_path("/etc/ca.crt", Some(base)),
            Ok(PathBuf::from("/etc/ca.crt"))
        );
        assert_eq!(
            resolve_path("ca.crt", Some(base)),
            Ok(PathBuf::from("/srv/kwatchd/ca.crt"))
        );
        assert_eq!(
            resolve_path("./certs//ca.crt", Some(base)),
            Ok(PathBuf::from("/srv/kwatchd/certs/ca.crt"))
        );
        assert_eq!(
            resolve_path("../ca.crt", Some(base)),
            Ok(PathBuf::from("/srv/kwatchd/../ca.crt"))
        );
        assert!(resolve_path("ca.crt", None)
            .unwrap_err()
            .contains("current directory"));
        assert_eq!(resolve_path("/abs", None), Ok(PathBuf::from("/abs")));
        assert!(resolve_path("", Some(base)).is_err());
        assert!(resolve_path("~/ca.crt", Some(base))
            .unwrap_err()
            .contains("not expanded"));
        assert!(resolve_path("a\0b", Some(base)).is_err());
    }
}
