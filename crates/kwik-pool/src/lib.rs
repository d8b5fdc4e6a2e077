//! A worker pool that keeps per-key order and bounds memory under overload, plus a streaming
//! pipeline and a batcher.
//!
//! `kwik-pool` is a leaf crate of kwik (it depends on tokio only, never on another kwik crate or
//! on Prometheus). The transport hands every received packet to an executor under its path id;
//! the facade plugs a [`WorkerPool`] in there, so packets of one path are decoded one after
//! another, in order, while paths spread over a fixed number of workers, and a full queue pushes
//! back on the reader instead of growing. [`Stats`] snapshots and the [`PoolObserver`] hook let
//! the facade export metrics.
//!
//! - [`WorkerPool`]: one bounded queue and one worker task per shard; `submit(key, job)` runs the
//!   job on the key's shard, so equal keys run in submission order.
//! - [`Pipeline`]: items in chunks through named stages, each with its own parallelism, bounded
//!   channels between stages, output in input order, per-chunk retries.
//! - [`Batcher`]: collects items and flushes them to an async sink by size or by delay.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use kwik_pool::WorkerPool;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let pool = WorkerPool::builder().workers(4).queue_capacity(64).build().unwrap();
//! let mut handles = Vec::new();
//! for seq in 0..10_u32 {
//!     // Everything under key 1 runs in this order, one job at a time.
//!     handles.push(pool.submit(1_u64, async move { seq * 2 }).await.unwrap());
//! }
//! for (seq, handle) in handles.into_iter().enumerate() {
//!     assert_eq!(handle.await.unwrap(), seq as u32 * 2);
//! }
//! assert!(pool.shutdown(Duration::from_secs(1)).await.is_complete());
//! # }
//! ```
//!
//! A pipeline of two stages, the second running four chunks at once, output in input order:
//!
//! ```
//! use std::convert::Infallible;
//! use futures_util::{StreamExt, stream};
//! use kwik_pool::Pipeline;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .chunk_size(256)
//!     .stage("parse", 1, |lines: Vec<&str>| async move {
//!         lines.into_iter().map(str::parse::<u64>).collect::<Result<Vec<_>, _>>()
//!     })
//!     .stage("square", 4, |n: Vec<u64>| async move {
//!         Ok::<_, Infallible>(n.into_iter().map(|n| n * n).collect())
//!     })
//!     .build()
//!     .unwrap();
//! let squares: Vec<u64> =
//!     pipeline.run(stream::iter(["1", "2", "3"])).map(Result::unwrap).collect().await;
//! assert_eq!(squares, [1, 4, 9]);
//! # }
//! ```
//!
//! A batcher writing at most 100 items at a time, or whatever arrived within 5 ms:
//!
//! ```
//! use std::time::Duration;
//! use kwik_pool::Batcher;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let batcher = Batcher::builder()
//!     .max_size(100)
//!     .max_delay(Duration::from_millis(5))
//!     .build(|rows: Vec<String>| async move { assert!(rows.len() <= 100) })
//!     .unwrap();
//! for i in 0..250 {
//!     batcher.push(format!("row {i}")).await.unwrap();
//! }
//! let stats = batcher.close().await.unwrap();
//! assert_eq!(stats.items, 250);
//! # }
//! ```
#![warn(missing_docs)]

mod batcher;
mod builder;
mod error;
mod pipeline;
mod pool;
mod queue;
mod stats;
mod task;
#[cfg(test)]
mod test_waker;
mod worker;

pub use batcher::{Batcher, BatcherBuilder, BatcherStats};
pub use builder::{MAX_QUEUE_CAPACITY, MAX_QUEUE_SLOTS, MAX_WORKERS, Overflow, PoolBuilder};
pub use error::{
    BatcherError, BuildError, JobError, PipelineError, RunInlineError, SubmitError, TrySubmitError,
};
pub use pipeline::{Pipeline, PipelineBuilder, PipelineOutput};
pub use pool::{ShutdownReport, WorkerPool};
pub use stats::{Outcome, PoolObserver, Stats};
pub use task::{Job, JobHandle};
