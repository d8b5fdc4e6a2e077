//! kwik-cache against moka (sync), quick_cache (sync) and lru (behind a mutex).
//!
//! - `cache_hit`: 100% hits, u64 → u64, 100k entries, uniform keys; 1 and 2 threads.
//! - `cache_zipf`: Zipf(s = 1.0) over 1M keys, capacity 100k, 90% get / 10% insert-on-miss;
//!   1 and 2 threads.
//!
//! Key streams are generated before measuring, so no RNG cost is timed. An iteration is one
//! operation per thread; throughput is reported in operations (all threads together).
//!
//! Run: `cargo bench -p kwik-benches --bench cache -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

#[allow(dead_code, unreachable_pub)]
#[path = "cache_support/mod.rs"]
mod cache_support;

use cache_support::{BenchCache, CAPACITY, Kwik, Lru, Moka, Op, Quick, ZIPF_KEYS, ZIPF_S};

/// Ops per thread in a pre-generated stream; iterations wrap around it.
const STREAM: usize = 1 << 20;
const THREADS: [usize; 2] = [1, 2];

/// Runs `iters` ops on each of `threads` threads (thread `t` walks its own stream) and returns
/// the wall time from the common start to the last thread's end.
fn run_threads<C: BenchCache>(
    cache: &C,
    streams: &[Vec<Op>],
    threads: usize,
    iters: u64,
) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = streams[..threads]
            .iter()
            .map(|ops| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let mut hits = 0u64;
                    for i in 0..iters as usize {
                        hits += u64::from(ops[i & (STREAM - 1)].run(cache));
                    }
                    black_box(hits);
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        for w in workers {
            w.join().expect("bench thread panicked");
        }
        t0.elapsed()
    })
}

fn bench_one<C: BenchCache>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    cache: &C,
    streams: &[Vec<Op>],
) {
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("{name}/{threads}t"), |b| {
            b.iter_custom(|iters| run_threads(cache, streams, threads, iters));
        });
    }
}

fn cache_hit(c: &mut Criterion) {
    let keys = CAPACITY as u64;
    let streams: Vec<_> = (0..2)
        .map(|t| cache_support::uniform_ops(keys, STREAM, 0xC0FFEE + t))
        .collect();
    let mut group = c.benchmark_group("cache_hit");
    group.sample_size(20);
    let kwik: Kwik = cache_support::filled(keys);
    bench_one(&mut group, "kwik_cache", &kwik, &streams);
    let moka: Moka = cache_support::filled(keys);
    bench_one(&mut group, "moka", &moka, &streams);
    let quick: Quick = cache_support::filled(keys);
    bench_one(&mut group, "quick_cache", &quick, &streams);
    let lru: Lru = cache_support::filled(keys);
    bench_one(&mut group, "lru", &lru, &streams);
    group.finish();
}

fn warmed<C: BenchCache>(streams: &[Vec<Op>]) -> C {
    let cache = C::with_capacity(CAPACITY);
    for op in &streams[0] {
        op.run(&cache);
    }
    cache
}

fn cache_zipf(c: &mut Criterion) {
    let streams: Vec<_> = (0..2)
        .map(|t| cache_support::zipf_ops(ZIPF_KEYS, ZIPF_S, STREAM, 10, 0x5EED + t))
        .collect();
    let mut group = c.benchmark_group("cache_zipf");
    group.sample_size(20);
    let kwik: Kwik = warmed(&streams);
    bench_one(&mut group, "kwik_cache", &kwik, &streams);
    let moka: Moka = warmed(&streams);
    bench_one(&mut group, "moka", &moka, &streams);
    let quick: Quick = warmed(&streams);
    bench_one(&mut group, "quick_cache", &quick, &streams);
    let lru: Lru = warmed(&streams);
    bench_one(&mut group, "lru", &lru, &streams);
    group.finish();
}

criterion_group!(benches, cache_hit, cache_zipf);
criterion_main!(benches);
