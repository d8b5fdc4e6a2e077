//! [`Cache`]: the sharded LRU cache and its single-flight loaders.

use std::borrow::Borrow;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use foldhash::fast::RandomState;
use parking_lot::Mutex;

use crate::builder::CacheBuilder;
use crate::clock::{Clock, NEVER, deadline, tick};
use crate::error::InsertError;
use crate::flight::{Flight, Lead, Outcome, SharedError};
use crate::shard::{Inserted, Listener, Now, Shard};
use crate::stats::Stats;

/// Entries examined per shard by one [`Cache::run_pending_tasks`] call: enough to keep up with
/// expirations when called every second or so, small enough to hold a shard lock only briefly.
pub const SWEEP_BUDGET_PER_SHARD: usize = 4096;

pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// A shard on its own cache lines, so that two threads locking neighbouring shards do not
/// contend on the same line.
#[repr(align(128))]
struct Padded<T>(T);

type LockedShard<K, V> = Padded<Mutex<Shard<K, V>>>;

/// A concurrent cache with exact LRU eviction per shard, TTLs, weights and single-flight loading.
///
/// Keys are spread over independently locked shards by hash. Within a shard, eviction order is
/// exact LRU: a `get` hit makes the entry the most recently used. Bounds (entry count and
/// weight) are split evenly between shards.
///
/// Share it between threads with `Arc<Cache<K, V>>` or scoped threads; every method takes
/// `&self`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kwik_cache::Cache;
///
/// let cache = Cache::builder()
///     .capacity(10_000)
///     .ttl(Duration::from_secs(300))
///     .build()
///     .unwrap();
/// cache.insert("answer", 42).unwrap();
/// assert_eq!(cache.get(&"answer"), Some(42));
/// assert_eq!(cache.get_or_load("question", || 7), 7);
/// ```
pub struct Cache<K, V> {
    shards: Box<[LockedShard<K, V>]>,
    shard_mask: usize,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
    ttl: Option<Duration>,
    weigher: Option<Weigher<K, V>>,
}

/// What a loader found when it looked for `key`.
enum Join<V> {
    Hit(V),
    Lead(Arc<Flight<V>>),
    Wait(Arc<Flight<V>>),
}

impl<K, V> Cache<K, V> {
    /// A builder with every setting at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::<String, Vec<u8>>::builder().capacity(100).build().unwrap();
    /// assert!(cache.is_empty());
    /// ```
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::new()
    }

    /// Number of shards.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::<u8, u8>::builder().capacity(64).shards(4).build().unwrap();
    /// assert_eq!(cache.shard_count(), 4);
    /// ```
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

impl<K: Hash + Eq, V> Cache<K, V> {
    pub(crate) fn from_parts(
        limits: Vec<(usize, u64)>,
        weigher: Option<Weigher<K, V>>,
        ttl: Option<Duration>,
        clock: Arc<dyn Clock>,
        listener: Option<Listener<K, V>>,
    ) -> Self {
        let hasher = RandomState::default();
        let shards: Box<[_]> = limits
            .into_iter()
            .map(|(capacity, weight)| {
                Padded(Mutex::new(Shard::new(
                    capacity,
                    weight,
                    hasher.clone(),
                    listener.clone(),
                )))
            })
            .collect();
        Self {
            shard_mask: shards.len() - 1,
            shards,
            hasher,
            clock,
            ttl,
            weigher,
        }
    }

    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard<K, V>> {
        // The hash table uses the low bits (bucket) and the top 7 (tag): pick the shard from the
        // middle so the three are independent.
        &self.shards[(hash >> 32) as usize & self.shard_mask].0
    }

