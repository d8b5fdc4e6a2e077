//! `kwik loadtest`: the seed's load scenario (many sessions, an aggregate message rate, an echo
//! server) measured on kwik and, side by side, on raw quinn.
//!
//! The server is embedded: it runs in the same process, on 127.0.0.1, on an ephemeral port.
//! When several variants are asked for, each runs in a child process of its own (the same
//! binary, re-executed), so that one variant's memory and CPU never count against the next;
//! the parent only prints the table and writes `--json`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ::kwik::config::{Dispatch, PerformanceConfig};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

mod driver;
mod facade;
mod probe;
mod quic;
mod report;
mod tls;

use driver::Workload;
use report::{JsonReport, JsonRun, Measured, Mode};

/// Most sessions one run may open: far beyond the seed's 1000, low enough that a typo (an
/// extra zero or two) does not exhaust file descriptors and memory.
const MAX_CONNECTIONS: u32 = 20_000;
/// Highest aggregate rate accepted, in messages per second.
const MAX_RATE: u32 = 1_000_000;
/// Smallest message: the 8-byte timestamp each message carries.
const MIN_SIZE: u32 = 8;
/// Largest message.
const MAX_SIZE: u32 = 1 << 20;
/// Longest send window.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Arguments of `kwik loadtest`.
#[derive(Debug, Clone, Args)]
pub(crate) struct LoadtestArgs {
    /// Sessions to open, each with one bidirectional stream.
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNECTIONS)))]
    connections: u32,
    /// Aggregate messages per second over all sessions, sent open loop (echo mode).
    #[arg(long, default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RATE)))]
    rate: u32,
    /// How long to send, e.g. `10s`, `500ms`, `1m`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Message size in bytes (at least 8: each message carries its send time).
    #[arg(long, default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(i64::from(MIN_SIZE)..=i64::from(MAX_SIZE)))]
    size: u32,
    /// The workload.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    mode: Mode,
    /// kwik dispatch to measure; default: `[transport] dispatch` of the configuration.
    #[arg(long, value_enum)]
    dispatch: Option<DispatchArg>,
    /// Also run the same workload on a baseline, in the same run.
    #[arg(long, value_enum)]
    baseline: Option<Baseline>,
    /// performance.toml to use (KWIK_* environment overrides apply); default: the defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Run only this variant, in this process (set by the parent for its children).
    #[arg(long, hide = true)]
    only: Option<String>,
    /// Print the measurement as JSON on stdout instead of the table (for the parent).
    #[arg(long, hide = true)]
    child: bool,
}

/// `--dispatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DispatchArg {
    /// Packets decoded on the shared worker pool, ordered per path.
    Pool,
    /// Packets decoded on each path's reader task.
    Inline,
    /// One spawned task per packet.
    Spawn,
    /// All three, side by side.
    All,
}

/// `--baseline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Baseline {
    /// The same workload on raw quinn.
    Quic,
}

/// One column of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Raw quinn.
    Quic,
    /// kwik with this dispatch.
    Kwik(Dispatch),
}

impl Variant {
    const ALL: [Self; 4] = [
        Self::Quic,
        Self::Kwik(Dispatch::Pool),
        Self::Kwik(Dispatch::Inline),
        Self::Kwik(Dispatch::Spawn),
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::Kwik(Dispatch::Pool) => "kwik-pool",
            Self::Kwik(Dispatch::Inline) => "kwik-inline",
            Self::Kwik(Dispatch::Spawn) => "kwik-spawn",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }
}

pub(crate) fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    if args.duration.is_zero() || args.duration > MAX_DURATION {
        bail!("--duration must be between 1ms and {MAX_DURATION:?}");
    }
    let mut config = match &args.config {
        Some(path) => PerformanceConfig::load(path)?,
        None => PerformanceConfig::default(),
    }
    .with_env_overrides()?;
    // Several runs may overlap (tests, a second terminal): endpoints on ephemeral ports only.
    config.metrics.listen.set_port(0);
    config.profiling.listen.set_port(0);
    config.profiling.pprof_port = None;

    if let Some(name) = &args.only {
        let variant =
            Variant::from_name(name).with_context(|| format!("unknown variant {name}"))?;
        let measured = run_in_process(variant, &args, &config)?;
        if args.child {
            println!("{}", serde_json::to_string(&measured)?);
        } else {
            finish(&args, &[measured])?;
        }
        return Ok(());
    }

    let variants = variants(&args, &config);
    let runs = if let [variant] = variants[..] {
        vec![run_in_process(variant, &args, &config)?]
    } else {
        variants
            .iter()
            .map(|&variant| run_in_child(variant))
            .collect::<anyhow::Result<_>>()?
    };
    finish(&args, &runs)
}

