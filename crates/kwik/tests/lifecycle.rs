//! The process-wide runtime behind `dial_addr` / `listen_addr`: created at the first call,
//! shared, shut down after the last session and listener, created afresh by a later call.
//!
//! One test in its own binary: the runtime is process-wide state.

use std::net::SocketAddr;
use std::time::Duration;

use kwik::{Identity, Trust};

const LOCALHOST: &str = "127.0.0.1:0";

/// Yields until `pool` is closed; the shutdown runs on a task spawned by the last drop.
async fn until_closed(pool: &kwik::pool::WorkerPool) -> bool {
    for _ in 0..10_000 {
        if pool.is_closed() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

#[test]
fn global_runtime_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("performance.toml");
    // Three workers tell this configuration's runtime apart from a default one; no metrics
    // endpoint on a fixed port.
    std::fs::write(
        &config,
        "[worker_pool]\nsize = 3\n\n[metrics]\nenabled = false\n",
    )
    .unwrap();
    // SAFETY: the only test of this binary, before any other thread of it exists.
    unsafe { std::env::set_var(kwik::CONFIG_ENV, &config) };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let addr: SocketAddr = LOCALHOST.parse().unwrap();
        assert!(
            kwik::global_pool().is_none(),
            "nothing before the first call"
        );

        // Created at the first call, from $KWIK_CONFIG.
        let listener = kwik::listen_addr(addr, &Identity::InsecureDevSelfSigned)
            .await
            .unwrap();
        let pool = kwik::global_pool().expect("created by listen_addr");
        assert_eq!(pool.workers(), 3);

        // Shared: both sessions and the listener use the same runtime and pool.
        let trust = Trust::InsecureDevSkipVerification;
        let first = kwik::dial_addr(listener.local_addr(), &trust)
            .await
            .unwrap();
        let second = kwik::dial_addr(listener.local_addr(), &trust)
            .await
            .unwrap();
        let accepted = listener.accept().await.unwrap();
        pool.submit(1_u64, async {}).await.unwrap().await.unwrap();
        let shared = kwik::global_pool().unwrap().stats().completed;
        assert!(shared >= 1, "the job ran on the global pool");

        // Alive while anything holds it.
        drop(first);
        drop(accepted);
        drop(listener);
        assert!(
            kwik::global_pool().is_some(),
            "the second session still holds it"
        );
        assert!(!pool.is_closed());

        // Shut down after the last one.
        drop(second);
        assert!(kwik::global_pool().is_none());
        assert!(until_closed(&pool).await, "the old pool was shut down");

        // A later call creates a fresh runtime.
        let listener = kwik::listen_addr(addr, &Identity::InsecureDevSelfSigned)
            .await
            .unwrap();
        let fresh = kwik::global_pool().expect("a fresh runtime");
        assert!(!fresh.is_closed());
        let session = kwik::dial_addr(listener.local_addr(), &trust)
            .await
            .unwrap();

        // close_global_pool forces it down while sessions still hold it.
        let report = kwik::close_global_pool(Duration::from_secs(5)).await;
        assert!(report.is_some_and(|r| r.is_complete()));
        assert!(fresh.is_closed());
        assert!(kwik::global_pool().is_none());
        assert!(
            kwik::close_global_pool(Duration::from_secs(1))
                .await
                .is_none()
        );
        drop(session);
        drop(listener);
    });
}