    /// The value for `key`, if present and not expired; the entry becomes the most recently used.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder().capacity(8).build().unwrap();
    /// cache.insert("k".to_string(), 1).unwrap();
    /// assert_eq!(cache.get("k"), Some(1));
    /// assert_eq!(cache.get("other"), None);
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let hash = self.hash(key);
        let mut now = Now::lazy(&*self.clock);
        self.shard(hash).lock().get(hash, key, &mut now).cloned()
    }

    /// Whether a live entry exists for `key`. Unlike [`get`](Self::get), it changes neither the
    /// LRU order nor the statistics.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, "one").unwrap();
    /// assert!(cache.contains(&1));
    /// assert!(!cache.contains(&2));
    /// ```
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let mut now = Now::lazy(&*self.clock);
        self.shard(hash).lock().contains(hash, key, &mut now)
    }

    /// Inserts or replaces the value for `key`, with the cache's TTL if one is set. The entry
    /// becomes the most recently used; least recently used entries of its shard are evicted to
    /// make room.
    ///
    /// # Errors
    ///
    /// [`InsertError::TooHeavy`], holding the key and value, if the entry weighs more than a
    /// shard's weight budget. Nothing is evicted then.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder().capacity(2).shards(1).build().unwrap();
    /// cache.insert(1, "a").unwrap();
    /// cache.insert(2, "b").unwrap();
    /// cache.get(&1);
    /// cache.insert(3, "c").unwrap(); // evicts 2, the least recently used
    /// assert!(cache.contains(&1) && !cache.contains(&2) && cache.contains(&3));
    /// ```
    pub fn insert(&self, key: K, value: V) -> Result<(), InsertError<K, V>> {
        self.insert_inner(key, value, self.ttl)
    }

    /// Like [`insert`](Self::insert) but with this entry's own TTL, overriding the cache's
    /// (seed 002's "TTL per data type").
    ///
    /// # Errors
    ///
    /// [`InsertError::TooHeavy`] as for [`insert`](Self::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use kwik_cache::{Cache, MockClock};
    ///
    /// let clock = MockClock::new();
    /// let cache = Cache::builder().capacity(8).clock(clock.clone()).build().unwrap();
    /// cache.insert_with_ttl("session", 1, Duration::from_secs(10)).unwrap();
    /// cache.insert("config", 2).unwrap(); // no TTL: never expires
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(cache.get(&"session"), None);
    /// assert_eq!(cache.get(&"config"), Some(2));
    /// ```
    pub fn insert_with_ttl(
        &self,
        key: K,
        value: V,
        ttl: Duration,
    ) -> Result<(), InsertError<K, V>> {
        self.insert_inner(key, value, Some(ttl))
    }

    fn insert_inner(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> Result<(), InsertError<K, V>> {
        let hash = self.hash(&key);
        let weight = self.weigher.as_ref().map_or(1, |w| w(&key, &value));
        let clock = &*self.clock;
        let (expires, mut now) = match ttl {
            Some(ttl) => {
                let t = tick(clock);
                (deadline(t, ttl), Now::at(clock, t))
            }
            None => (NEVER, Now::lazy(clock)),
        };
        let mut shard = self.shard(hash).lock();
        match shard.insert(hash, key, value, weight, expires, &mut now) {
            Inserted::New | Inserted::Updated => Ok(()),
            Inserted::TooHeavy(key, value) => Err(InsertError::TooHeavy {
                key,
                value,
                weight,
                limit: shard.max_weight(),
            }),
        }
    }

    /// Removes `key` and returns its value, or `None` if it was absent or expired.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, "a").unwrap();
    /// assert_eq!(cache.remove(&1), Some("a"));
    /// assert_eq!(cache.remove(&1), None);
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let mut now = Now::lazy(&*self.clock);
        self.shard(hash).lock().remove(hash, key, &mut now)
    }

    /// Number of entries stored, including expired ones not yet reclaimed.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, ()).unwrap();
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().len()).sum()
    }

    /// Whether the cache holds no entry.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::<u8, u8>::builder().capacity(8).build().unwrap();
    /// assert!(cache.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.0.lock().len() == 0)
    }

    /// Total weight stored (entries weigh 1 each without a weigher).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder()
    ///     .max_weight(100)
    ///     .shards(1) // the whole budget in one shard: entries up to 100 fit
    ///     .weigher(|_k: &u8, v: &Vec<u8>| v.len() as u32)
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, vec![0; 30]).unwrap();
    /// assert_eq!(cache.weight(), 30);
    /// ```
    pub fn weight(&self) -> u64 {
        self.shards.iter().map(|s| s.0.lock().weight()).sum()
    }

    /// Removes every entry. Statistics and loads in progress are kept.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, ()).unwrap();
    /// cache.clear();
    /// assert!(cache.is_empty());
    /// ```
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            shard.0.lock().clear();
        }
    }

    /// Reclaims expired entries, examining at most [`SWEEP_BUDGET_PER_SHARD`] entries per shard
    /// and resuming where the previous call stopped. Returns how many entries were reclaimed.
    ///
    /// Expired entries are never returned whether or not this runs; the sweep only gives their
    /// memory back early. The facade calls it on a timer (`cache.cleanup_interval`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use kwik_cache::{Cache, MockClock};
    ///
    /// let clock = MockClock::new();
    /// let cache = Cache::builder()
    ///     .capacity(100)
    ///     .ttl(Duration::from_secs(1))
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// for i in 0..10 {
    ///     cache.insert(i, i).unwrap();
    /// }
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.run_pending_tasks(), 10);
    /// assert!(cache.is_empty());
    /// ```
    pub fn run_pending_tasks(&self) -> usize {
        let now = tick(&*self.clock);
        self.shards
            .iter()
            .map(|s| {
                let mut now = Now::at(&*self.clock, now);
                s.0.lock().sweep(SWEEP_BUDGET_PER_SHARD, &mut now)
            })
            .sum()
    }

    /// A snapshot of the counters and sizes, summed over shards.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder().capacity(8).build().unwrap();
    /// cache.insert(1, ()).unwrap();
    /// cache.get(&1);
    /// let stats = cache.stats();
    /// assert_eq!((stats.hits, stats.inserts, stats.entries), (1, 1, 1));
    /// ```
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for shard in self.shards.iter() {
            let shard = shard.0.lock();
            stats.add_shard(&shard.counters, shard.len(), shard.weight());
        }
        stats
    }
}

