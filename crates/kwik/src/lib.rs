//! KWIK (QUIC With Intelligent Konnections) as one product: sessions over several servers,
//! wired to one worker pool, buffer pool, cache and metrics, all tuned from `performance.toml`.
//!
//! `kwik` is the facade above every layer. The leaf crates (`kwik-config`, `kwik-pool`,
//! `kwik-buffer`, `kwik-cache`, `kwik-metrics`) know nothing of each other and `kwik-transport`
//! knows only the buffer pool; this crate maps each config section onto its crate's builder,
//! plugs the worker pool into the transport's executor seam ([`PoolExecutor`]: packets ordered
//! per path, bounded), and publishes every component's statistics to Prometheus. Each layer is
//! also re-exported à la carte, behind its feature.
//!
//! # The runtime
//!
//! ```
//! use std::time::Duration;
//! use kwik::{Identity, Runtime, config::PerformanceConfig};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = PerformanceConfig::from_toml_str("[worker_pool]\nsize = 4")?;
//! config.metrics.enabled = false; // no endpoint on a fixed port in a doctest
//! let runtime = Runtime::from_config(&config).await?;
//!
//! let listener = runtime.listen("127.0.0.1:0".parse()?, &Identity::InsecureDevSelfSigned)?;
//! let client = runtime
//!     .dial(listener.local_addr(), &kwik::Trust::InsecureDevSkipVerification)
//!     .await?;
//! let server = listener.accept().await.ok_or("listener closed")?;
//!
//! let mut stream = client.open_stream().await?;
//! stream.write_all(b"ping").await?;
//! stream.shutdown().await?;
//! let mut incoming = server.accept_stream().await?;
//! let mut got = Vec::new();
//! incoming.read_to_end(&mut got).await?;
//! assert_eq!(got, b"ping");
//! // The packets were decoded on the runtime's pool.
//! assert!(runtime.pool().stats().completed > 0);
//!
//! runtime.shutdown(Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```
//!
//! # The process-wide runtime
//!
//! [`dial_addr`] and [`listen_addr`] use a runtime created at the first call (configuration
//! from `$KWIK_CONFIG`, else `./performance.toml`, else the defaults), shared by every session
//! and listener made that way and shut down when the last of them is dropped;
//! [`global_pool`] inspects it, [`close_global_pool`] forces it down.
//!
//! # Features
//!
//! Default: `runtime`, `cache` and `metrics`, what the default `performance.toml` turns on.
//!
//! - `runtime`: [`Runtime`], [`dial_addr`] / [`listen_addr`]; needs `config`, `pool`, `buffer`
//!   and `transport`.
//! - `config`: [`config`], the `performance.toml` schema.
//! - `pool`: [`pool`], the worker pool.
//! - `buffer`: [`buffer`], pooled buffers.
//! - `cache`: [`cache`], and [`Runtime::cache`] built from `[cache]`.
//! - `metrics`: [`metrics`], and the runtime's registry and `/metrics` endpoint.
//! - `profiling`: the pprof endpoint when `[profiling] enabled = true`.
//! - `transport`: [`transport`], sessions and streams.
//! - `full`: all of the above.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "runtime")]
mod error;
#[cfg(feature = "runtime")]
mod executor;
#[cfg(feature = "runtime")]
mod global;
#[cfg(feature = "runtime")]
mod runtime;
#[cfg(feature = "runtime")]
mod session;
#[cfg(all(feature = "runtime", feature = "metrics"))]
mod telemetry;
#[cfg(feature = "runtime")]
mod tls;

#[cfg(feature = "runtime")]
pub use error::{DialError, ListenError, RuntimeError};
#[cfg(feature = "runtime")]
pub use executor::PoolExecutor;
#[cfg(feature = "runtime")]
pub use global::{
    CONFIG_ENV, DEFAULT_CONFIG_FILE, close_global_pool, dial_addr, global_pool, global_runtime,
    listen_addr,
};
#[cfg(feature = "runtime")]
pub use runtime::Runtime;
#[cfg(all(feature = "runtime", feature = "cache"))]
pub use runtime::RuntimeCache;
#[cfg(feature = "runtime")]
pub use session::{Listener, Session};
#[cfg(feature = "runtime")]
pub use tls::{Identity, Trust};

/// The `performance.toml` schema: sections, defaults, validation, environment overrides.
///
/// ```
/// let config = kwik::config::PerformanceConfig::from_toml_str("[cache]\nttl = \"1h\"")?;
/// assert_eq!(config.cache.ttl, std::time::Duration::from_secs(3600));
/// # Ok::<(), kwik::config::ConfigError>(())
/// ```
#[cfg(feature = "config")]
pub mod config {
    pub use kwik_config::*;
}

/// The sharded worker pool (ordered per key, bounded), the streaming pipeline and the batcher.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = kwik::pool::WorkerPool::builder().workers(2).build().unwrap();
/// assert_eq!(pool.submit(1_u64, async { 2 + 2 }).await.unwrap().await.unwrap(), 4);
/// # }
/// ```
#[cfg(feature = "pool")]
pub mod pool {
    pub use kwik_pool::*;
}

/// Pooled byte buffers: after warm-up, receiving a packet allocates nothing.
///
/// ```
/// let buffers = kwik::buffer::BufferPool::builder().buffer_size(4096).build().unwrap();
/// drop(buffers.get());
/// assert_eq!(buffers.get().capacity(), 4096);
/// assert_eq!(buffers.stats().hits, 1);
/// ```
#[cfg(feature = "buffer")]
pub mod buffer {
    pub use kwik_buffer::*;
}

/// The sharded LRU cache with TTL, weights, lz4 compression and single-flight loading.
///
/// ```
/// let cache = kwik::cache::Cache::builder().capacity(100).build().unwrap();
/// cache.insert("k", 1).unwrap();
/// assert_eq!(cache.get("k"), Some(1));
/// ```
#[cfg(feature = "cache")]
pub mod cache {
    pub use kwik_cache::*;
}

/// Prometheus families, the `/metrics` endpoint and latency summaries.
///
/// ```
/// let metrics = kwik::metrics::Metrics::new();
/// metrics.transport().session_opened(kwik::metrics::Role::Client);
/// assert!(metrics.encode_text().unwrap().contains("kwik_sessions"));
/// ```
#[cfg(feature = "metrics")]
pub mod metrics {
    pub use kwik_metrics::*;
}

/// KWIK sessions, paths and streams on quinn.
///
/// ```
/// let config = kwik::transport::ServerConfig::builder()
///     .insecure_dev_self_signed(true)
///     .build()
///     .unwrap();
/// assert!(config.self_signed_certificate().is_some());
/// ```
#[cfg(feature = "transport")]
pub mod transport {
    pub use kwik_transport::*;
}
