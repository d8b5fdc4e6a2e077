//! The sections and keys of `performance.toml`, with their defaults.
//!
//! Every struct is plain data: public fields, `Default` giving the documented defaults, serde
//! with `deny_unknown_fields` so a typo is an error rather than a silently ignored key. The
//! structs are deliberately not `#[non_exhaustive]`, so code can build them with struct update
//! syntax (`WorkerPoolConfig { size: 8, ..Default::default() }`); see docs/configuration.md.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ByteSize;

/// The whole of `performance.toml`: one field per section.
///
/// Every section and key has a default, so an empty file is a valid configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerformanceConfig {
    /// `[runtime]`: the tokio runtime.
    pub runtime: RuntimeConfig,
    /// `[worker_pool]`: the sharded worker pool that runs packet jobs.
    pub worker_pool: WorkerPoolConfig,
    /// `[buffer_pool]`: pooled byte buffers.
    pub buffer_pool: BufferPoolConfig,
    /// `[cache]`: the LRU cache with TTL.
    pub cache: CacheConfig,
    /// `[streaming]`: the chunked streaming pipeline.
    pub streaming: StreamingConfig,
    /// `[transport]`: QUIC endpoints, paths and streams.
    pub transport: TransportConfig,
    /// `[limits]`: admission control for sessions.
    pub limits: LimitsConfig,
    /// `[circuit_breaker]`: the breaker guarding outgoing calls.
    pub circuit_breaker: CircuitBreakerConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[profiling]`: the pprof endpoint.
    pub profiling: ProfilingConfig,
    /// `[logging]`: log level and format.
    pub logging: LoggingConfig,
}

/// `[runtime]`: the tokio runtime the facade builds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Runtime worker threads; `0` means one per available core. Default `0`.
    pub worker_threads: usize,
}

impl RuntimeConfig {
    /// The number of threads to start on a machine with `cores` available cores.
    ///
    /// ```
    /// use kwik_config::RuntimeConfig;
    ///
    /// assert_eq!(RuntimeConfig::default().effective_worker_threads(8), 8);
    /// assert_eq!(RuntimeConfig { worker_threads: 2 }.effective_worker_threads(8), 2);
    /// ```
    pub fn effective_worker_threads(&self, cores: usize) -> usize {
        if self.worker_threads == 0 {
            cores.max(1)
        } else {
            self.worker_threads
        }
    }
}

/// `[worker_pool]`: the sharded, per-key ordered worker pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerPoolConfig {
    /// Workers (one shard each); `0` means `max(cores, 4)`. Default `0`; at most
    /// [`MAX_POOL_WORKERS`](crate::MAX_POOL_WORKERS).
    pub size: usize,
    /// Queue capacity per worker, in jobs. Default `10`; from 1 to
    /// [`MAX_POOL_BUFFER_SIZE`](crate::MAX_POOL_BUFFER_SIZE).
    pub buffer_size: usize,
    /// Total queued jobs across all workers; `0` means `size × buffer_size`. Default `0`.
    pub max_queue_size: usize,
    /// Time a job may run before it is cancelled and counted as timed out. Default `30s`.
    #[serde(with = "crate::duration")]
    pub worker_timeout: Duration,
    /// What `submit` does when a shard is full. Default `block`.
    pub overflow: Overflow,
    /// How long `shutdown` waits for queued jobs to drain. Default `5s`.
    #[serde(with = "crate::duration")]
    pub shutdown_timeout: Duration,
}

impl WorkerPoolConfig {
    /// The number of workers on a machine with `cores` available cores.
    ///
    /// ```
    /// use kwik_config::WorkerPoolConfig;
    ///
    /// let auto = WorkerPoolConfig::default();
    /// assert_eq!(auto.effective_size(2), 4);
    /// assert_eq!(auto.effective_size(16), 16);
    /// ```
    pub fn effective_size(&self, cores: usize) -> usize {
        if self.size == 0 {
            cores.max(4)
        } else {
            self.size
        }
    }

