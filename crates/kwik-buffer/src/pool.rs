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
//! The `BytesMut` is boxed once too, so a buffer moves between a thread cache and its user as one
//! pointer: a get/put cycle copies 8 bytes, not 32, and never stalls on a store of the length
//! that a wider copy would have to wait for.
//!
//! A returned buffer is cleared (its length set to zero) but never zeroed: the bytes from its
//! previous use stay in memory. That is safe because `BytesMut` never exposes bytes past its
//! length; a reader sees only what the new owner writes.
//!
//! # What keeps a pool alive
//!
//! A [`PooledBuf`] holds a plain pointer to its pool, not a reference count: incrementing and
//! decrementing an `Arc` count per buffer were two locked instructions, about a fifth of a
//! get/put cycle. Instead the pool counts its `live` buffers (outstanding, cached by a thread or
//! in the shared list; the count changes only when a buffer is allocated or freed), and while
//! that count is not zero the pool holds one strong reference to itself. When the last
//! [`BufferPool`] handle goes, the pool closes: it frees this thread's cache and the shared list
//! at once, and frees every buffer returned after that. Buffers still outstanding keep it alive
//! until they come back; buffers cached by another thread, until that thread exits or next
//! starts using another pool (its table then prunes closed pools' caches). A cache never keeps a
//! pool alive by itself: it holds a `Weak`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::mem::{self, ManuallyDrop};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};

use crate::local::{self, Table, ThreadCache};
use crate::tally::{Budget, Event, Tallies, ThreadTally};
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

/// A pool of fixed-size byte buffers that hands out [`PooledBuf`]s and takes them back on drop.
///
/// After warm-up, taking a buffer, writing into it, freezing it into [`Bytes`], cloning and
/// dropping those allocates nothing. Retention is bounded by `max_pooled` over the whole pool;
/// each thread keeps up to `thread_cache` buffers of it locally so that the common case takes
/// no lock. A buffer returned to a full pool is freed (and counted in [`Stats::dropped`]); a
/// buffer whose capacity changed (it grew past `buffer_size`) is freed too
/// ([`Stats::oversized`]).
///
/// `BufferPool` is a cheap handle: clones share one pool, and it is `Send + Sync`. Dropping the
/// last handle closes the pool: its shared list and this thread's cache are freed, buffers still
/// outstanding are freed when they are dropped, and `Bytes` from [`PooledBuf::freeze`] stay
/// valid.
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
pub struct BufferPool {
    inner: Arc<Inner>,
}

impl Clone for BufferPool {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.close();
        }
    }
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
            buf: ManuallyDrop::new(self.inner.take()),
            pool: Arc::as_ptr(&self.inner),
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
            inner: Arc::new_cyclic(|this| Inner {
                id: local::next_id(),
                this: this.clone(),
                buffer_size: self.buffer_size,
                max_pooled: self.max_pooled,
                thread_cache: self.thread_cache,
                handles: AtomicUsize::new(1),
                live: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                budget: Budget::new(self.max_pooled),
                tallies: Tallies::default(),
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
    /// Boxed so that taking and returning moves a pointer, not the 32-byte `BytesMut`. Taken
    /// exactly once, by `Drop` or [`into_parts`](Self::into_parts).
    buf: ManuallyDrop<Box<BytesMut>>,
    /// The pool, from [`Arc::as_ptr`]. Not a counted reference: this buffer counts in the pool's
    /// `live` buffers, and while that count is not zero the pool keeps itself alive.
    pool: *const Inner,
}

// SAFETY: a `PooledBuf` owns its boxed `BytesMut` (`Send + Sync`) exclusively, and uses its pool
// pointer only as a shared `&Inner` (`Inner` is `Send + Sync`), kept valid by the `live` count
// wherever the `PooledBuf` goes.
unsafe impl Send for PooledBuf {}
// SAFETY: `&PooledBuf` gives access to `&BytesMut` only; see `Send` above for the pool pointer.
unsafe impl Sync for PooledBuf {}

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
    pub fn freeze(self) -> Bytes {
        let (pool, mut buf) = self.into_parts();
        if buf.is_empty() {
            // Nothing to share: an empty `Bytes` needs no storage, and the buffer goes back as is.
            give_back(pool, buf, Back::Plain);
            return Bytes::new();
        }
        // SAFETY: `buf` is one of the pool's live buffers (see `give_back`).
        let grown = buf.capacity() > unsafe { (*pool).buffer_size };
        // `split` leaves `buf` as an empty handle on the rest of the same storage; the pool keeps
        // that handle and reclaims the storage once the `Bytes` are gone.
        let bytes = buf.split().freeze();
        // Storage that outgrew the class size is not kept: holding a handle would only hold a
        // slot for storage the pool will not reuse. The last `Bytes` frees it.
        give_back(pool, buf, if grown { Back::Grown } else { Back::Frozen });
        bytes
    }

    /// Takes the pool pointer and the buffer out, without running `Drop`.
    fn into_parts(self) -> (*const Inner, Box<BytesMut>) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped or used again, so the box is taken exactly once.
        let buf = unsafe { ManuallyDrop::take(&mut this.buf) };
        (this.pool, buf)
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
        // SAFETY: `drop` runs once and `self.buf` is not used after it.
        let buf = unsafe { ManuallyDrop::take(&mut self.buf) };
        give_back(self.pool, buf, Back::Plain);
    }
}

