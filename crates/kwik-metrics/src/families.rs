//! The catalogue of every family kwik exports: name, type, labels and help text.
//!
//! The names are part of kwik's public contract (dashboards and alerts depend on them), so they
//! live in one table. The registry is built from these entries, docs/metrics.md documents each of
//! them, and the tests check that a scrape exports every one.

/// The Prometheus type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FamilyKind {
    /// A monotonically increasing total; the name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution in cumulative buckets (`_bucket`, `_sum`, `_count` series).
    Histogram,
}

impl FamilyKind {
    /// The type as written on a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Where a family's values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FamilySource {
    /// Updated at event time through a handle resolved when [`Metrics`](crate::Metrics) is built.
    Handle,
    /// Filled at scrape time from the closures given to
    /// [`Metrics::register_stats_collector`](crate::Metrics::register_stats_collector).
    Stats,
    /// Read from `/proc/self` at scrape time (Linux only).
    Process,
    /// Read from the tokio runtime at scrape time.
    Runtime,
    /// Constant for the life of the process.
    Build,
}

/// One exported metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Family {
    /// The family name, e.g. `kwik_sessions_active`.
    pub name: &'static str,
    /// The Prometheus type.
    pub kind: FamilyKind,
    /// Label names, in order (empty for an unlabelled family).
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
    /// Where the values come from.
    pub source: FamilySource,
}

const fn family(
    name: &'static str,
    kind: FamilyKind,
    labels: &'static [&'static str],
    help: &'static str,
    source: FamilySource,
) -> Family {
    Family {
        name,
        kind,
        labels,
        help,
        source,
    }
}

use FamilyKind::{Counter, Gauge, Histogram};
use FamilySource::{Build, Handle, Process, Runtime, Stats};

pub(crate) const BUILD_INFO: Family = family(
    "kwik_build_info",
    Gauge,
    &["version"],
    "Always 1; the version label carries the kwik-metrics crate version.",
    Build,
);

pub(crate) const SESSIONS_ACTIVE: Family = family(
    "kwik_sessions_active",
    Gauge,
    &["role"],
    "KWIK sessions currently open, by role (client or server).",
    Handle,
);
pub(crate) const SESSIONS_TOTAL: Family = family(
    "kwik_sessions_total",
    Counter,
    &["role"],
    "KWIK sessions opened since start, by role (client or server).",
    Handle,
);
pub(crate) const PATHS_ACTIVE: Family = family(
    "kwik_paths_active",
    Gauge,
    &[],
    "Paths (QUIC connections carrying a KWIK path stream) currently open.",
    Handle,
);
pub(crate) const STREAMS_ACTIVE: Family = family(
    "kwik_streams_active",
    Gauge,
    &[],
    "Logical KWIK streams currently open.",
    Handle,
);
pub(crate) const BYTES_SENT: Family = family(
    "kwik_bytes_sent_total",
    Counter,
    &[],
    "Bytes written to path streams, framing included.",
    Handle,
);
pub(crate) const BYTES_RECEIVED: Family = family(
    "kwik_bytes_received_total",
    Counter,
    &[],
    "Bytes read from path streams, framing included.",
    Handle,
);
pub(crate) const PACKETS_SENT: Family = family(
    "kwik_packets_sent_total",
    Counter,
    &[],
    "KWIK packets (length-prefixed groups of frames) written to path streams.",
    Handle,
);
pub(crate) const PACKETS_RECEIVED: Family = family(
    "kwik_packets_received_total",
    Counter,
    &[],
    "KWIK packets (length-prefixed groups of frames) read from path streams.",
    Handle,
);
pub(crate) const FRAMES: Family = family(
    "kwik_frames_total",
    Counter,
    &["direction", "type"],
    "KWIK frames by direction (sent or received) and frame type.",
    Handle,
);
pub(crate) const PROTOCOL_ERRORS: Family = family(
    "kwik_protocol_errors_total",
    Counter,
    &["code"],
    "Paths closed for a protocol error, by error code.",
    Handle,
);
pub(crate) const SESSION_SETUP: Family = family(
    "kwik_session_setup_seconds",
    Histogram,
    &[],
    "Time from dial or accept to a usable session (QUIC and TLS handshake plus HELLO).",
    Handle,
);
pub(crate) const RTT: Family = family(
    "kwik_rtt_seconds",
    Histogram,
    &[],
    "Round-trip time of paths, sampled from QUIC's estimate or PING/PONG.",
    Handle,
);

