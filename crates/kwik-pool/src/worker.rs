//! The loop each shard's worker task runs: one job at a time, in queue order.

use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
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
/// thread unpark) per job. `pool_overload`, binaries alternating, medians of 9 runs (with
/// `SUBMIT_SPINS` at 16): keyed 3.61, 5.51 and 5.29 M jobs/s with 0, 4 and 8 spins; execute
/// 4.04, 5.16 and 5.29.
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
        let mut worker = Worker {
            shard: &shared.shards[index],
            shared: &shared,
            active: false,
            parked: false,
            streak: 0,
            may_spin: false,
            timers: None,
        };
        loop {
            match poll_fn(|cx| worker.poll_step(cx)).await {
                Step::Closed => break,
                Step::Started(running) => worker.run_to_end(running).await,
                Step::Idle => {
                    let mut spins = 0;
                    while spins < IDLE_SPINS && worker.shard.queue.is_idle() && !shared.is_closing()
                    {
                        tokio::task::yield_now().await;
                        spins += 1;
                    }
                }
            }
        }
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

/// What one poll of the worker's queue loop ended on.
enum Step {
    /// The queue ran dry after a busy streak: yield a few times before parking (IDLE_SPINS).
    Idle,
    /// A job did not end in its first poll; the worker awaits it before taking the next.
    Started(Running),
    /// The shard is closed and drained.
    Closed,
}

/// A job past its first poll.
struct Running {
    task: Task,
    /// When it ends at the latest (its timeout, counted from its first poll).
    deadline: Option<Instant>,
    started: Option<Instant>,
    queued_at: Option<Instant>,
}

struct Worker<'a> {
    shard: &'a Shard,
    shared: &'a Shared,
    /// Whether this worker holds the shard's `ACTIVE` bit (see `ShardQueue::poll_pop`).
    active: bool,
    /// Whether the last look at the queue found it empty and parked.
    parked: bool,
    /// Jobs run since the worker last parked.
    streak: u32,
    /// Whether a job ran since the worker last spun: only then does a dry queue send it
    /// spinning again rather than parking.
    may_spin: bool,
    /// Whether the runtime has a timer; found out the first time a job has a timeout.
    timers: Option<bool>,
}

impl Worker<'_> {
    /// Takes jobs off the queue and runs each, within this one poll, for as long as they end
    /// in their first poll (most jobs: a decode, a hash, a lookup), so that such a job costs
    /// no future of its own and no extra poll of the worker. Stops at a job that does not end
    /// at once, at a dry queue, or when tokio's budget for this task is spent.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        let queue = &self.shard.queue;
        loop {
            if self.may_spin
                && self.streak >= BUSY_STREAK
                && queue.is_idle()
                && !self.shared.is_closing()
            {
                self.may_spin = false;
                return Poll::Ready(Step::Idle);
            }
            // A shard that never empties would otherwise keep its thread.
            let budget = ready!(tokio::task::coop::poll_proceed(cx));
            // SAFETY: this is the shard's worker, the only caller.
            let envelope = match unsafe { queue.poll_pop(cx, &mut self.active) } {
                Poll::Pending => {
                    self.parked = true;
                    return Poll::Pending;
                }
                Poll::Ready(None) => return Poll::Ready(Step::Closed),
                Poll::Ready(Some(envelope)) => envelope,
            };
            budget.made_progress();
            self.streak = if self.parked {
                1
            } else {
                self.streak.saturating_add(1)
            };
            self.parked = false;
            self.may_spin = true;
            if let Some(bound) = &self.shared.max_queued {
                self.shared.counters.dequeued();
                bound.add_permits(1);
            }
            if let Some(running) = self.start(envelope, cx) {
                return Poll::Ready(Step::Started(running));
            }
        }
    }

    /// Runs a job's first poll; the job if it has not ended.
    fn start(&mut self, envelope: Envelope, cx: &mut Context<'_>) -> Option<Running> {
        let Envelope {
            mut task,
            timeout,
            queued_at,
        } = envelope;
        let timeout = timeout.or(self.shared.job_timeout);
        // The clock is read only for an observer or a timeout.
        let started = (self.shared.observer.is_some() || timeout.is_some()).then(Instant::now);
        if timeout.is_some() && !self.has_timers() {
            self.finish(task, Err(JobError::NoTimer), started, queued_at);
            return None;
        }
        self.shard.counters.running.store(1, Ordering::Relaxed);
        let result = match catch_unwind(AssertUnwindSafe(|| task.poll_run(cx))) {
            Ok(Poll::Ready(succeeded)) => Ok(succeeded),
            Ok(Poll::Pending) => {
                return Some(Running {
                    task,
                    // A timeout too long to add to the clock never expires.
                    deadline: timeout
                        .zip(started)
                        .and_then(|(limit, at)| at.checked_add(limit)),
                    started,
                    queued_at,
                });
            }
            Err(_payload) => Err(JobError::Panicked),
        };
        self.finish(task, result, started, queued_at);
        None
    }

    /// Awaits a job that did not end in its first poll, up to its deadline.
    async fn run_to_end(&mut self, running: Running) {
        let Running {
            mut task,
            deadline,
            started,
            queued_at,
        } = running;
        let run = CatchUnwind { task: &mut task };
        let result = match deadline {
            // The runtime has a timer: `start` found out before the job's first poll.
            Some(at) => tokio::time::timeout_at(at, run)
                .await
                .unwrap_or(Err(JobError::TimedOut)),
            None => run.await,
        };
        self.finish(task, result, started, queued_at);
    }

    /// Counts and observes a job that ended (or never ran: `NoTimer`), then drops it, which
    /// hands its result to its handle.
    fn finish(
        &self,
        mut task: Task,
        result: Result<bool, JobError>,
        started: Option<Instant>,
        queued_at: Option<Instant>,
    ) {
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
        let counters = &self.shard.counters;
        counters.running.store(0, Ordering::Relaxed);
        counters.record(outcome);
        if let (Some(observer), Some(started)) = (&self.shared.observer, started) {
            let ended = Instant::now();
            let queue_wait =
                queued_at.map_or(Duration::ZERO, |at| started.saturating_duration_since(at));
            observer.on_job(queue_wait, ended - started, outcome);
        }
        // Dropping the task sends the staged result to its handle, so it comes after the stats:
        // a caller that awaited the handle sees the job counted. A future that panicked may
        // panic again when dropped; that must not kill the worker either.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(task)));
    }

    /// Whether the runtime has a timer. Arming one panics on a runtime built without
    /// `enable_time`; that must fail the jobs that have a timeout (`NoTimer`), not the worker.
    /// Found out once, when the first such job comes.
    fn has_timers(&mut self) -> bool {
        *self.timers.get_or_insert_with(|| {
            catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).is_ok()
        })
    }
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
