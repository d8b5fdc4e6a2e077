//! The loop each shard's worker task runs: one job at a time, in queue order.

use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::JobError;
use crate::queue::ShardQueue;
use crate::stats::{Outcome, PoolObserver, ShardCounters, SharedCounters};
use crate::task::{Envelope, Task};

/// State shared by the pool handle and its workers. Dropping the last pool handle closes every
/// shard, and the workers finish what is queued.
pub(crate) struct Shared {
    /// Set by `shutdown`/`abort`: submissions are refused, then every shard is closed.
    pub(crate) closing: AtomicBool,
    pub(crate) counters: SharedCounters,
    pub(crate) shards: Box<[Shard]>,
    /// Pool-wide `max_queued` bound, when one is set tighter than the sum of the shard queues.
    pub(crate) max_queued: Option<Semaphore>,
    pub(crate) observer: Option<Arc<dyn PoolObserver>>,
    pub(crate) job_timeout: Option<Duration>,
}

impl Shared {
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Refuses new jobs; each worker finishes its queue, then stops.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        for shard in &self.shards {
            shard.queue.close();
        }
    }
}

/// One shard: its queue (written by submitters and its worker) and its counters (written by its
/// worker only, on their own cache lines).
pub(crate) struct Shard {
    pub(crate) queue: ShardQueue,
    pub(crate) counters: ShardCounters,
}

/// Yields an idle worker makes before it parks, when it has been busy. Under a steady stream
/// the producer refills the queue within a few yields, while each park costs a wake-up (often a
/// thread unpark) per job: `pool_overload --runs 7` with no spins gave keyed 3.00 and execute
/// 3.74 M jobs/s, against 3.54 and 4.27 with 4 spins (`--runs 9`, a few minutes apart on a
/// noisy host).
const IDLE_SPINS: u32 = 4;

/// Jobs a worker must have run since it last woke up before it spins instead of parking. A
/// worker fed one job at a time (sparse packets, the transport's usual case) parks at once:
/// spinning there would only burn CPU (each yield goes through the scheduler and the I/O
/// driver) and delay the other tasks of its thread. In `kwik loadtest` runs of 30 s the p99
/// moved between 5 and 25 ms from run to run with or without spinning, too noisy on this
/// machine to show a difference either way.
const BUSY_STREAK: u32 = 2;

/// Runs shard `index` until its queue is closed and drained. If the task is aborted, or dropped
/// by its runtime (even before it first ran), the shard is closed and the jobs still queued are
/// dropped, so that their handles learn the pool closed.
pub(crate) fn run(index: usize, shared: Arc<Shared>) -> impl Future<Output = ()> + Send {
    let stop = Stop {
        shared: Arc::clone(&shared),
        index,
    };
    async move {
        let _stop = stop;
        work(&shared.shards[index], &shared).await;
    }
}

/// The worker's last act, however it ends: abandons its shard's ring.
struct Stop {
    shared: Arc<Shared>,
    index: usize,
}

impl Drop for Stop {
    fn drop(&mut self) {
        // SAFETY: dropped with the worker's future, after its last call of `poll_pop`; nothing
        // else takes from the shard's ring.
        unsafe { self.shared.shards[self.index].queue.abandon() };
    }
}

async fn work(shard: &Shard, shared: &Shared) {
    // Jobs run since the worker last parked.
    let mut streak = 0_u32;
    // Whether this worker holds the shard's `ACTIVE` bit (see `ShardQueue::poll_pop`).
    let mut active = false;
    loop {
        // A busy shard that runs dry first yields a few times (see IDLE_SPINS) before it parks.
        if streak >= BUSY_STREAK {
            let mut spins = 0;
            while spins < IDLE_SPINS && shard.queue.is_idle() && !shared.is_closing() {
                tokio::task::yield_now().await;
                spins += 1;
            }
        }
        let mut parked = false;
        let popped = poll_fn(|cx| {
            // SAFETY: this is the shard's worker, the only caller.
            let polled = unsafe { shard.queue.poll_pop(cx, &mut active) };
            parked |= polled.is_pending();
            polled
        })
        .await;
        let Some(envelope) = popped else {
            break;
        };
        streak = if parked { 1 } else { streak.saturating_add(1) };
        if let Some(bound) = &shared.max_queued {
            shared.counters.dequeued();
            bound.add_permits(1);
        }
        run_job(envelope, &shard.counters, shared).await;
        // A shard that never empties would otherwise keep its thread: spend tokio's budget.
        tokio::task::consume_budget().await;
    }
}

async fn run_job(envelope: Envelope, counters: &ShardCounters, shared: &Shared) {
    let Envelope {
        mut task,
        timeout,
        queued_at,
    } = envelope;
    let timeout = timeout.or(shared.job_timeout);
    let started = shared.observer.as_ref().map(|_| Instant::now());
    counters.running.store(1, Ordering::Relaxed);

    let run = CatchUnwind { task: &mut task };
    let result = match timeout {
        // Arming the timer panics on a runtime built without `enable_time`: that must fail this
        // job, not kill the worker.
        Some(limit) => match catch_unwind(AssertUnwindSafe(|| tokio::time::timeout(limit, run))) {
            Ok(timed) => timed.await.unwrap_or(Err(JobError::TimedOut)),
            Err(_no_timer) => Err(JobError::NoTimer),
        },
        None => run.await,
    };
    let outcome = match result {
        Ok(true) => Outcome::Completed,
        Ok(false) => Outcome::Failed,
        Err(error) => {
            task.fail(error);
            match error {
                JobError::TimedOut | JobError::NoTimer => Outcome::TimedOut,
                _ => Outcome::Panicked,
            }
        }
    };
    counters.running.store(0, Ordering::Relaxed);
    counters.record(outcome);
    if let (Some(observer), Some(started)) = (&shared.observer, started) {
        let ended = Instant::now();
        let queue_wait =
            queued_at.map_or(Duration::ZERO, |at| started.saturating_duration_since(at));
        observer.on_job(queue_wait, ended - started, outcome);
    }
    // Dropping the task sends the staged result to its handle, so it comes after the stats:
    // a caller that awaited the handle sees the job counted. A future that panicked may panic
    // again when dropped; that must not kill the worker either.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(task)));
}

/// Polls a job, turning a panic into `Err(JobError::Panicked)`.
struct CatchUnwind<'a> {
    task: &'a mut Task,
}

impl Future for CatchUnwind<'_> {
    type Output = Result<bool, JobError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let task = &mut *self.task;
        match catch_unwind(AssertUnwindSafe(|| task.poll_run(cx))) {
            Ok(Poll::Ready(succeeded)) => Poll::Ready(Ok(succeeded)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_payload) => Poll::Ready(Err(JobError::Panicked)),
        }
    }
}