pub(crate) const POOL_QUEUE_DEPTH: Family = family(
    "kwik_pool_queue_depth",
    Gauge,
    &[],
    "Jobs waiting in the worker pool's queues, sampled at scrape time.",
    Stats,
);
pub(crate) const POOL_RUNNING: Family = family(
    "kwik_pool_running",
    Gauge,
    &[],
    "Jobs running on the worker pool's workers, sampled at scrape time.",
    Stats,
);
pub(crate) const POOL_JOBS: Family = family(
    "kwik_pool_jobs_total",
    Counter,
    &["outcome"],
    "Worker pool jobs by outcome (ok, failed, panicked, timed_out, rejected).",
    Stats,
);
pub(crate) const POOL_QUEUE_WAIT: Family = family(
    "kwik_pool_queue_wait_seconds",
    Histogram,
    &[],
    "Time a job spent queued before a worker started it.",
    Handle,
);
pub(crate) const POOL_RUN: Family = family(
    "kwik_pool_run_seconds",
    Histogram,
    &[],
    "Time a job spent running on a worker.",
    Handle,
);

pub(crate) const BUFFER_HITS: Family = family(
    "kwik_buffer_hits_total",
    Counter,
    &[],
    "Buffer pool acquisitions served by a recycled buffer.",
    Stats,
);
pub(crate) const BUFFER_MISSES: Family = family(
    "kwik_buffer_misses_total",
    Counter,
    &[],
    "Buffer pool acquisitions that had to allocate a new buffer.",
    Stats,
);
pub(crate) const BUFFER_OUTSTANDING: Family = family(
    "kwik_buffer_outstanding",
    Gauge,
    &[],
    "Pooled buffers currently handed out and not yet returned.",
    Stats,
);

pub(crate) const CACHE_HITS: Family = family(
    "kwik_cache_hits_total",
    Counter,
    &[],
    "Cache lookups that found a live entry.",
    Stats,
);
pub(crate) const CACHE_MISSES: Family = family(
    "kwik_cache_misses_total",
    Counter,
    &[],
    "Cache lookups that found no live entry.",
    Stats,
);
pub(crate) const CACHE_EVICTIONS: Family = family(
    "kwik_cache_evictions_total",
    Counter,
    &[],
    "Cache entries evicted to respect the entry or weight capacity.",
    Stats,
);
pub(crate) const CACHE_EXPIRATIONS: Family = family(
    "kwik_cache_expirations_total",
    Counter,
    &[],
    "Cache entries removed because their TTL elapsed.",
    Stats,
);
pub(crate) const CACHE_ENTRIES: Family = family(
    "kwik_cache_entries",
    Gauge,
    &[],
    "Entries currently held by the cache.",
    Stats,
);
pub(crate) const CACHE_WEIGHT: Family = family(
    "kwik_cache_weight_bytes",
    Gauge,
    &[],
    "Total weight (bytes) of the entries currently held by the cache.",
    Stats,
);

pub(crate) const REQUESTS: Family = family(
    "kwik_requests_total",
    Counter,
    &["route"],
    "Application requests handled, by route.",
    Handle,
);
pub(crate) const REQUEST_ERRORS: Family = family(
    "kwik_request_errors_total",
    Counter,
    &["route"],
    "Application requests that failed, by route.",
    Handle,
);
pub(crate) const REQUEST_DURATION: Family = family(
    "kwik_request_duration_seconds",
    Histogram,
    &["route"],
    "Application request duration, by route.",
    Handle,
);

