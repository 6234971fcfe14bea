//! The command line's definition: one clap (derive) tree that parses the
//! arguments and also generates the man pages and shell completions
//! (`kwatchd generate-assets`), so help, man page and completions can never
//! disagree. `main.rs` only dispatches; a new subcommand is a variant of
//! [`Command`] here and an arm there.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueHint};
use clap_mangen::roff::{roman, Roff};
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// sysexits.h: command line usage error.
pub const EX_USAGE: u8 = 64;
/// sysexits.h: configuration error.
pub const EX_CONFIG: u8 = 78;

/// Exit statuses of every subcommand: `kwatchd --help` and the man page
/// print this one table.
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "success (status: the daemon is healthy)"),
    (
        "1",
        "the daemon stopped on an error (status: the daemon is unhealthy)",
    ),
    ("2", "status: the daemon is unreachable or not kwatchd"),
    ("64", "usage error: an unknown or misused flag or argument"),
    (
        "78",
        "configuration problem, every one listed as FILE:LINE:COLUMN: KEY: MESSAGE",
    ),
];

/// Variables kwatchd reads. The first ones are for people; the rest are set
/// by systemd or Kubernetes and listed for the man page.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "KWATCHD_LOG_LEVEL",
        "overrides [daemon] log_level (error, warn, info, debug, trace)",
    ),
    (
        "HOME",
        "expands a leading ~/ in a cluster's kubeconfig paths",
    ),
    (
        "${NAME} in the configuration",
        "file paths and webhook headers take any variable, expanded at load and reload; an unset one is a configuration problem (check --offline skips them)",
    ),
    (
        "CREDENTIALS_DIRECTORY",
        "set by systemd for LoadCredential=: paths such as \"${CREDENTIALS_DIRECTORY}/token\" reach secrets the service's dynamic user cannot open itself",
    ),
    (
        "NOTIFY_SOCKET, WATCHDOG_USEC",
        "set by systemd for Type=notify and WatchdogSec=: kwatchd reports READY=1, RELOADING=1, STOPPING=1 and WATCHDOG=1",
    ),
    (
        "JOURNAL_STREAM",
        "set by systemd when stderr is the journal: log lines then start with their syslog priority",
    ),
    (
        "KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT",
        "the API server of a cluster with in_cluster = true",
    ),
];
/// How many of [`ENVIRONMENT`] `--help` shows (the rest only the man page).
const ENVIRONMENT_IN_HELP: usize = 1;

/// Only in the man page: `--help` stays short.
const SIGNALS: &[(&str, &str)] = &[
    (
        "SIGTERM, SIGINT",
        "stop reading, let the sinks deliver what they hold for up to [daemon] shutdown_timeout, then exit 0; a second signal stops at once",
    ),
    (
        "SIGHUP",
        "re-read the configuration file and apply the difference; an invalid file is refused and the running configuration stays",
    ),
    (
        "SIGUSR1",
        "reopen the files of file sinks (logrotate's postrotate): the next write creates a rotated file anew",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "/etc/kwatchd/kwatchd.toml",
        "the configuration of the packaged service (every key documented in the shipped example)",
    ),
    (
        "/var/lib/kwatchd",
        "[daemon] state_dir: one checkpoint per watch",
    ),
    (
        "/var/log/kwatchd",
        "where the example configuration's file sink writes; rotated by /etc/logrotate.d/kwatchd",
    ),
    (
        "/usr/share/doc/kwatchd/README.md",
        "the guide: configuration, guarantees, metrics, systemd and secrets",
    ),
];

