//! One shard: an exact LRU over a dense slab, indexed by a hash table of slab positions.
//!
//! Layout, chosen for the hit path and for bytes per entry:
//! - `entries` holds key, value, expiry, weight and a `u32` recency stamp, densely (removal is a
//!   `swap_remove`, so there is no free list and no per-slot tag);
//! - `ring` is the recency log: a `Vec<u32>` of slab indices in access order, oldest first. Every
//!   access appends the entry's index and stores the append position in the entry's `stamp`, so
//!   a record at position `p` is *live* iff `entries[ring[p]].stamp == p`; the older records of a
//!   re-accessed, moved or removed entry are *stale* and skipped. `front` is the first position
//!   not yet popped. The live records, read from `front` on, are the entries from least to most
//!   recently used: exact LRU order;
//! - `table` maps a key's hash to its slab position: 4 bytes + 1 control byte per bucket.
//!
//! A hit therefore touches the table bucket, the entry (already loaded for the key compare) and
//! the end of the ring (a sequential write to a hot line): no neighbour in a linked list. Finding
//! the victim pops stale records from the front until a live one (each record is popped once).
//! When an entry moves in a `swap_remove`, its one live record is repointed in O(1) through its
//! stamp. When the ring is full it is compacted (see [`Shard::make_room`]): the live records are
//! kept in order and stamps renumbered, by sequential passes over `entries` and the ring guided
//! by a bitmap of live positions; if fewer than `RING_RATIO - 1` free records per entry remain,
//! the ring grows to `RING_RATIO × entries + RING_SLACK`. That bounds the ring to about
//! `RING_RATIO` records per entry and makes compaction amortised O(1) per access. Stamps are
//! positions in the ring, so they never wrap: the ring's length stays below `u32::MAX`.
//!
//! The shard is plain data behind the cache's per-shard mutex; its counters are plain integers
//! updated under that lock, so the hit path does no atomic read-modify-write of its own.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use crate::clock::{Clock, NEVER, Tick, tick};
use crate::flight::Flight;

/// Recency records the ring holds per entry after it grows: each compaction then frees at least
/// `RING_RATIO - 1` records per entry, so its cost (a few sequential passes) is amortised over
/// that many accesses.
const RING_RATIO: usize = 5;

/// Records the ring holds beyond `RING_RATIO` per entry, so that a nearly empty shard does not
/// compact on every access.
const RING_SLACK: usize = 64;

/// Largest number of entries a shard can hold: stamps are `u32` positions in a ring of up to
/// `RING_RATIO` records per entry (plus slack), which must stay below `u32::MAX`.
pub(crate) const MAX_SHARD_ENTRIES: usize = 1 << 29;

const _: () = assert!(RING_RATIO * MAX_SHARD_ENTRIES + RING_SLACK < u32::MAX as usize);

/// How many expired entries a write reclaims from the cold end of the ring before inserting.
/// Bounded so that one write never pays for a whole shard's worth of expirations.
pub(crate) const WRITE_RECLAIM_BOUND: usize = 16;

/// Why an entry left the cache without being removed by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvictionCause {
    /// Its TTL had passed.
    Expired,
    /// It was the least recently used entry of a shard that was full by entry count.
    Capacity,
    /// It was the least recently used entry of a shard that was full by weight.
    Weight,
}

/// A callback told of every eviction; see [`CacheBuilder::eviction_listener`].
///
/// [`CacheBuilder::eviction_listener`]: crate::CacheBuilder::eviction_listener
pub(crate) type Listener<K, V> = Arc<dyn Fn(&K, &V, EvictionCause) + Send + Sync>;

pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    /// Tick at which the entry expires, `NEVER` if it does not.
    expires: Tick,
    weight: u32,
    /// Position of the entry's live record in the shard's `ring`; fills what would otherwise be
    /// padding after `weight`.
    stamp: u32,
}

/// Event counters of one shard, summed into [`Stats`](crate::Stats) on demand. Hits and misses
/// first: they are the ones the hit path writes.
#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub(crate) struct Counters {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) inserts: u64,
    pub(crate) updates: u64,
    pub(crate) evicted_capacity: u64,
    pub(crate) evicted_weight: u64,
    pub(crate) expired: u64,
}

/// The current tick, read from the clock at most once per operation and only if needed.
pub(crate) struct Now<'a> {
    clock: &'a dyn Clock,
    tick: Option<Tick>,
}

impl<'a> Now<'a> {
    /// Reads the clock lazily, on the first [`Now::get`].
    pub(crate) fn lazy(clock: &'a dyn Clock) -> Self {
        Self { clock, tick: None }
    }

