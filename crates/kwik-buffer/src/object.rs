//! A generic pool of reusable objects with a reset hook.
//!
//! The free list is sharded: one mutex-guarded stack per shard, and each thread keeps to its own
//! shard (assigned round-robin on first use), taking from the others only when its own is empty.
//! Threads therefore almost never contend for a lock or share a cache line, unlike the
//! `object-pool` crate's single mutex-guarded stack, which is as fast on one thread but several
//! times slower when threads share it; `docs/benchmarks.md` has the figures. A shard's counters
//! live under its lock, so they cost no extra atomic operation and add up exactly.

use std::cell::Cell;
use std::fmt;
use std::mem::{self, ManuallyDrop};
use std::num::NonZeroUsize;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, MutexGuard};

use crate::BuildError;

const DEFAULT_MAX_POOLED: usize = 1024;

type Create<T> = Box<dyn Fn() -> T + Send + Sync>;
type Reset<T> = Box<dyn Fn(&mut T) + Send + Sync>;

/// Hands each thread its home shard index, round-robin.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// A small number that differs between threads created one after the other.
fn thread_index() -> usize {
    THREAD_INDEX
        .try_with(|index| match index.get() {
            Some(i) => i,
            None => {
                let i = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
                index.set(Some(i));
                i
            }
        })
        // A thread that is exiting still gets a valid (shared) shard.
        .unwrap_or(0)
}

/// A pool of reusable `T`s: [`get`](Self::get) hands one out, dropping the [`Pooled`] hands it
/// back after the reset hook has run.
///
/// Objects are created by the factory given to [`builder`](Self::builder) when the pool has none
/// to offer. At most `max_pooled` are kept. `ObjectPool` is `Send + Sync` when `T: Send`: share
/// it by reference, or in an `Arc`; a [`Pooled`] borrows the pool it came from.
///
/// # Examples
///
/// ```
/// use kwik_buffer::ObjectPool;
///
/// let pool = ObjectPool::builder(|| Vec::<u32>::with_capacity(128))
///     .reset(|v| v.clear())
///     .build()?;
/// let mut scratch = pool.get();
/// scratch.extend([1, 2, 3]);
/// drop(scratch); // cleared and kept
/// let again = pool.get();
/// assert!(again.is_empty() && again.capacity() >= 128);
/// # Ok::<(), kwik_buffer::BuildError>(())
/// ```
pub struct ObjectPool<T> {
    /// A power of two in length, so that a thread finds its shard with a mask, not a division.
    shards: Box<[CachePadded<Mutex<Shard<T>>>]>,
    create: Create<T>,
    reset: Option<Reset<T>>,
    max_pooled: usize,
}

impl<T: Send> ObjectPool<T> {
    /// Starts building a pool whose new objects come from `create`. Defaults: no reset hook, at
    /// most 1024 objects kept, one shard per available CPU.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(String::new).build()?;
    /// assert_eq!(pool.max_pooled(), 1024);
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn builder(create: impl Fn() -> T + Send + Sync + 'static) -> ObjectPoolBuilder<T> {
        ObjectPoolBuilder {
            create: Box::new(create),
            reset: None,
            max_pooled: DEFAULT_MAX_POOLED,
            shards: None,
        }
    }

