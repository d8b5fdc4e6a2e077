//! The profiling endpoint: a real pprof protobuf for seconds=1, an SVG flamegraph, 400 on a bad
//! N, 409 on a concurrent profile. Its own test binary: the CPU profiler is process-wide.
#![cfg(feature = "profiling")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kwik_metrics::{ProfilingServer, StartError};
use pprof::protos::Message;

/// The CPU profiler is process-wide and tests run in parallel: each test that profiles holds
/// this lock, or they would answer each other 409.
static PROFILER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn start() -> ProfilingServer {
    ProfilingServer::builder()
        .addr("127.0.0.1:0".parse().expect("addr"))
        .start()
        .await
        .expect("starts")
}

/// Burns CPU on a thread until dropped, so the profile has samples to report.
struct Spinner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Spinner {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut x = 0u64;
            while !flag.load(Ordering::Relaxed) {
                for i in 0..10_000u64 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                }
            }
            x
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_returns_a_valid_pprof_protobuf_and_rejects_a_concurrent_one() {
    let _profiler = PROFILER.lock().await;
    let server = start().await;
    let addr = server.local_addr();
    let spinner = Spinner::start();
    let first = tokio::spawn(common::get(addr, "/debug/pprof/profile?seconds=1"));
    // Wait (bounded, without sleeping) until the first profile holds the profiler.
    let mut spins = 0u32;
    while !server.profile_in_progress() {
        assert!(
            !first.is_finished(),
            "the first profile ended before it was seen running"
        );
        spins += 1;
        assert!(spins < 10_000_000, "profile never started");
        tokio::task::yield_now().await;
    }
    let second = common::get(addr, "/debug/pprof/flamegraph?seconds=1").await;
    assert_eq!(second.status, 409, "{}", second.text());
    assert!(second.text().contains("already running"));

    let reply = first.await.expect("request task");
    drop(spinner);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(!reply.body.is_empty());
    let profile = pprof::protos::Profile::decode(reply.body.as_slice()).expect("valid protobuf");
    let string = |i: i64| profile.string_table[usize::try_from(i).expect("index")].as_str();
    assert_eq!(profile.string_table.first().map(String::as_str), Some(""));
    assert!(
        profile.duration_nanos >= 1_000_000_000,
        "{}",
        profile.duration_nanos
    );
    let types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| (string(t.ty), string(t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    assert_eq!(profile.period, 1_000_000_000 / 99);
    assert!(
        !profile.sample.is_empty(),
        "a spinning thread produced no sample"
    );
    assert!(!profile.function.is_empty());

    // The slot is free again.
    assert!(!server.profile_in_progress());
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn flamegraph_is_svg() {
    let _profiler = PROFILER.lock().await;
    let server = start().await;
    let spinner = Spinner::start();
    let reply = common::get(server.local_addr(), "/debug/pprof/flamegraph?seconds=1").await;
    drop(spinner);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("content-type"), Some("image/svg+xml"));
    assert!(reply.text().contains("<svg"));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn bad_seconds_are_400_with_a_reason() {
    let server = start().await;
    let addr = server.local_addr();
    for query in [
        "seconds=0",
        "seconds=61",
        "seconds=abc",
        "seconds=-5",
        "seconds=",
    ] {
        let reply = common::get(addr, &format!("/debug/pprof/profile?{query}")).await;
        assert_eq!(reply.status, 400, "{query}");
        assert!(
            reply.text().contains("between 1 and 60"),
            "{query}: {}",
            reply.text()
        );
    }
    assert!(!server.profile_in_progress());
    assert_eq!(common::get(addr, "/debug/pprof/").await.status, 200);
    assert_eq!(common::get(addr, "/debug/pprof/heap").await.status, 404);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_cuts_a_running_profile_short() {
    let _profiler = PROFILER.lock().await;
    let server = start().await;
    let addr = server.local_addr();
    let running = tokio::spawn(common::get(addr, "/debug/pprof/profile?seconds=60"));
    let mut spins = 0u32;
    while !server.profile_in_progress() {
        spins += 1;
        assert!(spins < 10_000_000, "profile never started");
        tokio::task::yield_now().await;
    }
    server
        .shutdown()
        .await
        .expect("the profile ends with the server");
    let reply = running.await.expect("request task");
    assert_eq!(reply.status, 503, "{}", reply.text());
}

#[tokio::test]
async fn invalid_configuration_is_rejected() {
    let err = ProfilingServer::builder()
        .max_seconds(0)
        .start()
        .await
        .expect_err("invalid");
    assert!(matches!(err, StartError::InvalidConfig(_)));
    let err = ProfilingServer::builder()
        .frequency(5000)
        .start()
        .await
        .expect_err("invalid");
    assert!(matches!(err, StartError::InvalidConfig(_)));
}
