//! The buffer pool: small per-thread caches in front of a shared, bounded free list.
//!
//! # How a buffer travels
//!
//! Every buffer is a [`BytesMut`] over *shared* storage (bytes' reference-counted kind): the pool
//! promotes it once, when it is first allocated. That lets [`PooledBuf::freeze`] hand out a
//! [`Bytes`] view of the written bytes while the pool keeps its own handle on the same storage,
//! with no allocation. A handle is reusable when [`BytesMut::try_reclaim`] succeeds on it, which
//! bytes allows only when no other `BytesMut` or `Bytes` can still see any byte of the storage
//! (an atomic reference-count check with acquire ordering, so the last reader's accesses happen
//! before the next writer's).
//!
//! A returned buffer is cleared (its length set to zero) but never zeroed: the bytes from its
//! previous use stay in memory. That is safe because `BytesMut` never exposes bytes past its
//! length; a reader sees only what the new owner writes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::mem;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_utils::CachePadded;

use crate::{BuildError, Stats};

/// The largest `buffer_size` a pool accepts (1 GiB): far above any packet or read size, and low
/// enough that an allocation request can never overflow.
pub const MAX_BUFFER_SIZE: usize = 1 << 30;

/// 64 KiB: the transport's read size (one QUIC stream read fills at most this much).
const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;
/// 1024 buffers of 64 KiB bound the pool's retention at 64 MiB by default.
const DEFAULT_MAX_POOLED: usize = 1024;
/// Enough for a reader thread to recycle a burst of packets without touching the shared lock.
const DEFAULT_THREAD_CACHE: usize = 32;
/// How many frozen handles a `get` inspects before allocating. Bounds the work done under the
/// lock when the application keeps many frozen `Bytes` alive for a long time.
const FROZEN_PROBES: usize = 4;

/// Distinguishes pools in the per-thread cache table; never reused, unlike an address.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(0);

/// A pool of fixed-size byte buffers that hands out [`PooledBuf`]s and takes them back on drop.
///
/// After warm-up, taking a buffer, writing into it, freezing it into [`Bytes`], cloning and
/// dropping those allocates nothing. Retention is bounded by `max_pooled` over the whole pool;
/// each thread keeps up to `thread_cache` buffers of it locally so that the common case takes
/// no lock. A buffer returned to a full pool is freed (and counted in [`Stats::dropped`]); a
/// buffer whose capacity changed (it grew past `buffer_size`) is freed too
/// ([`Stats::oversized`]).
///
/// `BufferPool` is a cheap handle: clones share one pool, and it is `Send + Sync`.
///
/// # Examples
///
/// ```
/// use bytes::BufMut;
/// use kwik_buffer::BufferPool;
///
/// let pool = BufferPool::builder().buffer_size(2048).max_pooled(64).build()?;
/// let mut buf = pool.get();
/// assert!(buf.is_empty() && buf.capacity() >= 2048);
/// buf.put_slice(b"datagram");
/// let packet = buf.freeze(); // no copy; the storage goes back to the pool later
/// assert_eq!(&packet[..], b"datagram");
/// # Ok::<(), kwik_buffer::BuildError>(())
/// ```
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<Inner>,
}

impl BufferPool {
    /// Starts building a pool with the defaults: 64 KiB buffers, at most 1024 retained, 32 per
    /// thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::BufferPool::builder().build()?;
    /// assert_eq!(pool.buffer_size(), 64 * 1024);
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Takes a buffer: empty (`len() == 0`), with a capacity of at least
    /// [`buffer_size`](Self::buffer_size). It comes from this thread's cache, else the shared
    /// free list, else a fresh allocation (a [miss](Stats::misses)). Its previous contents are not
    /// zeroed, but they cannot be read: the buffer is empty.
    ///
    /// Dropping the [`PooledBuf`] gives it back; [`PooledBuf::freeze`] turns it into [`Bytes`]
    /// whose storage comes back when the last clone is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::BufferPool::builder().buffer_size(1500).build()?;
    /// drop(pool.get()); // a miss: allocates, then returns to the pool
    /// let buf = pool.get(); // a hit: the same storage again
    /// assert_eq!((buf.len(), buf.capacity()), (0, 1500));
    /// assert_eq!((pool.stats().misses, pool.stats().hits), (1, 1));
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn get(&self) -> PooledBuf {
        PooledBuf {
            buf: self.inner.take(),
            pool: Arc::clone(&self.inner),
            returned: false,
        }
    }

