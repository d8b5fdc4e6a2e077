//! The metrics endpoint's lifecycle: health, routing, typed bind errors, graceful shutdown.

mod common;

use kwik_metrics::{Metrics, MetricsServer, StartError};

async fn start() -> MetricsServer {
    MetricsServer::builder()
        .addr("127.0.0.1:0".parse().expect("addr"))
        .start(
            Metrics::builder()
                .process_metrics(false)
                .build()
                .expect("builds"),
        )
        .await
        .expect("server starts")
}

#[tokio::test]
async fn health_and_unknown_paths() {
    let server = start().await;
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0, "the bound port is read back");
    let health = common::get(addr, "/health").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_eq!(common::get(addr, "/nope").await.status, 404);
    assert_eq!(common::request(addr, "POST", "/metrics").await.status, 405);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn binding_a_taken_port_is_a_typed_error() {
    let server = start().await;
    let err = MetricsServer::builder()
        .addr(server.local_addr())
        .start(Metrics::new())
        .await
        .expect_err("port is taken");
    match err {
        StartError::Bind { addr, source } => {
            assert_eq!(addr, server.local_addr());
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("unexpected error {other:?}"),
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let server = start().await;
    let addr = server.local_addr();
    assert_eq!(common::get(addr, "/health").await.status, 200);
    server.shutdown().await.expect("clean shutdown");
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "listener still accepting after shutdown");
}

#[tokio::test]
async fn shutdown_waits_for_an_open_idle_connection_to_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start().await;
    // A keep-alive client that made one request and stays connected.
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).await.expect("read");
    assert!(
        std::str::from_utf8(&buf[..n])
            .expect("ascii")
            .starts_with("HTTP/1.1 200")
    );
    // Graceful shutdown closes the idle keep-alive connection instead of waiting on it.
    server
        .shutdown()
        .await
        .expect("idle connections close gracefully");
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .await
        .expect("server closed the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_metrics_follow_the_serving_runtime() {
    let metrics = Metrics::builder()
        .process_metrics(false)
        .build()
        .expect("builds");
    let server = MetricsServer::builder()
        .addr("127.0.0.1:0".parse().expect("addr"))
        .start(metrics)
        .await
        .expect("starts");
    let text = common::get(server.local_addr(), "/metrics").await.text();
    assert!(text.contains("kwik_runtime_workers 2\n"), "{text}");
    assert!(text.contains("kwik_runtime_alive_tasks "));
    assert!(
        !text.contains("process_threads"),
        "process metrics were disabled"
    );
    server.shutdown().await.expect("clean shutdown");
}
