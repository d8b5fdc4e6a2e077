//! Helpers shared by the pool's integration tests.

use std::sync::Arc;
use std::time::Duration;

use kwik_pool::WorkerPool;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// A closed gate: jobs that pass through it wait until the test opens it.
pub(crate) fn gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(0))
}

/// Waits for one permit of `gate` and keeps it.
pub(crate) async fn pass(gate: &Semaphore) {
    gate.acquire().await.expect("gate never closed").forget();
}

/// A pool of `workers` workers whose queues hold `capacity` jobs each.
pub(crate) fn pool_of(workers: usize, capacity: usize) -> WorkerPool {
    WorkerPool::builder()
        .workers(workers)
        .queue_capacity(capacity)
        .build()
        .unwrap()
}

/// Yields until `cond` holds; the bound keeps a broken pool from hanging the suite.
pub(crate) async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition never became true");
}

/// Waits for every producer, then shuts the pool down and checks that every queued job ran.
pub(crate) async fn join_then_drain(pool: &WorkerPool, producers: Vec<JoinHandle<()>>) {
    for producer in producers {
        producer.await.unwrap();
    }
    assert!(pool.shutdown(Duration::from_secs(60)).await.is_complete());
}
