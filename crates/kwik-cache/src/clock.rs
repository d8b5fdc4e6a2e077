//! Injectable time: the cache reads "now" through a [`Clock`] so TTL behaviour is testable
//! without sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic source of time for the cache.
///
/// `now` returns the time elapsed since an origin fixed by the clock; only differences matter.
/// It must never go backwards. The cache reads the clock only when TTLs are involved: a cache
/// without any TTL never calls it on its hit path.
pub trait Clock: Send + Sync + 'static {
    /// Time elapsed since this clock's origin.
    fn now(&self) -> Duration;
}

/// The real clock, backed by [`Instant`]. The default for every cache.
///
/// # Examples
///
/// ```
/// use kwik_cache::{Clock, SystemClock};
///
/// let clock = SystemClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is the moment of this call.
    ///
    /// # Examples
    ///
    /// ```
    /// let clock = kwik_cache::SystemClock::new();
    /// # let _ = clock;
    /// ```
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that only moves when told to: TTL tests advance it by hand instead of sleeping.
///
/// Clones share the same time, so a test keeps one handle and gives a clone to the cache.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kwik_cache::{Cache, MockClock};
///
/// let clock = MockClock::new();
/// let cache = Cache::builder()
///     .capacity(16)
///     .ttl(Duration::from_secs(30))
///     .clock(clock.clone())
///     .build()
///     .unwrap();
/// cache.insert("k", 1);
/// clock.advance(Duration::from_secs(29));
/// assert_eq!(cache.get(&"k"), Some(1));
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(cache.get(&"k"), None);
/// ```
#[derive(Clone, Default)]
pub struct MockClock {
    nanos: Arc<AtomicU64>,
}

impl MockClock {
    /// A mock clock standing at zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_cache::{Clock, MockClock};
    ///
    /// assert_eq!(MockClock::new().now(), std::time::Duration::ZERO);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (saturating at `u64::MAX` nanoseconds).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use kwik_cache::{Clock, MockClock};
    ///
    /// let clock = MockClock::new();
    /// clock.advance(Duration::from_millis(5));
    /// assert_eq!(clock.now(), Duration::from_millis(5));
    /// ```
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Clock for MockClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

impl fmt::Debug for MockClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockClock")
            .field("now", &self.now())
            .finish()
    }
}

/// The time as the cache stores it: nanoseconds since the clock's origin, `NEVER` for no expiry.
pub(crate) type Tick = u64;

/// Expiry tick of an entry that never expires.
pub(crate) const NEVER: Tick = u64::MAX;

pub(crate) fn tick(clock: &dyn Clock) -> Tick {
    // 2^64 ns is 584 years of uptime: saturating is only a formality.
    u64::try_from(clock.now().as_nanos()).unwrap_or(NEVER - 1)
}

/// The tick at which an entry inserted at `now` with `ttl` expires.
pub(crate) fn deadline(now: Tick, ttl: Duration) -> Tick {
    let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(NEVER);
    now.saturating_add(ttl).min(NEVER - 1)
}