    /// Reads the pool's counters. See [`Stats`] for what each one means.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::BufferPool::builder().build()?;
    /// let held = pool.get();
    /// assert_eq!(pool.stats().outstanding, 1);
    /// drop(held);
    /// let stats = pool.stats();
    /// assert_eq!((stats.outstanding, stats.pooled), (0, 1));
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The capacity every buffer of this pool is allocated with.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::BufferPool::builder().buffer_size(4096).build()?;
    /// assert_eq!(pool.buffer_size(), 4096);
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn buffer_size(&self) -> usize {
        self.inner.buffer_size
    }

    /// The most buffers this pool retains at once, over all threads.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::BufferPool::builder().max_pooled(8).thread_cache(2).build()?;
    /// assert_eq!(pool.max_pooled(), 8);
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn max_pooled(&self) -> usize {
        self.inner.max_pooled
    }

    /// How many buffers each thread keeps in its own cache (0: no thread cache).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::BufferPool::builder().thread_cache(0).build()?;
    /// assert_eq!(pool.thread_cache(), 0);
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn thread_cache(&self) -> usize {
        self.inner.thread_cache
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("buffer_size", &self.inner.buffer_size)
            .field("max_pooled", &self.inner.max_pooled)
            .field("thread_cache", &self.inner.thread_cache)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Configures and builds a [`BufferPool`]; see [`BufferPool::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    buffer_size: usize,
    max_pooled: usize,
    thread_cache: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            buffer_size: DEFAULT_BUFFER_SIZE,
            max_pooled: DEFAULT_MAX_POOLED,
            thread_cache: DEFAULT_THREAD_CACHE,
        }
    }
}

impl Builder {
    /// Capacity of every buffer, in bytes. Default: 65536 (64 KiB). Must be in
    /// `1..=`[`MAX_BUFFER_SIZE`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::BufferPool::builder().buffer_size(16 * 1024).build()?;
    /// assert!(pool.get().capacity() >= 16 * 1024);
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes;
        self
    }

    /// The most buffers the pool retains at once, summed over the shared free list and every
    /// thread cache; a buffer returned beyond it is freed. Default: 1024. Must be at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::BufferPool::builder().max_pooled(1).thread_cache(1).build()?;
    /// let (a, b) = (pool.get(), pool.get());
    /// drop((a, b)); // only one fits
    /// assert_eq!((pool.stats().pooled, pool.stats().dropped), (1, 1));
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn max_pooled(mut self, buffers: usize) -> Self {
        self.max_pooled = buffers;
        self
    }

    /// How many buffers each thread keeps in a lock-free local cache before spilling to the
    /// shared list. Default: 32. `0` disables the thread caches; it must not exceed
    /// `max_pooled`.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_buffer::{BufferPool, BuildError};
    ///
    /// let err = BufferPool::builder().max_pooled(4).thread_cache(8).build().unwrap_err();
    /// assert!(matches!(err, BuildError::ThreadCacheTooLarge { .. }));
    /// ```
    pub fn thread_cache(mut self, buffers: usize) -> Self {
        self.thread_cache = buffers;
        self
    }

    /// Validates the settings and creates the pool. No buffer is allocated yet.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroBufferSize`], [`BuildError::BufferSizeTooLarge`],
    /// [`BuildError::ZeroMaxPooled`] or [`BuildError::ThreadCacheTooLarge`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_buffer::{BufferPool, BuildError};
    ///
    /// assert_eq!(BufferPool::builder().buffer_size(0).build().unwrap_err(), BuildError::ZeroBufferSize);
    /// ```
    pub fn build(self) -> Result<BufferPool, BuildError> {
        if self.buffer_size == 0 {
            return Err(BuildError::ZeroBufferSize);
        }
        if self.buffer_size > MAX_BUFFER_SIZE {
            return Err(BuildError::BufferSizeTooLarge {
                size: self.buffer_size,
                max: MAX_BUFFER_SIZE,
            });
        }
        if self.max_pooled == 0 {
            return Err(BuildError::ZeroMaxPooled);
        }
        if self.thread_cache > self.max_pooled {
            return Err(BuildError::ThreadCacheTooLarge {
                thread_cache: self.thread_cache,
                max_pooled: self.max_pooled,
            });
        }
        Ok(BufferPool {
            inner: Arc::new(Inner {
                id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
                buffer_size: self.buffer_size,
                max_pooled: self.max_pooled,
                thread_cache: self.thread_cache,
                pooled: CachePadded::new(AtomicUsize::new(0)),
                counters: CachePadded::new(Counters::default()),
                shared: Mutex::new(FreeList {
                    ready: Vec::new(),
                    frozen: VecDeque::new(),
                }),
            }),
        })
    }
}

/// A buffer taken from a [`BufferPool`]; derefs to [`BytesMut`] and goes back to the pool when
/// dropped.
///
/// Write with the `BytesMut`/[`BufMut`] methods. Writing past the capacity makes `BytesMut`
/// grow into a new allocation; such a buffer is freed instead of pooled when it comes back.
///
/// # Examples
///
/// ```
/// use bytes::BufMut;
///
/// let pool = kwik_buffer::BufferPool::builder().buffer_size(64).build()?;
/// let mut buf = pool.get();
/// buf.put_u32(7);
/// buf.extend_from_slice(b"abc");
/// assert_eq!(&buf[..], &[0, 0, 0, 7, b'a', b'b', b'c']);
/// # Ok::<(), kwik_buffer::BuildError>(())
/// ```
pub struct PooledBuf {
    buf: BytesMut,
    pool: Arc<Inner>,
    /// Set once the storage went back (by `freeze`), so that `Drop` does not return it twice.
    returned: bool,
}

impl PooledBuf {
    /// Turns the written bytes into an immutable [`Bytes`] without copying or allocating.
    ///
    /// The `Bytes` (and its clones and slices) can travel to other threads freely. The pool keeps
    /// a handle on the storage and reuses it once the last of them is dropped; if the pool is
    /// full, or dropped meanwhile, the storage is simply freed by the last `Bytes`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::BufferPool::builder().buffer_size(1024).build()?;
    /// let mut buf = pool.get();
    /// buf.extend_from_slice(b"hello");
    /// let bytes = buf.freeze();
    /// let copy = bytes.clone(); // a reference count bump, not a copy
    /// assert_eq!((&bytes[..], &copy[..]), (&b"hello"[..], &b"hello"[..]));
    /// drop((bytes, copy)); // the storage is now reusable
    /// drop(pool.get());
    /// assert_eq!(pool.stats().hits, 1);
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn freeze(mut self) -> Bytes {
        if self.buf.is_empty() {
            // Nothing to share: an empty `Bytes` needs no storage, and the buffer goes back as is.
            return Bytes::new();
        }
        // `split` leaves `self.buf` as an empty handle on the rest of the same storage; the pool
        // keeps that handle and reclaims the storage once the `Bytes` are gone.
        let grown = self.buf.capacity() > self.pool.buffer_size;
        let bytes = self.buf.split().freeze();
        if grown {
            // Writes outgrew the class size: keeping a handle would only hold a slot for storage
            // the pool will not reuse. The last `Bytes` frees it.
            self.returned = true;
            self.pool.put_oversized();
        } else {
            self.give_back(true);
        }
        bytes
    }

    fn give_back(&mut self, frozen: bool) {
        self.returned = true;
        let buf = mem::take(&mut self.buf);
        self.pool.put(buf, frozen);
    }
}

impl Deref for PooledBuf {
    type Target = BytesMut;

    fn deref(&self) -> &BytesMut {
        &self.buf
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl AsMut<[u8]> for PooledBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

// SAFETY: every method forwards to `BytesMut`'s implementation, which upholds the contract.
unsafe impl BufMut for PooledBuf {
    fn remaining_mut(&self) -> usize {
        self.buf.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller upholds `advance_mut`'s contract for `self`, which is `self.buf`'s.
        unsafe { self.buf.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.buf.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        self.buf.put_slice(src);
    }

    fn put_bytes(&mut self, val: u8, cnt: usize) {
        self.buf.put_bytes(val, cnt);
    }
}

impl fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("len", &self.buf.len())
            .field("capacity", &self.buf.capacity())
            .finish()
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if !self.returned {
            self.give_back(false);
        }
    }
}

/// The state every handle and every outstanding buffer shares.
struct Inner {
    id: u64,
    buffer_size: usize,
    max_pooled: usize,
    thread_cache: usize,
    /// Buffers retained anywhere (thread caches and the shared list). A slot is reserved here
    /// *before* a buffer is retained, so `max_pooled` holds under any interleaving.
    pooled: CachePadded<AtomicUsize>,
    counters: CachePadded<Counters>,
    shared: Mutex<FreeList>,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    returns: AtomicU64,
    dropped: AtomicU64,
    oversized: AtomicU64,
    detached: AtomicU64,
}

struct FreeList {
    /// Reclaimed buffers, ready to hand out. LIFO: the most recently used is warmest in cache.
    ready: Vec<BytesMut>,
    /// Handles whose storage frozen `Bytes` may still reference. FIFO: the oldest is the most
    /// likely to have been released.
    frozen: VecDeque<BytesMut>,
}

impl Inner {
    fn take(self: &Arc<Self>) -> BytesMut {
        let found = if self.thread_cache > 0 {
            with_local_cache(self, |cache| cache.pop().or_else(|| self.refill(cache)))
                .unwrap_or_else(|| self.take_shared())
        } else {
            self.take_shared()
        };
        match found {
            Some(buf) => {
                self.pooled.fetch_sub(1, Ordering::Relaxed);
                bump(&self.counters.hits);
                buf
            }
            None => {
                bump(&self.counters.misses);
                self.allocate()
            }
        }
    }

    /// Moves up to half a thread cache of ready buffers from the shared list into `cache` in
    /// one lock acquisition, then takes one (or a reclaimed frozen handle).
    fn refill(&self, cache: &mut Vec<BytesMut>) -> Option<BytesMut> {
        let mut shared = self.lock_shared();
        let batch = (self.thread_cache / 2).max(1).min(shared.ready.len());
        let from = shared.ready.len() - batch;
        cache.extend(shared.ready.drain(from..));
        cache.pop().or_else(|| self.reclaim_frozen(&mut shared))
    }

    fn take_shared(&self) -> Option<BytesMut> {
        let mut shared = self.lock_shared();
        match shared.ready.pop() {
            Some(buf) => Some(buf),
            None => self.reclaim_frozen(&mut shared),
        }
    }

    /// Looks at the oldest few frozen handles and returns the first whose `Bytes` are all gone.
    fn reclaim_frozen(&self, shared: &mut FreeList) -> Option<BytesMut> {
        for _ in 0..FROZEN_PROBES.min(shared.frozen.len()) {
            let mut buf = shared.frozen.pop_front()?;
            if !buf.try_reclaim(self.buffer_size) {
                shared.frozen.push_back(buf);
            } else if buf.capacity() == self.buffer_size {
                return Some(buf);
            } else {
                // Replaced by its user before `freeze`: not storage of this pool's size.
                self.pooled.fetch_sub(1, Ordering::Relaxed);
                bump(&self.counters.oversized);
            }
        }
        None
    }

    fn allocate(&self) -> BytesMut {
        let mut buf = BytesMut::with_capacity(self.buffer_size);
        // Promote the storage to bytes' shared kind now, once in the buffer's life, so that
        // `freeze` can later split off a `Bytes` without allocating.
        drop(buf.split());
        buf
    }

    /// Takes a buffer back. `frozen` says it is the handle left by [`PooledBuf::freeze`], whose
    /// `Bytes` may still be alive; any other handle that cannot be reclaimed at once has had
    /// parts split off by its user, and is let go (the last part frees the storage).
    fn put(self: &Arc<Self>, mut buf: BytesMut, frozen: bool) {
        bump(&self.counters.returns);
        buf.clear();
        if !buf.try_reclaim(self.buffer_size) {
            if !frozen {
                bump(&self.counters.detached);
            } else if self.reserve_slot() {
                self.lock_shared().frozen.push_back(buf);
            }
            return;
        }
        if buf.capacity() != self.buffer_size {
            bump(&self.counters.oversized);
            return;
        }
        if !self.reserve_slot() {
            return;
        }
        let mut slot = Some(buf);
        if self.thread_cache > 0 {
            with_local_cache(self, |cache| {
                if let Some(buf) = slot.take() {
                    if cache.len() >= self.thread_cache {
                        self.spill(cache);
                    }
                    cache.push(buf);
                }
            });
        }
        if let Some(buf) = slot {
            self.lock_shared().ready.push(buf);
        }
    }

    /// Counts a buffer that comes back too large to be pooled.
    fn put_oversized(&self) {
        bump(&self.counters.returns);
        bump(&self.counters.oversized);
    }

    /// Moves the older half of a full thread cache to the shared list in one lock acquisition.
    fn spill(&self, cache: &mut Vec<BytesMut>) {
        let batch = (self.thread_cache / 2).max(1).min(cache.len());
        self.lock_shared().ready.extend(cache.drain(..batch));
    }

    /// Claims room for one more retained buffer; counts a drop when the pool is full.
    fn reserve_slot(&self) -> bool {
        if self.pooled.fetch_add(1, Ordering::Relaxed) < self.max_pooled {
            return true;
        }
        self.pooled.fetch_sub(1, Ordering::Relaxed);
        bump(&self.counters.dropped);
        false
    }

    fn lock_shared(&self) -> MutexGuard<'_, FreeList> {
        // The list stays consistent even if a holder panicked: every critical section is a
        // plain push, pop or move of whole buffers.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        let hits = c.hits.load(Ordering::Relaxed);
        let misses = c.misses.load(Ordering::Relaxed);
        let returns = c.returns.load(Ordering::Relaxed);
        let gets = hits + misses;
        let pooled = self.pooled.load(Ordering::Relaxed).min(self.max_pooled) as u64;
        Stats {
            gets,
            hits,
            misses,
            returns,
            dropped: c.dropped.load(Ordering::Relaxed),
            oversized: c.oversized.load(Ordering::Relaxed),
            detached: c.detached.load(Ordering::Relaxed),
            outstanding: gets.saturating_sub(returns),
            pooled,
            pooled_bytes: pooled * self.buffer_size as u64,
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    static LOCAL_CACHES: RefCell<LocalCaches> = const { RefCell::new(LocalCaches(Vec::new())) };
}

/// This thread's caches, one per pool it has touched.
struct LocalCaches(Vec<LocalCache>);

struct LocalCache {
    pool_id: u64,
    /// Weak, so that a thread cache never keeps a dropped pool alive.
    pool: Weak<Inner>,
    ready: Vec<BytesMut>,
}

/// Runs `f` on this thread's cache for `pool`, creating it on first use. Returns `None` without
/// calling `f` when the thread-local is unavailable (the thread is exiting) or already borrowed.
fn with_local_cache<R>(pool: &Arc<Inner>, f: impl FnOnce(&mut Vec<BytesMut>) -> R) -> Option<R> {
    LOCAL_CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            let index = match caches.0.iter().position(|c| c.pool_id == pool.id) {
                Some(index) => index,
                None => {
                    // Forget the caches of pools that no longer exist before adding one.
                    caches.0.retain(|c| c.pool.strong_count() > 0);
                    caches.0.push(LocalCache {
                        pool_id: pool.id,
                        pool: Arc::downgrade(pool),
                        ready: Vec::with_capacity(pool.thread_cache),
                    });
                    caches.0.len() - 1
                }
            };
            Some(f(&mut caches.0[index].ready))
        })
        .ok()
        .flatten()
}

impl Drop for LocalCaches {
    /// A dying thread hands its cached buffers to the shared list (they stay counted as pooled),
    /// so no buffer is lost with the thread.
    fn drop(&mut self) {
        for cache in self.0.drain(..) {
            if cache.ready.is_empty() {
                continue;
            }
            if let Some(pool) = cache.pool.upgrade() {
                pool.lock_shared().ready.extend(cache.ready);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(buffer_size: usize, max_pooled: usize, thread_cache: usize) -> BufferPool {
        BufferPool::builder()
            .buffer_size(buffer_size)
            .max_pooled(max_pooled)
            .thread_cache(thread_cache)
            .build()
            .expect("valid settings")
    }

    #[test]
    fn builder_rejects_bad_sizes() {
        let b = BufferPool::builder;
        assert_eq!(
            b().buffer_size(0).build().unwrap_err(),
            BuildError::ZeroBufferSize
        );
        assert_eq!(
            b().buffer_size(MAX_BUFFER_SIZE + 1).build().unwrap_err(),
            BuildError::BufferSizeTooLarge {
                size: MAX_BUFFER_SIZE + 1,
                max: MAX_BUFFER_SIZE
            }
        );
        assert_eq!(
            b().max_pooled(0).thread_cache(0).build().unwrap_err(),
            BuildError::ZeroMaxPooled
        );
        assert_eq!(
            b().max_pooled(3).thread_cache(4).build().unwrap_err(),
            BuildError::ThreadCacheTooLarge {
                thread_cache: 4,
                max_pooled: 3
            }
        );
        let p = b().build().expect("defaults are valid");
        assert_eq!(
            (p.buffer_size(), p.max_pooled(), p.thread_cache()),
            (65536, 1024, 32)
        );
    }

    #[test]
    fn dropped_buffer_is_reused_empty() {
        for thread_cache in [0, 4] {
            let pool = pool(1000, 8, thread_cache);
            let mut buf = pool.get();
            assert_eq!((buf.len(), buf.capacity()), (0, 1000));
            buf.extend_from_slice(&[7; 600]);
            let ptr = buf.as_ptr();
            drop(buf);
            let buf = pool.get();
            assert_eq!((buf.as_ptr(), buf.len(), buf.capacity()), (ptr, 0, 1000));
            let s = pool.stats();
            assert_eq!(
                (s.gets, s.hits, s.misses, s.returns, s.outstanding),
                (2, 1, 1, 1, 1)
            );
            assert_eq!(s.pooled, 0);
        }
    }

    #[test]
    fn frozen_storage_is_reused_only_after_last_clone_drops() {
        for thread_cache in [0, 4] {
            let pool = pool(64, 8, thread_cache);
            let mut buf = pool.get();
            let ptr = buf.as_ptr();
            buf.extend_from_slice(b"first");
            let first = buf.freeze();
            let clone = first.slice(1..);
            drop(first);
            assert_eq!(pool.stats().pooled, 1, "the handle waits in the pool");

            // `clone` still sees the storage: the pool must not hand it out.
            let mut other = pool.get();
            assert_ne!(other.as_ptr(), ptr);
            other.extend_from_slice(b"XXXXXXXX");
            assert_eq!(&clone[..], b"irst");
            drop(other);

            drop(clone);
            // The ready buffer comes first; the reclaimed one right after it.
            let (a, b) = (pool.get(), pool.get());
            assert!(a.as_ptr() == ptr || b.as_ptr() == ptr);
            assert_eq!((b.len(), b.capacity()), (0, 64));
            let s = pool.stats();
            assert_eq!((s.hits, s.misses, s.returns), (2, 2, 2));
        }
    }

    #[test]
    fn freeze_of_a_full_buffer_reclaims_whole_capacity() {
        let pool = pool(32, 4, 0);
        let mut buf = pool.get();
        buf.extend_from_slice(&[1; 32]);
        drop(buf.freeze());
        let buf = pool.get();
        assert_eq!((buf.len(), buf.capacity(), pool.stats().hits), (0, 32, 1));
    }

    #[test]
    fn split_parts_hold_back_the_storage() {
        let pool = pool(64, 4, 2);
        let mut buf = pool.get();
        let ptr = buf.as_ptr();
        buf.extend_from_slice(b"head tail");
        let head = buf.split_to(5);
        drop(buf);
        let other = pool.get();
        assert_ne!(other.as_ptr(), ptr);
        assert_eq!(&head[..], b"head ");
        drop((head, other));
        // The split-off part owned the storage from then on: it was not pooled.
        let s = pool.stats();
        assert_eq!((s.detached, s.pooled, s.returns), (1, 1, 2));
    }

    #[test]
    fn oversized_buffer_is_not_retained() {
        let pool = pool(16, 4, 2);
        let mut buf = pool.get();
        buf.extend_from_slice(&[0; 100]);
        assert!(buf.capacity() > 16);
        drop(buf);
        let s = pool.stats();
        assert_eq!((s.oversized, s.pooled, s.returns), (1, 0, 1));
        let buf = pool.get();
        assert_eq!((buf.capacity(), pool.stats().misses), (16, 2));
    }

    #[test]
    fn replaced_buffer_is_not_retained() {
        let pool = pool(16, 4, 2);
        let mut buf = pool.get();
        let _taken: BytesMut = mem::take(&mut *buf);
        drop(buf);
        assert_eq!((pool.stats().detached, pool.stats().pooled), (1, 0));
        // A replaced buffer that is then frozen is not pooled either.
        let mut buf = pool.get();
        *buf = BytesMut::with_capacity(100);
        buf.put_u8(1);
        let bytes = buf.freeze();
        assert_eq!((pool.stats().oversized, pool.stats().pooled), (1, 0));
        assert_eq!(&bytes[..], &[1]);
    }

    #[test]
    fn empty_freeze_keeps_the_buffer() {
        let pool = pool(16, 4, 2);
        let ptr = pool.get().as_ptr();
        let empty = pool.get().freeze();
        assert!(empty.is_empty());
        assert_eq!((pool.get().as_ptr(), pool.stats().hits), (ptr, 2));
    }

    #[test]
    fn retention_is_bounded_and_overflow_counted() {
        for thread_cache in [0, 1, 3] {
            let pool = pool(8, 3, thread_cache);
            let held: Vec<_> = (0..10).map(|_| pool.get()).collect();
            drop(held);
            let s = pool.stats();
            assert_eq!(
                (s.pooled, s.dropped, s.returns, s.pooled_bytes),
                (3, 7, 10, 24)
            );
            // Frozen handles obey the same bound.
            let frozen: Vec<_> = (0..10)
                .map(|_| {
                    let mut buf = pool.get();
                    buf.put_u8(1);
                    buf.freeze()
                })
                .collect();
            drop(frozen);
            let s = pool.stats();
            assert_eq!((s.pooled, s.dropped, s.outstanding), (3, 14, 0));
        }
    }

    #[test]
    fn buffers_dropped_on_another_thread_come_back() {
        let pool = pool(128, 16, 4);
        let bufs: Vec<_> = (0..8).map(|_| pool.get()).collect();
        std::thread::spawn(move || drop(bufs))
            .join()
            .expect("no panic");
        let s = pool.stats();
        // The exiting thread handed its cache to the shared list: nothing was lost.
        assert_eq!((s.pooled, s.outstanding, s.dropped), (8, 0, 0));
        let again: Vec<_> = (0..8).map(|_| pool.get()).collect();
        assert_eq!(pool.stats().hits, 8);
        drop(again);
    }

    #[test]
    fn bytes_outlive_the_pool() {
        let pool = pool(32, 4, 2);
        let mut buf = pool.get();
        buf.extend_from_slice(b"still here");
        let bytes = buf.freeze();
        drop(pool);
        assert_eq!(&bytes[..], b"still here");
    }

    #[test]
    fn two_pools_on_one_thread_keep_separate_caches() {
        let (small, large) = (pool(16, 4, 2), pool(4096, 4, 2));
        drop((small.get(), large.get()));
        assert_eq!(small.get().capacity(), 16);
        assert_eq!(large.get().capacity(), 4096);
        assert_eq!((small.stats().hits, large.stats().hits), (1, 1));
    }

    #[test]
    fn pooled_buf_is_a_buf_mut() {
        fn fill(mut out: impl BufMut) {
            out.put_u16(0xabcd);
            out.put_bytes(1, 2);
        }
        let pool = pool(16, 4, 2);
        let mut buf = pool.get();
        fill(&mut *buf);
        fill(&mut buf);
        assert_eq!(buf.as_ref(), &[0xab, 0xcd, 1, 1, 0xab, 0xcd, 1, 1]);
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        fn send<T: Send>() {}
        check::<BufferPool>();
        send::<PooledBuf>();
    }
}
