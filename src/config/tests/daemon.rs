//! `[daemon]` values.

use super::*;

#[test]
fn daemon_values() {
    let daemon = |body: &str| format!("[daemon]\n{body}\n{MINIMAL}");
    assert_eq!(
        ok(&daemon("max_line_bytes = \"1GiB\""))
            .daemon
            .max_line_bytes,
        1 << 30
    );
    assert_eq!(
        ok(&daemon("max_line_bytes = \"64 KiB\""))
            .daemon
            .max_line_bytes,
        64 << 10
    );
    assert_eq!(
        ok(&daemon("max_line_bytes = 1024")).daemon.max_line_bytes,
        1024
    );
    assert_eq!(
        ok(&daemon("log_level = \"trace\"")).daemon.log_level,
        log::LevelFilter::Trace
    );
    let d = ok(&daemon(
        "metrics_listen = \"[::1]:9464\"\nlog_format = \"json\"\nshutdown_timeout = \"0s\"",
    ))
    .daemon;
    assert_eq!(d.metrics_listen, Some("[::1]:9464".parse().unwrap()));
    assert_eq!(d.log_format, LogFormat::Json);
    assert_eq!(d.shutdown_timeout, Duration::ZERO);
    assert_eq!(
        ok(&daemon("metrics_listen = \"127.0.0.1:0\""))
            .daemon
            .metrics_listen,
        Some("127.0.0.1:0".parse().unwrap())
    );
    assert_eq!(
        ok(&daemon("sink_queue_events = 100000"))
            .daemon
            .sink_queue_events,
        100000
    );
    assert_eq!(
        ok(&daemon("state_dir = \"state\"")).daemon.state_dir,
        cwd().join("state"),
        "relative state_dir is resolved against the current directory"
    );
    let cases = [
        ("max_line_bytes = 1023", "out of range"),
        ("max_line_bytes = \"2GiB\"", "out of range"),
        ("max_line_bytes = -1", "negative"),
        (
            "max_line_bytes = 1.5",
            "expected an integer number of bytes or a size string",
        ),
        ("max_line_bytes = \"lots\"", "invalid size"),
        ("max_line_bytes = \"16\"", "invalid size unit"),
        (
            "max_line_bytes = \"99999999999999999999999GiB\"",
            "too large",
        ),
        ("sink_queue_events = 0", "at least 1"),
        ("sink_queue_events = -5", "at least 1"),
        (
            "sink_queue_events = \"4096\"",
            "expected an integer, found a string",
        ),
        ("log_level = \"Info\"", "invalid log level"),
        ("log_level = 3", "expected a string"),
        (
            "metrics_listen = \"localhost:9464\"",
            "host names are not accepted",
        ),
        ("metrics_listen = \"127.0.0.1\"", "expected IP:PORT"),
        (
            "metrics_listen = \"127.0.0.1:99999\"",
            "invalid listen address",
        ),
        ("metrics_listen = 9464", "expected a string"),
        ("log_format = \"JSON\"", "expected \"text\" or \"json\""),
        ("shutdown_timeout = \"2h\"", "too long"),
        ("shutdown_timeout = 30", "expected a string"),
    ];
    for (body, fragment) in cases {
        let key = format!("daemon.{}", body.split(' ').next().unwrap());
        assert_error(&errs(&daemon(body)), 2, &key, fragment);
    }
}

#[test]
fn metrics_token_file_is_checked_and_needs_a_listener() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("metrics-token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let daemon = |body: &str| format!("[daemon]\n{body}\n{MINIMAL}");
    let d = ok(&daemon(&format!(
        "metrics_listen = \"127.0.0.1:9464\"\nmetrics_token_file = {:?}",
        token.display().to_string()
    )))
    .daemon;
    assert_eq!(d.metrics_token_file, Some(token.clone()));
    // Checked like every referenced file when the config is loaded.
    let missing = dir.path().join("missing");
    let config = dir.path().join("kwatchd.toml");
    std::fs::write(
        &config,
        daemon(&format!(
            "metrics_listen = \"127.0.0.1:9464\"\nmetrics_token_file = {:?}",
            missing.display().to_string()
        )),
    )
    .unwrap();
    assert_error(
        &Config::load(&config).unwrap_err().0,
        3,
        "daemon.metrics_token_file",
        "cannot read",
    );
    assert_error(
        &errs(&daemon(&format!(
            "metrics_token_file = {:?}",
            token.display().to_string()
        ))),
        2,
        "daemon.metrics_token_file",
        "has no effect without metrics_listen",
    );
}

#[test]
fn sync_modes_and_interval() {
    let daemon = |body: &str| format!("[daemon]\n{body}\n{MINIMAL}");
    for mode in SyncMode::ALL {
        let d = ok(&daemon(&format!("sync = \"{}\"", mode.as_str()))).daemon;
        assert_eq!(d.sync, mode);
    }
    let d = ok(&daemon("sync_interval = \"250ms\"")).daemon;
    assert_eq!(d.sync_interval, Duration::from_millis(250));
    let e = errs(&daemon("sync = \"sometimes\""));
    assert!(
        e.iter().any(|e| e.to_string().contains("\"interval\"")),
        "{e:?}"
    );
    assert!(!errs(&daemon("sync_interval = \"1ms\"")).is_empty());
}
