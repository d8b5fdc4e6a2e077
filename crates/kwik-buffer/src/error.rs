//! Errors returned when building a pool.

/// Why a [`BufferPool`](crate::BufferPool) builder rejected its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `buffer_size` was zero: a pool of empty buffers cannot hold a packet.
    #[error("buffer size must be greater than zero")]
    ZeroBufferSize,
    /// `buffer_size` exceeded [`MAX_BUFFER_SIZE`](crate::MAX_BUFFER_SIZE).
    #[error("buffer size {size} exceeds the maximum of {max} bytes")]
    BufferSizeTooLarge {
        /// The requested size.
        size: usize,
        /// The largest accepted size.
        max: usize,
    },
    /// `max_pooled` was zero: the pool could never retain a buffer.
    #[error("max pooled must be greater than zero")]
    ZeroMaxPooled,
    /// `thread_cache` was larger than `max_pooled`, so one thread alone could exceed the bound.
    #[error("thread cache {thread_cache} exceeds max pooled {max_pooled}")]
    ThreadCacheTooLarge {
        /// The requested per-thread cache size.
        thread_cache: usize,
        /// The pool-wide bound it must not exceed.
        max_pooled: usize,
    },
}
