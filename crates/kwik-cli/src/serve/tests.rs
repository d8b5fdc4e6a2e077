//! The services end to end over in-memory pipes: every route, the cache, the file ranges, and
//! the refusals of bad input.

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use kwik_buffer::BufferPool;
use kwik_cache::BytesCache;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use super::dispatch::{RequestError, ServeError, ServiceStream};
use super::http::{MAX_BODY, MAX_HEAD};
use super::*;

/// Pipe capacity: smaller than the largest bodies, so back-pressure is exercised.
const PIPE: usize = 16 * 1024;

/// A root with `hello.txt`, `big.bin` (above the cache limit) and `data.bin`.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: Vec<u8>,
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::write(root.join("hello.txt"), b"hello, kwik\n").unwrap();
    std::fs::write(root.join("big.bin"), pattern(100_000)).unwrap();
    let data = pattern(200_000);
    std::fs::write(root.join("data.bin"), &data).unwrap();
    Fixture {
        _dir: dir,
        root,
        data,
    }
}

fn services(root: &Path) -> Services {
    let cache = BytesCache::builder()
        .capacity(64)
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    Services::builder(BufferPool::builder().buffer_size(4096).build().unwrap())
        .root(root)
        .cache(cache)
        .max_cached_file(64 * 1024)
        .build()
        .unwrap()
}

/// A pipe has no offsets: the services never jump on a stream that cannot be relayed on.
impl ServiceStream for DuplexStream {
    fn set_write_offset(&mut self, _offset: u64) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn relay_id(&self) -> Option<u64> {
        None
    }
}

/// A stream that reads a fixed request and records every write at its stream offset, as the
/// client of a merged download would receive it.
#[derive(Default)]
struct Placed {
    request: io::Cursor<Vec<u8>>,
    /// `(stream offset, bytes)` of each write, in order.
    writes: Vec<(u64, Vec<u8>)>,
    offset: u64,
    finished: bool,
}

impl Placed {
    fn new(request: &[u8]) -> Self {
        Self {
            request: io::Cursor::new(request.to_vec()),
            ..Self::default()
        }
    }

    /// The written ranges, adjacent writes merged: `(start, bytes)`.
    fn ranges(&self) -> Vec<(u64, Vec<u8>)> {
        let mut ranges: Vec<(u64, Vec<u8>)> = Vec::new();
        for (at, bytes) in &self.writes {
            match ranges.last_mut() {
                Some((start, data)) if *start + data.len() as u64 == *at => {
                    data.extend_from_slice(bytes);
                }
                _ => ranges.push((*at, bytes.clone())),
            }
        }
        ranges
    }
}

impl AsyncRead for Placed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = io::Read::read(&mut self.request, buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Placed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        assert!(!self.finished, "write after finish");
        let at = self.offset;
        self.writes.push((at, buf.to_vec()));
        self.offset += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.finished = true;
        Poll::Ready(Ok(()))
    }
}

impl ServiceStream for Placed {
    fn set_write_offset(&mut self, offset: u64) -> io::Result<()> {
        assert!(offset >= self.offset, "offsets only move forward");
        self.offset = offset;
        Ok(())
    }

    fn relay_id(&self) -> Option<u64> {
        None
    }
}

/// Serves `request` on a [`Placed`] stream.
async fn placed(services: &Services, request: &[u8]) -> (Result<(), ServeError>, Placed) {
    let mut stream = Placed::new(request);
    let result = serve_stream(services, &mut stream, None).await;
    (result, stream)
}

impl ServiceStream for &mut Placed {
    fn set_write_offset(&mut self, offset: u64) -> io::Result<()> {
        (**self).set_write_offset(offset)
    }

    fn relay_id(&self) -> Option<u64> {
        None
    }
}

/// Runs `client` against one served stream; returns the server's result and the client's.
async fn with_stream<F, T>(
    services: &Services,
    client: impl FnOnce(DuplexStream) -> F,
) -> (Result<(), ServeError>, T)
where
    F: Future<Output = T>,
{
    let (client_end, server_end) = tokio::io::duplex(PIPE);
    tokio::join!(serve_stream(services, server_end, None), client(client_end))
}

/// Writes `request`, finishes the write side, reads everything the server sends.
async fn exchange(services: &Services, request: &[u8]) -> (Result<(), ServeError>, Vec<u8>) {
    let request = request.to_vec();
    with_stream(services, |mut stream| async move {
        // A server refusing the request may close before reading all of it.
        if stream.write_all(&request).await.is_ok() {
            stream.shutdown().await.unwrap();
        }
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        out
    })
    .await
}

