//! `kwik serve` as a child process, driven over real KWIK sessions on 127.0.0.1: the HTTP
//! routes, the response cache, `/metrics` (checked by promtool when installed), the file
//! service, a graceful SIGTERM during a 64 MiB download, and downloads split between a primary
//! and a `--secondary`.

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kwik_test_support::{ChildProcess, TestPki};
use kwik_transport::{ClientConfig, ErrorCode, Observer, ReadError, Session};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of the download interrupted by SIGTERM (the issue's figure).
const LARGE_FILE: usize = 64 * 1024 * 1024;

/// A running `kwik serve`; killed on drop if a test failed before stopping it.
struct Server {
    child: ChildProcess,
    addr: SocketAddr,
    metrics: SocketAddr,
    /// The CA the server's certificate chains to; `None` with `--insecure-dev-self-signed`.
    pki: Option<TestPki>,
    _certs: Option<tempfile::TempDir>,
}

impl Server {
    /// A server with a certificate from a fresh test CA.
    fn start(root: &Path) -> Self {
        Self::launch(root, Some(TestPki::generate().unwrap()), &[], &[])
    }

    /// A server with `--insecure-dev-self-signed`, extra arguments and environment.
    fn start_self_signed(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::launch(root, None, args, env)
    }

    fn launch(root: &Path, pki: Option<TestPki>, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kwik"));
        command.arg("serve").arg("--listen=127.0.0.1:0");
        let certs = match &pki {
            Some(pki) => {
                let certs = tempfile::tempdir().unwrap();
                let pem = pki.write_pem(certs.path()).unwrap();
                command
                    .arg("--cert")
                    .arg(&pem.cert)
                    .arg("--key")
                    .arg(&pem.key);
                Some(certs)
            }
            None => {
                command.arg("--insecure-dev-self-signed");
                None
            }
        };
        let mut child = command
            .arg("--root")
            .arg(root)
            .args(args)
            .env("KWIK_METRICS_LISTEN", "127.0.0.1:0")
            .env("KWIK_LOGGING_LEVEL", "warn")
            // Room for the 64 MiB download of the SIGTERM test on a loaded machine.
            .env("KWIK_WORKER_POOL_SHUTDOWN_TIMEOUT", "120s")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        let mut metrics = None;
        while addr.is_none() {
            let line = lines.next().expect("kwik serve exited early").unwrap();
            if let Some(rest) = line.strip_prefix("listening on ") {
                addr = Some(rest.parse().unwrap());
            } else if let Some(rest) = line.strip_prefix("metrics on http://") {
                metrics = Some(rest.trim_end_matches("/metrics").parse().unwrap());
            }
        }
        Self {
            child: ChildProcess::new(child),
            addr: addr.unwrap(),
            metrics: metrics.expect("no metrics line before the listening line"),
            pki,
            _certs: certs,
        }
    }

    async fn dial(&self) -> Session {
        self.dial_observed(None).await
    }

    /// Dials with the server's `[transport]` settings, reporting the session's path events to
    /// `observer`.
    async fn dial_observed(&self, observer: Option<Arc<dyn Observer>>) -> Session {
        // The server runs with `[transport]` of performance.toml, whose defaults (ALPN, packet
        // size) differ from the transport crate's: the client must use the same.
        let transport = kwik_config::PerformanceConfig::default()
            .with_env_overrides()
            .unwrap()
            .transport;
        let mut config = ClientConfig::builder()
            .alpn([transport.alpn.into_bytes()])
            .max_packet_size(transport.max_packet_size.as_usize())
            .stream_window(transport.stream_window.as_u64());
        config = match &self.pki {
            Some(pki) => config.add_root_certificate(pki.ca_cert()),
            // Every self-signed server of a test is trusted, the secondaries included.
            None => config.insecure_dev_skip_verification(true),
        };
        if let Some(observer) = observer {
            config = config.observer(observer);
        }
        kwik_transport::dial(self.addr, &config.build().unwrap())
            .await
            .unwrap()
    }

    /// Sends SIGTERM and waits for the exit status.
    fn terminate(self) -> std::process::ExitStatus {
        self.child.terminate()
    }
}

fn root_with_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello over kwik\n").unwrap();
    dir
}

