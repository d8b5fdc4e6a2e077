//! [`BytesCache`]: a cache of [`Bytes`] values that stores large values lz4-compressed.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::builder::CacheBuilder;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::error::{BuildError, InsertError};
use crate::stats::Stats;

/// Values at least this long are compressed by default (seed 002: "compress values over 1 KB").
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 1024;

/// A value as stored: as given, or lz4 block-compressed with its original length.
#[derive(Clone)]
enum Stored {
    Plain(Bytes),
    Lz4 { data: Bytes, len: usize },
}

impl Stored {
    fn stored_len(&self) -> usize {
        match self {
            Self::Plain(b) => b.len(),
            Self::Lz4 { data, .. } => data.len(),
        }
    }

    fn decode(self) -> Option<Bytes> {
        match self {
            Self::Plain(bytes) => Some(bytes),
            // Only fails on data this cache did not produce; treated as a miss.
            Self::Lz4 { data, len } => lz4_flex::block::decompress(&data, len)
                .ok()
                .map(Bytes::from),
        }
    }
}

/// A [`Cache`] of [`Bytes`] values in which values of at least the compression threshold are
/// stored lz4-compressed (when that makes them smaller) and decompressed on [`get`](Self::get).
///
/// Weight is the stored size in bytes, so `max_weight` bounds the memory the values take once
/// compressed. [`stats`](Self::stats) counts compressed entries and the bytes saved.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use kwik_cache::BytesCache;
///
/// let cache = BytesCache::builder().max_weight(1 << 20).build().unwrap();
/// let page = Bytes::from("<p>hello</p>".repeat(200)); // 2400 bytes, very compressible
/// cache.insert("/index.html", page.clone()).unwrap();
/// assert_eq!(cache.get(&"/index.html"), Some(page));
/// assert!(cache.weight() < 2400);
/// assert_eq!(cache.stats().compressed_entries, 1);
/// ```
pub struct BytesCache<K> {
    inner: Cache<K, Stored>,
    threshold: usize,
    compressed_entries: AtomicU64,
    bytes_saved: AtomicU64,
}

/// Builds a [`BytesCache`]; obtained from [`BytesCache::builder`]. The settings are those of
/// [`CacheBuilder`] plus the compression threshold; the weigher is fixed (stored bytes).
pub struct BytesCacheBuilder<K> {
    inner: CacheBuilder<K, Stored>,
    threshold: usize,
}

impl<K: Hash + Eq> BytesCache<K> {
    /// A builder with every setting at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::<String>::builder().max_weight(1 << 20).build().unwrap();
    /// assert!(cache.is_empty());
    /// ```
    pub fn builder() -> BytesCacheBuilder<K> {
        BytesCacheBuilder {
            inner: Cache::builder()
                .weigher(|_key: &K, value: &Stored| clamp_u32(value.stored_len())),
            threshold: DEFAULT_COMPRESSION_THRESHOLD,
        }
    }

    /// The value for `key`, decompressed if it was stored compressed.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, bytes::Bytes::from_static(b"abc")).unwrap();
    /// assert_eq!(cache.get(&1).as_deref(), Some(&b"abc"[..]));
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<Bytes>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.get(key).and_then(Stored::decode)
    }

    /// Inserts `value`, compressed if it is at least the threshold long and compresses smaller.
    ///
    /// # Errors
    ///
    /// [`InsertError::TooHeavy`] if the stored size exceeds a shard's weight budget; the original,
    /// uncompressed value is handed back.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::builder().capacity(8).build().unwrap();
    /// cache.insert("k", bytes::Bytes::from(vec![7u8; 4096])).unwrap();
    /// assert_eq!(cache.get(&"k").unwrap().len(), 4096);
    /// ```
    pub fn insert(&self, key: K, value: Bytes) -> Result<(), InsertError<K, Bytes>> {
        let stored = self.encode(&value);
        self.inner
            .insert(key, stored)
            .map_err(|err| give_back(err, value))
    }

    /// Like [`insert`](Self::insert) with this entry's own TTL.
    ///
    /// # Errors
    ///
    /// [`InsertError::TooHeavy`] as for [`insert`](Self::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let clock = kwik_cache::MockClock::new();
    /// let cache = kwik_cache::BytesCache::builder().capacity(8).clock(clock.clone()).build().unwrap();
    /// cache.insert_with_ttl(1, bytes::Bytes::from_static(b"x"), Duration::from_secs(5)).unwrap();
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(cache.get(&1), None);
    /// ```
    pub fn insert_with_ttl(
        &self,
        key: K,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), InsertError<K, Bytes>> {
        let stored = self.encode(&value);
        self.inner
            .insert_with_ttl(key, stored, ttl)
            .map_err(|err| give_back(err, value))
    }

    /// Removes `key` and returns its (decompressed) value if it was present and live.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, bytes::Bytes::from_static(b"v")).unwrap();
    /// assert_eq!(cache.remove(&1).as_deref(), Some(&b"v"[..]));
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<Bytes>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.remove(key).and_then(Stored::decode)
    }

    /// Whether a live entry exists for `key` (no LRU or statistics effect).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, bytes::Bytes::new()).unwrap();
    /// assert!(cache.contains(&1));
    /// ```
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.contains(key)
    }

    /// Number of entries stored, including expired ones not yet reclaimed.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::<u8>::builder().capacity(8).build().unwrap();
    /// assert_eq!(cache.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the cache holds no entry.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::<u8>::builder().capacity(8).build().unwrap();
    /// assert!(cache.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Total stored bytes (compressed sizes for compressed values).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, bytes::Bytes::from_static(b"1234")).unwrap();
    /// assert_eq!(cache.weight(), 4);
    /// ```
    pub fn weight(&self) -> u64 {
        self.inner.weight()
    }

    /// Removes every entry; statistics are kept.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, bytes::Bytes::new()).unwrap();
    /// cache.clear();
    /// assert!(cache.is_empty());
    /// ```
    pub fn clear(&self) {
        self.inner.clear();
    }

    /// Reclaims expired entries; see [`Cache::run_pending_tasks`].
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::<u8>::builder().capacity(8).build().unwrap();
    /// assert_eq!(cache.run_pending_tasks(), 0);
    /// ```
    pub fn run_pending_tasks(&self) -> usize {
        self.inner.run_pending_tasks()
    }

    /// The cache's statistics, including the compression counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, bytes::Bytes::from(vec![0u8; 2048])).unwrap();
    /// let stats = cache.stats();
    /// assert_eq!(stats.compressed_entries, 1);
    /// assert!(stats.compressed_bytes_saved > 1500);
    /// ```
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.stats();
        stats.compressed_entries = self.compressed_entries.load(Ordering::Relaxed);
        stats.compressed_bytes_saved = self.bytes_saved.load(Ordering::Relaxed);
        stats
    }

    fn encode(&self, value: &Bytes) -> Stored {
        if value.len() >= self.threshold {
            let compressed = lz4_flex::block::compress(value);
            if compressed.len() < value.len() {
                self.compressed_entries.fetch_add(1, Ordering::Relaxed);
                self.bytes_saved
                    .fetch_add((value.len() - compressed.len()) as u64, Ordering::Relaxed);
                return Stored::Lz4 {
                    data: Bytes::from(compressed),
                    len: value.len(),
                };
            }
        }
        Stored::Plain(value.clone())
    }
}