/// `kwatchd`: the command line.
#[derive(Parser, Debug)]
#[command(
    name = "kwatchd",
    version,
    about = "Kubernetes watch daemon",
    long_about = "Kubernetes watch daemon.\n\n\
        kwatchd holds WATCH streams open against Kubernetes API servers and hands every \
        change of the resources a configuration names to its sinks (JSON-lines files, \
        standard output, exec hooks, webhooks), across reconnects, restarts and expired \
        resourceVersions, without gaps.",
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// One variant per subcommand; `main.rs` has one arm for each.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon on a configuration file.
    ///
    /// A configuration with any problem is refused (exit 78) with every
    /// problem listed. Logs go to stderr. SIGHUP reloads the file, SIGUSR1
    /// reopens file sinks, SIGTERM or SIGINT stop after the sinks drain.
    Run(ConfigFile),
    /// Validate a configuration file.
    ///
    /// Exit 0 when it is valid, or 78 with every problem listed as
    /// FILE:LINE:COLUMN: KEY: MESSAGE. Files the configuration names (CA,
    /// token, kubeconfig, hook programs) are checked as the daemon would load
    /// them, and ${VAR} in paths and webhook headers needs the variable;
    /// --offline checks only the file itself.
    Check(CheckArgs),
    /// Ask a running daemon how its watches and sinks are doing.
    ///
    /// Asks the daemon at [daemon] metrics_listen of the configuration file
    /// (or at --addr) for /healthz and /status and prints its watches and
    /// sinks. Exit 0 healthy, 1 unhealthy, 2 unreachable (or not a kwatchd
    /// answer), 78 the configuration has no usable metrics_listen.
    Status(StatusArgs),
    /// Print the RBAC objects a configuration needs, as YAML.
    ///
    /// Least privilege, from the file alone (checked as --offline): list and
    /// watch on each watched resource, in a Role per watched namespace or a
    /// ClusterRole for watches of every namespace; get and update on the
    /// Lease of [daemon.leader_election] and create on leases. Each is bound
    /// to the ServiceAccount. Pipe it to `kubectl apply -f -`.
    Rbac(RbacArgs),
    /// Try kwatchd without a cluster.
    ///
    /// Runs the built-in API server emulator with some churn and the daemon
    /// on an embedded demo configuration, and tails each event to the
    /// terminal until Ctrl-C.
    Demo(DemoArgs),
    /// Run recorded events through a watch's filters and on to its sinks.
    ///
    /// RECORDS is a JSON-lines file as kwatchd writes them (a file sink's
    /// output or a dead-letter file), or - for standard input. Each record's
    /// object goes through the watch's redact, select and changes (fresh
    /// state, file order), then to the watch's sinks (or only those named
    /// with --sink), after each sink's transform. With --dry-run nothing is
    /// written or run: one line {"sink":NAME,"delivery":VALUE} is printed per
    /// delivery. A summary goes to stderr. Exit 0, 1 when a delivery failed,
    /// 78 for a configuration problem.
    Replay(ReplayCliArgs),
    /// Run the API server emulator on its own, as a cluster to try hooks on.
    ///
    /// Serves pods, configmaps, secrets, namespaces, deployments, leases,
    /// CustomResourceDefinitions and their resources, for reads, watches and
    /// writes from kubectl (create, replace, delete, label, annotate, edit,
    /// scale, patch), and writes a kubeconfig for it. Plain HTTP without
    /// authentication, or with --tls HTTPS with a generated CA and a bearer
    /// token (both in the kubeconfig). Serves until SIGINT or SIGTERM; nothing
    /// is kept.
    Sim(SimArgs),
    /// Write the man pages and shell completions (for packaging).
    #[command(hide = true)]
    GenerateAssets(AssetsArgs),
}

/// The configuration file, as `--config FILE` or as the only positional
/// argument.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ConfigFile {
    /// The configuration file (TOML).
    #[arg(short = 'c', long = "config", value_name = "FILE", value_hint = ValueHint::FilePath)]
    config: Option<PathBuf>,
    /// The configuration file, without --config.
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    file: Option<PathBuf>,
}

impl ConfigFile {
    /// The path given either way. clap's required group guarantees one;
    /// were it ever empty, loading "" fails with a message like any
    /// unreadable file.
    pub fn path(self) -> PathBuf {
        self.config.or(self.file).unwrap_or_default()
    }
}

/// `kwatchd check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigFile,
    /// Check only the file: syntax, types, ranges, references between
    /// tables, the syntax of ${VAR}. No file it names, no environment
    /// variable and no kubeconfig is read, so a configuration written for
    /// another machine (or for LoadCredential= under systemd) checks
    /// anywhere, e.g. in CI.
    #[arg(long)]
    pub offline: bool,
}

/// `kwatchd rbac`.
#[derive(Args, Debug)]
pub struct RbacArgs {
    #[command(flatten)]
    pub config: ConfigFile,
    /// The ServiceAccount's namespace (the bindings' subject).
    #[arg(long, value_name = "NS", default_value = "kwatchd")]
    pub namespace: String,
    /// The ServiceAccount's name; also the name of the roles.
    #[arg(long, value_name = "NAME", default_value = "kwatchd")]
    pub service_account: String,
    /// Only what the daemon requests from this [clusters.NAME] (default: every cluster).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
}

