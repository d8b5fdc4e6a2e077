//! kwik-metrics hot paths and scrape cost.
//!
//! `metrics_hot`: a counter increment and a histogram observation through a handle resolved at
//! build time (what kwik does) against `with_label_values` on every call (what seed 002's Go
//! code does with its `HistogramVec`), on 1 thread and on 2 threads hitting the same series;
//! plus `LatencyRecorder::record`. `metrics_scrape`: gathering and text-encoding the registry
//! with 1k and 10k extra series. Goals: inc ≤ 5 ns, observe ≤ 30 ns, 10k-series scrape ≤ 10 ms.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kwik_metrics::prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use kwik_metrics::{Direction, FrameKind, LatencyRecorder, Metrics};

/// Runs `op` `iters` times on each of `threads` threads at once; returns the wall time, so the
/// reported figure is the time per operation per thread under contention.
fn run_threads(threads: usize, iters: u64, op: &(dyn Fn() + Sync)) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        for _ in 0..iters {
            op();
        }
        return start.elapsed();
    }
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = (1..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    for _ in 0..iters {
                        op();
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for _ in 0..iters {
            op();
        }
        for w in workers {
            w.join().expect("bench thread");
        }
        start.elapsed()
    })
}

fn metrics_hot(c: &mut Criterion) {
    let metrics = Metrics::builder()
        .routes(["/echo"])
        .build()
        .expect("metrics");
    let counter = metrics
        .transport()
        .frames(Direction::Received, FrameKind::Stream)
        .clone();
    let route = metrics.requests().route("/echo").duration_seconds().clone();

    // The same families looked up by label on every call, in a registry of their own.
    let registry = Registry::new();
    let frames_vec = IntCounterVec::new(
        Opts::new("bench_frames_total", "frames"),
        &["direction", "type"],
    )
    .expect("vec");
    let buckets = kwik_metrics::prometheus::exponential_buckets(0.000_1, 2.0, 17).expect("buckets");
    let duration_vec = HistogramVec::new(
        HistogramOpts::new("bench_request_duration_seconds", "duration").buckets(buckets),
        &["route"],
    )
    .expect("vec");
    registry
        .register(Box::new(frames_vec.clone()))
        .expect("register");
    registry
        .register(Box::new(duration_vec.clone()))
        .expect("register");
    let recorder = LatencyRecorder::new();

    let counter_handle = || black_box(&counter).inc();
    let counter_lookup = || {
        frames_vec
            .with_label_values(black_box(&["received", "stream"]))
            .inc();
    };
    let observe_handle = || black_box(&route).observe(black_box(0.000_42));
    let observe_lookup = || {
        duration_vec
            .with_label_values(black_box(&["/echo"]))
            .observe(black_box(0.000_42));
    };
    let record = || recorder.record(black_box(Duration::from_micros(420)), true);
    let ops: [(&str, &(dyn Fn() + Sync)); 5] = [
        ("counter_inc/handle", &counter_handle),
        ("counter_inc/with_label_values", &counter_lookup),
        ("histogram_observe/handle", &observe_handle),
        ("histogram_observe/with_label_values", &observe_lookup),
        ("latency_recorder_record", &record),
    ];

    let mut group = c.benchmark_group("metrics_hot");
    group.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        for (name, op) in ops {
            group.bench_function(BenchmarkId::new(name, threads), |b| {
                b.iter_custom(|iters| run_threads(threads, iters, op));
            });
        }
    }
    // Uncontended, timed by the thread's CPU clock: on a shared, overloaded machine the
    // wall-clock figures above include time the thread spent descheduled.
    for (name, op) in ops {
        group.bench_function(
            BenchmarkId::new(format!("{name}/thread_cpu_time"), 1),
            |b| {
                b.iter_custom(|iters| {
                    let start = thread_cpu_time();
                    for _ in 0..iters {
                        op();
                    }
                    thread_cpu_time().saturating_sub(start)
                });
            },
        );
    }
    group.finish();
}

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn metrics_scrape(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics_scrape");
    group.sample_size(20);
    for extra in [1_000usize, 10_000] {
        let metrics = Metrics::new();
        let vec = IntCounterVec::new(Opts::new("bench_series_total", "bench series"), &["id"])
            .expect("vec");
        metrics
            .registry()
            .register(Box::new(vec.clone()))
            .expect("register");
        for i in 0..extra {
            vec.with_label_values(&[&i.to_string()]).inc_by(i as u64);
        }
        let mut out = String::new();
        metrics.encode_text_into(&mut out).expect("encode");
        let series = out.lines().filter(|l| !l.starts_with('#')).count();
        eprintln!(
            "metrics_scrape/{extra}: {series} series, {} bytes of text",
            out.len()
        );
        group.throughput(Throughput::Elements(series as u64));
        group.bench_function(BenchmarkId::new("encode_text", extra), |b| {
            b.iter(|| {
                out.clear();
                metrics.encode_text_into(&mut out).expect("encode");
                black_box(out.len())
            });
        });
        group.bench_function(
            BenchmarkId::new("gather_only_thread_cpu_time", extra),
            |b| {
                b.iter_custom(|iters| {
                    let start = thread_cpu_time();
                    for _ in 0..iters {
                        black_box(metrics.registry().gather());
                    }
                    thread_cpu_time().saturating_sub(start)
                });
            },
        );
        // The same work timed by this thread's CPU clock: on a shared, overloaded machine the
        // wall-clock figure above includes time the thread spent descheduled.
        group.bench_function(
            BenchmarkId::new("encode_text_thread_cpu_time", extra),
            |b| {
                b.iter_custom(|iters| {
                    let start = thread_cpu_time();
                    for _ in 0..iters {
                        out.clear();
                        metrics.encode_text_into(&mut out).expect("encode");
                        black_box(out.len());
                    }
                    thread_cpu_time().saturating_sub(start)
                });
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = metrics_hot, metrics_scrape
}
criterion_main!(benches);
