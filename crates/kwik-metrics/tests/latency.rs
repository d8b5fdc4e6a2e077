//! `LatencyRecorder` against a sorted-vector reference, from many threads.

use std::sync::Arc;
use std::time::Duration;

use kwik_metrics::{LatencyRecorder, ManualClock};

/// A deterministic pseudo-random sequence (xorshift) spanning several decades of latency.
fn latencies(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // 1 µs .. ~1 s, log-spread: mantissa times a power of ten.
            let mantissa = 1_000 + x % 9_000;
            mantissa * 10u64.pow((x >> 32) as u32 % 6)
        })
        .collect()
}

/// The value HDR reports for quantile `q`: the smallest recorded value with at least
/// `ceil(q * n)` values at or below it.
fn reference_quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
fn percentiles_match_a_sorted_reference_within_hdr_precision() {
    const THREADS: u64 = 4;
    const PER_THREAD: usize = 25_000;
    let clock = Arc::new(ManualClock::new());
    let recorder = Arc::new(
        LatencyRecorder::builder()
            .clock(clock.clone())
            .build()
            .expect("builds"),
    );
    let mut all: Vec<u64> = Vec::new();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let values = latencies(t + 1, PER_THREAD);
            all.extend(&values);
            let recorder = Arc::clone(&recorder);
            std::thread::spawn(move || {
                for (i, nanos) in values.into_iter().enumerate() {
                    recorder.record(Duration::from_nanos(nanos), i % 50 != 0);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("recording thread");
    }
    clock.advance(Duration::from_secs(10));
    all.sort_unstable();
    let stats = recorder.snapshot();

    assert_eq!(stats.count, all.len() as u64);
    assert_eq!(stats.errors, THREADS * (PER_THREAD as u64).div_ceil(50));
    assert!(
        (stats.error_rate - 0.02).abs() < 1e-9,
        "{}",
        stats.error_rate
    );
    assert_eq!(stats.window, Duration::from_secs(10));
    assert_eq!(stats.throughput_per_sec, all.len() as f64 / 10.0);
    assert_eq!(
        stats.max,
        Duration::from_nanos(*all.last().expect("values"))
    );

    // 3 significant figures: every reported value is within 0.1% of the true one.
    let within = |reported: Duration, truth: u64, what: &str| {
        let reported = reported.as_nanos() as f64;
        let truth = truth as f64;
        assert!(
            (reported - truth).abs() <= truth * 1e-3,
            "{what}: reported {reported} ns, reference {truth} ns"
        );
    };
    within(stats.p50, reference_quantile(&all, 0.50), "p50");
    within(stats.p95, reference_quantile(&all, 0.95), "p95");
    within(stats.p99, reference_quantile(&all, 0.99), "p99");
    within(stats.p999, reference_quantile(&all, 0.999), "p999");
    let mean = all.iter().map(|&v| v as f64).sum::<f64>() / all.len() as f64;
    within(stats.mean, mean as u64, "mean");
}

#[test]
fn snapshot_and_reset_reports_disjoint_windows() {
    let clock = Arc::new(ManualClock::new());
    let recorder = LatencyRecorder::builder()
        .clock(clock.clone())
        .shards(3)
        .build()
        .expect("builds");
    for ms in 1..=100 {
        recorder.record(Duration::from_millis(ms), true);
    }
    clock.advance(Duration::from_secs(1));
    let first = recorder.snapshot_and_reset();
    assert_eq!((first.count, first.throughput_per_sec), (100, 100.0));
    recorder.record(Duration::from_millis(7), false);
    clock.advance(Duration::from_secs(4));
    let second = recorder.snapshot();
    assert_eq!(
        (second.count, second.errors, second.error_rate),
        (1, 1, 1.0)
    );
    assert_eq!(second.max, Duration::from_millis(7));
    assert_eq!(second.throughput_per_sec, 0.25);
}
