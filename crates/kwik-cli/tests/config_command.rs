//! `kwik config check` and `kwik config show`, run as the built binary.
//!
//! Every run starts from an empty environment, so the developer's own KWIK_* variables cannot
//! change the outcome.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kwik_config::PerformanceConfig;

fn kwik(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kwik"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the kwik binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf-8 stderr")
}

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

#[test]
fn version_and_help() {
    let out = kwik(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("kwik {}", env!("CARGO_PKG_VERSION"))
    );

    let out = kwik(&["--help"], &[]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("config"), "{}", stdout(&out));

    let out = kwik(&["config", "--help"], &[]);
    assert!(out.status.success());
    let help = stdout(&out);
    assert!(help.contains("check") && help.contains("show"), "{help}");
}

#[test]
fn check_accepts_every_shipped_config() {
    let paths: Vec<String> = [
        "performance.toml",
        "low-latency.toml",
        "high-throughput.toml",
    ]
    .iter()
    .map(|name| repo_file(&format!("configs/{name}")).display().to_string())
    .collect();
    let mut args = vec!["config", "check"];
    args.extend(paths.iter().map(String::as_str));
    let out = kwik(&args, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected: String = paths.iter().map(|p| format!("ok: {p}\n")).collect();
    assert_eq!(stdout(&out), expected);
}

#[test]
fn check_stops_at_the_first_bad_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[cache]\nttl = \"24x\"\n").expect("write");
    let good = repo_file("configs/performance.toml");
    let (good, bad) = (good.to_str().expect("utf-8"), bad.to_str().expect("utf-8"));
    let out = kwik(&["config", "check", good, bad, good], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), format!("ok: {good}\n"));
    assert!(stderr(&out).starts_with(&format!("error: {bad}:2:7: `cache.ttl`: invalid duration")));

    let out = kwik(&["config", "check"], &[]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[test]
fn check_rejects_a_bad_file_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[worker_pool]\nsize = 4\nbuffer_size = 0\n").expect("write");
    let out = kwik(&["config", "check", path.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    assert_eq!(
        stderr(&out),
        format!(
            "error: {}:3:15: `worker_pool.buffer_size`: must be at least 1, got 0\n",
            path.display()
        )
    );
}

#[test]
fn check_reports_a_missing_file_with_exit_code_2() {
    let out = kwik(&["config", "check", "/nonexistent/kwik.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: cannot read /nonexistent/kwik.toml: "));
}

#[test]
fn check_applies_the_environment_unless_told_not_to() {
    let path = repo_file("configs/performance.toml");
    let path = path.to_str().expect("utf-8 path");
    let bad = [("KWIK_CACHE_CAPACITY", "none")];
    let out = kwik(&["config", "check", path], &bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .starts_with("error: environment variable KWIK_CACHE_CAPACITY: `cache.capacity`:"),
        "{}",
        stderr(&out)
    );
    let out = kwik(&["config", "check", "--no-env", path], &bad);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn show_without_a_file_prints_the_defaults() {
    let out = kwik(&["config", "show"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = PerformanceConfig::from_toml_str(&stdout(&out)).expect("show prints valid TOML");
    assert_eq!(shown, PerformanceConfig::default());
}

#[test]
fn show_output_round_trips_through_check() {
    let source = repo_file("configs/high-throughput.toml");
    let env = [
        ("KWIK_WORKER_POOL_SIZE", "6"),
        ("KWIK_PROFILING_PPROF_PORT", "7070"),
    ];
    let out = kwik(&["config", "show", source.to_str().expect("utf-8")], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("size = 6"), "{shown}");

    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("shown.toml");
    std::fs::write(&copy, &shown).expect("write");
    let copy = copy.to_str().expect("utf-8");
    let out = kwik(&["config", "check", "--no-env", copy], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("ok: {copy}\n"));

    // The printed file holds exactly the effective configuration.
    let expected = PerformanceConfig::load(&source)
        .and_then(|c| c.with_env_overrides_from(env))
        .expect("valid");
    assert_eq!(PerformanceConfig::load(copy).expect("valid"), expected);
}