    /// Uses a tick already read.
    pub(crate) fn at(clock: &'a dyn Clock, tick: Tick) -> Self {
        Self {
            clock,
            tick: Some(tick),
        }
    }

    pub(crate) fn get(&mut self) -> Tick {
        *self.tick.get_or_insert_with(|| tick(self.clock))
    }

    fn expired(&mut self, expires: Tick) -> bool {
        expires != NEVER && self.get() >= expires
    }
}

/// What [`Shard::insert`] did.
pub(crate) enum Inserted<K, V> {
    /// A new entry.
    New,
    /// The key was present; its value was replaced.
    Updated,
    /// The entry was refused because it weighs more than the shard's whole weight budget.
    TooHeavy(K, V),
}

/// `repr(C)` orders the fields for the hit path. Everything a hit writes (the mutex word just
/// before the shard, the ring's length, the hit and miss counters) shares the first cache line;
/// what it only reads (the slab and table headers) comes next and changes only on writes. Under
/// a hit-only load on several cores, only that first line moves between cores.
#[repr(C)]
pub(crate) struct Shard<K, V> {
    /// Slab indices in access order, oldest first; see the module documentation.
    ring: Vec<u32>,
    pub(crate) counters: Counters,
    entries: Vec<Entry<K, V>>,
    /// Records before this position have been popped (they are all stale).
    front: usize,
    capacity: usize,
    table: HashTable<u32>,
    max_weight: u64,
    weight: u64,
    /// Where the next bounded sweep resumes in `entries`.
    sweep_cursor: usize,
    hasher: RandomState,
    listener: Option<Listener<K, V>>,
    /// Loads in progress (single-flight), keyed like the entries.
    pub(crate) flights: HashTable<(K, Arc<Flight<V>>)>,
}

impl<K: Hash + Eq, V> Shard<K, V> {
    pub(crate) fn new(
        capacity: usize,
        max_weight: u64,
        hasher: RandomState,
        listener: Option<Listener<K, V>>,
    ) -> Self {
        Self {
            table: HashTable::new(),
            entries: Vec::new(),
            ring: Vec::new(),
            front: 0,
            capacity: capacity.min(MAX_SHARD_ENTRIES),
            max_weight,
            weight: 0,
            sweep_cursor: 0,
            hasher,
            listener,
            flights: HashTable::new(),
            counters: Counters::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    pub(crate) fn max_weight(&self) -> u64 {
        self.max_weight
    }

    /// Forgets a finished or abandoned load (matched by identity: a newer load of the same key
    /// may already be registered).
    pub(crate) fn unregister_flight(&mut self, hash: u64, flight: &Arc<Flight<V>>) {
        if let Ok(registered) = self
            .flights
            .find_entry(hash, |(_, f)| Arc::ptr_eq(f, flight))
        {
            registered.remove();
        }
    }

    fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = &self.entries;
        self.table
            .find(hash, |&i| entries[i as usize].key.borrow() == key)
            .copied()
    }

    /// Looks `key` up, counting a hit or a miss; a hit becomes the most recently used entry.
    /// An expired entry is removed and reported as a miss.
    pub(crate) fn get<Q>(&mut self, hash: u64, key: &Q, now: &mut Now<'_>) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(idx) = self.find(hash, key) else {
            self.counters.misses += 1;
            return None;
        };
        if now.expired(self.entries[idx as usize].expires) {
            self.evict(idx, EvictionCause::Expired);
            self.counters.misses += 1;
            return None;
        }
        self.counters.hits += 1;
        self.touch(idx);
        Some(&self.entries[idx as usize].value)
    }

    /// Whether a live entry for `key` exists; touches neither recency nor counters.
    pub(crate) fn contains<Q>(&self, hash: u64, key: &Q, now: &mut Now<'_>) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(hash, key)
            .is_some_and(|idx| !now.expired(self.entries[idx as usize].expires))
    }

