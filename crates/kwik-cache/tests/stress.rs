//! Stress: 4 threads × 1M mixed operations on 16 shards; the statistics must add up exactly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kwik_cache::{Cache, MockClock};

const THREADS: usize = 4;
const OPS_PER_THREAD: u64 = 1_000_000;
const KEYS: u64 = 40_000;

#[derive(Default)]
struct Tally {
    gets: u64,
    hits: u64,
    inserts: u64,
    removed: u64,
}

fn worker(cache: &Cache<u64, u64>, clock: &MockClock, seed: u64, ticker: bool) -> Tally {
    let mut t = Tally::default();
    let mut rng = seed | 1;
    for i in 0..OPS_PER_THREAD {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = rng % KEYS;
        match (rng >> 32) % 100 {
            0..60 => {
                t.gets += 1;
                if let Some(v) = cache.get(&key) {
                    assert_eq!(v, key * 3, "a value belongs to its key");
                    t.hits += 1;
                }
            }
            60..80 => {
                cache.insert(key, key * 3).unwrap();
                t.inserts += 1;
            }
            80..90 => {
                let ttl = Duration::from_millis(1 + (rng >> 40) % 50);
                cache.insert_with_ttl(key, key * 3, ttl).unwrap();
                t.inserts += 1;
            }
            90..95 => t.removed += u64::from(cache.remove(&key).is_some()),
            // A sweep examines up to 16 × 4096 entries: keep it rare (about 1 op in 1600).
            95..100 if (rng >> 48).is_multiple_of(320) => {
                cache.run_pending_tasks();
            }
            _ => {
                let _ = cache.contains(&key);
            }
        }
        if ticker && i % 64 == 0 {
            clock.advance(Duration::from_millis(1));
        }
    }
    t
}

#[test]
fn four_threads_of_mixed_operations_keep_the_stats_consistent() {
    let clock = MockClock::new();
    let cache = Cache::builder()
        .capacity(16_000)
        .shards(16)
        .clock(clock.clone())
        .build()
        .unwrap();
    let failed = AtomicBool::new(false);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (cache, clock, failed) = (&cache, &clock, &failed);
                s.spawn(move || {
                    let seed = 0x9E37_79B9_7F4A_7C15 ^ (i as u64 * 0x1234_5678_9ABC);
                    let tally = worker(cache, clock, seed, i == 0);
                    failed.fetch_or(cache.len() > 16_000, Ordering::Relaxed);
                    tally
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(!failed.load(Ordering::Relaxed), "capacity exceeded");

    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let stats = cache.stats();
    assert_eq!(
        stats.hits + stats.misses,
        sum(|t| t.gets),
        "hits + misses = gets"
    );
    assert_eq!(stats.hits, sum(|t| t.hits));
    assert_eq!(stats.inserts + stats.updates, sum(|t| t.inserts));
    // Every entry that ever went in is still there or left through exactly one door.
    assert_eq!(
        stats.inserts,
        stats.entries + stats.evictions_by_capacity + stats.expirations + sum(|t| t.removed),
        "{stats:?}"
    );
    assert_eq!(stats.evictions_by_weight, 0);
    assert!(stats.expirations > 0 && stats.evictions_by_capacity > 0 && stats.hits > 0);
    assert_eq!(stats.entries, cache.len() as u64);
    assert!(cache.len() <= 16_000);
}
