//! The `/api/status` snapshot: what the services know themselves (requests per route, the
//! response cache, the chunk buffers) plus what the runtime under them reports.

use serde::Serialize;

use super::observe::RouteCount;
use super::secondary::SecondaryStatus;

/// Supplies the runtime's part of the status (sessions, streams, paths). The
/// binary implements it over the kwik runtime; the services only call it.
pub(crate) trait StatusSource: Send + Sync + 'static {
    /// A fresh snapshot, read when `/api/status` is requested.
    fn runtime_status(&self) -> RuntimeStatus;
}

/// The JSON body of `/api/status`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusSnapshot {
    /// Seconds since the services were built.
    pub(crate) uptime_seconds: f64,
    /// Request and error counts per route.
    pub(crate) requests: Vec<RouteCount>,
    /// The HTTP response cache; absent when caching is disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cache: Option<CacheStatus>,
    /// The pool of chunk buffers used to stream files.
    pub(crate) buffer: BufferStatus,
    /// `FILE` downloads and parts served.
    pub(crate) files: FileStatus,
    /// The runtime's counters; absent when the services run without a runtime (unit tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) runtime: Option<RuntimeStatus>,
}

/// The runtime's part of the status.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RuntimeStatus {
    /// Sessions open now.
    pub(crate) sessions: u64,
    /// Streams open now, over every session.
    pub(crate) streams: u64,
    /// Paths open now, over every session: each session's own connection, plus the paths to
    /// secondaries its client added.
    pub(crate) paths: u64,
    /// Sessions in which this server is a secondary: the client dialed it because a primary
    /// asked (its path id is not 0).
    pub(crate) secondary_sessions: u64,
    /// The `--secondary` servers; absent without any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) secondaries: Vec<SecondaryStatus>,
}

/// The file service's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct FileStatus {
    /// `FILE` downloads answered (`OK` line sent, range written).
    pub(crate) downloads: u64,
    /// File bytes this server sent for them (secondaries sent the rest).
    pub(crate) download_bytes: u64,
    /// Parts served for a primary's download (`FILE` with a stream offset).
    pub(crate) parts: u64,
    /// File bytes of those parts.
    pub(crate) part_bytes: u64,
}

/// The response cache's counters ([`kwik_cache::Stats`]).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CacheStatus {
    /// Entries stored now.
    pub(crate) entries: u64,
    /// Bytes stored now (after compression).
    pub(crate) weight_bytes: u64,
    /// Lookups that found a live entry.
    pub(crate) hits: u64,
    /// Lookups that found nothing or an expired entry.
    pub(crate) misses: u64,
    /// `hits / (hits + misses)`, 0 before the first lookup.
    pub(crate) hit_ratio: f64,
    /// Entries evicted by capacity or weight.
    pub(crate) evictions: u64,
    /// Entries reclaimed after their TTL.
    pub(crate) expirations: u64,
}

impl From<kwik_cache::Stats> for CacheStatus {
    fn from(stats: kwik_cache::Stats) -> Self {
        Self {
            entries: stats.entries,
            weight_bytes: stats.weight,
            hits: stats.hits,
            misses: stats.misses,
            hit_ratio: stats.hit_ratio(),
            evictions: stats.evictions(),
            expirations: stats.expirations,
        }
    }
}

/// The chunk buffer pool's counters ([`kwik_buffer::Stats`]).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BufferStatus {
    /// Buffers handed out.
    pub(crate) gets: u64,
    /// Hand-outs served from the pool, without allocating.
    pub(crate) hits: u64,
    /// Hand-outs that allocated.
    pub(crate) misses: u64,
    /// Buffers held by the pool now.
    pub(crate) pooled: u64,
}

impl From<kwik_buffer::Stats> for BufferStatus {
    fn from(stats: kwik_buffer::Stats) -> Self {
        Self {
            gets: stats.gets,
            hits: stats.hits,
            misses: stats.misses,
            pooled: stats.pooled,
        }
    }
}