    /// Inserts or replaces; the entry becomes the most recently used. Makes room by reclaiming
    /// expired entries from the cold end, then evicting least recently used entries.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        expires: Tick,
        now: &mut Now<'_>,
    ) -> Inserted<K, V> {
        if u64::from(weight) > self.max_weight {
            return Inserted::TooHeavy(key, value);
        }
        if let Some(idx) = self.find(hash, &key) {
            let entry = &mut self.entries[idx as usize];
            let old_weight = entry.weight;
            // The old value is dropped here, under the lock; values are usually cheap to drop.
            entry.value = value;
            entry.expires = expires;
            entry.weight = weight;
            self.weight = self.weight - u64::from(old_weight) + u64::from(weight);
            self.touch(idx);
            self.counters.updates += 1;
            // A heavier value may push the shard over budget. The updated entry is now the most
            // recently used (its slab index may move as others are removed) and weighs at most
            // `max_weight`, so the loop stops before reaching it.
            while self.weight > self.max_weight && self.entries.len() > 1 {
                self.evict_lru(now, EvictionCause::Weight);
            }
            return Inserted::Updated;
        }

        self.reclaim_expired_lru(now);
        while !self.entries.is_empty()
            && (self.entries.len() >= self.capacity
                || self.weight + u64::from(weight) > self.max_weight)
        {
            let cause = if self.entries.len() >= self.capacity {
                EvictionCause::Capacity
            } else {
                EvictionCause::Weight
            };
            self.evict_lru(now, cause);
        }

        let idx = self.entries.len() as u32;
        self.reserve_one();
        // Room in the ring first: a compaction renumbers the stamps of the entries present.
        let stamp = self.next_stamp();
        self.entries.push(Entry {
            key,
            value,
            expires,
            weight,
            stamp,
        });
        self.ring.push(idx);
        self.weight += u64::from(weight);
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.table
            .insert_unique(hash, idx, |&i| hasher.hash_one(&entries[i as usize].key));
        self.counters.inserts += 1;
        Inserted::New
    }

    /// Removes `key`; returns its value unless it had expired (an expired entry is reclaimed and
    /// counted as an expiration).
    pub(crate) fn remove<Q>(&mut self, hash: u64, key: &Q, now: &mut Now<'_>) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let idx = self.find(hash, key)?;
        if now.expired(self.entries[idx as usize].expires) {
            self.evict(idx, EvictionCause::Expired);
            return None;
        }
        Some(self.remove_at(idx).value)
    }

    /// Drops every entry; counters and loads in progress are kept.
    pub(crate) fn clear(&mut self) {
        self.table.clear();
        self.entries.clear();
        self.ring.clear();
        self.front = 0;
        self.weight = 0;
        self.sweep_cursor = 0;
    }

    /// Examines up to `budget` entries from where the last sweep stopped and reclaims the expired
    /// ones. Returns how many were reclaimed. A sweep that reaches the end of the slab stops there
    /// and the next one starts from the beginning, so a sweep started at the beginning with a
    /// budget of at least `len()` visits every entry.
    pub(crate) fn sweep(&mut self, budget: usize, now: &mut Now<'_>) -> usize {
        let mut reclaimed = 0;
        let mut i = self.sweep_cursor;
        for _ in 0..budget {
            if i >= self.entries.len() {
                i = 0;
                break;
            }
            if now.expired(self.entries[i].expires) {
                // swap_remove moves the last entry into `i`: examine `i` again.
                self.evict(i as u32, EvictionCause::Expired);
                reclaimed += 1;
            } else {
                i += 1;
            }
        }
        self.sweep_cursor = if i >= self.entries.len() { 0 } else { i };
        reclaimed
    }

    /// Keys from most to least recently used (test helper).
    #[cfg(test)]
    pub(crate) fn keys_by_recency(&self) -> Vec<&K> {
        (self.front..self.ring.len())
            .rev()
            .filter(|&p| self.is_live(p))
            .map(|p| &self.entries[self.ring[p] as usize].key)
            .collect()
    }

    /// Whether the ring record at `p` is the live record of its entry.
    fn is_live(&self, p: usize) -> bool {
        let idx = self.ring[p] as usize;
        idx < self.entries.len() && self.entries[idx].stamp as usize == p
    }

    /// The least recently used entry, after popping the stale records in front of it.
    fn lru(&mut self) -> Option<u32> {
        while self.front < self.ring.len() {
            if self.is_live(self.front) {
                return Some(self.ring[self.front]);
            }
            self.front += 1;
        }
        None
    }

    fn reclaim_expired_lru(&mut self, now: &mut Now<'_>) {
        for _ in 0..WRITE_RECLAIM_BOUND {
            match self.lru() {
                Some(idx) if now.expired(self.entries[idx as usize].expires) => {
                    self.evict(idx, EvictionCause::Expired);
                }
                _ => return,
            }
        }
    }

    /// Evicts the least recently used entry, if any; reported as expired if it was.
    fn evict_lru(&mut self, now: &mut Now<'_>, cause: EvictionCause) {
        let Some(idx) = self.lru() else { return };
        let cause = if now.expired(self.entries[idx as usize].expires) {
            EvictionCause::Expired
        } else {
            cause
        };
        self.evict(idx, cause);
    }

    fn evict(&mut self, idx: u32, cause: EvictionCause) {
        match cause {
            EvictionCause::Expired => self.counters.expired += 1,
            EvictionCause::Capacity => self.counters.evicted_capacity += 1,
            EvictionCause::Weight => self.counters.evicted_weight += 1,
        }
        let entry = self.remove_at(idx);
        if let Some(listener) = &self.listener {
            listener(&entry.key, &entry.value, cause);
        }
    }

    /// Removes the entry at `idx`, moving the last slab entry into its place. The removed entry's
    /// ring record goes stale by itself (its slot now holds another stamp, or lies past the end).
    fn remove_at(&mut self, idx: u32) -> Entry<K, V> {
        let hash = self.hasher.hash_one(&self.entries[idx as usize].key);
        if let Ok(bucket) = self.table.find_entry(hash, |&i| i == idx) {
            bucket.remove();
        }
        let last = (self.entries.len() - 1) as u32;
        if idx != last {
            let moved = &self.entries[last as usize];
            let hash = self.hasher.hash_one(&moved.key);
            self.ring[moved.stamp as usize] = idx;
            if let Some(slot) = self.table.find_mut(hash, |&i| i == last) {
                *slot = idx;
            }
        }
        let entry = self.entries.swap_remove(idx as usize);
        self.weight -= u64::from(entry.weight);
        entry
    }

    /// Grows the slab geometrically but never past the shard's capacity, so a full cache does not
    /// carry up to 2x of unused slab.
    fn reserve_one(&mut self) {
        let len = self.entries.len();
        if len == self.entries.capacity() {
            let room = self.capacity.saturating_sub(len).max(1);
            let additional = len.clamp(4, 1 << 20).min(room);
            self.entries.reserve_exact(additional);
        }
    }

    /// Makes the entry at `idx` the most recently used.
    #[inline]
    fn touch(&mut self, idx: u32) {
        // Already the most recent record (a repeated hit on a hot key): nothing to log.
        if self.entries[idx as usize].stamp as usize + 1 == self.ring.len() {
            return;
        }
        let stamp = self.next_stamp();
        self.entries[idx as usize].stamp = stamp;
        self.ring.push(idx);
    }

    /// The position the next ring record will take, making room first if the ring is full.
    #[inline]
    fn next_stamp(&mut self) -> u32 {
        if self.ring.len() == self.ring.capacity() {
            self.make_room();
        }
        self.ring.len() as u32
    }

    /// Compacts the ring to its live records, then sizes it to `RING_RATIO` records per entry
    /// (plus slack) if that leaves too little free room.
    ///
    /// Compaction reads `entries` and the ring sequentially, never at random: a first pass over
    /// `entries` marks each live record's position in a bitmap (one bit per record: small enough
    /// to stay in cache), the ring is then filtered in place by that bitmap, and a second pass
    /// over `entries` renumbers each stamp to its record's rank among the live ones.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self) {
        let live = self.entries.len();
        if self.ring.len() > live {
            let mut bits = vec![0u64; self.ring.len().div_ceil(64)];
            for entry in &self.entries {
                let p = entry.stamp as usize;
                bits[p / 64] |= 1 << (p % 64);
            }
            let mut ranks = Vec::with_capacity(bits.len());
            let mut kept = 0;
            for (w, &word) in bits.iter().enumerate() {
                ranks.push(kept as u32);
                let mut word = word;
                while word != 0 {
                    let p = w * 64 + word.trailing_zeros() as usize;
                    self.ring[kept] = self.ring[p];
                    kept += 1;
                    word &= word - 1;
                }
            }
            self.ring.truncate(kept);
            for entry in &mut self.entries {
                let p = entry.stamp as usize;
                let below = bits[p / 64] & ((1 << (p % 64)) - 1);
                entry.stamp = ranks[p / 64] + below.count_ones();
            }
            self.front = 0;
        }
        let target = live * RING_RATIO + RING_SLACK;
        if self.ring.capacity() < target {
            self.ring.reserve_exact(target - self.ring.len());
        } else if self.ring.capacity() > 2 * target {
            // The shard shrank a lot (removals, `clear`): give the memory back.
            self.ring.shrink_to(target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    fn shard(capacity: usize, max_weight: u64) -> Shard<u32, u32> {
        Shard::new(capacity, max_weight, RandomState::default(), None)
    }

    fn put(s: &mut Shard<u32, u32>, clock: &MockClock, k: u32, w: u32) {
        let h = s.hasher.hash_one(k);
        let mut now = Now::lazy(clock);
        assert!(!matches!(
            s.insert(h, k, k * 10, w, NEVER, &mut now),
            Inserted::TooHeavy(..)
        ));
    }

    fn get(s: &mut Shard<u32, u32>, clock: &MockClock, k: u32) -> Option<u32> {
        let h = s.hasher.hash_one(k);
        s.get(h, &k, &mut Now::lazy(clock)).copied()
    }

    #[test]
    fn ring_and_slab_stay_consistent_through_swap_removes() {
        let clock = MockClock::new();
        let mut s = shard(4, u64::MAX);
        for k in 0..4 {
            put(&mut s, &clock, k, 1);
        }
        assert_eq!(s.keys_by_recency(), [&3, &2, &1, &0]);
        assert_eq!(get(&mut s, &clock, 0), Some(0));
        assert_eq!(s.keys_by_recency(), [&0, &3, &2, &1]);
        // Removing slab position 1 moves the last slab entry (key 3) into it.
        let h = s.hasher.hash_one(1u32);
        assert_eq!(s.remove(h, &1, &mut Now::lazy(&clock)), Some(10));
        assert_eq!(s.keys_by_recency(), [&0, &3, &2]);
        for k in [0, 2, 3] {
            assert_eq!(get(&mut s, &clock, k), Some(k * 10));
        }
        assert_eq!(s.keys_by_recency(), [&3, &2, &0]);
        put(&mut s, &clock, 7, 1);
        put(&mut s, &clock, 8, 1); // evicts 0, the least recently used
        assert_eq!(s.keys_by_recency(), [&8, &7, &3, &2]);
        assert_eq!(s.counters.evicted_capacity, 1);
    }

    #[test]
    fn hit_path_writes_stay_on_the_first_cache_line() {
        // The mutex word takes the first 8 bytes of the line, before the shard.
        let end_of_misses = std::mem::offset_of!(Shard<u64, u64>, counters) + 16;
        assert_eq!(std::mem::offset_of!(Shard<u64, u64>, ring), 0);
        assert!(
            8 + end_of_misses <= 64,
            "misses counter ends at {end_of_misses}"
        );
    }

    #[test]
    fn weight_eviction_keeps_the_updated_entry() {
        let clock = MockClock::new();
        let mut s = shard(100, 10);
        for k in 0..5 {
            put(&mut s, &clock, k, 2);
        }
        assert_eq!(s.weight(), 10);
        put(&mut s, &clock, 2, 9); // update: 2 becomes the most recent, evict until weight <= 10
        assert_eq!(s.keys_by_recency(), [&2]);
        assert_eq!(s.weight(), 9);
        assert_eq!(s.counters.evicted_weight, 4);
    }

    /// Thousands of hits, inserts and removes on a small shard, checked against a deque after
    /// every step: the ring is compacted, grown and shrunk many times on the way.
    #[test]
    fn recency_survives_many_compactions() {
        let clock = MockClock::new();
        let capacity = 50;
        let mut s = shard(capacity, u64::MAX);
        let mut model: std::collections::VecDeque<u32> = std::collections::VecDeque::new();
        let mut x = 0x9E37_79B9_u32;
        let (mut grew, mut compacted) = (0, 0);
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let k = x % 80;
            let (before, len_before) = (s.ring.capacity(), s.ring.len());
            match x >> 29 {
                0 => {
                    let h = s.hasher.hash_one(k);
                    let removed = s.remove(h, &k, &mut Now::lazy(&clock));
                    let pos = model.iter().position(|&m| m == k);
                    assert_eq!(removed.is_some(), pos.is_some(), "step {step}");
                    if let Some(pos) = pos {
                        model.remove(pos);
                    }
                }
                1..=3 => {
                    put(&mut s, &clock, k, 1);
                    if let Some(pos) = model.iter().position(|&m| m == k) {
                        model.remove(pos);
                    } else if model.len() == capacity {
                        model.pop_back();
                    }
                    model.push_front(k);
                }
                _ => {
                    let pos = model.iter().position(|&m| m == k);
                    assert_eq!(
                        get(&mut s, &clock, k).is_some(),
                        pos.is_some(),
                        "step {step}"
                    );
                    if let Some(pos) = pos {
                        model.remove(pos);
                        model.push_front(k);
                    }
                }
            }
            grew += usize::from(s.ring.capacity() != before);
            compacted += usize::from(s.ring.len() < len_before);
            let want: Vec<&u32> = model.iter().collect();
            assert_eq!(s.keys_by_recency(), want, "step {step}");
            assert!(s.ring.capacity() <= 2 * (RING_RATIO * capacity + RING_SLACK));
        }
        assert!(
            grew > 0 && compacted > 50,
            "grew {grew}, compacted {compacted}"
        );
    }
}
