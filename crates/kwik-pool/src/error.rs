//! Error types, one enum per operation family.

use std::fmt;

/// Why [`WorkerPool::builder`](crate::WorkerPool::builder) rejected its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `workers(0)`: a pool needs at least one worker.
    #[error("workers must be at least 1")]
    ZeroWorkers,
    /// More workers than [`MAX_WORKERS`](crate::MAX_WORKERS).
    #[error("workers must be at most {max}, got {got}")]
    TooManyWorkers {
        /// The requested number.
        got: usize,
        /// The largest accepted number.
        max: usize,
    },
    /// `queue_capacity(0)`: a shard must hold at least one queued job.
    #[error("queue capacity must be at least 1")]
    ZeroQueueCapacity,
    /// A per-shard queue capacity larger than [`MAX_QUEUE_CAPACITY`](crate::MAX_QUEUE_CAPACITY).
    #[error("queue capacity must be at most {max}, got {got}")]
    QueueCapacityTooLarge {
        /// The requested capacity.
        got: usize,
        /// The largest accepted capacity.
        max: usize,
    },
    /// `max_queued(0)`: the pool must accept at least one queued job.
    #[error("max queued must be at least 1")]
    ZeroMaxQueued,
    /// `job_timeout(Duration::ZERO)`: every job would time out before it started.
    #[error("job timeout must be greater than zero")]
    ZeroJobTimeout,
    /// `build()` was called outside a tokio runtime and no runtime handle was given.
    #[error("no tokio runtime: build the pool inside a runtime or pass one with `runtime(handle)`")]
    NoRuntime,
}

/// A submission the pool did not accept; the job is handed back.
///
/// Returned by `submit`/`execute`/`spawn` (where `Full` only happens under
/// [`Overflow::Reject`](crate::Overflow::Reject)) and by the `try_` variants (which never wait).
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError<J> {
    /// The target shard (or the pool-wide `max_queued` bound) is full.
    #[error("worker pool queue is full")]
    Full(J),
    /// The pool was shut down or aborted.
    #[error("worker pool is closed")]
    Closed(J),
}

/// The error of the non-waiting submissions (`try_submit`, `try_execute`, `try_spawn`).
///
/// The same enum as [`SubmitError`]: a `try_` call returns `Full` whatever the overflow policy.
pub type TrySubmitError<J> = SubmitError<J>;

impl<J> SubmitError<J> {
    /// Gives the rejected job back.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::SubmitError;
    ///
    /// let err = SubmitError::Full(7);
    /// assert!(err.is_full());
    /// assert_eq!(err.into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> J {
        match self {
            Self::Full(job) | Self::Closed(job) => job,
        }
    }

    /// Whether the job was refused because the queue was full.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::SubmitError;
    ///
    /// assert!(!SubmitError::Closed(()).is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the job was refused because the pool is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::SubmitError;
    ///
    /// assert!(SubmitError::Closed(()).is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

// Jobs are futures, which rarely implement Debug: show the variant only (as tokio's SendError).
impl<J> fmt::Debug for SubmitError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Why a job accepted by the pool produced no value; the error of a
/// [`JobHandle`](crate::JobHandle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job panicked; its worker caught the panic and went on with the next job.
    #[error("job panicked")]
    Panicked,
    /// The job ran past its timeout and was dropped.
    #[error("job timed out")]
    TimedOut,
    /// The job had started and was dropped before it finished: the pool was aborted or its
    /// shutdown deadline passed.
    #[error("job was cancelled")]
    Cancelled,
    /// The job was still queued when the pool stopped (abort, or shutdown deadline), so it never
    /// ran.
    #[error("worker pool closed before the job ran")]
    PoolClosed,
}
