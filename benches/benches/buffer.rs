//! kwik-buffer against plain allocation and the `object-pool` crate.
//!
//! In the `buffer_*` groups every competitor takes a 64 KiB buffer, writes into it (so the first
//! page is really touched, as a packet read would) and releases it. The `object_pool_*` groups
//! compare the generic object pools on a 4 KiB scratch `Vec`, alone and with two threads. Run with
//! `cargo bench -p kwik-benches --bench buffer -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use kwik_buffer::{BufferPool, ObjectPool};

/// The transport's read size, the case the pool exists for.
const SIZE: usize = 64 * 1024;
const BURST: usize = 256;
/// Packets in flight between the producer and the consumer thread.
const CHANNEL: usize = 256;
/// Packets per channel message.
const BATCH: usize = 32;
/// What the producer writes into each buffer in the cross-thread group.
const PAYLOAD: [u8; 1024] = [0x5a; 1024];

fn kwik_pool() -> BufferPool {
    BufferPool::builder()
        .buffer_size(SIZE)
        .max_pooled(1024)
        .thread_cache(32)
        .build()
        .expect("valid settings")
}

fn fresh_vec() -> Vec<u8> {
    Vec::with_capacity(SIZE)
}

/// One competitor of `buffer_get_put`: take a written buffer from `take`, drop it.
fn bench_get_put<T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut take: impl FnMut() -> T,
) {
    group.bench_function(name, |b| b.iter(|| drop(black_box(take()))));
}

/// One competitor of `buffer_burst_256`: take `BURST` written buffers, then release them all.
fn bench_burst<T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut take: impl FnMut() -> T,
) {
    let mut held = Vec::with_capacity(BURST);
    group.bench_function(name, |b| {
        b.iter(|| {
            for _ in 0..BURST {
                held.push(take());
            }
            black_box(&held);
            held.clear();
        });
    });
}

fn get_put(c: &mut Criterion) {
    let mut group = c.benchmark_group("buffer_get_put");
    configure(&mut group);
    let pool = kwik_pool();
    bench_get_put(&mut group, "kwik_buffer_pool", || {
        let mut buf = pool.get();
        buf.put_u8(1);
        buf
    });
    bench_get_put(&mut group, "bytesmut_alloc", || {
        let mut buf = BytesMut::with_capacity(SIZE);
        buf.put_u8(1);
        buf
    });
    bench_get_put(&mut group, "vec_alloc", || {
        let mut buf = fresh_vec();
        buf.push(1);
        buf
    });
    let objects = object_pool::Pool::new(1, fresh_vec);
    bench_get_put(&mut group, "object_pool_crate", || {
        let mut buf = objects.pull(fresh_vec);
        buf.clear();
        buf.push(1);
        buf
    });
    group.finish();
}

fn burst(c: &mut Criterion) {
    let mut group = c.benchmark_group("buffer_burst_256");
    configure(&mut group);
    group.throughput(Throughput::Elements(BURST as u64));
    let pool = kwik_pool();
    bench_burst(&mut group, "kwik_buffer_pool", || {
        let mut buf = pool.get();
        buf.put_u8(1);
        buf
    });
    bench_burst(&mut group, "bytesmut_alloc", || {
        let mut buf = BytesMut::with_capacity(SIZE);
        buf.put_u8(1);
        buf
    });
    bench_burst(&mut group, "vec_alloc", || {
        let mut buf = fresh_vec();
        buf.push(1);
        buf
    });
    let objects = object_pool::Pool::new(BURST, fresh_vec);
    bench_burst(&mut group, "object_pool_crate", || {
        let mut buf = objects.pull(fresh_vec);
        buf.clear();
        buf.push(1);
        buf
    });
    group.finish();
}

/// The producer (the measured thread) takes and fills buffers; a consumer thread drops them. The
/// figure is per buffer.
fn cross_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("buffer_cross_thread");
    configure(&mut group);
    let pool = kwik_pool();
    group.bench_function("kwik_buffer_pool", |b| {
        b.iter_custom(|iters| {
            produce(iters, || {
                let mut buf = pool.get();
                buf.put_slice(&PAYLOAD);
                buf
            })
        });
    });
    group.bench_function("kwik_buffer_pool_frozen", |b| {
        b.iter_custom(|iters| {
            produce(iters, || {
                let mut buf = pool.get();
                buf.put_slice(&PAYLOAD);
                buf.freeze()
            })
        });
    });
    group.bench_function("bytesmut_alloc", |b| {
        b.iter_custom(|iters| {
            produce(iters, || {
                let mut buf = BytesMut::with_capacity(SIZE);
                buf.put_slice(&PAYLOAD);
                buf
            })
        });
    });
    group.bench_function("vec_alloc", |b| {
        b.iter_custom(|iters| {
            produce(iters, || {
                let mut buf = fresh_vec();
                buf.extend_from_slice(&PAYLOAD);
                buf
            })
        });
    });
    let objects = Arc::new(object_pool::Pool::new(CHANNEL * 2, fresh_vec));
    group.bench_function("object_pool_crate", |b| {
        b.iter_custom(|iters| {
            produce(iters, || {
                let mut buf = objects.pull_owned(fresh_vec);
                buf.clear();
                buf.extend_from_slice(&PAYLOAD);
                buf
            })
        });
    });
    group.finish();
}

