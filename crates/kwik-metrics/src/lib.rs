//! Prometheus metrics, the `/metrics` endpoint, CPU profiling and latency summaries for kwik.
//!
//! This is the only crate below the facade that depends on prometheus. The other leaf crates
//! (kwik-pool, kwik-buffer, kwik-cache) keep their own atomic stats; the `kwik` facade
//! publishes their snapshots here at scrape time ([`Metrics::register_stats_collector`]) and
//! feeds latencies into the histograms through handles resolved once, so no hot path ever
//! looks up a label. [`FAMILIES`] lists every exported family (docs/metrics.md documents them).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use kwik_metrics::{Direction, FrameKind, Metrics, MetricsServer, Role, Stat};
//!
//! let metrics = Metrics::builder().routes(["/echo"]).build()?;
//!
//! // Event-time updates go through resolved handles: one atomic operation each.
//! let transport = metrics.transport();
//! transport.session_opened(Role::Server);
//! transport.frames(Direction::Received, FrameKind::Stream).inc();
//! let echo = metrics.requests().route("/echo").clone();
//! echo.observe(Duration::from_micros(250), true);
//!
//! // Snapshots of other crates are read at scrape time.
//! metrics.register_stats_collector(|| vec![(Stat::BufferHits, 10), (Stat::BufferMisses, 1)]);
//!
//! let server = MetricsServer::builder()
//!     .addr("127.0.0.1:0".parse()?)
//!     .start(metrics.clone())
//!     .await?;
//! assert!(metrics.encode_text()?.contains("kwik_buffer_hits_total 10"));
//! server.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! With the `profiling` feature, [`ProfilingServer`] serves CPU profiles (pprof protobuf and SVG
//! flamegraphs). [`LatencyRecorder`] computes the percentile reports of `kwik loadtest`.
#![warn(missing_docs)]

mod families;
mod http;
mod latency;
mod metrics;
mod pool;
#[cfg(target_os = "linux")]
pub mod process;
#[cfg(feature = "profiling")]
mod profiling;
mod proto;
mod registry;
mod requests;
mod runtime;
mod server;
mod stats;
mod transport;

pub use families::{FAMILIES, Family, FamilyKind, FamilySource};
pub use http::{ShutdownError, StartError};
pub use latency::{
    Clock, LatencyBuildError, LatencyRecorder, LatencyRecorderBuilder, ManualClock, RequestStats,
    SystemClock,
};
pub use metrics::{BuildError, MAX_ROUTE_LEN, MAX_ROUTES, Metrics, MetricsBuilder, ScrapeError};
pub use pool::PoolMetrics;
#[cfg(feature = "profiling")]
pub use profiling::{
    DEFAULT_FREQUENCY_HZ, DEFAULT_MAX_PROFILE_SECONDS, DEFAULT_PROFILE_SECONDS,
    DEFAULT_PROFILING_ADDR, ProfilingServer, ProfilingServerBuilder,
};
pub use requests::{OTHER_ROUTE, RequestMetrics, RouteMetrics};
pub use server::{
    DEFAULT_METRICS_ADDR, DEFAULT_SHUTDOWN_TIMEOUT, MetricsServer, MetricsServerBuilder,
};
pub use stats::{JobOutcome, Stat, StatsCollectorId};
pub use transport::{Direction, FrameKind, ProtocolErrorKind, Role, TransportMetrics};

/// The prometheus crate this registry is built on, to register application metrics with
/// [`Metrics::registry`] using the same version.
pub use prometheus;
