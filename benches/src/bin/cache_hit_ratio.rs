//! Prints, per cache (kwik-cache, moka, quick_cache, lru), the hit ratio on a Zipf workload and
//! on a loop workload, and the bytes each u64 → u64 entry costs at 1M entries (measured with the
//! counting allocator).
//!
//! Run: `cargo run --release -p kwik-benches --bin cache_hit_ratio`
//!
//! With `--hit-loop <cache>` (`kwik_cache`, `moka`, `quick_cache` or `lru`) it instead runs
//! `cache_hit`'s workload (100k keys in a cache of capacity 200k, then 1M uniform hits) once, in
//! the one function `hit_loop`, for counting cache misses per hit under callgrind:
//!
//! ```text
//! valgrind --tool=callgrind --cache-sim=yes --LL=524288,8,64 --toggle-collect='*::hit_loop*' \
//!     target/release/cache_hit_ratio --hit-loop kwik_cache
//! ```

use kwik_benches::CountingAlloc;

#[allow(dead_code, unreachable_pub)]
#[path = "../../benches/cache_support/mod.rs"]
mod cache_support;

use cache_support::{BenchCache, CAPACITY, Kwik, Lru, Moka, Op, Quick, ZIPF_KEYS, ZIPF_S};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// Ops in each hit-ratio workload, after a warm-up of the same length.
const OPS: usize = 2_000_000;
/// Entries for the memory figure.
const MEMORY_ENTRIES: u64 = 1_000_000;
/// Payload of one entry: a u64 key and a u64 value.
const PAYLOAD: f64 = 16.0;

/// Hit ratio of `ops` (every op an insert-on-miss), measured after running `warmup`.
/// Bytes per entry are measured in the same process, so the allocator counts everything.
fn hit_ratio<C: BenchCache>(warmup: &[Op], ops: &[Op]) -> f64 {
    let cache = C::with_capacity(CAPACITY);
    for op in warmup {
        Op { write: true, ..*op }.run(&cache);
    }
    let hits = ops
        .iter()
        .filter(|op| {
            Op {
                write: true,
                ..**op
            }
            .run(&cache)
        })
        .count();
    hits as f64 / ops.len() as f64
}

/// Live heap bytes per entry of a cache holding (up to) 1M entries, and its entry count.
fn bytes_per_entry<C: BenchCache>() -> (f64, usize) {
    let before = ALLOC.live_bytes();
    let cache = C::with_capacity(MEMORY_ENTRIES as usize);
    for rank in 0..MEMORY_ENTRIES {
        let key = cache_support::mix(rank);
        cache.store(key, key);
    }
    let len = cache.settled_len();
    let bytes = ALLOC.live_bytes().saturating_sub(before);
    drop(cache);
    (bytes as f64 / len as f64, len)
}

fn report<C: BenchCache>(name: &str, zipf: &[Op], zipf_warm: &[Op], looped: &[Op]) {
    let z = hit_ratio::<C>(zipf_warm, zipf);
    // From cold: a loop has no steady state to warm up to, and a warm-up ending mid-loop
    // would credit the next pass with the tail of the previous one.
    let l = hit_ratio::<C>(&[], looped);
    let (bytes, len) = bytes_per_entry::<C>();
    println!(
        "| {name:<11} | {:>9.2}% | {:>9.2}% | {bytes:>10.1} | {:>8.1} | {len:>9} |",
        z * 100.0,
        l * 100.0,
        bytes - PAYLOAD,
    );
}

/// Keys in `cache_hit`'s workload; the cache gets twice the room, as in the bench.
const HIT_KEYS: u64 = CAPACITY as u64;
/// Hits run by `--hit-loop`.
const HIT_OPS: usize = 1_000_000;

/// The timed loop of `cache_hit`, alone in a function that callgrind can toggle on.
#[inline(never)]
fn hit_loop<C: BenchCache>(cache: &C, ops: &[Op]) -> usize {
    ops.iter().filter(|op| op.run(cache)).count()
}

/// Fills a cache as the `cache_hit` bench does and runs [`hit_loop`] over 1M uniform hits.
fn hit_workload<C: BenchCache>() {
    let cache: C = cache_support::filled(HIT_KEYS);
    let ops = cache_support::uniform_ops(HIT_KEYS, HIT_OPS, 0xC0FFEE);
    let hits = hit_loop(&cache, &ops);
    println!("{hits} hits out of {HIT_OPS} lookups");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, cache] = args.as_slice()
        && flag == "--hit-loop"
    {
        match cache.as_str() {
            "kwik_cache" => hit_workload::<Kwik>(),
            "moka" => hit_workload::<Moka>(),
            "quick_cache" => hit_workload::<Quick>(),
            "lru" => hit_workload::<Lru>(),
            other => eprintln!("unknown cache {other:?}: kwik_cache, moka, quick_cache or lru"),
        }
        return;
    }
    let zipf_warm = cache_support::zipf_ops(ZIPF_KEYS, ZIPF_S, OPS, 1, 1);
    let zipf = cache_support::zipf_ops(ZIPF_KEYS, ZIPF_S, OPS, 1, 2);
    // A loop over 1.5× the capacity: exact LRU always evicts the key needed next.
    let looped = cache_support::loop_ops(CAPACITY as u64 * 3 / 2, OPS);
    println!(
        "capacity {CAPACITY}; Zipf(s={ZIPF_S}) over {ZIPF_KEYS} keys, {OPS} ops after as many \
         warm-up ops; loop over {} keys; memory at {MEMORY_ENTRIES} u64 -> u64 inserts",
        CAPACITY * 3 / 2
    );
    println!("| cache       | Zipf hits  | loop hits  | bytes/entry | overhead | entries   |");
    println!("|-------------|-----------:|-----------:|-----------:|---------:|----------:|");
    report::<Kwik>("kwik_cache", &zipf, &zipf_warm, &looped);
    report::<Moka>("moka", &zipf, &zipf_warm, &looped);
    report::<Quick>("quick_cache", &zipf, &zipf_warm, &looped);
    report::<Lru>("lru", &zipf, &zipf_warm, &looped);
}
