//! Sessions and streams over loopback: echo, many streams, FIN/reset/stop, close codes, bulk
//! integrity, flow control and TLS trust. Every test runs with both executors.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use kwik_transport::{
    ClientConfig, CloseReason, ConnectError, ErrorCode, ReadError, SessionError, Stream,
    WriteError, dial,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use common::{Exec, Pair};

/// Upper bound for waits that only fail when something is broken (never a timing assertion).
const BOUND: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("operation finished in time")
}

/// Serves echo on every stream the server accepts until the session closes.
fn spawn_echo(pair: &Pair) -> tokio::task::JoinHandle<()> {
    let server = pair.server.clone();
    tokio::spawn(async move {
        let mut streams = JoinSet::new();
        while let Ok(mut stream) = server.accept_stream().await {
            streams.spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    stream.write_all(&buf[..n]).await?;
                }
                stream.shutdown().await
            });
        }
        while streams.join_next().await.is_some() {}
    })
}

/// Writes until the stream refuses (the peer stopped it); the refusal's `WriteError`.
async fn write_until_refused(stream: &mut (impl AsyncWrite + Unpin)) -> WriteError {
    loop {
        if let Err(e) = stream.write_all(&[0u8; 1024]).await {
            return *e.into_inner().unwrap().downcast::<WriteError>().unwrap();
        }
        tokio::task::yield_now().await;
    }
}

async fn echo_once(stream: &mut Stream, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(stream);
    let write = async {
        w.write_all(data).await?;
        w.shutdown().await
    };
    let mut out = Vec::new();
    let (wrote, read) = tokio::join!(write, r.read_to_end(&mut out));
    wrote.expect("write");
    read.expect("read");
    out
}

both_executors!(echo, |exec| async move {
    let pair = Pair::new(exec).await;
    let echo = spawn_echo(&pair);
    let mut stream = pair.client.open_stream().await.unwrap();
    assert_eq!(stream.id(), 0);
    assert_eq!(
        bounded(echo_once(&mut stream, b"hello kwik")).await,
        b"hello kwik"
    );
    drop(stream);
    let stats = pair.client.stats();
    assert_eq!(stats.streams_opened, 1);
    assert_eq!(stats.stream_bytes_sent, 10);
    assert_eq!(stats.stream_bytes_received, 10);
    assert_eq!(pair.client.paths().len(), 1);
    assert!(pair.client.paths()[0].primary);
    pair.shutdown().await;
    echo.await.unwrap();
});

// The halves of `Stream::into_split` in two tasks: 4 MiB written while the echo is read,
// more than the stream window, so each half waits on the other's progress.
both_executors!(split_halves_in_two_tasks, |exec| async move {
    const LEN: usize = 4 << 20;
    let pair = Pair::new(exec).await;
    let echo = spawn_echo(&pair);
    let stream = pair.client.open_stream().await.unwrap();
    let id = stream.id();
    let (mut recv, mut send) = stream.into_split();
    assert_eq!((recv.id(), send.id()), (id, id));
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let expected = Sha256::digest(&data);
    let writer = tokio::spawn(async move {
        send.write_all(&data).await?;
        assert_eq!(send.write_offset(), LEN as u64);
        send.shutdown().await
    });
    let reader = tokio::spawn(async move {
        let mut back = Vec::with_capacity(LEN);
        recv.read_to_end(&mut back).await.map(|_| back)
    });
    bounded(writer).await.unwrap().unwrap();
    let back = bounded(reader).await.unwrap().unwrap();
    assert_eq!(back.len(), LEN);
    assert_eq!(Sha256::digest(&back), expected);
    pair.shutdown().await;
    echo.await.unwrap();
});

// Each half keeps its own drop behaviour: the send half's finishes the stream (the peer reads
// to the end) while the receive half still reads; the receive half's stops it (the peer's
// writes fail with code 0).
both_executors!(dropping_a_half_ends_its_direction_only, |exec| async move {
    let pair = Pair::new(exec).await;
    let stream = pair.client.open_stream().await.unwrap();
    let (mut recv, mut send) = stream.into_split();
    send.write_all(b"request").await.unwrap();
    drop(send);
    let mut server_side = bounded(pair.server.accept_stream()).await.unwrap();
    let mut request = Vec::new();
    bounded(server_side.read_to_end(&mut request))
        .await
        .unwrap();
    assert_eq!(request, b"request");
    server_side.write_all(b"reply").await.unwrap();
    let mut reply = [0u8; 5];
    bounded(recv.read_exact(&mut reply)).await.unwrap();
    assert_eq!(&reply, b"reply");
    drop(recv);
    assert_eq!(
        bounded(write_until_refused(&mut server_side)).await,
        WriteError::Stopped(ErrorCode::NO_ERROR)
    );
    drop(server_side);
    pair.shutdown().await;
});