/// `kwatchd status`: where the daemon is, and how long to wait for it.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: StatusTarget,
    /// Give up after this long in all (connect, both requests, answers),
    /// e.g. "500ms", "10s".
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// Exactly one way to find the daemon.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct StatusTarget {
    /// The daemon's configuration file: its [daemon] metrics_listen is asked.
    #[arg(short = 'c', long = "config", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// The configuration file, without --config.
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: Option<PathBuf>,
    /// The daemon's metrics address: IP:PORT, or the URL it logs
    /// ("metrics: listening on http://IP:PORT").
    #[arg(long, value_name = "ADDR", value_parser = parse_status_addr)]
    pub addr: Option<SocketAddr>,
}

/// `kwatchd replay`.
#[derive(Args, Debug)]
pub struct ReplayCliArgs {
    /// The configuration file (TOML).
    #[arg(short = 'c', long = "config", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub config: PathBuf,
    /// The watch whose filters and sinks the records go through.
    #[arg(long, value_name = "NAME")]
    pub watch: String,
    /// Only this sink of the watch (repeatable); default: all of them.
    #[arg(long = "sink", value_name = "NAME")]
    pub sinks: Vec<String>,
    /// Write nothing and run nothing: print what each sink would get.
    #[arg(long)]
    pub dry_run: bool,
    /// Records to replay (JSON lines), or - for standard input.
    #[arg(value_name = "RECORDS", value_hint = ValueHint::FilePath)]
    pub records: PathBuf,
}

/// `kwatchd demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo writes events.jsonl [default: ./kwatchd-demo].
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
}

/// `kwatchd sim`.
#[derive(Args, Debug)]
pub struct SimArgs {
    /// Where to listen: IP:PORT [default: 127.0.0.1 on a free port].
    #[arg(long, value_name = "IP:PORT", value_parser = parse_sim_listen)]
    pub listen: Option<SocketAddr>,
    /// Where to write the kubeconfig (mode 0600) [default: ./kwatchd-sim.kubeconfig].
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub kubeconfig_out: Option<PathBuf>,
    /// Serve HTTPS with a generated CA and require a bearer token.
    #[arg(long)]
    pub tls: bool,
}

fn parse_sim_listen(s: &str) -> Result<SocketAddr, String> {
    kwatchd::config::parse_listen_addr(s)
}

/// `kwatchd generate-assets`.
#[derive(Args, Debug)]
pub struct AssetsArgs {
    /// Directory to write man/ and completions/ into (created if missing).
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub out: PathBuf,
}

/// The command tree with the help epilogue made from the tables above.
pub fn command() -> clap::Command {
    let mut epilogue = String::from("Exit status:\n");
    for (code, meaning) in EXIT_STATUS {
        let _ = writeln!(epilogue, "  {code:<4}{meaning}");
    }
    epilogue.push_str("\nEnvironment:\n");
    for (name, meaning) in &ENVIRONMENT[..ENVIRONMENT_IN_HELP] {
        let _ = writeln!(epilogue, "  {name}  {meaning}");
    }
    epilogue.push_str(
        "\nSee `kwatchd COMMAND --help`, man kwatchd, and /usr/share/doc/kwatchd/README.md.",
    );
    Cli::command().after_help(epilogue)
}

/// Parses the process's arguments. A clap error carries the help or
/// version text too; the caller prints it and maps its kind to an exit code.
pub fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os())
}

fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// The exit code for a clap error: help and version go to stdout and
/// succeed; everything else is a usage error (clap's own default is 2,
/// which `kwatchd status` uses for "unreachable").
pub fn error_exit_code(e: &clap::Error) -> u8 {
    if e.use_stderr() {
        EX_USAGE
    } else {
        0
    }
}

/// `--addr`: `IP:PORT`, or `http://IP:PORT` with an optional trailing
/// slash, which is what the daemon logs when its listener starts.
fn parse_status_addr(s: &str) -> Result<SocketAddr, String> {
    let bare = match s.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
            rest.strip_suffix('/').unwrap_or(rest)
        }
        Some((scheme, _)) => {
            return Err(format!(
                "{scheme}:// is not served: the metrics endpoint speaks plain http://"
            ))
        }
        None => s,
    };
    let addr: SocketAddr = bare.parse().map_err(|_| {
        "expected IP:PORT or http://IP:PORT/ (as the daemon logs it), e.g. 127.0.0.1:9464 or [::1]:9464; host names and paths are not accepted".to_string()
    })?;
    if addr.port() == 0 {
        return Err("port 0 is what the config asks for, not where the daemon listens: pass the address it logged (\"metrics: listening on http://…\")".into());
    }
    Ok(addr)
}

