//! [`CacheBuilder`]: validated construction of a [`Cache`].

use std::fmt;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, Weigher};
use crate::clock::{Clock, SystemClock};
use crate::error::BuildError;
use crate::shard::{EvictionCause, Listener, MAX_SHARD_ENTRIES};

/// The largest shard count a cache accepts.
pub const MAX_SHARDS: usize = 1 << 16;

/// With the default shard count, small caches get fewer shards so that each holds at least this
/// many entries: LRU order is exact per shard, and a tiny cache split 16 ways would evict by
/// luck of the hash rather than by recency.
const MIN_DEFAULT_ENTRIES_PER_SHARD: usize = 64;

/// Default shards per core of a cache bounded by entry count only.
const MANY_SHARDS_PER_CORE: usize = 32;

/// Default shards per core of a cache with a weight bound.
const FEW_SHARDS_PER_CORE: usize = 4;

/// Builds a [`Cache`]; obtained from [`Cache::builder`].
///
/// At least one bound, [`capacity`](Self::capacity) or [`max_weight`](Self::max_weight), is
/// required. Every setting is checked by [`build`](Self::build).
pub struct CacheBuilder<K, V> {
    capacity: Option<usize>,
    max_weight: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    ttl: Option<Duration>,
    shards: Option<usize>,
    clock: Option<Arc<dyn Clock>>,
    listener: Option<Listener<K, V>>,
}

impl<K, V> CacheBuilder<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            capacity: None,
            max_weight: None,
            weigher: None,
            ttl: None,
            shards: None,
            clock: None,
            listener: None,
        }
    }

    /// Maximum number of entries. Default: unlimited (then `max_weight` is required).
    ///
    /// The bound is split evenly between shards, and LRU order is exact within a shard.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::<u64, u64>::builder().capacity(10_000).build().unwrap();
    /// # let _ = cache;
    /// ```
    pub fn capacity(mut self, entries: usize) -> Self {
        self.capacity = Some(entries);
        self
    }

    /// Maximum total weight, typically bytes, as measured by the [`weigher`](Self::weigher).
    /// Default: unlimited (then `capacity` is required).
    ///
    /// The budget is split evenly between shards; an entry heavier than one shard's share is
    /// refused with [`InsertError::TooHeavy`](crate::InsertError::TooHeavy).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder()
    ///     .max_weight(1 << 20)
    ///     .weigher(|_key: &u64, value: &Vec<u8>| value.len() as u32)
    ///     .build()
    ///     .unwrap();
    /// # let _ = cache.insert(1, vec![0u8; 10]);
    /// ```
    pub fn max_weight(mut self, weight: u64) -> Self {
        self.max_weight = Some(weight);
        self
    }

    /// How much an entry weighs against `max_weight`. Default: every entry weighs 1.
    ///
    /// Called once per insertion, outside the shard lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder()
    ///     .max_weight(1024)
    ///     .weigher(|key: &String, value: &String| (key.len() + value.len()) as u32)
    ///     .build()
    ///     .unwrap();
    /// cache.insert("k".to_string(), "value".to_string()).unwrap();
    /// assert_eq!(cache.weight(), 6);
    /// ```
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Time to live of every entry inserted with [`Cache::insert`]. Default: none (entries
    /// never expire). [`Cache::insert_with_ttl`] overrides it per entry.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cache = kwik_cache::Cache::<u64, u64>::builder()
    ///     .capacity(100)
    ///     .ttl(Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// # let _ = cache;
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Number of independently locked shards, a power of two up to [`MAX_SHARDS`]. Default: the
    /// next power of two at or above 32 × available parallelism (4 × when a weight bound is set,
    /// so that heavy entries fit a shard's share), reduced for small capacities so that each
    /// shard holds at least 64 entries.
    ///
    /// # Examples
    ///
    /// ```
    /// // One shard: exact LRU order over the whole cache.
    /// let cache = kwik_cache::Cache::<u64, u64>::builder()
    ///     .capacity(100)
    ///     .shards(1)
    ///     .build()
    ///     .unwrap();
    /// # let _ = cache;
    /// ```
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The clock used for TTLs. Default: [`SystemClock`]. Tests pass a
    /// [`MockClock`](crate::MockClock).
    ///
    /// # Examples
    ///
    /// ```
    /// let clock = kwik_cache::MockClock::new();
    /// let cache = kwik_cache::Cache::<u64, u64>::builder()
    ///     .capacity(100)
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// # let _ = cache;
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// A callback told of every eviction (expiration, capacity, weight), not of explicit
    /// `remove`, replacement or `clear`. Default: none.
    ///
    /// It runs while the shard's lock is held: it must be quick and must not call back into the
    /// cache.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use kwik_cache::EvictionCause;
    ///
    /// let evicted = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&evicted);
    /// let cache = kwik_cache::Cache::builder()
    ///     .capacity(1)
    ///     .eviction_listener(move |k: &u32, _v: &u32, cause| log.lock().unwrap().push((*k, cause)))
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, 10).unwrap();
    /// cache.insert(2, 20).unwrap();
    /// assert_eq!(*evicted.lock().unwrap(), [(1, EvictionCause::Capacity)]);
    /// ```
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(&K, &V, EvictionCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }
}

