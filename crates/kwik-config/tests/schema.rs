//! Defaults of every key, and the files that must load: the shipped configs and the seed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kwik_config::{ByteSize, Dispatch, LogFormat, LogLevel, Overflow, PerformanceConfig};

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[test]
fn every_key_has_its_documented_default() {
    let c = PerformanceConfig::default();

    assert_eq!(c.runtime.worker_threads, 0);

    assert_eq!(c.worker_pool.size, 0);
    assert_eq!(c.worker_pool.buffer_size, 10);
    assert_eq!(c.worker_pool.max_queue_size, 0);
    assert_eq!(c.worker_pool.worker_timeout, Duration::from_secs(30));
    assert_eq!(c.worker_pool.overflow, Overflow::Block);
    assert_eq!(c.worker_pool.shutdown_timeout, Duration::from_secs(5));

    assert_eq!(c.buffer_pool.buffer_size, ByteSize::kib(64));
    assert_eq!(c.buffer_pool.max_pooled, 1024);
    assert_eq!(c.buffer_pool.thread_cache, 32);

    assert!(c.cache.enabled);
    assert_eq!(c.cache.capacity, 1000);
    assert_eq!(c.cache.max_bytes, ByteSize::ZERO);
    assert_eq!(c.cache.ttl, Duration::from_secs(24 * 3600));
    assert!(c.cache.compression);
    assert_eq!(c.cache.compression_threshold, ByteSize::kib(1));
    assert_eq!(c.cache.cleanup_interval, Duration::from_secs(3600));
    assert_eq!(c.cache.shards, 0);

    assert!(c.streaming.enabled);
    assert_eq!(c.streaming.chunk_size, 1000);
    assert_eq!(c.streaming.buffer_size, 8192);
    assert_eq!(c.streaming.parallel_stages, 3);
    assert_eq!(c.streaming.max_retries, 3);
    assert_eq!(c.streaming.retry_backoff, Duration::from_millis(100));

    assert_eq!(c.transport.listen, addr("127.0.0.1:4433"));
    assert_eq!(c.transport.alpn, "kwik");
    assert_eq!(c.transport.max_packet_size, ByteSize::kib(64));
    assert_eq!(c.transport.read_buffer, ByteSize::kib(64));
    assert_eq!(c.transport.stream_window, ByteSize::mib(1));
    assert_eq!(c.transport.socket_buffer, ByteSize::mib(4));
    assert_eq!(c.transport.max_streams, 1000);
    assert_eq!(c.transport.max_paths_per_session, 16);
    assert_eq!(c.transport.keep_alive, Duration::from_secs(10));
    assert_eq!(c.transport.idle_timeout, Duration::from_secs(30));
    assert_eq!(c.transport.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.transport.dispatch, Dispatch::Pool);

    assert_eq!(c.limits.max_sessions, 10_000);
    assert_eq!(c.limits.session_timeout, Duration::from_secs(4 * 3600));
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(15 * 60));
    assert_eq!(c.limits.rate_limit, 100.0);
    assert_eq!(c.limits.rate_limit_burst, 200);
    assert_eq!(c.limits.memory_limit, ByteSize::ZERO);

    assert_eq!(c.circuit_breaker.max_requests, 100);
    assert_eq!(c.circuit_breaker.timeout, Duration::from_secs(30));
    assert_eq!(c.circuit_breaker.failure_threshold, 5);

    assert!(c.metrics.enabled);
    assert_eq!(c.metrics.listen, addr("127.0.0.1:2112"));

    assert!(!c.profiling.enabled);
    assert_eq!(c.profiling.listen, addr("127.0.0.1:6060"));
    assert_eq!(c.profiling.pprof_port, None);
    assert_eq!(c.profiling.sample_rate, 100);

    assert_eq!(c.logging.level, LogLevel::Info);
    assert_eq!(c.logging.format, LogFormat::Text);

    c.validate().expect("the defaults are valid");
}

#[test]
fn an_empty_file_and_empty_sections_give_the_defaults() {
    assert_eq!(
        PerformanceConfig::from_toml_str("").expect("empty"),
        PerformanceConfig::default()
    );
    let sections = "[runtime]\n[worker_pool]\n[buffer_pool]\n[cache]\n[streaming]\n[transport]\n\
                    [limits]\n[circuit_breaker]\n[metrics]\n[profiling]\n[logging]\n";
    assert_eq!(
        PerformanceConfig::from_toml_str(sections).expect("empty sections"),
        PerformanceConfig::default()
    );
}

