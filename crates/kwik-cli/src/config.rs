//! `kwik config check FILE...` and `kwik config show [FILE]`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use kwik_config::PerformanceConfig;

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate each FILE (with KWIK_<SECTION>_<KEY> environment overrides applied): print
    /// `ok: FILE`, or stop at the first error, print it and exit with status 2.
    Check {
        /// The performance.toml files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Check the file alone, ignoring KWIK_* environment variables.
        #[arg(long)]
        no_env: bool,
    },
    /// Print the effective configuration as TOML: defaults, then FILE if given, then the
    /// KWIK_<SECTION>_<KEY> environment overrides. The output is itself a valid FILE.
    Show {
        /// The performance.toml to start from; defaults only when absent.
        file: Option<PathBuf>,
        /// Ignore KWIK_* environment variables.
        #[arg(long)]
        no_env: bool,
    },
}

pub(crate) fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Check { files, no_env } => {
            for file in files {
                effective(Some(&file), no_env)?;
                println!("ok: {}", file.display());
            }
            Ok(())
        }
        ConfigCommand::Show { file, no_env } => {
            let config = effective(file.as_deref(), no_env)?;
            let source = file.as_deref().map_or_else(
                || "defaults".to_owned(),
                |f| format!("defaults < {}", f.display()),
            );
            let env = if no_env { "" } else { " < KWIK_* environment" };
            let mut out = io::stdout().lock();
            writeln!(out, "# kwik effective configuration: {source}{env}\n")
                .and_then(|()| write!(out, "{config}"))
                .and_then(|()| out.flush())
                .context("cannot write to standard output")
        }
    }
}

/// Loads `file` (or the defaults) and applies the environment unless `no_env`.
fn effective(file: Option<&Path>, no_env: bool) -> anyhow::Result<PerformanceConfig> {
    let config = match file {
        Some(path) => PerformanceConfig::load(path)?,
        None => PerformanceConfig::default(),
    };
    Ok(if no_env {
        config
    } else {
        config.with_env_overrides()?
    })
}
