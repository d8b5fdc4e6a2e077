//! Pooled byte buffers for kwik's packet path: after warm-up, receiving a packet allocates
//! nothing.
//!
//! `kwik-buffer` is a leaf crate: it depends on no other kwik crate and on no async runtime.
//! `kwik-transport` reads every packet into a [`PooledBuf`] from a [`BufferPool`], freezes it
//! into [`bytes::Bytes`] and hands it, without a copy, to a worker and then the application;
//! the storage is reusable by the pool once the last `Bytes` clone is dropped. The facade reads
//! [`Stats`] snapshots to feed the metrics; this crate never touches Prometheus.
//!
//! Beside [`BufferPool`]: [`SizedBufferPool`] picks the smallest of a few size classes that
//! fits a requested capacity, and [`ObjectPool`] recycles arbitrary objects through a reset
//! hook. `docs/architecture.md` ("Buffers and buffer ownership") explains the design.
//!
//! Buffers are never zeroed on reuse. A reused buffer is empty (`len() == 0`) and `BytesMut`
//! exposes only what was written since, so stale bytes are never observable.
//!
//! ```
//! use bytes::BufMut;
//! use kwik_buffer::BufferPool;
//!
//! let pool = BufferPool::builder().buffer_size(64 * 1024).max_pooled(256).build()?;
//!
//! let mut buf = pool.get();
//! buf.put_slice(b"one packet");
//! let packet = buf.freeze();
//! let for_the_app = packet.clone();
//! std::thread::spawn(move || assert_eq!(&for_the_app[..], b"one packet")).join().unwrap();
//! drop(packet);
//!
//! // The storage is back: this get allocates nothing.
//! let again = pool.get();
//! assert_eq!(pool.stats().hits, 1);
//! # drop(again);
//! # Ok::<(), kwik_buffer::BuildError>(())
//! ```
#![warn(missing_docs)]

mod error;
mod local;
mod object;
mod pool;
mod sized;
mod stats;
mod tally;

pub use crate::error::{BuildError, GetError, SizedBuildError};
pub use crate::object::{ObjectPool, ObjectPoolBuilder, ObjectStats, Pooled};
pub use crate::pool::{BufferPool, Builder, MAX_BUFFER_SIZE, PooledBuf};
pub use crate::sized::{SizedBufferPool, SizedBuilder};
pub use crate::stats::Stats;
