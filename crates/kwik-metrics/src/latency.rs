//! [`LatencyRecorder`]: request latency percentiles, error rate and throughput (HDR histogram).
//!
//! This is the seed's `PerformanceMetrics`, used by `kwik loadtest` and `kwik serve` to print a
//! report: every thread records into one of a few sharded histograms, a snapshot merges them.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// A source of the current time, so that throughput windows can be tested without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock ([`Instant::now`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to; for tests and simulations.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use kwik_metrics::{LatencyRecorder, ManualClock};
///
/// let clock = Arc::new(ManualClock::new());
/// let recorder = LatencyRecorder::builder().clock(clock.clone()).build()?;
/// recorder.record(Duration::from_millis(1), true);
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(recorder.snapshot().throughput_per_sec, 0.5);
/// # Ok::<(), kwik_metrics::LatencyBuildError>(())
/// ```
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    elapsed_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at the moment it was created.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            elapsed_nanos: AtomicU64::new(0),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.elapsed_nanos.load(Ordering::Relaxed))
    }
}

/// Why [`LatencyRecorderBuilder::build`] refused its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LatencyBuildError {
    /// Significant figures outside 1..=5 (the HDR histogram's range).
    #[error("significant figures must be between 1 and 5, got {0}")]
    SignificantFigures(u8),
    /// The highest trackable latency is below 1 µs.
    #[error("max latency must be at least 1µs, got {0:?}")]
    MaxLatency(Duration),
    /// Zero shards.
    #[error("shards must be at least 1")]
    Shards,
    /// The histogram library rejected the bounds.
    #[error("creating the histogram failed")]
    Histogram(#[from] hdrhistogram::CreationError),
}

/// Builds a [`LatencyRecorder`]; see [`LatencyRecorder::builder`].
#[derive(Debug)]
#[must_use]
pub struct LatencyRecorderBuilder {
    significant_figures: u8,
    max_latency: Duration,
    shards: usize,
    clock: Arc<dyn Clock>,
}

impl LatencyRecorderBuilder {
    /// Precision of the recorded values, in significant decimal digits (1..=5).
    ///
    /// Default: 3 (a reported percentile is within 0.1% of the true value).
    pub fn significant_figures(mut self, figures: u8) -> Self {
        self.significant_figures = figures;
        self
    }

    /// The highest latency tracked exactly; longer ones are recorded as this value.
    ///
    /// Default: 60 s. At least 1 µs.
    pub fn max_latency(mut self, max: Duration) -> Self {
        self.max_latency = max;
        self
    }

    /// Number of independently locked histograms recording threads spread over.
    ///
    /// Default: twice the available parallelism, so concurrent recorders rarely share a lock.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// The clock that delimits throughput windows.
    ///
    /// Default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the configuration and creates the recorder.
    pub fn build(self) -> Result<LatencyRecorder, LatencyBuildError> {
        if !(1..=5).contains(&self.significant_figures) {
            return Err(LatencyBuildError::SignificantFigures(
                self.significant_figures,
            ));
        }
        if self.max_latency < Duration::from_micros(1) {
            return Err(LatencyBuildError::MaxLatency(self.max_latency));
        }
        if self.shards == 0 {
            return Err(LatencyBuildError::Shards);
        }
        let high = u64::try_from(self.max_latency.as_nanos()).unwrap_or(u64::MAX);
        // Values are nanoseconds; 1 ns is the lowest discernible value.
        let empty = Histogram::<u64>::new_with_bounds(1, high.max(2), self.significant_figures)?;
        let shards = (0..self.shards)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    histogram: empty.clone(),
                    errors: 0,
                    max: 0,
                }))
            })
            .collect();
        let window_start = self.clock.now();
        Ok(LatencyRecorder {
            shards,
            empty,
            clock: self.clock,
            window_start: Mutex::new(window_start),
        })
    }
}

/// Keeps each shard on its own cache lines so that threads recording into neighbouring shards
/// do not invalidate each other's lock word.
#[repr(align(128))]
struct Padded<T>(T);

struct Shard {
    histogram: Histogram<u64>,
    errors: u64,
    /// Exact largest value in nanoseconds (the histogram's max is rounded up to its bucket).
    max: u64,
}

/// Records request latencies and outcomes from many threads; [`snapshot`](Self::snapshot)
/// returns count, error rate, throughput over the window and latency percentiles.
///
/// ```
/// use std::time::Duration;
/// use kwik_metrics::LatencyRecorder;
///
/// let recorder = LatencyRecorder::new();
/// for ms in 1..=100 {
///     recorder.record(Duration::from_millis(ms), ms % 10 != 0);
/// }
/// let stats = recorder.snapshot();
/// assert_eq!(stats.count, 100);
/// assert_eq!(stats.errors, 10);
/// assert_eq!(stats.max, Duration::from_millis(100));
/// assert!(stats.p50 >= Duration::from_millis(50) && stats.p50 <= Duration::from_micros(50_050));
/// ```
pub struct LatencyRecorder {
    shards: Box<[Padded<Mutex<Shard>>]>,
    /// An empty histogram with the configured bounds, cloned to merge shards.
    empty: Histogram<u64>,
    clock: Arc<dyn Clock>,
    window_start: Mutex<Instant>,
}

/// A snapshot of a [`LatencyRecorder`]: the seed's performance report.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct RequestStats {
    /// Requests recorded in the window.
    pub count: u64,
    /// Requests recorded with `ok == false`.
    pub errors: u64,
    /// `errors / count`, 0 when nothing was recorded.
    pub error_rate: f64,
    /// Length of the window: since creation or the last [`LatencyRecorder::snapshot_and_reset`].
    pub window: Duration,
    /// `count / window`, in requests per second (0 for an empty window).
    pub throughput_per_sec: f64,
    /// Mean latency.
    pub mean: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 95th percentile latency.
    pub p95: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// 99.9th percentile latency.
    pub p999: Duration,
    /// Largest latency recorded (exact, capped at the configured max latency).
    pub max: Duration,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Spreads threads over shards round-robin, fixed for the thread's life.
    static THREAD_SLOT: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