    /// Takes an object: from this thread's shard, else from another shard, else a new one from
    /// the factory (a [miss](ObjectStats::misses)).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(|| 0_u64).build()?;
    /// *pool.get() += 1;
    /// assert_eq!(*pool.get(), 1, "no reset hook: the value comes back as it was left");
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn get(&self) -> Pooled<'_, T> {
        let home = self.home();
        // A statement of its own, so that the guard is released before `take_elsewhere`.
        let hit = self.lock(home).take_hit();
        let value = match hit {
            Some(value) => value,
            None => self.take_elsewhere(home),
        };
        Pooled {
            value: ManuallyDrop::new(value),
            pool: self,
            home,
        }
    }

    /// Reads the pool's counters (taking each shard's lock in turn).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(String::new).build()?;
    /// drop(pool.get());
    /// drop(pool.get());
    /// let stats = pool.stats();
    /// assert_eq!((stats.gets, stats.hits, stats.misses, stats.pooled), (2, 1, 1, 1));
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn stats(&self) -> ObjectStats {
        let mut stats = ObjectStats::default();
        for index in 0..self.shards.len() {
            let shard = self.lock(index);
            stats.hits += shard.hits;
            stats.misses += shard.misses;
            stats.returns += shard.returns;
            stats.dropped += shard.dropped;
            stats.detached += shard.detached;
            stats.pooled += shard.items.len() as u64;
        }
        stats.gets = stats.hits + stats.misses;
        stats.outstanding = stats.gets.saturating_sub(stats.returns);
        stats
    }

    /// The most objects this pool keeps at once, over all shards.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(String::new).max_pooled(8).build()?;
    /// assert_eq!(pool.max_pooled(), 8);
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn max_pooled(&self) -> usize {
        self.max_pooled
    }

    /// This thread's shard was empty: take from another, or create.
    #[cold]
    fn take_elsewhere(&self, home: usize) -> T {
        let others = (1..self.shards.len()).map(|step| (home + step) % self.shards.len());
        for index in others {
            // Never wait on a busy shard: its owner is using it, and creating is the fallback.
            let found = self.shards[index]
                .try_lock()
                .and_then(|mut shard| shard.items.pop());
            if let Some(value) = found {
                self.lock(home).hits += 1;
                return value;
            }
        }
        self.lock(home).misses += 1;
        // The factory runs outside every lock: it may use this pool itself.
        (self.create)()
    }

    /// This thread's shard.
    fn home(&self) -> usize {
        thread_index() & (self.shards.len() - 1)
    }

    /// Takes `value` back into shard `home`: the one it came from, which is the returning
    /// thread's own unless the object travelled.
    fn put(&self, mut value: T, home: usize) {
        // User code runs outside every lock: it may use this pool itself.
        if let Some(reset) = &self.reset {
            reset(&mut value);
        }
        let rejected = self.lock(home).keep(value);
        // Dropped outside the lock: `T`'s own `Drop` may use this pool.
        drop(rejected);
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard<T>> {
        // parking_lot: no poisoning to check (a shard is a stack of whole objects and a few
        // counters, which a panic elsewhere cannot leave inconsistent), and an unlock that is
        // one compare-exchange.
        self.shards[index].lock()
    }
}

impl<T> fmt::Debug for ObjectPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPool")
            .field("max_pooled", &self.max_pooled)
            .field("shards", &self.shards.len())
            .field("reset", &self.reset.is_some())
            .finish_non_exhaustive()
    }
}

/// Configures and builds an [`ObjectPool`]; see [`ObjectPool::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct ObjectPoolBuilder<T> {
    create: Create<T>,
    reset: Option<Reset<T>>,
    max_pooled: usize,
    shards: Option<usize>,
}

impl<T: Send> ObjectPoolBuilder<T> {
    /// A hook run on every returned object before it is kept (clear a collection, rewind a
    /// cursor), on the thread that returns it. Default: none, objects come back as they were
    /// left.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(String::new).reset(String::clear).build()?;
    /// pool.get().push_str("used");
    /// assert_eq!(*pool.get(), "");
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn reset(mut self, reset: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.reset = Some(Box::new(reset));
        self
    }

    /// The most objects kept at once, split evenly over the shards; an object returned to a full
    /// shard is dropped. Default: 1024. Must be at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(String::new).max_pooled(1).build()?;
    /// drop((pool.get(), pool.get()));
    /// assert_eq!((pool.stats().pooled, pool.stats().dropped), (1, 1));
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn max_pooled(mut self, objects: usize) -> Self {
        self.max_pooled = objects;
        self
    }

    /// How many independent free lists to keep. Default: the number of CPUs
    /// (`std::thread::available_parallelism`). Rounded down to a power of two and to at most
    /// `max_pooled`, so each shard can keep at least one object. Must be at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(String::new).shards(1).build()?;
    /// drop(pool.get());
    /// assert_eq!(pool.stats().pooled, 1);
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Validates the settings and creates the pool. No object is created yet.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroMaxPooled`] or [`BuildError::ZeroShards`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_buffer::{BuildError, ObjectPool};
    ///
    /// let err = ObjectPool::builder(String::new).max_pooled(0).build().unwrap_err();
    /// assert_eq!(err, BuildError::ZeroMaxPooled);
    /// ```
    pub fn build(self) -> Result<ObjectPool<T>, BuildError> {
        if self.max_pooled == 0 {
            return Err(BuildError::ZeroMaxPooled);
        }
        let shards = match self.shards {
            Some(0) => return Err(BuildError::ZeroShards),
            Some(shards) => shards,
            None => thread::available_parallelism().map_or(1, NonZeroUsize::get),
        }
        .min(self.max_pooled);
        // Rounded down to a power of two (see `ObjectPool::shards`).
        let shards = 1 << shards.ilog2();
        // Split `max_pooled` exactly: the first `max_pooled % shards` shards keep one more.
        let shards = (0..shards)
            .map(|i| {
                let capacity = self.max_pooled / shards + usize::from(i < self.max_pooled % shards);
                CachePadded::new(Mutex::new(Shard::new(capacity)))
            })
            .collect();
        Ok(ObjectPool {
            shards,
            create: self.create,
            reset: self.reset,
            max_pooled: self.max_pooled,
        })
    }
}

