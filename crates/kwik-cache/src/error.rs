//! Errors of the cache crate: one enum per operation family.

use std::fmt;

/// Why [`CacheBuilder::build`](crate::CacheBuilder::build) refused its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Neither `capacity` nor `max_weight` was set: the cache would grow without bound.
    #[error("cache is unbounded: set capacity or max_weight")]
    Unbounded,
    /// `capacity(0)`.
    #[error("capacity must be at least 1")]
    ZeroCapacity,
    /// `max_weight(0)`.
    #[error("max_weight must be at least 1")]
    ZeroMaxWeight,
    /// `ttl(Duration::ZERO)`: every entry would be expired on arrival.
    #[error("ttl must be greater than zero")]
    ZeroTtl,
    /// `shards(n)` with `n` zero, not a power of two, or above [`MAX_SHARDS`](crate::MAX_SHARDS).
    #[error("shards must be a power of two between 1 and {max}, got {shards}")]
    InvalidShards {
        /// The requested shard count.
        shards: usize,
        /// The largest accepted shard count.
        max: usize,
    },
    /// `capacity` is smaller than the number of shards: some shards could hold nothing.
    #[error("capacity {capacity} is below the shard count {shards}")]
    CapacityBelowShards {
        /// The requested capacity.
        capacity: usize,
        /// The shard count.
        shards: usize,
    },
    /// `max_weight` is smaller than the number of shards: some shards could hold nothing.
    #[error("max_weight {max_weight} is below the shard count {shards}")]
    MaxWeightBelowShards {
        /// The requested maximum weight.
        max_weight: u64,
        /// The shard count.
        shards: usize,
    },
    /// The compression threshold of a [`BytesCache`](crate::BytesCache) is zero.
    #[error("compression threshold must be at least 1 byte")]
    ZeroCompressionThreshold,
}

/// An insertion the cache refused; the key and value are handed back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum InsertError<K, V> {
    /// The entry weighs more than a shard's weight budget (`max_weight / shards`), so storing it
    /// would mean evicting everything and still not fitting.
    #[error("entry weighs {weight}, above the per-shard weight limit {limit}")]
    TooHeavy {
        /// The refused key.
        key: K,
        /// The refused value.
        value: V,
        /// The entry's weight as given by the weigher.
        weight: u32,
        /// The per-shard weight limit.
        limit: u64,
    },
}

impl<K, V> InsertError<K, V> {
    /// The refused key and value.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder()
    ///     .max_weight(4)
    ///     .shards(1)
    ///     .weigher(|_k: &u32, v: &String| v.len() as u32)
    ///     .build()
    ///     .unwrap();
    /// let err = cache.insert(1, "too long".to_string()).unwrap_err();
    /// assert_eq!(err.into_inner(), (1, "too long".to_string()));
    /// ```
    pub fn into_inner(self) -> (K, V) {
        match self {
            Self::TooHeavy { key, value, .. } => (key, value),
        }
    }
}

// Written by hand so that `K` and `V` need not be `Debug` (and large values are not printed).
impl<K, V> fmt::Debug for InsertError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooHeavy { weight, limit, .. } => f
                .debug_struct("TooHeavy")
                .field("weight", weight)
                .field("limit", limit)
                .finish_non_exhaustive(),
        }
    }
}
