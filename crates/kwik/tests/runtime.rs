//! `Runtime::from_config` with every shipped profile, the components it wires, and sessions
//! through the pool executor under load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kwik::config::{Dispatch, PerformanceConfig};
use kwik::{Identity, Runtime, Trust};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn profile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .join(name)
}

/// A configuration whose endpoints bind ephemeral ports on 127.0.0.1.
fn local(mut config: PerformanceConfig) -> PerformanceConfig {
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.profiling.listen = "127.0.0.1:0".parse().unwrap();
    config.profiling.pprof_port = None;
    config
}

/// A runtime built from `config` and a listener of it on an ephemeral 127.0.0.1 port, with a
/// development self-signed certificate.
async fn listening(config: &PerformanceConfig) -> (Runtime, kwik::Listener) {
    let runtime = Runtime::from_config(config).await.unwrap();
    let listener = runtime
        .listen(
            "127.0.0.1:0".parse().unwrap(),
            &Identity::InsecureDevSelfSigned,
        )
        .unwrap();
    (runtime, listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_config_with_every_profile() {
    let mut seen = 0;
    for entry in std::fs::read_dir(profile("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let config = local(PerformanceConfig::load(&path).unwrap());
        let runtime = Runtime::from_config(&config)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(
            runtime.pool().workers(),
            config.worker_pool.effective_size(cores),
            "{}",
            path.display()
        );
        assert_eq!(
            runtime.buffers().buffer_size(),
            config.buffer_pool.buffer_size.as_usize()
        );
        assert_eq!(runtime.cache().is_some(), config.cache.enabled);
        assert_eq!(runtime.metrics().is_some(), config.metrics.enabled);
        if let Some(addr) = runtime.metrics_addr() {
            assert!(addr.ip().is_loopback() && addr.port() != 0);
        }
        assert!(runtime.shutdown(Duration::from_secs(5)).await.is_complete());
        assert!(runtime.is_shut_down());
        seen += 1;
    }
    assert!(seen >= 3, "configs/ holds the default and two profiles");
}

/// kwik-config checks the pool's limits itself, so that `kwik config check` reports them with
/// the file and line; they must be the pool's own.
#[test]
fn the_configs_pool_limits_are_the_pools() {
    assert_eq!(kwik::config::MAX_POOL_WORKERS, kwik::pool::MAX_WORKERS);
    assert_eq!(
        kwik::config::MAX_POOL_BUFFER_SIZE,
        kwik::pool::MAX_QUEUE_CAPACITY
    );
}

#[tokio::test]
async fn a_bad_section_is_a_typed_error() {
    let mut config = local(PerformanceConfig::default());
    config.buffer_pool.thread_cache = config.buffer_pool.max_pooled + 1;
    let err = Runtime::from_config(&config).await.unwrap_err();
    assert!(matches!(err, kwik::RuntimeError::Buffer(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_publish_pool_buffer_and_cache_stats() {
    let runtime = Runtime::from_config(&local(PerformanceConfig::default()))
        .await
        .unwrap();
    let cache = runtime.cache().unwrap();
    cache
        .insert("k".to_owned(), bytes::Bytes::from_static(b"v"))
        .unwrap();
    assert!(cache.get("k").is_some());
    runtime
        .pool()
        .submit(1_u64, async {})
        .await
        .unwrap()
        .await
        .unwrap();
    let text = runtime.metrics().unwrap().encode_text().unwrap();
    assert!(text.contains("kwik_cache_hits_total 1"), "{text}");
    assert!(text.contains("kwik_cache_entries 1"));
    assert!(text.contains(r#"kwik_pool_jobs_total{outcome="ok"} 1"#));
    assert!(
        text.contains("kwik_pool_run_seconds_count 1"),
        "observer hook"
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

/// Several sessions, several streams each, through a pool of 2 workers with 1-job queues (the
/// path readers constantly wait on full shards): every byte arrives, in order, on every stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_through_the_pool_under_load() {
    const SESSIONS: usize = 4;
    const STREAMS: usize = 4;
    const BYTES: usize = 256 * 1024;
    let mut config = local(PerformanceConfig::default());
    config.metrics.enabled = false;
    config.transport.dispatch = Dispatch::Pool;
    config.worker_pool.size = 2;
    config.worker_pool.buffer_size = 1;
    let (runtime, listener) = listening(&config).await;
    let addr = listener.local_addr();

    let server = tokio::spawn(async move {
        let mut echoes = tokio::task::JoinSet::new();
        for _ in 0..SESSIONS {
            let session = listener.accept().await.unwrap();
            echoes.spawn(async move {
                let mut streams = tokio::task::JoinSet::new();
                for _ in 0..STREAMS {
                    let mut stream = session.accept_stream().await.unwrap();
                    streams.spawn(async move {
                        let (mut read, mut write) = tokio::io::split(&mut stream);
                        tokio::io::copy(&mut read, &mut write).await.unwrap();
                        write.shutdown().await.unwrap();
                    });
                }
                while let Some(done) = streams.join_next().await {
                    done.unwrap();
                }
                session
            });
        }
        let mut sessions = Vec::new();
        while let Some(done) = echoes.join_next().await {
            sessions.push(done.unwrap());
        }
        (listener, sessions)
    });

    let mut clients = tokio::task::JoinSet::new();
    for s in 0..SESSIONS {
        let runtime = runtime.clone();
        clients.spawn(async move {
            let session = runtime
                .dial(addr, &Trust::InsecureDevSkipVerification)
                .await
                .unwrap();
            let mut streams = tokio::task::JoinSet::new();
            for t in 0..STREAMS {
                let stream = session.open_stream().await.unwrap();
                streams.spawn(async move {
                    let data: Vec<u8> = (0..BYTES).map(|i| (i * 31 + s * 7 + t) as u8).collect();
                    let (mut read, mut write) = stream.into_split();
                    let sent = data.clone();
                    let writer = tokio::spawn(async move {
                        write.write_all(&sent).await.unwrap();
                        write.shutdown().await.unwrap();
                    });
                    let mut back = Vec::with_capacity(BYTES);
                    read.read_to_end(&mut back).await.unwrap();
                    writer.await.unwrap();
                    assert!(back == data, "session {s} stream {t}: echo differs");
                });
            }
            while let Some(done) = streams.join_next().await {
                done.unwrap();
            }
            session
        });
    }
    let mut sessions = Vec::new();
    while let Some(done) = clients.join_next().await {
        sessions.push(done.unwrap());
    }
    let (listener, server_sessions) = server.await.unwrap();
    let stats = runtime.pool().stats();
    assert!(stats.completed > 0, "packets ran on the pool: {stats:?}");
    assert_eq!(stats.failed + stats.panicked + stats.timed_out, 0);
    drop((sessions, server_sessions, listener));
    assert!(runtime.shutdown(Duration::from_secs(5)).await.is_complete());
}

/// `prepare_dial` sets up the client side ahead of time; a dial then uses it, and a shut-down
/// runtime refuses it like a dial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_dial_then_dial() {
    let mut config = local(PerformanceConfig::default());
    config.metrics.enabled = false;
    let (runtime, listener) = listening(&config).await;
    let addr = listener.local_addr();
    let trust = Trust::InsecureDevSkipVerification;
    runtime.prepare_dial(addr, &trust).unwrap();
    let (dialed, accepted) = tokio::join!(runtime.dial(addr, &trust), listener.accept());
    let (dialed, accepted) = (dialed.unwrap(), accepted.unwrap());
    dialed.close(kwik::transport::ErrorCode::NO_ERROR, "done");
    drop(accepted);
    runtime.shutdown(Duration::from_secs(5)).await;
    let err = runtime.prepare_dial(addr, &trust).unwrap_err();
    assert!(matches!(err, kwik::DialError::ShutDown), "{err:?}");
}