impl<T> fmt::Debug for ObjectPoolBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPoolBuilder")
            .field("reset", &self.reset.is_some())
            .field("max_pooled", &self.max_pooled)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

/// An object taken from an [`ObjectPool`]; derefs to `T` and goes back to the pool when dropped.
///
/// # Examples
///
/// ```
/// let pool = kwik_buffer::ObjectPool::builder(Vec::<u8>::new).build()?;
/// let mut v = pool.get();
/// v.push(1);
/// let owned: Vec<u8> = kwik_buffer::Pooled::detach(v); // leaves the pool for good
/// assert_eq!(owned, [1]);
/// # Ok::<(), kwik_buffer::BuildError>(())
/// ```
pub struct Pooled<'a, T: Send> {
    /// Taken exactly once: by `Drop`, or by `detach` (which then forgets `self`).
    value: ManuallyDrop<T>,
    pool: &'a ObjectPool<T>,
    /// The shard of the thread that took it, where it goes back.
    home: usize,
}

impl<T: Send> Pooled<'_, T> {
    /// Takes the object out of the pool's care: it will not be returned. Counted as a return.
    /// An associated function, so that it never shadows a method of `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(String::new).build()?;
    /// let s = kwik_buffer::Pooled::detach(pool.get());
    /// assert_eq!((s, pool.stats().pooled, pool.stats().outstanding), (String::new(), 0, 0));
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn detach(mut this: Self) -> T {
        {
            let mut shard = this.pool.lock(this.home);
            shard.returns += 1;
            shard.detached += 1;
        }
        // SAFETY: `value` is initialised (only `Drop` and this function take it) and is not used
        // again: `this` is forgotten right after, so `Drop` does not run. Its other field is a
        // shared reference, so forgetting it leaks nothing.
        let value = unsafe { ManuallyDrop::take(&mut this.value) };
        mem::forget(this);
        value
    }
}

impl<T: Send> Deref for Pooled<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Send> DerefMut for Pooled<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Send + fmt::Debug> fmt::Debug for Pooled<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}

impl<T: Send> Drop for Pooled<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `value` is initialised: `detach`, the only other taker, forgets `self`.
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        self.pool.put(value, self.home);
    }
}

/// A snapshot of an [`ObjectPool`]'s counters, read with [`ObjectPool::stats`].
///
/// Exact once the threads using the pool are quiet: `gets == hits + misses`,
/// `outstanding == gets - returns`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectStats {
    /// Objects handed out by `get`.
    pub gets: u64,
    /// Gets served from a pooled object.
    pub hits: u64,
    /// Gets that called the factory because no object was free.
    pub misses: u64,
    /// Objects handed back (dropped or detached).
    pub returns: u64,
    /// Returned objects dropped because their shard already held its share of `max_pooled`.
    pub dropped: u64,
    /// Objects taken out of the pool with [`Pooled::detach`].
    pub detached: u64,
    /// Objects handed out and not yet returned.
    pub outstanding: u64,
    /// Objects the pool currently keeps.
    pub pooled: u64,
}

/// One free list and its counters, all under one lock.
struct Shard<T> {
    items: Vec<T>,
    capacity: usize,
    hits: u64,
    misses: u64,
    returns: u64,
    dropped: u64,
    detached: u64,
}

impl<T> Shard<T> {
    fn new(capacity: usize) -> Self {
        Self {
            items: Vec::new(),
            capacity,
            hits: 0,
            misses: 0,
            returns: 0,
            dropped: 0,
            detached: 0,
        }
    }

    fn take_hit(&mut self) -> Option<T> {
        let value = self.items.pop()?;
        self.hits += 1;
        Some(value)
    }