/// One parsed HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a byte string holding complete responses; `head_only` marks responses to HEAD.
fn replies(mut raw: &[u8], head_only: &[bool]) -> Vec<Reply> {
    let mut out = Vec::new();
    for &head in head_only {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = response.parse(raw).unwrap() else {
            panic!("incomplete response: {:?}", String::from_utf8_lossy(raw));
        };
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let status = response.code.unwrap();
        let body_len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let body_len = if head { 0 } else { body_len };
        out.push(Reply {
            status,
            headers,
            body: raw[len..len + body_len].to_vec(),
        });
        raw = &raw[len + body_len..];
    }
    assert!(
        raw.is_empty(),
        "trailing bytes: {:?}",
        String::from_utf8_lossy(raw)
    );
    out
}

async fn get(services: &Services, path: &str) -> Reply {
    let request = format!("GET {path} HTTP/1.1\r\nHost: kwik\r\nConnection: close\r\n\r\n");
    let (_, raw) = exchange(services, request.as_bytes()).await;
    replies(&raw, &[false]).remove(0)
}

#[tokio::test]
async fn echo_returns_every_byte() {
    let fx = fixture();
    let services = services(&fx.root);
    let payload = pattern(50_000);
    let sent = payload.clone();
    let (result, echoed) = with_stream(&services, |stream| async move {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let write = async {
            writer.write_all(b"ECHO\n").await.unwrap();
            writer.write_all(&sent).await.unwrap();
            writer.shutdown().await.unwrap();
        };
        let mut echoed = Vec::new();
        let read = reader.read_to_end(&mut echoed);
        let ((), read) = tokio::join!(write, read);
        read.unwrap();
        echoed
    })
    .await;
    result.unwrap();
    assert_eq!(echoed, payload);
}

#[tokio::test]
async fn file_serves_exactly_the_range() {
    let fx = fixture();
    let services = services(&fx.root);
    let (result, out) = exchange(&services, b"FILE data.bin 1000 150000\n").await;
    result.unwrap();
    let header = b"OK 150000 200000\n";
    assert_eq!(&out[..header.len()], header);
    assert_eq!(&out[header.len()..], &fx.data[1000..151_000]);

    // Two servers could split the file: the ranges concatenate to the file.
    let mut joined = Vec::new();
    for line in [
        "FILE data.bin 0 120000\r\n",
        "FILE /data.bin 120000 80000\n",
    ] {
        let (result, out) = exchange(&services, line.as_bytes()).await;
        result.unwrap();
        let newline = out.iter().position(|&b| b == b'\n').unwrap();
        joined.extend_from_slice(&out[newline + 1..]);
    }
    assert_eq!(joined, fx.data);
    // The chunks came from the pool: one buffer, reused.
    assert!(services.buffers.stats().hits >= 2);
}

#[tokio::test]
async fn file_refusals_are_err_lines() {
    let fx = fixture();
    let services = services(&fx.root);
    let cases: [(&[u8], &str); 8] = [
        (b"FILE data.bin 199999 2\n", "ERR out-of-range "),
        (
            b"FILE data.bin 18446744073709551615 1\n",
            "ERR out-of-range ",
        ),
        (b"FILE ../etc/passwd 0 1\n", "ERR bad-path "),
        (b"FILE %2e%2e/x 0 1\n", "ERR bad-path "),
        (b"FILE missing.bin 0 1\n", "ERR not-found "),
        (b"FILE data.bin -1 1\n", "ERR bad-request "),
        (b"FILE data.bin 0\n", "ERR bad-request "),
        (b"HELLO\n", "ERR unknown-service "),
    ];
    for (request, expected) in cases {
        let (result, out) = exchange(&services, request).await;
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with(expected), "{out:?} for {request:?}");
        assert!(
            out.ends_with('\n') && out.matches('\n').count() == 1,
            "{out:?}"
        );
        assert!(matches!(result, Err(ServeError::Request(_))), "{result:?}");
    }
}

