//! `WorkerPool::builder()`: validated settings, then workers spawned on a tokio runtime.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::error::BuildError;
use crate::pool::WorkerPool;
use crate::queue::ShardQueue;
use crate::stats::{PoolObserver, ShardCounters, SharedCounters};
use crate::worker::{self, Shard, Shared};

/// The largest accepted `workers(n)`: far beyond any core count, low enough that a typo (an
/// extra zero or two) is caught rather than spawning a million tasks.
pub const MAX_WORKERS: usize = 4096;

/// The largest accepted per-shard `queue_capacity`. A shard's queue slots are allocated with the
/// pool (64 bytes each, the capacity rounded up to a power of two), so this caps them at 4 MiB
/// per shard; a pool exists to bound memory, and 65,536 queued jobs per shard is already far
/// more back-log than a worker can clear quickly.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 16;

/// The most queue slots a pool allocates in all (`workers × queue_capacity`, each capacity
/// rounded up to a power of two): 4,194,304 slots, 256 MiB. Each limit alone would let 4096
/// workers with 65,536 slots each ask for 16 GiB up front.
pub const MAX_QUEUE_SLOTS: usize = 1 << 22;

/// The seed's per-worker queue depth ("buffered channel of workers × 10").
const DEFAULT_QUEUE_CAPACITY: usize = 10;

/// The fewest workers a default pool gets, even on a 1- or 2-core machine: jobs that await I/O
/// would otherwise leave the cores idle.
const MIN_DEFAULT_WORKERS: usize = 4;

/// What a submission does when its shard's queue (or the pool-wide `max_queued`) is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// Wait for room (back-pressure onto the submitter). The default.
    #[default]
    Block,
    /// Hand the job back at once as [`SubmitError::Full`](crate::SubmitError::Full).
    Reject,
}

/// Settings for a [`WorkerPool`]; see [`WorkerPool::builder`].
#[must_use = "a builder does nothing until `build()` is called"]
pub struct PoolBuilder {
    workers: Option<usize>,
    queue_capacity: usize,
    max_queued: Option<usize>,
    overflow: Overflow,
    job_timeout: Option<Duration>,
    observer: Option<Arc<dyn PoolObserver>>,
    runtime: Option<Handle>,
}

impl PoolBuilder {
    pub(crate) fn new() -> Self {
        Self {
            workers: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_queued: None,
            overflow: Overflow::Block,
            job_timeout: None,
            observer: None,
            runtime: None,
        }
    }

    /// Number of workers, which is also the number of shards. Default: `max(cores, 4)`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().workers(3).build().unwrap();
    /// assert_eq!(pool.workers(), 3);
    /// # }
    /// ```
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Jobs each shard may hold queued (not counting the one running). Default: 10, at most
    /// [`MAX_QUEUE_CAPACITY`].
    ///
    /// Each shard allocates its queue slots up front: 64 bytes per slot, `per_worker` rounded up
    /// to a power of two (1 KiB per shard at the default), and a pool at most
    /// [`MAX_QUEUE_SLOTS`] in all. The jobs themselves are boxed when queued.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().queue_capacity(256).build().unwrap();
    /// # drop(pool); }
    /// ```
    pub fn queue_capacity(mut self, per_worker: usize) -> Self {
        self.queue_capacity = per_worker;
        self
    }

    /// Bound on the jobs queued across all shards. Default: none beyond
    /// `workers × queue_capacity`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().workers(8).max_queued(32).build().unwrap();
    /// # drop(pool); }
    /// ```
    pub fn max_queued(mut self, total: usize) -> Self {
        self.max_queued = Some(total);
        self
    }

    /// What a submission does on a full queue. Default: [`Overflow::Block`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::{Overflow, WorkerPool};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = WorkerPool::builder().overflow(Overflow::Reject).build().unwrap();
    /// # drop(pool); }
    /// ```
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Longest a job may run before it is dropped and counted as timed out. Default: no limit.
    /// A [`Job`](crate::Job) with its own timeout overrides it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder()
    ///     .job_timeout(Duration::from_secs(30))
    ///     .build()
    ///     .unwrap();
    /// # drop(pool); }
    /// ```
    pub fn job_timeout(mut self, timeout: Duration) -> Self {
        self.job_timeout = Some(timeout);
        self
    }