/// `--timeout`: a humantime duration, not zero (a zero socket timeout
/// means "none" to some calls and is an error to others).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e}; e.g. \"500ms\", \"10s\""))?;
    if d.is_zero() {
        return Err("must be more than 0s".into());
    }
    Ok(d)
}

/// Writes `DIR/man/man1/kwatchd.1` (with `kwatchd-SUBCOMMAND.1` for each
/// subcommand; `DIR/man` is a manual tree for MANPATH) and `DIR/completions/{kwatchd.bash,_kwatchd,kwatchd.fish}`;
/// returns the files written.
pub fn generate_assets(out: &Path) -> io::Result<Vec<PathBuf>> {
    use clap_complete::{generate_to, Shell};
    let man_dir = out.join("man").join("man1");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&completions)?;

    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    let top = man_dir.join("kwatchd.1");
    let mut page = Vec::new();
    render_main_page(&cmd, &mut page)?;
    std::fs::write(&top, page)?;
    written.push(top);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(man_page(sub.clone()).generate_to(&man_dir)?);
    }

    // clap_complete offers hidden subcommands too: complete a copy without them.
    let full = command();
    let mut cmd = clap::Command::new("kwatchd")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        written.push(generate_to(shell, &mut cmd, "kwatchd", &completions)?);
    }
    Ok(written)
}

/// Every page's footer names the package and version.
fn man_page(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .manual("kwatchd manual")
        .source(concat!("kwatchd ", env!("CARGO_PKG_VERSION")))
}