/// Single-flight loading.
impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// The value for `key`, computing it with `init` on a miss. Under concurrency `init` runs
    /// once per key: the other callers wait for its result.
    ///
    /// The value is cached (with the cache's TTL) unless it is too heavy, in which case it is
    /// still returned to every caller. No lock is held while `init` runs, so it may use the
    /// cache, but it must not load the same key (it would wait for itself).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::builder().capacity(8).build().unwrap();
    /// assert_eq!(cache.get_or_load(1, || "loaded"), "loaded");
    /// assert_eq!(cache.get_or_load(1, || "not called"), "loaded");
    /// ```
    pub fn get_or_load(&self, key: K, init: impl FnOnce() -> V) -> V {
        match self.get_or_try_load::<Infallible>(key, || Ok(init())) {
            Ok(value) => value,
            Err(never) => match *never {},
        }
    }

    /// Like [`get_or_load`](Self::get_or_load) with a fallible `init`.
    ///
    /// # Errors
    ///
    /// The loader's error, shared: every caller that waited on this load receives the same
    /// `Arc<E>`, and nothing is cached. (A waiter whose error type differs from the loader's
    /// retries the load itself.)
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = kwik_cache::Cache::<u32, String>::builder().capacity(8).build().unwrap();
    /// let err = cache.get_or_try_load(1, || Err::<String, _>("backend down")).unwrap_err();
    /// assert_eq!(*err, "backend down");
    /// assert!(!cache.contains(&1));
    /// ```
    pub fn get_or_try_load<E>(
        &self,
        key: K,
        init: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let hash = self.hash(&key);
        let flight = loop {
            match self.join(hash, &key) {
                Join::Hit(value) => return Ok(value),
                Join::Lead(flight) => break flight,
                Join::Wait(flight) => {
                    if let Some(result) = resolve(flight.wait()) {
                        return result;
                    }
                }
            }
        };
        let lead = self.lead(hash, flight);
        let result = init();
        self.finish(hash, key, lead, result)
    }

    /// The async form of [`get_or_load`](Self::get_or_load): waiting callers park their task,
    /// not their thread. Works with any executor. If the loading future is dropped before it
    /// completes, a waiting caller takes over the load.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// let cache = kwik_cache::Cache::builder().capacity(8).build().unwrap();
    /// let value = cache.get_or_load_async(1, || async { 10 }).await;
    /// assert_eq!(value, 10);
    /// # });
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub async fn get_or_load_async<F, Fut>(&self, key: K, init: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let loaded = self
            .get_or_try_load_async::<Infallible, _, _>(key, || async { Ok(init().await) })
            .await;
        match loaded {
            Ok(value) => value,
            Err(never) => match *never {},
        }
    }

    /// The async form of [`get_or_try_load`](Self::get_or_try_load).
    ///
    /// # Errors
    ///
    /// The loader's error, shared with every waiter; nothing is cached.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = kwik_cache::Cache::<u32, u32>::builder().capacity(8).build().unwrap();
    /// let loaded = cache.get_or_try_load_async(1, || async { "x".parse::<u32>() }).await;
    /// assert!(loaded.is_err());
    /// # });
    /// ```
    pub async fn get_or_try_load_async<E, F, Fut>(&self, key: K, init: F) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let hash = self.hash(&key);
        let flight = loop {
            match self.join(hash, &key) {
                Join::Hit(value) => return Ok(value),
                Join::Lead(flight) => break flight,
                Join::Wait(flight) => {
                    if let Some(result) = resolve(flight.wait_async().await) {
                        return result;
                    }
                }
            }
        };
        let lead = self.lead(hash, flight);
        let result = init().await;
        self.finish(hash, key, lead, result)
    }

    /// Looks `key` up and, on a miss, joins the load in progress or registers a new one, all
    /// under one shard lock.
    fn join(&self, hash: u64, key: &K) -> Join<V> {
        let mut shard = self.shard(hash).lock();
        if let Some(value) = shard.get(hash, key, &mut Now::lazy(&*self.clock)) {
            return Join::Hit(value.clone());
        }
        if let Some((_, flight)) = shard.flights.find(hash, |(k, _)| k == key) {
            return Join::Wait(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::new());
        let hasher = &self.hasher;
        shard
            .flights
            .insert_unique(hash, (key.clone(), Arc::clone(&flight)), |(k, _)| {
                hasher.hash_one(k)
            });
        Join::Lead(flight)
    }

    fn lead(&self, hash: u64, flight: Arc<Flight<V>>) -> Lead<V, impl FnMut(&Arc<Flight<V>>) + '_> {
        Lead::new(flight, move |flight| {
            self.shard(hash).lock().unregister_flight(hash, flight);
        })
    }

    /// Publishes a load's result: a value is cached and the flight unregistered under one lock,
    /// so a newcomer sees one or the other; an error caches nothing.
    fn finish<E>(
        &self,
        hash: u64,
        key: K,
        lead: Lead<V, impl FnMut(&Arc<Flight<V>>)>,
        result: Result<V, E>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        match result {
            Ok(value) => {
                let weight = self.weigher.as_ref().map_or(1, |w| w(&key, &value));
                let clock = &*self.clock;
                let (expires, mut now) = match self.ttl {
                    Some(ttl) => {
                        let t = tick(clock);
                        (deadline(t, ttl), Now::at(clock, t))
                    }
                    None => (NEVER, Now::lazy(clock)),
                };
                {
                    let mut shard = self.shard(hash).lock();
                    shard.unregister_flight(hash, lead.flight());
                    // Too heavy to cache: the callers still get the value.
                    let _ = shard.insert(hash, key, value.clone(), weight, expires, &mut now);
                }
                lead.succeed(value.clone());
                Ok(value)
            }
            Err(error) => {
                let error = Arc::new(error);
                let shared: SharedError = error.clone();
                lead.fail(shared);
                Err(error)
            }
        }
    }
}

/// A waiter's view of a finished load: `None` means "try again" (the loader was abandoned, or
/// failed with an error of another type than this waiter's).
fn resolve<V, E: Send + Sync + 'static>(outcome: Outcome<V>) -> Option<Result<V, Arc<E>>> {
    match outcome {
        Outcome::Value(value) => Some(Ok(value)),
        Outcome::Error(error) => error.downcast::<E>().ok().map(Err),
        Outcome::Abandoned => None,
    }
}

impl<K, V> fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("shards", &self.shards.len())
            .field("ttl", &self.ttl)
            .field("weigher", &self.weigher.is_some())
            .finish_non_exhaustive()
    }
}