/// How a buffer comes back.
#[derive(Debug, Clone, Copy)]
enum Back {
    /// A `PooledBuf` dropped.
    Plain,
    /// The handle left by [`PooledBuf::freeze`]; its `Bytes` may be alive.
    Frozen,
    /// The handle left by a `freeze` of storage that had grown past the class size.
    Grown,
}

/// Takes back a buffer of the pool at `pool`, then counts the buffers that went away. Once the
/// `live` count reaches zero the pool may be freed, so nothing here touches it after that.
fn give_back(pool: *const Inner, buf: Box<BytesMut>, back: Back) {
    let freed = {
        // SAFETY: `buf` counts in the pool's `live` buffers, so `live > 0` and the pool holds a
        // strong reference to itself until `count_freed` below; `inner` is not used after it.
        let inner = unsafe { &*pool };
        inner.put(buf, back)
    };
    // SAFETY: `pool` came from `Arc::as_ptr`; `freed` of its live buffers were just freed; no
    // reference into the pool outlives this call.
    unsafe { count_freed(pool, freed) };
}

/// Notes that `n` buffers counted in the pool's `live` were freed. The one that brings `live`
/// to zero drops the strong reference [`Inner::allocate`] took when it left zero, which frees
/// the pool if no `BufferPool` handle and no thread cache's upgraded `Weak` holds it.
///
/// # Safety
///
/// `pool` comes from [`Arc::as_ptr`] on the pool's `Arc`; `n` of its live buffers were freed and
/// are no longer counted anywhere; the caller uses no reference into `*pool` after this call
/// unless it holds a strong reference of its own.
unsafe fn count_freed(pool: *const Inner, n: usize) {
    if n == 0 {
        return;
    }
    // SAFETY: `live >= n > 0` until this decrement, so the pool's own strong reference keeps it
    // alive. Acquire-release: every earlier use of the pool, on any thread, is ordered before the
    // decrement that reaches zero and so before the pool is freed.
    let before = unsafe { (*pool).live.fetch_sub(n, Ordering::AcqRel) };
    if before == n {
        // SAFETY: `live` went from `n` to zero, so the strong reference `allocate` leaked when it
        // left zero is ours to drop; `pool` came from `Arc::as_ptr`, the pointer `Arc::into_raw`
        // returns.
        unsafe { Arc::decrement_strong_count(pool) };
    }
}

/// The state every handle and every outstanding buffer shares.
struct Inner {
    id: u64,
    /// A weak reference to itself, handed to thread caches.
    this: Weak<Self>,
    buffer_size: usize,
    max_pooled: usize,
    thread_cache: usize,
    /// `BufferPool` handles. When the last one goes, the pool closes: it frees the shared list
    /// and keeps nothing returned after that.
    handles: AtomicUsize,
    /// Buffers that exist: outstanding, in a thread cache or in the shared list. While it is not
    /// zero the pool holds one strong reference to itself, so an outstanding `PooledBuf` needs
    /// no reference count of its own and a get/put cycle touches no shared atomic.
    live: AtomicUsize,
    /// Set, under the shared list's lock, when the last handle goes.
    closed: AtomicBool,
    /// Slots of `max_pooled`: every retained buffer holds one, in the shared list or as a
    /// thread cache's credit, so the bound holds under any interleaving.
    budget: Budget,
    tallies: Tallies,
    shared: Mutex<FreeList>,
}

