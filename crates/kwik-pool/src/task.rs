//! What travels through a shard queue: a boxed job plus how to report its end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::oneshot;
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

/// A type-erased job as a worker sees it.
pub(crate) trait RawTask: Send {
    /// Polls the job; `Ready(true)` when it succeeded, `Ready(false)` when it failed.
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool>;

    /// Reports that the job will not produce a value (panic or timeout).
    fn fail(self: Pin<&mut Self>, error: JobError);
}

/// One queue slot: the boxed job, its timeout override and, only when an observer wants queue
/// wait times, when it was queued.
pub(crate) struct Envelope {
    pub(crate) task: Pin<Box<dyn RawTask>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) queued_at: Option<Instant>,
}

pin_project! {
    /// A fire-and-forget job (`execute`, `spawn`): the only allocation is this box.
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

    fn fail(self: Pin<&mut Self>, _error: JobError) {}
}

pin_project! {
    /// A job whose result goes to a [`JobHandle`]; `succeeded` classifies its output.
    pub(crate) struct Reported<F: Future, C> {
        #[pin]
        fut: F,
        report: Reporter<F::Output>,
        succeeded: C,
    }
}

impl<F: Future, C> Reported<F, C> {
    pub(crate) fn new(
        fut: F,
        succeeded: C,
    ) -> (Self, oneshot::Receiver<Result<F::Output, JobError>>) {
        let (tx, rx) = oneshot::channel();
        let report = Reporter {
            tx: Some(tx),
            staged: None,
            started: false,
        };
        (
            Self {
                fut,
                report,
                succeeded,
            },
            rx,
        )
    }
}

impl<F, C> RawTask for Reported<F, C>
where
    F: Future + Send,
    F::Output: Send,
    C: Fn(&F::Output) -> bool + Send,
{
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.project();
        this.report.started = true;
        let output = std::task::ready!(this.fut.poll(cx));
        let ok = (this.succeeded)(&output);
        this.report.send(Ok(output));
        Poll::Ready(ok)
    }

    fn fail(self: Pin<&mut Self>, error: JobError) {
        self.project().report.send(Err(error));
    }
}

/// The sending half of a job's result. The result is staged when the job ends and sent when
/// the task is dropped, which the worker does after recording the job in the stats and the
/// observer: whoever awaits the handle then sees the job counted. A job dropped before it
/// reported (abort, shutdown deadline) tells its handle why.
struct Reporter<T> {
    tx: Option<oneshot::Sender<Result<T, JobError>>>,
    staged: Option<Result<T, JobError>>,
    started: bool,
}

impl<T> Reporter<T> {
    fn send(&mut self, result: Result<T, JobError>) {
        if self.staged.is_none() {
            self.staged = Some(result);
        }
    }
}

impl<T> Drop for Reporter<T> {
    fn drop(&mut self) {
        let result = self.staged.take().unwrap_or(Err(if self.started {
            JobError::Cancelled
        } else {
            JobError::PoolClosed
        }));
        if let Some(tx) = self.tx.take() {
            // The handle may have been dropped: the job was detached, nobody wants the result.
            let _ = tx.send(result);
        }
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
#[derive(Debug)]
#[must_use = "a JobHandle does nothing unless awaited; drop it to detach the job"]
pub struct JobHandle<T> {
    rx: oneshot::Receiver<Result<T, JobError>>,
    id: Option<u64>,
}

impl<T> JobHandle<T> {
    pub(crate) fn new(rx: oneshot::Receiver<Result<T, JobError>>, id: Option<u64>) -> Self {
        Self { rx, id }
    }

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

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Outside tokio's cooperative budget: a finished job's result is taken at once. With the
        // budget, a producer that keeps a window of handles was forced to yield every 128
        // results, and in `pool_dispatch` that halved its throughput one run in two.
        Pin::new(&mut tokio::task::unconstrained(&mut self.rx))
            .poll(cx)
            .map(|received| match received {
                Ok(result) => result,
                // Unreachable in practice (a Reporter always sends before it goes away), but a
                // vanished sender can only mean the pool dropped the job unrun.
                Err(_) => Err(JobError::PoolClosed),
            })
    }
}