#[tokio::test]
async fn a_part_is_written_at_its_stream_offset_without_an_ok_line() {
    let fx = fixture();
    let services = services(&fx.root);
    let (result, stream) = placed(&services, b"FILE data.bin 1000 150000 777\n").await;
    result.unwrap();
    // One contiguous range from the stream offset on: the file's bytes, nothing before.
    let ranges = stream.ranges();
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0].0, 777);
    assert!(ranges[0].1 == fx.data[1000..151_000], "part bytes differ");
    assert!(stream.finished);
    let files = services.snapshot().files;
    assert_eq!(
        (files.parts, files.part_bytes, files.downloads),
        (1, 150_000, 0)
    );

    // Blocks of 30 bytes every 70: each lands as far from the stream offset as it is from the
    // range's first byte.
    let (result, stream) = placed(&services, b"FILE data.bin 1000 100 500 30 70\n").await;
    result.unwrap();
    let ranges = stream.ranges();
    assert_eq!(ranges.len(), 2);
    assert_eq!((ranges[0].0, &ranges[0].1[..]), (500, &fx.data[1000..1030]));
    assert_eq!((ranges[1].0, &ranges[1].1[..]), (570, &fx.data[1070..1100]));
    assert!(stream.finished);
    assert_eq!(services.snapshot().files.part_bytes, 150_060);

    // A whole download on a stream that has offsets writes no jump: OK line, then the bytes.
    let (result, stream) = placed(&services, b"FILE data.bin 0 10\n").await;
    result.unwrap();
    let ranges = stream.ranges();
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0].0, 0);
    assert_eq!(
        &ranges[0].1[..],
        [b"OK 10 200000\n", &fx.data[..10]].concat()
    );
    assert!(stream.finished);
    assert_eq!(services.snapshot().files.downloads, 1);
}

#[tokio::test]
async fn a_refused_part_writes_nothing() {
    let fx = fixture();
    let services = services(&fx.root);
    let cases: [(&[u8], &str); 6] = [
        (b"FILE data.bin 0 10 4611686018427387900\n", "bad-offset"),
        (b"FILE data.bin 0 10 0 6 5\n", "bad-request"),
        (b"FILE data.bin 0 1 18446744073709551615\n", "bad-offset"),
        (b"FILE data.bin 199999 2 100\n", "out-of-range"),
        (b"FILE missing.bin 0 1 100\n", "not-found"),
        (b"FILE data.bin 0 1 -5\n", "bad-request"),
    ];
    for (request, code) in cases {
        let (result, stream) = placed(&services, request).await;
        let Err(ServeError::PartRefused(err)) = result else {
            panic!("{result:?} for {request:?}");
        };
        assert_eq!(err.code(), code, "{err} for {request:?}");
        assert!(stream.writes.is_empty(), "{request:?} wrote something");
        assert!(!stream.finished);
    }
    assert!(matches!(
        placed(&services, b"FILE data.bin 0 10 4611686018427387900\n")
            .await
            .0,
        Err(ServeError::PartRefused(RequestError::BadStreamOffset {
            stream_offset: 4_611_686_018_427_387_900,
            len: 10
        }))
    ));
    assert_eq!(services.snapshot().files.parts, 0);
}

