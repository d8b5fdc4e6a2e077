//! The lossy relay with plain UDP sockets: counters, seeded fates, duplication, reordering,
//! delay, bandwidth, bounded queues, several clients, validation and shutdown.
//!
//! Clients send with blocking std sockets (a loopback send completes at once, with no await in
//! between) and tests wait on the relay's counters, never on the clock. Timing tests run on
//! tokio's paused clock and only assert lower bounds: with real sockets, the paused clock may
//! jump past a release time before the receiver is polled, never before the packet is sent.

use std::collections::BTreeSet;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use kwik_test_support::{Direction, LinkConditions, LossyRelay, RelayError, RelayStats};
use tokio::time::Instant;

/// Guards real-clock waits against hangs; never reached when the relay works.
const GUARD: Duration = Duration::from_secs(30);

/// Datagrams sent between two waits on the relay: far below what a default socket buffer holds,
/// so the kernel never drops on the relay's behalf.
const CHUNK: usize = 100;

fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn nonblocking_socket() -> UdpSocket {
    let socket = socket();
    socket.set_nonblocking(true).unwrap();
    socket
}

/// Reads every datagram already queued on `socket` (a nonblocking std socket).
fn drain(socket: &UdpSocket) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut buf = [0; 2048];
    let mut out = Vec::new();
    loop {
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => out.push((buf[..len].to_vec(), from)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("recv failed: {e}"),
        }
    }
}

/// Sends datagrams `0..count` (each the big-endian index) through the relay in chunks, waiting
/// after each chunk until the relay has settled it, and returns what reached `upstream`.
async fn pump(relay: &LossyRelay, upstream: &UdpSocket, count: u32) -> Vec<u32> {
    let client = socket();
    let mut arrived = Vec::new();
    let mut sent = 0;
    while sent < count {
        let end = (sent + CHUNK as u32).min(count);
        for i in sent..end {
            client
                .send_to(&i.to_be_bytes(), relay.local_addr())
                .unwrap();
        }
        sent = end;
        settle(relay, u64::from(sent)).await;
        // Forwarded means the send returned: on loopback the datagram is already queued.
        for (payload, _) in drain(upstream) {
            arrived.push(u32::from_be_bytes(payload.try_into().unwrap()));
        }
    }
    arrived
}

/// Waits until the relay has received `count` client datagrams and nothing is in flight.
async fn settle(relay: &LossyRelay, count: u64) -> RelayStats {
    tokio::time::timeout(
        GUARD,
        relay.wait_for(|s| s.client_to_server.received == count && s.in_flight() == 0),
    )
    .await
    .expect("relay did not settle")
}

/// A tokio socket standing for the server and a relay in front of it.
async fn behind_relay(
    builder: kwik_test_support::RelayBuilder,
) -> (tokio::net::UdpSocket, LossyRelay) {
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay = builder.start(server.local_addr().unwrap()).await.unwrap();
    (server, relay)
}

async fn relay_to(upstream: &UdpSocket, builder: kwik_test_support::RelayBuilder) -> LossyRelay {
    builder.start(upstream.local_addr().unwrap()).await.unwrap()
}

