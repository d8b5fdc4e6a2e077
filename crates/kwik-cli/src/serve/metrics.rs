//! The services' metrics in Prometheus: per-route request families through
//! [`RequestObserver`], the response cache and chunk buffers as a stats collector, and the
//! transport's session events through its [`Observer`](kwik_transport::Observer) hook.

use std::sync::Arc;
use std::time::Duration;

use kwik_metrics::{Metrics, Role, RouteMetrics, Stat, TransportMetrics};
use kwik_transport::CloseReason;

use super::Services;
use super::observe::{RequestObserver, Route};

/// The route labels to declare with [`kwik_metrics::MetricsBuilder::routes`].
pub(crate) fn route_labels() -> impl Iterator<Item = &'static str> {
    Route::ALL.iter().map(|route| route.as_str())
}

/// Feeds `kwik_requests_total`, `kwik_request_errors_total` and
/// `kwik_request_duration_seconds`, with every route's handles resolved once.
pub(crate) struct PrometheusObserver {
    routes: [RouteMetrics; Route::ALL.len()],
}

impl PrometheusObserver {
    /// Resolves the handles of every route in `metrics`, which should declare
    /// [`route_labels`] (undeclared routes count under `other`).
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let requests = metrics.requests();
        Self {
            routes: Route::ALL.map(|route| requests.route(route.as_str()).clone()),
        }
    }
}

impl RequestObserver for PrometheusObserver {
    fn observe(&self, route: Route, elapsed: Duration, ok: bool) {
        self.routes[route.index()].observe(elapsed, ok);
    }
}

/// Feeds the session, path and RTT families of `kwik_*` from the transport's events.
pub(crate) struct TransportObserver {
    metrics: TransportMetrics,
}

impl TransportObserver {
    /// Records into `metrics`' transport families.
    pub(crate) fn new(metrics: &Metrics) -> Self {
        Self {
            metrics: metrics.transport().clone(),
        }
    }
}

fn role(client: bool) -> Role {
    if client { Role::Client } else { Role::Server }
}

impl kwik_transport::Observer for TransportObserver {
    fn session_opened(&self, client: bool) {
        self.metrics.session_opened(role(client));
    }

    fn session_closed(&self, client: bool, _reason: &CloseReason) {
        self.metrics.session_closed(role(client));
    }

    fn path_added(&self, _path_id: u64, _remote: std::net::SocketAddr) {
        self.metrics.paths_active().inc();
    }

    fn path_removed(&self, _path_id: u64) {
        self.metrics.paths_active().dec();
    }

    fn rtt_sample(&self, _path_id: u64, rtt: Duration) {
        self.metrics.observe_rtt(rtt);
    }
}

/// Publishes the response cache and chunk buffer stats of `services` at each scrape.
pub(crate) fn register_stats(metrics: &Metrics, services: &Arc<Services>) {
    let services = Arc::downgrade(services);
    metrics.register_stats_collector(move || {
        let Some(services) = services.upgrade() else {
            return Vec::new();
        };
        let buffers = services.buffers.stats();
        let mut stats = vec![
            (Stat::BufferHits, buffers.hits),
            (Stat::BufferMisses, buffers.misses),
            (Stat::BufferOutstanding, buffers.outstanding),
        ];
        if let Some(cache) = services.cache() {
            let cache = cache.stats();
            stats.extend([
                (Stat::CacheHits, cache.hits),
                (Stat::CacheMisses, cache.misses),
                (Stat::CacheEvictions, cache.evictions()),
                (Stat::CacheExpirations, cache.expirations),
                (Stat::CacheEntries, cache.entries),
                (Stat::CacheWeightBytes, cache.weight),
            ]);
        }
        stats
    });
}

#[cfg(test)]
mod tests {
    use kwik_buffer::BufferPool;
    use kwik_cache::BytesCache;

    use super::*;

    #[test]
    fn requests_and_stats_reach_the_registry() {
        let metrics = Metrics::builder()
            .routes(route_labels())
            .process_metrics(false)
            .build()
            .unwrap();
        let observer = PrometheusObserver::new(&metrics);
        observer.observe(Route::Echo, Duration::from_millis(2), true);
        observer.observe(Route::Static, Duration::from_millis(1), false);
        let cache = BytesCache::builder().capacity(8).build().unwrap();
        cache
            .insert("k".into(), bytes::Bytes::from_static(b"v"))
            .unwrap();
        cache.get(std::path::Path::new("k"));
        let services = Arc::new(
            Services::builder(BufferPool::builder().build().unwrap())
                .cache(cache)
                .build()
                .unwrap(),
        );
        register_stats(&metrics, &services);
        let text = metrics.encode_text().unwrap();
        assert!(
            text.contains(r#"kwik_requests_total{route="/api/echo"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"kwik_request_errors_total{route="static"} 1"#));
        assert!(text.contains(r#"kwik_request_duration_seconds_count{route="/api/echo"} 1"#));
        assert!(text.contains("kwik_cache_hits_total 1"));
        assert!(text.contains("kwik_cache_entries 1"));
        drop(services);
        // The collector holds the services weakly: once they are gone it reports nothing.
        assert!(metrics.encode_text().is_ok());
    }
}
