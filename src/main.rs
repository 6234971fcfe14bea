//! The `kwatchd` command line.

use kwatchd::config::Config;
use kwatchd::daemon::Daemon;
use kwatchd::{demo, logging};
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
    kwatchd demo [--dir DIR]      run the built-in API server emulator and the daemon on config/demo.toml
                                  (events go to DIR/events.jsonl, default ./kwatchd-demo)
    kwatchd --version

ENVIRONMENT:
    KWATCHD_LOG_LEVEL             overrides [daemon] log_level (error|warn|info|debug|trace)
";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
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
    while let Some(arg) = it.next() {
        match arg.as_str() {
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
            logging::init(config.daemon.log_level);
            run_daemon(&config)
        }
        Command::Demo(dir) => match demo::run(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kwatchd demo: {e}");
                ExitCode::FAILURE
            }
        },
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
