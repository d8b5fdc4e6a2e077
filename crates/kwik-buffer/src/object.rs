//! A generic pool of reusable objects with a reset hook.
//!
//! Same shape as the buffer pool: a small per-thread cache in front of a shared, bounded free
//! list, with counters kept per thread. It replaces the `object-pool` crate, whose single
//! mutex-guarded stack is fast on one thread but slows down several times when threads share
//! it; `docs/benchmarks.md` has the measured figures.

use std::any::Any;
use std::fmt;
use std::mem::{self, ManuallyDrop};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::BuildError;
use crate::local::{self, AnyCache, ThreadCache};
use crate::tally::{Budget, Event, Tallies, ThreadTally};

const DEFAULT_MAX_POOLED: usize = 1024;
const DEFAULT_THREAD_CACHE: usize = 32;

type Create<T> = Box<dyn Fn() -> T + Send + Sync>;
type Reset<T> = Box<dyn Fn(&mut T) + Send + Sync>;

/// A pool of reusable `T`s: [`get`](Self::get) hands one out, dropping the [`Pooled`] hands it
/// back after the reset hook has run.
///
/// Objects are created by the factory given to [`builder`](Self::builder) when the pool has none
/// to offer. At most `max_pooled` are kept; each thread keeps up to `thread_cache` of them
/// locally, so the common case takes no lock. `ObjectPool` is a cheap handle: clones share one
/// pool.
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
pub struct ObjectPool<T: Send + 'static> {
    inner: Arc<Inner<T>>,
}

impl<T: Send + 'static> ObjectPool<T> {
    /// Starts building a pool whose new objects come from `create`. Defaults: no reset hook, at
    /// most 1024 objects kept, 32 per thread.
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
            thread_cache: DEFAULT_THREAD_CACHE,
        }
    }

    /// Takes an object: one this thread returned recently, else one from the shared list, else a
    /// new one from the factory (a [miss](ObjectStats::misses)).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(|| 0_u64).build()?;
    /// *pool.get() += 1;
    /// assert_eq!(*pool.get(), 1, "no reset hook: the value comes back as it was left");
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn get(&self) -> Pooled<T> {
        Pooled {
            value: ManuallyDrop::new(self.inner.take()),
            pool: Some(Arc::clone(&self.inner)),
        }
    }

    /// Reads the pool's counters.
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
        self.inner.stats()
    }

    /// The most objects this pool keeps at once, over all threads.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(String::new).max_pooled(8).thread_cache(4).build()?;
    /// assert_eq!(pool.max_pooled(), 8);
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn max_pooled(&self) -> usize {
        self.inner.max_pooled
    }
}

impl<T: Send + 'static> Clone for ObjectPool<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Send + 'static> fmt::Debug for ObjectPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPool")
            .field("max_pooled", &self.inner.max_pooled)
            .field("thread_cache", &self.inner.thread_cache)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Configures and builds an [`ObjectPool`]; see [`ObjectPool::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct ObjectPoolBuilder<T> {
    create: Create<T>,
    reset: Option<Reset<T>>,
    max_pooled: usize,
    thread_cache: usize,
}

impl<T: Send + 'static> ObjectPoolBuilder<T> {
    /// A hook run on every returned object before it is kept (clear a collection, rewind a
    /// cursor), on the thread that returns it. Default: none, objects come back as they were
    /// left. Objects the pool will not keep are dropped without it.
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

    /// The most objects kept at once, summed over the shared list and every thread cache; an
    /// object returned beyond it is dropped. Default: 1024. Must be at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(String::new).max_pooled(1).thread_cache(1).build()?;
    /// drop((pool.get(), pool.get()));
    /// assert_eq!((pool.stats().pooled, pool.stats().dropped), (1, 1));
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn max_pooled(mut self, objects: usize) -> Self {
        self.max_pooled = objects;
        self
    }

    /// How many objects each thread keeps in its own cache before spilling to the shared list.
    /// Default: 32. `0` disables the thread caches; it must not exceed `max_pooled`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::ObjectPool::builder(String::new).thread_cache(0).build()?;
    /// drop(pool.get());
    /// assert_eq!(pool.stats().pooled, 1);
    /// # Ok::<(), kwik_buffer::BuildError>(())
    /// ```
    pub fn thread_cache(mut self, objects: usize) -> Self {
        self.thread_cache = objects;
        self
    }

    /// Validates the settings and creates the pool. No object is created yet.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroMaxPooled`] or [`BuildError::ThreadCacheTooLarge`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_buffer::{BuildError, ObjectPool};
    ///
    /// let err = ObjectPool::builder(String::new).max_pooled(0).thread_cache(0).build().unwrap_err();
    /// assert_eq!(err, BuildError::ZeroMaxPooled);
    /// ```
    pub fn build(self) -> Result<ObjectPool<T>, BuildError> {
        if self.max_pooled == 0 {
            return Err(BuildError::ZeroMaxPooled);
        }
        if self.thread_cache > self.max_pooled {
            return Err(BuildError::ThreadCacheTooLarge {
                thread_cache: self.thread_cache,
                max_pooled: self.max_pooled,
            });
        }
        Ok(ObjectPool {
            inner: Arc::new(Inner {
                id: local::next_id(),
                max_pooled: self.max_pooled,
                thread_cache: self.thread_cache,
                create: self.create,
                reset: self.reset,
                budget: Budget::new(self.max_pooled),
                tallies: Tallies::default(),
                shared: Mutex::new(Vec::new()),
                shared_len: AtomicUsize::new(0),
            }),
        })
    }
}

