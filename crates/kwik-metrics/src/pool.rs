//! Handles for the worker pool's latency histograms.
//!
//! The pool's counters and gauges (queue depth, running, jobs by outcome) come from its stats
//! snapshot at scrape time (see [`Stat`](crate::Stat)); only the latencies, which must be
//! recorded when they happen, go through these handles. The facade feeds them from kwik-pool's
//! observer hook.

use std::time::Duration;

use prometheus::{Histogram, Registry};

use crate::families;
use crate::registry::{Buckets, histogram};

/// Buckets of the pool latency histograms: 10 µs tripling to ~16 s. A job's queue wait is
/// microseconds when the pool keeps up and seconds when it is saturated; both must be visible.
const POOL_LATENCY_BUCKETS: Buckets = (0.000_01, 3.0, 14);

/// Handles for `kwik_pool_queue_wait_seconds` and `kwik_pool_run_seconds`.
///
/// Obtain it with [`Metrics::pool`](crate::Metrics::pool).
#[derive(Clone, Debug)]
pub struct PoolMetrics {
    queue_wait_seconds: Histogram,
    run_seconds: Histogram,
}

impl PoolMetrics {
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            queue_wait_seconds: histogram(
                registry,
                &families::POOL_QUEUE_WAIT,
                POOL_LATENCY_BUCKETS,
            )?,
            run_seconds: histogram(registry, &families::POOL_RUN, POOL_LATENCY_BUCKETS)?,
        })
    }

    /// `kwik_pool_queue_wait_seconds`.
    pub fn queue_wait_seconds(&self) -> &Histogram {
        &self.queue_wait_seconds
    }

    /// `kwik_pool_run_seconds`.
    pub fn run_seconds(&self) -> &Histogram {
        &self.run_seconds
    }

    /// Records how long a job waited in its queue.
    pub fn observe_queue_wait(&self, waited: Duration) {
        self.queue_wait_seconds.observe(waited.as_secs_f64());
    }

    /// Records how long a job ran.
    pub fn observe_run(&self, ran: Duration) {
        self.run_seconds.observe(ran.as_secs_f64());
    }
}