#[tokio::test]
async fn loss_drops_about_half_and_counters_add_up() {
    let upstream = nonblocking_socket();
    let relay = relay_to(&upstream, LossyRelay::builder().loss(0.5).seed(11)).await;

    let arrived = pump(&relay, &upstream, 1_000).await;
    let link = relay.shutdown().await.client_to_server;

    assert_eq!(link.received, 1_000);
    assert!(link.dropped > 0);
    assert_eq!(link.forwarded + link.dropped, link.received);
    assert_eq!(
        (link.queue_dropped, link.send_failed, link.duplicated),
        (0, 0, 0)
    );
    // Binomial(1000, 0.5) has a standard deviation of ~16: the band is 6 sigma wide.
    assert!((400..=600).contains(&link.dropped), "{link:?}");
    assert_eq!(arrived.len() as u64, link.forwarded);
    // Without reordering the survivors keep their order.
    assert!(arrived.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn a_seed_fixes_which_packets_are_lost() {
    async fn survivors(seed: u64) -> Vec<u32> {
        let upstream = nonblocking_socket();
        let relay = relay_to(&upstream, LossyRelay::builder().loss(0.3).seed(seed)).await;
        let arrived = pump(&relay, &upstream, 300).await;
        relay.shutdown().await;
        arrived
    }
    let first = survivors(5).await;
    assert_eq!(first, survivors(5).await);
    assert_ne!(first, survivors(6).await);
}

#[tokio::test]
async fn duplication_sends_extra_copies() {
    let upstream = nonblocking_socket();
    let relay = relay_to(&upstream, LossyRelay::builder().duplicate(0.3).seed(3)).await;

    let arrived = pump(&relay, &upstream, 500).await;
    let link = relay.shutdown().await.client_to_server;

    assert!(link.duplicated > 0);
    assert_eq!(link.forwarded, link.received + link.duplicated);
    assert_eq!(arrived.len() as u64, link.forwarded);
    let distinct: BTreeSet<u32> = arrived.iter().copied().collect();
    assert_eq!(distinct.len(), 500);
    // A duplicate follows its original immediately.
    let repeats = arrived.windows(2).filter(|w| w[0] == w[1]).count() as u64;
    assert_eq!(repeats, link.duplicated);
}

#[tokio::test]
async fn reordering_releases_a_held_packet_after_the_next() {
    let upstream = nonblocking_socket();
    // Every packet is a candidate and the hold outlasts the test: pairs swap deterministically.
    let builder = LossyRelay::builder()
        .reorder(1.0)
        .reorder_hold(Duration::from_secs(3_600));
    let relay = relay_to(&upstream, builder).await;

    let arrived = pump(&relay, &upstream, 6).await;
    let link = relay.shutdown().await.client_to_server;

    assert_eq!(arrived, [1, 0, 3, 2, 5, 4]);
    assert_eq!(link.reordered, 3);
    assert_eq!(link.forwarded, 6);
}

#[tokio::test]
async fn a_reordered_duplicate_lands_after_a_later_packet() {
    let upstream = nonblocking_socket();
    let builder = LossyRelay::builder().duplicate(1.0).reorder(1.0);
    let relay = relay_to(&upstream, builder).await;

    let arrived = pump(&relay, &upstream, 6).await;
    let link = relay.shutdown().await.client_to_server;

    let mut sorted = arrived.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    // The held copy is the duplicate, so a swap always moves a packet behind a later one.
    assert!(link.reordered > 0);
    assert_ne!(arrived, sorted);
}

#[tokio::test]
async fn replies_reach_the_client_that_asked() {
    let (server, relay) = behind_relay(LossyRelay::builder()).await;
    let alice = socket();
    let bob = socket();
    alice.send_to(b"alice", relay.local_addr()).unwrap();
    bob.send_to(b"bob", relay.local_addr()).unwrap();

    let echo = async {
        let mut buf = [0; 64];
        let mut peers = BTreeSet::new();
        for _ in 0..2 {
            let (len, from) = server.recv_from(&mut buf).await.unwrap();
            peers.insert(from);
            server.send_to(&buf[..len], from).await.unwrap();
        }
        peers
    };
    let peers = tokio::time::timeout(GUARD, echo).await.unwrap();
    // One upstream socket per client, none of them the relay's public one.
    assert_eq!(peers.len(), 2);
    assert!(!peers.contains(&relay.local_addr()));

    let stats = tokio::time::timeout(GUARD, relay.wait_for(|s| s.server_to_client.forwarded == 2))
        .await
        .unwrap();
    assert_eq!(stats.clients, 2);
    for (client, expected) in [(&alice, &b"alice"[..]), (&bob, &b"bob"[..])] {
        client.set_nonblocking(true).unwrap();
        let got = drain(client);
        assert_eq!(got, [(expected.to_vec(), relay.local_addr())]);
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn directions_have_their_own_conditions() {
    let (server, relay) =
        behind_relay(LossyRelay::builder().server_to_client(LinkConditions::new().loss(1.0))).await;
    let client = socket();
    let serve = async {
        let mut buf = [0; 64];
        for i in 0..10u8 {
            client.send_to(&[i], relay.local_addr()).unwrap();
            let (len, from) = server.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..len], [i]);
            server.send_to(&buf[..len], from).await.unwrap();
        }
    };
    tokio::time::timeout(GUARD, serve).await.unwrap();
    let stats = tokio::time::timeout(GUARD, relay.wait_for(|s| s.server_to_client.received == 10))
        .await
        .unwrap();
    assert_eq!(stats.client_to_server.forwarded, 10);
    assert_eq!(stats.server_to_client.dropped, 10);
    assert_eq!(stats.server_to_client.forwarded, 0);
    relay.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn delay_and_jitter_hold_packets_back() {
    let delay = Duration::from_millis(200);
    let (server, relay) = behind_relay(
        LossyRelay::builder()
            .delay(delay)
            .jitter(Duration::from_millis(50)),
    )
    .await;
    let client = socket();
    let mut buf = [0; 16];
    for i in 0..5u8 {
        let sent = Instant::now();
        client.send_to(&[i], relay.local_addr()).unwrap();
        let (len, _) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], [i]);
        assert!(sent.elapsed() >= delay, "{:?}", sent.elapsed());
    }
    relay.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn bandwidth_paces_a_burst() {
    // 100-byte datagrams at 1,000 B/s: one every 100 ms.
    let (server, relay) = behind_relay(LossyRelay::builder().bandwidth(1_000)).await;
    let client = socket();
    let start = Instant::now();
    for i in 0..5u8 {
        client.send_to(&[i; 100], relay.local_addr()).unwrap();
    }
    let mut buf = [0; 128];
    for i in 0..5u8 {
        let (len, _) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], [i; 100]);
        let earliest = Duration::from_millis(100) * (u32::from(i) + 1);
        assert!(start.elapsed() >= earliest, "{i}: {:?}", start.elapsed());
    }
    relay.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_the_tail() {
    let upstream = nonblocking_socket();
    let relay = relay_to(
        &upstream,
        LossyRelay::builder().bandwidth(1_000).queue_capacity(3),
    )
    .await;
    let client = socket();
    for i in 0..10u8 {
        client.send_to(&[i; 100], relay.local_addr()).unwrap();
    }
    // The relay reads the whole burst before its sender runs: three fit, the rest is dropped
    // (one more may fit if the sender takes the head out first).
    let link = relay
        .wait_for(|s| s.client_to_server.received == 10 && s.in_flight() == 0)
        .await
        .client_to_server;
    assert!((6..=7).contains(&link.queue_dropped), "{link:?}");
    assert_eq!(link.forwarded + link.queue_dropped, 10);
    assert_eq!(link.dropped, 0);
    relay.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_held_packet_without_successor_is_released() {
    let (server, relay) = behind_relay(LossyRelay::builder().reorder(1.0)).await;
    let client = socket();
    let sent = Instant::now();
    client.send_to(b"alone", relay.local_addr()).unwrap();
    let mut buf = [0; 16];
    let (len, _) = server.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..len], b"alone");
    assert!(sent.elapsed() >= LinkConditions::DEFAULT_REORDER_HOLD);
    let link = relay.shutdown().await.client_to_server;
    assert_eq!((link.forwarded, link.reordered), (1, 0));
}

