//! The adapters between the components' own statistics and kwik-metrics: stats snapshots read
//! at scrape time, pool job timings through the pool's observer, transport events through the
//! transport's observer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kwik_config::PerformanceConfig;
use kwik_metrics::{
    JobOutcome, Metrics, MetricsServer, PoolMetrics, ProtocolErrorKind, Role, Stat,
    StatsCollectorId, TransportMetrics,
};
use kwik_pool::{Outcome, PoolObserver};
use kwik_transport::{CloseReason, ErrorCode, Observer};

use crate::error::RuntimeError;
use crate::runtime::Runtime;

/// The registry, its endpoints and the stats collector a runtime registered.
pub(crate) struct Telemetry {
    metrics: Metrics,
    server: Mutex<Option<MetricsServer>>,
    metrics_addr: Option<SocketAddr>,
    #[cfg(feature = "profiling")]
    profiling: Mutex<Option<kwik_metrics::ProfilingServer>>,
    collector: Mutex<Option<StatsCollectorId>>,
}

impl Telemetry {
    /// Builds the registry and starts `/metrics` (when `[metrics] enabled`) and the profiling
    /// endpoint (when `[profiling] enabled` and the `profiling` feature is on).
    pub(crate) async fn start(config: &PerformanceConfig) -> Result<Self, RuntimeError> {
        let metrics = Metrics::builder()
            .runtime(tokio::runtime::Handle::current())
            .build()?;
        let server = if config.metrics.enabled {
            Some(
                MetricsServer::builder()
                    .addr(config.metrics.listen)
                    .start(metrics.clone())
                    .await?,
            )
        } else {
            None
        };
        #[cfg(feature = "profiling")]
        let profiling = if config.profiling.enabled {
            Some(
                kwik_metrics::ProfilingServer::builder()
                    .addr(config.profiling.effective_listen())
                    .frequency(config.profiling.sample_rate)
                    .start()
                    .await?,
            )
        } else {
            None
        };
        #[cfg(not(feature = "profiling"))]
        if config.profiling.enabled {
            tracing::warn!(
                "[profiling] enabled, but kwik was built without the `profiling` feature"
            );
        }
        Ok(Self {
            metrics_addr: server.as_ref().map(MetricsServer::local_addr),
            metrics,
            server: Mutex::new(server),
            #[cfg(feature = "profiling")]
            profiling: Mutex::new(profiling),
            collector: Mutex::new(None),
        })
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Queue-wait and run time of every pool job, into the pool histograms.
    pub(crate) fn pool_observer(&self) -> Arc<dyn PoolObserver> {
        Arc::new(PoolTimings(self.metrics.pool().clone()))
    }

    /// Session, path, error and RTT events, into the transport families.
    pub(crate) fn transport_observer(&self) -> Arc<dyn Observer> {
        Arc::new(TransportEvents(self.metrics.transport().clone()))
    }

    /// Publishes the pool, buffer pool and cache snapshots at every scrape. The closure holds
    /// the components, not the runtime, so no reference cycle keeps the runtime alive.
    pub(crate) fn publish_stats(&self, runtime: &Runtime) {
        let pool = runtime.pool().clone();
        let buffers = runtime.buffers().clone();
        #[cfg(feature = "cache")]
        let cache = runtime.cache_handle();
        let id = self.metrics.register_stats_collector(move || {
            let p = pool.stats();
            let b = buffers.stats();
            let mut stats = vec![
                (Stat::PoolQueueDepth, p.queued as u64),
                (Stat::PoolRunning, p.running as u64),
                (Stat::PoolJobs(JobOutcome::Ok), p.completed),
                (Stat::PoolJobs(JobOutcome::Failed), p.failed),
                (Stat::PoolJobs(JobOutcome::Panicked), p.panicked),
                (Stat::PoolJobs(JobOutcome::TimedOut), p.timed_out),
                (Stat::PoolJobs(JobOutcome::Rejected), p.rejected),
                (Stat::BufferHits, b.hits),
                (Stat::BufferMisses, b.misses),
                (Stat::BufferOutstanding, b.outstanding),
            ];
            #[cfg(feature = "cache")]
            if let Some(cache) = &cache {
                let c = cache.stats();
                stats.extend([
                    (Stat::CacheHits, c.hits),
                    (Stat::CacheMisses, c.misses),
                    (Stat::CacheEvictions, c.evictions()),
                    (Stat::CacheExpirations, c.expirations),
                    (Stat::CacheEntries, c.entries),
                    (Stat::CacheWeightBytes, c.weight),
                ]);
            }
            stats
        });
        *lock(&self.collector) = Some(id);
    }

    /// Stops the endpoints and unregisters the stats collector.
    pub(crate) async fn shutdown(&self) {
        if let Some(id) = lock(&self.collector).take() {
            self.metrics.unregister_stats_collector(id);
        }
        let server = lock(&self.server).take();
        if let Some(server) = server
            && let Err(err) = server.shutdown().await
        {
            tracing::debug!("metrics endpoint shutdown: {err}");
        }
        #[cfg(feature = "profiling")]
        {
            let profiling = lock(&self.profiling).take();
            if let Some(profiling) = profiling
                && let Err(err) = profiling.shutdown().await
            {
                tracing::debug!("profiling endpoint shutdown: {err}");
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pool's observer hook: one histogram observation per job phase.
struct PoolTimings(PoolMetrics);

impl PoolObserver for PoolTimings {
    fn on_job(&self, queue_wait: Duration, run: Duration, _outcome: Outcome) {
        // Outcomes are counted by the pool itself and published at scrape time.
        self.0.observe_queue_wait(queue_wait);
        self.0.observe_run(run);
    }
}

/// The transport's observer hook, onto the transport families.
struct TransportEvents(TransportMetrics);

fn role(client: bool) -> Role {
    if client { Role::Client } else { Role::Server }
}

impl Observer for TransportEvents {
    fn session_opened(&self, client: bool) {
        self.0.session_opened(role(client));
    }

    fn session_closed(&self, client: bool, _reason: &CloseReason) {
        self.0.session_closed(role(client));
    }

    fn path_added(&self, _path_id: u64, _remote: SocketAddr) {
        self.0.paths_active().inc();
    }

    fn path_removed(&self, _path_id: u64) {
        self.0.paths_active().dec();
    }

    fn protocol_error(&self, code: ErrorCode) {
        self.0.protocol_errors(error_kind(code)).inc();
    }

    fn rtt_sample(&self, _path_id: u64, rtt: Duration) {
        self.0.observe_rtt(rtt);
    }
}

/// The bounded label of a transport error code.
fn error_kind(code: ErrorCode) -> ProtocolErrorKind {
    match code {
        ErrorCode::INTERNAL => ProtocolErrorKind::Internal,
        ErrorCode::FRAME_ENCODING => ProtocolErrorKind::UnknownFrame,
        ErrorCode::PACKET_TOO_LARGE => ProtocolErrorKind::FrameTooLarge,
        ErrorCode::FLOW_CONTROL => ProtocolErrorKind::FlowControl,
        ErrorCode::STREAM_STATE | ErrorCode::STREAM_LIMIT | ErrorCode::FINAL_SIZE => {
            ProtocolErrorKind::StreamState
        }
        ErrorCode::OVERLAP_CONFLICT => ProtocolErrorKind::OffsetConflict,
        ErrorCode::PATH_LIMIT | ErrorCode::DIAL_FAILED => ProtocolErrorKind::Path,
        ErrorCode::VERSION_MISMATCH => ProtocolErrorKind::Handshake,
        _ => ProtocolErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_onto_bounded_labels() {
        assert_eq!(
            error_kind(ErrorCode::FLOW_CONTROL),
            ProtocolErrorKind::FlowControl
        );
        assert_eq!(
            error_kind(ErrorCode::FINAL_SIZE),
            ProtocolErrorKind::StreamState
        );
        assert_eq!(error_kind(ErrorCode(0x4242)), ProtocolErrorKind::Other);
    }
}
