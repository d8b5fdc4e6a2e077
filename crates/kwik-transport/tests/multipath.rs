//! One client session, several servers: ADD_PATH, REMOVE_PATH, RELAY_DATA, merging one stream
//! from several paths by offset, and surviving the loss of a path. Loopback, ephemeral ports,
//! every test with both executors.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kwik_test_support::{LossyRelay, SERVER_NAME, TestPki};
use kwik_transport::{
    AddPathError, ClientConfig, ClientConfigBuilder, CloseReason, ErrorCode, Listener, Observer,
    PathState, ReadError, RelayError, RemovePathError, ServerConfig, Session, Stream, dial, listen,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{Exec, Holdable};

/// Upper bound for waits that only fail when something is broken (never a timing assertion).
const BOUND: Duration = Duration::from_secs(60);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("operation finished in time")
}

/// Several servers sharing one test CA, and a client session dialed to the first.
struct Cluster {
    pki: TestPki,
    exec: Exec,
    listeners: Vec<Listener>,
    client: Session,
    /// The primary server's side of the session.
    primary: Session,
    /// The primary server's executor, which a test can hold.
    primary_exec: Arc<Holdable>,
}

impl Cluster {
    async fn new(exec: Exec, servers: usize) -> Self {
        Self::with(exec, servers, |c| c).await
    }

    async fn with(
        exec: Exec,
        servers: usize,
        client: impl FnOnce(ClientConfigBuilder) -> ClientConfigBuilder,
    ) -> Self {
        let pki = TestPki::generate().unwrap();
        let primary_exec = Holdable::new(exec);
        let listeners: Vec<_> = (0..servers)
            .map(|i| match i {
                0 => start_server(&pki, primary_exec.clone()),
                _ => start_server(&pki, exec.executor()),
            })
            .collect();
        let config = client(
            ClientConfig::builder()
                .add_root_certificate(pki.ca_cert())
                .server_name(SERVER_NAME)
                .executor(exec.executor()),
        )
        .build()
        .unwrap();
        let (client, primary) = tokio::join!(
            dial(listeners[0].local_addr(), &config),
            listeners[0].accept()
        );
        Self {
            pki,
            exec,
            listeners,
            client: client.unwrap(),
            primary: primary.unwrap(),
            primary_exec,
        }
    }

    fn addr(&self, server: usize) -> SocketAddr {
        self.listeners[server].local_addr()
    }

    /// The primary adds server `i`; returns the path id and that server's session.
    async fn add(&self, i: usize) -> (u64, Session) {
        let (id, session) = bounded(async {
            tokio::join!(
                self.primary.add_path(self.addr(i)),
                self.listeners[i].accept()
            )
        })
        .await;
        (id.expect("add_path"), session.expect("secondary accepts"))
    }

    async fn shutdown(self, others: Vec<Session>) {
        self.client.close(ErrorCode::NO_ERROR, "test done");
        bounded(self.client.closed()).await;
        bounded(self.primary.closed()).await;
        for s in others {
            bounded(s.closed()).await;
        }
        for l in &self.listeners {
            l.close(ErrorCode::NO_ERROR, "test done");
            bounded(l.closed()).await;
        }
        drop(self.pki);
        let _ = self.exec;
    }
}

fn start_server(pki: &TestPki, executor: Arc<dyn kwik_transport::Executor>) -> Listener {
    let config = ServerConfig::builder()
        .certificate(pki.cert_chain(), pki.key())
        .executor(executor)
        .build()
        .unwrap();
    listen("127.0.0.1:0".parse().unwrap(), &config).unwrap()
}

both_executors!(add_path_to_a_second_server, |exec| async move {
    let cluster = Cluster::new(exec, 2).await;
    let (id, secondary) = cluster.add(1).await;
    assert_eq!(id, 1);
    // The secondary sees an ordinary session whose path carries the client's path id.
    assert!(!secondary.is_client());
    assert_eq!(secondary.paths().len(), 1);
    assert_eq!(secondary.paths()[0].id, 1);
    let paths = cluster.client.paths();
    assert_eq!(paths.len(), 2);
    assert!(paths[0].primary && !paths[1].primary);
    assert_eq!(paths[1].id, 1);
    assert_eq!(paths[1].remote, cluster.addr(1));
    assert!(paths.iter().all(|p| p.state == PathState::Active));
    // The primary server only has its own path.
    assert_eq!(cluster.primary.paths().len(), 1);
    cluster.shutdown(vec![secondary]).await;
});

