//! Point-in-time counters of a buffer pool.

/// A snapshot of a [`BufferPool`](crate::BufferPool)'s counters, read with
/// [`BufferPool::stats`](crate::BufferPool::stats).
///
/// Counters are read one by one from atomics, so a snapshot taken while other threads use the
/// pool is approximate; once those threads are quiet it is exact:
/// `gets == hits + misses` and `outstanding == gets - returns`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Buffers handed out by `get`.
    pub gets: u64,
    /// Gets served from a pooled buffer (no allocation).
    pub hits: u64,
    /// Gets that allocated a fresh buffer because none was free.
    pub misses: u64,
    /// Buffers handed back (a `PooledBuf` dropped or frozen).
    pub returns: u64,
    /// Returned buffers freed because the pool already held `max_pooled` buffers.
    pub dropped: u64,
    /// Returned buffers freed because their capacity no longer matched the pool's buffer size
    /// (they grew past it, or were replaced by the caller).
    pub oversized: u64,
    /// Returned buffers let go because parts split off them (`split_to`, `split_off`, or the
    /// whole `BytesMut` taken out with `mem::take`) still referenced their storage; the last
    /// such part frees it.
    pub detached: u64,
    /// Buffers handed out and not yet returned (`gets - returns`).
    pub outstanding: u64,
    /// Buffers the pool currently retains, in thread caches and the shared free list, including
    /// those waiting for their frozen `Bytes` clones to be dropped.
    pub pooled: u64,
    /// Bytes of storage the pool currently retains (`pooled * buffer_size`).
    pub pooled_bytes: u64,
}
