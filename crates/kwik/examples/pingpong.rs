//! Ping-pong on one KWIK stream: the client sends a message, the server echoes it, the client
//! times the round trip; N times, then the RTT percentiles.
//!
//! ```sh
//! cargo run -p kwik --example pingpong                       # client + server in-process
//! cargo run -p kwik --example pingpong -- --messages 10000 --size 1024
//! cargo run -p kwik --example pingpong -- --server --listen 127.0.0.1:4433
//! cargo run -p kwik --example pingpong -- --connect 127.0.0.1:4433 --insecure
//! ```
//!
//! The server speaks `kwik serve`'s echo service (`ECHO\n`, then every byte back), so
//! `--connect` also works against a running `kwik serve`.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use clap::Parser;
use common::{Mode, NetArgs, Server};
use hdrhistogram::Histogram;
use kwik::transport::ErrorCode;
use kwik::{Runtime, Trust};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Ping-pong over one KWIK stream, with RTT percentiles.
#[derive(Debug, Clone, Parser)]
struct Options {
    /// Messages to send.
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Round trips printed one by one before the summary.
    #[arg(long, default_value_t = 5)]
    show: usize,
    #[command(flatten)]
    net: NetArgs,
}

/// What a client run measured.
#[derive(Debug)]
struct Summary {
    /// Round trips completed, each echo checked byte for byte.
    round_trips: u64,
    /// Bytes sent (and received back).
    bytes: u64,
    /// RTT per message, in nanoseconds.
    rtt: Histogram<u64>,
    /// The whole exchange.
    elapsed: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    match options.net.mode() {
        Mode::Server(addr) => {
            let identity = options.net.identity()?;
            common::serve_until_ctrl_c("echo server", addr, &identity, start_server).await?;
        }
        Mode::Client(addr) => {
            let trust = options.net.trust()?;
            let summary = common::connect(addr, &trust, async |runtime, addr, trust| {
                client(runtime, addr, trust, &options).await
            })
            .await?;
            print_summary(&summary);
        }
        Mode::InProcess => {
            print_summary(&run(&options).await?);
        }
    }
    Ok(())
}

/// Client and echo server in one process, on an ephemeral port; everything stopped on return.
async fn run(options: &Options) -> anyhow::Result<Summary> {
    common::in_process("echo server", start_server, async |runtime, addr, trust| {
        client(runtime, addr, trust, options).await
    })
    .await
}

/// The echo server: every stream that starts with `ECHO\n` gets its bytes back.
fn start_server(
    runtime: &Runtime,
    addr: std::net::SocketAddr,
    identity: &kwik::Identity,
) -> anyhow::Result<Server> {
    let listener = runtime.listen(addr, identity)?;
    Ok(Server::start(listener, |session| {
        common::serve_streams(session, |_, stream| common::echo_service(stream))
    }))
}

/// Dials, opens one echo stream, and times `options.messages` round trips on it.
async fn client(
    runtime: &Runtime,
    addr: std::net::SocketAddr,
    trust: &Trust,
    options: &Options,
) -> anyhow::Result<Summary> {
    let session = runtime.dial(addr, trust).await?;
    println!(
        "session to {addr}: {} messages of {} bytes",
        options.messages, options.size
    );
    let mut stream = session.open_stream().await?;
    stream.write_all(b"ECHO\n").await?;

    // 1 ns to 60 s at 3 significant digits.
    let mut rtt = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut message = vec![0u8; options.size];
    let mut echoed = vec![0u8; options.size];
    let start = Instant::now();
    for i in 0..options.messages {
        // Every message differs, so an echo of the wrong message is caught.
        message.fill(i as u8);
        let sent = Instant::now();
        stream.write_all(&message).await?;
        stream
            .read_exact(&mut echoed)
            .await
            .with_context(|| format!("echo of message {i}"))?;
        let took = sent.elapsed();
        ensure!(echoed == message, "message {i} came back altered");
        rtt.record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1))?;
        if i < options.show {
            println!("  #{i:<4} rtt {}", common::ms(took));
        }
    }
    let elapsed = start.elapsed();

    // The server finishes its side after ours: the stream ends cleanly.
    stream.shutdown().await?;
    let rest = stream.read(&mut echoed).await?;
    ensure!(rest == 0, "unexpected bytes after the last echo");
    session.close(ErrorCode::NO_ERROR, "pingpong done");
    session.closed().await;
    Ok(Summary {
        round_trips: rtt.len(),
        bytes: (options.messages * options.size) as u64,
        rtt,
        elapsed,
    })
}

fn print_summary(summary: &Summary) {
    let at = |q: f64| common::ms(Duration::from_nanos(summary.rtt.value_at_quantile(q)));
    println!(
        "{} round trips, {} each way, in {}: {:.0} msg/s",
        summary.round_trips,
        common::bytes(summary.bytes),
        common::ms(summary.elapsed),
        summary.round_trips as f64 / summary.elapsed.as_secs_f64()
    );
    println!(
        "rtt p50 {}  p90 {}  p99 {}  max {}",
        at(0.50),
        at(0.90),
        at(0.99),
        common::ms(Duration::from_nanos(summary.rtt.max()))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_pings_round_trip() {
        let options = Options::parse_from(["pingpong", "--messages", "50", "--size", "100"]);
        let summary = run(&options).await.unwrap();
        assert_eq!(summary.round_trips, 50);
        assert_eq!(summary.bytes, 5000);
        assert!(summary.rtt.min() >= 1);
        assert!(summary.rtt.max() <= summary.elapsed.as_nanos() as u64);
    }
}
