//! HTTP/1.1 over a KWIK stream, with a response cache: a hand-written client sends requests
//! one after another on one stream (keep-alive) to a small server whose responses come from the
//! runtime's kwik cache when they can, marked `X-Kwik-Cache: hit|miss` as `kwik serve` marks
//! them.
//!
//! ```sh
//! cargo run -p kwik --example http                           # client + server in-process
//! cargo run -p kwik --example http -- --server --listen 127.0.0.1:4433
//! cargo run -p kwik --example http -- --connect 127.0.0.1:4433 --insecure
//! # against `kwik serve --insecure-dev-self-signed --root .`, which caches static files:
//! cargo run -p kwik --example http -- --connect 127.0.0.1:4433 --insecure --cached-path /README.md
//! ```
//!
//! Routes: `GET /` (a page, cached), `GET /api/status` (JSON: pool, buffer and cache
//! statistics, never cached), `POST /api/echo` (the body back).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use common::{Mode, NetArgs, Server};
use kwik::transport::{ErrorCode, Stream};
use kwik::{Identity, Runtime, Trust};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest request or response head read (as `kwik serve`).
const MAX_HEAD: usize = 16 * 1024;

/// Largest request body the server reads.
const MAX_BODY: usize = 1024 * 1024;

/// Most header fields parsed in one head.
const MAX_FIELDS: usize = 48;

/// HTTP/1.1 over one KWIK stream, with a response cache.
#[derive(Debug, Clone, Parser)]
struct Options {
    /// Client: the path requested twice to show a cache miss then a hit.
    #[arg(long, default_value = "/")]
    cached_path: String,
    /// Client: the body sent to /api/echo.
    #[arg(long, default_value = "hello over KWIK")]
    echo: String,
    #[command(flatten)]
    net: NetArgs,
}

/// One request and its response, as the client saw them.
#[derive(Debug)]
struct Exchange {
    method: &'static str,
    path: String,
    status: u16,
    /// The `X-Kwik-Cache` field, if present.
    cache: Option<String>,
    content_type: Option<String>,
    body: Bytes,
    took: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    match options.net.mode() {
        Mode::Server(addr) => {
            let identity = options.net.identity()?;
            common::serve_until_ctrl_c("HTTP over KWIK", addr, &identity, start_server).await?;
        }
        Mode::Client(addr) => {
            let trust = options.net.trust()?;
            common::connect(addr, &trust, async |runtime, addr, trust| {
                client(runtime, addr, trust, &options).await
            })
            .await?;
        }
        Mode::InProcess => {
            run(&options).await?;
        }
    }
    Ok(())
}

/// Client and server in one process, on an ephemeral port; everything stopped on return.
async fn run(options: &Options) -> anyhow::Result<Vec<Exchange>> {
    common::in_process(
        "HTTP over KWIK",
        start_server,
        async |runtime, addr, trust| client(runtime, addr, trust, options).await,
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

fn start_server(
    runtime: &Runtime,
    addr: SocketAddr,
    identity: &Identity,
) -> anyhow::Result<Server> {
    let listener = runtime.listen(addr, identity)?;
    let runtime = runtime.clone();
    Ok(Server::start(listener, move |session| {
        let runtime = runtime.clone();
        common::serve_streams(session, move |_, stream| {
            serve_http(stream, runtime.clone())
        })
    }))
}

/// A parsed request head.
struct Request {
    method: String,
    path: String,
    content_length: usize,
    close: bool,
}

/// HTTP/1.1 on one stream: requests answered in order until the client finishes its side or
/// asks to close.
async fn serve_http(mut stream: Stream, runtime: Runtime) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some((request, head_len)) = read_request(&mut stream, &mut buf).await? else {
            break;
        };
        buf.drain(..head_len);
        if request.content_length > MAX_BODY {
            respond(
                &mut stream,
                413,
                "text/plain",
                None,
                b"body too large\n",
                true,
            )
            .await?;
            break;
        }
        fill(&mut stream, &mut buf, request.content_length).await?;
        let body: Vec<u8> = buf.drain(..request.content_length).collect();
        route(&mut stream, &runtime, &request, &body).await?;
        if request.close {
            break;
        }
    }
    stream.shutdown().await?;
    Ok(())
}