/// Runs `iters` productions on this thread, sending them in batches of `BATCH` to a consumer that
/// drops them, and returns the time until the consumer has dropped the last one. Batches keep the
/// channel's wake-ups (a futex call each) from dominating the figure.
fn produce<T: Send + 'static>(iters: u64, mut make: impl FnMut() -> T) -> Duration {
    let (tx, rx) = mpsc::sync_channel::<Vec<T>>(CHANNEL / BATCH);
    let consumer = thread::spawn(move || rx.into_iter().for_each(drop));
    let start = Instant::now();
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH as u64);
        left -= n;
        // One small allocation per batch, the same for every competitor.
        let batch: Vec<T> = (0..n).map(|_| make()).collect();
        tx.send(batch).expect("consumer alive");
    }
    drop(tx);
    consumer.join().expect("consumer finished");
    start.elapsed()
}

/// The generic object pools on one thread: kwik's `ObjectPool` against the `object-pool` crate.
fn objects_single(c: &mut Criterion) {
    let mut group = c.benchmark_group("object_pool_get_put");
    configure(&mut group);
    let kwik = kwik_objects();
    group.bench_function("kwik_object_pool", |b| {
        b.iter(|| {
            let mut v = kwik.get();
            v.push(1);
            drop(black_box(v));
        });
    });
    let crate_pool = object_pool::Pool::new(THREADS, scratch);
    group.bench_function("object_pool_crate", |b| {
        b.iter(|| {
            let mut v = crate_pool.pull(scratch);
            v.clear();
            v.push(1);
            drop(black_box(v));
        });
    });
    let equivalent = CrateEquivalent::new(1024);
    group.bench_function("object_pool_crate_equivalent", |b| {
        b.iter(|| {
            let mut v = equivalent.get();
            v.push(1);
            equivalent.put(black_box(v));
        });
    });
    group.finish();
}

/// What `ObjectPool` would be if built on the `object-pool` crate: the crate has no reset hook,
/// no retention bound and no counters, so they are added the cheapest way (atomics beside it).
struct CrateEquivalent {
    pool: object_pool::Pool<Vec<u8>>,
    max_pooled: usize,
    pooled: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    returns: AtomicU64,
    dropped: AtomicU64,
}

impl CrateEquivalent {
    fn new(max_pooled: usize) -> Self {
        Self {
            pool: object_pool::Pool::new(0, scratch),
            max_pooled,
            pooled: AtomicUsize::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            returns: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn get(&self) -> object_pool::Reusable<'_, Vec<u8>> {
        match self.pool.try_pull() {
            Some(v) => {
                self.pooled.fetch_sub(1, Ordering::Relaxed);
                self.hits.fetch_add(1, Ordering::Relaxed);
                v
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                self.pool.pull(scratch)
            }
        }
    }

    fn put(&self, mut v: object_pool::Reusable<'_, Vec<u8>>) {
        v.clear(); // the reset hook
        self.returns.fetch_add(1, Ordering::Relaxed);
        if self.pooled.fetch_add(1, Ordering::Relaxed) < self.max_pooled {
            drop(v); // back into the crate's pool
        } else {
            self.pooled.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            drop(v.detach());
        }
    }
}

/// The same with two threads sharing each pool; the time is per get/put on one thread.
fn objects_contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("object_pool_contended");
    configure(&mut group);
    let kwik = kwik_objects();
    group.bench_function("kwik_object_pool", |b| {
        b.iter_custom(|iters| {
            on_threads(iters, || {
                let mut v = kwik.get();
                v.push(1);
                drop(black_box(v));
            })
        });
    });
    let crate_pool = object_pool::Pool::new(THREADS, scratch);
    group.bench_function("object_pool_crate", |b| {
        b.iter_custom(|iters| {
            on_threads(iters, || {
                let mut v = crate_pool.pull(scratch);
                v.clear();
                v.push(1);
                drop(black_box(v));
            })
        });
    });
    let equivalent = CrateEquivalent::new(1024);
    group.bench_function("object_pool_crate_equivalent", |b| {
        b.iter_custom(|iters| {
            on_threads(iters, || {
                let mut v = equivalent.get();
                v.push(1);
                equivalent.put(black_box(v));
            })
        });
    });
    group.finish();
}

const THREADS: usize = 2;

fn scratch() -> Vec<u8> {
    Vec::with_capacity(4096)
}

fn kwik_objects() -> ObjectPool<Vec<u8>> {
    ObjectPool::builder(scratch)
        .reset(Vec::clear)
        .build()
        .expect("valid settings")
}

/// Runs `op` `iters` times on each of `THREADS` threads at once; returns the slowest thread's
/// time, so the figure is the cost of one operation while the others run too.
fn on_threads(iters: u64, op: impl Fn() + Sync) -> Duration {
    let start = Barrier::new(THREADS);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let t = Instant::now();
                    for _ in 0..iters {
                        op();
                    }
                    t.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker finished"))
            .max()
            .unwrap_or_default()
    })
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    // The machine is shared: short runs, compared within one run.
    group.sample_size(30);
}

criterion_group!(
    benches,
    get_put,
    burst,
    cross_thread,
    objects_single,
    objects_contended
);
criterion_main!(benches);
