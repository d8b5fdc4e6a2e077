//! Range checks that types alone cannot express.
//!
//! Each rule names the key it rejects and, for rules tying two keys together, the other key, so
//! the caller can point at whichever of the two the user actually wrote.

use std::time::Duration;

use crate::{ByteSize, PerformanceConfig};

/// A rule broken by a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The key path reported.
    pub(crate) key: &'static str,
    /// The other key of a rule that compares two keys.
    pub(crate) other: Option<&'static str>,
    /// The allowed range and the value found.
    pub(crate) message: String,
}

/// The smallest packet: a packet must hold a STREAM frame header and some data.
const MIN_PACKET: ByteSize = ByteSize::kib(1);
/// The largest packet: a path reader holds a whole packet in memory before decoding it.
const MAX_PACKET: ByteSize = ByteSize::mib(16);
/// ALPN protocol ids are length-prefixed by one byte (RFC 7301 §3.1).
const MAX_ALPN_LEN: usize = 255;
/// Profilers sample with a timer signal; past 10 kHz the signal handler is the workload.
const MAX_SAMPLE_RATE: u32 = 10_000;

/// The most workers `worker_pool.size` may ask for: kwik-pool's `MAX_WORKERS`, checked here so
/// that `kwik config check` reports it with the file and line (the facade's tests check that
/// the two agree).
pub const MAX_POOL_WORKERS: usize = 4096;
/// The largest `worker_pool.buffer_size`: kwik-pool's `MAX_QUEUE_CAPACITY` (each shard's queue
/// slots are allocated up front, 64 bytes each), checked here for the same reason.
pub const MAX_POOL_BUFFER_SIZE: usize = 1 << 16;

fn at_most(key: &'static str, value: usize, max: usize) -> Result<(), Violation> {
    if value > max {
        return Err(violation(
            key,
            format!("must be at most {max}, got {value}"),
        ));
    }
    Ok(())
}

fn at_least_one(key: &'static str, value: u64) -> Result<(), Violation> {
    if value == 0 {
        return Err(violation(key, format!("must be at least 1, got {value}")));
    }
    Ok(())
}

fn non_zero_duration(key: &'static str, value: Duration) -> Result<(), Violation> {
    if value.is_zero() {
        return Err(violation(
            key,
            "must be a non-zero duration such as \"30s\", got 0s".to_owned(),
        ));
    }
    Ok(())
}

fn non_zero_size(key: &'static str, value: ByteSize) -> Result<(), Violation> {
    if value.is_zero() {
        return Err(violation(
            key,
            "must be at least 1 byte (a size such as \"64KiB\"), got 0".to_owned(),
        ));
    }
    Ok(())
}