both_executors!(
    concurrent_add_paths_to_different_servers,
    |exec| async move {
        let cluster = Cluster::new(exec, 4).await;
        let primary = &cluster.primary;
        let (a, b, c, s1, s2, s3) = bounded(async {
            tokio::join!(
                primary.add_path(cluster.addr(1)),
                primary.add_path(cluster.addr(2)),
                primary.add_path(cluster.addr(3)),
                cluster.listeners[1].accept(),
                cluster.listeners[2].accept(),
                cluster.listeners[3].accept(),
            )
        })
        .await;
        let ids: HashSet<u64> = [a.unwrap(), b.unwrap(), c.unwrap()].into();
        assert_eq!(ids, HashSet::from([1, 2, 3]));
        let secondaries = vec![s1.unwrap(), s2.unwrap(), s3.unwrap()];
        let remotes: HashSet<SocketAddr> =
            cluster.client.paths().iter().map(|p| p.remote).collect();
        assert_eq!(remotes.len(), 4);
        cluster.shutdown(secondaries).await;
    }
);

both_executors!(failing_add_path_is_a_typed_error, |exec| async move {
    let cluster = Cluster::with(exec, 1, |c| c.handshake_timeout(Duration::from_millis(500))).await;
    // A bound UDP socket that never answers: nothing speaks QUIC there.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = bounded(cluster.primary.add_path(silent.local_addr().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(err, AddPathError::DialFailed(_)), "{err:?}");
    // Not an address at all.
    let err = bounded(cluster.primary.add_path("not an address"))
        .await
        .unwrap_err();
    assert!(matches!(err, AddPathError::DialFailed(_)), "{err:?}");
    // Clients do not add paths; servers cannot relay to unknown paths.
    assert_eq!(
        cluster.client.add_path("127.0.0.1:1").await,
        Err(AddPathError::NotServer)
    );
    assert_eq!(
        cluster.primary.relay(7, 0, &b"x"[..]),
        Err(RelayError::UnknownPath(7))
    );
    assert_eq!(cluster.client.paths().len(), 1);
    cluster.shutdown(vec![]).await;
});

both_executors!(path_limit_refuses_add_path, |exec| async move {
    let cluster = Cluster::with(exec, 2, |c| c.max_paths_per_session(1)).await;
    let err = bounded(cluster.primary.add_path(cluster.addr(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, AddPathError::PathLimit(_)), "{err:?}");
    cluster.shutdown(vec![]).await;
});

both_executors!(remove_path_from_either_side, |exec| async move {
    let cluster = Cluster::new(exec, 3).await;
    let (one, s1) = cluster.add(1).await;
    let (two, s2) = cluster.add(2).await;
    // Client side: the secondary's session closes cleanly.
    cluster.client.remove_path(one).unwrap();
    let reason = bounded(s1.closed()).await;
    assert_eq!(reason.code(), Some(ErrorCode::NO_ERROR), "{reason:?}");
    assert_eq!(
        cluster.client.remove_path(one),
        Err(RemovePathError::UnknownPath(one))
    );
    // Server side: the primary asks the client to drop path `two`.
    cluster.primary.remove_path(two).unwrap();
    bounded(s2.closed()).await;
    assert_eq!(
        cluster.primary.relay(two, 0, &b"x"[..]),
        Err(RelayError::UnknownPath(two))
    );
    let paths = cluster.client.paths();
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0].id, 0);
    assert_eq!(
        cluster.client.remove_path(0),
        Err(RemovePathError::LastPath(0))
    );
    assert!(cluster.client.close_reason().is_none());
    cluster.shutdown(vec![]).await;
});

/// Deterministic content of chunk `k`.
fn chunk(k: usize, len: usize) -> Vec<u8> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (k as u64 + 1).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

const CHUNK: usize = 1 << 20;

/// The relayed command: `chunks` as 8 bytes big endian.
fn command(chunks: usize) -> Bytes {
    Bytes::copy_from_slice(&(chunks as u64).to_be_bytes())
}

/// Secondary server: accepts the relayed stream, reads the command, writes the odd chunks at
/// their offsets.
async fn serve_odd_chunks(secondary: Session) -> std::io::Result<Session> {
    let mut stream = secondary.accept_stream().await?;
    let mut cmd = [0u8; 8];
    stream.read_exact(&mut cmd).await?;
    let chunks = u64::from_be_bytes(cmd) as usize;
    for k in (1..chunks).step_by(2) {
        stream.set_write_offset((k * CHUNK) as u64)?;
        stream.write_all(&chunk(k, CHUNK)).await?;
    }
    stream.shutdown().await?;
    Ok(secondary)
}

