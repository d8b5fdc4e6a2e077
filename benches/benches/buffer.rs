//! kwik-buffer against plain allocation and the `object-pool` crate.
//!
//! Every competitor takes a 64 KiB buffer, writes one byte into it (so the first page is really
//! touched, as a packet read would) and releases it. Run with
//! `cargo bench -p kwik-benches --bench buffer -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use kwik_buffer::BufferPool;

/// The transport's read size, the case the pool exists for.
const SIZE: usize = 64 * 1024;
const BURST: usize = 256;
/// Packets in flight between the producer and the consumer thread.
const CHANNEL: usize = 128;
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

fn get_put(c: &mut Criterion) {
    let mut group = c.benchmark_group("buffer_get_put");
    configure(&mut group);
    let pool = kwik_pool();
    group.bench_function("kwik_buffer_pool", |b| {
        b.iter(|| {
            let mut buf = pool.get();
            buf.put_u8(1);
            drop(black_box(buf));
        });
    });
    group.bench_function("bytesmut_alloc", |b| {
        b.iter(|| {
            let mut buf = BytesMut::with_capacity(SIZE);
            buf.put_u8(1);
            drop(black_box(buf));
        });
    });
    group.bench_function("vec_alloc", |b| {
        b.iter(|| {
            let mut buf = fresh_vec();
            buf.push(1);
            drop(black_box(buf));
        });
    });
    let objects = object_pool::Pool::new(1, fresh_vec);
    group.bench_function("object_pool_crate", |b| {
        b.iter(|| {
            let mut buf = objects.pull(fresh_vec);
            buf.clear();
            buf.push(1);
            drop(black_box(buf));
        });
    });
    group.finish();
}

fn burst(c: &mut Criterion) {
    let mut group = c.benchmark_group("buffer_burst_256");
    configure(&mut group);
    group.throughput(Throughput::Elements(BURST as u64));
    let pool = kwik_pool();
    let mut held = Vec::with_capacity(BURST);
    group.bench_function("kwik_buffer_pool", |b| {
        b.iter(|| {
            for _ in 0..BURST {
                let mut buf = pool.get();
                buf.put_u8(1);
                held.push(buf);
            }
            black_box(&held);
            held.clear();
        });
    });
    let mut held = Vec::with_capacity(BURST);
    group.bench_function("bytesmut_alloc", |b| {
        b.iter(|| {
            for _ in 0..BURST {
                let mut buf = BytesMut::with_capacity(SIZE);
                buf.put_u8(1);
                held.push(buf);
            }
            black_box(&held);
            held.clear();
        });
    });
    let mut held = Vec::with_capacity(BURST);
    group.bench_function("vec_alloc", |b| {
        b.iter(|| {
            for _ in 0..BURST {
                let mut buf = fresh_vec();
                buf.push(1);
                held.push(buf);
            }
            black_box(&held);
            held.clear();
        });
    });
    let objects = object_pool::Pool::new(BURST, fresh_vec);
    let mut held = Vec::with_capacity(BURST);
    group.bench_function("object_pool_crate", |b| {
        b.iter(|| {
            for _ in 0..BURST {
                let mut buf = objects.pull(fresh_vec);
                buf.clear();
                buf.push(1);
                held.push(buf);
            }
            black_box(&held);
            held.clear();
        });
    });
    group.finish();
}

/// The producer (the measured thread) takes and fills buffers; a consumer thread drops them.
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

/// Runs `iters` productions on this thread, sending each result to a consumer that drops it,
/// and returns the time until the consumer has dropped the last one.
fn produce<T: Send + 'static>(iters: u64, mut make: impl FnMut() -> T) -> Duration {
    let (tx, rx) = mpsc::sync_channel::<T>(CHANNEL);
    let consumer = thread::spawn(move || rx.into_iter().for_each(drop));
    let start = Instant::now();
    for _ in 0..iters {
        tx.send(make()).expect("consumer alive");
    }
    drop(tx);
    consumer.join().expect("consumer finished");
    start.elapsed()
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    // The machine is shared: short runs, compared within one run.
    group.sample_size(30);
}

criterion_group!(benches, get_put, burst, cross_thread);
criterion_main!(benches);
