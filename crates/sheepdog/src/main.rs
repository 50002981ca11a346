//! `sheepdog`: the one program a school runs. This binary only parses the
//! command line, reads the configuration and hands over to the library
//! crates; see ARCHITECTURE.md for where each capability lives.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod password;
mod sample;
mod telemetry;
mod web;

/// mimalloc instead of glibc's allocator: a DNS or proxy event is built on
/// a server's thread and freed on the event writer's, a pattern that sends
/// glibc to its slow paths. Logging a DNS query cost 6 253 instructions
/// more than not logging it under glibc, 3 416 under mimalloc (callgrind;
/// ARCHITECTURE.md, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Online safety for schools: filtering, monitoring and safeguarding records.
#[derive(Debug, Parser)]
#[command(name = "sheepdog", version, propagate_version = true)]
struct Cli {
    /// The configuration file (every key has a default; see
    /// dist/sheepdog.example.toml).
    #[arg(
        long,
        global = true,
        env = "SHEEPDOG_CONFIG",
        default_value = "/etc/sheepdog/sheepdog.toml"
    )]
    config: PathBuf,
    /// Log as text for people or JSON lines for a collector; overrides [log] format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<telemetry::Format>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start everything on loopback with a throw-away synthetic school.
    Demo(cmd::demo::DemoArgs),
    /// Run sheepdog with a configuration file (production).
    Serve,
    /// Create the data directory, the database and the first administrator.
    Init(cmd::init::InitArgs),
    /// Check a configuration file and report the first problem.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the version and what this build supports.
    Version,
    /// Work with the audit log.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Import records from files.
    #[command(subcommand)]
    Import(cmd::import::ImportCommand),
    /// Make synthetic rosters (invented people) for trials and tests.
    #[command(subcommand)]
    Roster(cmd::import::RosterCommand),
    /// Filtering lists: import, update from sources, statistics.
    #[command(subcommand)]
    Lists(cmd::lists::ListsCommand),
    /// Show the filtering decision for a name or URL, and the rule behind it.
    Check(cmd::check::CheckArgs),
    /// Safeguarding monitoring: scan events for concerns, evaluate the keyword libraries.
    #[command(subcommand)]
    Monitor(cmd::monitor::MonitorCommand),
    /// The filtering policy document: what is blocked or allowed for whom, and why.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// The school's certificate authority for selective TLS inspection.
    #[command(subcommand)]
    Ca(cmd::ca::CaCommand),
    /// Before publishing images of pupils: consent for the purpose, and full names in file names and metadata.
    PublishCheck(cmd::publish::PublishCheckArgs),
    /// `serve`'s list rebuild, run by `serve` as a child process.
    #[command(hide = true)]
    BuildSnapshot(cmd::list_refresh::BuildSnapshotArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sheepdog: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Demo(args) => runtime.block_on(cmd::demo::run(args, cli.log_format)),
        Command::Serve => runtime.block_on(cmd::serve::run(&cli.config, cli.log_format)),
        Command::Init(args) => runtime.block_on(cmd::init::run(args, &cli.config)),
        Command::CheckConfig { file } => cmd::check_config(&file),
        Command::Version => {
            println!("{}", cmd::version());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(command) => runtime.block_on(cmd::audit::run(command, &cli.config)),
        Command::Import(command) => runtime.block_on(cmd::import::run(command, &cli.config)),
        Command::Roster(command) => cmd::import::synthesize(command),
        Command::Lists(command) => {
            let config = cmd::load_config(&cli.config)?;
            cmd::lists::run(command, &config.filtering.policy, &config.data_dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Monitor(command) => {
            let config = cmd::load_config(&cli.config)?;
            runtime.block_on(cmd::monitor::run(command, &config))
        }
        Command::Ca(command) => {
            let config = cmd::load_config(&cli.config)?;
            cmd::ca::run(command, &config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::PublishCheck(args) => {
            let config = cmd::load_config(&cli.config)?;
            runtime.block_on(cmd::publish::run(args, &config))
        }
        Command::Policy(command) => {
            let config = cmd::load_config(&cli.config)?;
            runtime.block_on(cmd::policy::run(command, &config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            let config = cmd::load_config(&cli.config)?;
            cmd::check::run(args, &config.filtering.policy, &config.data_dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BuildSnapshot(args) => {
            cmd::list_refresh::build_snapshot(&args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