struct FreeList {
    /// Reclaimed buffers, ready to hand out. LIFO: the most recently used is warmest in cache.
    #[expect(
        clippy::vec_box,
        reason = "a buffer travels as its box: moves are one pointer"
    )]
    ready: Vec<Box<BytesMut>>,
    /// Handles whose storage frozen `Bytes` may still reference. FIFO: the oldest is the most
    /// likely to have been released.
    frozen: VecDeque<Box<BytesMut>>,
}

/// One thread's share of a pool.
struct LocalCache {
    /// Weak, so that an empty thread cache never keeps a pool alive.
    pool: Weak<Inner>,
    /// This thread's ready buffers and frozen handles, at most `thread_cache` of each.
    held: FreeList,
    /// Budget slots this thread holds beyond the buffers it caches (each cached buffer holds
    /// one): they let the next returns skip the shared budget.
    spare: usize,
    tally: Arc<ThreadTally>,
}

impl FreeList {
    fn keep(&mut self, buf: Box<BytesMut>, ready: bool) {
        if ready {
            self.ready.push(buf);
        } else {
            self.frozen.push_back(buf);
        }
    }
}

impl ThreadCache for LocalCache {
    fn pool_alive(&self) -> bool {
        self.pool
            .upgrade()
            .is_some_and(|pool| !pool.closed.load(Ordering::Relaxed))
    }
}

thread_local! {
    static CACHES: Table<LocalCache> = const { RefCell::new(Vec::new()) };
}

impl Drop for LocalCache {
    /// A dying thread (or a pruned cache) hands its buffers to the shared list, where they stay
    /// counted, and gives back its spare slots and its counts; a closed pool frees them instead.
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            // The pool is gone, so this cache held no buffer: each would have kept it alive.
            return;
        };
        let mut ready = mem::take(&mut self.held.ready);
        let mut frozen = mem::take(&mut self.held.frozen);
        let freed = pool.with_shared(|shared| {
            if pool.closed.load(Ordering::Relaxed) {
                return ready.len() + frozen.len();
            }
            shared.ready.append(&mut ready);
            shared.frozen.append(&mut frozen);
            0
        });
        pool.budget.release(self.spare + freed);
        pool.tallies.retire(&self.tally);
        drop((ready, frozen));
        // SAFETY: from `Arc::as_ptr`; the `freed` buffers were just dropped; `pool` is a strong
        // reference of our own, so this cannot free the pool under us.
        unsafe { count_freed(Arc::as_ptr(&pool), freed) };
    }
}

impl Inner {
    /// Takes a buffer for `get`: this thread's cache, else the shared list, else a fresh one.
    fn take(self: &Arc<Self>) -> Box<BytesMut> {
        local::with(
            &CACHES,
            self.id,
            || Some(self.new_cache()),
            |cache| match cache.held.ready.pop() {
                Some(buf) => {
                    self.after_hit(cache);
                    buf
                }
                None => self.take_cached_slow(cache),
            },
        )
        .unwrap_or_else(|| self.take_uncached())
    }

    #[cold]
    fn take_cached_slow(self: &Arc<Self>, cache: &mut LocalCache) -> Box<BytesMut> {
        let found = self
            .reclaim_local_frozen(cache)
            .or_else(|| self.refill(cache));
        match found {
            Some(buf) => {
                self.after_hit(cache);
                buf
            }
            None => {
                cache.tally.add(Event::Miss);
                self.allocate()
            }
        }
    }

    fn after_hit(&self, cache: &mut LocalCache) {
        cache.tally.add(Event::Hit);
        // The buffer's slot is now a spare; keep a few for the next returns, give back the rest.
        cache.spare += 1;
        if cache.spare > self.thread_cache {
            let give = cache.spare - self.thread_cache / 2;
            cache.spare -= give;
            self.budget.release(give);
        }
    }

    /// Looks at this thread's oldest few frozen handles for one whose `Bytes` are all gone.
    fn reclaim_local_frozen(self: &Arc<Self>, cache: &mut LocalCache) -> Option<Box<BytesMut>> {
        let mut wrong_size = 0;
        let mut found = None;
        for _ in 0..FROZEN_PROBES.min(cache.held.frozen.len()) {
            let Some(buf) = cache.held.frozen.pop_front() else {
                break;
            };
            match self.reclaim(buf) {
                Reclaim::Ready(buf) => {
                    found = Some(buf);
                    break;
                }
                Reclaim::InUse(buf) => cache.held.frozen.push_back(buf),
                Reclaim::WrongSize => wrong_size += 1,
            }
        }
        // Their slots stay with this thread as spares.
        cache.spare += wrong_size;
        self.count_wrong_size(wrong_size, Some(cache));
        found
    }