/// kwatchd(1): clap_mangen's sections, then the exit status, environment,
/// signals and files from the tables above.
fn render_main_page(cmd: &clap::Command, w: &mut dyn io::Write) -> io::Result<()> {
    // The epilogue is for the terminal: the page says the same in sections.
    let man = man_page(cmd.clone().after_help(""));
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    let mut roff = Roff::default();
    for (heading, rows) in [
        ("EXIT STATUS", EXIT_STATUS),
        ("ENVIRONMENT", ENVIRONMENT),
        ("SIGNALS", SIGNALS),
        ("FILES", FILES),
    ] {
        roff.control("SH", [heading]);
        for (term, text) in rows {
            roff.control("TP", []);
            roff.text([roman(*term)]);
            roff.text([roman(*text)]);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    let see_also: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("kwatchd-{}(1), ", s.get_name()))
        .chain(["systemd.exec(5), logrotate(8)".to_string()])
        .collect();
    roff.text([roman(see_also.concat())]);
    roff.to_writer(w)?;
    man.render_version_section(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_from(std::iter::once("kwatchd").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn the_config_file_is_a_flag_or_the_positional_argument() {
        for args in [
            &["check", "--config", "a.toml"][..],
            &["check", "-c", "a.toml"],
            &["check", "--config=a.toml"],
            &["check", "a.toml"],
        ] {
            match parse(args) {
                Ok(Cli {
                    command: Command::Check(c),
                }) => {
                    assert!(!c.offline);
                    assert_eq!(c.config.path(), PathBuf::from("a.toml"), "{args:?}");
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
        match parse(&["check", "--offline", "a.toml"]) {
            Ok(Cli {
                command: Command::Check(c),
            }) => assert!(c.offline),
            other => panic!("{other:?}"),
        }
        let e = parse(&["run", "--offline", "a.toml"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        let both = parse(&["run", "--config", "a.toml", "b.toml"]).unwrap_err();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
        let none = parse(&["run"]).unwrap_err();
        assert_eq!(none.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(error_exit_code(&none), EX_USAGE);
    }

    #[test]
    fn each_subcommand_takes_only_its_own_flags() {
        for args in [
            &["check", "--dir", "x"][..],
            &["demo", "--config", "x.toml"],
            &["run", "--addr", "127.0.0.1:1", "a.toml"],
            &["status", "--dir", "x"],
            &["sim", "--config", "x.toml"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{args:?}"
            );
        }
    }

    #[test]
    fn sim_takes_listen_kubeconfig_out_and_tls() {
        match parse(&[
            "sim",
            "--listen",
            "127.0.0.1:6443",
            "--kubeconfig-out",
            "k",
            "--tls",
        ]) {
            Ok(Cli {
                command: Command::Sim(a),
            }) => {
                assert_eq!(a.listen, Some("127.0.0.1:6443".parse().unwrap()));
                assert_eq!(a.kubeconfig_out, Some(PathBuf::from("k")));
                assert!(a.tls);
            }
            other => panic!("{other:?}"),
        }
        let e = parse(&["sim", "--listen", "localhost:1"]).unwrap_err();
        assert_eq!(error_exit_code(&e), EX_USAGE);
    }

    #[test]
    fn status_addr_takes_ip_port_or_the_logged_url() {
        let want: SocketAddr = "127.0.0.1:43801".parse().unwrap();
        for s in [
            "127.0.0.1:43801",
            "http://127.0.0.1:43801",
            "http://127.0.0.1:43801/",
            "HTTP://127.0.0.1:43801",
        ] {
            assert_eq!(parse_status_addr(s), Ok(want), "{s}");
        }
        assert_eq!(
            parse_status_addr("http://[::1]:9464/"),
            Ok("[::1]:9464".parse().unwrap())
        );
        for bad in [
            "https://127.0.0.1:1",
            "localhost:9464",
            "http://127.0.0.1:1/status",
            "127.0.0.1",
            "127.0.0.1:0",
        ] {
            assert!(parse_status_addr(bad).is_err(), "{bad}");
        }
        let e = parse(&["status", "--addr", "https://127.0.0.1:1"]).unwrap_err();
        assert!(e.to_string().contains("plain http://"), "{e}");
    }

    #[test]
    fn status_wants_exactly_one_target_and_a_positive_timeout() {
        match parse(&["status", "--addr", "127.0.0.1:9", "--timeout", "250ms"]) {
            Ok(Cli {
                command: Command::Status(s),
            }) => {
                assert_eq!(s.timeout, Duration::from_millis(250));
                assert_eq!(s.target.addr, Some("127.0.0.1:9".parse().unwrap()));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["status", "k.toml"]) {
            Ok(Cli {
                command: Command::Status(s),
            }) => {
                assert_eq!(s.timeout, Duration::from_secs(10));
                assert_eq!(s.target.file, Some(PathBuf::from("k.toml")));
            }
            other => panic!("{other:?}"),
        }
        for args in [
            &["status"][..],
            &["status", "--config", "k.toml", "--addr", "127.0.0.1:9"],
            &["status", "--addr", "127.0.0.1:9", "--timeout", "0s"],
            &["status", "--addr", "127.0.0.1:9", "--timeout", "10"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn help_and_version_succeed_and_usage_errors_are_64() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["--version"],
            &["run", "--help"],
            &["status", "-h"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(error_exit_code(&e), 0, "{args:?}");
        }
        for args in [&[][..], &["frobnicate"], &["check", "--confg", "x"]] {
            let e = parse(args).unwrap_err();
            assert_eq!(error_exit_code(&e), EX_USAGE, "{args:?}");
        }
    }

    #[test]
    fn assets_are_generated_from_the_definition() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate_assets(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        for want in [
            "man/man1/kwatchd.1",
            "man/man1/kwatchd-run.1",
            "man/man1/kwatchd-check.1",
            "man/man1/kwatchd-status.1",
            "man/man1/kwatchd-demo.1",
            "man/man1/kwatchd-sim.1",
            "completions/kwatchd.bash",
            "completions/_kwatchd",
            "completions/kwatchd.fish",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("generate-assets")));
        let page = std::fs::read_to_string(dir.path().join("man/man1/kwatchd.1")).unwrap();
        for section in [
            "EXIT STATUS",
            "ENVIRONMENT",
            "SIGNALS",
            "SIGUSR1",
            "kwatchd\\-status(1)",
        ] {
            assert!(page.contains(section), "{section} missing:\n{page}");
        }
        let bash = std::fs::read_to_string(dir.path().join("completions/kwatchd.bash")).unwrap();
        assert!(
            bash.contains("--addr") && bash.contains("--timeout"),
            "{bash}"
        );
        assert!(!bash.contains("generate-assets"));
    }
}
