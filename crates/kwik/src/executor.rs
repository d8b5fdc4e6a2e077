//! The worker pool behind the transport's executor seam.

use kwik_pool::{RunInlineError, SubmitError, WorkerPool};
use kwik_transport::{Executor, ExecutorClosed, PacketJob, Submit};

/// Runs received packets on a [`WorkerPool`], one shard per path: the packets of a path are
/// decoded one after another in arrival order, while paths spread over the workers, and a full
/// shard makes the path reader wait (back-pressure through QUIC flow control to the peer).
/// When a packet's shard is idle, the path reader decodes it in place of the shard's worker
/// ([`WorkerPool::try_run_inline`]): same order and the same bound of one decode per shard at a
/// time, without the queue hop and wake-up that cost sparse traffic latency and CPU. The
/// pool key is the transport's executor key, unique per path in the process, so the paths of
/// all sessions spread over the shards.
///
/// Under `overflow = "reject"` a packet that meets a full shard is not dropped (a lost packet
/// would corrupt the stream): the path fails with "executor closed" instead.
#[derive(Debug, Clone)]
pub struct PoolExecutor {
    pool: WorkerPool,
}

impl PoolExecutor {
    /// An executor submitting to `pool`.
    pub fn new(pool: WorkerPool) -> Self {
        Self { pool }
    }

    /// The pool packets run on.
    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }
}

impl PoolExecutor {
    /// Runs `work` on the shard of `key`: what [`Executor::submit`] does with a packet, open to
    /// any closure so tests can watch the order.
    fn submit_work<F>(&self, key: u64, work: F) -> Submit<'_>
    where
        F: FnOnce() + Send + 'static,
    {
        // The common case with sparse packets: the shard is idle, so the reader decodes the
        // packet itself, in the worker's stead (no queue slot, no wake-up, no task switch).
        let work = match self.pool.try_run_inline(key, work) {
            // A panic was caught and counted by the pool, as on a worker.
            Ok(()) | Err(RunInlineError::Panicked) => return Submit::ready(Ok(())),
            Err(RunInlineError::Closed(_)) => return Submit::ready(Err(ExecutorClosed)),
            Err(RunInlineError::Busy(work)) => work,
        };
        // Queued behind the shard's other jobs; no allocation for the submission future while
        // the shard has room.
        match self.pool.try_execute(key, async move { work() }) {
            Ok(()) => Submit::ready(Ok(())),
            Err(SubmitError::Closed(_)) => Submit::ready(Err(ExecutorClosed)),
            Err(SubmitError::Full(job)) => Submit::from_future(async move {
                self.pool
                    .execute(key, job)
                    .await
                    .map_err(|_| ExecutorClosed)
            }),
        }
    }
}

impl Executor for PoolExecutor {
    fn submit(&self, key: u64, job: PacketJob) -> Submit<'_> {
        self.submit_work(key, move || job.run())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// Path readers each submit under their own key, through tiny queues (every submission past
    /// the first meets a full shard): each reader's jobs must run in its order, and the readers
    /// must spread over more than one shard.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn per_path_order_under_load_and_sessions_spread() {
        const READERS: usize = 16;
        const PACKETS: usize = 500;
        let pool = WorkerPool::builder()
            .workers(4)
            .queue_capacity(1)
            .build()
            .unwrap();
        let executor = Arc::new(PoolExecutor::new(pool.clone()));
        let log = Arc::new(Mutex::new(vec![Vec::new(); READERS]));
        let mut readers = tokio::task::JoinSet::new();
        for reader in 0..READERS {
            let executor = Arc::clone(&executor);
            let log = Arc::clone(&log);
            readers.spawn(async move {
                let key = reader as u64;
                let shard = executor.pool().shard_for(key);
                for seq in 0..PACKETS {
                    let log = Arc::clone(&log);
                    executor
                        .submit_work(key, move || log.lock().unwrap()[reader].push(seq))
                        .await
                        .unwrap();
                }
                shard
            });
        }
        let mut shards = std::collections::HashSet::new();
        while let Some(shard) = readers.join_next().await {
            shards.insert(shard.unwrap());
        }
        assert!(pool.shutdown(Duration::from_secs(10)).await.is_complete());
        let log = log.lock().unwrap();
        for (reader, seen) in log.iter().enumerate() {
            assert_eq!(*seen, (0..PACKETS).collect::<Vec<_>>(), "reader {reader}");
        }
        assert!(shards.len() > 1, "every path landed on one shard");
    }

    #[tokio::test]
    async fn a_closed_pool_refuses_packets() {
        let pool = WorkerPool::builder().workers(1).build().unwrap();
        let executor = PoolExecutor::new(pool.clone());
        pool.abort();
        assert!(executor.submit_work(0, || {}).await.is_err());
    }
}