impl<T> fmt::Debug for ObjectPoolBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPoolBuilder")
            .field("reset", &self.reset.is_some())
            .field("max_pooled", &self.max_pooled)
            .field("thread_cache", &self.thread_cache)
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
pub struct Pooled<T: Send + 'static> {
    /// Taken exactly once: by `Drop`, or by `detach` (which then forgets `self`).
    value: ManuallyDrop<T>,
    pool: Option<Arc<Inner<T>>>,
}

impl<T: Send + 'static> Pooled<T> {
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
        if let Some(pool) = this.pool.take() {
            pool.count_detached();
        }
        // SAFETY: `value` is initialised (only `Drop` and this function take it) and is not used
        // again: `this` is forgotten right after, so `Drop` does not run; its `pool` is `None`,
        // so forgetting it leaks nothing.
        let value = unsafe { ManuallyDrop::take(&mut this.value) };
        mem::forget(this);
        value
    }
}

impl<T: Send + 'static> Deref for Pooled<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Send + 'static> DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Send + 'static + fmt::Debug> fmt::Debug for Pooled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}

impl<T: Send + 'static> Drop for Pooled<T> {
    fn drop(&mut self) {
        // SAFETY: `value` is initialised: `detach`, the only other taker, forgets `self`.
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        match self.pool.take() {
            Some(pool) => pool.put(value),
            None => drop(value),
        }
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
    /// Returned objects dropped because the pool already held `max_pooled`.
    pub dropped: u64,
    /// Objects taken out of the pool with [`Pooled::detach`].
    pub detached: u64,
    /// Objects handed out and not yet returned.
    pub outstanding: u64,
    /// Objects the pool currently keeps.
    pub pooled: u64,
}

struct Inner<T> {
    id: u64,
    max_pooled: usize,
    thread_cache: usize,
    create: Create<T>,
    reset: Option<Reset<T>>,
    budget: Budget,
    tallies: Tallies,
    shared: Mutex<Vec<T>>,
    /// Objects in `shared`, mirrored for stats without taking the lock.
    shared_len: AtomicUsize,
}

/// One thread's share of an object pool.
struct LocalCache<T> {
    pool: Weak<Inner<T>>,
    items: Vec<T>,
    /// Budget slots held: one per item, plus spares that let the next returns skip the budget.
    credits: usize,
    tally: Arc<ThreadTally>,
}

impl<T: Send + 'static> ThreadCache for LocalCache<T> {
    fn pool_alive(&self) -> bool {
        self.pool.strong_count() > 0
    }
}

