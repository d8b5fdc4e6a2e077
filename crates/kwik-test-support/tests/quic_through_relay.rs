//! Raw quinn through the lossy relay: QUIC's recovery must hide 5% loss, reordering and
//! duplication completely, and several clients must share one relay.

use std::time::Duration;

use kwik_test_support::{LossyRelay, RelayStats, SERVER_NAME, TestPki};
use quinn::{Connection, Endpoint};
use sha2::{Digest, Sha256};

const ALPN: &[u8] = b"kwik-test";

/// Guards against hangs; never reached when QUIC and the relay work.
const GUARD: Duration = Duration::from_secs(120);

const PAYLOAD: usize = 8 << 20;

/// `len` bytes of a fixed xorshift stream: incompressible, reproducible.
fn payload(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A server, a relay in front of it and client endpoints (each its own UDP socket, so each its
/// own flow through the relay).
struct Setup {
    server: Endpoint,
    clients: Vec<Endpoint>,
    relay: LossyRelay,
}

async fn through(relay: kwik_test_support::RelayBuilder, clients: usize) -> Setup {
    let pki = TestPki::generate().unwrap();
    let server = Endpoint::server(
        pki.quinn_server_config(&[ALPN]).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let relay = relay.start(server.local_addr().unwrap()).await.unwrap();
    let clients = (0..clients)
        .map(|_| {
            let mut client = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            client.set_default_client_config(pki.quinn_client_config(&[ALPN]).unwrap());
            client
        })
        .collect();
    Setup {
        server,
        clients,
        relay,
    }
}

impl Setup {
    async fn connect(&self, client: usize) -> Connection {
        let connecting = self.clients[client]
            .connect(self.relay.local_addr(), SERVER_NAME)
            .unwrap();
        connecting.await.unwrap()
    }

    async fn stop(self) -> RelayStats {
        for client in &self.clients {
            client.close(0u32.into(), b"done");
            client.wait_idle().await;
        }
        self.server.close(0u32.into(), b"done");
        self.server.wait_idle().await;
        self.relay.shutdown().await
    }
}

/// Serves one connection: echoes every bidirectional stream once it has been read to the end.
async fn echo(connection: Connection) {
    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
        let data = recv.read_to_end(2 * PAYLOAD).await.unwrap();
        send.write_all(&data).await.unwrap();
        send.finish().unwrap();
    }
}

async fn round_trip(connection: &Connection, data: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let write = async {
        send.write_all(data).await.unwrap();
        send.finish().unwrap();
    };
    let (_, echoed) = tokio::join!(write, recv.read_to_end(2 * PAYLOAD));
    echoed.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_mib_survive_loss_reordering_and_duplication() {
    let setup = through(
        LossyRelay::builder()
            .loss(0.05)
            .reorder(0.05)
            .duplicate(0.05)
            .seed(2024),
        1,
    )
    .await;
    let data = payload(PAYLOAD);

    let exchange = async {
        let serve = async { echo(setup.server.accept().await.unwrap().await.unwrap()).await };
        let ask = async {
            let connection = setup.connect(0).await;
            let echoed = round_trip(&connection, &data).await;
            connection.close(0u32.into(), b"done");
            echoed
        };
        tokio::join!(serve, ask).1
    };
    let echoed = tokio::time::timeout(GUARD, exchange).await.unwrap();

    assert_eq!(echoed.len(), data.len());
    assert_eq!(Sha256::digest(&echoed), Sha256::digest(&data));
    assert!(echoed == data);

    let stats = setup.stop().await;
    // The payload crossed both directions, so both met every impairment.
    for link in [stats.client_to_server, stats.server_to_client] {
        assert!(link.dropped > 0, "{stats:?}");
        assert!(link.duplicated > 0, "{stats:?}");
        assert!(link.reordered > 0, "{stats:?}");
    }
}

#[tokio::test]
async fn several_clients_share_a_relay() {
    const CLIENTS: usize = 3;
    let setup = through(LossyRelay::builder().loss(0.02).seed(9), CLIENTS).await;

    let serve = async {
        let mut served = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let connection = setup.server.accept().await.unwrap().await.unwrap();
            served.spawn(echo(connection));
        }
        while let Some(done) = served.join_next().await {
            done.unwrap();
        }
    };
    let ask = async {
        let mut remotes = Vec::new();
        for i in 0..CLIENTS {
            let connection = setup.connect(i).await;
            let message = format!("client {i}");
            let echoed = round_trip(&connection, message.as_bytes()).await;
            assert_eq!(echoed, message.as_bytes());
            remotes.push(connection);
        }
        for connection in &remotes {
            connection.close(0u32.into(), b"done");
        }
    };
    tokio::time::timeout(GUARD, async { tokio::join!(serve, ask) })
        .await
        .unwrap();

    let stats = setup.stop().await;
    assert_eq!(stats.clients, CLIENTS as u64);
}
