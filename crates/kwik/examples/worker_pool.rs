//! Many sessions, one pool: 50 sessions dialed concurrently with `kwik::dial_addr` share the
//! process-wide runtime (one worker pool, one buffer pool), which shuts down by itself after
//! the last session and listener are gone.
//!
//! ```sh
//! cargo run -p kwik --example worker_pool                    # client + server in-process
//! cargo run -p kwik --example worker_pool -- --sessions 500
//! cargo run -p kwik --example worker_pool -- --server --listen 127.0.0.1:4433
//! cargo run -p kwik --example worker_pool -- --connect 127.0.0.1:4433 --insecure
//! ```
//!
//! The process-wide runtime reads `$KWIK_CONFIG`, else `./performance.toml`, else the defaults;
//! this example turns its Prometheus endpoint off (`KWIK_METRICS_ENABLED=false`) unless you
//! set that variable. Each session does one echo (`ECHO\n`, as `kwik serve`).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use common::{LocalTls, Mode, NetArgs, Server};
use kwik::transport::ErrorCode;
use kwik::{Session, Trust};
use tokio::task::JoinSet;

/// The environment override that keeps the process-wide runtime from binding the metrics port.
const METRICS_ENV: &str = "KWIK_METRICS_ENABLED";

/// How long [`until_closed`] waits for the background shutdown of the process-wide runtime.
const CLOSE_BOUND: Duration = Duration::from_secs(10);

/// Sessions opened concurrently on the process-wide runtime, and its end.
#[derive(Debug, Clone, Parser)]
struct Options {
    /// Sessions to open concurrently.
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    #[command(flatten)]
    net: NetArgs,
}

/// What a run observed.
#[derive(Debug)]
struct Summary {
    sessions: usize,
    /// All sessions dialed (handshakes done) after this long.
    setup: Duration,
    /// Workers of the process-wide pool.
    workers: usize,
    /// Jobs the pool ran while every session echoed once (their packets among them).
    pool_jobs: u64,
    /// tokio tasks alive: before the first session, with all open, after the pool closed.
    tasks: [usize; 3],
    /// `kwik::global_pool()` was `None` after the last session and listener.
    pool_released: bool,
    /// The pool the sessions shared was shut down.
    pool_closed: bool,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    if std::env::var_os(METRICS_ENV).is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var(METRICS_ENV, "false") };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match options.net.mode() {
            Mode::Server(addr) => {
                let listener = kwik::listen_addr(addr, &options.net.identity()?).await?;
                let server = start_server(listener);
                println!("echo server listening on {}", server.local_addr());
                tokio::signal::ctrl_c().await?;
                server.stop().await;
            }
            Mode::Client(addr) => {
                let summary = run(addr, None, &options.net.trust()?, options.sessions).await?;
                print_summary(&summary);
            }
            Mode::InProcess => {
                let tls = LocalTls::generate()?;
                let summary = run_in_process(&tls, options.sessions).await?;
                print_summary(&summary);
            }
        }
        Ok(())
    })
}

/// Server and sessions in one process: the listener is the first user of the process-wide
/// runtime, so it, the server's sessions and the client sessions all share one pool.
async fn run_in_process(tls: &LocalTls, sessions: usize) -> anyhow::Result<Summary> {
    let listener = kwik::listen_addr("127.0.0.1:0".parse()?, &tls.identity).await?;
    let server = start_server(listener);
    println!("echo server listening on {}", server.local_addr());
    run(server.local_addr(), Some(server), &tls.trust, sessions).await
}

fn start_server(listener: kwik::Listener) -> Server {
    Server::start(listener, |session| {
        common::serve_streams(session, |_, stream| common::echo_service(stream))
    })
}

