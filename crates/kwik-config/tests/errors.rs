//! Every kind of error names the file, the line and column, and the key path, and says what is
//! allowed.

use std::io::Write;

use kwik_config::{ConfigError, Origin, PerformanceConfig};

/// Writes `text` to a temporary file, loads it, and returns the error and the file's path.
fn load_err(text: &str) -> (ConfigError, String) {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    let path = file.path().display().to_string();
    let err = PerformanceConfig::load(file.path()).expect_err("the file is invalid");
    (err, path)
}

/// Asserts the error sits at `line`:`column` of the file, names `key`, and contains `needle`.
fn assert_located(text: &str, line: usize, column: usize, key: &str, needle: &str) -> ConfigError {
    let (err, path) = load_err(text);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{path}:{line}:{column}: ")),
        "{message}"
    );
    assert_eq!(err.key(), Some(key), "{message}");
    assert!(message.contains(&format!("`{key}`")), "{message}");
    assert!(message.contains(needle), "{message}");
    let location = err.location().expect("located");
    assert_eq!((location.line, location.column), (line, column));
    assert_eq!(
        location.file.as_ref().map(|f| f.display().to_string()),
        Some(path)
    );
    err
}

#[test]
fn unknown_section() {
    let err = assert_located(
        "[cache]\nttl = \"1h\"\n\n[workerpool]\nsize = 4\n",
        4,
        2,
        "workerpool",
        "expected one of: runtime, worker_pool,",
    );
    assert!(matches!(err, ConfigError::UnknownKey { .. }));
}

#[test]
fn unknown_key() {
    let err = assert_located(
        "[worker_pool]\nsize = 4\nsise = 4\n",
        3,
        1,
        "worker_pool.sise",
        "expected one of: size, buffer_size, max_queue_size",
    );
    assert!(matches!(err, ConfigError::UnknownKey { .. }));
}

#[test]
fn unknown_key_in_a_dotted_key() {
    let err = assert_located(
        "cache.ttl = \"1h\"\ncache.tll = \"1h\"\n",
        2,
        7,
        "cache.tll",
        "ttl",
    );
    assert!(matches!(err, ConfigError::UnknownKey { .. }));
}

#[test]
fn wrong_type() {
    let err = assert_located(
        "[worker_pool]\nsize = \"eight\"\n",
        2,
        8,
        "worker_pool.size",
        "invalid type: string \"eight\"",
    );
    assert!(matches!(err, ConfigError::InvalidValue { .. }));
    assert_located(
        "[cache]\nenabled = 1\n",
        2,
        11,
        "cache.enabled",
        "expected a boolean",
    );
    assert_located("worker_pool = 3\n", 1, 15, "worker_pool", "expected struct");
}

#[test]
fn bad_duration() {
    let err = assert_located(
        "[cache]\ncapacity = 10\nttl = \"24x\"\n",
        3,
        7,
        "cache.ttl",
        "invalid duration `24x`: unknown time unit \"x\"",
    );
    assert!(matches!(err, ConfigError::InvalidValue { .. }));
    assert!(
        err.to_string().contains("\"30s\""),
        "says what is allowed: {err}"
    );
    assert_located(
        "[transport]\nkeep_alive = 5\n",
        2,
        14,
        "transport.keep_alive",
        "a duration needs a unit",
    );
}

#[test]
fn bad_size() {
    let err = assert_located(
        "[buffer_pool]\nbuffer_size = \"64KB2\"\n",
        2,
        15,
        "buffer_pool.buffer_size",
        "unknown unit `KB2`, expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB",
    );
    assert!(matches!(err, ConfigError::InvalidValue { .. }));
    assert_located(
        "[transport]\nstream_window = -1\n",
        2,
        17,
        "transport.stream_window",
        "a size cannot be negative",
    );
}

#[test]
fn bad_choice_and_bad_address() {
    assert_located(
        "[worker_pool]\noverflow = \"drop\"\n",
        2,
        12,
        "worker_pool.overflow",
        "expected `block` or `reject`",
    );
    assert_located(
        "[metrics]\nlisten = \"localhost:2112\"\n",
        2,
        10,
        "metrics.listen",
        "expected an IP address and port such as \"127.0.0.1:4433\"",
    );
}

