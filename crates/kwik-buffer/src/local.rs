//! Each thread's table of pool caches, one entry per pool it has used.
//!
//! A table is a `thread_local!` vector of caches keyed by a pool id that is never reused. A
//! cache never keeps a closed pool's buffers for long: entries of closed pools are pruned
//! whenever the thread adds an entry, and a cache's `Drop` (run then, or when the thread exits)
//! hands what it holds back to its pool, so a thread's death loses no item and no count.
//!
//! A table is typed (one `thread_local!` per cache type) so that the hot path makes no dynamic
//! call: an earlier version that kept boxed `dyn Any` caches and downcast them spent about a
//! fifth of a buffer get/put cycle on the two virtual calls.

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
    /// Whether the owning pool is still open; entries of closed pools are pruned.
    fn pool_alive(&self) -> bool;
}

/// One thread's caches of one kind.
pub(crate) type Table<C> = RefCell<Vec<Entry<C>>>;

pub(crate) struct Entry<C> {
    pool_id: u64,
    cache: C,
}

/// Runs `f` on this thread's cache for pool `pool_id` in `table`, creating it with `init` on
/// first use.
///
/// Returns `None` without calling `f` when `init` declines to create a cache, or when the table
/// is unavailable: the thread is exiting, or the table is already borrowed (a cache's `Drop`
/// using a pool). Callers then take their lock-based path.
pub(crate) fn with<C: ThreadCache, R>(
    table: &'static LocalKey<Table<C>>,
    pool_id: u64,
    init: impl FnOnce() -> Option<C>,
    f: impl FnOnce(&mut C) -> R,
) -> Option<R> {
    table
        .try_with(|table| {
            let mut table = table.try_borrow_mut().ok()?;
            let index = match table.iter().position(|e| e.pool_id == pool_id) {
                Some(index) => index,
                None => {
                    // Forget the caches of closed pools before adding one.
                    table.retain(|e| e.cache.pool_alive());
                    table.push(Entry {
                        pool_id,
                        cache: init()?,
                    });
                    table.len() - 1
                }
            };
            Some(f(&mut table[index].cache))
        })
        .ok()
        .flatten()
}

/// Takes this thread's cache for pool `pool_id` out of `table`, if it has one; the caller drops
/// it outside the table's borrow.
pub(crate) fn remove<C: ThreadCache>(
    table: &'static LocalKey<Table<C>>,
    pool_id: u64,
) -> Option<C> {
    table
        .try_with(|table| {
            let mut table = table.try_borrow_mut().ok()?;
            let index = table.iter().position(|e| e.pool_id == pool_id)?;
            Some(table.swap_remove(index).cache)
        })
        .ok()
        .flatten()
}