/// Replaces the stored form in a refusal by the caller's original value.
fn give_back<K>(err: InsertError<K, Stored>, value: Bytes) -> InsertError<K, Bytes> {
    match err {
        InsertError::TooHeavy {
            key, weight, limit, ..
        } => InsertError::TooHeavy {
            key,
            value,
            weight,
            limit,
        },
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<K: Hash + Eq> BytesCacheBuilder<K> {
    /// See [`CacheBuilder::capacity`]. Default: unlimited (then `max_weight` is required).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::<u64>::builder().capacity(1000).build().unwrap();
    /// # let _ = cache;
    /// ```
    pub fn capacity(mut self, entries: usize) -> Self {
        self.inner = self.inner.capacity(entries);
        self
    }

    /// Maximum stored bytes, see [`CacheBuilder::max_weight`]. Default: unlimited (then
    /// `capacity` is required).
    ///
    /// The budget is split between shards: a value whose stored size exceeds
    /// `max_weight / shards` is refused. Set fewer [`shards`](Self::shards) if single values may
    /// approach the whole budget.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::<u64>::builder().max_weight(64 << 20).build().unwrap();
    /// # let _ = cache;
    /// ```
    pub fn max_weight(mut self, bytes: u64) -> Self {
        self.inner = self.inner.max_weight(bytes);
        self
    }

    /// See [`CacheBuilder::ttl`]. Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::<u64>::builder()
    ///     .capacity(10)
    ///     .ttl(std::time::Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// # let _ = cache;
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.inner = self.inner.ttl(ttl);
        self
    }

    /// See [`CacheBuilder::shards`]. Default: from available parallelism.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::<u64>::builder().capacity(10).shards(1).build().unwrap();
    /// # let _ = cache;
    /// ```
    pub fn shards(mut self, shards: usize) -> Self {
        self.inner = self.inner.shards(shards);
        self
    }

    /// See [`CacheBuilder::clock`]. Default: [`SystemClock`](crate::SystemClock).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::<u64>::builder()
    ///     .capacity(10)
    ///     .clock(kwik_cache::MockClock::new())
    ///     .build()
    ///     .unwrap();
    /// # let _ = cache;
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.inner = self.inner.clock(clock);
        self
    }

    /// Values at least this many bytes long are compressed. Default:
    /// [`DEFAULT_COMPRESSION_THRESHOLD`] (1024).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::BytesCache::<u64>::builder()
    ///     .capacity(10)
    ///     .compression_threshold(256)
    ///     .build()
    ///     .unwrap();
    /// # let _ = cache;
    /// ```
    pub fn compression_threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Validates the settings and builds the cache.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = kwik_cache::BytesCache::<u64>::builder()
    ///     .capacity(10)
    ///     .compression_threshold(0)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err, kwik_cache::BuildError::ZeroCompressionThreshold);
    /// ```
    pub fn build(self) -> Result<BytesCache<K>, BuildError> {
        if self.threshold == 0 {
            return Err(BuildError::ZeroCompressionThreshold);
        }
        Ok(BytesCache {
            inner: self.inner.build()?,
            threshold: self.threshold,
            compressed_entries: AtomicU64::new(0),
            bytes_saved: AtomicU64::new(0),
        })
    }
}

impl<K> fmt::Debug for BytesCache<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BytesCache")
            .field("inner", &self.inner)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl<K> fmt::Debug for BytesCacheBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BytesCacheBuilder")
            .field("inner", &self.inner)
            .field("threshold", &self.threshold)
            .finish()
    }
}
