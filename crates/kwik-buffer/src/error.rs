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
    /// `shards` was zero (see [`ObjectPoolBuilder::shards`](crate::ObjectPoolBuilder::shards)).
    #[error("shard count must be greater than zero")]
    ZeroShards,
    /// `thread_cache` was larger than `max_pooled`, so one thread alone could exceed the bound.
    #[error("thread cache {thread_cache} exceeds max pooled {max_pooled}")]
    ThreadCacheTooLarge {
        /// The requested per-thread cache size.
        thread_cache: usize,
        /// The pool-wide bound it must not exceed.
        max_pooled: usize,
    },
}

/// Why a [`SizedBufferPool`](crate::SizedBufferPool) builder rejected its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizedBuildError {
    /// The list of size classes was empty.
    #[error("at least one size class is required")]
    NoClasses,
    /// Two size classes had the same buffer size.
    #[error("size class {size} is listed twice")]
    DuplicateClass {
        /// The repeated buffer size.
        size: usize,
    },
    /// One class's pool could not be built.
    #[error("size class {size}: {source}")]
    Class {
        /// The class's buffer size.
        size: usize,
        /// Why its pool was rejected.
        #[source]
        source: BuildError,
    },
}

/// Why [`SizedBufferPool::get`](crate::SizedBufferPool::get) could not hand out a buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// No size class is large enough for the requested capacity.
    #[error("requested capacity {requested} exceeds the largest size class ({largest} bytes)")]
    TooLarge {
        /// The capacity asked for.
        requested: usize,
        /// The largest class's buffer size.
        largest: usize,
    },
}
