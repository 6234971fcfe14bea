//! `[sinks.NAME]` of every type.

use super::*;

#[test]
fn sink_types() {
    let e = errs(&MINIMAL.replace("type = \"file\"", "type = \"kafka\""));
    assert_error(
        &e,
        13,
        "sinks.out.type",
        "unknown sink type \"kafka\"; expected one of: file",
    );
    let e = errs(&MINIMAL.replace("type = \"file\"", "type = 1"));
    assert_error(&e, 13, "sinks.out.type", "expected a string");
    let e = errs(&MINIMAL.replace("path = \"/var/log/kwatchd/events.jsonl\"", "path = \"\""));
    assert_error(&e, 14, "sinks.out.path", "must not be empty");
}

fn sink_of(text: &str) -> SinkConfig {
    ok(text).sinks["out"].clone()
}

fn exec_of(text: &str) -> ExecSinkConfig {
    match sink_of(text) {
        SinkConfig::Exec(e) => e,
        other => panic!("not exec: {other:?}"),
    }
}

fn webhook_of(text: &str, vars: &[(&str, &str)]) -> WebhookSinkConfig {
    match Config::parse_with_vars(text, Path::new("kwatchd.toml"), vars) {
        Ok(c) => match &c.sinks["out"] {
            SinkConfig::Webhook(w) => w.clone(),
            other => panic!("not webhook: {other:?}"),
        },
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn webhook_errs(text: &str, vars: &[(&str, &str)]) -> Vec<ConfigError> {
    match Config::parse_with_vars(text, Path::new("kwatchd.toml"), vars) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e.0,
    }
}

#[test]
fn exec_sink_defaults() {
    let e = exec_of(&with_sink(
        "type = \"exec\"\ncommand = [\"/usr/local/bin/on-change\"]",
    ));
    assert_eq!(
        e,
        ExecSinkConfig {
            command: vec!["/usr/local/bin/on-change".to_string()],
            timeout: Duration::from_secs(30),
            kill_grace: Duration::from_secs(5),
            kill_process_group: true,
            working_dir: None,
            env: BTreeMap::new(),
            delivery: DeliveryConfig {
                coalesce: false,
                max_concurrent: 1,
                retries: 3,
                batch_window: Duration::ZERO,
                batch_max: 100,
                on_failure: OnFailure::Log,
                queue_events: None,
            },
        }
    );
    assert_eq!(e.delivery.queue_events_or(4096), 4096);
}

#[test]
fn exec_sink_every_key() {
    let e = exec_of(&with_sink(
        r#"type = "exec"
command = ["hooks/on-change", "--verbose", ""]
timeout = "2m"
kill_grace = "0s"
kill_process_group = false
max_concurrent = 4
retries = 0
batch_window = "250ms"
batch_max = 1
working_dir = "hooks/work/"
env = { CLUSTER_NAME = "prod", PATH = "/opt/bin:/usr/bin", _x = "" }
on_failure = "dead_letter"
dead_letter = "dead.jsonl"
queue_events = 10"#,
    ));
    let cwd = cwd();
    assert_eq!(
        e.command,
        vec![
            cwd.join("hooks/on-change").display().to_string(),
            "--verbose".to_string(),
            String::new()
        ]
    );
    assert_eq!(e.timeout, Duration::from_secs(120));
    assert_eq!(e.kill_grace, Duration::ZERO);
    assert!(!e.kill_process_group);
    assert_eq!(e.working_dir, Some(cwd.join("hooks/work")));
    assert_eq!(
        e.env,
        BTreeMap::from([
            ("CLUSTER_NAME".to_string(), "prod".to_string()),
            ("PATH".to_string(), "/opt/bin:/usr/bin".to_string()),
            ("_x".to_string(), String::new()),
        ])
    );
    assert_eq!(
        e.delivery,
        DeliveryConfig {
            coalesce: false,
            max_concurrent: 4,
            retries: 0,
            batch_window: Duration::from_millis(250),
            batch_max: 1,
            on_failure: OnFailure::DeadLetter(cwd.join("dead.jsonl")),
            queue_events: Some(10),
        }
    );
    assert_eq!(e.delivery.queue_events_or(4096), 10);
    // A bare name stays bare (looked up in PATH when spawned); an [env]
    // sub-table works like the inline one.
    let e = exec_of(&with_sink(
        "type = \"exec\"\ncommand = [\"logger\", \"-t\", \"kwatchd\"]\n[sinks.out.env]\nA = \"1\"",
    ));
    assert_eq!(e.command[0], "logger");
    assert_eq!(e.env["A"], "1");
}

#[test]
fn exec_sink_errors_name_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("command = []", "command", "must not be empty"),
        (
            "command = \"/bin/hook --x\"",
            "command",
            "expected an array, found a string",
        ),
        (
            "command = [\"/bin/on-change --verbose\", 1]",
            "command[1]",
            "expected a string, found an integer",
        ),
        (
            "command = [\"on-change --verbose\"]",
            "command[0]",
            "argv array, not a shell string",
        ),
        ("command = [\"\"]", "command[0]", "must not be empty"),
        ("command = [\"~/hook\"]", "command[0]", "not expanded"),
        ("command = [\"/bin/x\", \"a\\u0000b\"]", "command[1]", "NUL"),
        (
            "command = [\"/bin/x\"]\ntimeout = \"10ms\"",
            "timeout",
            "too short",
        ),
        (
            "command = [\"/bin/x\"]\ntimeout = \"2d\"",
            "timeout",
            "too long",
        ),
        (
            "command = [\"/bin/x\"]\ntimeout = 30",
            "timeout",
            "expected a string, found an integer",
        ),
        (
            "command = [\"/bin/x\"]\nkill_grace = \"11m\"",
            "kill_grace",
            "too long",
        ),
        (
            "command = [\"/bin/x\"]\nmax_concurrent = 0",
            "max_concurrent",
            "must be from 1 to 1024, got 0",
        ),
        (
            "command = [\"/bin/x\"]\nmax_concurrent = \"4\"",
            "max_concurrent",
            "expected an integer",
        ),
        (
            "command = [\"/bin/x\"]\nretries = -1",
            "retries",
            "must be from 0 to 100, got -1",
        ),
        (
            "command = [\"/bin/x\"]\nretries = 101",
            "retries",
            "must be from 0 to 100",
        ),
        (
            "command = [\"/bin/x\"]\nbatch_window = \"2h\"",
            "batch_window",
            "too long",
        ),
        (
            "command = [\"/bin/x\"]\nbatch_max = 0",
            "batch_max",
            "must be from 1 to 100000",
        ),
        (
            "command = [\"/bin/x\"]\nqueue_events = 0",
            "queue_events",
            "must be at least 1",
        ),
        (
            "command = [\"/bin/x\"]\nworking_dir = \"\"",
            "working_dir",
            "must not be empty",
        ),
        (
            "command = [\"/bin/x\"]\nenv = [\"A=1\"]",
            "env",
            "expected a table { NAME = \"value\", ... }, found an array",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { KWATCHD_EVENT = \"x\" }",
            "env.KWATCHD_EVENT",
            "reserved",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { kwatchd_uid = \"x\" }",
            "env.kwatchd_uid",
            "reserved",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { \"MY-VAR\" = \"x\" }",
            "env.MY-VAR",
            "invalid environment variable name",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { 1X = \"x\" }",
            "env.1X",
            "not starting with a digit",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { A = 1 }",
            "env.A",
            "expected a string, found an integer",
        ),
        (
            "command = [\"/bin/x\"]\nenv = { A = \"a\\u0000\" }",
            "env.A",
            "NUL",
        ),
        (
            "command = [\"/bin/x\"]\nshell = true",
            "shell",
            "unknown key `shell` in [sinks.out]; expected one of: type, command,",
        ),
        (
            "command = [\"/bin/x\"]\nurl = \"https://h\"",
            "url",
            "unknown key `url`",
        ),
    ];
    for (body, key, fragment) in cases {
        let text = with_sink(&format!("type = \"exec\"\n{body}"));
        let line = 13 + body.lines().count();
        let e = errs(&text);
        assert_error(&e, line, &format!("sinks.out.{key}"), fragment);
    }
    let e = errs(&with_sink("type = \"exec\""));
    assert_error(
        &e,
        12,
        "sinks.out.command",
        "missing required key `command` in [sinks.out]",
    );
}

#[test]
fn on_failure_and_dead_letter_go_together() {
    let text = |body: &str| with_sink(&format!("type = \"exec\"\ncommand = [\"/bin/x\"]\n{body}"));
    assert_eq!(
        exec_of(&text("on_failure = \"log\"")).delivery.on_failure,
        OnFailure::Log
    );
    assert_eq!(
        exec_of(&text(
            "on_failure = \"dead_letter\"\ndead_letter = \"/var/lib/k/dl.jsonl\""
        ))
        .delivery
        .on_failure,
        OnFailure::DeadLetter(PathBuf::from("/var/lib/k/dl.jsonl"))
    );
    let e = errs(&text("on_failure = \"dead_letter\""));
    assert_error(&e, 15, "sinks.out.dead_letter", "missing key `dead_letter`");
    let e = errs(&text("dead_letter = \"/x.jsonl\""));
    assert_error(
        &e,
        15,
        "sinks.out.dead_letter",
        "on_failure is \"log\" (the default), so it would never be written",
    );
    let e = errs(&text("on_failure = \"log\"\ndead_letter = \"/x.jsonl\""));
    assert_error(&e, 16, "sinks.out.dead_letter", "on_failure is \"log\", so");
    let e = errs(&text("on_failure = \"retry\""));
    assert_error(
        &e,
        15,
        "sinks.out.on_failure",
        "expected \"log\" or \"dead_letter\"",
    );
    let e = errs(&text("on_failure = \"dead_letter\"\ndead_letter = \"\""));
    assert_error(&e, 16, "sinks.out.dead_letter", "must not be empty");
    assert_eq!(e.len(), 1, "no second error about the missing file");
}

#[test]
fn webhook_sink_defaults_and_every_key() {
    let w = webhook_of(
        &with_sink("type = \"webhook\"\nurl = \"https://hooks.example.com\""),
        &[],
    );
    assert_eq!(
        w,
        WebhookSinkConfig {
            url: WebhookUrl::parse("https://hooks.example.com/").unwrap(),
            headers: vec![],
            certificate_authority: None,
            timeout: Duration::from_secs(10),
            delivery: DeliveryConfig {
                coalesce: false,
                max_concurrent: 8,
                retries: 5,
                batch_window: Duration::ZERO,
                batch_max: 100,
                on_failure: OnFailure::Log,
                queue_events: None,
            },
        }
    );
    let w = webhook_of(
        &with_sink(
            r#"type = "webhook"
url = "https://hooks.example.com:8443/kwatchd/?team=web"
headers = { Authorization = "Bearer ${WEBHOOK_TOKEN}", X-Cost = "$$5", X-Env = "${CLUSTER}-${CLUSTER}" }
certificate_authority = "ca.pem"
timeout = "30s"
retries = 0
max_concurrent = 1
batch_window = "5s"
batch_max = 500
on_failure = "dead_letter"
dead_letter = "/var/lib/kwatchd/webhook-dead.jsonl"
queue_events = 1000"#,
        ),
        &[("WEBHOOK_TOKEN", "t0k3n"), ("CLUSTER", "prod")],
    );
    assert_eq!(w.url.origin.host, "hooks.example.com");
    assert_eq!(w.url.origin.port, 8443);
    assert_eq!(w.url.target, "/kwatchd/?team=web");
    assert_eq!(
        w.headers,
        vec![
            HttpHeader {
                name: "Authorization".into(),
                value: "Bearer t0k3n".into()
            },
            HttpHeader {
                name: "X-Cost".into(),
                value: "$5".into()
            },
            HttpHeader {
                name: "X-Env".into(),
                value: "prod-prod".into()
            },
        ]
    );
    assert!(!format!("{w:?}").contains("t0k3n"), "Debug leaks the token");
    assert_eq!(w.certificate_authority, Some(cwd().join("ca.pem")));
    assert_eq!(w.timeout, Duration::from_secs(30));
    assert_eq!(
        w.delivery,
        DeliveryConfig {
            coalesce: false,
            max_concurrent: 1,
            retries: 0,
            batch_window: Duration::from_secs(5),
            batch_max: 500,
            on_failure: OnFailure::DeadLetter(PathBuf::from("/var/lib/kwatchd/webhook-dead.jsonl")),
            queue_events: Some(1000),
        }
    );
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost/x?y=1",
        "http://[::1]/",
    ] {
        let w = webhook_of(
            &with_sink(&format!("type = \"webhook\"\nurl = {url:?}")),
            &[],
        );
        assert!(w.url.is_loopback(), "{url}");
    }
}

#[test]
fn webhook_sink_errors_name_line_and_key() {
    let vars = [("TOKEN", "t"), ("MULTI", "a\nb")];
    let cases: &[(&str, &str, &str)] = &[
        ("url = \"hooks.example.com\"", "url", "missing scheme"),
        ("url = \"ftp://h/x\"", "url", "unsupported scheme"),
        (
            "url = \"http://hooks.example.com/x\"",
            "url",
            "only allowed for loopback hosts",
        ),
        ("url = \"http://10.1.2.3/x\"", "url", "travel in clear"),
        (
            "url = \"https://u:p@h/x\"",
            "url",
            "send credentials in `headers`",
        ),
        ("url = \"https://h/x#top\"", "url", "fragment"),
        ("url = \"https://h/a b\"", "url", "percent-encode"),
        (
            "url = \"https://h\"\nheaders = \"Authorization: x\"",
            "headers",
            "expected a table { Header-Name = \"value\", ... }, found a string",
        ),
        (
            "url = \"https://h\"\nheaders = { Authorization = \"Bearer ${NOPE}\" }",
            "headers.Authorization",
            "environment variable NOPE is not set",
        ),
        (
            "url = \"https://h\"\nheaders = { X = \"${TOKEN\" }",
            "headers.X",
            "unterminated ${",
        ),
        (
            "url = \"https://h\"\nheaders = { X = \"${MULTI}\" }",
            "headers.X",
            "${MULTI} contains a line break",
        ),
        (
            "url = \"https://h\"\nheaders = { X = \"a\\r\\nEvil: 1\" }",
            "headers.X",
            "must not contain a line break",
        ),
        (
            "url = \"https://h\"\nheaders = { X = \"a\\u0001\" }",
            "headers.X",
            "control character",
        ),
        (
            "url = \"https://h\"\nheaders = { X = 1 }",
            "headers.X",
            "expected a string, found an integer",
        ),
        (
            "url = \"https://h\"\nheaders = { host = \"evil\" }",
            "headers.host",
            "header Host is set by kwatchd",
        ),
        (
            "url = \"https://h\"\nheaders = { Content-Length = \"1\" }",
            "headers.Content-Length",
            "cannot be configured",
        ),
        (
            "url = \"https://h\"\nheaders = { transfer-encoding = \"x\" }",
            "headers.transfer-encoding",
            "cannot be configured",
        ),
        (
            "url = \"https://h\"\nheaders = { Connection = \"close\" }",
            "headers.Connection",
            "cannot be configured",
        ),
        (
            "url = \"https://h\"\nheaders = { \"X Y\" = \"1\" }",
            "headers.\"X Y\"",
            "invalid header name",
        ),
        (
            "url = \"https://h\"\nheaders = { \"X:Y\" = \"1\" }",
            "headers.\"X:Y\"",
            "invalid header name",
        ),
        (
            "url = \"https://h\"\nheaders = { X-A = \"1\", x-a = \"2\" }",
            "headers.x-a",
            "duplicate header \"x-a\"",
        ),
        (
            "url = \"http://127.0.0.1/\"\ncertificate_authority = \"/ca.pem\"",
            "certificate_authority",
            "the url is http://",
        ),
        (
            "url = \"https://h\"\ncertificate_authority = \"\"",
            "certificate_authority",
            "must not be empty",
        ),
        (
            "url = \"https://h\"\ntimeout = \"50ms\"",
            "timeout",
            "too short",
        ),
        (
            "url = \"https://h\"\ntimeout = \"11m\"",
            "timeout",
            "too long",
        ),
        (
            "url = \"https://h\"\nmax_concurrent = 2000",
            "max_concurrent",
            "must be from 1 to 1024",
        ),
        (
            "url = \"https://h\"\nretries = 1.5",
            "retries",
            "expected an integer, found a float",
        ),
        (
            "url = \"https://h\"\nbatch_max = 100001",
            "batch_max",
            "must be from 1 to 100000",
        ),
        (
            "url = \"https://h\"\non_failure = \"dead_letter\"",
            "dead_letter",
            "missing key `dead_letter`",
        ),
        (
            "url = \"https://h\"\ncommand = [\"/x\"]",
            "command",
            "unknown key `command`",
        ),
    ];
    for (body, key, fragment) in cases {
        let text = with_sink(&format!("type = \"webhook\"\n{body}"));
        let line = 13 + body.lines().count();
        let e = webhook_errs(&text, &vars);
        assert_error(&e, line, &format!("sinks.out.{key}"), fragment);
        for error in &e {
            assert!(
                !error.message.contains("a\nb"),
                "a variable's value leaked: {error}"
            );
        }
    }
    let e = webhook_errs(&with_sink("type = \"webhook\""), &[]);
    assert_error(&e, 12, "sinks.out.url", "missing required key `url`");
}

#[test]
fn stdout_sink_takes_only_its_type() {
    assert_eq!(sink_of(&with_sink("type = \"stdout\"")), SinkConfig::Stdout);
    assert_eq!(SinkConfig::Stdout.type_name(), "stdout");
    assert_eq!(SinkConfig::Stdout.delivery(), None);
    let e = errs(&with_sink("type = \"stdout\"\npath = \"/x\""));
    assert_error(
        &e,
        14,
        "sinks.out.path",
        "unknown key `path` in [sinks.out]; expected one of: type",
    );
    let e = errs(&with_sink("type = \"kafka\""));
    assert_error(
        &e,
        13,
        "sinks.out.type",
        "expected one of: file, exec, webhook, stdout, nats",
    );
}

#[test]
fn load_checks_hook_programs_directories_and_webhook_ca() {
    use std::os::unix::fs::PermissionsExt;
    let files = Files::new();
    let hook = files.write("hook.sh", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let not_exec = files.write("plain.sh", "#!/bin/sh\n");
    let ca = files.write("ca.pem", PEM);
    let junk = files.write("junk.pem", "x");
    let dir = files.dir.path().display().to_string();
    let sinks = format!(
        r#"
[sinks.good]
type = "exec"
command = [{hook:?}]
working_dir = {dir:?}

[sinks.bare]
type = "exec"
command = ["sh", "-c", "true"]

[sinks.hooks]
type = "webhook"
url = "https://h/"
certificate_authority = {ca:?}
"#,
        hook = hook.display().to_string(),
        ca = ca.display().to_string(),
    );
    let path = files.write("good.toml", &(MINIMAL.to_string() + &sinks));
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sinks.len(), 4);

    let bad = format!(
        r#"
[sinks.a]
type = "exec"
command = [{not_exec:?}]
working_dir = "{dir}/absent"

[sinks.b]
type = "exec"
command = ["no-such-program-kwatchd-test"]
on_failure = "dead_letter"
dead_letter = {dir:?}

[sinks.c]
type = "exec"
command = ["{dir}/absent hook --verbose"]

[sinks.d]
type = "exec"
command = [{dir:?}]

[sinks.e]
type = "webhook"
url = "https://h/"
certificate_authority = {junk:?}
"#,
        not_exec = not_exec.display().to_string(),
        junk = junk.display().to_string(),
    );
    let path = files.write("bad.toml", &(MINIMAL.to_string() + &bad));
    let e = Config::load(&path).unwrap_err().0;
    let base = MINIMAL.lines().count();
    assert_error(
        &e,
        base + 4,
        "sinks.a.command[0]",
        "is not executable (chmod +x it",
    );
    assert_error(
        &e,
        base + 5,
        "sinks.a.working_dir",
        "is not an existing directory",
    );
    assert_error(
        &e,
        base + 9,
        "sinks.b.command[0]",
        "not an executable file in any directory of PATH",
    );
    assert_error(&e, base + 11, "sinks.b.dead_letter", "is a directory");
    assert_error(&e, base + 15, "sinks.c.command[0]", "argv array");
    assert_error(&e, base + 19, "sinks.d.command[0]", "is not a regular file");
    assert_error(
        &e,
        base + 24,
        "sinks.e.certificate_authority",
        "holds no PEM certificate",
    );
    assert_eq!(e.len(), 7, "{}", ConfigErrors(e.clone()));
    // `parse` does not look at the files.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(Config::parse(&text, &path).is_ok());
}

#[test]
fn nats_sink_defaults_and_auth() {
    let SinkConfig::Nats(n) = sink_of(&with_sink(
        "type = \"nats\"\nservers = [\"nats://127.0.0.1\", \"tls://n2:4333\"]\nstream = \"KUBE\"",
    )) else {
        panic!("not nats")
    };
    assert_eq!(n.servers.len(), 2);
    assert_eq!((n.servers[0].port, n.servers[1].tls), (4222, true));
    assert_eq!(n.subject.to_string(), crate::config::nats::DEFAULT_SUBJECT);
    assert_eq!(n.auth, crate::nats::Auth::None);
    assert_eq!(n.max_in_flight, 256);
    assert_eq!(n.ack_timeout, Duration::from_secs(5));
    assert_eq!(n.on_failure, OnFailure::Log);
    let SinkConfig::Nats(n) = sink_of(&with_sink(
        "type = \"nats\"\nservers = [\"h\"]\nstream = \"S\"\nuser = \"u\"\npassword_file = \"/p\"\nsubject = \"k.{type}\"\nmax_in_flight = 1\nack_timeout = \"1s\"\nqueue_events = 10",
    )) else {
        panic!("not nats")
    };
    assert_eq!(
        n.auth,
        crate::nats::Auth::UserPassword {
            user: "u".into(),
            password_file: PathBuf::from("/p")
        }
    );
    assert_eq!((n.max_in_flight, n.queue_events), (1, Some(10)));
}

#[test]
fn nats_sink_errors_name_line_and_key() {
    let base = "type = \"nats\"\nservers = [\"h\"]\nstream = \"S\"\n";
    for (extra, key, fragment) in [
        (
            "token_file = \"/t\"\ncredentials_file = \"/c\"",
            "token_file",
            "use one way",
        ),
        ("user = \"u\"", "user", "needs password_file"),
        ("password_file = \"/p\"", "password_file", "needs user"),
        (
            "client_key = \"/k\"",
            "client_key",
            "needs client_certificate",
        ),
        ("subject = \"a.*\"", "subject", "wildcards"),
        ("subject = \"a.{uid}\"", "subject", "unknown placeholder"),
        ("max_in_flight = 0", "max_in_flight", "must be from 1"),
    ] {
        let e = errs(&with_sink(&format!("{base}{extra}")));
        let all: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert!(
            e.iter()
                .any(|e| e.key == format!("sinks.out.{key}") && e.message.contains(fragment)),
            "{extra}: {all:?}"
        );
    }
    let e = errs(&with_sink(
        "type = \"nats\"\nservers = [\"http://h\"]\nstream = \"a.b\"",
    ));
    let all: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert!(
        all.iter().any(|m| m.contains("unsupported scheme")),
        "{all:?}"
    );
    assert!(
        all.iter().any(|m| m.contains("invalid stream name")),
        "{all:?}"
    );
    let e = errs(&with_sink("type = \"nats\"\nstream = \"S\""));
    assert!(e.iter().any(|e| e.message.contains("servers")), "{e:?}");
}