both_executors!(server_opened_stream, |exec| async move {
    let pair = Pair::new(exec).await;
    let mut out = pair.server.open_stream().await.unwrap();
    assert_eq!(out.id() & 1, 1, "server-initiated ids have the low bit set");
    out.write_all(b"from server").await.unwrap();
    out.finish().unwrap();
    let mut incoming = bounded(pair.client.accept_stream()).await.unwrap();
    let mut buf = Vec::new();
    incoming.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"from server");
    drop((out, incoming));
    pair.shutdown().await;
});

both_executors!(thousand_concurrent_streams, |exec| async move {
    const STREAMS: usize = 1000;
    let pair = Pair::with(exec, |s| s.max_streams(STREAMS as u64), |c| c).await;
    let echo = spawn_echo(&pair);
    let mut tasks = JoinSet::new();
    for i in 0..STREAMS {
        let client = pair.client.clone();
        tasks.spawn(async move {
            let mut stream = client.open_stream().await.unwrap();
            let data: Vec<u8> = (0..1024).map(|j| (i * 7 + j) as u8).collect();
            assert_eq!(echo_once(&mut stream, &data).await, data);
        });
    }
    bounded(async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await;
    assert_eq!(pair.client.stats().streams_opened, STREAMS as u64);
    assert_eq!(pair.server.stats().streams_accepted, STREAMS as u64);
    pair.shutdown().await;
    echo.await.unwrap();
});

both_executors!(stream_limit_makes_open_wait_not_fail, |exec| async move {
    // The server allows 4 concurrent client streams; 40 sequential-ish opens all succeed
    // because retired streams return credit with MAX_STREAMS.
    let pair = Pair::with(exec, |s| s.max_streams(4), |c| c).await;
    let echo = spawn_echo(&pair);
    let mut tasks = JoinSet::new();
    for i in 0..40u8 {
        let client = pair.client.clone();
        tasks.spawn(async move {
            let mut stream = client.open_stream().await.unwrap();
            assert_eq!(echo_once(&mut stream, &[i; 100]).await, [i; 100]);
        });
    }
    bounded(async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await;
    pair.shutdown().await;
    echo.await.unwrap();
});

both_executors!(fin_ends_reads_and_forbids_writes, |exec| async move {
    let pair = Pair::new(exec).await;
    let mut stream = pair.client.open_stream().await.unwrap();
    stream.write_all(b"abc").await.unwrap();
    stream.finish().unwrap();
    assert!(
        matches!(stream.write_all(b"x").await, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    );
    let mut server_side = bounded(pair.server.accept_stream()).await.unwrap();
    let mut buf = Vec::new();
    server_side.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"abc");
    // EOF is sticky.
    assert_eq!(server_side.read(&mut [0u8; 8]).await.unwrap(), 0);
    drop((stream, server_side));
    pair.shutdown().await;
});

both_executors!(reset_reaches_the_reader_with_its_code, |exec| async move {
    let pair = Pair::new(exec).await;
    let mut stream = pair.client.open_stream().await.unwrap();
    stream.write_all(b"partial").await.unwrap();
    stream.reset(ErrorCode(0x1234)).unwrap();
    assert!(matches!(stream.finish(), Err(WriteError::ClosedStream)));
    let mut server_side = bounded(pair.server.accept_stream()).await.unwrap();
    let err = bounded(server_side.read_chunk(1024)).await;
    // The data may or may not be read first; the reset must arrive.
    let err = match err {
        Ok(Some(_)) => bounded(server_side.read_chunk(1024)).await.unwrap_err(),
        other => other.unwrap_err(),
    };
    assert_eq!(err, ReadError::Reset(ErrorCode(0x1234)));
    drop((stream, server_side));
    pair.shutdown().await;
});

both_executors!(stop_sending_fails_the_writer, |exec| async move {
    let pair = Pair::new(exec).await;
    let mut stream = pair.client.open_stream().await.unwrap();
    stream.write_all(b"first").await.unwrap();
    let mut server_side = bounded(pair.server.accept_stream()).await.unwrap();
    server_side.stop(ErrorCode(0x777));
    assert_eq!(
        bounded(write_until_refused(&mut stream)).await,
        WriteError::Stopped(ErrorCode(0x777))
    );
    drop((stream, server_side));
    pair.shutdown().await;
});

both_executors!(close_codes_reach_both_sides, |exec| async move {
    let pair = Pair::new(exec).await;
    let pending_accept = {
        let server = pair.server.clone();
        tokio::spawn(async move { server.accept_stream().await })
    };
    pair.client.close(ErrorCode(0x4242), "going away");
    let client_reason = bounded(pair.client.closed()).await;
    assert_eq!(
        client_reason,
        CloseReason::Local {
            code: ErrorCode(0x4242),
            reason: "going away".into()
        }
    );
    let server_reason = bounded(pair.server.closed()).await;
    assert_eq!(
        server_reason,
        CloseReason::Peer {
            code: ErrorCode(0x4242),
            reason: "going away".into()
        }
    );
    let accept = pending_accept.await.unwrap();
    assert!(matches!(
        accept,
        Err(SessionError::Closed(CloseReason::Peer { .. }))
    ));
    assert!(matches!(
        pair.server.open_stream().await,
        Err(SessionError::Closed(_))
    ));
    assert!(matches!(
        pair.client.open_stream().await,
        Err(SessionError::Closed(_))
    ));
    pair.shutdown().await;
});

async fn bulk(exec: Exec, total: usize) {
    let pair = Pair::new(exec).await;
    let mut stream = pair.client.open_stream().await.unwrap();
    let writer = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut sent = 0;
        while sent < total {
            for b in chunk.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            hasher.update(&chunk);
            stream.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        stream.finish().unwrap();
        (hasher.finalize(), stream)
    });
    let mut server_side = bounded(pair.server.accept_stream()).await.unwrap();
    let mut hasher = Sha256::new();
    let mut received = 0;
    bounded(async {
        while let Some(chunk) = server_side.read_chunk(usize::MAX).await.unwrap() {
            received += chunk.len();
            hasher.update(&chunk);
        }
    })
    .await;
    let (sent_hash, stream) = writer.await.unwrap();
    assert_eq!(received, total);
    assert_eq!(hasher.finalize(), sent_hash);
    assert!(pair.server.stats().recv_buffered == 0);
    drop((stream, server_side));
    pair.shutdown().await;
}

both_executors!(bulk_256_mib_sha256, |exec| bulk(exec, 256 << 20));

/// Polls `f` once with a no-op waker.
fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
    let mut f = pin!(f);
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    bounded(async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

both_executors!(
    flow_control_blocks_sender_and_spares_other_streams,
    |exec| async move {
        const WINDOW: u64 = 64 * 1024;
        let pair = Pair::with(exec, |s| s.stream_window(WINDOW), |c| c).await;
        // Stream A: the server never reads it until the end.
        let mut a = pair.client.open_stream().await.unwrap();
        let payload = vec![7u8; 4 * WINDOW as usize];
        let mut written = 0;
        while written < payload.len() {
            match poll_once(a.write(&payload[written..])) {
                Poll::Ready(n) => written += n.unwrap(),
                Poll::Pending => break,
            }
        }
        assert_eq!(
            written as u64, WINDOW,
            "the sender stops exactly at its credit"
        );
        assert!(poll_once(a.write(b"more")).is_pending());
        let mut a_server = bounded(pair.server.accept_stream()).await.unwrap();
        let server = pair.server.clone();
        wait_until(|| server.stats().recv_buffered == WINDOW).await;
        assert_eq!(a_server.recv_buffered(), WINDOW);

        // Stream B flows while A is stalled.
        let mut b = pair.client.open_stream().await.unwrap();
        let big = vec![9u8; 3 * WINDOW as usize];
        let b_writer = tokio::spawn(async move {
            b.write_all(&big).await.unwrap();
            b.finish().unwrap();
            b
        });
        let mut b_server = bounded(pair.server.accept_stream()).await.unwrap();
        let mut got = Vec::new();
        bounded(b_server.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got.len(), 3 * WINDOW as usize);
        assert!(pair.server.stats().recv_buffered <= WINDOW);
        assert!(a_server.recv_buffered() <= WINDOW);

        // Reading A releases the sender.
        let a_writer = tokio::spawn(async move {
            a.write_all(&payload[written..]).await.unwrap();
            a.finish().unwrap();
            a
        });
        let mut got = Vec::new();
        bounded(a_server.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got.len(), 4 * WINDOW as usize);
        drop((
            a_writer.await.unwrap(),
            b_writer.await.unwrap(),
            a_server,
            b_server,
        ));
        pair.shutdown().await;
    }
);

both_executors!(
    untrusted_server_certificate_fails_clearly,
    |exec| async move {
        let pair = Pair::new(exec).await;
        // A client that trusts nothing.
        let config = ClientConfig::builder()
            .executor(exec.executor())
            .build()
            .unwrap();
        let err = bounded(dial(pair.listener.local_addr(), &config))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Handshake(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("certificate"), "unclear error: {text}");
        pair.shutdown().await;
    }
);

both_executors!(ping_measures_rtt, |exec| async move {
    let pair = Pair::with(exec, |s| s, |c| c.ping_interval(None)).await;
    let client = pair.client.clone();
    wait_until(|| client.paths()[0].rtt.is_some()).await;
    let path = &pair.client.paths()[0];
    assert!(path.counters.sent(kwik_transport::wire::FrameType::Ping) >= 1);
    assert!(
        path.counters
            .received(kwik_transport::wire::FrameType::Pong)
            >= 1
    );
    pair.shutdown().await;
});

both_executors!(
    dropping_the_last_handle_closes_with_no_error,
    |exec| async move {
        let pair = Pair::new(exec).await;
        let server = pair.server.clone();
        let Pair {
            listener, client, ..
        } = pair;
        drop(client);
        let reason = bounded(server.closed()).await;
        assert_eq!(
            reason,
            CloseReason::Peer {
                code: ErrorCode::NO_ERROR,
                reason: "session dropped".into()
            }
        );
        listener.close(ErrorCode::NO_ERROR, "done");
        bounded(listener.closed()).await;
    }
);

both_executors!(closing_the_listener_ends_its_sessions, |exec| async move {
    let pair = Pair::new(exec).await;
    pair.listener.close(ErrorCode(0x501), "maintenance");
    assert!(bounded(pair.listener.accept()).await.is_none());
    let reason = bounded(pair.client.closed()).await;
    assert_eq!(reason.code(), Some(ErrorCode(0x501)), "{reason:?}");
    bounded(pair.server.closed()).await;
    bounded(pair.listener.closed()).await;
});

/// Records the key of every packet the client's paths submit, then runs it inline.
#[derive(Default)]
struct KeyRecorder {
    keys: std::sync::Mutex<std::collections::HashSet<u64>>,
}

impl kwik_transport::Executor for KeyRecorder {
    fn submit(&self, key: u64, job: kwik_transport::PacketJob) -> kwik_transport::Submit<'_> {
        self.keys.lock().unwrap().insert(key);
        kwik_transport::InlineExecutor.submit(key, job)
    }
}

/// Every session's first path has id 0, yet executor keys must tell paths apart, so that a
/// sharded executor spreads the sessions instead of putting them all on one shard.
#[tokio::test]
async fn executor_keys_are_unique_across_sessions() {
    let mut keys = Vec::new();
    for _ in 0..2 {
        let recorder = std::sync::Arc::new(KeyRecorder::default());
        let executor: std::sync::Arc<dyn kwik_transport::Executor> = recorder.clone();
        let pair = Pair::with(Exec::Inline, |s| s, |c| c.executor(executor)).await;
        let echo = spawn_echo(&pair);
        let mut stream = bounded(pair.client.open_stream()).await.unwrap();
        assert_eq!(echo_once(&mut stream, b"ping").await, b"ping");
        assert_eq!(pair.client.paths()[0].id, 0);
        pair.shutdown().await;
        echo.await.unwrap();
        let seen = recorder.keys.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "one path, one key: {seen:?}");
        keys.extend(seen);
    }
    assert_ne!(
        keys[0], keys[1],
        "two sessions' path 0 shared an executor key"
    );
}
