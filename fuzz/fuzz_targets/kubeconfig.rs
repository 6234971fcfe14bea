//! The kubeconfig parser on arbitrary text: never panics; every error names
//! the file it came from (the one input file); a context that resolves
//! renders back to a kubeconfig that parses and resolves to the same
//! settings (the chosen context's cluster, user and namespace fields).
#![no_main]

use std::path::{Path, PathBuf};

use kwatchd::kube::access::kubeconfig::{merge, parse, render, resolve, Resolved};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "/fuzz/kubeconfig.yaml";
const RENDERED: &str = "/fuzz/rendered.yaml";

fn check_error(e: &kwatchd::kube::access::kubeconfig::KubeconfigError, file: &str) {
    assert_eq!(e.files, vec![PathBuf::from(file)], "{e}");
    assert!(!e.message.is_empty(), "error without a message");
    assert!(
        e.to_string().starts_with(&format!("kubeconfig {file}: ")),
        "{e}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(FILE);
    let file = match parse(text, path) {
        Ok(f) => f,
        Err(e) => return check_error(&e, FILE),
    };
    let resolved = match resolve(&merge(vec![(path.to_path_buf(), file)]), None) {
        Ok(r) => r,
        Err(e) => return check_error(&e, FILE),
    };
    let yaml = render(&resolved);
    let again = parse(&yaml, Path::new(RENDERED))
        .and_then(|f| resolve(&merge(vec![(PathBuf::from(RENDERED), f)]), None))
        .unwrap_or_else(|e| panic!("rendered kubeconfig does not resolve: {e}\n{yaml}"));
    assert_eq!(
        Resolved {
            source: resolved.source.clone(),
            ..again
        },
        resolved,
        "round trip changed the context:\n{yaml}"
    );
});