    /// Moves up to half a thread cache of ready buffers from the shared list into `cache` in one
    /// lock acquisition and takes one, or else a reclaimed shared frozen handle. The moved
    /// buffers bring their slots with them.
    fn refill(self: &Arc<Self>, cache: &mut LocalCache) -> Option<Box<BytesMut>> {
        let (found, wrong_size) = self.with_shared(|shared| {
            let batch = (self.thread_cache / 2).max(1).min(shared.ready.len());
            let from = shared.ready.len() - batch;
            cache.held.ready.extend(shared.ready.drain(from..));
            match cache.held.ready.pop() {
                Some(buf) => (Some(buf), 0),
                None => self.reclaim_shared_frozen(shared),
            }
        });
        cache.spare += wrong_size;
        self.count_wrong_size(wrong_size, Some(cache));
        found
    }

    /// Takes from the shared list with no thread cache (the thread is exiting). The buffer's
    /// slot goes back to the budget.
    fn take_uncached(self: &Arc<Self>) -> Box<BytesMut> {
        let (found, wrong_size) = self.with_shared(|shared| match shared.ready.pop() {
            Some(buf) => (Some(buf), 0),
            None => self.reclaim_shared_frozen(shared),
        });
        self.budget.release(wrong_size);
        self.count_wrong_size(wrong_size, None);
        match found {
            Some(buf) => {
                self.budget.release(1);
                self.tallies.add_shared(Event::Hit);
                buf
            }
            None => {
                self.tallies.add_shared(Event::Miss);
                self.allocate()
            }
        }
    }

    /// Counts pooled frozen handles discarded because their storage was not of this pool's size.
    fn count_wrong_size(self: &Arc<Self>, n: usize, cache: Option<&mut LocalCache>) {
        for _ in 0..n {
            self.count(cache.as_deref().map(|c| &*c.tally), Event::Oversized);
        }
        // SAFETY: from `Arc::as_ptr`; the `n` handles were dropped by `reclaim`; `self` is a
        // strong reference, so this cannot free the pool under us.
        unsafe { count_freed(Arc::as_ptr(self), n) };
    }

    /// Looks at the oldest few shared frozen handles for one whose `Bytes` are all gone. Also
    /// returns how many it discarded for a wrong size; their slots pass to the caller.
    fn reclaim_shared_frozen(&self, shared: &mut FreeList) -> (Option<Box<BytesMut>>, usize) {
        let mut wrong_size = 0;
        for _ in 0..FROZEN_PROBES.min(shared.frozen.len()) {
            let Some(buf) = shared.frozen.pop_front() else {
                break;
            };
            match self.reclaim(buf) {
                Reclaim::Ready(buf) => return (Some(buf), wrong_size),
                Reclaim::InUse(buf) => shared.frozen.push_back(buf),
                Reclaim::WrongSize => wrong_size += 1,
            }
        }
        (None, wrong_size)
    }

    /// Tries to make a frozen handle's whole storage usable again.
    fn reclaim(&self, mut buf: Box<BytesMut>) -> Reclaim {
        if !buf.try_reclaim(self.buffer_size) {
            Reclaim::InUse(buf)
        } else if buf.capacity() == self.buffer_size {
            Reclaim::Ready(buf)
        } else {
            // Replaced by its user before `freeze`: not storage of this pool's size.
            Reclaim::WrongSize
        }
    }

    /// A fresh buffer, counted in `live`.
    fn allocate(self: &Arc<Self>) -> Box<BytesMut> {
        let mut buf = BytesMut::with_capacity(self.buffer_size);
        // Promote the storage to bytes' shared kind now, once in the buffer's life, so that
        // `freeze` can later split off a `Bytes` without allocating.
        drop(buf.split());
        if self.live.fetch_add(1, Ordering::Relaxed) == 0 {
            // The first live buffer: the pool keeps itself alive until the last one is freed
            // (`count_freed` drops this reference). `self` is a strong reference, so the count
            // cannot be zero here.
            mem::forget(Arc::clone(self));
        }
        Box::new(buf)
    }

