//! Cache competitors behind one trait, and the pre-generated key streams the `cache` bench and
//! the `cache_hit_ratio` binary share (included by `#[path]` from both).

use std::num::NonZeroUsize;

use parking_lot::Mutex;

/// Capacity of every cache in the hit-ratio and Zipf workloads.
pub const CAPACITY: usize = 100_000;
/// Distinct keys in the Zipf workload.
pub const ZIPF_KEYS: u64 = 1_000_000;
/// Zipf exponent.
pub const ZIPF_S: f64 = 1.0;

/// The four caches under test, seen as a u64 → u64 map.
pub trait BenchCache: Send + Sync {
    /// A cache bounded to `capacity` entries.
    fn with_capacity(capacity: usize) -> Self
    where
        Self: Sized;
    /// Looks `key` up.
    fn lookup(&self, key: u64) -> Option<u64>;
    /// Inserts or replaces `key`.
    fn store(&self, key: u64, value: u64);
    /// Entries stored, after any deferred maintenance has run.
    fn settled_len(&self) -> usize;
}

/// kwik-cache with default settings (shards from available parallelism).
pub type Kwik = kwik_cache::Cache<u64, u64>;
/// moka's synchronous cache, with the same hasher family as the others (foldhash).
pub type Moka = moka::sync::Cache<u64, u64, foldhash::fast::RandomState>;
/// quick_cache's synchronous cache (its default foldhash hasher).
pub type Quick = quick_cache::sync::Cache<u64, u64>;
/// The `lru` crate's exact LRU behind a mutex: the reference for hit ratios.
pub type Lru = Mutex<lru::LruCache<u64, u64>>;

impl BenchCache for Kwik {
    fn with_capacity(capacity: usize) -> Self {
        Self::builder()
            .capacity(capacity)
            .build()
            .expect("valid capacity")
    }
    fn lookup(&self, key: u64) -> Option<u64> {
        self.get(&key)
    }
    fn store(&self, key: u64, value: u64) {
        // Unit weights: never refused.
        let _ = self.insert(key, value);
    }
    fn settled_len(&self) -> usize {
        self.len()
    }
}

impl BenchCache for Moka {
    fn with_capacity(capacity: usize) -> Self {
        moka::sync::Cache::builder()
            .max_capacity(capacity as u64)
            .build_with_hasher(foldhash::fast::RandomState::default())
    }
    fn lookup(&self, key: u64) -> Option<u64> {
        self.get(&key)
    }
    fn store(&self, key: u64, value: u64) {
        self.insert(key, value);
    }
    fn settled_len(&self) -> usize {
        self.run_pending_tasks();
        self.entry_count() as usize
    }
}

impl BenchCache for Quick {
    fn with_capacity(capacity: usize) -> Self {
        Self::new(capacity)
    }
    fn lookup(&self, key: u64) -> Option<u64> {
        self.get(&key)
    }
    fn store(&self, key: u64, value: u64) {
        self.insert(key, value);
    }
    fn settled_len(&self) -> usize {
        self.len()
    }
}

impl BenchCache for Lru {
    fn with_capacity(capacity: usize) -> Self {
        Self::new(lru::LruCache::new(
            NonZeroUsize::new(capacity).expect("capacity > 0"),
        ))
    }
    fn lookup(&self, key: u64) -> Option<u64> {
        self.lock().get(&key).copied()
    }
    fn store(&self, key: u64, value: u64) {
        self.lock().put(key, value);
    }
    fn settled_len(&self) -> usize {
        self.lock().len()
    }
}

/// A cache holding the `keys` keys `mix(0..keys)` (each looked up once after the inserts), with
/// room for twice as many so that no competitor's admission or sharding drops a key: the state
/// `cache_hit` measures.
pub fn filled<C: BenchCache>(keys: u64) -> C {
    let cache = C::with_capacity(keys as usize * 2);
    for rank in 0..keys {
        let key = mix(rank);
        cache.store(key, key);
    }
    for rank in 0..keys {
        cache.lookup(mix(rank));
    }
    cache
}

/// One operation of a read-mostly workload: a `get`, or (`write`) an insert-on-miss.
#[derive(Clone, Copy)]
pub struct Op {
    pub key: u64,
    pub write: bool,
}

impl Op {
    /// Runs the op; returns whether the `get` hit.
    #[inline]
    pub fn run<C: BenchCache>(self, cache: &C) -> bool {
        let hit = cache.lookup(self.key).is_some();
        if self.write && !hit {
            cache.store(self.key, self.key);
        }
        hit
    }
}

/// SplitMix64: a fast, well-mixed generator; its finaliser is a bijection on u64, which also
/// turns ranks into scattered keys.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` uniform doubles in [0, 1) from `seed`.
fn uniforms(seed: u64, count: usize) -> impl Iterator<Item = f64> {
    (0..count as u64).map(move |i| (mix(seed ^ mix(i)) >> 11) as f64 / (1u64 << 53) as f64)
}

/// `count` keys drawn from Zipf(`s`) over `n` ranks by inverse CDF (binary search in the
/// cumulative table), each rank scattered to a key by [`mix`]. `write_every` makes every n-th op
/// an insert-on-miss (10 → 90% get / 10% insert-on-miss).
pub fn zipf_ops(n: u64, s: f64, count: usize, write_every: usize, seed: u64) -> Vec<Op> {
    let mut cdf = Vec::with_capacity(n as usize);
    let mut total = 0.0;
    for rank in 1..=n {
        total += 1.0 / (rank as f64).powf(s);
        cdf.push(total);
    }
    uniforms(seed, count)
        .enumerate()
        .map(|(i, u)| {
            let rank = cdf.partition_point(|&c| c < u * total) as u64;
            Op {
                key: mix(rank),
                write: i % write_every == write_every - 1,
            }
        })
        .collect()
}

/// A loop over `n` keys repeated to `count` ops, every op an insert-on-miss: with `n` above the
/// capacity this is LRU's worst case (every access misses) and shows scan resistance.
pub fn loop_ops(n: u64, count: usize) -> Vec<Op> {
    (0..count as u64)
        .map(|i| Op {
            key: mix(i % n),
            write: true,
        })
        .collect()
}

/// `count` keys picked uniformly among the `n` keys `mix(0..n)`, all reads.
pub fn uniform_ops(n: u64, count: usize, seed: u64) -> Vec<Op> {
    (0..count as u64)
        .map(|i| Op {
            key: mix(mix(seed ^ mix(i)) % n),
            write: false,
        })
        .collect()
}
