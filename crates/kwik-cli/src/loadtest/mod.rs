//! `kwik loadtest`: the seed's load scenario (many sessions, an aggregate message rate, an echo
//! server) measured on kwik and, side by side, on raw quinn.
//!
//! The server is embedded by default: it runs in the same process, on 127.0.0.1, on an
//! ephemeral port. With `--target ADDR` there is no embedded server: the kwik variants dial a
//! separate `kwik serve` and ask each stream for its echo service; CPU and memory are then the
//! client's alone.
//! When several variants are asked for, each runs in a child process of its own (the same
//! binary, re-executed), so that one variant's memory and CPU never count against the next;
//! the parent only prints the table and writes `--json`.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ::kwik::Trust;
use ::kwik::config::{Dispatch, PerformanceConfig};
use anyhow::{Context, bail};
use clap::{ArgGroup, Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

mod driver;
mod facade;
mod probe;
mod pump;
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
#[command(group(ArgGroup::new("trust").args(["ca", "insecure"])))]
pub(crate) struct LoadtestArgs {
    /// Sessions to open, each with one bidirectional stream.
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNECTIONS)))]
    connections: u32,
    /// Aggregate messages per second over all sessions, sent open loop (echo mode).
    #[arg(long, default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RATE)))]
    rate: u32,
    /// How long to send and measure, after the warm-up, e.g. `10s`, `500ms`, `1m`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long to send first without measuring (echo and bulk), e.g. `1s`, `0s`: the sessions'
    /// first streams and the end of their handshakes' traffic are not the steady state.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
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
    /// Also run the same workload on a baseline, in the same run (not with --target).
    #[arg(long, value_enum)]
    baseline: Option<Baseline>,
    /// Drive the `kwik serve` at ADDR (host:port) instead of an embedded server: each stream
    /// starts with `ECHO\n` to select its echo service. Needs --ca or --insecure; the server
    /// must use the same `[transport]` (pass it the same --config). CPU and RSS are then this
    /// process's, the client's, only.
    #[arg(long, value_name = "ADDR", value_parser = parse_target, requires = "trust")]
    target: Option<SocketAddr>,
    /// With --target: trust this certificate or CA (PEM) when verifying the server.
    #[arg(long, value_name = "PEM", requires = "target")]
    ca: Option<PathBuf>,
    /// DEVELOPMENT ONLY, with --target: accept any server certificate, unverified (for
    /// `kwik serve --insecure-dev-self-signed`). Never use it against a server you do not run.
    #[arg(long, requires = "target")]
    insecure: bool,
    /// With --ca: the name verified against the server's certificate.
    #[arg(long, value_name = "NAME", default_value = tls::SERVER_NAME, requires = "ca")]
    server_name: String,
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

/// Where the echo server runs.
#[derive(Debug, Clone)]
enum Server {
    /// In this process, on 127.0.0.1 (the default).
    Embedded,
    /// A separate `kwik serve` at `addr`, dialed with `trust` (`--target`).
    Remote { addr: SocketAddr, trust: Trust },
}

impl Server {
    /// What the report calls it: `embedded` or the target address.
    fn label(&self) -> String {
        match self {
            Self::Embedded => "embedded".to_owned(),
            Self::Remote { addr, .. } => addr.to_string(),
        }
    }
}

/// Why raw quinn cannot be measured against a remote server.
const BASELINE_NEEDS_EMBEDDED: &str = "--baseline quic cannot be used with --target: raw quinn \
     does not speak KWIK, so it cannot talk to `kwik serve`; run the baseline without --target \
     (embedded servers on 127.0.0.1)";

/// Resolves `--target` (`127.0.0.1:4433`, `localhost:4433`) to its first address.
fn parse_target(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|err| format!("cannot resolve {text}: {err}"))?
        .next()
        .ok_or_else(|| format!("{text} resolves to no address"))
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
    if args.warmup > MAX_DURATION {
        bail!("--warmup must be at most {MAX_DURATION:?}");
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
    let server = server(&args)?;

    if let Some(name) = &args.only {
        let variant =
            Variant::from_name(name).with_context(|| format!("unknown variant {name}"))?;
        let measured = run_in_process(variant, &args, &config, &server)?;
        if args.child {
            println!("{}", serde_json::to_string(&measured)?);
        } else {
            finish(&args, &server, &[measured])?;
        }
        return Ok(());
    }

    let variants = variants(&args, &config);
    let runs = if let [variant] = variants[..] {
        vec![run_in_process(variant, &args, &config, &server)?]
    } else {
        variants
            .iter()
            .map(|&variant| run_in_child(variant))
            .collect::<anyhow::Result<_>>()?
    };
    finish(&args, &server, &runs)
}

