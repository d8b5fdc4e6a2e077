//! What travels through a shard queue: a job plus how to report its end.

use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

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
            // SAFETY: the worker's end is live (it is this value) and has not published.
            Self::Reported(task) => unsafe { (task.vtable.poll_run)(task.cell, cx) },
        }
    }

    pub(crate) fn fail(&mut self, error: JobError) {
        if let Self::Reported(task) = self {
            // SAFETY: as in `poll_run`.
            unsafe { (task.vtable.fail)(task.cell, error) };
        }
    }
}

/// What the worker does with a reported job's cell, for its concrete type.
struct WorkerVtable {
    poll_run: unsafe fn(NonNull<()>, &mut Context<'_>) -> Poll<bool>,
    fail: unsafe fn(NonNull<()>, JobError),
    publish: unsafe fn(NonNull<()>),
}

/// The worker's end of a reported job's cell ([`Reported`]); publishes the result when dropped.
pub(crate) struct Published {
    cell: NonNull<()>,
    vtable: &'static WorkerVtable,
}

// SAFETY: the worker's side of the cell is only ever used through this one value, and what it
// reaches (the job and its output) is `Send`.
unsafe impl Send for Published {}

impl Drop for Published {
    fn drop(&mut self) {
        // SAFETY: the worker's last use of the cell.
        unsafe { (self.vtable.publish)(self.cell) };
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

/// `Reported::state`: the result is staged; the worker no longer touches `stage`.
const PUBLISHED: u8 = 1;
/// `Reported::state`: the worker no longer touches anything (set with or after `PUBLISHED`).
const RELEASED: u8 = 2;
/// `Reported::state`: the handle stored a waker in `waker` and leaves it alone while this is set.
const WAITING: u8 = 4;
/// `Reported::state`: the handle is gone.
const DETACHED: u8 = 8;

/// A job whose result goes to a [`JobHandle`]: the future, the result and the handle's waker in
/// one allocation, owned by the worker (through [`Published`]) and the handle together, and
/// freed by whichever lets go second (`RELEASED` and `DETACHED` both set).
///
/// No lock and no reference count: one state byte says who may touch what. The worker owns
/// `stage` until it sets `PUBLISHED`, the handle only after it has seen that bit. The handle
/// writes `waker` only while `WAITING` is clear; the worker reads it (never writes it) only if
/// `WAITING` was set when it published. In the usual case under load (the handle polled after
/// the job ended) the worker publishes and lets go with one compare-and-swap, and the handle
/// takes the result and frees the cell with no read-modify-write at all: five locked
/// instructions fewer per job than an `Arc` shared with an `AtomicWaker`.
pub(crate) struct Reported<F: Future, C> {
    stage: UnsafeCell<Stage<F>>,
    state: AtomicU8,
    waker: UnsafeCell<Option<Waker>>,
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

impl<F, C> Reported<F, C>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    C: Fn(&F::Output) -> bool + Send + Sync + 'static,
{
    const WORKER: WorkerVtable = WorkerVtable {
        poll_run: Self::poll_run,
        fail: Self::fail,
        publish: Self::publish,
    };

    const HANDLE: HandleVtable<F::Output> = HandleVtable {
        poll_result: Self::poll_result,
        detach: Self::detach,
    };

    /// The task for the queue and the handle's end of it.
    pub(crate) fn task(fut: F, succeeded: C, id: Option<u64>) -> (Task, JobHandle<F::Output>) {
        let cell = NonNull::from(Box::leak(Box::new(Self {
            stage: UnsafeCell::new(Stage {
                fut: Some(fut),
                result: None,
                started: false,
            }),
            state: AtomicU8::new(0),
            waker: UnsafeCell::new(None),
            succeeded,
        })))
        .cast::<()>();
        let handle = JobHandle {
            cell,
            vtable: Self::HANDLE,
            released: false,
            id,
        };
        let task = Published {
            cell,
            vtable: &Self::WORKER,
        };
        (Task::Reported(task), handle)
    }

    /// The stage, for the worker.
    ///
    /// # Safety
    ///
    /// `cell` is a live cell of this type, and the caller is its worker, before it publishes.
    #[allow(clippy::mut_from_ref)]
    unsafe fn worker_stage<'a>(cell: NonNull<()>) -> &'a mut Stage<F> {
        // SAFETY: the caller is the worker before publication: nobody else reads or writes.
        unsafe { &mut *cell.cast::<Self>().as_ref().stage.get() }
    }

    /// The cell's state.
    ///
    /// # Safety
    ///
    /// `cell` is a live cell of this type, and stays live while the reference is used.
    unsafe fn state<'a>(cell: NonNull<()>) -> &'a AtomicU8 {
        // SAFETY: as the caller promises.
        unsafe { &cell.cast::<Self>().as_ref().state }
    }

    /// Frees the cell.
    ///
    /// # Safety
    ///
    /// `cell` came from [`task`](Self::task) and both ends have let go: this is the last use.
    unsafe fn free(cell: NonNull<()>) {
        // SAFETY: allocated by `Box::new` in `task`; nobody uses it any more.
        drop(unsafe { Box::from_raw(cell.cast::<Self>().as_ptr()) });
    }

    /// Polls the job; `Ready(true)` when it succeeded, `Ready(false)` when it failed. The
    /// result is staged, not yet visible to the handle.
    unsafe fn poll_run(cell: NonNull<()>, cx: &mut Context<'_>) -> Poll<bool> {
        // SAFETY: only the worker polls, and never after it publishes.
        let stage = unsafe { Self::worker_stage(cell) };
        stage.started = true;
        let Some(fut) = stage.fut.as_mut() else {
            // Already ended (not reachable: the worker polls until the first `Ready`).
            return Poll::Ready(stage.result.as_ref().is_some_and(Result::is_ok));
        };
        // SAFETY: `fut` lives in the cell's allocation, which never moves, and it is only ever
        // dropped in place (`stage.fut = None`), never moved out: the pinning guarantee holds.
        let fut = unsafe { Pin::new_unchecked(fut) };
        let output = std::task::ready!(fut.poll(cx));
        // SAFETY: the cell is live (the worker has not published).
        let succeeded = unsafe { &cell.cast::<Self>().as_ref().succeeded };
        let ok = succeeded(&output);
        stage.result = Some(Ok(output));
        Poll::Ready(ok)
    }

    /// Stages `error` as the result: the job panicked or timed out.
    unsafe fn fail(cell: NonNull<()>, error: JobError) {
        // SAFETY: called by the worker before it publishes.
        let stage = unsafe { Self::worker_stage(cell) };
        if stage.result.is_none() {
            stage.result = Some(Err(error));
        }
    }

    /// Drops the job and makes its result visible to the handle (a job that never staged one
    /// reports `Cancelled` if it had started, `PoolClosed` if not), wakes the handle if it
    /// waits, and frees the cell if the handle is gone.
    unsafe fn publish(cell: NonNull<()>) {
        {
            // SAFETY: the worker's last access to the stage, before `PUBLISHED` is set.
            let stage = unsafe { Self::worker_stage(cell) };
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
        // SAFETY: the cell is live until `RELEASED` is set below (the handle frees it only
        // after seeing that bit), or until this function frees it.
        let state = unsafe { Self::state(cell) };
        let mut current = state.load(Ordering::Acquire);
        // Nobody waits (the usual case under load): publish and let go in one step.
        while current & WAITING == 0 {
            match state.compare_exchange_weak(
                current,
                current | PUBLISHED | RELEASED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if current & DETACHED != 0 {
                        // SAFETY: the handle let go first; that was the worker's last use.
                        unsafe { Self::free(cell) };
                    }
                    return;
                }
                Err(actual) => current = actual,
            }
        }
        // The handle waits (or waited, then went away): publish, wake it, then let go.
        let before = state.fetch_or(PUBLISHED, Ordering::AcqRel);
        if before & (WAITING | DETACHED) == WAITING {
            // SAFETY: `WAITING` was set when `PUBLISHED` was, so the handle stored its waker
            // and no longer writes it (to re-register it must clear `WAITING`, which shows it
            // `PUBLISHED`); both sides only read it now.
            let waker = unsafe { &*cell.cast::<Self>().as_ref().waker.get() };
            if let Some(waker) = waker {
                waker.wake_by_ref();
            }
        }
        if state.fetch_or(RELEASED, Ordering::AcqRel) & DETACHED != 0 {
            // SAFETY: the handle let go first; that was the worker's last use.
            unsafe { Self::free(cell) };
        }
    }

    /// Polls for the result, for the handle; `released` records whether the worker has let go.
    unsafe fn poll_result(
        cell: NonNull<()>,
        cx: &mut Context<'_>,
        released: &mut bool,
    ) -> Poll<Result<F::Output, JobError>> {
        // SAFETY: the handle's end is live (the caller is the handle).
        let this = unsafe { cell.cast::<Self>().as_ref() };
        let mut current = this.state.load(Ordering::Acquire);
        if current & PUBLISHED == 0 {
            if current & WAITING != 0 {
                // SAFETY: while `WAITING` is set nobody writes the waker.
                let stored = unsafe { &*this.waker.get() };
                if stored.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    return Poll::Pending;
                }
                // Take the slot back before writing another waker into it.
                current = this.state.fetch_and(!WAITING, Ordering::AcqRel) & !WAITING;
            }
            if current & PUBLISHED == 0 {
                // SAFETY: `WAITING` is clear and `PUBLISHED` was not set when it was cleared:
                // the worker will not read the waker, nobody else touches it.
                unsafe { *this.waker.get() = Some(cx.waker().clone()) };
                current = this.state.fetch_or(WAITING, Ordering::AcqRel);
                if current & PUBLISHED == 0 {
                    return Poll::Pending;
                }
            }
        }
        *released = current & RELEASED != 0;
        // SAFETY: published: the worker no longer touches the stage, and the handle (the only
        // other party) polls through `&mut JobHandle`, so this is the only access.
        let stage = unsafe { &mut *this.stage.get() };
        // Polled again after it returned its result: the value is gone.
        Poll::Ready(stage.result.take().unwrap_or(Err(JobError::PoolClosed)))
    }

    /// Lets go of the cell for the handle, freeing it if the worker already has.
    unsafe fn detach(cell: NonNull<()>, released: bool) {
        if !released {
            // SAFETY: the cell is live: the worker has not let go (or did so just now).
            let state = unsafe { Self::state(cell) };
            if state.fetch_or(DETACHED, Ordering::AcqRel) & RELEASED == 0 {
                // The worker frees it when it lets go.
                return;
            }
        }
        // SAFETY: the worker let go before; this is the handle's last use.
        unsafe { Self::free(cell) };
    }
}

/// Polls a cell for its result; the flag records whether the worker has let go.
type PollResult<T> =
    unsafe fn(NonNull<()>, &mut Context<'_>, &mut bool) -> Poll<Result<T, JobError>>;

/// What the handle does with its job's cell, for the cell's concrete type.
struct HandleVtable<T> {
    poll_result: PollResult<T>,
    detach: unsafe fn(NonNull<()>, bool),
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
    /// The job's [`Reported`] cell, shared with the worker.
    cell: NonNull<()>,
    vtable: HandleVtable<T>,
    /// Whether the worker was seen to let go of the cell (then dropping frees it at once).
    released: bool,
    id: Option<u64>,
}

// SAFETY: the handle's side of the cell is only used through `&mut self` (poll) and `drop`; what
// it reaches is the job's output, sent from the worker. `&JobHandle` only reads `id`.
unsafe impl<T: Send> Send for JobHandle<T> {}
// SAFETY: as above: nothing reachable through `&JobHandle` touches the cell.
unsafe impl<T: Send> Sync for JobHandle<T> {}

impl<T> Drop for JobHandle<T> {
    fn drop(&mut self) {
        // SAFETY: the handle's last use of the cell.
        unsafe { (self.vtable.detach)(self.cell, self.released) };
    }
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
        let this = self.get_mut();
        // SAFETY: the handle's end is live (it is this value).
        unsafe { (this.vtable.poll_result)(this.cell, cx, &mut this.released) }
    }
}

#[cfg(test)]
mod tests {
    //! The cell's hand-overs, one interleaving at a time, on one thread (valgrind's memcheck runs
    //! these too: every path must free the cell exactly once).

    use std::sync::Arc;

    use super::*;
    use crate::test_waker::{waker, wakes};

    /// A reported job holding `payload` (to catch a double drop or a leak) that returns 7.
    fn job(payload: Arc<()>) -> (Task, JobHandle<u32>) {
        Reported::task(
            async move {
                drop(payload);
                7_u32
            },
            |_: &u32| true,
            None,
        )
    }

    fn run(task: &mut Task) {
        let (_, waker) = waker();
        assert_eq!(
            task.poll_run(&mut Context::from_waker(&waker)),
            Poll::Ready(true)
        );
    }

    fn poll(handle: &mut JobHandle<u32>, waker: &Waker) -> Poll<Result<u32, JobError>> {
        Pin::new(handle).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_handle_polled_after_the_job_ended_takes_the_result() {
        let payload = Arc::new(());
        let (mut task, mut handle) = job(Arc::clone(&payload));
        run(&mut task);
        drop(task);
        let (count, waker) = waker();
        assert_eq!(poll(&mut handle, &waker), Poll::Ready(Ok(7)));
        assert!(handle.released, "the worker let go when it published");
        drop(handle);
        assert_eq!(wakes(&count), 0);
        assert_eq!(Arc::strong_count(&payload), 1);
    }

    #[test]
    fn a_waiting_handle_is_woken_by_the_last_waker_it_registered() {
        let (mut task, mut handle) = job(Arc::new(()));
        let (first, first_waker) = waker();
        let (second, second_waker) = waker();
        assert_eq!(poll(&mut handle, &first_waker), Poll::Pending);
        // The same waker again changes nothing; another one replaces it.
        assert_eq!(poll(&mut handle, &first_waker), Poll::Pending);
        assert_eq!(poll(&mut handle, &second_waker), Poll::Pending);
        run(&mut task);
        drop(task);
        assert_eq!((wakes(&first), wakes(&second)), (0, 1));
        assert_eq!(poll(&mut handle, &second_waker), Poll::Ready(Ok(7)));
    }

    #[test]
    fn a_handle_dropped_first_leaves_the_cell_to_the_worker() {
        let payload = Arc::new(());
        let (mut task, handle) = job(Arc::clone(&payload));
        drop(handle);
        run(&mut task);
        drop(task);
        assert_eq!(Arc::strong_count(&payload), 1);
    }

    #[test]
    fn a_waiting_handle_dropped_before_the_job_ends_is_not_woken() {
        let (mut task, mut handle) = job(Arc::new(()));
        let (count, waker) = waker();
        assert_eq!(poll(&mut handle, &waker), Poll::Pending);
        drop(handle);
        run(&mut task);
        drop(task);
        assert_eq!(wakes(&count), 0);
    }

    #[test]
    fn a_job_dropped_unrun_reports_pool_closed_and_a_polled_result_is_gone() {
        let payload = Arc::new(());
        let (task, mut handle) = job(Arc::clone(&payload));
        let (count, waker) = waker();
        assert_eq!(poll(&mut handle, &waker), Poll::Pending);
        drop(task);
        assert_eq!(wakes(&count), 1);
        assert_eq!(Arc::strong_count(&payload), 1, "the unrun job was dropped");
        assert_eq!(
            poll(&mut handle, &waker),
            Poll::Ready(Err(JobError::PoolClosed))
        );
        assert_eq!(
            poll(&mut handle, &waker),
            Poll::Ready(Err(JobError::PoolClosed))
        );
    }

    #[test]
    fn a_failure_staged_by_the_worker_reaches_the_handle() {
        let (mut task, mut handle) = job(Arc::new(()));
        task.fail(JobError::TimedOut);
        drop(task);
        let (_, waker) = waker();
        assert_eq!(
            poll(&mut handle, &waker),
            Poll::Ready(Err(JobError::TimedOut))
        );
    }
}
