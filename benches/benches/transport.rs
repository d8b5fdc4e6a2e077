//! kwik-transport against raw quinn on loopback, same process, same TLS and socket settings.
//!
//! - `transport_bulk`: 64 MiB on one stream (`kwik_inline`, `kwik_spawn`, `quinn_raw`).
//! - `transport_echo`: a 64-byte request/response round trip on an open stream
//!   (`kwik_inline`, `quinn_raw`).
//!
//! Run: `cargo bench -p kwik-benches --bench transport -- --warm-up-time 1 --measurement-time 3`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kwik_transport::{
    ClientConfig, ErrorCode, Executor, InlineExecutor, Listener, ServerConfig, Session,
    SpawnExecutor, Stream, dial, listen, quic,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const BULK: usize = 64 << 20;
const CHUNK: usize = 64 * 1024;
const ECHO: usize = 64;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn configs(executor: Arc<dyn Executor>) -> (ServerConfig, ClientConfig) {
    let server = ServerConfig::builder()
        .insecure_dev_self_signed(true)
        .executor(executor.clone())
        .build()
        .expect("server config");
    let client = ClientConfig::builder()
        .add_root_certificate(
            server
                .self_signed_certificate()
                .expect("self-signed")
                .clone(),
        )
        .server_name("localhost")
        .executor(executor)
        .build()
        .expect("client config");
    (server, client)
}

struct KwikPair {
    _listener: Listener,
    client: Session,
    /// Bytes received per stream by the server's drain loop.
    drained: mpsc::Receiver<usize>,
}

/// A session whose server drains every stream it accepts and reports the byte count.
async fn kwik_drain_pair(executor: Arc<dyn Executor>) -> KwikPair {
    let (server_config, client_config) = configs(executor);
    let listener = listen("127.0.0.1:0".parse().unwrap(), &server_config).unwrap();
    let (client, server) = tokio::join!(
        dial(listener.local_addr(), &client_config),
        listener.accept()
    );
    let server = server.unwrap();
    let (tx, drained) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok(mut stream) = server.accept_stream().await {
            let mut n = 0;
            while let Ok(Some(chunk)) = stream.read_chunk(usize::MAX).await {
                n += chunk.len();
            }
            if tx.send(n).await.is_err() {
                break;
            }
        }
    });
    KwikPair {
        _listener: listener,
        client: client.unwrap(),
        drained,
    }
}

async fn kwik_bulk(pair: &mut KwikPair, chunk: &[u8]) {
    let mut stream = pair.client.open_stream().await.unwrap();
    for _ in 0..BULK / CHUNK {
        stream.write_all(chunk).await.unwrap();
    }
    stream.finish().unwrap();
    assert_eq!(pair.drained.recv().await, Some(BULK));
}

struct RawPair {
    _server: quinn::Endpoint,
    _client: quinn::Endpoint,
    conn: quinn::Connection,
    drained: mpsc::Receiver<usize>,
}

/// Raw quinn with kwik's socket helper, TLS and transport parameters. Streams are drained.
async fn raw_pair(echo: bool) -> RawPair {
    let (server_config, client_config) = configs(Arc::new(InlineExecutor));
    let server = quic::endpoint(
        "127.0.0.1:0".parse().unwrap(),
        server_config.socket_buffer(),
        Some(server_config.quinn_server_config()),
    )
    .unwrap();
    let addr: SocketAddr = server.local_addr().unwrap();
    let client = quic::endpoint(
        quic::unspecified_for(addr),
        client_config.socket_buffer(),
        None,
    )
    .unwrap();
    let (tx, drained) = mpsc::channel(4);
    let accept = server.clone();
    tokio::spawn(async move {
        let conn = accept.accept().await.unwrap().await.unwrap();
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            if echo {
                let mut buf = [0u8; ECHO];
                while recv.read_exact(&mut buf).await.is_ok() {
                    send.write_all(&buf).await.unwrap();
                }
                continue;
            }
            let mut n = 0;
            while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
                n += chunk.bytes.len();
            }
            if tx.send(n).await.is_err() {
                break;
            }
        }
    });
    let conn = client
        .connect_with(client_config.quinn_client_config(), addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    RawPair {
        _server: server,
        _client: client,
        conn,
        drained,
    }
}

fn bulk(c: &mut Criterion) {
    let rt = runtime();
    let chunk = vec![0x5au8; CHUNK];
    let mut group = c.benchmark_group("transport_bulk");
    group
        .sample_size(10)
        .throughput(Throughput::Bytes(BULK as u64));

    for (name, executor) in [
        ("kwik_inline", Arc::new(InlineExecutor) as Arc<dyn Executor>),
        ("kwik_spawn", Arc::new(SpawnExecutor)),
    ] {
        let mut pair = rt.block_on(kwik_drain_pair(executor));
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(kwik_bulk(&mut pair, &chunk)));
        });
        pair.client.close(ErrorCode::NO_ERROR, "bench done");
        rt.block_on(pair.client.closed());
    }

    let mut raw = rt.block_on(raw_pair(false));
    group.bench_function("quinn_raw", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (mut send, _recv) = raw.conn.open_bi().await.unwrap();
                for _ in 0..BULK / CHUNK {
                    send.write_all(&chunk).await.unwrap();
                }
                send.finish().unwrap();
                assert_eq!(raw.drained.recv().await, Some(BULK));
            });
        });
    });
    raw.conn.close(0u32.into(), b"bench done");
    group.finish();
}

async fn kwik_echo_stream() -> (KwikEcho, Stream) {
    let (server_config, client_config) = configs(Arc::new(InlineExecutor));
    let listener = listen("127.0.0.1:0".parse().unwrap(), &server_config).unwrap();
    let (client, server) = tokio::join!(
        dial(listener.local_addr(), &client_config),
        listener.accept()
    );
    let (client, server) = (client.unwrap(), server.unwrap());
    tokio::spawn(async move {
        while let Ok(mut stream) = server.accept_stream().await {
            let mut buf = [0u8; ECHO];
            while stream.read_exact(&mut buf).await.is_ok() {
                stream.write_all(&buf).await.unwrap();
            }
        }
    });
    let stream = client.open_stream().await.unwrap();
    (
        KwikEcho {
            _listener: listener,
            client,
        },
        stream,
    )
}

struct KwikEcho {
    _listener: Listener,
    client: Session,
}

fn echo(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("transport_echo");
    group.sample_size(50);
    let request = [7u8; ECHO];

    let (echo_pair, mut stream) = rt.block_on(kwik_echo_stream());
    group.bench_function("kwik_inline", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut reply = [0u8; ECHO];
                stream.write_all(&request).await.unwrap();
                stream.read_exact(&mut reply).await.unwrap();
            });
        });
    });
    drop(stream);
    echo_pair.client.close(ErrorCode::NO_ERROR, "bench done");
    rt.block_on(echo_pair.client.closed());

    let raw = rt.block_on(raw_pair(true));
    let (mut send, mut recv) = rt.block_on(raw.conn.open_bi()).unwrap();
    group.bench_function("quinn_raw", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut reply = [0u8; ECHO];
                send.write_all(&request).await.unwrap();
                recv.read_exact(&mut reply).await.unwrap();
            });
        });
    });
    raw.conn.close(0u32.into(), b"bench done");
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bulk, echo
}
criterion_main!(benches);