    /// The total queue bound on a machine with `cores` available cores.
    ///
    /// ```
    /// use kwik_config::WorkerPoolConfig;
    ///
    /// assert_eq!(WorkerPoolConfig::default().effective_max_queue_size(2), 4 * 10);
    /// ```
    pub fn effective_max_queue_size(&self, cores: usize) -> usize {
        if self.max_queue_size == 0 {
            self.effective_size(cores).saturating_mul(self.buffer_size)
        } else {
            self.max_queue_size
        }
    }
}

impl Default for WorkerPoolConfig {
    fn default() -> Self {
        Self {
            size: 0,
            buffer_size: 10,
            max_queue_size: 0,
            worker_timeout: Duration::from_secs(30),
            overflow: Overflow::Block,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// What the worker pool does with a job submitted to a full shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// Wait for room: back-pressure reaches the sender through QUIC flow control.
    #[default]
    Block,
    /// Hand the job back to the caller at once (counted as rejected).
    Reject,
}

/// `[buffer_pool]`: pooled receive buffers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferPoolConfig {
    /// Size of each pooled buffer. Default `64KiB`; must be at least 1 byte.
    pub buffer_size: ByteSize,
    /// Buffers kept in the shared free list; more are dropped on return. Default `1024`.
    pub max_pooled: usize,
    /// Buffers kept in each thread's local cache before spilling to the shared list.
    /// Default `32`; `0` disables the thread caches.
    pub thread_cache: usize,
}

impl Default for BufferPoolConfig {
    fn default() -> Self {
        Self {
            buffer_size: ByteSize::kib(64),
            max_pooled: 1024,
            thread_cache: 32,
        }
    }
}

/// `[cache]`: the sharded LRU cache with TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Whether the cache is built at all. Default `true`.
    pub enabled: bool,
    /// Maximum number of entries. Default `1000`; must be at least 1.
    pub capacity: usize,
    /// Maximum total weight of the entries in bytes; `0` means no byte limit. Default `0`.
    pub max_bytes: ByteSize,
    /// Time an entry lives after insertion. Default `24h`; must be non-zero.
    #[serde(with = "crate::duration")]
    pub ttl: Duration,
    /// Whether values larger than `compression_threshold` are stored lz4-compressed.
    /// Default `true`.
    pub compression: bool,
    /// Values at least this large are compressed. Default `1KiB`; must not exceed
    /// `transport.max_packet_size`.
    pub compression_threshold: ByteSize,
    /// Period of the sweep that removes expired entries. Default `1h`; must be non-zero.
    #[serde(with = "crate::duration")]
    pub cleanup_interval: Duration,
    /// Number of shards; `0` picks one from the core count. Default `0`.
    pub shards: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            capacity: 1000,
            max_bytes: ByteSize::ZERO,
            ttl: Duration::from_secs(24 * 3600),
            compression: true,
            compression_threshold: ByteSize::kib(1),
            cleanup_interval: Duration::from_secs(3600),
            shards: 0,
        }
    }
}

/// `[streaming]`: the chunked streaming pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// Whether the pipeline is available. Default `true`.
    pub enabled: bool,
    /// Items per chunk. Default `1000`; must be at least 1.
    pub chunk_size: usize,
    /// Capacity, in items, of the bounded channel between two stages. Default `8192`; must be
    /// at least 1.
    pub buffer_size: usize,
    /// Stages that may process chunks at the same time. Default `3`; must be at least 1.
    pub parallel_stages: usize,
    /// Retries of a failed chunk before the pipeline reports it. Default `3`.
    pub max_retries: u32,
    /// Wait before the first retry, doubled at each further retry. Default `100ms`.
    #[serde(with = "crate::duration")]
    pub retry_backoff: Duration,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            chunk_size: 1000,
            buffer_size: 8192,
            parallel_stages: 3,
            max_retries: 3,
            retry_backoff: Duration::from_millis(100),
        }
    }
}