pub(crate) const PROCESS_CPU: Family = family(
    "process_cpu_seconds_total",
    Counter,
    &[],
    "Total user and system CPU time spent in seconds.",
    Process,
);
pub(crate) const PROCESS_RSS: Family = family(
    "process_resident_memory_bytes",
    Gauge,
    &[],
    "Resident memory size in bytes.",
    Process,
);
pub(crate) const PROCESS_VSIZE: Family = family(
    "process_virtual_memory_bytes",
    Gauge,
    &[],
    "Virtual memory size in bytes.",
    Process,
);
pub(crate) const PROCESS_OPEN_FDS: Family = family(
    "process_open_fds",
    Gauge,
    &[],
    "Number of open file descriptors.",
    Process,
);
pub(crate) const PROCESS_MAX_FDS: Family = family(
    "process_max_fds",
    Gauge,
    &[],
    "Maximum number of open file descriptors (soft limit).",
    Process,
);
pub(crate) const PROCESS_THREADS: Family = family(
    "process_threads",
    Gauge,
    &[],
    "Number of OS threads in the process.",
    Process,
);
pub(crate) const PROCESS_START_TIME: Family = family(
    "process_start_time_seconds",
    Gauge,
    &[],
    "Start time of the process since the Unix epoch in seconds.",
    Process,
);

pub(crate) const RUNTIME_WORKERS: Family = family(
    "kwik_runtime_workers",
    Gauge,
    &[],
    "Worker threads of the tokio runtime.",
    Runtime,
);
pub(crate) const RUNTIME_ALIVE_TASKS: Family = family(
    "kwik_runtime_alive_tasks",
    Gauge,
    &[],
    "Tasks alive on the tokio runtime (spawned and not yet completed).",
    Runtime,
);
pub(crate) const RUNTIME_GLOBAL_QUEUE_DEPTH: Family = family(
    "kwik_runtime_global_queue_depth",
    Gauge,
    &[],
    "Tasks waiting in the tokio runtime's global (injection) queue.",
    Runtime,
);

/// Every family kwik exports, in the order of docs/metrics.md.
///
/// Process families are exported on Linux only; runtime families only when a tokio runtime is
/// known at scrape time (see [`MetricsBuilder::runtime`](crate::MetricsBuilder::runtime)).
pub const FAMILIES: &[Family] = &[
    BUILD_INFO,
    SESSIONS_ACTIVE,
    SESSIONS_TOTAL,
    PATHS_ACTIVE,
    STREAMS_ACTIVE,
    BYTES_SENT,
    BYTES_RECEIVED,
    PACKETS_SENT,
    PACKETS_RECEIVED,
    FRAMES,
    PROTOCOL_ERRORS,
    SESSION_SETUP,
    RTT,
    POOL_QUEUE_DEPTH,
    POOL_RUNNING,
    POOL_JOBS,
    POOL_QUEUE_WAIT,
    POOL_RUN,
    BUFFER_HITS,
    BUFFER_MISSES,
    BUFFER_OUTSTANDING,
    CACHE_HITS,
    CACHE_MISSES,
    CACHE_EVICTIONS,
    CACHE_EXPIRATIONS,
    CACHE_ENTRIES,
    CACHE_WEIGHT,
    REQUESTS,
    REQUEST_ERRORS,
    REQUEST_DURATION,
    PROCESS_CPU,
    PROCESS_RSS,
    PROCESS_VSIZE,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_THREADS,
    PROCESS_START_TIME,
    RUNTIME_WORKERS,
    RUNTIME_ALIVE_TASKS,
    RUNTIME_GLOBAL_QUEUE_DEPTH,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_follow_conventions() {
        let mut seen = HashSet::new();
        for f in FAMILIES {
            assert!(seen.insert(f.name), "duplicate family {}", f.name);
            assert_eq!(f.kind == Counter, f.name.ends_with("_total"), "{}", f.name);
            assert!(!f.help.is_empty(), "{}", f.name);
        }
    }
}