#[test]
fn out_of_range_buffer_size() {
    let err = assert_located(
        "[worker_pool]\nsize = 0\nbuffer_size = 0\n",
        3,
        15,
        "worker_pool.buffer_size",
        "must be at least 1, got 0",
    );
    assert!(matches!(err, ConfigError::OutOfRange { .. }));
}

/// The worker pool's own limits are checked with the file and line too, not only when the pool
/// is built.
#[test]
fn worker_pool_beyond_the_pools_limits() {
    let err = assert_located(
        "[worker_pool]\nbuffer_size = 65537\n",
        2,
        15,
        "worker_pool.buffer_size",
        "must be at most 65536, got 65537",
    );
    assert!(matches!(err, ConfigError::OutOfRange { .. }));
    assert_located(
        "[worker_pool]\nsize = 5000\n",
        2,
        8,
        "worker_pool.size",
        "must be at most 4096, got 5000",
    );
    let at_the_limits = "[worker_pool]\nsize = 4096\nbuffer_size = 65536\n";
    assert!(PerformanceConfig::from_toml_str(at_the_limits).is_ok());
}

#[test]
fn out_of_range_sample_rate() {
    let err = assert_located(
        "[profiling]\nenabled = true\nsample_rate = 0\n",
        3,
        15,
        "profiling.sample_rate",
        "must be between 1 and 10000 samples per second, got 0",
    );
    assert!(matches!(err, ConfigError::OutOfRange { .. }));
}

#[test]
fn out_of_range_negative_rate_limit() {
    assert_located(
        "[limits]\nrate_limit = -0.5\n",
        2,
        14,
        "limits.rate_limit",
        "0 or more",
    );
}

#[test]
fn compression_threshold_larger_than_max_packet_size() {
    let text =
        "[transport]\nmax_packet_size = \"16KiB\"\n\n[cache]\ncompression_threshold = \"32KiB\"\n";
    let err = assert_located(
        text,
        5,
        25,
        "cache.compression_threshold",
        "must not exceed transport.max_packet_size (16KiB), got 32KiB",
    );
    assert!(matches!(err, ConfigError::OutOfRange { .. }));
}

#[test]
fn a_conflict_with_a_default_points_at_the_key_that_was_written() {
    // keep_alive keeps its default (10s); the line to change is the idle_timeout one.
    assert_located(
        "[transport]\nalpn = \"x\"\nidle_timeout = \"5s\"\n",
        3,
        16,
        "transport.keep_alive",
        "must be shorter than transport.idle_timeout (5s)",
    );
}

#[test]
fn syntax_errors_are_located() {
    let (err, path) = load_err("[cache]\nttl = \"1h\"\n[worker_pool\n");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("{path}:3:")), "{err}");
    assert_eq!(err.key(), None);
}

#[test]
fn a_duplicate_key_is_a_syntax_error() {
    let (err, path) = load_err("[cache]\nttl = \"1h\"\nttl = \"2h\"\n");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("{path}:3:")), "{err}");
}

#[test]
fn errors_from_a_string_give_line_and_column() {
    let err =
        PerformanceConfig::from_toml_str("\n\n[streaming]\nchunk_size = 0\n").expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "line 4, column 14: `streaming.chunk_size`: must be at least 1, got 0"
    );
}

#[test]
fn a_missing_file_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let err = PerformanceConfig::load(&path).expect_err("absent");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert_eq!(err.to_string(), format!("cannot read {}", path.display()));
    let source = std::error::Error::source(&err).expect("the io error is the source");
    assert!(source.to_string().contains("No such file"), "{source}");
}

#[test]
fn validate_on_a_struct_built_in_code_names_the_key() {
    let mut config = PerformanceConfig::default();
    config.cache.capacity = 0;
    let err = config.validate().expect_err("capacity 0");
    assert!(matches!(
        &err,
        ConfigError::OutOfRange {
            origin: Origin::Code,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "configuration: `cache.capacity`: must be at least 1, got 0"
    );
}
