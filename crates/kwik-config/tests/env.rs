//! Environment overrides `KWIK_<SECTION>_<KEY>`, valid and invalid. The environment is passed
//! in, never read from (or written to) the process, so these tests run in parallel safely.

use std::ffi::OsString;
use std::time::Duration;

use kwik_config::{ByteSize, ConfigError, Dispatch, LogFormat, Origin, PerformanceConfig};

fn apply(vars: &[(&str, &str)]) -> Result<PerformanceConfig, ConfigError> {
    PerformanceConfig::default().with_env_overrides_from(vars.iter().copied())
}

#[test]
fn overrides_reach_every_kind_of_value() {
    let c = apply(&[
        ("KWIK_RUNTIME_WORKER_THREADS", "2"),
        ("KWIK_WORKER_POOL_SIZE", "8"),
        ("KWIK_WORKER_POOL_MAX_QUEUE_SIZE", "500"),
        ("KWIK_WORKER_POOL_OVERFLOW", "reject"),
        ("KWIK_BUFFER_POOL_BUFFER_SIZE", "16KiB"),
        ("KWIK_CACHE_ENABLED", "false"),
        ("KWIK_CACHE_TTL", "90s"),
        ("KWIK_CACHE_MAX_BYTES", "1048576"),
        ("KWIK_TRANSPORT_LISTEN", "0.0.0.0:5000"),
        ("KWIK_TRANSPORT_ALPN", "true"),
        ("KWIK_TRANSPORT_DISPATCH", "spawn"),
        ("KWIK_LIMITS_RATE_LIMIT", "2.5"),
        ("KWIK_LIMITS_RATE_LIMIT_BURST", "7"),
        ("KWIK_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "9"),
        ("KWIK_PROFILING_PPROF_PORT", "7070"),
        ("KWIK_LOGGING_FORMAT", "json"),
    ])
    .expect("valid overrides");
    assert_eq!(c.runtime.worker_threads, 2);
    assert_eq!(c.worker_pool.size, 8);
    assert_eq!(c.worker_pool.max_queue_size, 500);
    assert_eq!(c.worker_pool.overflow, kwik_config::Overflow::Reject);
    assert_eq!(c.buffer_pool.buffer_size, ByteSize::kib(16));
    assert!(!c.cache.enabled);
    assert_eq!(c.cache.ttl, Duration::from_secs(90));
    assert_eq!(c.cache.max_bytes, ByteSize::mib(1));
    assert_eq!(c.transport.listen.to_string(), "0.0.0.0:5000");
    // A string key keeps text that happens to look like a boolean.
    assert_eq!(c.transport.alpn, "true");
    assert_eq!(c.transport.dispatch, Dispatch::Spawn);
    assert_eq!(c.limits.rate_limit, 2.5);
    assert_eq!(c.limits.rate_limit_burst, 7);
    assert_eq!(c.circuit_breaker.failure_threshold, 9);
    assert_eq!(c.profiling.pprof_port, Some(7070));
    assert_eq!(c.logging.format, LogFormat::Json);
    // Untouched keys keep their values.
    assert_eq!(c.cache.capacity, 1000);
}

#[test]
fn overrides_apply_on_top_of_a_file() {
    let file = PerformanceConfig::from_toml_str("[worker_pool]\nsize = 4\nbuffer_size = 20\n")
        .expect("valid");
    let c = file
        .with_env_overrides_from([("KWIK_WORKER_POOL_SIZE", "6")])
        .expect("valid override");
    assert_eq!(c.worker_pool.size, 6);
    assert_eq!(c.worker_pool.buffer_size, 20);
}

#[test]
fn variables_of_other_tools_are_ignored() {
    let c = apply(&[
        ("KWIK_CONFIG", "/etc/kwik.toml"),
        ("KWIK_REQUIRE_PROMTOOL", "1"),
        ("PATH", "/usr/bin"),
        ("kwik_worker_pool_size", "3"),
    ])
    .expect("nothing to apply");
    assert_eq!(c, PerformanceConfig::default());
}

#[test]
fn no_variables_change_nothing() {
    let none: [(OsString, OsString); 0] = [];
    let c = PerformanceConfig::default()
        .with_env_overrides_from(none)
        .expect("nothing to apply");
    assert_eq!(c, PerformanceConfig::default());
}

fn env_origin(err: &ConfigError) -> Option<&str> {
    match err {
        ConfigError::UnknownKey {
            origin: Origin::Env(v),
            ..
        }
        | ConfigError::InvalidValue {
            origin: Origin::Env(v),
            ..
        }
        | ConfigError::OutOfRange {
            origin: Origin::Env(v),
            ..
        } => Some(v),
        _ => None,
    }
}

#[test]
fn a_value_that_does_not_parse_names_the_variable() {
    let err = apply(&[("KWIK_WORKER_POOL_SIZE", "eight")]).expect_err("not a number");
    assert!(matches!(err, ConfigError::InvalidValue { .. }));
    assert_eq!(env_origin(&err), Some("KWIK_WORKER_POOL_SIZE"));
    assert_eq!(err.key(), Some("worker_pool.size"));
    assert!(
        err.to_string()
            .starts_with("environment variable KWIK_WORKER_POOL_SIZE: `worker_pool.size`: "),
        "{err}"
    );

    let err = apply(&[("KWIK_CACHE_TTL", "24x")]).expect_err("bad duration");
    assert_eq!(env_origin(&err), Some("KWIK_CACHE_TTL"));
    assert!(err.to_string().contains("invalid duration `24x`"), "{err}");

    let err = apply(&[("KWIK_PROFILING_PPROF_PORT", "70000")]).expect_err("not a port");
    assert_eq!(env_origin(&err), Some("KWIK_PROFILING_PPROF_PORT"));
    assert!(err.to_string().contains("70000"), "{err}");
}

#[test]
fn an_unknown_key_of_a_known_section_names_the_variable() {
    let err = apply(&[("KWIK_WORKER_POOL_SIZ", "8")]).expect_err("typo");
    assert!(matches!(err, ConfigError::UnknownKey { .. }));
    assert_eq!(env_origin(&err), Some("KWIK_WORKER_POOL_SIZ"));
    assert_eq!(err.key(), Some("worker_pool.siz"));
    assert!(err.to_string().contains("KWIK_WORKER_POOL_SIZE"), "{err}");
}

#[test]
fn an_out_of_range_value_names_the_variable() {
    let err = apply(&[("KWIK_STREAMING_PARALLEL_STAGES", "0")]).expect_err("0 stages");
    assert!(matches!(err, ConfigError::OutOfRange { .. }));
    assert_eq!(env_origin(&err), Some("KWIK_STREAMING_PARALLEL_STAGES"));

    // A conflict between a file value and an override names the override.
    let file = PerformanceConfig::from_toml_str("[cache]\ncompression_threshold = \"4KiB\"\n")
        .expect("valid");
    let err = file
        .with_env_overrides_from([("KWIK_TRANSPORT_MAX_PACKET_SIZE", "2KiB")])
        .expect_err("the threshold is now above the packet size");
    assert_eq!(err.key(), Some("cache.compression_threshold"));
    assert_eq!(env_origin(&err), Some("KWIK_TRANSPORT_MAX_PACKET_SIZE"));
}

#[cfg(unix)]
#[test]
fn a_value_that_is_not_utf8_names_the_variable() {
    use std::os::unix::ffi::OsStringExt;
    let bad = OsString::from_vec(vec![0x38, 0xff]);
    let err = PerformanceConfig::default()
        .with_env_overrides_from([(OsString::from("KWIK_WORKER_POOL_SIZE"), bad)])
        .expect_err("not UTF-8");
    assert_eq!(env_origin(&err), Some("KWIK_WORKER_POOL_SIZE"));
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
}