/// The variants asked for, baseline first.
fn variants(args: &LoadtestArgs, config: &PerformanceConfig) -> Vec<Variant> {
    let mut variants = Vec::new();
    if args.baseline == Some(Baseline::Quic) {
        variants.push(Variant::Quic);
    }
    let dispatches = match args.dispatch {
        None => vec![config.transport.dispatch],
        Some(DispatchArg::Pool) => vec![Dispatch::Pool],
        Some(DispatchArg::Inline) => vec![Dispatch::Inline],
        Some(DispatchArg::Spawn) => vec![Dispatch::Spawn],
        Some(DispatchArg::All) => vec![Dispatch::Pool, Dispatch::Inline, Dispatch::Spawn],
    };
    variants.extend(dispatches.into_iter().map(Variant::Kwik));
    variants
}

/// Prints the table (and the first error of each variant that had one), writes `--json`.
fn finish(args: &LoadtestArgs, runs: &[Measured]) -> anyhow::Result<()> {
    let shape = match args.mode {
        Mode::Echo => format!(
            "echo, {} msg/s, {} B messages, {}",
            args.rate,
            args.size,
            humantime::format_duration(args.duration)
        ),
        Mode::Bulk => format!(
            "bulk, {} B messages, {}",
            args.size,
            humantime::format_duration(args.duration)
        ),
        Mode::Connect => "connect".to_owned(),
    };
    println!("kwik loadtest: {} sessions, {shape}", args.connections);
    print!("{}", report::table(runs));
    for run in runs {
        if let Some(err) = &run.first_error {
            eprintln!("{}: first error: {err}", run.variant);
        }
    }
    if let Some(path) = &args.json {
        let document = JsonReport {
            runs: runs.iter().map(JsonRun::from).collect(),
        };
        let text = serde_json::to_string_pretty(&document)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Re-executes this binary with the same arguments, restricted to `variant`, and reads its
/// measurement from its standard output.
fn run_in_child(variant: Variant) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe().context("cannot find the kwik executable")?;
    let output = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .args(["--only", variant.name(), "--child"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start the {} run", variant.name()))?;
    if !output.status.success() {
        bail!("the {} run failed ({})", variant.name(), output.status);
    }
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("unreadable measurement from the {} run", variant.name()))
}

/// Runs one variant on a tokio runtime built from `[runtime]`.
fn run_in_process(
    variant: Variant,
    args: &LoadtestArgs,
    config: &PerformanceConfig,
) -> anyhow::Result<Measured> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime.effective_worker_threads(cores))
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let workload = Workload {
        mode: args.mode,
        connections: args.connections as usize,
        rate: args.rate,
        duration: args.duration,
        size: args.size as usize,
    };
    let progress = progress_bar(args.duration);
    let measured = runtime.block_on(async {
        let peak = probe::PeakTracker::start();
        let tls = tls::DevTls::generate()?;
        match variant {
            Variant::Quic => {
                let target = quic::QuicTarget::start(config, &tls)?;
                driver::run(variant.name(), target, workload, peak, &progress).await
            }
            Variant::Kwik(dispatch) => {
                let target = facade::KwikTarget::start(config, dispatch, &tls).await?;
                driver::run(variant.name(), target, workload, peak, &progress).await
            }
        }
    });
    progress.finish_and_clear();
    // Sessions closed and servers stopped: do not wait for stray tasks to notice.
    runtime.shutdown_timeout(Duration::from_secs(1));
    measured
}

/// A bar over the send window on a terminal; hidden (and free) when stderr is not one.
fn progress_bar(duration: Duration) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(duration.as_millis() as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg:20} [{bar:40}] {elapsed_precise}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
