//! The `kwatchd` command line.

use kwatchd::config::Config;
use kwatchd::daemon::Daemon;
use kwatchd::logging;
use std::path::PathBuf;
use std::process::ExitCode;

/// sysexits.h: command line usage error.
const EX_USAGE: u8 = 64;
/// sysexits.h: configuration error.
const EX_CONFIG: u8 = 78;

const USAGE: &str = "\
kwatchd — Kubernetes watch daemon

USAGE:
    kwatchd run --config FILE     run the daemon
    kwatchd check --config FILE   validate a config file (exit 0, or 78 with every problem listed)
    kwatchd status --config FILE [--addr IP:PORT]
                                  ask the running daemon (at [daemon] metrics_listen, or --addr)
                                  for /healthz and /status and print its watches and sinks;
                                  exit 0 healthy, 1 unhealthy, 2 unreachable, 78 config problem
    kwatchd demo [--dir DIR]      run the built-in API server emulator and the daemon on config/demo.toml
                                  (events go to DIR/events.jsonl, default ./kwatchd-demo)
    kwatchd --version

ENVIRONMENT:
    KWATCHD_LOG_LEVEL             overrides [daemon] log_level (error|warn|info|debug|trace)
";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Status {
        config: Option<PathBuf>,
        addr: Option<String>,
    },
    Demo(Option<PathBuf>),
    Version,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter();
    let Some(cmd) = it.next() else {
        return Err("a command is required".into());
    };
    let mut path = None;
    let mut addr = None;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--addr" if cmd == "status" => {
                addr = Some(it.next().ok_or("--addr needs a value")?.clone());
            }
            other if cmd == "status" && other.starts_with("--addr=") => {
                addr = other.strip_prefix("--addr=").map(str::to_owned);
            }
            "--config" | "-c" | "--dir" => {
                let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
                path = Some(PathBuf::from(value));
            }
            other => {
                if let Some(v) = other
                    .strip_prefix("--config=")
                    .or_else(|| other.strip_prefix("--dir="))
                {
                    path = Some(PathBuf::from(v));
                } else {
                    return Err(format!("unexpected argument {other:?}"));
                }
            }
        }
    }
    match cmd.as_str() {
        "run" => path
            .map(Command::Run)
            .ok_or_else(|| "run needs --config FILE".into()),
        "check" => path
            .map(Command::Check)
            .ok_or_else(|| "check needs --config FILE".into()),
        "demo" => Ok(Command::Demo(path)),
        "status" if path.is_none() && addr.is_none() => {
            Err("status needs --config FILE (or --addr IP:PORT)".into())
        }
        "status" => Ok(Command::Status { config: path, addr }),
        "--version" | "-V" | "version" => Ok(Command::Version),
        "--help" | "-h" | "help" => Ok(Command::Help),
        other => Err(format!("unknown command {other:?}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kwatchd: {e}\n\n{USAGE}");
            return ExitCode::from(EX_USAGE);
        }
    };
    match command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("kwatchd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check(path) => match Config::load(&path) {
            Ok(c) => {
                for w in c.warnings() {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: valid ({} clusters, {} watches, {} sinks)",
                    path.display(),
                    c.clusters.len(),
                    c.watches.len(),
                    c.sinks.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{}: {} problem(s) found", path.display(), errors.0.len());
                ExitCode::from(EX_CONFIG)
            }
        },
        Command::Run(path) => {
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!(
                        "kwatchd: {} problem(s) in {}; not starting",
                        errors.0.len(),
                        path.display()
                    );
                    return ExitCode::from(EX_CONFIG);
                }
            };
            logging::init(config.daemon.log_level, config.daemon.log_format);
            for w in config.warnings() {
                log::warn!("{w}");
            }
            run_daemon(&config)
        }
        Command::Status { config, addr } => status(config.as_deref(), addr.as_deref()),
        Command::Demo(dir) => demo(dir),
    }
}

#[cfg(feature = "demo")]
fn demo(dir: Option<PathBuf>) -> ExitCode {
    match kwatchd::demo::run(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kwatchd demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A daemon built without the emulator (`--no-default-features`) says how to get it rather than "unknown command".
#[cfg(not(feature = "demo"))]
fn demo(_dir: Option<PathBuf>) -> ExitCode {
    eprintln!("kwatchd demo: this kwatchd was built without the `demo` feature (cargo build --features demo)");
    ExitCode::from(EX_USAGE)
}

/// `kwatchd status`: the address from --addr or the config, then the table.
fn status(config: Option<&std::path::Path>, addr: Option<&str>) -> ExitCode {
    use kwatchd::metrics::client;
    let addr = match (addr, config) {
        (Some(a), _) => match kwatchd::config::parse_listen_addr(a) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("kwatchd status: --addr: {e}");
                return ExitCode::from(EX_USAGE);
            }
        },
        (None, Some(path)) => match client::listen_addr_from_config(path) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("kwatchd status: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        },
        (None, None) => return ExitCode::from(EX_USAGE),
    };
    match client::fetch(addr, std::time::Duration::from_secs(5)) {
        Ok(report) => {
            print!("{}", client::render(&report));
            ExitCode::from(if report.healthy {
                client::EXIT_HEALTHY
            } else {
                client::EXIT_UNHEALTHY
            })
        }
        Err(e) => {
            eprintln!("kwatchd status: cannot get the status from http://{addr}: {e}");
            ExitCode::from(client::EXIT_UNREACHABLE)
        }
    }
}

fn run_daemon(config: &Config) -> ExitCode {
    match Daemon::new(config).and_then(Daemon::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