/// Primary server: accepts the client's request stream, relays the command to `path`, writes
/// the even chunks at their offsets, then FIN at the total size.
async fn serve_even_chunks(primary: Session, path: u64, chunks: usize) -> std::io::Result<Stream> {
    let mut stream = primary.accept_stream().await?;
    let mut req = [0u8; 3];
    stream.read_exact(&mut req).await?;
    primary
        .relay(path, stream.id(), command(chunks))
        .map_err(std::io::Error::other)?;
    for k in (0..chunks).step_by(2) {
        stream.set_write_offset((k * CHUNK) as u64)?;
        stream.write_all(&chunk(k, CHUNK)).await?;
    }
    stream.set_write_offset((chunks * CHUNK) as u64)?;
    stream.shutdown().await?;
    Ok(stream)
}

async fn file_transfer(exec: Exec, chunks: usize, lossy: bool) {
    let cluster = Cluster::with(exec, 2, |c| c.stream_window(4 * CHUNK as u64)).await;
    let relay = if lossy {
        Some(
            LossyRelay::builder()
                .loss(0.03)
                .reorder(0.03)
                .duplicate(0.01)
                .seed(11)
                .start(cluster.addr(1))
                .await
                .unwrap(),
        )
    } else {
        None
    };
    let target = relay.as_ref().map_or(cluster.addr(1), |r| r.local_addr());
    let (path, secondary) = bounded(async {
        tokio::join!(
            cluster.primary.add_path(target),
            cluster.listeners[1].accept()
        )
    })
    .await;
    let (path, secondary) = (path.unwrap(), secondary.unwrap());
    let odd = tokio::spawn(serve_odd_chunks(secondary));
    let even = tokio::spawn(serve_even_chunks(cluster.primary.clone(), path, chunks));

    let mut stream = cluster.client.open_stream().await.unwrap();
    stream.write_all(b"GET").await.unwrap();
    let mut expected = Sha256::new();
    for k in 0..chunks {
        expected.update(chunk(k, CHUNK));
    }
    let mut hasher = Sha256::new();
    let mut received = 0;
    bounded(async {
        while let Some(c) = stream.read_chunk(usize::MAX).await.unwrap() {
            received += c.len();
            hasher.update(&c);
        }
    })
    .await;
    assert_eq!(received, chunks * CHUNK);
    assert_eq!(hasher.finalize(), expected.finalize());
    let secondary = bounded(odd).await.unwrap().unwrap();
    let primary_stream = bounded(even).await.unwrap().unwrap();
    // Both paths carried stream data.
    for p in cluster.client.paths() {
        assert!(
            p.counters.bytes_received > (chunks / 2 * CHUNK) as u64,
            "{p:?}"
        );
    }
    drop((stream, primary_stream));
    cluster.shutdown(vec![secondary]).await;
    if let Some(relay) = relay {
        let stats = relay.shutdown().await;
        assert!(
            stats.server_to_client.dropped > 0,
            "the relay did lose packets: {stats:?}"
        );
    }
}

both_executors!(file_transfer_sixty_four_mib_from_two_servers, |exec| {
    file_transfer(exec, 64, false)
});

both_executors!(file_transfer_with_secondary_behind_lossy_relay, |exec| {
    file_transfer(exec, 64, true)
});

both_executors!(back_to_back_relays_arrive_in_order, |exec| async move {
    const RELAYS: usize = 1000;
    let cluster = Cluster::new(exec, 2).await;
    let (path, secondary) = cluster.add(1).await;
    let mut stream = cluster.client.open_stream().await.unwrap();
    stream.write_all(b"x").await.unwrap();
    let mut incoming = bounded(cluster.primary.accept_stream()).await.unwrap();
    for i in 0..RELAYS {
        cluster
            .primary
            .relay(path, incoming.id(), format!("{i:08}").into_bytes())
            .unwrap();
    }
    let mut relayed = bounded(secondary.accept_stream()).await.unwrap();
    assert_eq!(relayed.id(), stream.id());
    let mut got = vec![0u8; RELAYS * 8];
    bounded(relayed.read_exact(&mut got)).await.unwrap();
    for (i, piece) in got.chunks(8).enumerate() {
        assert_eq!(piece, format!("{i:08}").as_bytes(), "relay {i}");
    }
    let mut x = [0u8; 1];
    incoming.read_exact(&mut x).await.unwrap();
    drop((stream, incoming, relayed));
    cluster.shutdown(vec![secondary]).await;
});