fn violation(key: &'static str, message: String) -> Violation {
    Violation {
        key,
        other: None,
        message,
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Checks every rule, single-key rules in file order first, and returns the first one broken.
pub(crate) fn check(config: &PerformanceConfig) -> Result<(), Violation> {
    let PerformanceConfig {
        runtime: _,
        worker_pool,
        buffer_pool,
        cache,
        streaming,
        transport,
        limits,
        circuit_breaker,
        metrics: _,
        profiling,
        logging: _,
    } = config;

    // worker_pool.size and max_queue_size: 0 is "automatic".
    at_most("worker_pool.size", worker_pool.size, MAX_POOL_WORKERS)?;
    at_least_one("worker_pool.buffer_size", as_u64(worker_pool.buffer_size))?;
    at_most(
        "worker_pool.buffer_size",
        worker_pool.buffer_size,
        MAX_POOL_BUFFER_SIZE,
    )?;
    non_zero_duration("worker_pool.worker_timeout", worker_pool.worker_timeout)?;

    non_zero_size("buffer_pool.buffer_size", buffer_pool.buffer_size)?;

    at_least_one("cache.capacity", as_u64(cache.capacity))?;
    non_zero_duration("cache.ttl", cache.ttl)?;
    non_zero_duration("cache.cleanup_interval", cache.cleanup_interval)?;

    at_least_one("streaming.chunk_size", as_u64(streaming.chunk_size))?;
    at_least_one("streaming.buffer_size", as_u64(streaming.buffer_size))?;
    at_least_one(
        "streaming.parallel_stages",
        as_u64(streaming.parallel_stages),
    )?;

    let alpn_len = transport.alpn.len();
    if alpn_len == 0 || alpn_len > MAX_ALPN_LEN {
        return Err(violation(
            "transport.alpn",
            format!("must be 1 to {MAX_ALPN_LEN} bytes long, got {alpn_len} bytes"),
        ));
    }
    if transport.max_packet_size < MIN_PACKET || transport.max_packet_size > MAX_PACKET {
        return Err(violation(
            "transport.max_packet_size",
            format!(
                "must be between {MIN_PACKET} and {MAX_PACKET}, got {}",
                transport.max_packet_size
            ),
        ));
    }
    non_zero_size("transport.read_buffer", transport.read_buffer)?;
    non_zero_size("transport.stream_window", transport.stream_window)?;
    at_least_one("transport.max_streams", u64::from(transport.max_streams))?;
    at_least_one(
        "transport.max_paths_per_session",
        as_u64(transport.max_paths_per_session),
    )?;
    non_zero_duration("transport.idle_timeout", transport.idle_timeout)?;
    non_zero_duration("transport.handshake_timeout", transport.handshake_timeout)?;

    at_least_one("limits.max_sessions", as_u64(limits.max_sessions))?;
    non_zero_duration("limits.session_timeout", limits.session_timeout)?;
    non_zero_duration("limits.idle_timeout", limits.idle_timeout)?;
    if !(limits.rate_limit.is_finite() && limits.rate_limit >= 0.0) {
        return Err(violation(
            "limits.rate_limit",
            format!(
                "must be a finite number of sessions per second, 0 or more (0 disables rate \
                 limiting), got {}",
                limits.rate_limit
            ),
        ));
    }

    at_least_one(
        "circuit_breaker.max_requests",
        u64::from(circuit_breaker.max_requests),
    )?;
    non_zero_duration("circuit_breaker.timeout", circuit_breaker.timeout)?;
    at_least_one(
        "circuit_breaker.failure_threshold",
        u64::from(circuit_breaker.failure_threshold),
    )?;

    if profiling.sample_rate == 0 || profiling.sample_rate > MAX_SAMPLE_RATE {
        return Err(violation(
            "profiling.sample_rate",
            format!(
                "must be between 1 and {MAX_SAMPLE_RATE} samples per second, got {}",
                profiling.sample_rate
            ),
        ));
    }

    // Rules tying two keys together come last, so that a value out of its own range is
    // reported as such rather than as a conflict.
    if cache.compression_threshold > transport.max_packet_size {
        return Err(Violation {
            key: "cache.compression_threshold",
            other: Some("transport.max_packet_size"),
            message: format!(
                "must not exceed transport.max_packet_size ({}), got {}",
                transport.max_packet_size, cache.compression_threshold
            ),
        });
    }
    if transport.keep_alive >= transport.idle_timeout {
        return Err(Violation {
            key: "transport.keep_alive",
            other: Some("transport.idle_timeout"),
            message: format!(
                "must be shorter than transport.idle_timeout ({}) or 0s to disable keep-alive, \
                 got {}",
                crate::duration::format(transport.idle_timeout),
                crate::duration::format(transport.keep_alive)
            ),
        });
    }
    if limits.rate_limit > 0.0 && limits.rate_limit_burst == 0 {
        return Err(Violation {
            key: "limits.rate_limit_burst",
            other: Some("limits.rate_limit"),
            message: "must be at least 1 while limits.rate_limit is on, got 0".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_break_no_rule() {
        assert_eq!(check(&PerformanceConfig::default()), Ok(()));
    }

    #[test]
    fn each_rule_names_its_key() {
        type Edit = fn(&mut PerformanceConfig);
        let cases: [(Edit, &str); 24] = [
            (|c| c.worker_pool.buffer_size = 0, "worker_pool.buffer_size"),
            (
                |c| c.worker_pool.worker_timeout = Duration::ZERO,
                "worker_pool.worker_timeout",
            ),
            (
                |c| c.buffer_pool.buffer_size = ByteSize::ZERO,
                "buffer_pool.buffer_size",
            ),
            (|c| c.cache.capacity = 0, "cache.capacity"),
            (|c| c.cache.ttl = Duration::ZERO, "cache.ttl"),
            (
                |c| c.cache.compression_threshold = ByteSize::kib(65),
                "cache.compression_threshold",
            ),
            (
                |c| c.cache.cleanup_interval = Duration::ZERO,
                "cache.cleanup_interval",
            ),
            (|c| c.streaming.chunk_size = 0, "streaming.chunk_size"),
            (|c| c.streaming.buffer_size = 0, "streaming.buffer_size"),
            (
                |c| c.streaming.parallel_stages = 0,
                "streaming.parallel_stages",
            ),
            (|c| c.transport.alpn.clear(), "transport.alpn"),
            (|c| c.transport.alpn = "x".repeat(256), "transport.alpn"),
            (
                |c| c.transport.max_packet_size = ByteSize::b(1023),
                "transport.max_packet_size",
            ),
            (
                |c| c.transport.read_buffer = ByteSize::ZERO,
                "transport.read_buffer",
            ),
            (
                |c| c.transport.stream_window = ByteSize::ZERO,
                "transport.stream_window",
            ),
            (|c| c.transport.max_streams = 0, "transport.max_streams"),
            (
                |c| c.transport.keep_alive = Duration::from_secs(30),
                "transport.keep_alive",
            ),
            (|c| c.limits.max_sessions = 0, "limits.max_sessions"),
            (|c| c.limits.rate_limit = -1.0, "limits.rate_limit"),
            (|c| c.limits.rate_limit = f64::NAN, "limits.rate_limit"),
            (|c| c.limits.rate_limit_burst = 0, "limits.rate_limit_burst"),
            (
                |c| c.circuit_breaker.failure_threshold = 0,
                "circuit_breaker.failure_threshold",
            ),
            (|c| c.profiling.sample_rate = 0, "profiling.sample_rate"),
            (
                |c| c.profiling.sample_rate = 10_001,
                "profiling.sample_rate",
            ),
        ];
        for (edit, key) in cases {
            let mut config = PerformanceConfig::default();
            edit(&mut config);
            let err = check(&config).expect_err(key);
            assert_eq!(err.key, key, "{}", err.message);
        }
    }

    #[test]
    fn zero_means_auto_or_off_where_documented() {
        let mut config = PerformanceConfig::default();
        config.worker_pool.size = 0;
        config.worker_pool.max_queue_size = 0;
        config.cache.max_bytes = ByteSize::ZERO;
        config.cache.shards = 0;
        config.transport.keep_alive = Duration::ZERO;
        config.transport.socket_buffer = ByteSize::ZERO;
        config.limits.rate_limit = 0.0;
        config.limits.rate_limit_burst = 0;
        config.limits.memory_limit = ByteSize::ZERO;
        config.buffer_pool.max_pooled = 0;
        config.buffer_pool.thread_cache = 0;
        assert_eq!(check(&config), Ok(()));
    }
}