impl<T: Send + 'static> AnyCache for LocalCache<T> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<T> Drop for LocalCache<T> {
    /// A dying thread hands its objects to the shared list and gives back its spare slots.
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        self.tally.set_cached(0);
        let spare = self.credits - self.items.len();
        pool.with_shared(|shared| shared.append(&mut self.items));
        pool.budget.release(spare);
        pool.tallies.retire(&self.tally);
    }
}

impl<T> Inner<T> {
    fn with_shared<R>(&self, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
        // A panic elsewhere cannot leave a `Vec` of whole objects inconsistent.
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut shared);
        self.shared_len.store(shared.len(), Ordering::Relaxed);
        out
    }
}

impl<T: Send + 'static> Inner<T> {
    fn take(self: &Arc<Self>) -> T {
        let cached = local::with_any(
            self.id,
            || self.new_cache(),
            |cache| {
                let found = cache.items.pop().or_else(|| self.refill(cache));
                if found.is_some() {
                    cache.tally.add(Event::Hit);
                    // The object's slot is now a spare: keep a few, give back the rest.
                    let spare = cache.credits - cache.items.len();
                    if spare > self.thread_cache {
                        let give = spare - self.thread_cache / 2;
                        cache.credits -= give;
                        self.budget.release(give);
                    }
                    cache.tally.set_cached(cache.items.len());
                } else {
                    cache.tally.add(Event::Miss);
                }
                found
            },
        );
        let found = match cached {
            Some(found) => found,
            None => {
                let found = self.with_shared(Vec::pop);
                if found.is_some() {
                    self.budget.release(1);
                }
                self.tallies.add_shared(if found.is_some() {
                    Event::Hit
                } else {
                    Event::Miss
                });
                found
            }
        };
        // The factory runs outside the thread cache: it may use pools itself.
        found.unwrap_or_else(|| (self.create)())
    }

    /// Moves up to half a thread cache from the shared list in one lock acquisition.
    fn refill(&self, cache: &mut LocalCache<T>) -> Option<T> {
        self.with_shared(|shared| {
            let batch = (self.thread_cache / 2).max(1).min(shared.len());
            cache.items.extend(shared.drain(shared.len() - batch..));
            cache.credits += batch;
            cache.items.pop()
        })
    }

    fn put(self: &Arc<Self>, mut value: T) {
        // User code runs outside the thread cache: it may use pools itself.
        if let Some(reset) = &self.reset {
            reset(&mut value);
        }
        let mut slot = Some(value);
        let rejected = local::with_any(
            self.id,
            || self.new_cache(),
            |cache| {
                let value = slot.take()?;
                cache.tally.add(Event::Return);
                if cache.credits == cache.items.len() {
                    let granted = self.budget.reserve((self.thread_cache / 4).max(1));
                    if granted == 0 {
                        cache.tally.add(Event::Dropped);
                        return Some(value);
                    }
                    cache.credits += granted;
                }
                if cache.items.len() < self.thread_cache {
                    cache.items.push(value);
                } else {
                    // Move the older half (or, with no thread cache, just this object) to the
                    // shared list; their slots go with them.
                    let batch = (self.thread_cache / 2).min(cache.items.len());
                    let moved = if self.thread_cache == 0 { 1 } else { batch };
                    self.with_shared(|shared| {
                        shared.extend(cache.items.drain(..batch));
                        if self.thread_cache == 0 {
                            shared.push(value);
                        } else {
                            cache.items.push(value);
                        }
                    });
                    cache.credits -= moved;
                }
                cache.tally.set_cached(cache.items.len());
                None
            },
        );
        // Dropped here, outside the thread cache: `T`'s own `Drop` may use pools.
        drop(rejected.flatten());
        if let Some(value) = slot {
            self.put_uncached(value);
        }
    }

    /// Returns with no thread cache (the thread is exiting): straight to the shared list.
    fn put_uncached(&self, value: T) {
        self.tallies.add_shared(Event::Return);
        if self.budget.reserve(1) == 0 {
            self.tallies.add_shared(Event::Dropped);
            return;
        }
        self.with_shared(|shared| shared.push(value));
    }

    fn count_detached(self: &Arc<Self>) {
        let counted = local::with_any(
            self.id,
            || self.new_cache(),
            |cache| {
                cache.tally.add(Event::Return);
                cache.tally.add(Event::Detached);
            },
        );
        if counted.is_none() {
            self.tallies.add_shared(Event::Return);
            self.tallies.add_shared(Event::Detached);
        }
    }

    fn new_cache(self: &Arc<Self>) -> LocalCache<T> {
        LocalCache {
            pool: Arc::downgrade(self),
            items: Vec::with_capacity(self.thread_cache),
            credits: 0,
            tally: self.tallies.register(),
        }
    }

    fn stats(&self) -> ObjectStats {
        let totals = self.tallies.read();
        let hits = totals.get(Event::Hit);
        let misses = totals.get(Event::Miss);
        let returns = totals.get(Event::Return);
        let gets = hits + misses;
        ObjectStats {
            gets,
            hits,
            misses,
            returns,
            dropped: totals.get(Event::Dropped),
            detached: totals.get(Event::Detached),
            outstanding: gets.saturating_sub(returns),
            pooled: (self.shared_len.load(Ordering::Relaxed) + totals.cached) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::thread;

    use super::*;

    fn pool(max_pooled: usize, thread_cache: usize) -> ObjectPool<Vec<u8>> {
        ObjectPool::builder(|| Vec::with_capacity(64))
            .reset(Vec::clear)
            .max_pooled(max_pooled)
            .thread_cache(thread_cache)
            .build()
            .expect("valid settings")
    }

    #[test]
    fn builder_validates() {
        let b = || ObjectPool::builder(String::new);
        assert_eq!(
            b().max_pooled(0).thread_cache(0).build().unwrap_err(),
            BuildError::ZeroMaxPooled
        );
        assert_eq!(
            b().max_pooled(2).thread_cache(3).build().unwrap_err(),
            BuildError::ThreadCacheTooLarge {
                thread_cache: 3,
                max_pooled: 2
            }
        );
    }

    #[test]
    fn returned_objects_are_reset_and_reused() {
        for thread_cache in [0, 4] {
            let pool = pool(8, thread_cache);
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
            .max_pooled(4)
            .thread_cache(2)
            .build()
            .expect("valid settings");
        for _ in 0..100 {
            drop(pool.get());
        }
        assert_eq!(created.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn retention_is_bounded() {
        for thread_cache in [0, 1, 3] {
            let pool = pool(3, thread_cache);
            let held: Vec<_> = (0..10).map(|_| pool.get()).collect();
            drop(held);
            let s = pool.stats();
            assert_eq!(
                (s.pooled, s.dropped, s.returns, s.outstanding),
                (3, 7, 10, 0)
            );
        }
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
    fn objects_cross_threads_and_exiting_threads_give_theirs_back() {
        let pool = pool(64, 4);
        let taken: Vec<_> = (0..16).map(|_| pool.get()).collect();
        thread::spawn(move || drop(taken)).join().expect("no panic");
        let s = pool.stats();
        assert_eq!((s.pooled, s.outstanding, s.dropped), (16, 0, 0));

        let workers: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                thread::spawn(move || {
                    for i in 0..10_000_u32 {
                        let mut v = pool.get();
                        assert!(v.is_empty(), "reset ran");
                        v.extend_from_slice(&i.to_le_bytes());
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("no panic");
        }
        let s = pool.stats();
        assert_eq!(s.gets, 16 + 40_000);
        assert_eq!((s.gets, s.outstanding), (s.hits + s.misses, 0));
        assert_eq!(s.misses, s.pooled + s.dropped, "{s:?}");
    }

    #[test]
    fn a_pool_used_inside_reset_and_drop_does_not_deadlock() {
        let inner = pool(4, 2);
        let nested = inner.clone();
        let outer = ObjectPool::builder(move || nested.get())
            .max_pooled(1)
            .thread_cache(1)
            .build()
            .expect("valid settings");
        // The second is dropped by the full outer pool, returning its inner object meanwhile.
        drop((outer.get(), outer.get()));
        assert_eq!(outer.stats().dropped, 1);
        assert_eq!((inner.stats().returns, inner.stats().outstanding), (1, 1));
        drop(outer);
    }
}