/// Counts the client's removed paths and wakes a waiter on each.
#[derive(Default)]
struct PathEvents {
    removed: std::sync::Mutex<Vec<u64>>,
    notify: tokio::sync::Notify,
}

impl Observer for PathEvents {
    fn path_removed(&self, path_id: u64) {
        self.removed.lock().unwrap().push(path_id);
        self.notify.notify_waiters();
    }
}

impl PathEvents {
    async fn wait_removed(&self, path_id: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.removed.lock().unwrap().contains(&path_id) {
                return;
            }
            notified.await;
        }
    }
}

both_executors!(
    relays_beyond_the_secondary_window_wait_for_credit,
    |exec| async move {
        // 3 MiB relayed to a server whose stream window is 1 MiB: the client holds the rest until
        // the secondary reads and grants credit.
        const TOTAL: usize = 3 << 20;
        let cluster = Cluster::new(exec, 2).await;
        let (path, secondary) = cluster.add(1).await;
        let mut stream = cluster.client.open_stream().await.unwrap();
        stream.write_all(b"x").await.unwrap();
        let incoming = bounded(cluster.primary.accept_stream()).await.unwrap();
        let data = chunk(7, TOTAL);
        for piece in data.chunks(256 * 1024) {
            cluster
                .primary
                .relay(path, incoming.id(), Bytes::copy_from_slice(piece))
                .unwrap();
        }
        let mut relayed = bounded(secondary.accept_stream()).await.unwrap();
        let mut got = vec![0u8; TOTAL];
        bounded(relayed.read_exact(&mut got)).await.unwrap();
        assert!(got == data, "relayed bytes differ");
        drop((stream, incoming, relayed));
        cluster.shutdown(vec![secondary]).await;
    }
);

both_executors!(
    killing_the_secondary_fails_only_its_streams,
    |exec| async move {
        let cluster = Cluster::with(exec, 2, |c| c.stream_window(4 * CHUNK as u64)).await;
        let (path, secondary) = cluster.add(1).await;
        let mut stream = cluster.client.open_stream().await.unwrap();
        stream.write_all(b"GET").await.unwrap();
        let even = tokio::spawn(serve_even_chunks(cluster.primary.clone(), path, 8));
        // The secondary answers the command with one chunk, then dies.
        let mut relayed = bounded(secondary.accept_stream()).await.unwrap();
        let mut cmd = [0u8; 8];
        relayed.read_exact(&mut cmd).await.unwrap();
        relayed.set_write_offset(CHUNK as u64).unwrap();
        relayed.write_all(&chunk(1, CHUNK)).await.unwrap();
        let mut first = vec![0u8; 2 * CHUNK];
        bounded(stream.read_exact(&mut first)).await.unwrap();
        assert_eq!(&first[CHUNK..], &chunk(1, CHUNK)[..]);
        secondary.close(ErrorCode::APPLICATION_BASE, "killed");
        cluster.listeners[1].close(ErrorCode::APPLICATION_BASE, "killed");
        // Chunk 3 never comes: a clear error, not a hang.
        let err = bounded(async {
            loop {
                match stream.read_chunk(usize::MAX).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("stream ended without the dead server's chunks"),
                    Err(e) => break e,
                }
            }
        })
        .await;
        assert_eq!(err, ReadError::PathLost(path));
        let paths = cluster.client.paths();
        assert_eq!(paths.len(), 1);
        assert!(paths[0].primary && paths[0].id == 0);
        drop(stream);
        let _ = bounded(even).await.unwrap();
        // The session goes on over the primary.
        echo_over(&cluster.client, &cluster.primary).await;
        assert!(cluster.client.close_reason().is_none());
        cluster.shutdown(vec![secondary]).await;
    }
);