/// Reads a request head into `buf`; `None` when the stream ended between requests.
async fn read_request(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Option<(Request, usize)>> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut parsed = httparse::Request::new(&mut fields);
        if let httparse::Status::Complete(head_len) = parsed.parse(buf)? {
            let content_length = content_length(parsed.headers)?;
            let close = parsed.version == Some(0)
                || parsed.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("connection")
                        && h.value.eq_ignore_ascii_case(b"close")
                });
            let request = Request {
                method: parsed.method.unwrap_or_default().to_owned(),
                path: parsed.path.unwrap_or_default().to_owned(),
                content_length,
                close,
            };
            return Ok(Some((request, head_len)));
        }
        ensure!(buf.len() < MAX_HEAD, "request head over {MAX_HEAD} bytes");
        if read_more(stream, buf).await? == 0 {
            ensure!(buf.is_empty(), "stream ended inside a request head");
            return Ok(None);
        }
    }
}

async fn route(
    stream: &mut Stream,
    runtime: &Runtime,
    request: &Request,
    body: &[u8],
) -> anyhow::Result<()> {
    let path = request.path.split('?').next().unwrap_or_default();
    let close = request.close;
    match (request.method.as_str(), path) {
        ("GET", "/") => {
            let (page, cache) = cached(runtime, "/", render_index);
            respond(stream, 200, "text/plain", cache, &page, close).await
        }
        ("GET", "/api/status") => {
            let status = status_json(runtime).to_string();
            respond(
                stream,
                200,
                "application/json",
                None,
                status.as_bytes(),
                close,
            )
            .await
        }
        ("POST" | "PUT", "/api/echo") => {
            respond(stream, 200, "application/octet-stream", None, body, close).await
        }
        (_, "/" | "/api/status" | "/api/echo") => {
            respond(
                stream,
                405,
                "text/plain",
                None,
                b"method not allowed\n",
                close,
            )
            .await
        }
        _ => respond(stream, 404, "text/plain", None, b"not found\n", close).await,
    }
}

/// The response under `key` from the runtime's cache, or made by `make` and cached; with the
/// `X-Kwik-Cache` value to send (none when the cache is disabled).
fn cached(
    runtime: &Runtime,
    key: &str,
    make: impl FnOnce() -> Bytes,
) -> (Bytes, Option<&'static str>) {
    let Some(cache) = runtime.cache() else {
        return (make(), None);
    };
    if let Some(hit) = cache.get(key) {
        return (hit, Some("hit"));
    }
    let made = make();
    // A response too heavy for the cache is simply served uncached.
    let _ = cache.insert(key.to_owned(), made.clone());
    (made, Some("miss"))
}

fn render_index() -> Bytes {
    Bytes::from_static(
        b"kwik HTTP example over KWIK streams\n\
          GET  /            this page (from the response cache after the first request)\n\
          GET  /api/status  pool, buffer and cache statistics (JSON, never cached)\n\
          POST /api/echo    the request body back\n",
    )
}

fn status_json(runtime: &Runtime) -> serde_json::Value {
    let pool = runtime.pool().stats();
    let buffers = runtime.buffers().stats();
    let mut status = serde_json::json!({
        "pool": {
            "workers": pool.workers,
            "queued": pool.queued,
            "running": pool.running,
            "completed": pool.completed,
        },
        "buffer": {
            "gets": buffers.gets,
            "hits": buffers.hits,
            "misses": buffers.misses,
            "pooled": buffers.pooled,
        },
    });
    if let Some(cache) = runtime.cache() {
        let stats = cache.stats();
        status["cache"] = serde_json::json!({
            "entries": stats.entries,
            "hits": stats.hits,
            "misses": stats.misses,
            "hit_ratio": stats.hit_ratio(),
        });
    }
    status
}

