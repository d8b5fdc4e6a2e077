//! `kwik`: the command-line face of kwik.
//!
//! One module per subcommand; `main` only parses the arguments, dispatches, and maps errors to
//! exit codes: 0 on success, 2 when a configuration is rejected (as for a usage error: the
//! input is wrong, not the program), 1 for any other failure.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod config;
mod loadtest;
mod serve;

/// kwik: QUIC With Intelligent Konnections, one session over several servers.
#[derive(Debug, Parser)]
#[command(name = "kwik", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check or print a performance.toml.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Drive many sessions against an echo server and report latency, CPU and memory.
    Loadtest(loadtest::LoadtestArgs),
    /// Serve echo, file ranges and HTTP over KWIK streams.
    Serve(serve::ServeArgs),
}

/// Exit code of a rejected configuration (clap uses the same code for a usage error).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config(command) => config::run(command),
        Command::Loadtest(args) => loadtest::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

/// Prints `err` with its causes and picks the exit code.
fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    if err
        .chain()
        .any(|cause| cause.is::<kwik_config::ConfigError>())
    {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}
