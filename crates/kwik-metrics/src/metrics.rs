//! [`Metrics`]: the registry with kwik's families and the resolved handles.

use std::fmt;
use std::sync::Arc;

use prometheus::{IntGaugeVec, Registry, TextEncoder};
use tokio::runtime::Handle;

use crate::families;
use crate::pool::PoolMetrics;
use crate::registry::int_gauge_vec;
use crate::requests::{OTHER_ROUTE, RequestMetrics};
use crate::runtime::RuntimeCollector;
use crate::stats::{Stat, StatsCollector, StatsCollectorId, StatsSources};
use crate::transport::TransportMetrics;

/// Most routes [`MetricsBuilder::routes`] accepts. Each route adds ~20 series (a counter, an
/// error counter, a 17-bucket histogram); past a few hundred the scrape is dominated by routes.
pub const MAX_ROUTES: usize = 1000;
/// Longest route label accepted, in bytes.
pub const MAX_ROUTE_LEN: usize = 128;

/// Why [`MetricsBuilder::build`] refused its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A route label was empty, longer than [`MAX_ROUTE_LEN`] or contained a control character.
    #[error("invalid route label {route:?}: {reason}")]
    InvalidRoute {
        /// The offending route.
        route: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same route was declared twice.
    #[error("route {0:?} declared twice")]
    DuplicateRoute(String),
    /// More than [`MAX_ROUTES`] routes were declared.
    #[error("{0} routes declared, at most {MAX_ROUTES} are accepted")]
    TooManyRoutes(usize),
    /// The prometheus registry refused a family (a bug in kwik-metrics if it ever happens).
    #[error("registering a metric family failed")]
    Register(#[from] prometheus::Error),
}

/// Why encoding a scrape failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScrapeError {
    /// The text encoder rejected the gathered families.
    #[error("encoding the metrics failed")]
    Encode(#[from] prometheus::Error),
}

/// Builds a [`Metrics`]; see [`Metrics::builder`].
#[derive(Debug, Default)]
#[must_use]
pub struct MetricsBuilder {
    routes: Vec<String>,
    process: bool,
    runtime: Option<Handle>,
}

impl MetricsBuilder {
    /// Declares the routes whose requests get their own series in `kwik_requests_total`,
    /// `kwik_request_errors_total` and `kwik_request_duration_seconds`. Requests on any other
    /// route are counted under [`OTHER_ROUTE`](crate::OTHER_ROUTE).
    ///
    /// Default: no route (everything is `other`). At most [`MAX_ROUTES`]; each at most
    /// [`MAX_ROUTE_LEN`] bytes, non-empty, without control characters, not `other`.
    pub fn routes<I, S>(mut self, routes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.routes.extend(routes.into_iter().map(Into::into));
        self
    }

    /// Whether to export the `process_*` families (read from `/proc/self`, Linux only).
    ///
    /// Default: `true`. Turn it off when another library in the process already exports them
    /// to the same registry.
    pub fn process_metrics(mut self, enabled: bool) -> Self {
        self.process = enabled;
        self
    }

    /// The tokio runtime whose `kwik_runtime_*` metrics are exported.
    ///
    /// Default: none, meaning the runtime the scrape runs on (that of the
    /// [`MetricsServer`](crate::MetricsServer)); it can be set later with
    /// [`Metrics::set_runtime`].
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Validates the configuration and registers every family.
    pub fn build(self) -> Result<Metrics, BuildError> {
        validate_routes(&self.routes)?;
        let registry = Registry::new();
        let build_info: IntGaugeVec = int_gauge_vec(&registry, &families::BUILD_INFO)?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let transport = TransportMetrics::register(&registry)?;
        let pool = PoolMetrics::register(&registry)?;
        let requests = RequestMetrics::register(&registry, &self.routes)?;
        let stats = Arc::new(StatsSources::default());
        registry.register(Box::new(StatsCollector::new(Arc::clone(&stats))?))?;
        let runtime = Arc::new(RuntimeCollector::new(self.runtime)?);
        registry.register(Box::new(SharedCollector(Arc::clone(&runtime))))?;
        #[cfg(target_os = "linux")]
        if self.process {
            registry.register(Box::new(crate::process::ProcessCollector::new()?))?;
        }
        Ok(Metrics {
            inner: Arc::new(Inner {
                registry,
                transport,
                pool,
                requests,
                stats,
                runtime,
            }),
        })
    }
}

fn validate_routes(routes: &[String]) -> Result<(), BuildError> {
    if routes.len() > MAX_ROUTES {
        return Err(BuildError::TooManyRoutes(routes.len()));
    }
    for (i, route) in routes.iter().enumerate() {
        let reason = if route.is_empty() {
            Some("empty")
        } else if route.len() > MAX_ROUTE_LEN {
            Some("longer than 128 bytes")
        } else if route.chars().any(char::is_control) {
            Some("contains a control character")
        } else if route == OTHER_ROUTE {
            Some("reserved for undeclared routes")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(BuildError::InvalidRoute {
                route: route.clone(),
                reason,
            });
        }
        if routes[..i].contains(route) {
            return Err(BuildError::DuplicateRoute(route.clone()));
        }
    }
    Ok(())
}

/// Lets the registry own a collector that `Metrics` also keeps a handle on.
struct SharedCollector<C>(Arc<C>);

impl<C: prometheus::core::Collector> prometheus::core::Collector for SharedCollector<C> {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

/// kwik's Prometheus registry with every family of [`FAMILIES`](crate::FAMILIES) registered and
/// its handles resolved.
///
/// Create it once and clone it where needed: clones share the registry and the handles. Hot
/// paths hold a handle (an `IntCounter`, `IntGauge` or `Histogram`, one atomic operation per
/// update) taken from [`transport`](Self::transport), [`pool`](Self::pool) or
/// [`requests`](Self::requests); nothing does a label lookup per event.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    transport: TransportMetrics,
    pool: PoolMetrics,
    requests: RequestMetrics,
    stats: Arc<StatsSources>,
    runtime: Arc<RuntimeCollector>,
}

impl Metrics {
    /// The registry with default settings: no declared route, process metrics on, runtime
    /// metrics from the runtime the scrape runs on.
    pub fn new() -> Self {
        match Self::builder().build() {
            Ok(metrics) => metrics,
            // The default configuration has no route to reject and the catalogue's names are
            // checked by the tests, so registration cannot fail.
            Err(e) => unreachable!("default metrics failed to build: {e}"),
        }
    }

    /// A builder to declare routes and choose the process and runtime collectors.
    pub fn builder() -> MetricsBuilder {
        MetricsBuilder {
            process: true,
            ..MetricsBuilder::default()
        }
    }

    /// The transport handles: sessions, paths, streams, bytes, packets, frames, errors, RTT.
    pub fn transport(&self) -> &TransportMetrics {
        &self.inner.transport
    }

    /// The worker pool latency histograms.
    pub fn pool(&self) -> &PoolMetrics {
        &self.inner.pool
    }

    /// The per-route request handles.
    pub fn requests(&self) -> &RequestMetrics {
        &self.inner.requests
    }

    /// Registers a closure read at every scrape that reports stats snapshot values.
    ///
    /// This is how crates that do not depend on prometheus (kwik-pool, kwik-buffer,
    /// kwik-cache) are published: the closure reads their `Stats` snapshot and returns the
    /// values as `(Stat, value)` pairs. When several closures report the same [`Stat`], the
    /// exported value is their sum (two caches export their combined hits). Stats no closure
    /// reports are exported as 0. The closure runs on the scraping thread, so it must be cheap
    /// and must not block.
    ///
    /// ```
    /// use kwik_metrics::{JobOutcome, Metrics, Stat};
    ///
    /// let metrics = Metrics::new();
    /// let id = metrics.register_stats_collector(|| {
    ///     vec![(Stat::CacheHits, 42), (Stat::PoolJobs(JobOutcome::Ok), 7)]
    /// });
    /// let text = metrics.encode_text()?;
    /// assert!(text.contains("kwik_cache_hits_total 42"));
    /// assert!(text.contains(r#"kwik_pool_jobs_total{outcome="ok"} 7"#));
    /// assert!(metrics.unregister_stats_collector(id));
    /// # Ok::<(), kwik_metrics::ScrapeError>(())
    /// ```
    pub fn register_stats_collector<F>(&self, collect: F) -> StatsCollectorId
    where
        F: Fn() -> Vec<(Stat, u64)> + Send + Sync + 'static,
    {
        self.inner.stats.add(Box::new(collect))
    }

    /// Removes a closure registered with [`register_stats_collector`]; returns whether it was
    /// still registered.
    ///
    /// [`register_stats_collector`]: Self::register_stats_collector
    pub fn unregister_stats_collector(&self, id: StatsCollectorId) -> bool {
        self.inner.stats.remove(id)
    }

    /// How many stats closures are registered.
    pub fn stats_collectors(&self) -> usize {
        self.inner.stats.len()
    }

    /// Samples `kwik_runtime_*` from `handle` from now on.
    pub fn set_runtime(&self, handle: Handle) {
        self.inner.runtime.set(handle);
    }

    /// The underlying registry, to register application metrics next to kwik's (they then
    /// appear on the same `/metrics` endpoint).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Gathers every family and encodes it in the Prometheus text exposition format.
    pub fn encode_text(&self) -> Result<String, ScrapeError> {
        let mut out = String::new();
        self.encode_text_into(&mut out)?;
        Ok(out)
    }

    /// Like [`encode_text`](Self::encode_text), appending to `out` (reuse one buffer across
    /// scrapes).
    pub fn encode_text_into(&self, out: &mut String) -> Result<(), ScrapeError> {
        let families = self.inner.registry.gather();
        TextEncoder::new().encode_utf8(&families, out)?;
        Ok(())
    }

    /// Content type of [`encode_text`](Self::encode_text)'s output.
    pub fn text_content_type() -> &'static str {
        prometheus::TEXT_FORMAT
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field(
                "routes",
                &self.inner.requests.route_names().collect::<Vec<_>>(),
            )
            .field("stats_collectors", &self.inner.stats.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, FrameKind, Role};

    #[test]
    fn handles_update_the_exported_values() {
        let m = Metrics::builder()
            .process_metrics(false)
            .routes(["/echo"])
            .build()
            .unwrap();
        m.transport().session_opened(Role::Client);
        m.transport()
            .frames(Direction::Received, FrameKind::Stream)
            .inc_by(3);
        m.requests()
            .route("/echo")
            .observe(std::time::Duration::from_millis(2), false);
        m.requests()
            .route("/nope")
            .observe(std::time::Duration::from_millis(2), true);
        let text = m.encode_text().unwrap();
        assert!(
            text.contains(r#"kwik_sessions_active{role="client"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"kwik_sessions_total{role="client"} 1"#));
        assert!(text.contains(r#"kwik_frames_total{direction="received",type="stream"} 3"#));
        assert!(text.contains(r#"kwik_request_errors_total{route="/echo"} 1"#));
        assert!(text.contains(r#"kwik_requests_total{route="other"} 1"#));
        assert!(text.contains(r#"kwik_build_info{version=""#));
    }

    #[test]
    fn clones_share_handles() {
        let a = Metrics::new();
        let b = a.clone();
        a.transport().bytes_sent().inc_by(10);
        assert_eq!(b.transport().bytes_sent().get(), 10);
    }

    #[test]
    fn bad_routes_are_rejected() {
        let err = |routes: Vec<String>| Metrics::builder().routes(routes).build().unwrap_err();
        assert!(matches!(
            err(vec![String::new()]),
            BuildError::InvalidRoute { .. }
        ));
        assert!(matches!(
            err(vec!["a\n".into()]),
            BuildError::InvalidRoute { .. }
        ));
        assert!(matches!(
            err(vec!["other".into()]),
            BuildError::InvalidRoute { .. }
        ));
        assert!(matches!(
            err(vec!["x".repeat(129)]),
            BuildError::InvalidRoute { .. }
        ));
        assert!(matches!(
            err(vec!["/a".into(), "/a".into()]),
            BuildError::DuplicateRoute(_)
        ));
        let many = (0..=MAX_ROUTES).map(|i| format!("/{i}")).collect();
        assert!(matches!(err(many), BuildError::TooManyRoutes(_)));
    }

    #[test]
    fn two_registries_do_not_conflict() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.transport().paths_active().inc();
        assert_eq!(b.transport().paths_active().get(), 0);
    }
}
