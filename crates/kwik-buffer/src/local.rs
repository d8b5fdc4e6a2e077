//! Each thread's table of pool caches, one entry per pool it has used.
//!
//! A table is a `thread_local!` vector of caches keyed by a pool id that is never reused. A
//! cache holds only a weak reference to its pool, so it never keeps a dropped pool alive; its
//! `Drop` (run when the thread exits, or when the entry of a dropped pool is pruned) hands what
//! it holds back to the pool, so a thread's death loses no item and no count.
//!
//! Buffer pools have a table of their own, typed, so that their hot path makes no dynamic call;
//! object pools of every `T` share one table of boxed caches found by downcasting.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::LocalKey;

/// Distinguishes pools in the tables; unlike an address, never reused.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A fresh pool id.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// What a pool keeps in each thread's table.
pub(crate) trait ThreadCache: 'static {
    /// Whether the owning pool still exists; entries of dropped pools are pruned.
    fn pool_alive(&self) -> bool;
}

/// One thread's caches of one kind.
pub(crate) type Table<C> = RefCell<Vec<Entry<C>>>;

pub(crate) struct Entry<C> {
    pool_id: u64,
    cache: C,
}

/// A cache in the shared table of object pools, found by its type.
pub(crate) trait AnyCache: ThreadCache {
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl ThreadCache for Box<dyn AnyCache> {
    fn pool_alive(&self) -> bool {
        (**self).pool_alive()
    }
}

thread_local! {
    static ANY_TABLE: Table<Box<dyn AnyCache>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's cache for pool `pool_id` in `table`, creating it with `init` on
/// first use.
///
/// Returns `None` without calling `f` when the table is unavailable: the thread is exiting, or
/// the table is already borrowed (a pooled value's `Drop` using a pool from inside another
/// pool's cache). Callers then take their lock-based path.
pub(crate) fn with<C: ThreadCache, R>(
    table: &'static LocalKey<Table<C>>,
    pool_id: u64,
    init: impl FnOnce() -> C,
    f: impl FnOnce(&mut C) -> R,
) -> Option<R> {
    table
        .try_with(|table| {
            let mut table = table.try_borrow_mut().ok()?;
            let index = match table.iter().position(|e| e.pool_id == pool_id) {
                Some(index) => index,
                None => {
                    // Forget the caches of dropped pools before adding one.
                    table.retain(|e| e.cache.pool_alive());
                    table.push(Entry {
                        pool_id,
                        cache: init(),
                    });
                    table.len() - 1
                }
            };
            Some(f(&mut table[index].cache))
        })
        .ok()
        .flatten()
}

/// [`with`] on the shared table of object-pool caches, whose entries are boxed `C`s.
pub(crate) fn with_any<C: AnyCache, R>(
    pool_id: u64,
    init: impl FnOnce() -> C,
    f: impl FnOnce(&mut C) -> R,
) -> Option<R> {
    with(
        &ANY_TABLE,
        pool_id,
        || Box::new(init()) as Box<dyn AnyCache>,
        |cache| cache.as_any_mut().downcast_mut::<C>().map(f),
    )
    .flatten()
}
