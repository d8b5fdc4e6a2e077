//! A clean end: one request/response, then the session closed by the client and the listener
//! closed by the server, each phase timed, and the close reason each side sees.
//!
//! ```sh
//! cargo run -p kwik --example closure                        # client + server in-process
//! cargo run -p kwik --example closure -- --server --listen 127.0.0.1:4433
//! cargo run -p kwik --example closure -- --connect 127.0.0.1:4433 --insecure
//! ```
//!
//! The request is `kwik serve`'s echo service (`ECHO\n`, a message, FIN), so `--connect` also
//! works against a running `kwik serve`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use clap::Parser;
use common::{LocalTls, Mode, NetArgs, Server};
use kwik::transport::{CloseReason, ErrorCode};
use kwik::{Identity, Runtime, Trust};
use tokio::sync::mpsc;

/// The reason the client gives when it closes.
const CLIENT_REASON: &str = "closure example done";

/// Request/response, then a clean close of session and listener, with timings.
#[derive(Debug, Clone, Parser)]
struct Options {
    /// The request's message.
    #[arg(long, default_value = "hello, KWIK")]
    message: String,
    #[command(flatten)]
    net: NetArgs,
}

/// The client's phases.
#[derive(Debug)]
struct ClientPhases {
    /// Handshake until the session is usable.
    dial: Duration,
    /// Open a stream, send the request, read the response to its end.
    request: Duration,
    /// `close()` until `closed()` resolved (CLOSE sent, path tasks ended).
    close: Duration,
    /// The response.
    reply: Vec<u8>,
    /// What the client's `closed()` resolved with.
    reason: CloseReason,
}

/// An in-process run: the client's phases and the server's.
#[derive(Debug)]
struct Summary {
    client: ClientPhases,
    /// What the server's side of the session resolved `closed()` with.
    server_reason: CloseReason,
    /// `Listener::close` until the listener, its sessions and their tasks are gone.
    listener_close: Duration,
    /// The runtime's shutdown: worker pool drained.
    runtime_shutdown: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    match options.net.mode() {
        Mode::Server(addr) => serve_until_ctrl_c(addr, &options.net.identity()?).await?,
        Mode::Client(addr) => {
            let trust = options.net.trust()?;
            let phases = common::connect(addr, &trust, async |runtime, addr, trust| {
                client(runtime, addr, trust, &options.message).await
            })
            .await?;
            print_client(&phases);
        }
        Mode::InProcess => {
            let summary = run(&options).await?;
            print_client(&summary.client);
            println!("server session closed():   {}", summary.server_reason);
            println!(
                "listener close:            {}",
                common::ms(summary.listener_close)
            );
            println!(
                "runtime shutdown:          {}",
                common::ms(summary.runtime_shutdown)
            );
        }
    }
    Ok(())
}

/// Client and server in one process, on an ephemeral port; everything stopped on return.
async fn run(options: &Options) -> anyhow::Result<Summary> {
    let runtime = common::runtime().await?;
    let tls = LocalTls::generate()?;
    let (reasons, mut server_reasons) = mpsc::unbounded_channel();
    let server = start_server(&runtime, "127.0.0.1:0".parse()?, &tls.identity, reasons)?;
    println!("server listening on {}", server.local_addr());

    let phases = client(&runtime, server.local_addr(), &tls.trust, &options.message).await?;
    let server_reason = server_reasons
        .recv()
        .await
        .context("the server reports its session's end")?;

    let start = Instant::now();
    server.stop().await;
    let listener_close = start.elapsed();

    let start = Instant::now();
    let report = runtime.shutdown(common::SHUTDOWN_DEADLINE).await;
    let runtime_shutdown = start.elapsed();
    ensure!(
        report.is_complete(),
        "pool jobs left at shutdown: {report:?}"
    );
    Ok(Summary {
        client: phases,
        server_reason,
        listener_close,
        runtime_shutdown,
    })
}

/// The echo server; when a session ends, its close reason goes to `reasons`.
fn start_server(
    runtime: &Runtime,
    addr: SocketAddr,
    identity: &Identity,
    reasons: mpsc::UnboundedSender<CloseReason>,
) -> anyhow::Result<Server> {
    let listener = runtime.listen(addr, identity)?;
    Ok(Server::start(listener, move |session| {
        let reasons = reasons.clone();
        async move {
            common::serve_streams(session.clone(), |_, stream| common::echo_service(stream))
                .await?;
            // Nobody may be listening any more (a server in its own process): fine.
            let _ = reasons.send(session.closed().await);
            Ok(())
        }
    }))
}

/// `--server`: serves until Ctrl-C, printing how each session ended, then closes the
/// listener and times it.
async fn serve_until_ctrl_c(addr: SocketAddr, identity: &Identity) -> anyhow::Result<()> {
    let runtime = common::runtime().await?;
    let (reasons, mut server_reasons) = mpsc::unbounded_channel();
    let server = start_server(&runtime, addr, identity, reasons)?;
    println!("server listening on {} (Ctrl-C stops)", server.local_addr());
    let printer = tokio::spawn(async move {
        while let Some(reason) = server_reasons.recv().await {
            println!("session closed(): {reason}");
        }
    });
    tokio::signal::ctrl_c().await?;
    let start = Instant::now();
    server.stop().await;
    println!("listener close: {}", common::ms(start.elapsed()));
    runtime.shutdown(common::SHUTDOWN_DEADLINE).await;
    printer.await?;
    Ok(())
}

/// Dial, one echo request, close; each phase timed.
async fn client(
    runtime: &Runtime,
    addr: SocketAddr,
    trust: &Trust,
    message: &str,
) -> anyhow::Result<ClientPhases> {
    let start = Instant::now();
    let session = runtime.dial(addr, trust).await?;
    let dial = start.elapsed();

    let start = Instant::now();
    let reply = common::echo_request(&session, message.as_bytes()).await?;
    let request = start.elapsed();

    let start = Instant::now();
    session.close(ErrorCode::NO_ERROR, CLIENT_REASON);
    let reason = session.closed().await;
    let close = start.elapsed();
    Ok(ClientPhases {
        dial,
        request,
        close,
        reply,
        reason,
    })
}

fn print_client(phases: &ClientPhases) {
    println!("dial:                      {}", common::ms(phases.dial));
    println!(
        "request/response:          {} ({:?})",
        common::ms(phases.request),
        String::from_utf8_lossy(&phases.reply)
    );
    println!("session close:             {}", common::ms(phases.close));
    println!("client session closed():   {}", phases.reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closes_cleanly_on_both_sides() {
        let options = Options::parse_from(["closure", "--message", "ping"]);
        let summary = run(&options).await.unwrap();
        assert_eq!(summary.client.reply, b"ping");
        assert_eq!(
            summary.client.reason,
            CloseReason::Local {
                code: ErrorCode::NO_ERROR,
                reason: CLIENT_REASON.to_owned()
            }
        );
        // The server learns the client's code and reason.
        assert_eq!(
            summary.server_reason,
            CloseReason::Peer {
                code: ErrorCode::NO_ERROR,
                reason: CLIENT_REASON.to_owned()
            }
        );
    }
}