both_executors!(
    a_relay_to_a_path_already_removed_fails_the_stream,
    |exec| async move {
        let cluster = Cluster::new(exec, 2).await;
        let (path, secondary) = cluster.add(1).await;
        let mut stream = cluster.client.open_stream().await.unwrap();
        stream.write_all(b"GET").await.unwrap();
        let incoming = bounded(cluster.primary.accept_stream()).await.unwrap();
        // The client drops the path; the primary relays before it has processed REMOVE_PATH
        // (its executor holds every packet until the relay is out).
        cluster.primary_exec.hold();
        cluster.client.remove_path(path).unwrap();
        cluster
            .primary
            .relay(path, incoming.id(), &b"part"[..])
            .unwrap();
        cluster.primary_exec.release().await;
        // The part will never come: the stream fails instead of waiting for it.
        let err = bounded(stream.read_chunk(usize::MAX)).await.unwrap_err();
        assert_eq!(err, ReadError::PathLost(path));
        bounded(secondary.closed()).await;
        drop((stream, incoming));
        cluster.shutdown(vec![secondary]).await;
    }
);

/// Opens a stream on `client`, echoes one message through `server`.
async fn echo_over(client: &Session, server: &Session) {
    let mut stream = client.open_stream().await.unwrap();
    stream.write_all(b"still here").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut incoming = bounded(server.accept_stream()).await.unwrap();
    // Skip streams the server accepted implicitly and never got data on.
    while incoming.id() != stream.id() {
        incoming = bounded(server.accept_stream()).await.unwrap();
    }
    let mut msg = Vec::new();
    bounded(incoming.read_to_end(&mut msg)).await.unwrap();
    incoming.write_all(&msg).await.unwrap();
    incoming.shutdown().await.unwrap();
    let mut back = Vec::new();
    bounded(stream.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back, b"still here");
}

both_executors!(
    killing_the_primary_moves_the_primary_role,
    |exec| async move {
        let events = Arc::new(PathEvents::default());
        let observer = events.clone();
        let cluster = Cluster::with(exec, 2, |c| c.observer(observer)).await;
        let (path, secondary) = cluster.add(1).await;
        cluster.primary.close(ErrorCode::APPLICATION_BASE, "killed");
        cluster.listeners[0].close(ErrorCode::APPLICATION_BASE, "killed");
        bounded(events.wait_removed(0)).await;
        let paths = cluster.client.paths();
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].id, path);
        assert!(paths[0].primary);
        assert_eq!(cluster.client.remote_address(), Some(cluster.addr(1)));
        echo_over(&cluster.client, &secondary).await;
        assert!(cluster.client.close_reason().is_none());
        cluster.client.close(ErrorCode::NO_ERROR, "done");
        bounded(cluster.client.closed()).await;
        bounded(secondary.closed()).await;
        bounded(cluster.primary.closed()).await;
        for l in &cluster.listeners {
            l.close(ErrorCode::NO_ERROR, "done");
            bounded(l.closed()).await;
        }
    }
);

both_executors!(
    conflicting_overlap_from_two_paths_is_a_protocol_error,
    |exec| async move {
        let cluster = Cluster::new(exec, 2).await;
        let (path, secondary) = cluster.add(1).await;
        let mut stream = cluster.client.open_stream().await.unwrap();
        stream.write_all(b"x").await.unwrap();
        let mut incoming = bounded(cluster.primary.accept_stream()).await.unwrap();
        cluster
            .primary
            .relay(path, incoming.id(), &b"go"[..])
            .unwrap();
        let mut relayed = bounded(secondary.accept_stream()).await.unwrap();
        let mut go = [0u8; 2];
        relayed.read_exact(&mut go).await.unwrap();
        // Both servers claim bytes 0..4 with different contents; the client reads nothing, so
        // the second copy to arrive is compared with the first.
        relayed.write_all(b"BBBB").await.unwrap();
        incoming.write_all(b"AAAA").await.unwrap();
        let reason = bounded(cluster.client.closed()).await;
        match reason {
            CloseReason::Protocol(e) => assert_eq!(e.code, ErrorCode::OVERLAP_CONFLICT),
            other => panic!("unexpected close: {other:?}"),
        }
        // Writing fails: the session is gone.
        let err = stream.write_all(b"y").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
        // Both servers learn the code.
        let p = bounded(cluster.primary.closed()).await;
        assert_eq!(p.code(), Some(ErrorCode::OVERLAP_CONFLICT), "{p:?}");
        let s = bounded(secondary.closed()).await;
        assert_eq!(s.code(), Some(ErrorCode::OVERLAP_CONFLICT), "{s:?}");
        drop((stream, incoming, relayed));
        for l in &cluster.listeners {
            l.close(ErrorCode::NO_ERROR, "done");
            bounded(l.closed()).await;
        }
    }
);
