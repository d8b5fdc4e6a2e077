//! Heap cost of an idle kwik session pair (client + server side, same process) against an
//! idle raw quinn connection pair built with the same socket, TLS and transport settings.
//!
//! Run: `cargo run --release -p kwik-benches --bin transport_idle_memory`

use std::time::Duration;

use anyhow::Context as _;
use kwik_benches::CountingAlloc;
use kwik_transport::{ClientConfig, ErrorCode, ServerConfig, dial, listen, quic};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// Pairs per measurement: the per-pair figure is the average.
const PAIRS: usize = 50;
/// Lets handshakes, PING/PONG and quinn's timers settle before reading live bytes.
const SETTLE: Duration = Duration::from_millis(500);

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server_config = ServerConfig::builder()
            .insecure_dev_self_signed(true)
            .build()?;
        let cert = server_config
            .self_signed_certificate()
            .context("self-signed")?
            .clone();
        let client_config = ClientConfig::builder()
            .add_root_certificate(cert)
            .server_name("localhost")
            .build()?;

        // kwik: one listener, PAIRS dialed sessions sharing the config's client endpoint. A
        // first session binds that endpoint and the buffer pools outside the measurement.
        let listener = listen("127.0.0.1:0".parse()?, &server_config)?;
        let (warm_client, warm_server) = tokio::join!(
            dial(listener.local_addr(), &client_config),
            listener.accept()
        );
        let (warm_client, warm_server) = (warm_client?, warm_server.context("listener closed")?);
        tokio::time::sleep(SETTLE).await;
        let before = ALLOC.live_bytes();
        let mut sessions = Vec::new();
        for _ in 0..PAIRS {
            let (client, server) = tokio::join!(
                dial(listener.local_addr(), &client_config),
                listener.accept()
            );
            sessions.push((client?, server.context("listener closed")?));
        }
        tokio::time::sleep(SETTLE).await;
        let kwik = (ALLOC.live_bytes() as f64 - before as f64) / PAIRS as f64;
        for (client, server) in &sessions {
            client.close(ErrorCode::NO_ERROR, "done");
            client.closed().await;
            server.closed().await;
        }
        drop(sessions);
        warm_client.close(ErrorCode::NO_ERROR, "done");
        warm_client.closed().await;
        warm_server.closed().await;
        listener.close(ErrorCode::NO_ERROR, "done");
        listener.closed().await;

        // Raw quinn: the same endpoints and configs, no KWIK layer.
        let server = quic::endpoint(
            "127.0.0.1:0".parse()?,
            server_config.socket_buffer(),
            Some(server_config.quinn_server_config()),
        )?;
        let addr = server.local_addr()?;
        // One client endpoint for all connections, as kwik shares one per ClientConfig.
        let client = quic::endpoint(
            quic::unspecified_for(addr),
            client_config.socket_buffer(),
            None,
        )?;
        let connect = || async {
            let connecting =
                client.connect_with(client_config.quinn_client_config(), addr, "localhost")?;
            let accept = async { anyhow::Ok(server.accept().await.context("closed")?.await?) };
            let (c, s) = tokio::join!(connecting, accept);
            anyhow::Ok((c?, s?))
        };
        // A first connection makes both endpoint drivers allocate their receive buffers
        // outside the measurement, as the warm-up session does for kwik.
        let mut conns = vec![connect().await?];
        tokio::time::sleep(SETTLE).await;
        let before = ALLOC.live_bytes();
        for _ in 0..PAIRS {
            conns.push(connect().await?);
        }
        tokio::time::sleep(SETTLE).await;
        let raw = (ALLOC.live_bytes() as f64 - before as f64) / PAIRS as f64;
        for (c, _) in &conns {
            c.close(0u32.into(), b"done");
        }
        client.wait_idle().await;
        drop(conns);
        server.close(0u32.into(), b"done");
        server.wait_idle().await;

        println!("idle heap per pair, average of {PAIRS} (client + server side, one process):");
        println!("  kwik session pair:      {:>8.1} KiB", kwik / 1024.0);
        println!("  raw quinn conn pair:    {:>8.1} KiB", raw / 1024.0);
        println!(
            "  kwik - raw:             {:>8.1} KiB",
            (kwik - raw) / 1024.0
        );
        anyhow::Ok(())
    })
}