/// One HTTP exchange on a fresh stream: `(status, head, body)`.
async fn http(session: &Session, request: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = session.open_stream().await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    // A `Connection: close` request may be answered, and the stream dropped by the server
    // (STOP_SENDING), before the FIN goes out: FIN may be refused.
    let _ = stream.shutdown().await;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head, raw[split..].to_vec())
}

async fn get(session: &Session, path: &str) -> (u16, String, Vec<u8>) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: kwik\r\nConnection: close\r\n\r\n");
    http(session, &request, b"").await
}

fn scrape(addr: SocketAddr) -> String {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    // HTTP/1.0: the body comes unchunked and ends with the connection.
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: kwik\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_cache_and_metrics() {
    let root = root_with_files();
    let server = Server::start(root.path());
    let session = server.dial().await;

    let (status, _, body) = get(&session, "/").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8(body).unwrap().starts_with("kwik serve"));

    let request = "POST /api/echo HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\n";
    let (status, _, body) = http(&session, request, b"abcde").await;
    assert_eq!((status, body.as_slice()), (200, &b"abcde"[..]));

    let (status, head, body) = get(&session, "/hello.txt").await;
    assert_eq!((status, body.as_slice()), (200, &b"hello over kwik\n"[..]));
    assert!(head.contains("X-Kwik-Cache: miss"), "{head}");
    let (_, head, body) = get(&session, "/hello.txt").await;
    assert!(head.contains("X-Kwik-Cache: hit"), "{head}");
    assert_eq!(body, b"hello over kwik\n");

    assert_eq!(get(&session, "/../etc/passwd").await.0, 400);
    assert_eq!(get(&session, "/missing").await.0, 404);

    let (status, _, body) = get(&session, "/api/status").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["cache"]["hits"], 1);
    assert_eq!(json["cache"]["misses"], 1);
    assert_eq!(json["runtime"]["sessions"], 1);
    assert_eq!(json["runtime"]["paths"], 1);

    let text = scrape(server.metrics);
    assert!(
        text.contains(r#"kwik_requests_total{route="/"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"kwik_requests_total{route="static"} 4"#));
    assert!(text.contains(r#"kwik_request_errors_total{route="static"} 2"#));
    assert!(text.contains(r#"kwik_request_duration_seconds_count{route="/api/echo"} 1"#));
    assert!(text.contains("kwik_cache_hits_total 1"));
    assert!(
        text.contains(r#"kwik_sessions_active{role="server"} 1"#),
        "{text}"
    );
    assert!(text.contains("kwik_paths_active 1"));
    let _ = kwik_test_support::promtool::check_metrics(&text);

    session.close(ErrorCode::NO_ERROR, "done");
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_ranges_and_refusals() {
    let root = root_with_files();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.path().join("data.bin"), &data).unwrap();
    let server = Server::start(root.path());
    let session = server.dial().await;

    let mut joined = Vec::new();
    for line in ["FILE data.bin 0 100000\n", "FILE data.bin 100000 200000\n"] {
        let mut stream = session.open_stream().await.unwrap();
        stream.write_all(line.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let newline = raw.iter().position(|&b| b == b'\n').unwrap();
        assert!(raw.starts_with(b"OK "), "{:?}", &raw[..newline]);
        assert!(raw[..newline].ends_with(b" 300000"));
        joined.extend_from_slice(&raw[newline + 1..]);
    }
    assert_eq!(joined, data);

    let mut stream = session.open_stream().await.unwrap();
    stream.write_all(b"FILE data.bin 299999 2\n").await.unwrap();
    // The server answers and stops reading as soon as it has the line: FIN may be refused.
    let _ = stream.shutdown().await;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("ERR out-of-range "), "{reply}");

    let mut stream = session.open_stream().await.unwrap();
    stream.write_all(b"ECHO\nround trip").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"round trip");

    session.close(ErrorCode::NO_ERROR, "done");
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_64_mib_download_finish_then_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let mut expected = Sha256::new();
    {
        let mut file = std::fs::File::create(root.path().join("large.bin")).unwrap();
        let mut chunk = vec![0u8; 1 << 20];
        for i in 0..LARGE_FILE / chunk.len() {
            for (j, byte) in chunk.iter_mut().enumerate() {
                *byte = (i * 7 + j * 13) as u8;
            }
            file.write_all(&chunk).unwrap();
            expected.update(&chunk);
        }
    }
    let server = Server::start(root.path());
    let session = server.dial().await;
    let mut stream = session.open_stream().await.unwrap();
    let request = format!("FILE large.bin 0 {LARGE_FILE}\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();

    let header = format!("OK {LARGE_FILE} {LARGE_FILE}\n");
    let mut head = vec![0; header.len()];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head, header.as_bytes());
    // Part of the body has arrived: the download is in flight when the signal lands (flow
    // control keeps the server within one stream window, 1 MiB, of what was read).
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    let mut received = 0;
    while received < 1 << 20 {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended early");
        hasher.update(&buf[..n]);
        received += n;
    }
    let exit = tokio::task::spawn_blocking(move || server.terminate());
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        received += n;
    }
    assert_eq!(received, LARGE_FILE);
    assert_eq!(hasher.finalize(), expected.finalize());
    session.close(ErrorCode::NO_ERROR, "done");
    let status = tokio::time::timeout(Duration::from_secs(60), exit)
        .await
        .expect("kwik serve did not exit after the download")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// Upper bound for waits that only fail when something is broken (never a timing assertion).
const BOUND: Duration = Duration::from_secs(60);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("operation finished in time")
}

/// The client's path additions, with a waiter.
#[derive(Default)]
struct PathEvents {
    added: Mutex<Vec<SocketAddr>>,
    notify: tokio::sync::Notify,
}

impl Observer for PathEvents {
    fn path_added(&self, _path_id: u64, remote: SocketAddr) {
        self.added.lock().unwrap().push(remote);
        self.notify.notify_waiters();
    }
}

impl PathEvents {
    /// Waits until the client added a path to `remote`.
    async fn wait_added(&self, remote: SocketAddr) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.added.lock().unwrap().contains(&remote) {
                return;
            }
            notified.await;
        }
    }
}

/// Writes `len` deterministic bytes to `root/name`; returns them.
fn write_file(root: &Path, name: &str, len: usize) -> Vec<u8> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    std::fs::write(root.join(name), &data).unwrap();
    data
}

/// Sends `FILE <name> <offset> <len>` on a new stream and checks the `OK` line.
async fn request_file(
    session: &Session,
    name: &str,
    offset: usize,
    len: usize,
    size: usize,
) -> kwik_transport::Stream {
    let mut stream = session.open_stream().await.unwrap();
    let line = format!("FILE {name} {offset} {len}\n");
    stream.write_all(line.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let header = format!("OK {len} {size}\n");
    let mut head = vec![0; header.len()];
    bounded(stream.read_exact(&mut head)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&head), header);
    stream
}

/// Reads the rest of `stream` into `body` (at most `limit` bytes in all); returns how it ended.
async fn read_body(
    stream: &mut kwik_transport::Stream,
    body: &mut Vec<u8>,
    limit: usize,
) -> Result<(), ReadError> {
    bounded(async {
        while body.len() < limit {
            match stream.read_chunk(limit - body.len()).await? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => return Ok(()),
            }
        }
        Ok(())
    })
    .await
}

