//! Counting without contention: per-thread counters summed on demand, and the retention budget.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_utils::CachePadded;

/// What a pool counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    Hit,
    Miss,
    Return,
    Dropped,
    Oversized,
    Detached,
}

const EVENTS: usize = 6;

/// Counts read from a pool's tallies.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    counts: [u64; EVENTS],
}

impl Totals {
    pub(crate) fn get(&self, event: Event) -> u64 {
        self.counts[event as usize]
    }
}

/// One thread's counters. Only that thread writes them, with a plain load and store (no locked
/// instruction on the hot path); any thread may read them.
#[derive(Debug, Default)]
pub(crate) struct ThreadTally {
    counts: [AtomicU64; EVENTS],
}

impl ThreadTally {
    /// Counts one event. Must only be called by the owning thread.
    pub(crate) fn add(&self, event: Event) {
        let count = &self.counts[event as usize];
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// A pool's counters: its live threads' tallies, plus what exited threads and lock-path
/// operations (no thread cache available) added.
#[derive(Debug, Default)]
pub(crate) struct Tallies {
    live: Mutex<Vec<Arc<ThreadTally>>>,
    retired: [AtomicU64; EVENTS],
}

impl Tallies {
    /// A tally for a thread that starts using the pool.
    pub(crate) fn register(&self) -> Arc<ThreadTally> {
        let tally = Arc::new(ThreadTally::default());
        self.lock_live().push(Arc::clone(&tally));
        tally
    }

    /// Folds an exiting thread's tally into the retired counts. Under the same lock as
    /// [`read`](Self::read), so a reading never sees it twice or not at all.
    pub(crate) fn retire(&self, tally: &Arc<ThreadTally>) {
        let mut live = self.lock_live();
        for (retired, count) in self.retired.iter().zip(&tally.counts) {
            retired.fetch_add(count.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        live.retain(|t| !Arc::ptr_eq(t, tally));
    }

    /// Counts an event seen outside any thread cache.
    pub(crate) fn add_shared(&self, event: Event) {
        self.retired[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> Totals {
        let live = self.lock_live();
        let mut totals = Totals::default();
        for (total, retired) in totals.counts.iter_mut().zip(&self.retired) {
            *total = retired.load(Ordering::Relaxed);
        }
        for tally in live.iter() {
            for (total, count) in totals.counts.iter_mut().zip(&tally.counts) {
                *total += count.load(Ordering::Relaxed);
            }
        }
        totals
    }

    fn lock_live(&self) -> MutexGuard<'_, Vec<Arc<ThreadTally>>> {
        // A panic elsewhere cannot leave a `Vec` of tallies inconsistent.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The retention bound: slots of `max` that holders reserve before keeping an item.
///
/// A thread cache reserves slots in small batches and keeps spare ones, so most returns and
/// takes touch no shared atomic; the sum of everything reserved never exceeds `max`.
#[derive(Debug)]
pub(crate) struct Budget {
    reserved: CachePadded<AtomicUsize>,
    max: usize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            reserved: CachePadded::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Reserves up to `want` slots; returns how many were granted (0 when the pool is full).
    pub(crate) fn reserve(&self, want: usize) -> usize {
        let mut current = self.reserved.load(Ordering::Relaxed);
        loop {
            let grant = want.min(self.max.saturating_sub(current));
            if grant == 0 {
                return 0;
            }
            match self.reserved.compare_exchange_weak(
                current,
                current + grant,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return grant,
                Err(now) => current = now,
            }
        }
    }

    /// Gives back `slots` reserved earlier.
    pub(crate) fn release(&self, slots: usize) {
        if slots > 0 {
            self.reserved.fetch_sub(slots, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_grants_at_most_max() {
        let budget = Budget::new(5);
        assert_eq!(budget.reserve(3), 3);
        assert_eq!(budget.reserve(3), 2);
        assert_eq!(budget.reserve(1), 0);
        budget.release(4);
        assert_eq!(budget.reserve(10), 4);
    }

    #[test]
    fn retired_tallies_are_counted_once() {
        let tallies = Tallies::default();
        let tally = tallies.register();
        tally.add(Event::Hit);
        tallies.add_shared(Event::Hit);
        assert_eq!(tallies.read().get(Event::Hit), 2);
        tallies.retire(&tally);
        assert_eq!(tallies.read().get(Event::Hit), 2);
        assert_eq!(tallies.lock_live().len(), 0);
    }
}
