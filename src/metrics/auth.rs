//! The bearer token that `/metrics` and `/status` may require
//! (`[daemon] metrics_token_file`), the way node_exporter's and
//! kube-rbac-proxy's users protect a scrape endpoint. `/status` names
//! watches, clusters and their errors; `/metrics` the same and more. The
//! probes (`/healthz`, `/readyz`) stay open: a kubelet sends no token.
//!
//! The file is the daemon's usual token file ([`TokenFile`]): checked with
//! one `stat` per request and re-read when it changed, so a rotated token
//! applies without a restart, and a half-written file keeps the last good
//! token. The token is compared in constant time and never logged.

use super::http::{Endpoint, RequestHead, Response};
use crate::daemon::cluster::TokenFile;
use std::path::{Path, PathBuf};

/// What the warning about an unreadable file says happens meanwhile.
const WITHOUT: &str = "refusing /metrics and /status until it can be read";

pub struct Auth {
    file: TokenFile,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token_file", &self.file.path())
            .finish()
    }
}

impl Auth {
    pub fn new(path: PathBuf) -> Auth {
        Auth {
            file: TokenFile::required(path, WITHOUT),
        }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// `Err`: the 401 to answer instead of `endpoint`.
    pub fn check(&mut self, endpoint: Endpoint, req: &RequestHead) -> Result<(), Response> {
        if !endpoint.needs_token() {
            return Ok(());
        }
        let expected = self.file.current().map(str::as_bytes);
        let given = req.bearer.as_ref().map(|s| s.expose());
        match (expected, given) {
            (Some(expected), Some(given)) if constant_time_eq(expected, given) => Ok(()),
            (_, given) => Err(Response::text(
                401,
                if given.is_some() {
                    "unauthorized: wrong bearer token\n"
                } else {
                    "unauthorized: send the token of [daemon] metrics_token_file as \"Authorization: Bearer <token>\"\n"
                },
            )),
        }
    }
}

/// Equal bytes, in a time that depends on the lengths only (the length of
/// a token is no secret worth the complexity of hiding it).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::access::Secret;
    use crate::metrics::http::Method;

    fn req(bearer: Option<&str>) -> RequestHead {
        RequestHead {
            method: Method::Get,
            path: "/metrics".into(),
            keep_alive: true,
            bearer: bearer.map(Secret::new),
        }
    }

    #[test]
    fn equal_means_equal_bytes_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn metrics_and_status_need_the_current_token_probes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let mut auth = Auth::new(path.clone());
        assert_eq!(auth.path(), path);
        for endpoint in [Endpoint::Metrics, Endpoint::Status] {
            assert_eq!(auth.check(endpoint, &req(Some("s3cret"))), Ok(()));
            let refused = auth.check(endpoint, &req(None)).unwrap_err();
            assert_eq!(refused.status, 401);
            assert!(String::from_utf8_lossy(&refused.body).contains("metrics_token_file"));
            let wrong = auth.check(endpoint, &req(Some("s3cre"))).unwrap_err();
            assert_eq!(wrong.status, 401);
            assert!(!String::from_utf8_lossy(&wrong.body).contains("s3cre"));
        }
        assert_eq!(auth.check(Endpoint::Healthz, &req(None)), Ok(()));
        // Rotated (a different length, so the stamp changes within one
        // mtime tick): the new token applies at once.
        std::fs::write(&path, "rotated-token").unwrap();
        assert!(auth.check(Endpoint::Metrics, &req(Some("s3cret"))).is_err());
        assert_eq!(
            auth.check(Endpoint::Metrics, &req(Some("rotated-token"))),
            Ok(())
        );
    }

    #[test]
    fn an_unreadable_file_refuses_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let mut auth = Auth::new(dir.path().join("missing"));
        let r = auth.check(Endpoint::Status, &req(Some(""))).unwrap_err();
        assert_eq!(r.status, 401);
        assert_eq!(auth.check(Endpoint::Healthz, &req(None)), Ok(()));
    }
}