    /// Takes a buffer back. Returns how many buffers were freed (the caller counts them with
    /// [`count_freed`] once done with the pool). This is the hot path: the buffer is judged and
    /// its box moved, nothing else.
    fn put(&self, buf: Box<BytesMut>, back: Back) -> usize {
        let mut buf = Some(buf);
        let cached = local::with(
            &CACHES,
            self.id,
            || self.new_cache_for_return(),
            |cache| match buf.take() {
                Some(buf) => self.put_cached(cache, buf, back),
                None => 0,
            },
        );
        match (cached, buf) {
            (Some(freed), _) => freed,
            (None, Some(buf)) => self.put_uncached(buf, back),
            (None, None) => 0,
        }
    }

    /// Decides what becomes of a returned buffer. A `Ready` buffer may still have a length: it
    /// is cleared where it is stored.
    fn judge(&self, buf: &mut BytesMut, back: Back) -> Verdict {
        if buf.capacity() == self.buffer_size && !matches!(back, Back::Grown) {
            // The handle spans `buffer_size` bytes from its start: `BytesMut` guarantees no
            // other handle can see any of them, whatever the reference count says.
            return Verdict::Ready;
        }
        if matches!(back, Back::Grown) {
            return Verdict::Oversized;
        }
        buf.clear();
        if !buf.try_reclaim(self.buffer_size) {
            if matches!(back, Back::Frozen) {
                Verdict::Frozen
            } else {
                Verdict::Detached
            }
        } else if buf.capacity() != self.buffer_size {
            Verdict::Oversized
        } else {
            Verdict::Ready
        }
    }

    /// Counts a return on `tally` (or the shared counts) and judges the buffer: `Some(ready)`
    /// when it is to be kept, `None` when it is let go (and counted as such).
    #[inline]
    fn receive(&self, buf: &mut BytesMut, back: Back, tally: Option<&ThreadTally>) -> Option<bool> {
        self.count(tally, Event::Return);
        match self.judge(buf, back) {
            Verdict::Ready => Some(true),
            Verdict::Frozen => Some(false),
            Verdict::Oversized => {
                self.count(tally, Event::Oversized);
                None
            }
            Verdict::Detached => {
                self.count(tally, Event::Detached);
                None
            }
        }
    }

    fn put_cached(&self, cache: &mut LocalCache, mut buf: Box<BytesMut>, back: Back) -> usize {
        let Some(ready) = self.receive(&mut buf, back, Some(&cache.tally)) else {
            return 1;
        };
        if cache.spare == 0 && !self.reserve_spares(cache) {
            cache.tally.add(Event::Dropped);
            return 1;
        }
        cache.spare -= 1;
        if ready && cache.held.ready.len() < self.thread_cache {
            buf.clear();
            cache.held.ready.push(buf);
            0
        } else {
            self.put_cached_slow(cache, buf, ready)
        }
    }

