//! Scrape-time publication of stats snapshots (worker pool, buffer pool, cache).
//!
//! kwik-pool, kwik-buffer and kwik-cache keep their counters in their own atomics and expose a
//! `Stats` snapshot; they never import prometheus. A closure registered here reads such a
//! snapshot when Prometheus scrapes, so the hot path of those crates pays nothing for metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use crate::families::{self, Family};
use crate::proto;
use crate::transport::label_enum;

label_enum! {
    /// Worker pool job outcomes: the label `outcome` of `kwik_pool_jobs_total`.
    JobOutcome {
        /// The job completed successfully.
        Ok => "ok",
        /// The job returned an error.
        Failed => "failed",
        /// The job panicked (the worker survived).
        Panicked => "panicked",
        /// The job ran past its timeout and was cancelled.
        TimedOut => "timed_out",
        /// The job was refused (queue full or pool closed).
        Rejected => "rejected",
    }
}

/// A value a stats closure can report. Each maps onto one catalogue family (and label value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stat {
    /// `kwik_pool_queue_depth` (gauge).
    PoolQueueDepth,
    /// `kwik_pool_running` (gauge).
    PoolRunning,
    /// `kwik_pool_jobs_total{outcome}` (counter).
    PoolJobs(JobOutcome),
    /// `kwik_buffer_hits_total` (counter).
    BufferHits,
    /// `kwik_buffer_misses_total` (counter).
    BufferMisses,
    /// `kwik_buffer_outstanding` (gauge).
    BufferOutstanding,
    /// `kwik_cache_hits_total` (counter).
    CacheHits,
    /// `kwik_cache_misses_total` (counter).
    CacheMisses,
    /// `kwik_cache_evictions_total` (counter).
    CacheEvictions,
    /// `kwik_cache_expirations_total` (counter).
    CacheExpirations,
    /// `kwik_cache_entries` (gauge).
    CacheEntries,
    /// `kwik_cache_weight_bytes` (gauge).
    CacheWeightBytes,
}

/// The unlabelled stat families, in slot order; `kwik_pool_jobs_total` takes the slots after.
const PLAIN: &[(Stat, Family)] = &[
    (Stat::PoolQueueDepth, families::POOL_QUEUE_DEPTH),
    (Stat::PoolRunning, families::POOL_RUNNING),
    (Stat::BufferHits, families::BUFFER_HITS),
    (Stat::BufferMisses, families::BUFFER_MISSES),
    (Stat::BufferOutstanding, families::BUFFER_OUTSTANDING),
    (Stat::CacheHits, families::CACHE_HITS),
    (Stat::CacheMisses, families::CACHE_MISSES),
    (Stat::CacheEvictions, families::CACHE_EVICTIONS),
    (Stat::CacheExpirations, families::CACHE_EXPIRATIONS),
    (Stat::CacheEntries, families::CACHE_ENTRIES),
    (Stat::CacheWeightBytes, families::CACHE_WEIGHT),
];
const SLOTS: usize = PLAIN.len() + JobOutcome::ALL.len();

impl Stat {
    /// Index of the stat's value in a scrape's slots: the position in [`PLAIN`], then one slot
    /// per job outcome.
    fn slot(self) -> usize {
        match self {
            Self::PoolQueueDepth => 0,
            Self::PoolRunning => 1,
            Self::BufferHits => 2,
            Self::BufferMisses => 3,
            Self::BufferOutstanding => 4,
            Self::CacheHits => 5,
            Self::CacheMisses => 6,
            Self::CacheEvictions => 7,
            Self::CacheExpirations => 8,
            Self::CacheEntries => 9,
            Self::CacheWeightBytes => 10,
            Self::PoolJobs(outcome) => PLAIN.len() + outcome.index(),
        }
    }
}

/// Identifies a registered stats closure, to remove it with
/// [`Metrics::unregister_stats_collector`](crate::Metrics::unregister_stats_collector).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatsCollectorId(u64);