#[tokio::test]
async fn invalid_configurations_are_rejected() {
    let upstream: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let start = |builder: kwik_test_support::RelayBuilder| builder.start(upstream);

    let error = start(LossyRelay::builder().loss(1.5)).await.unwrap_err();
    assert!(matches!(
        error,
        RelayError::InvalidProbability {
            direction: Direction::ClientToServer,
            knob: "loss",
            ..
        }
    ));
    let error =
        start(LossyRelay::builder().server_to_client(LinkConditions::new().duplicate(f64::NAN)))
            .await
            .unwrap_err();
    assert!(matches!(
        error,
        RelayError::InvalidProbability {
            direction: Direction::ServerToClient,
            knob: "duplicate",
            ..
        }
    ));
    let error = start(LossyRelay::builder().reorder(-0.1))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        RelayError::InvalidProbability {
            knob: "reorder",
            ..
        }
    ));
    let error = start(LossyRelay::builder().bandwidth(0)).await.unwrap_err();
    assert!(matches!(error, RelayError::ZeroBandwidth { .. }));
    let error = start(LossyRelay::builder().queue_capacity(0))
        .await
        .unwrap_err();
    assert!(matches!(error, RelayError::ZeroQueueCapacity { .. }));
    let error = start(LossyRelay::builder().jitter(Duration::MAX))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        RelayError::DelayTooLong { knob: "jitter", .. }
    ));
    assert_eq!(
        error.to_string(),
        format!(
            "client-to-server jitter must be at most one day, got {:?}",
            Duration::MAX
        )
    );

    // Rejected before anything is bound or sent.
    let remote: SocketAddr = "192.0.2.1:443".parse().unwrap();
    let error = LossyRelay::builder().start(remote).await.unwrap_err();
    assert!(matches!(error, RelayError::NotLoopback(addr) if addr == remote));
}

#[tokio::test]
async fn shutdown_stops_relaying_and_frees_the_port() {
    let upstream = nonblocking_socket();
    let relay = relay_to(&upstream, LossyRelay::builder()).await;
    let arrived = pump(&relay, &upstream, 10).await;
    assert_eq!(arrived.len(), 10);

    let addr = relay.local_addr();
    let stats = relay.shutdown().await;
    assert_eq!(stats.client_to_server.forwarded, 10);
    assert_eq!(stats.clients, 1);
    // Every task is joined, so the relay's socket is closed and its port can be bound again.
    UdpSocket::bind(addr).unwrap();
}

#[tokio::test]
async fn dropping_the_relay_aborts_its_tasks() {
    let upstream = nonblocking_socket();
    let relay = relay_to(&upstream, LossyRelay::builder()).await;
    assert_eq!(pump(&relay, &upstream, 3).await.len(), 3);

    let addr = relay.local_addr();
    drop(relay);
    // Aborted tasks are dropped, closing their sockets, the next times the scheduler runs; a
    // handful of yields suffices, the bound only turns a leak into a failure.
    for _ in 0..1_000 {
        if UdpSocket::bind(addr).is_ok() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the relay's socket outlived the relay");
}
