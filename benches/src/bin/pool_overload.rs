//! Overload: one producer dispatches N tiny jobs as fast as it can through each strategy; prints
//! jobs/s, CPU time per job and peak RSS per strategy.
//!
//! Each strategy runs in a fresh child process of this binary, so one strategy's peak RSS never
//! shows up in another's. With `--runs R`, every strategy runs R times, the strategies
//! interleaved, and the medians are printed (with every run's jobs/s): on two runtime threads a
//! run now and then falls into a slow scheduling mode, and a single run can land in it.
//! Usage: `pool_overload [--jobs N] [--workers W] [--queue-capacity C] [--runs R]`.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use kwik_benches::pool_dispatch::{Dispatcher, Strategy};
use kwik_benches::{cpu_seconds, current_rss_bytes, peak_rss_bytes};

const DEFAULT_JOBS: u64 = 1_000_000;
/// kwik-pool's default per-worker queue depth (the seed's "workers × 10").
const DEFAULT_QUEUE_CAPACITY: usize = 10;

struct Args {
    jobs: u64,
    workers: usize,
    queue_capacity: usize,
    runs: usize,
    child: Option<Strategy>,
}

fn parse_args() -> anyhow::Result<Args> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut args = Args {
        jobs: DEFAULT_JOBS,
        workers: cores.max(4),
        queue_capacity: DEFAULT_QUEUE_CAPACITY,
        runs: 1,
        child: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--jobs" => args.jobs = value.parse().context("--jobs")?,
            "--workers" => args.workers = value.parse().context("--workers")?,
            "--runs" => args.runs = value.parse().context("--runs")?,
            "--queue-capacity" => {
                args.queue_capacity = value.parse().context("--queue-capacity")?;
            }
            "--child" => {
                args.child = Some(
                    Strategy::from_name(&value)
                        .with_context(|| format!("unknown strategy {value}"))?,
                );
            }
            _ => bail!(
                "unknown flag {flag}; usage: pool_overload [--jobs N] [--workers W] [--queue-capacity C] [--runs R]"
            ),
        }
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    match args.child {
        Some(strategy) => run_child(strategy, &args),
        None => run_parent(&args),
    }
}

/// Runs one strategy and prints `name jobs seconds cpu_seconds rss_before peak_rss` on one line.
fn run_child(strategy: Strategy, args: &Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dispatcher = Dispatcher::new(strategy, &runtime, args.workers, args.queue_capacity);
    let before = current_rss_bytes().context("no /proc")?;
    let (start, cpu_start) = (Instant::now(), cpu_seconds().context("getrusage failed")?);
    dispatcher.run(&runtime, args.jobs);
    let (secs, cpu) = (
        start.elapsed().as_secs_f64(),
        cpu_seconds().context("getrusage failed")? - cpu_start,
    );
    let peak = peak_rss_bytes().context("no /proc")?;
    println!(
        "{} {} {secs} {cpu} {before} {peak}",
        strategy.name(),
        args.jobs
    );
    Ok(())
}

/// What one child run reported.
struct Run {
    jobs_per_sec: f64,
    cpu_ns_per_job: f64,
    peak: f64,
    growth: f64,
}

fn run_once(exe: &std::path::Path, strategy: Strategy, args: &Args) -> anyhow::Result<Run> {
    let output = Command::new(exe)
        .args([
            "--jobs",
            &args.jobs.to_string(),
            "--workers",
            &args.workers.to_string(),
        ])
        .args(["--queue-capacity", &args.queue_capacity.to_string()])
        .args(["--child", strategy.name()])
        .output()?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            strategy.name(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = String::from_utf8(output.stdout)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [_name, jobs, secs, cpu, before, peak] = fields[..] else {
        bail!("unexpected child output {line:?}")
    };
    let (jobs, secs, cpu): (f64, f64, f64) = (jobs.parse()?, secs.parse()?, cpu.parse()?);
    let (before, peak): (f64, f64) = (before.parse()?, peak.parse()?);
    Ok(Run {
        jobs_per_sec: jobs / secs,
        cpu_ns_per_job: cpu / jobs * 1e9,
        peak,
        growth: peak - before,
    })
}

/// The median of `values` (the upper one of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn run_parent(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    println!(
        "pool_overload: {} jobs, {} workers, queue capacity {} per worker, one producer, a fresh process per run, {} run(s) per strategy{}",
        args.jobs,
        args.workers,
        args.queue_capacity,
        args.runs,
        if args.runs > 1 { " (medians)" } else { "" }
    );
    let mut runs: Vec<Vec<Run>> = Strategy::ALL.iter().map(|_| Vec::new()).collect();
    for _ in 0..args.runs {
        for (strategy, runs) in Strategy::ALL.into_iter().zip(&mut runs) {
            runs.push(run_once(&exe, strategy, args)?);
        }
    }
    println!(
        "{:<18} {:>10} {:>16} {:>16} {:>14}",
        "strategy", "M jobs/s", "CPU ns per job", "peak RSS (MiB)", "growth (MiB)"
    );
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    for (strategy, runs) in Strategy::ALL.into_iter().zip(&runs) {
        let pick = |f: fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        print!(
            "{:<18} {:>10.2} {:>16.0} {:>16.1} {:>14.1}",
            strategy.name(),
            pick(|r| r.jobs_per_sec) / 1e6,
            pick(|r| r.cpu_ns_per_job),
            mib(pick(|r| r.peak)),
            mib(pick(|r| r.growth)),
        );
        if runs.len() > 1 {
            let mut all: Vec<f64> = runs.iter().map(|r| r.jobs_per_sec / 1e6).collect();
            all.sort_by(f64::total_cmp);
            let all: Vec<String> = all.iter().map(|v| format!("{v:.2}")).collect();
            print!("   runs: {}", all.join(" "));
        }
        println!();
    }
    Ok(())
}