type Source = Box<dyn Fn() -> Vec<(Stat, u64)> + Send + Sync>;

/// The sources and the collector registered in the registry; shared by `Metrics` clones.
#[derive(Default)]
pub(crate) struct StatsSources {
    next_id: AtomicU64,
    sources: RwLock<Vec<(StatsCollectorId, Source)>>,
}

impl StatsSources {
    pub(crate) fn add(&self, source: Source) -> StatsCollectorId {
        let id = StatsCollectorId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.sources.write().push((id, source));
        id
    }

    pub(crate) fn remove(&self, id: StatsCollectorId) -> bool {
        let mut sources = self.sources.write();
        let before = sources.len();
        sources.retain(|(i, _)| *i != id);
        sources.len() != before
    }

    pub(crate) fn len(&self) -> usize {
        self.sources.read().len()
    }

    /// Runs every source and sums what they report per stat.
    fn sample(&self) -> [u64; SLOTS] {
        let mut slots = [0u64; SLOTS];
        for (_, source) in self.sources.read().iter() {
            for (stat, value) in source() {
                let slot = &mut slots[stat.slot()];
                *slot = slot.saturating_add(value);
            }
        }
        slots
    }
}

/// The prometheus collector that turns the sources into families at scrape time.
pub(crate) struct StatsCollector {
    sources: Arc<StatsSources>,
    descs: Vec<Desc>,
}

impl StatsCollector {
    pub(crate) fn new(sources: Arc<StatsSources>) -> prometheus::Result<Self> {
        let descs = PLAIN
            .iter()
            .map(|(_, family)| proto::desc(family))
            .chain(std::iter::once(proto::desc(&families::POOL_JOBS)))
            .collect::<prometheus::Result<_>>()?;
        Ok(Self { sources, descs })
    }
}

impl Collector for StatsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let slots = self.sources.sample();
        let mut out: Vec<MetricFamily> = PLAIN
            .iter()
            .map(|(stat, family)| proto::single(family, slots[stat.slot()] as f64))
            .collect();
        out.push(proto::family(
            &families::POOL_JOBS,
            JobOutcome::ALL.iter().map(|outcome| {
                let value = slots[Stat::PoolJobs(*outcome).slot()] as f64;
                ([outcome.as_str()], value)
            }),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_stats_sit_at_their_table_position() {
        for (i, (stat, _)) in PLAIN.iter().enumerate() {
            assert_eq!(stat.slot(), i, "{stat:?}");
        }
    }

    #[test]
    fn every_stat_has_its_own_slot() {
        let mut stats: Vec<Stat> = PLAIN.iter().map(|(s, _)| *s).collect();
        stats.extend(JobOutcome::ALL.iter().map(|o| Stat::PoolJobs(*o)));
        let mut slots: Vec<usize> = stats.iter().map(|s| s.slot()).collect();
        slots.sort_unstable();
        assert_eq!(slots, (0..SLOTS).collect::<Vec<_>>());
    }

    #[test]
    fn sources_are_summed_and_removable() {
        let sources = Arc::new(StatsSources::default());
        let a = sources.add(Box::new(|| {
            vec![(Stat::CacheHits, 3), (Stat::PoolQueueDepth, 1)]
        }));
        sources.add(Box::new(|| {
            vec![(Stat::CacheHits, 4), (Stat::PoolJobs(JobOutcome::Ok), 9)]
        }));
        let slots = sources.sample();
        assert_eq!(slots[Stat::CacheHits.slot()], 7);
        assert_eq!(slots[Stat::PoolQueueDepth.slot()], 1);
        assert_eq!(slots[Stat::PoolJobs(JobOutcome::Ok).slot()], 9);
        assert!(sources.remove(a));
        assert!(!sources.remove(a));
        assert_eq!(sources.sample()[Stat::CacheHits.slot()], 4);
    }
}