#[tokio::test]
async fn service_line_bounds() {
    let fx = fixture();
    let services = services(&fx.root);
    let long = vec![b'A'; dispatch::MAX_SERVICE_LINE + 10];
    let (result, out) = exchange(&services, &long).await;
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with("ERR line-too-long ")
    );
    assert!(matches!(result, Err(ServeError::Request(_))));
    let (result, out) = exchange(&services, b"ECH").await;
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with("ERR bad-request ")
    );
    assert!(result.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_silent_stream_times_out() {
    let fx = fixture();
    let services = services(&fx.root);
    let (result, out) = with_stream(&services, |mut stream| async move {
        // Nothing is sent; the write side stays open.
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        out
    })
    .await;
    assert!(String::from_utf8(out).unwrap().starts_with("ERR timeout "));
    assert!(result.is_err());
}

#[tokio::test]
async fn index_and_keep_alive_with_pipelining() {
    let fx = fixture();
    let services = services(&fx.root);
    let request = "GET / HTTP/1.1\r\nHost: kwik\r\n\r\n\
                   HEAD / HTTP/1.1\r\nHost: kwik\r\n\r\n\
                   GET /hello.txt?x=1 HTTP/1.1\r\nHost: kwik\r\nConnection: close\r\n\r\n";
    let (result, raw) = exchange(&services, request.as_bytes()).await;
    result.unwrap();
    let r = replies(&raw, &[false, true, false]);
    assert_eq!(r[0].status, 200);
    assert!(String::from_utf8_lossy(&r[0].body).starts_with("kwik serve"));
    assert_eq!(r[1].status, 200);
    assert_eq!(r[1].header("content-length"), r[0].header("content-length"));
    assert!(r[1].body.is_empty());
    assert_eq!(r[2].body, b"hello, kwik\n");
    assert_eq!(r[2].header("connection"), Some("close"));
    assert_eq!(
        r[2].header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test]
async fn a_stream_closed_between_requests_ends_cleanly() {
    let fx = fixture();
    let services = services(&fx.root);
    let (result, raw) = exchange(&services, b"GET / HTTP/1.1\r\n\r\n").await;
    result.unwrap();
    assert_eq!(replies(&raw, &[false])[0].status, 200);
}

#[tokio::test]
async fn status_reports_requests_cache_and_buffers() {
    let fx = fixture();
    let services = services(&fx.root);
    get(&services, "/hello.txt").await;
    get(&services, "/hello.txt").await;
    let reply = get(&services, "/api/status").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["cache"]["hits"], 1);
    assert_eq!(json["cache"]["misses"], 1);
    assert_eq!(json["cache"]["entries"], 1);
    let requests = json["requests"].as_array().unwrap();
    let static_route = requests.iter().find(|r| r["route"] == "static").unwrap();
    assert_eq!(static_route["requests"], 2);
    assert!(json["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert!(json["buffer"]["gets"].is_u64());
    assert!(json.get("runtime").is_none());
}

#[tokio::test]
async fn status_includes_the_runtime_part_when_a_source_is_set() {
    struct Source;
    impl StatusSource for Source {
        fn runtime_status(&self) -> RuntimeStatus {
            RuntimeStatus {
                sessions: 3,
                streams: 7,
                paths: 4,
                ..RuntimeStatus::default()
            }
        }
    }
    let services = Services::builder(BufferPool::builder().build().unwrap())
        .status_source(Arc::new(Source))
        .build()
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&get(&services, "/api/status").await.body).unwrap();
    assert_eq!(json["runtime"]["sessions"], 3);
    assert_eq!(json["runtime"]["paths"], 4);
    assert_eq!(json["runtime"]["streams"], 7);
    assert!(json.get("cache").is_none());
}

#[tokio::test]
async fn echo_route_echoes_the_body_and_refuses_get() {
    let fx = fixture();
    let services = services(&fx.root);
    let body = pattern(20_000);
    let mut request = format!(
        "POST /api/echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    request.extend_from_slice(b"GET /api/echo HTTP/1.1\r\nConnection: close\r\n\r\n");
    let (result, raw) = exchange(&services, &request).await;
    result.unwrap();
    let r = replies(&raw, &[false, false]);
    assert_eq!((r[0].status, &r[0].body), (200, &body));
    assert_eq!(r[1].status, 405);
    assert_eq!(r[1].header("allow"), Some("POST, PUT"));
}

#[tokio::test]
async fn expect_continue_gets_an_interim_response() {
    let fx = fixture();
    let services = services(&fx.root);
    let (result, reply) = with_stream(&services, |mut stream| async move {
        let head = "PUT /api/echo HTTP/1.1\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\
                    Expect: 100-continue\r\nConnection: close\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut buf = vec![0; interim.len()];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, interim);
        stream.write_all(b"ping").await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        replies(&out, &[false]).remove(0)
    })
    .await;
    result.unwrap();
    assert_eq!(reply.body, b"ping");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test]
async fn repeated_static_requests_hit_the_cache() {
    let fx = fixture();
    let services = services(&fx.root);
    let first = get(&services, "/hello.txt").await;
    let second = get(&services, "/hello.txt").await;
    assert_eq!(first.header("x-kwik-cache"), Some("miss"));
    assert_eq!(second.header("x-kwik-cache"), Some("hit"));
    assert_eq!(first.body, second.body);
    let stats = services.cache().unwrap().stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
}

#[tokio::test]
async fn large_files_stream_without_entering_the_cache() {
    let fx = fixture();
    let services = services(&fx.root);
    for _ in 0..2 {
        let reply = get(&services, "/big.bin").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-kwik-cache"), Some("miss"));
        assert_eq!(
            reply.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(reply.body, pattern(100_000));
    }
    assert_eq!(services.cache().unwrap().stats().entries, 0);
}

#[tokio::test]
async fn traversal_and_missing_files_are_refused() {
    let fx = fixture();
    let services = services(&fx.root);
    assert_eq!(get(&services, "/../secret").await.status, 400);
    assert_eq!(get(&services, "/%2e%2e/secret").await.status, 400);
    assert_eq!(get(&services, "/a%5c..%5csecret").await.status, 400);
    assert_eq!(get(&services, "/%zz").await.status, 400);
    assert_eq!(get(&services, "/missing.txt").await.status, 404);
    let no_root = Services::builder(BufferPool::builder().build().unwrap())
        .build()
        .unwrap();
    assert_eq!(get(&no_root, "/hello.txt").await.status, 404);
    let put = "PUT /hello.txt HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let (_, raw) = exchange(&services, put.as_bytes()).await;
    let reply = replies(&raw, &[false]).remove(0);
    assert_eq!(
        (reply.status, reply.header("allow")),
        (405, Some("GET, HEAD"))
    );
}

#[tokio::test]
async fn malformed_requests_get_an_error_status_and_a_closed_stream() {
    let fx = fixture();
    let services = services(&fx.root);
    let too_large_body = format!(
        "POST /api/echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    let huge_head = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "p".repeat(MAX_HEAD));
    let cases: [(&[u8], u16); 6] = [
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n", 400),
        (
            b"POST /api/echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
            400,
        ),
        (
            b"POST /api/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        (too_large_body.as_bytes(), 413),
        (huge_head.as_bytes(), 431),
    ];
    for (request, status) in cases {
        let (result, raw) = exchange(&services, request).await;
        let reply = replies(&raw, &[false]).remove(0);
        assert_eq!(
            reply.status,
            status,
            "{:?}",
            String::from_utf8_lossy(request)
        );
        assert_eq!(reply.header("connection"), Some("close"));
        assert!(matches!(result, Err(ServeError::Http(_))), "{result:?}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&get(&services, "/api/status").await.body).unwrap();
    let invalid = json["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "invalid")
        .unwrap()
        .clone();
    assert_eq!(invalid["requests"], 6);
    assert_eq!(invalid["errors"], 6);
}

#[tokio::test(start_paused = true)]
async fn an_incomplete_head_times_out_with_408() {
    let fx = fixture();
    let services = services(&fx.root);
    let (result, raw) = with_stream(&services, |mut stream| async move {
        stream.write_all(b"GET / HTTP/1.1\r\nHost:").await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        out
    })
    .await;
    assert_eq!(replies(&raw, &[false])[0].status, 408);
    assert!(matches!(
        result,
        Err(ServeError::Http(http::HttpError::Timeout))
    ));
}

#[tokio::test]
async fn the_observer_sees_every_request() {
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Route, bool)>>);
    impl RequestObserver for Recorder {
        fn observe(&self, route: Route, _elapsed: Duration, ok: bool) {
            self.0.lock().unwrap().push((route, ok));
        }
    }
    let fx = fixture();
    let recorder = Arc::new(Recorder::default());
    let services = Services::builder(BufferPool::builder().build().unwrap())
        .root(&fx.root)
        .observer(recorder.clone())
        .build()
        .unwrap();
    get(&services, "/").await;
    get(&services, "/nope").await;
    get(&services, "/hello.txt").await;
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (Route::Index, true),
            (Route::Static, false),
            (Route::Static, true)
        ]
    );
}

#[test]
fn response_cache_follows_the_config() {
    let mut config = CacheConfig::default();
    let cache = response_cache(&config).unwrap().unwrap();
    assert!(cache.is_empty());
    config.enabled = false;
    assert!(response_cache(&config).unwrap().is_none());
}

#[test]
fn build_rejects_a_missing_root_and_a_zero_timeout() {
    let buffers = || BufferPool::builder().build().unwrap();
    let missing = Services::builder(buffers())
        .root("/definitely/not/here")
        .build();
    assert!(matches!(missing, Err(BuildError::Root { .. })));
    let zero = Services::builder(buffers())
        .request_timeout(Duration::ZERO)
        .build();
    assert!(matches!(zero, Err(BuildError::ZeroRequestTimeout)));
    let file = tempfile::NamedTempFile::new().unwrap();
    let not_dir = Services::builder(buffers()).root(file.path()).build();
    assert!(matches!(not_dir, Err(BuildError::RootNotDirectory(_))));
}