impl<K: Hash + Eq, V> CacheBuilder<K, V> {
    /// Validates the settings and builds the cache.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_cache::{BuildError, Cache};
    ///
    /// let err = Cache::<u64, u64>::builder().build().unwrap_err();
    /// assert_eq!(err, BuildError::Unbounded);
    /// ```
    pub fn build(self) -> Result<Cache<K, V>, BuildError> {
        if self.capacity.is_none() && self.max_weight.is_none() {
            return Err(BuildError::Unbounded);
        }
        if self.capacity == Some(0) {
            return Err(BuildError::ZeroCapacity);
        }
        if self.max_weight == Some(0) {
            return Err(BuildError::ZeroMaxWeight);
        }
        if self.ttl == Some(Duration::ZERO) {
            return Err(BuildError::ZeroTtl);
        }
        let shards = match self.shards {
            Some(n) if n == 0 || !n.is_power_of_two() || n > MAX_SHARDS => {
                return Err(BuildError::InvalidShards {
                    shards: n,
                    max: MAX_SHARDS,
                });
            }
            Some(n) => n,
            None => default_shards(self.capacity, self.max_weight),
        };
        if let Some(capacity) = self.capacity
            && capacity < shards
        {
            return Err(BuildError::CapacityBelowShards { capacity, shards });
        }
        if let Some(max_weight) = self.max_weight
            && max_weight < shards as u64
        {
            return Err(BuildError::MaxWeightBelowShards { max_weight, shards });
        }
        let limits = (0..shards)
            .map(|i| {
                let capacity = self
                    .capacity
                    .map_or(MAX_SHARD_ENTRIES, |c| split(c as u64, shards, i) as usize);
                let weight = self.max_weight.map_or(u64::MAX, |w| split(w, shards, i));
                (capacity, weight)
            })
            .collect();
        Ok(Cache::from_parts(
            limits,
            self.weigher,
            self.ttl,
            self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
            self.listener,
        ))
    }
}

impl<K, V> fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("capacity", &self.capacity)
            .field("max_weight", &self.max_weight)
            .field("weigher", &self.weigher.is_some())
            .field("ttl", &self.ttl)
            .field("shards", &self.shards)
            .field("listener", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

/// Shard `i`'s share of `total` split `shards` ways, the remainder going to the first shards.
fn split(total: u64, shards: usize, i: usize) -> u64 {
    let n = shards as u64;
    total / n + u64::from((i as u64) < total % n)
}

fn default_shards(capacity: Option<usize>, max_weight: Option<u64>) -> usize {
    let parallelism = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    // Every hit writes its shard (exact LRU), so two cores that keep landing on the same few
    // shards pass those cache lines back and forth: with 8 shards on 2 cores, `cache_hit` ran
    // slower on 2 threads than on 1. A count-bounded cache gets many shards; a weight-bounded
    // one keeps fewer, larger shards, so that a heavy entry still fits one shard's share.
    let per_core = if max_weight.is_some() {
        FEW_SHARDS_PER_CORE
    } else {
        MANY_SHARDS_PER_CORE
    };
    let mut shards = (per_core * parallelism).next_power_of_two().min(MAX_SHARDS);
    if let Some(capacity) = capacity {
        shards = shards.min(floor_power_of_two(capacity / MIN_DEFAULT_ENTRIES_PER_SHARD));
    }
    if let Some(max_weight) = max_weight {
        let max_weight = usize::try_from(max_weight).unwrap_or(usize::MAX);
        shards = shards.min(floor_power_of_two(max_weight));
    }
    shards
}

/// The largest power of two at or below `n`, and 1 for 0.
fn floor_power_of_two(n: usize) -> usize {
    if n <= 1 { 1 } else { 1 << n.ilog2() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_hands_out_the_whole_total() {
        for (total, shards) in [(10u64, 4usize), (3, 4), (100_000, 8), (7, 1)] {
            let sum: u64 = (0..shards).map(|i| split(total, shards, i)).sum();
            assert_eq!(sum, total);
        }
    }

    #[test]
    fn default_shards_respect_small_bounds() {
        assert_eq!(default_shards(Some(10), None), 1);
        assert_eq!(
            default_shards(Some(128), None).min(2),
            2.min(default_shards(None, None))
        );
        assert!(default_shards(Some(1_000_000), None).is_power_of_two());
        assert_eq!(default_shards(None, Some(1)), 1);
        assert_eq!(floor_power_of_two(100), 64);
    }
}