/// GET /api/status on `session`, as JSON.
async fn status(session: &Session) -> serde_json::Value {
    let (code, _, body) = get(session, "/api/status").await;
    assert_eq!(code, 200);
    serde_json::from_slice(&body).unwrap()
}

/// Starts a secondary (with `secondary_env`) and a primary with `--secondary` on the same
/// root, dials the primary and waits until the client added the path to the secondary.
async fn primary_and_secondary(
    root: &Path,
    secondary_env: &[(&str, &str)],
) -> (Server, Server, Session) {
    let secondary = Server::start_self_signed(root, &[], secondary_env);
    let secondary_addr = secondary.addr.to_string();
    let primary = Server::start_self_signed(root, &["--secondary", &secondary_addr], &[]);
    let events = Arc::new(PathEvents::default());
    let session = primary.dial_observed(Some(events.clone())).await;
    bounded(events.wait_added(secondary.addr)).await;
    (primary, secondary, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_serves_part_of_one_file_stream() {
    // Not a multiple of anything: the parts are uneven by a byte.
    const SIZE: usize = 3 * 1024 * 1024 + 4321;
    let root = tempfile::tempdir().unwrap();
    let data = write_file(root.path(), "shared.bin", SIZE);
    let (primary, secondary, session) = primary_and_secondary(root.path(), &[]).await;
    let secondary_addr = secondary.addr.to_string();

    let mut stream = request_file(&session, "shared.bin", 0, SIZE, SIZE).await;
    let mut body = Vec::with_capacity(SIZE);
    read_body(&mut stream, &mut body, usize::MAX).await.unwrap();
    assert_eq!(body.len(), SIZE);
    assert_eq!(Sha256::digest(&body), Sha256::digest(&data));
    drop(stream);

    // The secondary sent its blocks over its own path.
    let json = status(&session).await;
    let runtime = &json["runtime"];
    assert_eq!(runtime["paths"], 2, "{json}");
    let listed = &runtime["secondaries"][0];
    assert_eq!(listed["address"], secondary_addr.as_str());
    assert_eq!(
        (
            &listed["added"],
            &listed["failed"],
            &listed["live"],
            &listed["parts"]
        ),
        (&1.into(), &0.into(), &1.into(), &1.into()),
        "{json}"
    );
    // Blocks of half the 1 MiB window, alternating from the primary on: the secondary has
    // three of the seven, the primary the rest.
    let secondary_bytes = listed["bytes"].as_u64().unwrap();
    assert_eq!(secondary_bytes, 3 * 512 * 1024);
    assert_eq!(json["files"]["downloads"], 1);
    assert_eq!(
        json["files"]["download_bytes"],
        SIZE as u64 - secondary_bytes
    );
    let paths = session.paths();
    assert_eq!(paths.len(), 2, "{paths:?}");
    let to_secondary = paths.iter().find(|p| p.remote == secondary.addr).unwrap();
    assert!(
        to_secondary.counters.bytes_received > secondary_bytes,
        "{to_secondary:?}"
    );

    // The secondary saw an ordinary session (the client's path 1) and served one part.
    let direct = secondary.dial().await;
    let json = status(&direct).await;
    assert_eq!(json["runtime"]["secondary_sessions"], 1, "{json}");
    assert_eq!(json["runtime"]["sessions"], 2);
    assert_eq!(json["files"]["parts"], 1);
    assert_eq!(json["files"]["part_bytes"], secondary_bytes);
    assert_eq!(json["files"]["downloads"], 0);
    assert!(json["runtime"].get("secondaries").is_none());

    direct.close(ErrorCode::NO_ERROR, "done");
    session.close(ErrorCode::NO_ERROR, "done");
    assert!(primary.terminate().success());
    assert!(secondary.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_secondary_fails_the_stream_and_a_retry_completes_the_file() {
    const SIZE: usize = 4 * 1024 * 1024;
    let root = tempfile::tempdir().unwrap();
    let data = write_file(root.path(), "shared.bin", SIZE);
    // Stopped, the secondary closes its sessions at once instead of draining them.
    let (primary, secondary, session) =
        primary_and_secondary(root.path(), &[("KWIK_WORKER_POOL_SHUTDOWN_TIMEOUT", "0s")]).await;

    let mut stream = request_file(&session, "shared.bin", 0, SIZE, SIZE).await;
    let mut body = Vec::with_capacity(SIZE);
    // The secondary's blocks alternate with the primary's; its last one (3.5 MiB in) is beyond
    // the 1 MiB window until the client read 2.5 MiB, so it is still to come when it stops.
    read_body(&mut stream, &mut body, 64 * 1024).await.unwrap();
    assert!(secondary.terminate().success());
    let err = read_body(&mut stream, &mut body, usize::MAX)
        .await
        .unwrap_err();
    assert!(matches!(err, ReadError::PathLost(_)), "{err:?}");
    // The stream fails as soon as the bytes already received are read: a prefix of the file.
    assert!(body.len() >= 64 * 1024 && body.len() < SIZE);
    assert!(body == data[..body.len()], "prefix differs");
    drop(stream);

    // The client asks the primary for the rest. A retry relayed to the dead path before the
    // primary heard of its removal fails the same way, so retry a bounded number of times.
    for attempt in 0.. {
        assert!(attempt < 3, "no complete retry in 3 attempts");
        let got = body.len();
        let mut stream = request_file(&session, "shared.bin", got, SIZE - got, SIZE).await;
        match read_body(&mut stream, &mut body, usize::MAX).await {
            Ok(()) => break,
            Err(ReadError::PathLost(_)) => continue,
            Err(err) => panic!("retry failed: {err:?}"),
        }
    }
    assert_eq!(body.len(), SIZE);
    assert_eq!(Sha256::digest(&body), Sha256::digest(&data));
    let json = status(&session).await;
    let listed = &json["runtime"]["secondaries"][0];
    assert_eq!(
        (&listed["lost"], &listed["live"]),
        (&1.into(), &0.into()),
        "{json}"
    );
    assert_eq!(json["runtime"]["paths"], 1);

    session.close(ErrorCode::NO_ERROR, "done");
    assert!(primary.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_secondary_leaves_the_session_on_the_primary() {
    let root = root_with_files();
    // A bound UDP socket that never answers: the client's dial fails.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let data = write_file(root.path(), "data.bin", 256 * 1024);
    let primary = Server::start_self_signed(
        root.path(),
        &["--secondary", &silent_addr],
        &[("KWIK_TRANSPORT_HANDSHAKE_TIMEOUT", "500ms")],
    );
    let session = primary.dial().await;
    let mut stream = request_file(&session, "data.bin", 0, data.len(), data.len()).await;
    let mut body = Vec::new();
    read_body(&mut stream, &mut body, usize::MAX).await.unwrap();
    assert!(body == data, "download differs");
    // The primary gives up waiting for the client's answer after twice its handshake timeout.
    let json = bounded(async {
        loop {
            let json = status(&session).await;
            if json["runtime"]["secondaries"][0]["failed"] == 1 {
                break json;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(json["runtime"]["secondaries"][0]["added"], 0);
    assert_eq!(json["runtime"]["paths"], 1);
    session.close(ErrorCode::NO_ERROR, "done");
    assert!(primary.terminate().success());
    drop(silent);
}

/// Throughput of one FILE download over loopback, for docs/tuning.md: run with
/// `cargo test -p kwik-cli --test serve -- --ignored --nocapture download_throughput`, varying
/// `KWIK_TRANSPORT_*` (read by both the server and this client). Asserts the bytes, prints the
/// rate; never asserts a speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement for docs/tuning.md, prints a throughput"]
async fn download_throughput() {
    const SIZE: usize = 256 * 1024 * 1024;
    let root = tempfile::tempdir().unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i: usize| (i % 253) as u8).collect();
    {
        let mut file = std::fs::File::create(root.path().join("big.bin")).unwrap();
        for _ in 0..SIZE / chunk.len() {
            file.write_all(&chunk).unwrap();
        }
    }
    let server = Server::start(root.path());
    let session = server.dial().await;
    let started = std::time::Instant::now();
    let mut stream = session.open_stream().await.unwrap();
    stream
        .write_all(format!("FILE big.bin 0 {SIZE}\n").as_bytes())
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut buf = vec![0; 256 * 1024];
    let mut received = 0;
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        received += n;
    }
    let elapsed = started.elapsed();
    let header = format!("OK {SIZE} {SIZE}\n").len();
    assert_eq!(received, SIZE + header);
    println!(
        "download_throughput: {} MiB in {:.2} s = {:.0} MiB/s",
        SIZE >> 20,
        elapsed.as_secs_f64(),
        (SIZE >> 20) as f64 / elapsed.as_secs_f64()
    );
    session.close(ErrorCode::NO_ERROR, "done");
    assert!(server.terminate().success());
}

/// One download from a single server and the same download split between a primary and a
/// secondary, all on this machine: run with `cargo test -p kwik-cli --test serve -- --ignored
/// --nocapture split_download_throughput` (add `KWIK_TRANSPORT_STREAM_WINDOW=4MiB` etc. to vary
/// `[transport]`, read by the servers and this client alike). Asserts the bytes, prints the
/// rates; never asserts a speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement for docs/serve.md, prints throughputs"]
async fn split_download_throughput() {
    const SIZE: usize = 128 * 1024 * 1024;
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "big.bin", SIZE);
    let single = Server::start_self_signed(root.path(), &[], &[]);
    let single_session = single.dial().await;
    let (primary, secondary, split_session) = primary_and_secondary(root.path(), &[]).await;
    for round in 0..3 {
        for (name, session) in [("one server", &single_session), ("split", &split_session)] {
            let started = std::time::Instant::now();
            let mut stream = request_file(session, "big.bin", 0, SIZE, SIZE).await;
            let mut received = 0;
            while let Some(chunk) = bounded(stream.read_chunk(usize::MAX)).await.unwrap() {
                received += chunk.len();
            }
            let elapsed = started.elapsed();
            assert_eq!(received, SIZE);
            println!(
                "split_download_throughput: round {round} {name}: {} MiB in {:.2} s = {:.0} MiB/s",
                SIZE >> 20,
                elapsed.as_secs_f64(),
                (SIZE >> 20) as f64 / elapsed.as_secs_f64()
            );
        }
    }
    let json = status(&split_session).await;
    assert_eq!(json["runtime"]["secondaries"][0]["parts"], 3, "{json}");
    single_session.close(ErrorCode::NO_ERROR, "done");
    split_session.close(ErrorCode::NO_ERROR, "done");
    assert!(single.terminate().success());
    assert!(primary.terminate().success());
    assert!(secondary.terminate().success());
}

#[test]
fn a_certificate_choice_is_required_and_a_bad_config_exits_2() {
    let no_tls = Command::new(env!("CARGO_BIN_EXE_kwik"))
        .args(["serve", "--listen=127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(no_tls.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_tls.stderr).contains("--insecure-dev-self-signed"));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("performance.toml");
    std::fs::write(&config, "[cache]\nttl = 5\n").unwrap();
    let bad_config = Command::new(env!("CARGO_BIN_EXE_kwik"))
        .args([
            "serve",
            "--insecure-dev-self-signed",
            "--listen=127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(bad_config.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_config.stderr);
    assert!(stderr.contains("ttl"), "{stderr}");
    assert!(bad_config.stdout.is_empty(), "nothing was started");
}

#[test]
fn a_bad_secondary_address_is_a_usage_error() {
    for bad in ["127.0.0.1", "127.0.0.1:0", ":4433"] {
        let output = Command::new(env!("CARGO_BIN_EXE_kwik"))
            .args([
                "serve",
                "--insecure-dev-self-signed",
                "--listen=127.0.0.1:0",
                "--secondary",
                bad,
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--secondary"), "{stderr}");
        assert!(output.stdout.is_empty(), "nothing was started");
    }
}

#[test]
fn json_logs_when_logging_format_is_json() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kwik"))
        .args([
            "serve",
            "--insecure-dev-self-signed",
            "--listen=127.0.0.1:0",
        ])
        .env("KWIK_METRICS_ENABLED", "false")
        .env("KWIK_LOGGING_FORMAT", "json")
        .env("KWIK_LOGGING_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on 127.0.0.1:"), "{line}");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["fields"]["message"].as_str())
        .collect();
    assert!(messages.contains(&"kwik serve started"), "{messages:?}");
    assert!(messages.contains(&"kwik serve stopped"), "{messages:?}");
}
