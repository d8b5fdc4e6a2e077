//! Overload: one producer dispatches N tiny jobs as fast as it can through each strategy; prints
//! jobs/s, CPU time per job and peak RSS per strategy.
//!
//! Each strategy runs in a fresh child process of this binary, so one strategy's peak RSS never
//! shows up in another's. Usage: `pool_overload [--jobs N] [--workers W] [--queue-capacity C]`.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use kwik_benches::pool_dispatch::{Dispatcher, Strategy};
use kwik_benches::{current_rss_bytes, peak_rss_bytes};

const DEFAULT_JOBS: u64 = 1_000_000;
/// kwik-pool's default per-worker queue depth (the seed's "workers × 10").
const DEFAULT_QUEUE_CAPACITY: usize = 10;

struct Args {
    jobs: u64,
    workers: usize,
    queue_capacity: usize,
    child: Option<Strategy>,
}

fn parse_args() -> anyhow::Result<Args> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut args = Args {
        jobs: DEFAULT_JOBS,
        workers: cores.max(4),
        queue_capacity: DEFAULT_QUEUE_CAPACITY,
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
                "unknown flag {flag}; usage: pool_overload [--jobs N] [--workers W] [--queue-capacity C]"
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

/// CPU time (user + system) this process has used so far, in seconds. On a loaded machine it is
/// steadier than wall time: waiting for a core is not counted.
fn cpu_seconds() -> anyhow::Result<f64> {
    // SAFETY: getrusage only writes the struct we pass, which lives on our stack.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            bail!("getrusage failed: {}", std::io::Error::last_os_error());
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Runs one strategy and prints `name jobs seconds cpu_seconds rss_before peak_rss` on one line.
fn run_child(strategy: Strategy, args: &Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dispatcher = Dispatcher::new(strategy, &runtime, args.workers, args.queue_capacity);
    let before = current_rss_bytes().context("no /proc")?;
    let (start, cpu_start) = (Instant::now(), cpu_seconds()?);
    dispatcher.run(&runtime, args.jobs);
    let (secs, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds()? - cpu_start);
    let peak = peak_rss_bytes().context("no /proc")?;
    println!(
        "{} {} {secs} {cpu} {before} {peak}",
        strategy.name(),
        args.jobs
    );
    Ok(())
}

fn run_parent(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    println!(
        "pool_overload: {} jobs, {} workers, queue capacity {} per worker, one producer, a fresh process per strategy",
        args.jobs, args.workers, args.queue_capacity
    );
    println!(
        "{:<18} {:>10} {:>16} {:>16} {:>14}",
        "strategy", "M jobs/s", "CPU ns per job", "peak RSS (MiB)", "growth (MiB)"
    );
    for strategy in Strategy::ALL {
        let output = Command::new(&exe)
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
        let [name, jobs, secs, cpu, before, peak] = fields[..] else {
            bail!("unexpected child output {line:?}")
        };
        let (jobs, secs, cpu): (f64, f64, f64) = (jobs.parse()?, secs.parse()?, cpu.parse()?);
        let (before, peak): (f64, f64) = (before.parse()?, peak.parse()?);
        let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
        println!(
            "{name:<18} {:>10.2} {:>16.0} {:>16.1} {:>14.1}",
            jobs / secs / 1e6,
            cpu / jobs * 1e9,
            mib(peak),
            mib(peak - before)
        );
    }
    Ok(())
}
