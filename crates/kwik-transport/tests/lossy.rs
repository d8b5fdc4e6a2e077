//! 64 MiB through a lossy relay (5% loss, reordering, duplication each way): identical bytes.

mod common;

use std::time::Duration;

use kwik_test_support::{LossyRelay, SERVER_NAME, TestPki};
use kwik_transport::{ClientConfig, ErrorCode, ServerConfig, dial, listen};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use common::Exec;

const TOTAL: usize = 64 << 20;

async fn through_lossy_relay(exec: Exec) {
    let pki = TestPki::generate().unwrap();
    let server_config = ServerConfig::builder()
        .certificate(pki.cert_chain(), pki.key())
        .executor(exec.executor())
        .build()
        .unwrap();
    let listener = listen("127.0.0.1:0".parse().unwrap(), &server_config).unwrap();
    let relay = LossyRelay::builder()
        .loss(0.05)
        .reorder(0.05)
        .duplicate(0.02)
        .seed(7)
        .start(listener.local_addr())
        .await
        .unwrap();
    let client_config = ClientConfig::builder()
        .add_root_certificate(pki.ca_cert())
        .server_name(SERVER_NAME)
        .executor(exec.executor())
        .build()
        .unwrap();
    let (client, server) =
        tokio::join!(dial(relay.local_addr(), &client_config), listener.accept());
    let (client, server) = (client.unwrap(), server.unwrap());

    let mut stream = client.open_stream().await.unwrap();
    let writer = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..TOTAL / chunk.len() {
            for b in chunk.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = (seed >> 24) as u8;
            }
            hasher.update(&chunk);
            stream.write_all(&chunk).await.unwrap();
        }
        stream.finish().unwrap();
        (hasher.finalize(), stream)
    });
    let bound = Duration::from_secs(120);
    let mut incoming = tokio::time::timeout(bound, server.accept_stream())
        .await
        .unwrap()
        .unwrap();
    let mut hasher = Sha256::new();
    let mut received = 0;
    tokio::time::timeout(bound, async {
        while let Some(chunk) = incoming.read_chunk(usize::MAX).await.unwrap() {
            received += chunk.len();
            hasher.update(&chunk);
        }
    })
    .await
    .unwrap();
    let (sent, stream) = writer.await.unwrap();
    assert_eq!(received, TOTAL);
    assert_eq!(hasher.finalize(), sent);

    drop((stream, incoming));
    client.close(ErrorCode::NO_ERROR, "done");
    tokio::time::timeout(bound, client.closed()).await.unwrap();
    tokio::time::timeout(bound, server.closed()).await.unwrap();
    listener.close(ErrorCode::NO_ERROR, "done");
    listener.closed().await;
    let stats = relay.shutdown().await;
    assert!(
        stats.client_to_server.dropped > 0,
        "the relay did lose packets: {stats:?}"
    );
}

both_executors!(sixty_four_mib_identical_through_loss, through_lossy_relay);
