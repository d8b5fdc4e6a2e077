//! Counters kept by the pool and the snapshot and observer hook that expose them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How a job ended, as reported to a [`PoolObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The job ran to completion (for a [`Job`](crate::Job): it returned `Ok`).
    Completed,
    /// A [`Job`](crate::Job) returned `Err`.
    Failed,
    /// The job panicked.
    Panicked,
    /// The job ran past its timeout and was dropped.
    TimedOut,
}

/// Receives the timing of every job, at the moment it ends.
///
/// The facade feeds Prometheus histograms from it; `kwik-pool` itself records nothing per job
/// beyond counters. The pool reads the clock only when an observer is installed (or a timeout
/// is set). Called on the worker, between two jobs of a shard: keep it short, and do not panic
/// (a panicking observer takes its worker down, and that shard then refuses jobs as closed).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use kwik_pool::{Outcome, PoolObserver, WorkerPool};
///
/// #[derive(Default)]
/// struct Count(AtomicU64);
///
/// impl PoolObserver for Count {
///     fn on_job(&self, _queue_wait: Duration, _run: Duration, outcome: Outcome) {
///         if outcome == Outcome::Completed {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let count = Arc::new(Count::default());
/// let pool = WorkerPool::builder().observer(count.clone()).build().unwrap();
/// pool.submit(1_u64, async {}).await.unwrap().await.unwrap();
/// assert_eq!(count.0.load(Ordering::Relaxed), 1);
/// # }
/// ```
pub trait PoolObserver: Send + Sync + 'static {
    /// One job ended: it waited `queue_wait` in its shard queue, then ran for `run`.
    fn on_job(&self, queue_wait: Duration, run: Duration, outcome: Outcome);
}

/// A snapshot of a pool's counters, read from atomics on demand.
///
/// Counters only grow, except `queued` and `running`, which are current values. The snapshot is
/// not atomic as a whole: under load, fields may be a few jobs apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Number of workers (= shards).
    pub workers: usize,
    /// Jobs accepted and waiting in a queue now.
    pub queued: usize,
    /// The highest `queued` seen since the pool was built. With a pool-wide `max_queued` this is
    /// exact; otherwise it is the sum of each shard's own peak (shards keep their counts apart so
    /// that submitting to one never touches another's cache line), which is exact with one busy
    /// shard and never below the pool-wide peak.
    pub queued_high_water: usize,
    /// Jobs running now (at most one per worker).
    pub running: usize,
    /// Jobs that ran to completion (a [`Job`](crate::Job) that returned `Err` counts as `failed`
    /// instead).
    pub completed: u64,
    /// [`Job`](crate::Job)s that returned `Err`.
    pub failed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Jobs dropped for running past their timeout.
    pub timed_out: u64,
    /// Submissions refused because the queue was full (`Reject` or a `try_` call).
    pub rejected: u64,
}

/// The counters one worker writes. Each worker owns its own line, so the hot path never
/// contends on a counter with another worker.
#[derive(Debug, Default)]
#[repr(align(128))] // two cache lines: no false sharing with the neighbouring shard's counters
pub(crate) struct ShardCounters {
    pub(crate) running: AtomicUsize,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) timed_out: AtomicU64,
}

impl ShardCounters {
    pub(crate) fn record(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Completed => &self.completed,
            Outcome::Failed => &self.failed,
            Outcome::Panicked => &self.panicked,
            Outcome::TimedOut => &self.timed_out,
        };
        bump(counter);
    }
}

/// Adds one to a shard's counter. Only the holder of the shard's `ACTIVE` bit writes them (its
/// worker, or a caller running a job in place), and the bit's atomic hand-over orders the
/// writers: a plain load and store, cheaper than a locked read-modify-write, and exact.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The pool-wide counters written by submitters. `queued` and its high-water mark are kept
/// here only when a pool-wide `max_queued` bound is set (its semaphore already makes every
/// submission touch shared state); otherwise each shard counts its own.
#[derive(Debug, Default)]
pub(crate) struct SharedCounters {
    pub(crate) queued: AtomicUsize,
    pub(crate) queued_high_water: AtomicUsize,
    pub(crate) rejected: AtomicU64,
}

impl SharedCounters {
    /// A job entered a queue.
    pub(crate) fn enqueued(&self) {
        let now = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        // Read first: the high-water mark is rarely beaten, and a load does not take the line.
        if now > self.queued_high_water.load(Ordering::Relaxed) {
            self.queued_high_water.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// A worker took a job off its queue.
    pub(crate) fn dequeued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }
}
