//! The pool handle: keyed submission, unkeyed spawn, stats, shutdown.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use foldhash::fast::FixedState;
use tokio::sync::{SemaphorePermit, TryAcquireError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::builder::{Overflow, PoolBuilder};
use crate::error::{RunInlineError, SubmitError, TrySubmitError};
use crate::queue::{Refused, Reservation, ShardQueue};
use crate::stats::{Outcome, Stats};
use crate::task::{Detached, Envelope, Job, JobHandle, Reported, Task};
use crate::worker::{Shard, Shared};

/// Fixed so that a key maps to the same shard in every pool of the same size (tests and logs
/// can name a key's shard); keys are local identifiers such as path ids, not attacker input
/// that could aim at one shard.
const KEY_HASH_SEED: u64 = 0x6b77_696b_706f_6f6c;

/// A sharded worker pool: per-key FIFO, bounded queues, one worker task per shard.
///
/// A job submitted under a key runs on shard `hash(key)` mapped onto `workers`; each shard's
/// worker runs its jobs one at a time in queue order, so jobs with the same key run one after
/// another in submission order, while different keys spread over the workers. Queues are
/// bounded: when a shard is full, a submission waits ([`Overflow::Block`]) or gets its job back
/// ([`Overflow::Reject`]). Cloning is cheap; every clone is the same pool.
///
/// # Examples
///
/// ```
/// use kwik_pool::WorkerPool;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = WorkerPool::builder().workers(4).build().unwrap();
/// let handle = pool.submit(7_u64, async { "decoded" }).await.unwrap();
/// assert_eq!(handle.await.unwrap(), "decoded");
/// pool.shutdown(std::time::Duration::from_secs(1)).await;
/// # }
/// ```
#[derive(Clone)]
pub struct WorkerPool {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    overflow: Overflow,
    hasher: FixedState,
    /// Taken by `shutdown`/`abort`; dropping the handles detaches the workers.
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// What [`WorkerPool::shutdown`] could not finish before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs still queued at the deadline; they never ran (their handles report
    /// [`JobError::PoolClosed`](crate::JobError::PoolClosed)).
    pub abandoned: usize,
    /// Jobs running at the deadline; they were cancelled (their handles report
    /// [`JobError::Cancelled`](crate::JobError::Cancelled)).
    pub interrupted: usize,
}

impl ShutdownReport {
    /// Whether every queued job ran before the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().build().unwrap();
    /// pool.execute(1_u64, async {}).await.unwrap();
    /// let report = pool.shutdown(std::time::Duration::from_secs(1)).await;
    /// assert!(report.is_complete());
    /// # }
    /// ```
    pub fn is_complete(&self) -> bool {
        self.abandoned == 0 && self.interrupted == 0
    }
}

impl Drop for Inner {
    /// The last handle is gone: nothing can submit any more, so every shard is closed and its
    /// worker stops once the queue is drained.
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Room reserved in one shard (and in the pool-wide bound): sending can no longer fail, so the
/// job is only boxed once it is sure to be queued. Dropped unsent, it gives the room back.
struct Admission<'a> {
    queue: &'a ShardQueue,
    slot: Reservation,
    bound: Option<SemaphorePermit<'a>>,
    pushed: bool,
}

impl<'a> Admission<'a> {
    fn new(queue: &'a ShardQueue, slot: Reservation, bound: Option<SemaphorePermit<'a>>) -> Self {
        Self {
            queue,
            slot,
            bound,
            pushed: false,
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.pushed {
            self.queue.unreserve(self.slot);
        }
    }
}

impl WorkerPool {
    /// Starts building a pool; see [`PoolBuilder`] for the settings and their defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::{Overflow, WorkerPool};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = WorkerPool::builder()
    ///     .workers(4)
    ///     .queue_capacity(64)
    ///     .overflow(Overflow::Block)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.stats().workers, 4);
    /// # }
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    pub(crate) fn from_parts(
        shared: Arc<Shared>,
        workers: Vec<JoinHandle<()>>,
        overflow: Overflow,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared,
                overflow,
                hasher: FixedState::with_seed(KEY_HASH_SEED),
                workers: Mutex::new(workers),
            }),
        }
    }

    /// Submits `job` under `key` and returns a handle to its result.
    ///
    /// Jobs with equal keys run one after another, in submission order. When the key's shard is
    /// full this waits for room under [`Overflow::Block`] and returns
    /// [`SubmitError::Full`] under [`Overflow::Reject`].
    ///
    /// # Errors
    ///
    /// The job is handed back as `Full` (see above) or `Closed` after
    /// [`shutdown`](Self::shutdown) or [`abort`](Self::abort).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().build().unwrap();
    /// let first = pool.submit("client-a", async { 1 }).await.unwrap();
    /// let second = pool.submit("client-a", async { 2 }).await.unwrap();
    /// assert_eq!((first.await.unwrap(), second.await.unwrap()), (1, 2));
    /// # }
    /// ```
    pub async fn submit<K, F>(&self, key: K, job: F) -> Result<JobHandle<F::Output>, SubmitError<F>>
    where
        K: Hash,
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shard = self.shard_for(key);
        let (admission, job) = match self.admit_now(shard) {
            Some(admission) => (admission, job),
            None => self.admit(shard, job).await?,
        };
        Ok(self.send_reported(admission, job))
    }

    /// Like [`submit`](Self::submit) but never waits: a full shard returns
    /// [`SubmitError::Full`] whatever the overflow policy.
    ///
    /// # Errors
    ///
    /// The job is handed back as `Full` or `Closed`.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::TrySubmitError;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().workers(1).queue_capacity(1).build().unwrap();
    /// let queued = pool.try_submit(0_u64, async { 1 }).unwrap();
    /// // The worker has not run yet (same thread): the one slot is taken.
    /// let refused = pool.try_submit(0_u64, async { 2 }).unwrap_err();
    /// assert!(matches!(refused, TrySubmitError::Full(_)));
    /// assert_eq!(queued.await.unwrap(), 1);
    /// # }
    /// ```
    pub fn try_submit<K, F>(
        &self,
        key: K,
        job: F,
    ) -> Result<JobHandle<F::Output>, TrySubmitError<F>>
    where
        K: Hash,
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shard = self.shard_for(key);
        let admission = self.try_admit(shard, job)?;
        Ok(self.send_reported(admission.0, admission.1))
    }

    /// Submits a fire-and-forget job under `key`: same ordering and back-pressure as
    /// [`submit`](Self::submit), no result channel. Boxing the job is its only allocation; this
    /// is the packet path.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().build().unwrap();
    /// let seen = Arc::new(AtomicU32::new(0));
    /// for _ in 0..100 {
    ///     let seen = seen.clone();
    ///     pool.execute(3_u64, async move { seen.fetch_add(1, Ordering::Relaxed); }).await.unwrap();
    /// }
    /// pool.shutdown(Duration::from_secs(1)).await;
    /// assert_eq!(seen.load(Ordering::Relaxed), 100);
    /// # }
    /// ```
    pub async fn execute<K, F>(&self, key: K, job: F) -> Result<(), SubmitError<F>>
    where
        K: Hash,
        F: Future<Output = ()> + Send + 'static,
    {
        let shard = self.shard_for(key);
        let (admission, job) = match self.admit_now(shard) {
            Some(admission) => (admission, job),
            None => self.admit(shard, job).await?,
        };
        self.send_detached(admission, job);
        Ok(())
    }

    /// Like [`execute`](Self::execute) but never waits.
    ///
    /// # Errors
    ///
    /// As [`try_submit`](Self::try_submit).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().build().unwrap();
    /// pool.try_execute(1_u64, async {}).unwrap();
    /// # }
    /// ```
    pub fn try_execute<K, F>(&self, key: K, job: F) -> Result<(), TrySubmitError<F>>
    where
        K: Hash,
        F: Future<Output = ()> + Send + 'static,
    {
        let shard = self.shard_for(key);
        let admission = self.try_admit(shard, job)?;
        self.send_detached(admission.0, admission.1);
        Ok(())
    }

    /// Runs `job` at once, on the calling thread, if the shard of `key` is idle: nothing queued
    /// and no job running. Otherwise the job is handed back untouched, to be submitted.
    ///
    /// The caller then stands in for the shard's worker: while `job` runs, the shard's other
    /// jobs queue behind it and its worker waits, so per-key order and the bound of one running
    /// job per shard hold as if the worker had run it, and the job is counted and observed the
    /// same way. What the worker would have cost, a queue slot and a wake-up, is saved: this is
    /// the fast path for short synchronous jobs arriving sparsely, such as packets to decode.
    /// A panic is caught and counted, as on a worker. There is no timeout (a synchronous call
    /// cannot be cancelled), so keep such jobs short: a long one blocks the caller and its shard.
    ///
    /// # Errors
    ///
    /// [`RunInlineError::Busy`] (the shard has queued or running jobs) or
    /// [`RunInlineError::Closed`] hand the job back; [`RunInlineError::Panicked`] says it ran
    /// and panicked.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::RunInlineError;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().build().unwrap();
    /// let decode = || 40 + 2;
    /// let value = match pool.try_run_inline(7_u64, decode) {
    ///     Ok(value) => value,
    ///     // The shard is busy: queue the job behind the others of its key.
    ///     Err(RunInlineError::Busy(job)) => {
    ///         pool.submit(7_u64, async move { job() }).await.unwrap().await.unwrap()
    ///     }
    ///     Err(err) => panic!("{err}"),
    /// };
    /// assert_eq!((value, pool.stats().completed), (42, 1));
    /// # }
    /// ```
    pub fn try_run_inline<K, F, R>(&self, key: K, job: F) -> Result<R, RunInlineError<F>>
    where
        K: Hash,
        F: FnOnce() -> R,
    {
        let shared = &self.inner.shared;
        let Shard { queue, counters } = &shared.shards[self.shard_for(key)];
        match queue.try_claim_idle() {
            Ok(()) => {}
            Err(Refused::Full) => return Err(RunInlineError::Busy(job)),
            Err(Refused::Closed) => return Err(RunInlineError::Closed(job)),
        }
        // Gives the shard back however the job ends, unwinding included.
        struct Claim<'a>(&'a ShardQueue);
        impl Drop for Claim<'_> {
            fn drop(&mut self) {
                self.0.release_claim();
            }
        }
        let claim = Claim(queue);
        let started = shared.observer.as_ref().map(|_| Instant::now());
        counters.running.store(1, Ordering::Relaxed);
        let result = catch_unwind(AssertUnwindSafe(job));
        counters.running.store(0, Ordering::Relaxed);
        let outcome = match result {
            Ok(_) => Outcome::Completed,
            Err(_) => Outcome::Panicked,
        };
        counters.record(outcome);
        if let (Some(observer), Some(started)) = (&shared.observer, started) {
            observer.on_job(Duration::ZERO, started.elapsed(), outcome);
        }
        drop(claim);
        result.map_err(|_payload| RunInlineError::Panicked)
    }

    /// Submits an unkeyed job to the least-loaded shard (fewest queued plus running).
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().build().unwrap();
    /// let handle = pool.spawn(async { 5 * 5 }).await.unwrap();
    /// assert_eq!(handle.await.unwrap(), 25);
    /// # }
    /// ```
    pub async fn spawn<F>(&self, job: F) -> Result<JobHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shard = self.least_loaded();
        let (admission, job) = match self.admit_now(shard) {
            Some(admission) => (admission, job),
            None => self.admit(shard, job).await?,
        };
        Ok(self.send_reported(admission, job))
    }

    /// Like [`spawn`](Self::spawn) but never waits.
    ///
    /// # Errors
    ///
    /// As [`try_submit`](Self::try_submit).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().build().unwrap();
    /// assert_eq!(pool.try_spawn(async { 1 }).unwrap().await.unwrap(), 1);
    /// # }
    /// ```
    pub fn try_spawn<F>(&self, job: F) -> Result<JobHandle<F::Output>, TrySubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let admission = self.try_admit(self.least_loaded(), job)?;
        Ok(self.send_reported(admission.0, admission.1))
    }

    /// Submits a [`Job`] under `key`: its own timeout replaces the pool's, its id is on the
    /// handle, and an `Err` result is counted as failed.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// See [`Job`].
    pub async fn submit_job<K, J>(
        &self,
        key: K,
        job: J,
    ) -> Result<JobHandle<Result<J::Output, J::Error>>, SubmitError<J>>
    where
        K: Hash,
        J: Job,
    {
        let shard = self.shard_for(key);
        let (admission, job) = match self.admit_now(shard) {
            Some(admission) => (admission, job),
            None => self.admit(shard, job).await?,
        };
        let (id, timeout) = (job.id(), job.timeout());
        let (task, handle) = Reported::task(job.execute(), Result::is_ok, Some(id));
        self.send(admission, task, timeout);
        Ok(handle)
    }

    /// The shard (`0..workers`) that jobs submitted under `key` run on.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().workers(4).build().unwrap();
    /// assert_eq!(pool.shard_for(42_u64), pool.shard_for(42_u64));
    /// assert!(pool.shard_for("path-1") < 4);
    /// # }
    /// ```
    pub fn shard_for<K: Hash>(&self, key: K) -> usize {
        let hash = self.inner.hasher.hash_one(key);
        // Multiply-shift maps the hash onto 0..workers without a division.
        ((u128::from(hash) * self.workers() as u128) >> 64) as usize
    }

    /// Number of workers (= shards).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// assert_eq!(kwik_pool::WorkerPool::builder().workers(2).build().unwrap().workers(), 2);
    /// # }
    /// ```
    pub fn workers(&self) -> usize {
        self.inner.shared.shards.len()
    }

    /// A snapshot of the pool's counters.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().workers(2).build().unwrap();
    /// pool.submit(1_u64, async {}).await.unwrap().await.unwrap();
    /// let stats = pool.stats();
    /// assert_eq!((stats.workers, stats.completed, stats.queued), (2, 1, 0));
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        let shared = &self.inner.shared;
        let mut stats = Stats {
            workers: self.workers(),
            rejected: shared.counters.rejected.load(Ordering::Relaxed),
            ..Stats::default()
        };
        for Shard { queue, counters } in &shared.shards {
            stats.queued += queue.len();
            stats.queued_high_water += queue.high_water();
            stats.running += counters.running.load(Ordering::Relaxed);
            stats.completed += counters.completed.load(Ordering::Relaxed);
            stats.failed += counters.failed.load(Ordering::Relaxed);
            stats.panicked += counters.panicked.load(Ordering::Relaxed);
            stats.timed_out += counters.timed_out.load(Ordering::Relaxed);
        }
        if shared.max_queued.is_some() {
            // The pool-wide bound keeps an exact pool-wide mark; the sum of the shards' own
            // marks is only an upper bound of it.
            stats.queued_high_water = shared.counters.queued_high_water.load(Ordering::Relaxed);
        }
        stats
    }

    /// Whether [`shutdown`](Self::shutdown) or [`abort`](Self::abort) was called.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().build().unwrap();
    /// assert!(!pool.is_closed());
    /// pool.abort();
    /// assert!(pool.is_closed());
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closing()
    }

    /// Stops intake, runs every job already queued, and waits for the workers up to `deadline`.
    ///
    /// Submissions made after the call get their job back as `Closed`. If the deadline passes,
    /// the workers are aborted and the report counts the jobs left queued and those
    /// interrupted. Only the first call waits for the workers; later calls return at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().build().unwrap();
    /// let handle = pool.submit(1_u64, async { 9 }).await.unwrap();
    /// let report = pool.shutdown(Duration::from_secs(5)).await;
    /// assert!(report.is_complete());
    /// assert_eq!(handle.await.unwrap(), 9);
    /// assert!(pool.submit(1_u64, async { 0 }).await.unwrap_err().is_closed());
    /// # }
    /// ```
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.close();
        let mut workers = self.take_workers();
        let until = Instant::now() + deadline;
        let drained = tokio::time::timeout_at(until, async {
            // Pop only once joined: a handle cut short by the deadline is still in the vector.
            while let Some(worker) = workers.last_mut() {
                let _ = worker.await;
                workers.pop();
            }
        })
        .await
        .is_ok();
        let mut report = ShutdownReport::default();
        if !drained {
            let stats = self.stats();
            report.abandoned = stats.queued;
            report.interrupted = stats.running;
            for worker in &workers {
                worker.abort();
            }
            for worker in workers {
                // Cancelled by us: the join error carries nothing to report.
                let _ = worker.await;
            }
        }
        self.release_bound_waiters();
        report
    }

    /// Stops at once: refuses new jobs and cancels the workers; queued jobs never run.
    ///
    /// Handles of queued jobs report [`JobError::PoolClosed`](crate::JobError::PoolClosed), those
    /// of running jobs [`JobError::Cancelled`](crate::JobError::Cancelled). The workers are
    /// dropped the next time the runtime polls them.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::JobError;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = kwik_pool::WorkerPool::builder().build().unwrap();
    /// let handle = pool.submit(1_u64, async { 1 }).await.unwrap();
    /// pool.abort();
    /// assert_eq!(handle.await, Err(JobError::PoolClosed));
    /// # }
    /// ```
    pub fn abort(&self) {
        self.close();
        for worker in self.take_workers() {
            worker.abort();
        }
        self.release_bound_waiters();
    }

    fn close(&self) {
        self.inner.shared.close();
    }

    fn take_workers(&self) -> Vec<JoinHandle<()>> {
        let mut workers = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *workers)
    }

    /// Submitters waiting on the pool-wide bound would wait forever once no worker releases it.
    fn release_bound_waiters(&self) {
        if let Some(bound) = &self.inner.shared.max_queued {
            bound.close();
        }
    }

    fn least_loaded(&self) -> usize {
        let shared = &self.inner.shared;
        let load = |index: usize| {
            let shard = &shared.shards[index];
            shard.queue.len() + shard.counters.running.load(Ordering::Relaxed)
        };
        (0..self.workers())
            .min_by_key(|&index| load(index))
            .unwrap_or(0)
    }

    /// Reserves room for one job on `shard` if it is there at once and nobody waits for it
    /// first; `None` sends the caller to [`admit`](Self::admit), which waits, rejects or
    /// refuses as the case may be. A plain function, not a future: the common case neither
    /// builds `admit`'s state machine nor moves the job through it.
    fn admit_now(&self, shard: usize) -> Option<Admission<'_>> {
        let shared = &self.inner.shared;
        if shared.is_closing() {
            return None;
        }
        let bound = match &shared.max_queued {
            None => None,
            Some(bound) => Some(bound.try_acquire().ok()?),
        };
        let queue = &shared.shards[shard].queue;
        let slot = queue.try_reserve_unwaited().ok()?;
        Some(Admission::new(queue, slot, bound))
    }

    /// Reserves room for one job on `shard`, waiting under [`Overflow::Block`].
    async fn admit<J>(&self, shard: usize, job: J) -> Result<(Admission<'_>, J), SubmitError<J>> {
        if self.inner.overflow == Overflow::Reject {
            return self.try_admit(shard, job);
        }
        let shared = &self.inner.shared;
        if shared.is_closing() {
            return Err(SubmitError::Closed(job));
        }
        let bound = match &shared.max_queued {
            None => None,
            Some(bound) => match bound.acquire().await {
                Ok(permit) => Some(permit),
                Err(_closed) => return Err(SubmitError::Closed(job)),
            },
        };
        let queue = &shared.shards[shard].queue;
        match queue.reserve().await {
            Ok(slot) => Ok((Admission::new(queue, slot, bound), job)),
            Err(_closed) => Err(SubmitError::Closed(job)),
        }
    }

    /// Reserves room for one job on `shard` without waiting.
    fn try_admit<J>(&self, shard: usize, job: J) -> Result<(Admission<'_>, J), SubmitError<J>> {
        let shared = &self.inner.shared;
        if shared.is_closing() {
            return Err(SubmitError::Closed(job));
        }
        let bound = match &shared.max_queued {
            None => None,
            Some(bound) => match bound.try_acquire() {
                Ok(permit) => Some(permit),
                Err(TryAcquireError::NoPermits) => return Err(self.reject(job)),
                Err(TryAcquireError::Closed) => return Err(SubmitError::Closed(job)),
            },
        };
        let queue = &shared.shards[shard].queue;
        match queue.try_reserve() {
            Ok(slot) => Ok((Admission::new(queue, slot, bound), job)),
            Err(Refused::Full) => Err(self.reject(job)),
            Err(Refused::Closed) => Err(SubmitError::Closed(job)),
        }
    }

    fn reject<J>(&self, job: J) -> SubmitError<J> {
        self.inner
            .shared
            .counters
            .rejected
            .fetch_add(1, Ordering::Relaxed);
        SubmitError::Full(job)
    }

    fn send_reported<F>(&self, admission: Admission<'_>, job: F) -> JobHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, handle) = Reported::task(job, |_: &F::Output| true, None);
        self.send(admission, task, None);
        handle
    }

    fn send_detached<F>(&self, admission: Admission<'_>, job: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.send(
            admission,
            Task::Detached(Box::pin(Detached::new(job))),
            None,
        );
    }

    fn send(&self, mut admission: Admission<'_>, task: Task, timeout: Option<Duration>) {
        let shared = &self.inner.shared;
        let queued_at = shared.observer.as_ref().map(|_| Instant::now());
        if let Some(bound) = admission.bound.take() {
            // The worker gives the permit back when it takes the job off the queue. Counted
            // before the push so the worker's decrement can never come first.
            bound.forget();
            shared.counters.enqueued();
        }
        let envelope = Envelope {
            task,
            timeout,
            queued_at,
        };
        admission.pushed = true;
        admission.queue.push(admission.slot, envelope);
    }
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("workers", &self.workers())
            .field("overflow", &self.inner.overflow)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
