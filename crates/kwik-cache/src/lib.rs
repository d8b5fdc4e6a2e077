//! A sharded, exact-LRU cache with TTLs, weights, lz4 compression and single-flight loading.
//!
//! `kwik-cache` is a leaf crate of kwik: it depends on no other kwik crate and on no async
//! runtime (its async loaders work under any executor). The `kwik` facade builds a cache from the
//! `[cache]` section of `performance.toml`, calls [`Cache::run_pending_tasks`] on the cleanup
//! timer and exports [`Stats`] as Prometheus metrics.
//!
//! - [`Cache`]: keys spread over independently locked shards; within a shard, eviction is exact
//!   LRU by entry count and by weight; TTL global ([`CacheBuilder::ttl`]) or per entry
//!   ([`Cache::insert_with_ttl`]); expired entries are never returned and are reclaimed on read,
//!   on write and by [`Cache::run_pending_tasks`]; single-flight [`Cache::get_or_load`] and
//!   friends, sync and async.
//! - [`BytesCache`]: a cache of [`bytes::Bytes`] that stores large values lz4-compressed.
//! - [`Clock`]: injectable time; [`MockClock`] lets TTL tests run without sleeping.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use kwik_cache::{Cache, MockClock};
//!
//! let clock = MockClock::new();
//! let cache = Cache::builder()
//!     .capacity(100_000)
//!     .ttl(Duration::from_secs(60))
//!     .clock(clock.clone())
//!     .build()?;
//!
//! cache.insert("user:1", "Ada".to_string())?;
//! assert_eq!(cache.get("user:1").as_deref(), Some("Ada"));
//!
//! // One load per key, however many callers miss at once.
//! let name = cache.get_or_load("user:2", || "Grace".to_string());
//! assert_eq!(name, "Grace");
//!
//! clock.advance(Duration::from_secs(60));
//! assert_eq!(cache.get("user:1"), None);
//! assert_eq!(cache.stats().hits, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod builder;
mod cache;
mod clock;
mod compressed;
mod error;
mod flight;
mod shard;
mod stats;

pub use crate::builder::{CacheBuilder, MAX_SHARDS};
pub use crate::cache::{Cache, SWEEP_BUDGET_PER_SHARD};
pub use crate::clock::{Clock, MockClock, SystemClock};
pub use crate::compressed::{BytesCache, BytesCacheBuilder, DEFAULT_COMPRESSION_THRESHOLD};
pub use crate::error::{BuildError, InsertError};
pub use crate::shard::EvictionCause;
pub use crate::stats::Stats;