    /// Receives queue-wait and run time of every job. Default: none (no clock reads).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use kwik_pool::{Outcome, PoolObserver, WorkerPool};
    ///
    /// struct Log;
    /// impl PoolObserver for Log {
    ///     fn on_job(&self, queue_wait: Duration, run: Duration, outcome: Outcome) {
    ///         assert!(queue_wait + run < Duration::from_secs(60) && outcome == Outcome::Completed);
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = WorkerPool::builder().observer(Arc::new(Log)).build().unwrap();
    /// pool.submit(1_u64, async {}).await.unwrap().await.unwrap();
    /// # }
    /// ```
    pub fn observer(mut self, observer: Arc<dyn PoolObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The runtime the workers run on. Default: the runtime `build()` is called from.
    ///
    /// # Examples
    ///
    /// ```
    /// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let pool = kwik_pool::WorkerPool::builder()
    ///     .runtime(runtime.handle().clone())
    ///     .build()
    ///     .unwrap();
    /// # drop(pool);
    /// ```
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Validates the settings and starts the workers.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first bad value, or [`BuildError::NoRuntime`] outside a tokio
    /// runtime when no [`runtime`](Self::runtime) was given.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::{BuildError, WorkerPool};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// assert_eq!(WorkerPool::builder().workers(0).build().unwrap_err(), BuildError::ZeroWorkers);
    /// # }
    /// ```
    pub fn build(self) -> Result<WorkerPool, BuildError> {
        let workers = self.workers.unwrap_or_else(default_workers);
        match workers {
            0 => return Err(BuildError::ZeroWorkers),
            got if got > MAX_WORKERS => {
                return Err(BuildError::TooManyWorkers {
                    got,
                    max: MAX_WORKERS,
                });
            }
            _ => {}
        }
        match self.queue_capacity {
            0 => return Err(BuildError::ZeroQueueCapacity),
            got if got > MAX_QUEUE_CAPACITY => {
                return Err(BuildError::QueueCapacityTooLarge {
                    got,
                    max: MAX_QUEUE_CAPACITY,
                });
            }
            _ => {}
        }
        let slots = workers * self.queue_capacity.next_power_of_two();
        if slots > MAX_QUEUE_SLOTS {
            return Err(BuildError::TooManyQueueSlots {
                got: slots,
                max: MAX_QUEUE_SLOTS,
            });
        }
        if self.max_queued == Some(0) {
            return Err(BuildError::ZeroMaxQueued);
        }
        if self.job_timeout == Some(Duration::ZERO) {
            return Err(BuildError::ZeroJobTimeout);
        }
        let runtime = match self.runtime {
            Some(handle) => handle,
            None => Handle::try_current().map_err(|_| BuildError::NoRuntime)?,
        };

        // The shard queues already bound the total to workers × capacity; a semaphore is only
        // worth its cost when max_queued is tighter.
        let max_queued = self
            .max_queued
            .filter(|&total| total < workers.saturating_mul(self.queue_capacity))
            .map(Semaphore::new);
        let shared = Arc::new(Shared {
            closing: AtomicBool::new(false),
            counters: SharedCounters::default(),
            shards: (0..workers)
                .map(|_| Shard {
                    queue: ShardQueue::new(self.queue_capacity),
                    counters: ShardCounters::default(),
                })
                .collect(),
            max_queued,
            observer: self.observer,
            job_timeout: self.job_timeout,
        });
        let handles = (0..workers)
            .map(|index| runtime.spawn(worker::run(index, Arc::clone(&shared))))
            .collect();
        Ok(WorkerPool::from_parts(shared, handles, self.overflow))
    }
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_queued", &self.max_queued)
            .field("overflow", &self.overflow)
            .field("job_timeout", &self.job_timeout)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .max(MIN_DEFAULT_WORKERS)
}
