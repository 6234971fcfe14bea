//! The unit file passes `systemd-analyze verify` and reaches an exposure of
//! 2.0 or lower in `systemd-analyze security`, where the tool exists.

mod common;

use std::process::Command;

fn analyze() -> Option<()> {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| ())
}

#[test]
fn unit_file_verifies_and_is_hardened() {
    if analyze().is_none() {
        eprintln!("systemd-analyze is not installed; skipping the unit checks");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/kwatchd.service"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart= exists: point it at the binary under test.
    let path = dir.path().join("kwatchd.service");
    std::fs::write(&path, unit.replace("/usr/bin/kwatchd", common::BIN)).unwrap();
    // verify also looks up Documentation=man:kwatchd(1): give it the pages
    // the binary generates (the package test checks the installed ones).
    let generated = Command::new(common::BIN)
        .args(["generate-assets", "--out"])
        .arg(dir.path().join("assets"))
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", dir.path().join("assets/man"))
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify:\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout).into_owned()
        + &String::from_utf8_lossy(&security.stderr);
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for kwatchd.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{text}");
}
