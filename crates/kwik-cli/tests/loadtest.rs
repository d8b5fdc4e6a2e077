//! `kwik loadtest`, run as the built binary: a short run of every variant against the embedded
//! server must produce a well-formed report with zero errors.

use std::process::Command;

use serde_json::Value;

const KEYS: [&str; 10] = [
    "achieved_rate",
    "connections",
    "cpu_percent",
    "errors",
    "latency_us",
    "rss_peak_bytes",
    "setup_seconds",
    "target_rate",
    "tasks_peak",
    "variant",
];

fn loadtest(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_kwik"))
        .arg("loadtest")
        .args(args)
        .arg("--json")
        .arg(&json)
        // Only what the test sets: no KWIK_* override from the developer's shell.
        .env_clear()
        .output()
        .expect("the kwik binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("p99"), "the table is printed:\n{stdout}");
    assert!(
        stderr.is_empty(),
        "no progress bar and no error when stderr is not a terminal:\n{stderr}"
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

fn check_run(run: &Value, connections: u64) {
    let object = run.as_object().expect("a run is an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, KEYS);
    let name = run["variant"].as_str().unwrap();
    assert_eq!(run["connections"], connections, "{name}");
    assert_eq!(run["errors"], 0, "{name}");
    assert_eq!(run["target_rate"], 500.0, "{name}");
    // Open loop at 500 msg/s over 2 s: every message is echoed, so the achieved rate is the
    // target up to the edges of the window.
    let achieved = run["achieved_rate"].as_f64().unwrap();
    assert!((450.0..=550.0).contains(&achieved), "{name}: {achieved}");
    let latency = &run["latency_us"];
    let p = |k: &str| latency[k].as_f64().unwrap();
    assert!(p("p50") > 0.0, "{name}");
    assert!(p("p50") <= p("p95") && p("p95") <= p("p99"), "{name}");
    assert!(p("p99") <= p("p999") && p("p999") <= p("max"), "{name}");
    assert!(run["rss_peak_bytes"].as_u64().unwrap() > 0, "{name}");
    assert!(run["tasks_peak"].as_u64().unwrap() >= connections, "{name}");
    assert!(run["setup_seconds"].as_f64().unwrap() > 0.0, "{name}");
    assert!(run["cpu_percent"].as_f64().unwrap() >= 0.0, "{name}");
}

#[test]
fn every_variant_reports_without_errors() {
    let report = loadtest(&[
        "--connections",
        "20",
        "--rate",
        "500",
        "--duration",
        "2s",
        "--dispatch",
        "all",
        "--baseline",
        "quic",
    ]);
    let runs = report["runs"].as_array().expect("runs is an array");
    let variants: Vec<&str> = runs
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert_eq!(variants, ["quic", "kwik-pool", "kwik-inline", "kwik-spawn"]);
    for run in runs {
        check_run(run, 20);
    }
}