/// `[transport]`: the KWIK endpoints on QUIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// Address `kwik serve` listens on. Default `127.0.0.1:4433`.
    #[serde(with = "crate::addr")]
    pub listen: SocketAddr,
    /// ALPN protocol id offered and required in the TLS handshake. Default `kwik`; 1 to 255
    /// bytes.
    pub alpn: String,
    /// Largest KWIK packet (`u32 length | frames`) a path writes or accepts. Default `64KiB`;
    /// 1KiB to 16MiB.
    pub max_packet_size: ByteSize,
    /// Size of the buffer a path reader fills per read. Default `64KiB`; must be at least 1
    /// byte.
    pub read_buffer: ByteSize,
    /// Receive window of each logical stream (the most unread data it may hold). Default
    /// `1MiB`; must be at least 1 byte.
    pub stream_window: ByteSize,
    /// UDP socket send and receive buffer (`SO_SNDBUF`/`SO_RCVBUF`); `0` keeps the OS default.
    /// Default `4MiB`.
    pub socket_buffer: ByteSize,
    /// Concurrent logical streams per session. Default `1000`; must be at least 1.
    pub max_streams: u32,
    /// Paths a session may hold at once. Default `16`; must be at least 1.
    pub max_paths_per_session: usize,
    /// Interval of QUIC keep-alive pings; `0s` disables them. Default `10s`; must be shorter
    /// than `idle_timeout`.
    #[serde(with = "crate::duration")]
    pub keep_alive: Duration,
    /// A path with no traffic for this long is closed. Default `30s`; must be non-zero.
    #[serde(with = "crate::duration")]
    pub idle_timeout: Duration,
    /// A dial whose QUIC and TLS handshake takes longer fails. Default `10s`; must be non-zero.
    #[serde(with = "crate::duration")]
    pub handshake_timeout: Duration,
    /// Where received packets are processed. Default `pool`.
    pub dispatch: Dispatch,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4433),
            alpn: "kwik".to_owned(),
            max_packet_size: ByteSize::kib(64),
            read_buffer: ByteSize::kib(64),
            stream_window: ByteSize::mib(1),
            socket_buffer: ByteSize::mib(4),
            max_streams: 1000,
            max_paths_per_session: 16,
            keep_alive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            dispatch: Dispatch::Pool,
        }
    }
}

/// Where a path's received packets are decoded and applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dispatch {
    /// On the shared worker pool, sharded by path so each path keeps its order.
    #[default]
    Pool,
    /// On the path's reader task itself.
    Inline,
    /// One spawned task per packet (unordered across packets; a baseline for comparison).
    Spawn,
}

/// `[limits]`: admission control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sessions open at once; further handshakes are refused. Default `10000`; must be at
    /// least 1.
    pub max_sessions: usize,
    /// Longest life of a session, however busy. Default `4h`; must be non-zero.
    #[serde(with = "crate::duration")]
    pub session_timeout: Duration,
    /// A session with no open stream for this long is closed. Default `15m`; must be non-zero.
    #[serde(with = "crate::duration")]
    pub idle_timeout: Duration,
    /// New sessions per second accepted from one IP address (token bucket refill rate);
    /// `0` disables rate limiting. Default `100.0`; finite and not negative.
    pub rate_limit: f64,
    /// Token bucket size: new sessions one IP may open in a burst. Default `200`; must be at
    /// least 1 when `rate_limit` is on.
    pub rate_limit_burst: u32,
    /// Process memory above which new sessions are refused; `0` means no limit. Default `0`.
    pub memory_limit: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            session_timeout: Duration::from_secs(4 * 3600),
            idle_timeout: Duration::from_secs(15 * 60),
            rate_limit: 100.0,
            rate_limit_burst: 200,
            memory_limit: ByteSize::ZERO,
        }
    }
}

/// `[circuit_breaker]`: the breaker guarding calls to a failing peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Trial requests let through while half-open. Default `100`; must be at least 1.
    pub max_requests: u32,
    /// Time the breaker stays open before going half-open. Default `30s`; must be non-zero.
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
    /// Consecutive failures that open the breaker. Default `5`; must be at least 1.
    pub failure_threshold: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            max_requests: 100,
            timeout: Duration::from_secs(30),
            failure_threshold: 5,
        }
    }
}

/// `[metrics]`: the Prometheus `/metrics` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Whether metrics are collected and served. Default `true`.
    pub enabled: bool,
    /// Address of the HTTP endpoint. Default `127.0.0.1:2112`.
    #[serde(with = "crate::addr")]
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2112),
        }
    }
}

