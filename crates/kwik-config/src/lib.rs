//! The `performance.toml` schema of kwik: typed sections, defaults, validation, and errors that
//! name the file, the line and the key.
//!
//! `kwik-config` is a leaf crate and pure data: it knows nothing of the pool, the cache or the
//! transport. The `kwik` facade maps each section onto that crate's own builder
//! (`[worker_pool]` → `kwik-pool`, `[cache]` → `kwik-cache`, …), and each builder validates its
//! values again with its own typed error. Every key has a default, so an empty file is valid;
//! unknown keys, wrong types and out-of-range values are errors that point at the line.
//!
//! ```
//! use std::time::Duration;
//! use kwik_config::{ByteSize, Overflow, PerformanceConfig};
//!
//! let config = PerformanceConfig::from_toml_str(
//!     r#"
//!     [worker_pool]
//!     size = 8
//!     overflow = "reject"
//!
//!     [cache]
//!     ttl = "1h"
//!     max_bytes = "256MiB"
//!     "#,
//! )?
//! .with_env_overrides_from([("KWIK_WORKER_POOL_SIZE", "16")])?;
//!
//! assert_eq!(config.worker_pool.size, 16);
//! assert_eq!(config.worker_pool.overflow, Overflow::Reject);
//! assert_eq!(config.cache.ttl, Duration::from_secs(3600));
//! assert_eq!(config.cache.max_bytes, ByteSize::mib(256));
//! assert_eq!(config.cache.capacity, 1000); // the default
//! # Ok::<(), kwik_config::ConfigError>(())
//! ```
#![warn(missing_docs)]

mod addr;
mod duration;
mod env;
mod error;
mod load;
mod schema;
mod size;
mod validate;

pub use error::{ConfigError, Location, Origin};
pub use schema::{
    BufferPoolConfig, CacheConfig, CircuitBreakerConfig, Dispatch, LimitsConfig, LogFormat,
    LogLevel, LoggingConfig, MetricsConfig, Overflow, PerformanceConfig, ProfilingConfig,
    RuntimeConfig, StreamingConfig, TransportConfig, WorkerPoolConfig,
};
pub use size::{ByteSize, ParseSizeError};
pub use validate::{MAX_POOL_BUFFER_SIZE, MAX_POOL_WORKERS};