/// Dials `sessions` sessions to `addr` concurrently on the process-wide runtime, echoes once on
/// each, closes them (and `server`, if in-process), and watches the runtime go.
async fn run(
    addr: SocketAddr,
    server: Option<Server>,
    trust: &Trust,
    sessions: usize,
) -> anyhow::Result<Summary> {
    let metrics = tokio::runtime::Handle::current().metrics();
    // The in-process server already holds the runtime; count tasks from before it otherwise.
    let tasks_before = metrics.num_alive_tasks();

    let started = Instant::now();
    let mut dials = JoinSet::new();
    for _ in 0..sessions {
        let trust = trust.clone();
        dials.spawn(async move { kwik::dial_addr(addr, &trust).await });
    }
    let mut open: Vec<Session> = Vec::with_capacity(sessions);
    while let Some(dialed) = dials.join_next().await {
        open.push(dialed??);
    }
    let setup = started.elapsed();
    println!(
        "{} sessions to {addr} dialed concurrently in {}",
        open.len(),
        common::ms(setup)
    );

    let pool = kwik::global_pool().context("the sessions hold the process-wide runtime")?;
    let completed = pool.stats().completed;
    let mut echoes = JoinSet::new();
    for (i, session) in open.iter().enumerate() {
        let session = session.clone();
        echoes.spawn(async move {
            common::echo_request(&session, format!("session {i}").as_bytes()).await
        });
    }
    while let Some(echoed) = echoes.join_next().await {
        echoed??;
    }
    let pool_jobs = pool.stats().completed - completed;
    let tasks_open = metrics.num_alive_tasks();
    println!(
        "one pool for all: {} workers ran {pool_jobs} jobs while each session echoed once; \
         {tasks_open} tokio tasks alive",
        pool.workers(),
    );

    for session in &open {
        session.close(ErrorCode::NO_ERROR, "worker_pool example done");
    }
    for session in open.drain(..) {
        session.closed().await;
    }
    if let Some(server) = server {
        server.stop().await;
    }
    let pool_released = kwik::global_pool().is_none();
    let pool_closed = until_closed(&pool).await;
    let tasks_after = metrics.num_alive_tasks();
    println!(
        "after the last session: global_pool() is {}, the shared pool is {}; \
         {tasks_after} tokio tasks alive (before the sessions: {tasks_before})",
        if pool_released { "None" } else { "Some" },
        if pool_closed { "closed" } else { "still open" },
    );
    Ok(Summary {
        sessions,
        setup,
        workers: pool.workers(),
        pool_jobs,
        tasks: [tasks_before, tasks_open, tasks_after],
        pool_released,
        pool_closed,
    })
}

/// Waits until `pool` is closed: the last lease's drop shuts it down on a task it spawns, so
/// this polls, at most [`CLOSE_BOUND`] (an upper bound that only a bug reaches, not a timing).
async fn until_closed(pool: &kwik::pool::WorkerPool) -> bool {
    tokio::time::timeout(CLOSE_BOUND, async {
        while !pool.is_closed() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .is_ok()
}

fn print_summary(summary: &Summary) {
    println!(
        "{} sessions, setup {}, {} pool workers, {} pool jobs, tasks before/open/after {:?}, \
         pool released: {}, pool closed: {}",
        summary.sessions,
        common::ms(summary.setup),
        summary.workers,
        summary.pool_jobs,
        summary.tasks,
        summary.pool_released,
        summary.pool_closed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test of this binary: the process-wide runtime is process state.
    #[test]
    fn sessions_share_one_pool_released_after_the_last() {
        // SAFETY: the only test of this binary, before its tokio runtime starts.
        unsafe { std::env::set_var(METRICS_ENV, "false") };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert!(kwik::global_pool().is_none());
            let tls = LocalTls::generate().unwrap();
            let summary = run_in_process(&tls, 20).await.unwrap();
            assert_eq!(summary.sessions, 20);
            assert!(summary.workers > 0);
            // Every session's packets ran on the one pool: at least one job per session.
            assert!(summary.pool_jobs >= 20, "{summary:?}");
            // All sessions and the server alive: many more tasks than after.
            assert!(summary.tasks[1] > summary.tasks[2], "{summary:?}");
            assert!(summary.pool_released);
            assert!(summary.pool_closed);
            assert!(kwik::global_pool().is_none());
        });
    }
}
