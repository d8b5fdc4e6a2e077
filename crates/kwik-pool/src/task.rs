//! What travels through a shard queue: a job plus how to report its end.

use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::error::JobError;

/// A job with its own id and timeout (seed 002's `Job`: id, timeout, execute).
///
/// Submit one with [`WorkerPool::submit_job`](crate::WorkerPool::submit_job). Its timeout, when
/// given, replaces the pool's `job_timeout`; a job whose `execute` returns `Err` is counted as
/// failed in [`Stats::failed`](crate::Stats::failed).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kwik_pool::{Job, WorkerPool};
///
/// struct Decode { id: u64, packet: Vec<u8> }
///
/// impl Job for Decode {
///     type Output = usize;
///     type Error = std::io::Error;
///     fn id(&self) -> u64 { self.id }
///     fn timeout(&self) -> Option<Duration> { Some(Duration::from_secs(1)) }
///     async fn execute(self) -> Result<usize, std::io::Error> { Ok(self.packet.len()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = WorkerPool::builder().workers(2).build().unwrap();
/// let handle = pool.submit_job(1_u64, Decode { id: 9, packet: vec![0; 3] }).await.unwrap();
/// assert_eq!(handle.id(), Some(9));
/// assert_eq!(handle.await.unwrap().unwrap(), 3);
/// # }
/// ```
pub trait Job: Send + 'static {
    /// What the job produces when it succeeds.
    type Output: Send + 'static;
    /// What the job produces when it fails.
    type Error: Send + 'static;

    /// The job's identifier, reported by its [`JobHandle::id`].
    fn id(&self) -> u64;

    /// The job's own timeout; `None` (the default) uses the pool's `job_timeout`.
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Runs the job.
    fn execute(self) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send + 'static;
}

/// A type-erased fire-and-forget job as a worker sees it.
pub(crate) trait RawTask: Send {
    /// Polls the job; `Ready(true)` when it succeeded, `Ready(false)` when it failed.
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool>;
}

/// A type-erased job with a result, as a worker sees it: shared with its [`JobHandle`].
pub(crate) trait SharedTask: Send + Sync {
    /// Polls the job; `Ready(true)` when it succeeded, `Ready(false)` when it failed. The
    /// result is staged, not yet visible to the handle.
    fn poll_run(&self, cx: &mut Context<'_>) -> Poll<bool>;

    /// Stages `error` as the result: the job panicked or timed out.
    fn fail(&self, error: JobError);

    /// Drops the job and makes its result visible to the handle; a job that never staged one
    /// reports `Cancelled` (it had started) or `PoolClosed` (it had not).
    fn publish(&self);
}

/// What a queue slot holds.
pub(crate) enum Task {
    /// A fire-and-forget job (`execute`): the boxed job alone.
    Detached(Pin<Box<dyn RawTask>>),
    /// A job with a [`JobHandle`]: published when this is dropped, which the worker does after
    /// recording the job in the stats and the observer, so that whoever awaits the handle sees
    /// the job counted. A job dropped unrun (abort, shutdown deadline) tells its handle why.
    Reported(Published),
}

impl Task {
    pub(crate) fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        match self {
            Self::Detached(task) => task.as_mut().poll_run(cx),
            Self::Reported(task) => task.0.poll_run(cx),
        }
    }

    pub(crate) fn fail(&mut self, error: JobError) {
        if let Self::Reported(task) = self {
            task.0.fail(error);
        }
    }
}

/// The worker's reference to a reported job; publishes it when dropped.
pub(crate) struct Published(Arc<dyn SharedTask>);

impl Drop for Published {
    fn drop(&mut self) {
        self.0.publish();
    }
}

/// One queue slot: the job, its timeout override and, only when an observer wants queue wait
/// times, when it was queued.
pub(crate) struct Envelope {
    pub(crate) task: Task,
    pub(crate) timeout: Option<Duration>,
    pub(crate) queued_at: Option<Instant>,
}

pin_project! {
    /// A fire-and-forget job (`execute`): the only allocation is this box.
    pub(crate) struct Detached<F> {
        #[pin]
        fut: F,
    }
}

impl<F> Detached<F> {
    pub(crate) fn new(fut: F) -> Self {
        Self { fut }
    }
}

impl<F: Future<Output = ()> + Send> RawTask for Detached<F> {
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        self.project().fut.poll(cx).map(|()| true)
    }
}

/// A job whose result goes to a [`JobHandle`]: the future and the result slot live in one
/// allocation, shared by the worker (through [`Published`]) and the handle. Half the
/// allocations of a boxed job plus a oneshot channel, and the memory is usually freed by the
/// thread that allocated it (the handle's).
///
/// No lock: the two sides never touch `stage` at the same time. The worker owns it until it
/// publishes (a `Release` store of `published`), the handle only after it has seen that flag
/// (an `Acquire` load).
pub(crate) struct Reported<F: Future, C> {
    stage: UnsafeCell<Stage<F>>,
    /// Set once the result is visible to the handle.
    published: AtomicBool,
    waker: AtomicWaker,
    /// Classifies the output as success (counted `completed`) or failure.
    succeeded: C,
}

struct Stage<F: Future> {
    /// The job. Pinned where it is: it is polled in place and dropped in place (by setting
    /// `None`), never moved.
    fut: Option<F>,
    result: Option<Result<F::Output, JobError>>,
    started: bool,
}