    /// Reserves a few budget slots for this thread's next returns; `false` when the pool is
    /// full (or closed: it keeps nothing more).
    #[cold]
    fn reserve_spares(&self, cache: &mut LocalCache) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        cache.spare = self.budget.reserve((self.thread_cache / 4).max(1));
        cache.spare > 0
    }

    /// A frozen handle, or a ready buffer that finds this thread's cache full. Returns how many
    /// buffers were freed because the pool closed.
    #[cold]
    fn put_cached_slow(
        &self,
        cache: &mut LocalCache,
        mut buf: Box<BytesMut>,
        ready: bool,
    ) -> usize {
        buf.clear();
        let held = if ready {
            cache.held.ready.len()
        } else {
            cache.held.frozen.len()
        };
        if held < self.thread_cache {
            cache.held.keep(buf, ready);
            return 0;
        }
        // Move the older half (or, with no thread cache, just this buffer) to the shared list
        // in one lock acquisition; their slots go with them.
        let batch = if self.thread_cache == 0 {
            0
        } else {
            (self.thread_cache / 2).max(1).min(held)
        };
        let refused = self.with_shared(|shared| {
            if self.closed.load(Ordering::Relaxed) {
                return Some(buf);
            }
            if ready {
                shared.ready.extend(cache.held.ready.drain(..batch));
            } else {
                shared.frozen.extend(cache.held.frozen.drain(..batch));
            }
            if self.thread_cache == 0 {
                shared.keep(buf, ready);
            } else {
                cache.held.keep(buf, ready);
            }
            None
        });
        refused.map_or(0, |buf| self.refuse(buf, Some(&cache.tally)))
    }

    /// Returns with no thread cache (the thread is exiting): straight to the shared list.
    /// Returns how many buffers were freed.
    #[cold]
    fn put_uncached(&self, mut buf: Box<BytesMut>, back: Back) -> usize {
        let Some(ready) = self.receive(&mut buf, back, None) else {
            return 1;
        };
        if self.closed.load(Ordering::Relaxed) || self.budget.reserve(1) == 0 {
            self.tallies.add_shared(Event::Dropped);
            return 1;
        }
        buf.clear();
        let refused = self.with_shared(|shared| {
            if self.closed.load(Ordering::Relaxed) {
                return Some(buf);
            }
            shared.keep(buf, ready);
            None
        });
        refused.map_or(0, |buf| self.refuse(buf, None))
    }

    /// Frees a buffer that found the pool closed after its slot was reserved, counting it as
    /// dropped on `tally` (or the shared counts). Returns 1: one buffer freed.
    fn refuse(&self, buf: Box<BytesMut>, tally: Option<&ThreadTally>) -> usize {
        drop(buf);
        self.budget.release(1);
        self.count(tally, Event::Dropped);
        1
    }

    /// Counts `event` on this thread's tally, or on the shared counts when there is none.
    fn count(&self, tally: Option<&ThreadTally>, event: Event) {
        match tally {
            Some(tally) => tally.add(event),
            None => self.tallies.add_shared(event),
        }
    }

    fn new_cache(&self) -> LocalCache {
        LocalCache {
            pool: self.this.clone(),
            held: FreeList {
                ready: Vec::with_capacity(self.thread_cache),
                frozen: VecDeque::with_capacity(self.thread_cache),
            },
            spare: 0,
            tally: self.tallies.register(),
        }
    }

    /// A thread's first return to this pool makes it a cache, unless the pool is closed.
    fn new_cache_for_return(&self) -> Option<LocalCache> {
        (!self.closed.load(Ordering::Relaxed)).then(|| self.new_cache())
    }

    /// Runs `f` under the shared list's lock.
    fn with_shared<R>(&self, f: impl FnOnce(&mut FreeList) -> R) -> R {
        // The list stays consistent even if a holder panicked: every critical section is a
        // plain push, pop or move of whole buffers.
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut shared)
    }

    /// The last handle is gone: this thread's cache and the shared list are freed, and from now
    /// on nothing returned is kept. Buffers still outstanding, and those in other threads'
    /// caches, keep the pool alive until they are freed (on return, or when their thread exits
    /// or next prunes its table).
    fn close(self: &Arc<Self>) {
        // This thread's cache goes to the shared list first, then with it.
        drop(local::remove(&CACHES, self.id));
        let (ready, frozen) = self.with_shared(|shared| {
            self.closed.store(true, Ordering::Relaxed);
            (mem::take(&mut shared.ready), mem::take(&mut shared.frozen))
        });
        let freed = ready.len() + frozen.len();
        self.budget.release(freed);
        drop((ready, frozen));
        // SAFETY: from `Arc::as_ptr`; the `freed` buffers were just dropped; `self` is a strong
        // reference, so this cannot free the pool under us.
        unsafe { count_freed(Arc::as_ptr(self), freed) };
    }

    fn stats(&self) -> Stats {
        let totals = self.tallies.read();
        let hits = totals.get(Event::Hit);
        let misses = totals.get(Event::Miss);
        let returns = totals.get(Event::Return);
        let gets = hits + misses;
        let outstanding = gets.saturating_sub(returns);
        // Every buffer that exists is outstanding or retained.
        let live = self.live.load(Ordering::Acquire) as u64;
        let pooled = live.saturating_sub(outstanding);
        Stats {
            gets,
            hits,
            misses,
            returns,
            dropped: totals.get(Event::Dropped),
            oversized: totals.get(Event::Oversized),
            detached: totals.get(Event::Detached),
            outstanding,
            pooled,
            pooled_bytes: pooled * self.buffer_size as u64,
        }
    }
}

/// What [`Inner::judge`] decided for a returned buffer.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// Reusable now.
    Ready,
    /// A frozen handle whose `Bytes` may be alive: keep it and reclaim it later.
    Frozen,
    /// Its capacity is not the pool's buffer size: let go.
    Oversized,
    /// Parts split off it still reference the storage: let go.
    Detached,
}

