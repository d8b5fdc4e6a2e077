//! `kwik loadtest`, run as the built binary: a short run of every variant against the embedded
//! server must produce a well-formed report with zero errors, and so must a run against a
//! separate `kwik serve` (`--target`), started here as a child process.

use std::io::{BufRead, BufReader, Lines};
use std::net::SocketAddr;
use std::process::{ChildStdout, Command, ExitStatus, Output, Stdio};

use kwik_test_support::{ChildProcess, TestPki};
use serde_json::Value;

const KEYS: [&str; 11] = [
    "achieved_rate",
    "connections",
    "cpu_percent",
    "errors",
    "latency_us",
    "rss_peak_bytes",
    "setup_seconds",
    "target",
    "target_rate",
    "tasks_peak",
    "variant",
];

/// Runs `kwik loadtest ARGS` to completion.
fn run_loadtest<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kwik"))
        .arg("loadtest")
        .args(args)
        // Only what the test sets: no KWIK_* override from the developer's shell.
        .env_clear()
        .output()
        .expect("the kwik binary runs")
}

/// Runs `kwik loadtest ARGS --json F`, checks that it succeeded and printed its table, and
/// returns stderr and the JSON report.
fn loadtest_with_stderr(args: &[&str]) -> (String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut full: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    full.extend([std::ffi::OsStr::new("--json"), json.as_os_str()]);
    let output = run_loadtest(&full);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("p99"), "the table is printed:\n{stdout}");
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (stderr, report)
}

fn loadtest(args: &[&str]) -> Value {
    let (stderr, report) = loadtest_with_stderr(args);
    assert!(
        stderr.is_empty(),
        "no progress bar and no error when stderr is not a terminal:\n{stderr}"
    );
    report
}

fn check_run(run: &Value, connections: u64) {
    let object = run.as_object().expect("a run is an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, KEYS);
    let name = run["variant"].as_str().unwrap();
    assert_eq!(run["target"], "embedded", "{name}");
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

/// A running `kwik serve` on 127.0.0.1; killed on drop if a test failed before stopping it.
struct Server {
    child: ChildProcess,
    addr: SocketAddr,
    /// Kept open so that the server never writes into a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl Server {
    /// Starts `kwik serve --listen 127.0.0.1:0 TLS_ARGS` and reads its `listening on` line.
    fn start<S: AsRef<std::ffi::OsStr>>(tls_args: &[S]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kwik"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(tls_args)
            .env_clear()
            .env("KWIK_METRICS_LISTEN", "127.0.0.1:0")
            .env("KWIK_LOGGING_LEVEL", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("kwik serve exited early").unwrap();
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.parse().unwrap();
            }
        };
        Self {
            child: ChildProcess::new(child),
            addr,
            _stdout: lines,
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    fn terminate(self) -> ExitStatus {
        self.child.terminate()
    }
}

/// Runs a short `--target` loadtest (4 sessions, 200 msg/s, 1 s) against `server` with
/// `trust` flags and one `dispatch`, checks its one run, and returns its stderr.
fn short_target_run(server: &Server, trust: &[&str], dispatch: &str) -> String {
    let addr = server.addr.to_string();
    let mut args = vec!["--target", &addr];
    args.extend_from_slice(trust);
    args.extend([
        "--connections",
        "4",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--dispatch",
        dispatch,
    ]);
    let (stderr, report) = loadtest_with_stderr(&args);
    let runs = report["runs"].as_array().expect("runs is an array");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["variant"], format!("kwik-{dispatch}"));
    assert_eq!(run["target"], addr);
    assert_eq!(run["connections"], 4);
    assert_eq!(run["errors"], 0, "stderr:\n{stderr}");
    assert_eq!(run["target_rate"], 200.0);
    assert!(run["achieved_rate"].as_f64().unwrap() > 0.0);
    assert!(run["latency_us"]["p50"].as_f64().unwrap() > 0.0);
    stderr
}

#[test]
fn target_drives_a_separate_kwik_serve() {
    let server = Server::start(&["--insecure-dev-self-signed"]);
    let stderr = short_target_run(&server, &["--insecure"], "pool");
    assert!(
        stderr.contains("--insecure") && stderr.contains("NOT verified"),
        "--insecure is loudly labelled:\n{stderr}"
    );
    assert!(
        server.terminate().success(),
        "kwik serve exits 0 on SIGTERM"
    );
}

#[test]
fn target_verifies_the_server_against_ca() {
    let pki = TestPki::generate().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let pem = pki.write_pem(certs.path()).unwrap();
    let cert = pem.cert.to_str().unwrap();
    let key = pem.key.to_str().unwrap();
    let server = Server::start(&["--cert", cert, "--key", key]);
    let stderr = short_target_run(&server, &["--ca", pem.ca.to_str().unwrap()], "inline");
    assert!(stderr.is_empty(), "verified: no warning:\n{stderr}");
    let addr = server.addr.to_string();

    // A certificate from another CA is refused: every session fails, the run reports it.
    let other = TestPki::untrusted().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other_pem = other.write_pem(other_dir.path()).unwrap();
    let output = run_loadtest(&[
        "--target",
        &addr,
        "--ca",
        other_pem.ca.to_str().unwrap(),
        "--connections",
        "2",
        "--duration",
        "100ms",
        "--dispatch",
        "pool",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("0/2"), "no session established:\n{stdout}");
    assert!(
        stderr.contains("connect"),
        "the first error is shown:\n{stderr}"
    );
    assert!(
        server.terminate().success(),
        "kwik serve exits 0 on SIGTERM"
    );
}

#[test]
fn target_refuses_the_quic_baseline() {
    // Refused before anything is dialed: the address is never contacted.
    let output = run_loadtest(&[
        "--target",
        "127.0.0.1:9",
        "--insecure",
        "--baseline",
        "quic",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("--baseline quic cannot be used with --target")
            && stderr.contains("does not speak KWIK"),
        "{stderr}"
    );
}

#[test]
fn target_names_a_missing_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let output = run_loadtest(&[
        "--target".as_ref(),
        "127.0.0.1:9".as_ref(),
        "--ca".as_ref(),
        missing.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&missing.display().to_string()),
        "the file is named:\n{stderr}"
    );
}

#[test]
fn target_needs_a_trust_choice() {
    let output = run_loadtest(&["--target", "127.0.0.1:9"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "a usage error:\n{stderr}");
    assert!(
        stderr.contains("--ca") && stderr.contains("--insecure"),
        "{stderr}"
    );
}