/// `[profiling]`: the pprof endpoint (`/debug/pprof/profile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfilingConfig {
    /// Whether the profiling endpoint is served. Default `false`.
    pub enabled: bool,
    /// Address of the HTTP endpoint. Default `127.0.0.1:6060`.
    #[serde(with = "crate::addr")]
    pub listen: SocketAddr,
    /// Port that replaces the port of `listen` when set (the seed's `pprof_port`). Default
    /// unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pprof_port: Option<u16>,
    /// CPU samples per second while profiling. Default `100`; 1 to 10000.
    pub sample_rate: u32,
}

impl ProfilingConfig {
    /// `listen` with its port replaced by `pprof_port` when that is set.
    ///
    /// ```
    /// use kwik_config::ProfilingConfig;
    ///
    /// let seed = ProfilingConfig { pprof_port: Some(7070), ..Default::default() };
    /// assert_eq!(seed.effective_listen().to_string(), "127.0.0.1:7070");
    /// ```
    pub fn effective_listen(&self) -> SocketAddr {
        let mut addr = self.listen;
        if let Some(port) = self.pprof_port {
            addr.set_port(port);
        }
        addr
    }
}

impl Default for ProfilingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6060),
            pprof_port: None,
            sample_rate: 100,
        }
    }
}

/// `[logging]`: what the binaries log and how.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Most verbose level written. Default `info`.
    pub level: LogLevel,
    /// Line format. Default `text`.
    pub format: LogFormat,
}

/// A log verbosity level, from `off` to `trace`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Nothing is logged.
    Off,
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Lifecycle events: endpoints up, sessions opened and closed.
    #[default]
    Info,
    /// Per-path and per-stream events.
    Debug,
    /// Per-packet events.
    Trace,
}

impl LogLevel {
    /// The level's name as written in `performance.toml` (also a valid tracing directive).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The sections and their keys, in file order. The source of truth for environment variable
/// resolution and unknown-key messages; a test checks it against the structs above.
pub(crate) const SCHEMA: &[(&str, &[&str])] = &[
    ("runtime", &["worker_threads"]),
    (
        "worker_pool",
        &[
            "size",
            "buffer_size",
            "max_queue_size",
            "worker_timeout",
            "overflow",
            "shutdown_timeout",
        ],
    ),
    (
        "buffer_pool",
        &["buffer_size", "max_pooled", "thread_cache"],
    ),
    (
        "cache",
        &[
            "enabled",
            "capacity",
            "max_bytes",
            "ttl",
            "compression",
            "compression_threshold",
            "cleanup_interval",
            "shards",
        ],
    ),
    (
        "streaming",
        &[
            "enabled",
            "chunk_size",
            "buffer_size",
            "parallel_stages",
            "max_retries",
            "retry_backoff",
        ],
    ),
    (
        "transport",
        &[
            "listen",
            "alpn",
            "max_packet_size",
            "read_buffer",
            "stream_window",
            "socket_buffer",
            "max_streams",
            "max_paths_per_session",
            "keep_alive",
            "idle_timeout",
            "handshake_timeout",
            "dispatch",
        ],
    ),
    (
        "limits",
        &[
            "max_sessions",
            "session_timeout",
            "idle_timeout",
            "rate_limit",
            "rate_limit_burst",
            "memory_limit",
        ],
    ),
    (
        "circuit_breaker",
        &["max_requests", "timeout", "failure_threshold"],
    ),
    ("metrics", &["enabled", "listen"]),
    (
        "profiling",
        &["enabled", "listen", "pprof_port", "sample_rate"],
    ),
    ("logging", &["level", "format"]),
];

/// The keys of `section`, if it is one.
pub(crate) fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    SCHEMA
        .iter()
        .find(|(name, _)| *name == section)
        .map(|&(_, keys)| keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_lists_exactly_the_serialized_keys() {
        // pprof_port is the one optional key: set it so that it serializes too.
        let mut config = PerformanceConfig::default();
        config.profiling.pprof_port = Some(6060);
        let table = toml::Table::try_from(&config).expect("serializable");
        let sections: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = SCHEMA.iter().map(|&(s, _)| s).collect();
        expected.sort_unstable();
        assert_eq!(sections, expected);
        for (section, keys) in SCHEMA {
            let serialized = table[*section].as_table().expect("a section is a table");
            let mut got: Vec<&str> = serialized.keys().map(String::as_str).collect();
            let mut want = keys.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "[{section}]");
        }
    }
}
