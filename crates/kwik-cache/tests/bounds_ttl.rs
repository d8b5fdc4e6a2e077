//! Weight bound, oversize refusal, TTL (global and per entry) with the mock clock, sweeps, and
//! `BytesCache` compression.

use std::time::Duration;

use bytes::Bytes;
use kwik_cache::{BuildError, BytesCache, Cache, InsertError, MockClock};

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn weight_bound_is_never_exceeded() {
    let cache = Cache::builder()
        .max_weight(10_000)
        .shards(4)
        .weigher(|_k: &u64, v: &Vec<u8>| v.len() as u32)
        .build()
        .unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        let key = xorshift(&mut rng) % 2_000;
        let len = (xorshift(&mut rng) % 600) as usize;
        cache.insert(key, vec![0u8; len]).unwrap();
        assert!(cache.weight() <= 10_000, "weight {}", cache.weight());
    }
    let stats = cache.stats();
    assert!(stats.evictions_by_weight > 0);
    assert_eq!(stats.evictions_by_capacity, 0);
    assert_eq!(stats.weight, cache.weight());
}

#[test]
fn an_oversize_entry_is_refused_and_nothing_is_evicted() {
    let cache = Cache::builder()
        .max_weight(100)
        .shards(1)
        .weigher(|_k: &&str, v: &String| v.len() as u32)
        .build()
        .unwrap();
    cache.insert("a", "x".repeat(60)).unwrap();
    let err = cache.insert("b", "y".repeat(101)).unwrap_err();
    assert!(matches!(
        err,
        InsertError::TooHeavy {
            weight: 101,
            limit: 100,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "entry weighs 101, above the per-shard weight limit 100"
    );
    assert_eq!(err.into_inner(), ("b", "y".repeat(101)));
    assert!(cache.contains(&"a"));
    assert_eq!(cache.weight(), 60);
    // An over-budget update of a present key is refused too and leaves the old value.
    assert!(cache.insert("a", "z".repeat(200)).is_err());
    assert_eq!(cache.get(&"a"), Some("x".repeat(60)));
    // Exactly the budget fits, evicting everything else.
    cache.insert("c", "w".repeat(100)).unwrap();
    assert_eq!((cache.len(), cache.weight()), (1, 100));
}

#[test]
fn capacity_bound_holds_per_shard_split() {
    let cache = Cache::builder().capacity(1_000).shards(8).build().unwrap();
    for i in 0..50_000u32 {
        cache.insert(i, i).unwrap();
    }
    assert!(cache.len() <= 1_000);
    let stats = cache.stats();
    assert_eq!(stats.inserts, 50_000);
    assert_eq!(
        stats.inserts - stats.evictions_by_capacity,
        cache.len() as u64
    );
}

#[test]
fn global_ttl_expires_entries_without_sleeping() {
    let clock = MockClock::new();
    let cache = Cache::builder()
        .capacity(100)
        .ttl(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert(1, "a").unwrap();
    clock.advance(Duration::from_secs(5));
    cache.insert(2, "b").unwrap();
    clock.advance(Duration::from_millis(4_999));
    assert_eq!(cache.get(&1), Some("a"));
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get(&1), None, "expired exactly at its deadline");
    assert!(!cache.contains(&1));
    assert_eq!(cache.get(&2), Some("b"));
    // Re-inserting restarts the TTL.
    cache.insert(2, "b2").unwrap();
    clock.advance(Duration::from_secs(9));
    assert_eq!(cache.get(&2), Some("b2"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        cache.remove(&2),
        None,
        "remove never returns an expired value"
    );
    let stats = cache.stats();
    assert_eq!(stats.expirations, 2);
    assert_eq!(stats.entries, 0);
}

#[test]
fn per_entry_ttl_overrides_the_global_one() {
    let clock = MockClock::new();
    let cache = Cache::builder()
        .capacity(100)
        .ttl(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert("default", 1).unwrap();
    cache
        .insert_with_ttl("short", 2, Duration::from_secs(1))
        .unwrap();
    cache
        .insert_with_ttl("long", 3, Duration::from_secs(3_600))
        .unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.get(&"short"), None);
    assert_eq!(cache.get(&"default"), Some(1));
    clock.advance(Duration::from_secs(59));
    assert_eq!(cache.get(&"default"), None);
    assert_eq!(cache.get(&"long"), Some(3));
    // get_or_load never returns an expired value: it reloads.
    cache
        .insert_with_ttl("reload", 4, Duration::from_secs(1))
        .unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.get_or_load("reload", || 5), 5);
}

#[test]
fn sweep_reclaims_expired_entries_with_bounded_work() {
    let clock = MockClock::new();
    let cache = Cache::builder()
        .capacity(20_000)
        .shards(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    for i in 0..10_000u32 {
        let ttl = if i % 2 == 0 { 5 } else { 50 };
        cache
            .insert_with_ttl(i, i, Duration::from_secs(ttl))
            .unwrap();
    }
    cache.insert(u32::MAX, 0).unwrap(); // no TTL
    assert_eq!(cache.run_pending_tasks(), 0);
    clock.advance(Duration::from_secs(5));
    // One call examines at most SWEEP_BUDGET_PER_SHARD entries: several calls are needed.
    let first = cache.run_pending_tasks();
    assert!(first > 0 && first <= kwik_cache::SWEEP_BUDGET_PER_SHARD);
    let mut reclaimed = first;
    for _ in 0..20 {
        reclaimed += cache.run_pending_tasks();
    }
    assert_eq!(reclaimed, 5_000);
    assert_eq!(cache.len(), 5_001);
    assert_eq!(cache.stats().expirations, 5_000);
    clock.advance(Duration::from_secs(45));
    for _ in 0..20 {
        cache.run_pending_tasks();
    }
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get(&u32::MAX), Some(0));
}

#[test]
fn writes_reclaim_expired_entries_before_evicting_live_ones() {
    let clock = MockClock::new();
    let cache = Cache::builder()
        .capacity(4)
        .shards(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    cache
        .insert_with_ttl(1, (), Duration::from_secs(1))
        .unwrap();
    cache
        .insert_with_ttl(2, (), Duration::from_secs(1))
        .unwrap();
    cache.insert(3, ()).unwrap();
    cache.insert(4, ()).unwrap();
    clock.advance(Duration::from_secs(1));
    cache.insert(5, ()).unwrap();
    cache.insert(6, ()).unwrap();
    let stats = cache.stats();
    assert_eq!((stats.expirations, stats.evictions()), (2, 0));
    assert!([3, 4, 5, 6].iter().all(|k| cache.contains(k)));
}

#[test]
fn builder_rejects_bad_settings() {
    let err = |b: kwik_cache::CacheBuilder<u8, u8>| b.build().unwrap_err();
    assert_eq!(err(Cache::builder()), BuildError::Unbounded);
    assert_eq!(err(Cache::builder().capacity(0)), BuildError::ZeroCapacity);
    assert_eq!(
        err(Cache::builder().max_weight(0)),
        BuildError::ZeroMaxWeight
    );
    assert_eq!(
        err(Cache::builder().capacity(9).ttl(Duration::ZERO)),
        BuildError::ZeroTtl
    );
    assert!(matches!(
        err(Cache::builder().capacity(9).shards(3)),
        BuildError::InvalidShards { shards: 3, .. }
    ));
    assert_eq!(
        err(Cache::builder().capacity(2).shards(4)),
        BuildError::CapacityBelowShards {
            capacity: 2,
            shards: 4
        }
    );
    assert_eq!(
        err(Cache::builder().max_weight(2).shards(4)),
        BuildError::MaxWeightBelowShards {
            max_weight: 2,
            shards: 4
        }
    );
}

#[test]
fn bytes_cache_compresses_large_values_and_counts_savings() {
    let cache = BytesCache::builder()
        .max_weight(1 << 20)
        .shards(1)
        .compression_threshold(1024)
        .build()
        .unwrap();
    let compressible = Bytes::from("kwik kwik kwik ".repeat(1_000));
    let small = Bytes::from_static(b"short value, stored as is");
    let mut noise = vec![0u8; 4096];
    let mut rng = 42;
    noise.iter_mut().for_each(|b| *b = xorshift(&mut rng) as u8);
    let noise = Bytes::from(noise);

    cache.insert(1, compressible.clone()).unwrap();
    let after_one = cache.weight();
    assert!(
        after_one < compressible.len() as u64 / 4,
        "stored {after_one}"
    );
    cache.insert(2, small.clone()).unwrap();
    cache.insert(3, noise.clone()).unwrap();
    assert_eq!(
        cache.weight(),
        after_one + small.len() as u64 + noise.len() as u64
    );

    assert_eq!(cache.get(&1), Some(compressible.clone()));
    assert_eq!(cache.get(&2), Some(small));
    assert_eq!(cache.get(&3), Some(noise));
    let stats = cache.stats();
    assert_eq!(
        stats.compressed_entries, 1,
        "incompressible and small values stay plain"
    );
    assert_eq!(
        stats.compressed_bytes_saved,
        compressible.len() as u64 - after_one
    );
    assert_eq!(stats.hits, 3);
    assert_eq!(cache.remove(&1), Some(compressible));
}

#[test]
fn bytes_cache_refusal_hands_back_the_original_value() {
    let cache = BytesCache::builder()
        .max_weight(64)
        .shards(1)
        .build()
        .unwrap();
    let mut big = vec![0u8; 2048];
    let mut rng = 7;
    big.iter_mut().for_each(|b| *b = xorshift(&mut rng) as u8);
    let big = Bytes::from(big);
    let (key, value) = cache.insert("k", big.clone()).unwrap_err().into_inner();
    assert_eq!((key, value), ("k", big));
    assert!(cache.is_empty());
}