// SAFETY: `stage` is only ever accessed by one thread at a time (the worker before the
// `published` release store, the handle after its acquire load observes it), so sharing a
// `Reported` only needs its contents to be sendable; `succeeded` is called by the worker only,
// and `C: Sync` besides.
unsafe impl<F, C> Sync for Reported<F, C>
where
    F: Future + Send,
    F::Output: Send,
    C: Sync,
{
}

impl<F, C> Reported<F, C>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    C: Fn(&F::Output) -> bool + Send + Sync + 'static,
{
    /// The task for the queue and the handle's end of it.
    pub(crate) fn task(fut: F, succeeded: C, id: Option<u64>) -> (Task, JobHandle<F::Output>) {
        let cell = Arc::new(Self {
            stage: UnsafeCell::new(Stage {
                fut: Some(fut),
                result: None,
                started: false,
            }),
            published: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            succeeded,
        });
        let handle = JobHandle {
            slot: cell.clone(),
            id,
        };
        (Task::Reported(Published(cell)), handle)
    }

    /// The stage, for the worker.
    ///
    /// # Safety
    ///
    /// Only the worker, through the one [`Published`], before it publishes.
    #[allow(clippy::mut_from_ref)]
    unsafe fn worker_stage(&self) -> &mut Stage<F> {
        // SAFETY: the caller is the worker before publication: nobody else reads or writes.
        unsafe { &mut *self.stage.get() }
    }
}

impl<F, C> SharedTask for Reported<F, C>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    C: Fn(&F::Output) -> bool + Send + Sync + 'static,
{
    fn poll_run(&self, cx: &mut Context<'_>) -> Poll<bool> {
        // SAFETY: only the worker polls, and never after `publish` (which runs when the worker
        // drops its `Published`).
        let stage = unsafe { self.worker_stage() };
        stage.started = true;
        let Some(fut) = stage.fut.as_mut() else {
            // Already ended (not reachable: the worker polls until the first `Ready`).
            return Poll::Ready(stage.result.as_ref().is_some_and(Result::is_ok));
        };
        // SAFETY: `fut` lives in this `Arc`'s allocation, which never moves, and it is only ever
        // dropped in place (`stage.fut = None`), never moved out: the pinning guarantee holds.
        let fut = unsafe { Pin::new_unchecked(fut) };
        let output = std::task::ready!(fut.poll(cx));
        let ok = (self.succeeded)(&output);
        stage.result = Some(Ok(output));
        Poll::Ready(ok)
    }

    fn fail(&self, error: JobError) {
        // SAFETY: called by the worker before publication.
        let stage = unsafe { self.worker_stage() };
        if stage.result.is_none() {
            stage.result = Some(Err(error));
        }
    }

    fn publish(&self) {
        {
            // SAFETY: `publish` is the worker's last access, before the flag is set below.
            let stage = unsafe { self.worker_stage() };
            if stage.result.is_none() {
                stage.result = Some(Err(if stage.started {
                    JobError::Cancelled
                } else {
                    JobError::PoolClosed
                }));
            }
            // A future that panicked may panic again when dropped: that must neither take the
            // worker down nor keep the handle waiting.
            let _ = catch_unwind(AssertUnwindSafe(|| stage.fut = None));
        }
        self.published.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// The handle's view of a [`Reported`] job.
trait ResultSlot<T>: Send + Sync {
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, JobError>>;
}

impl<F, C> ResultSlot<F::Output> for Reported<F, C>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    C: Fn(&F::Output) -> bool + Send + Sync + 'static,
{
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JobError>> {
        if !self.published.load(Ordering::Acquire) {
            self.waker.register(cx.waker());
            if !self.published.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        // SAFETY: published: the worker no longer touches the stage, and the handle (the only
        // other party) polls through `&mut JobHandle`, so this is the only access.
        let stage = unsafe { &mut *self.stage.get() };
        // Polled again after it returned its result: the value is gone.
        Poll::Ready(stage.result.take().unwrap_or(Err(JobError::PoolClosed)))
    }
}

/// The result of a submitted job: a future of `Result<T, JobError>`.
///
/// Dropping the handle detaches the job; it still runs.
///
/// # Examples
///
/// ```
/// use kwik_pool::{JobError, WorkerPool};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = WorkerPool::builder().workers(1).build().unwrap();
/// let ok = pool.submit("path-1", async { 40 + 2 }).await.unwrap();
/// let boom = pool.submit("path-1", async { panic!("bad packet") }).await.unwrap();
/// assert_eq!(ok.await, Ok(42));
/// assert_eq!(boom.await, Err::<(), _>(JobError::Panicked));
/// # }
/// ```
#[must_use = "a JobHandle does nothing unless awaited; drop it to detach the job"]
pub struct JobHandle<T> {
    slot: Arc<dyn ResultSlot<T>>,
    id: Option<u64>,
}

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<T> JobHandle<T> {
    /// The id of a job submitted with [`submit_job`](crate::WorkerPool::submit_job); `None` for a
    /// plain future.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::WorkerPool;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = WorkerPool::builder().build().unwrap();
    /// let handle = pool.submit(0_u64, async {}).await.unwrap();
    /// assert_eq!(handle.id(), None);
    /// # }
    /// ```
    pub fn id(&self) -> Option<u64> {
        self.id
    }
}

impl<T> Future for JobHandle<T> {
    type Output = Result<T, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // No tokio cooperative budget is spent here: a finished job's result is taken at once.
        // (Through a tokio oneshot, a producer keeping a window of handles was forced to yield
        // every 128 results, and in `pool_dispatch` that halved its throughput one run in two.)
        self.slot.poll_result(cx)
    }
}
