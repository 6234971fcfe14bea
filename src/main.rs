//! The `kwatchd` command line: parse with the definition in `cli`, then one
//! function per subcommand.

mod cli;

use cli::{Command, EX_CONFIG, EX_USAGE};
use kwatchd::config::{Config, LoadMode};
use kwatchd::daemon::Daemon;
use kwatchd::logging;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with 0, mistakes to stderr with 64.
            let _ = e.print();
            return ExitCode::from(cli::error_exit_code(&e));
        }
    };
    match cli.command {
        Command::Run(file) => run(&file.path()),
        Command::Check(args) => check(args),
        Command::Status(args) => status(args),
        Command::Rbac(args) => rbac(args),
        Command::Demo(args) => demo(args.dir),
        Command::Replay(args) => replay(args),
        Command::Sim(args) => sim(args),
        Command::GenerateAssets(args) => match cli::generate_assets(&args.out) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kwatchd generate-assets: {}: {e}", args.out.display());
                ExitCode::FAILURE
            }
        },
    }
}

fn check(args: cli::CheckArgs) -> ExitCode {
    let path = args.config.path();
    let (mode, scope) = if args.offline {
        (
            LoadMode::Offline,
            "; offline: the files and environment variables it names were not checked",
        )
    } else {
        (LoadMode::Full, "")
    };
    match Config::check_with_warnings(&path, mode) {
        Ok((summary, warnings)) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: valid ({summary}){scope}", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} problem(s) found", path.display(), errors.0.len());
            ExitCode::from(EX_CONFIG)
        }
    }
}

fn rbac(args: cli::RbacArgs) -> ExitCode {
    let path = args.config.path();
    let config = match Config::load_offline(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} problem(s) found", path.display(), errors.0.len());
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Some(c) = args
        .cluster
        .as_ref()
        .filter(|c| !config.clusters.contains_key(*c))
    {
        eprintln!(
            "kwatchd rbac: --cluster {c:?} is not a [clusters.NAME] of {}",
            path.display()
        );
        return ExitCode::from(EX_USAGE);
    }
    let options = kwatchd::rbac::RbacOptions {
        namespace: args.namespace,
        service_account: args.service_account,
        cluster: args.cluster,
    };
    print!("{}", kwatchd::rbac::render(&config, &options));
    ExitCode::SUCCESS
}

fn run(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
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
    match Daemon::new(&config).and_then(Daemon::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `kwatchd replay`: recorded events through a watch's filters and sinks.
fn replay(args: cli::ReplayCliArgs) -> ExitCode {
    use kwatchd::replay::{self, Outcome, ReplayArgs};
    // The sinks' own warnings (a retry, a give-up and why) on stderr.
    logging::init(
        log::LevelFilter::Warn,
        kwatchd::config::LogFormat::default(),
    );
    let args = ReplayArgs {
        config: args.config,
        watch: args.watch,
        sinks: args.sinks,
        dry_run: args.dry_run,
        records: args.records,
    };
    let stdout = std::io::stdout();
    match replay::run(&args, &mut stdout.lock()) {
        Outcome::Delivered => ExitCode::SUCCESS,
        Outcome::DeliveryFailed => ExitCode::FAILURE,
        Outcome::ConfigProblem(e) => {
            eprintln!("kwatchd replay: {e}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

/// `kwatchd status`: the address from --addr or the config, then the table.
fn status(args: cli::StatusArgs) -> ExitCode {
    use kwatchd::metrics::client;
    let target = args.target;
    let addr = match (target.addr, target.config.or(target.file)) {
        (Some(a), _) => a.into(),
        (None, Some(path)) => match client::listen_addr_from_config(&path) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("kwatchd status: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        },
        // clap's required group makes this unreachable; say so rather than guess.
        (None, None) => {
            eprintln!("kwatchd status: needs --config FILE, FILE or --addr ADDR");
            return ExitCode::from(EX_USAGE);
        }
    };
    match client::fetch(&addr, args.timeout) {
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

#[cfg(feature = "demo")]
fn demo(dir: Option<std::path::PathBuf>) -> ExitCode {
    match kwatchd::demo::run(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kwatchd demo: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "demo")]
fn sim(args: cli::SimArgs) -> ExitCode {
    let cmd = kwatchd::demo::sim::SimCommand {
        listen: args.listen,
        kubeconfig_out: args.kubeconfig_out,
        tls: args.tls,
    };
    match kwatchd::demo::sim::run(&cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kwatchd sim: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "demo"))]
fn sim(_args: cli::SimArgs) -> ExitCode {
    eprintln!("kwatchd sim: this kwatchd was built without the `demo` feature (cargo build --features demo)");
    ExitCode::FAILURE
}

#[cfg(not(feature = "demo"))]
fn demo(_dir: Option<std::path::PathBuf>) -> ExitCode {
    eprintln!("kwatchd demo: this kwatchd was built without the `demo` feature (cargo build --features demo)");
    ExitCode::FAILURE
}
