//! The cache's statistics snapshot.

use crate::shard::Counters;

/// A snapshot of a cache's counters and size, summed over its shards when
/// [`Cache::stats`](crate::Cache::stats) is called.
///
/// Event counters (hits, misses, ...) are cumulative since the cache was built and are not reset
/// by [`Cache::clear`](crate::Cache::clear). Shards are read one after another, so under
/// concurrent use the snapshot is consistent per shard, not across shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups that found a live entry (`get`, and the fast path of the `get_or_*` loaders).
    pub hits: u64,
    /// Lookups that found nothing or an expired entry.
    pub misses: u64,
    /// Insertions of a key that was absent.
    pub inserts: u64,
    /// Insertions that replaced the value of a present key.
    pub updates: u64,
    /// Entries evicted because their shard was full by entry count.
    pub evictions_by_capacity: u64,
    /// Entries evicted because their shard was full by weight.
    pub evictions_by_weight: u64,
    /// Expired entries reclaimed (on read, on write or by a sweep).
    pub expirations: u64,
    /// Entries stored now, including expired ones not yet reclaimed.
    pub entries: u64,
    /// Total weight stored now.
    pub weight: u64,
    /// Values stored compressed (cumulative; [`BytesCache`](crate::BytesCache) only).
    pub compressed_entries: u64,
    /// Bytes saved by compression, original minus compressed size, summed over every compressed
    /// insertion (cumulative; [`BytesCache`](crate::BytesCache) only).
    pub compressed_bytes_saved: u64,
}

impl Stats {
    /// Total lookups: `hits + misses`.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, "a");
    /// cache.get(&1);
    /// cache.get(&2);
    /// assert_eq!(cache.stats().lookups(), 2);
    /// ```
    pub fn lookups(&self) -> u64 {
        self.hits + self.misses
    }

    /// `hits / lookups`, or 0.0 before the first lookup.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, "a");
    /// cache.get(&1);
    /// cache.get(&2);
    /// assert_eq!(cache.stats().hit_ratio(), 0.5);
    /// ```
    pub fn hit_ratio(&self) -> f64 {
        match self.lookups() {
            0 => 0.0,
            n => self.hits as f64 / n as f64,
        }
    }

    /// Evictions of live entries for room, by count or by weight (expirations excluded).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder().capacity(1).build().unwrap();
    /// cache.insert(1, "a");
    /// cache.insert(2, "b");
    /// assert_eq!(cache.stats().evictions(), 1);
    /// ```
    pub fn evictions(&self) -> u64 {
        self.evictions_by_capacity + self.evictions_by_weight
    }

    pub(crate) fn add_shard(&mut self, c: &Counters, entries: usize, weight: u64) {
        self.hits += c.hits;
        self.misses += c.misses;
        self.inserts += c.inserts;
        self.updates += c.updates;
        self.evictions_by_capacity += c.evicted_capacity;
        self.evictions_by_weight += c.evicted_weight;
        self.expirations += c.expired;
        self.entries += entries as u64;
        self.weight += weight;
    }
}