#[test]
fn automatic_values_resolve_from_the_core_count() {
    let c = PerformanceConfig::default();
    assert_eq!(c.runtime.effective_worker_threads(2), 2);
    assert_eq!(c.worker_pool.effective_size(2), 4);
    assert_eq!(c.worker_pool.effective_size(32), 32);
    assert_eq!(c.worker_pool.effective_max_queue_size(8), 80);
    assert_eq!(c.profiling.effective_listen(), addr("127.0.0.1:6060"));
}

#[test]
fn the_shipped_performance_toml_states_exactly_the_defaults() {
    let loaded = PerformanceConfig::load(repo_file("configs/performance.toml")).expect("loads");
    assert_eq!(loaded, PerformanceConfig::default());
}

#[test]
fn the_shipped_profiles_load_and_differ_from_the_defaults() {
    let defaults = PerformanceConfig::default();

    let low = PerformanceConfig::load(repo_file("configs/low-latency.toml")).expect("loads");
    assert_ne!(low, defaults);
    assert_eq!(low.transport.dispatch, Dispatch::Inline);
    assert!(low.worker_pool.buffer_size < defaults.worker_pool.buffer_size);
    assert!(low.transport.max_packet_size < defaults.transport.max_packet_size);

    let high = PerformanceConfig::load(repo_file("configs/high-throughput.toml")).expect("loads");
    assert_ne!(high, defaults);
    assert!(high.worker_pool.buffer_size > defaults.worker_pool.buffer_size);
    assert!(high.transport.stream_window > defaults.transport.stream_window);
    assert!(high.cache.capacity > defaults.cache.capacity);
}

#[test]
fn every_file_in_configs_loads() {
    let dir = repo_file("configs");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            PerformanceConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            loaded += 1;
        }
    }
    assert!(loaded >= 3, "found {loaded} configs in {}", dir.display());
}

/// The `performance.toml` example of seed 002, copied verbatim (French comments included).
#[test]
fn the_seed_002_example_loads_unchanged() {
    let c = PerformanceConfig::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seed_002.toml"
    ))
    .expect("the seed example loads");

    assert!(c.cache.enabled);
    assert_eq!(c.cache.capacity, 1000);
    assert_eq!(c.cache.ttl, Duration::from_secs(24 * 3600));
    assert!(c.cache.compression);
    assert_eq!(c.cache.cleanup_interval, Duration::from_secs(3600));

    assert_eq!(c.worker_pool.size, 10);
    assert_eq!(c.worker_pool.buffer_size, 20);
    assert_eq!(c.worker_pool.max_queue_size, 1000);
    assert_eq!(c.worker_pool.worker_timeout, Duration::from_secs(30));

    assert!(c.streaming.enabled);
    assert_eq!(c.streaming.chunk_size, 1000);
    assert_eq!(c.streaming.buffer_size, 8192);
    assert_eq!(c.streaming.parallel_stages, 3);

    assert!(!c.profiling.enabled);
    assert_eq!(c.profiling.pprof_port, Some(6060));
    assert_eq!(c.profiling.sample_rate, 100);
    assert_eq!(c.profiling.effective_listen(), addr("127.0.0.1:6060"));

    // Keys the seed does not set keep their defaults.
    assert_eq!(c.transport, PerformanceConfig::default().transport);
}

#[test]
fn display_writes_toml_that_reads_back_equal() {
    let mut configs = vec![PerformanceConfig::default()];
    for file in ["configs/low-latency.toml", "configs/high-throughput.toml"] {
        configs.push(PerformanceConfig::load(repo_file(file)).expect("loads"));
    }
    let mut odd = PerformanceConfig::default();
    odd.profiling.pprof_port = Some(7070);
    odd.transport.listen = addr("[::1]:0");
    odd.streaming.retry_backoff = Duration::from_micros(1500);
    odd.cache.max_bytes = ByteSize::b(1500);
    odd.limits.rate_limit = 12.5;
    odd.logging.level = LogLevel::Trace;
    odd.logging.format = LogFormat::Json;
    odd.worker_pool.overflow = Overflow::Reject;
    odd.transport.dispatch = Dispatch::Spawn;
    configs.push(odd);
    for config in configs {
        let text = config.to_string();
        assert_eq!(
            PerformanceConfig::from_toml_str(&text).expect(&text),
            config
        );
    }
}