    /// Keeps `value` if there is room; hands it back otherwise, to be dropped by the caller
    /// after the lock is released.
    fn keep(&mut self, value: T) -> Option<T> {
        self.returns += 1;
        if self.items.len() < self.capacity {
            self.items.push(value);
            None
        } else {
            self.dropped += 1;
            Some(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::*;

    fn pool(max_pooled: usize, shards: usize) -> ObjectPool<Vec<u8>> {
        ObjectPool::builder(|| Vec::with_capacity(64))
            .reset(Vec::clear)
            .max_pooled(max_pooled)
            .shards(shards)
            .build()
            .expect("valid settings")
    }

    #[test]
    fn builder_validates() {
        let b = || ObjectPool::builder(String::new);
        assert_eq!(
            b().max_pooled(0).build().unwrap_err(),
            BuildError::ZeroMaxPooled
        );
        assert_eq!(b().shards(0).build().unwrap_err(), BuildError::ZeroShards);
        // Never more shards than objects to keep.
        assert_eq!(
            b().max_pooled(2)
                .shards(8)
                .build()
                .expect("valid")
                .shards
                .len(),
            2
        );
    }

    #[test]
    fn returned_objects_are_reset_and_reused() {
        for shards in [1, 4] {
            let pool = pool(8, shards);
            let mut v = pool.get();
            v.extend_from_slice(b"dirty");
            let ptr = v.as_ptr();
            drop(v);
            let v = pool.get();
            assert_eq!((v.as_ptr(), v.len()), (ptr, 0));
            let s = pool.stats();
            assert_eq!(
                (s.gets, s.hits, s.misses, s.returns, s.outstanding),
                (2, 1, 1, 1, 1)
            );
        }
    }

    #[test]
    fn factory_runs_only_on_misses() {
        let created = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&created);
        let pool = ObjectPool::builder(move || counter.fetch_add(1, Ordering::Relaxed))
            .build()
            .expect("valid settings");
        for _ in 0..100 {
            drop(pool.get());
        }
        assert_eq!(created.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn retention_is_bounded_exactly() {
        for shards in [1, 2, 4] {
            let pool = pool(7, shards);
            let held: Vec<_> = (0..20).map(|_| pool.get()).collect();
            drop(held);
            // This thread returns everything to its home shard, which keeps its share.
            let s = pool.stats();
            assert!(s.pooled <= 7 && s.pooled + s.dropped == 20, "{s:?}");
            let total: usize = pool.shards.iter().map(|s| s.lock().capacity).sum();
            assert_eq!(total, 7);
        }
    }

    #[test]
    fn an_empty_home_shard_takes_from_the_others() {
        let pool = pool(8, 2);
        let taken: Vec<_> = (0..4).map(|_| pool.get()).collect();
        // Returned on other threads: to whichever shards those threads call home.
        thread::scope(|s| {
            for v in taken {
                s.spawn(move || drop(v));
            }
        });
        let again: Vec<_> = (0..4).map(|_| pool.get()).collect();
        let stats = pool.stats();
        assert_eq!((stats.misses, stats.hits), (4, 4), "{stats:?}");
        drop(again);
    }

    #[test]
    fn detached_objects_leave_the_pool() {
        let pool = pool(4, 2);
        let v = Pooled::detach(pool.get());
        assert_eq!(v.capacity(), 64);
        let s = pool.stats();
        assert_eq!(
            (s.detached, s.returns, s.pooled, s.outstanding),
            (1, 1, 0, 0)
        );
    }

    #[test]
    fn threads_sharing_a_pool_keep_exact_books() {
        let pool = pool(64, 4);
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..10_000_u32 {
                        let mut v = pool.get();
                        assert!(v.is_empty(), "reset ran");
                        v.extend_from_slice(&i.to_le_bytes());
                    }
                });
            }
        });
        let s = pool.stats();
        assert_eq!((s.gets, s.returns, s.outstanding), (40_000, 40_000, 0));
        assert_eq!(s.gets, s.hits + s.misses);
        assert_eq!(s.misses, s.pooled + s.dropped, "{s:?}");
    }

    #[test]
    fn the_factory_and_drop_may_use_a_pool() {
        // The factory is `'static`, so the pool it draws from lives for the whole test binary.
        let inner: &'static ObjectPool<Vec<u8>> = Box::leak(Box::new(pool(4, 1)));
        let outer = ObjectPool::builder(|| inner.get())
            .max_pooled(1)
            .build()
            .expect("valid");
        // The second is dropped by the full outer pool, returning its inner object meanwhile.
        drop((outer.get(), outer.get()));
        assert_eq!(outer.stats().dropped, 1);
        assert_eq!((inner.stats().returns, inner.stats().outstanding), (1, 1));
    }
}