/// The server `args` ask for; with `--target`, loads `--ca` or warns about `--insecure`.
fn server(args: &LoadtestArgs) -> anyhow::Result<Server> {
    let Some(addr) = args.target else {
        return Ok(Server::Embedded);
    };
    let quic_only = args.only.as_deref() == Some(Variant::Quic.name());
    if args.baseline == Some(Baseline::Quic) || quic_only {
        bail!(BASELINE_NEEDS_EMBEDDED);
    }
    let trust = match &args.ca {
        Some(path) => Trust::Roots {
            roots: tls::load_ca(path)?,
            server_name: Some(args.server_name.clone()),
        },
        None if args.insecure => {
            // Once per run: the children of a multi-variant run inherit the flag silently.
            if !args.child {
                eprintln!(
                    "warning: --insecure: the certificate of {addr} is NOT verified \
                     (development only; use --ca PEM for anything else)"
                );
            }
            Trust::InsecureDevSkipVerification
        }
        // clap requires one of --ca and --insecure with --target.
        None => bail!("--target needs --ca PEM or --insecure"),
    };
    Ok(Server::Remote { addr, trust })
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

/// How the report header names the warm-up.
fn warmup_note(warmup: Duration) -> String {
    if warmup.is_zero() {
        String::new()
    } else {
        format!(" after {} of warm-up", humantime::format_duration(warmup))
    }
}

/// Prints the table (and the first error of each variant that had one), writes `--json`.
fn finish(args: &LoadtestArgs, server: &Server, runs: &[Measured]) -> anyhow::Result<()> {
    let shape = match args.mode {
        Mode::Echo => format!(
            "echo, {} msg/s, {} B messages, {}{}",
            args.rate,
            args.size,
            humantime::format_duration(args.duration),
            warmup_note(args.warmup)
        ),
        Mode::Bulk => format!(
            "bulk, {} B messages, {}{}",
            args.size,
            humantime::format_duration(args.duration),
            warmup_note(args.warmup)
        ),
        Mode::Connect => "connect".to_owned(),
    };
    let against = match server {
        Server::Embedded => String::new(),
        Server::Remote { addr, .. } => format!(" against {addr}"),
    };
    println!(
        "kwik loadtest: {} sessions{against}, {shape}",
        args.connections
    );
    print!("{}", report::table(runs));
    for run in runs {
        if let Some(err) = &run.first_error {
            eprintln!("{}: first error: {err}", run.variant);
        }
    }
    if let Some(path) = &args.json {
        let document = JsonReport {
            runs: runs
                .iter()
                .map(|run| JsonRun::new(run, server.label()))
                .collect(),
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
    server: &Server,
) -> anyhow::Result<Measured> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let (runtime, timer) = driver::TimerOrigin::bracket(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.runtime.effective_worker_threads(cores))
            .enable_all()
            .build()
    });
    let runtime = runtime.context("cannot start the tokio runtime")?;
    let workload = Workload {
        mode: args.mode,
        connections: args.connections as usize,
        rate: args.rate,
        duration: args.duration,
        warmup: match args.mode {
            Mode::Connect => Duration::ZERO,
            Mode::Echo | Mode::Bulk => args.warmup,
        },
        size: args.size as usize,
        timer,
    };
    let progress = progress_bar(workload.warmup + workload.duration);
    let measured = runtime.block_on(async {
        let peak = probe::PeakTracker::start();
        match (variant, server) {
            (Variant::Quic, Server::Embedded) => {
                let tls = tls::DevTls::generate()?;
                let target = quic::QuicTarget::start(config, &tls)?;
                driver::run(variant.name(), target, workload, peak, &progress).await
            }
            (Variant::Kwik(dispatch), Server::Embedded) => {
                let tls = tls::DevTls::generate()?;
                let target = facade::KwikTarget::start(config, dispatch, &tls).await?;
                driver::run(variant.name(), target, workload, peak, &progress).await
            }
            (Variant::Kwik(dispatch), Server::Remote { addr, trust }) => {
                let target =
                    facade::KwikTarget::remote(config, dispatch, *addr, trust.clone()).await?;
                driver::run(variant.name(), target, workload, peak, &progress).await
            }
            (Variant::Quic, Server::Remote { .. }) => bail!(BASELINE_NEEDS_EMBEDDED),
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
