//! Error types, one enum per operation family.

use std::fmt;

/// Why a builder ([`WorkerPool::builder`](crate::WorkerPool::builder),
/// [`Pipeline::builder`](crate::Pipeline::builder), [`Batcher::builder`](crate::Batcher::builder))
/// rejected its settings.
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
    /// More queue slots in all (`workers × queue_capacity`, each capacity rounded up to a power
    /// of two) than [`MAX_QUEUE_SLOTS`](crate::MAX_QUEUE_SLOTS): the slots are allocated when
    /// the pool is built.
    #[error(
        "workers × queue capacity (rounded up to a power of two) must be at most {max} queue \
         slots, got {got}"
    )]
    TooManyQueueSlots {
        /// The slots the settings would allocate.
        got: usize,
        /// The most a pool allocates.
        max: usize,
    },
    /// `max_queued(0)`: the pool must accept at least one queued job.
    #[error("max queued must be at least 1")]
    ZeroMaxQueued,
    /// `job_timeout(Duration::ZERO)`: every job would time out before it started.
    #[error("job timeout must be greater than zero")]
    ZeroJobTimeout,
    /// `chunk_size(0)`: a pipeline chunk holds at least one item.
    #[error("chunk size must be at least 1")]
    ZeroChunkSize,
    /// `buffer(0)`: the channels between pipeline stages hold at least one chunk.
    #[error("pipeline buffer must be at least 1")]
    ZeroBuffer,
    /// A pipeline stage with parallelism 0.
    #[error("stage `{stage}` parallelism must be at least 1")]
    ZeroParallelism {
        /// The stage's name.
        stage: String,
    },
    /// A pipeline with no stage.
    #[error("a pipeline needs at least one stage")]
    NoStages,
    /// `max_size(0)`: a batch holds at least one item.
    #[error("batch max size must be at least 1")]
    ZeroMaxSize,
    /// `max_delay(Duration::ZERO)`: a batch would be flushed before it could grow.
    #[error("batch max delay must be greater than zero")]
    ZeroMaxDelay,
    /// `capacity(0)`: the batcher's intake holds at least one item.
    #[error("batcher capacity must be at least 1")]
    ZeroCapacity,
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

/// Why [`WorkerPool::try_run_inline`](crate::WorkerPool::try_run_inline) returned no value.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunInlineError<F> {
    /// The key's shard has jobs queued or running; the job is handed back, unrun, to be
    /// submitted behind them.
    #[error("worker pool shard is busy")]
    Busy(F),
    /// The pool was shut down or aborted; the job is handed back unrun.
    #[error("worker pool is closed")]
    Closed(F),
    /// The job ran and panicked; the panic was caught and counted.
    #[error("job panicked")]
    Panicked,
}

impl<F> RunInlineError<F> {
    /// Gives the job back, unless it ran.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::RunInlineError;
    /// assert_eq!(RunInlineError::Busy(3).into_inner(), Some(3));
    /// assert_eq!(RunInlineError::<u8>::Panicked.into_inner(), None);
    /// ```
    pub fn into_inner(self) -> Option<F> {
        match self {
            Self::Busy(job) | Self::Closed(job) => Some(job),
            Self::Panicked => None,
        }
    }
}

// Closures do not implement Debug: show the variant only.
impl<F> fmt::Debug for RunInlineError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy(_) => f.write_str("Busy(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
            Self::Panicked => f.write_str("Panicked"),
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
    /// The job has a timeout but the runtime has no timer (build it with `enable_time` or
    /// `enable_all`); the job was dropped unrun and counted as timed out.
    #[error("job has a timeout but the runtime has no timer")]
    NoTimer,
    /// The job had started and was dropped before it finished: the pool was aborted or its
    /// shutdown deadline passed.
    #[error("job was cancelled")]
    Cancelled,
    /// The job was still queued when the pool stopped (abort, or shutdown deadline), so it never
    /// ran.
    #[error("worker pool closed before the job ran")]
    PoolClosed,
}

/// Why a [`Pipeline`](crate::Pipeline) run stopped; yielded once by its output stream, which then
/// ends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A stage returned an error on every attempt for one chunk.
    #[error("stage `{stage}` failed on chunk {chunk} after {attempts} attempts")]
    StageFailed {
        /// The stage's name.
        stage: String,
        /// The chunk's index in the input (0-based).
        chunk: usize,
        /// Attempts made: 1 + `max_retries`.
        attempts: u32,
        /// The stage's error on the last attempt.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stage panicked on one chunk (panics are not retried).
    #[error("stage `{stage}` panicked on chunk {chunk}")]
    StagePanicked {
        /// The stage's name.
        stage: String,
        /// The chunk's index in the input (0-based).
        chunk: usize,
    },
}

/// Why a [`Batcher`](crate::Batcher) could not close cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatcherError {
    /// The sink panicked; the batch it was given and any items still queued were lost.
    #[error("batch sink panicked")]
    SinkPanicked,
}