impl LatencyRecorder {
    /// A recorder with the defaults of [`LatencyRecorderBuilder`].
    pub fn new() -> Self {
        match Self::builder().build() {
            Ok(recorder) => recorder,
            // The defaults (3 figures, 60 s, >= 2 shards) are within every bound checked above.
            Err(e) => unreachable!("default latency recorder failed to build: {e}"),
        }
    }

    /// A builder to set precision, range, shards and clock.
    pub fn builder() -> LatencyRecorderBuilder {
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        LatencyRecorderBuilder {
            significant_figures: 3,
            max_latency: Duration::from_secs(60),
            shards: parallelism * 2,
            clock: Arc::new(SystemClock),
        }
    }

    /// Records one request: its latency and whether it succeeded. Safe from any thread.
    pub fn record(&self, latency: Duration, ok: bool) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let slot = THREAD_SLOT.try_with(|s| *s).unwrap_or(0) % self.shards.len();
        let mut shard = self.shards[slot].0.lock();
        shard.histogram.saturating_record(nanos);
        shard.max = shard.max.max(nanos.min(shard.histogram.high()));
        if !ok {
            shard.errors += 1;
        }
    }

    /// The statistics of the current window (since creation or the last reset).
    pub fn snapshot(&self) -> RequestStats {
        let window = self
            .clock
            .now()
            .saturating_duration_since(*self.window_start.lock());
        self.merge(window, false)
    }

    /// The statistics of the current window, then starts a new, empty window; for periodic
    /// reports.
    pub fn snapshot_and_reset(&self) -> RequestStats {
        let now = self.clock.now();
        let window = {
            let mut start = self.window_start.lock();
            let window = now.saturating_duration_since(*start);
            *start = now;
            window
        };
        self.merge(window, true)
    }

    /// Merges the shards (resetting them when asked) into one report over `window`.
    fn merge(&self, window: Duration, reset: bool) -> RequestStats {
        let mut merged = self.empty.clone();
        let (mut errors, mut max) = (0, 0);
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            // Same bounds on both sides, so adding cannot fail.
            let _ = merged.add(&shard.histogram);
            errors += shard.errors;
            max = max.max(shard.max);
            if reset {
                shard.histogram.reset();
                shard.errors = 0;
                shard.max = 0;
            }
        }
        let count = merged.len();
        let at = |q: f64| {
            Duration::from_nanos(if count == 0 {
                0
            } else {
                merged.value_at_quantile(q)
            })
        };
        let secs = window.as_secs_f64();
        RequestStats {
            count,
            errors,
            error_rate: if count == 0 {
                0.0
            } else {
                errors as f64 / count as f64
            },
            window,
            throughput_per_sec: if secs > 0.0 { count as f64 / secs } else { 0.0 },
            mean: Duration::from_nanos(if count == 0 { 0 } else { merged.mean() as u64 }),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            p999: at(0.999),
            max: Duration::from_nanos(max),
        }
    }
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LatencyRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyRecorder")
            .field("shards", &self.shards.len())
            .field("significant_figures", &self.empty.sigfig())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_snapshot_is_all_zero() {
        let s = LatencyRecorder::new().snapshot();
        assert_eq!(
            (s.count, s.errors, s.error_rate, s.max),
            (0, 0, 0.0, Duration::ZERO)
        );
        assert_eq!(s.p99, Duration::ZERO);
    }

    #[test]
    fn builder_rejects_bad_values() {
        let b = LatencyRecorder::builder;
        assert!(matches!(
            b().significant_figures(0).build(),
            Err(LatencyBuildError::SignificantFigures(0))
        ));
        assert!(matches!(
            b().significant_figures(6).build(),
            Err(LatencyBuildError::SignificantFigures(6))
        ));
        assert!(matches!(
            b().max_latency(Duration::from_nanos(10)).build(),
            Err(LatencyBuildError::MaxLatency(_))
        ));
        assert!(matches!(
            b().shards(0).build(),
            Err(LatencyBuildError::Shards)
        ));
    }

    #[test]
    fn latencies_above_the_max_are_capped() {
        let r = LatencyRecorder::builder()
            .max_latency(Duration::from_secs(1))
            .build()
            .unwrap();
        r.record(Duration::from_secs(3600), true);
        let s = r.snapshot();
        assert_eq!(s.count, 1);
        assert_eq!(s.max, Duration::from_secs(1));
    }

    #[test]
    fn reset_starts_a_new_window() {
        let clock = Arc::new(ManualClock::new());
        let r = LatencyRecorder::builder()
            .clock(clock.clone())
            .build()
            .unwrap();
        for _ in 0..10 {
            r.record(Duration::from_micros(5), false);
        }
        clock.advance(Duration::from_secs(5));
        let first = r.snapshot_and_reset();
        assert_eq!((first.count, first.errors, first.error_rate), (10, 10, 1.0));
        assert_eq!(first.window, Duration::from_secs(5));
        assert_eq!(first.throughput_per_sec, 2.0);
        r.record(Duration::from_micros(5), true);
        clock.advance(Duration::from_millis(500));
        let second = r.snapshot();
        assert_eq!((second.count, second.errors), (1, 0));
        assert_eq!(second.window, Duration::from_millis(500));
        assert_eq!(second.throughput_per_sec, 2.0);
    }
}