async fn respond(
    stream: &mut Stream,
    status: u16,
    content_type: &str,
    cache: Option<&str>,
    body: &[u8],
    close: bool,
) -> anyhow::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        _ => "",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(cache) = cache {
        head.push_str(&format!("X-Kwik-Cache: {cache}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shared by both sides
// ---------------------------------------------------------------------------------------------

/// Reads what the stream has into `buf`; 0 at its end.
async fn read_more(stream: &mut Stream, buf: &mut Vec<u8>) -> anyhow::Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Reads until `buf` holds at least `len` bytes.
async fn fill(stream: &mut Stream, buf: &mut Vec<u8>, len: usize) -> anyhow::Result<()> {
    while buf.len() < len {
        ensure!(
            read_more(stream, buf).await? > 0,
            "stream ended inside a body"
        );
    }
    Ok(())
}

fn content_length(fields: &[httparse::Header<'_>]) -> anyhow::Result<usize> {
    match fields
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        Some(h) => Ok(std::str::from_utf8(h.value)?.trim().parse()?),
        None => Ok(0),
    }
}

fn field(fields: &[httparse::Header<'_>], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Sends the requests on one stream, one after another, printing each exchange.
async fn client(
    runtime: &Runtime,
    addr: SocketAddr,
    trust: &Trust,
    options: &Options,
) -> anyhow::Result<Vec<Exchange>> {
    let session = runtime.dial(addr, trust).await?;
    let mut stream = session.open_stream().await?;
    let mut buf = Vec::new();
    let echo = options.echo.as_bytes();
    let requests: [(&'static str, &str, &[u8]); 5] = [
        ("GET", &options.cached_path, b""),
        ("GET", &options.cached_path, b""),
        ("POST", "/api/echo", echo),
        ("GET", &options.cached_path, b""),
        ("GET", "/api/status", b""),
    ];
    let mut exchanges = Vec::new();
    for (i, (method, path, body)) in requests.into_iter().enumerate() {
        let last = i == requests.len() - 1;
        let started = Instant::now();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if last {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let exchange = read_response(&mut stream, &mut buf, method, path)
            .await
            .with_context(|| format!("{method} {path}"))?;
        let exchange = Exchange {
            took: started.elapsed(),
            ..exchange
        };
        print_exchange(&exchange);
        exchanges.push(exchange);
    }
    // The last request said `Connection: close`: the server finished the stream (and stopped
    // reading it), so there is nothing left to send; dropping it is the end.
    drop(stream);
    session.close(ErrorCode::NO_ERROR, "http example done");
    session.closed().await;
    Ok(exchanges)
}

async fn read_response(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    method: &'static str,
    path: &str,
) -> anyhow::Result<Exchange> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut parsed = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(head_len) = parsed.parse(buf)? {
            let status = parsed.code.context("no status code")?;
            let len = content_length(parsed.headers)?;
            let cache = field(parsed.headers, "x-kwik-cache");
            let content_type = field(parsed.headers, "content-type");
            fill(stream, buf, head_len + len).await?;
            let body = Bytes::copy_from_slice(&buf[head_len..head_len + len]);
            buf.drain(..head_len + len);
            return Ok(Exchange {
                method,
                path: path.to_owned(),
                status,
                cache,
                content_type,
                body,
                took: Duration::ZERO,
            });
        }
        ensure!(buf.len() < MAX_HEAD, "response head over {MAX_HEAD} bytes");
        if read_more(stream, buf).await? == 0 {
            bail!("stream ended before the response");
        }
    }
}

fn print_exchange(exchange: &Exchange) {
    println!(
        "{:<4} {:<12} -> {} {:<26} {:>8}  x-kwik-cache: {:<4}  {}",
        exchange.method,
        exchange.path,
        exchange.status,
        exchange.content_type.as_deref().unwrap_or("-"),
        common::bytes(exchange.body.len() as u64),
        exchange.cache.as_deref().unwrap_or("-"),
        common::ms(exchange.took),
    );
    if exchange.path.starts_with("/api/") {
        println!(
            "     {}",
            String::from_utf8_lossy(&exchange.body).trim_end()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repeated_requests_hit_the_cache() {
        let options = Options::parse_from(["http", "--echo", "ping"]);
        let exchanges = run(&options).await.unwrap();
        assert_eq!(exchanges.len(), 5);
        assert!(exchanges.iter().all(|e| e.status == 200), "{exchanges:?}");
        let caches: Vec<_> = exchanges.iter().map(|e| e.cache.as_deref()).collect();
        assert_eq!(caches, [Some("miss"), Some("hit"), None, Some("hit"), None]);
        assert_eq!(exchanges[0].body, exchanges[1].body);
        assert_eq!(&exchanges[2].body[..], b"ping");
        let status: serde_json::Value = serde_json::from_slice(&exchanges[4].body).unwrap();
        assert_eq!(status["cache"]["hits"], 2);
        assert_eq!(status["cache"]["entries"], 1);
        assert!(status["pool"]["completed"].as_u64().unwrap() > 0);
    }
}