/// What [`Inner::reclaim`] found.
enum Reclaim {
    /// The whole storage is reusable.
    Ready(Box<BytesMut>),
    /// `Bytes` still reference it: try again later.
    InUse(Box<BytesMut>),
    /// Not storage of this pool's size: let go.
    WrongSize,
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
    fn the_hot_path_stays_in_the_thread_cache() {
        let pool = pool(64, 16, 4);
        for i in 0..100_u8 {
            let mut buf = pool.get();
            buf.put_u8(i);
            if i % 2 == 0 {
                drop(buf);
            } else {
                drop(buf.freeze());
            }
        }
        // Neither plain returns nor frozen handles went through the shared list.
        let shared = pool.inner.with_shared(|s| s.ready.len() + s.frozen.len());
        assert_eq!(shared, 0);
        assert_eq!((pool.stats().misses, pool.stats().pooled), (1, 1));
    }

    /// Whether the pool behind `weak` has been freed.
    fn freed(weak: &Weak<Inner>) -> bool {
        weak.upgrade().is_none()
    }

    #[test]
    fn dropping_the_last_handle_frees_the_pool_and_its_buffers() {
        for thread_cache in [0, 4] {
            let pool = pool(64, 8, thread_cache);
            let weak = pool.inner.this.clone();
            let clone = pool.clone();
            drop((pool.get(), pool.get()));
            let mut buf = pool.get();
            buf.put_u8(1);
            let frozen = buf.freeze();
            drop(pool);
            assert!(!freed(&weak), "a handle is left");
            assert_eq!(clone.stats().pooled, 2);
            drop(clone);
            // This thread's cache and the shared list went with the last handle; the frozen
            // handle too, and its `Bytes` still reads.
            assert!(freed(&weak));
            assert_eq!(&frozen[..], &[1]);
        }
    }

    #[test]
    fn an_outstanding_buffer_keeps_a_dropped_pool_until_it_returns() {
        let pool = pool(64, 8, 4);
        let weak = pool.inner.this.clone();
        let held = pool.get();
        let mut grown = pool.get();
        grown.extend_from_slice(&[1; 100]);
        drop(pool);
        assert!(!freed(&weak));
        let bytes = grown.freeze();
        assert!(!freed(&weak));
        // Returned to a closed pool: freed, and with it the pool. No cache is created for it.
        std::thread::spawn(move || drop(held))
            .join()
            .expect("no panic");
        assert!(freed(&weak));
        assert_eq!(bytes.len(), 100);
    }

    #[test]
    fn another_threads_cache_keeps_a_dropped_pool_until_that_thread_exits() {
        let pool = pool(64, 8, 4);
        let weak = pool.inner.this.clone();
        let (to_worker, work) = std::sync::mpsc::channel::<PooledBuf>();
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            for buf in work {
                drop(buf);
                done_tx.send(()).expect("test alive");
            }
        });
        let (first, second) = (pool.get(), pool.get());
        to_worker.send(first).expect("worker alive");
        done.recv().expect("worker alive");
        assert_eq!(pool.stats().pooled, 1, "cached by the worker");
        drop(pool);
        to_worker.send(second).expect("worker alive");
        done.recv().expect("worker alive");
        assert!(!freed(&weak), "the worker's cache still holds a buffer");
        drop(to_worker);
        worker.join().expect("no panic");
        // The thread's exit freed what its cache held, and with it the pool.
        assert!(freed(&weak));
    }

    #[test]
    fn a_closed_pools_cache_is_pruned_when_the_thread_uses_another_pool() {
        let (first, second) = (pool(64, 8, 4), pool(64, 8, 4));
        let weak = first.inner.this.clone();
        let buf = first.get();
        let (cached_tx, cached) = std::sync::mpsc::channel::<()>();
        let (closed_tx, closed) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            drop(buf); // cached on this thread
            cached_tx.send(()).expect("test alive");
            closed.recv().expect("test alive");
            let alive_before = !freed(&weak);
            drop(second.get()); // a new entry prunes the closed pool's
            (alive_before, freed(&weak))
        });
        cached.recv().expect("worker alive");
        drop(first);
        closed_tx.send(()).expect("worker alive");
        let (alive_before, freed_after) = worker.join().expect("no panic");
        assert!(alive_before, "the worker's cache held a buffer");
        assert!(freed_after);
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        fn send<T: Send>() {}
        check::<BufferPool>();
        send::<PooledBuf>();
    }
}
