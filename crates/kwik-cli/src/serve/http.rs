//! HTTP/1.1 over one stream: request heads parsed by `httparse` within fixed bounds,
//! `Content-Length` bodies, keep-alive and pipelining, and the routes of `kwik serve`.
//!
//! Routes: `/` (a short text), `/api/status` (JSON), `/api/echo` (echoes the body), and any other
//! path a static file under the root, cached in the response cache up to a size limit and
//! streamed from disk above it. Responses carry `X-Kwik-Cache: hit|miss` for static files.

use std::fmt::Write as _;
use std::path::PathBuf;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::Services;
use super::dispatch::ServeError;
use super::file::send_range;
use super::observe::Route;
use super::path::{self, PathError};

/// Largest request head (request line and header fields) accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// Most header fields accepted in one request.
pub(crate) const MAX_HEADERS: usize = 48;
/// Largest request body accepted (`/api/echo` echoes it from memory).
pub(crate) const MAX_BODY: u64 = 1024 * 1024;
/// Bytes reserved per read while a head or body is incomplete.
const READ_CHUNK: usize = 8 * 1024;

/// The text served at `/`.
const INDEX: &str = "kwik serve: HTTP/1.1 over KWIK streams.\n\
    Routes: / (this text), /api/status (JSON), /api/echo (POST: echoes the body), \
    /<path> (static files under --root).\n";

/// A refused HTTP request; the stream was answered with [`HttpError::status`] and closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum HttpError {
    /// The head is not valid HTTP/1.x.
    #[error("malformed request head: {0}")]
    Parse(httparse::Error),
    /// The head is longer than [`MAX_HEAD`].
    #[error("request head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header fields.
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// `Content-Length` is not a decimal number, or is given twice with different values.
    #[error("invalid content-length")]
    BadContentLength,
    /// The body is larger than [`MAX_BODY`].
    #[error("body of {0} bytes is larger than {MAX_BODY}")]
    BodyTooLarge(u64),
    /// A `Transfer-Encoding` was given; only `Content-Length` bodies are supported.
    #[error("transfer-encoding is not supported")]
    TransferEncoding,
    /// The stream ended inside a request.
    #[error("stream ended inside a request")]
    Truncated,
    /// A request head or body did not arrive within the request timeout.
    #[error("request not received within the request timeout")]
    Timeout,
}

impl HttpError {
    /// The status the refusal is answered with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::Parse(_) | Self::BadContentLength | Self::Truncated => 400,
            Self::Timeout => 408,
            Self::BodyTooLarge(_) => 413,
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::TransferEncoding => 501,
        }
    }
}

/// The request methods the routes distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Post,
    Put,
    Other,
}

/// An owned request head.
#[derive(Debug)]
struct Request {
    method: Method,
    /// The request target as sent (origin form: path and query).
    target: String,
    keep_alive: bool,
    content_length: u64,
    expect_continue: bool,
    content_type: Option<String>,
}

impl Request {
    /// The target's path, without the query.
    fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }
}

/// Parses a complete head at the front of `buf`: `Ok(None)` if more bytes are needed, else the
/// request and the head's length.
fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(err) => return Err(HttpError::Parse(err)),
    };
    // `Complete` guarantees method, path and version.
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HttpError::Parse(httparse::Error::Token));
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        _ => Method::Other,
    };
    // HTTP/1.1 keeps the stream open unless told otherwise; HTTP/1.0 closes unless asked.
    let mut keep_alive = version == 1;
    let mut content_length = None;
    let mut expect_continue = false;
    let mut content_type = None;
    for header in parsed.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = parse_content_length(header.value)?;
            if content_length.is_some_and(|previous| previous != value) {
                return Err(HttpError::BadContentLength);
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::TransferEncoding);
        } else if name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|&b| b == b',') {
                let option = option.trim_ascii();
                if option.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = header
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = std::str::from_utf8(header.value).ok().map(str::to_owned);
        }
    }
    let request = Request {
        method,
        target: target.to_owned(),
        keep_alive,
        content_length: content_length.unwrap_or(0),
        expect_continue,
        content_type,
    };
    Ok(Some((request, len)))
}

fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadContentLength);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or(HttpError::BadContentLength)
}

/// A response about to be written.
struct Response {
    status: u16,
    content_type: &'static str,
    body: Body,
    /// `X-Kwik-Cache` for static files.
    cache: Option<&'static str>,
    /// `Allow` for a 405.
    allow: Option<&'static str>,
}

enum Body {
    Bytes(Bytes),
    /// `len` bytes of `file` from its current position.
    File {
        file: File,
        len: u64,
    },
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self::with_body(status, content_type, Body::Bytes(body.into()))
    }

    fn with_body(status: u16, content_type: &'static str, body: Body) -> Self {
        Self {
            status,
            content_type,
            body,
            cache: None,
            allow: None,
        }
    }

    /// A short plain-text error page for `status`.
    fn error(status: u16) -> Self {
        Self::new(
            status,
            "text/plain; charset=utf-8",
            format!("{}\n", reason(status)),
        )
    }

    fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::error(405)
        }
    }

    fn body_len(&self) -> u64 {
        match &self.body {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// Serves requests on `stream` until the client closes, asks to close, or is refused. `buf`
/// holds the bytes already read (the start of the first request).
pub(crate) async fn serve<S>(
    services: &Services,
    stream: &mut S,
    mut buf: BytesMut,
) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let head = tokio::time::timeout(services.request_timeout, read_head(stream, &mut buf));
        let (request, head_len) = match head.await {
            Ok(Ok(Some(parsed))) => parsed,
            // The client closed between requests: the normal end of a keep-alive stream.
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(HeadError::Io(err))) => return Err(err.into()),
            Ok(Err(HeadError::Refused(err))) => return refuse(services, stream, err).await,
            // Idle between requests: close quietly, as servers do with idle keep-alive streams.
            Err(_elapsed) if buf.is_empty() => return Ok(()),
            Err(_elapsed) => return refuse(services, stream, HttpError::Timeout).await,
        };
        let started = Instant::now();
        buf.advance(head_len);
        if request.content_length > MAX_BODY {
            return refuse(
                services,
                stream,
                HttpError::BodyTooLarge(request.content_length),
            )
            .await;
        }
        // Checked above: the length fits in MAX_BODY, hence in usize.
        let body_len = request.content_length as usize;
        if request.expect_continue && buf.len() < body_len {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = tokio::time::timeout(
            services.request_timeout,
            read_body(stream, &mut buf, body_len),
        );
        let body = match body.await {
            Ok(Ok(body)) => body,
            Ok(Err(HeadError::Io(err))) => return Err(err.into()),
            Ok(Err(HeadError::Refused(err))) => return refuse(services, stream, err).await,
            Err(_elapsed) => return refuse(services, stream, HttpError::Timeout).await,
        };
        let (route, response) = respond(services, &request, body).await;
        let status = response.status;
        write_response(services, stream, &request, response, request.keep_alive).await?;
        services.observe(route, started.elapsed(), status < 400);
        if !request.keep_alive {
            stream.shutdown().await?;
            return Ok(());
        }
    }
}

enum HeadError {
    Io(std::io::Error),
    Refused(HttpError),
}

impl From<std::io::Error> for HeadError {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}

impl From<HttpError> for HeadError {
    fn from(err: HttpError) -> Self {
        Self::Refused(err)
    }
}

/// Reads until `buf` starts with a complete head; `Ok(None)` on a clean end of stream before
/// any byte of a new request.
async fn read_head<S>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Option<(Request, usize)>, HeadError>
where
    S: AsyncRead + Unpin,
{
    loop {
        if !buf.is_empty() {
            if let Some(parsed) = parse_head(buf)? {
                return Ok(Some(parsed));
            }
            if buf.len() >= MAX_HEAD {
                return Err(HttpError::HeadTooLarge.into());
            }
        }
        let room = MAX_HEAD - buf.len();
        buf.reserve(room.min(READ_CHUNK));
        let n = stream.read_buf(&mut (&mut *buf).limit(room)).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HttpError::Truncated.into())
            };
        }
    }
}

/// Reads a body of `len` bytes (at most [`MAX_BODY`]), some of which may already be in `buf`.
async fn read_body<S>(stream: &mut S, buf: &mut BytesMut, len: usize) -> Result<Bytes, HeadError>
where
    S: AsyncRead + Unpin,
{
    while buf.len() < len {
        let missing = len - buf.len();
        buf.reserve(missing.min(READ_CHUNK));
        let n = stream.read_buf(&mut (&mut *buf).limit(missing)).await?;
        if n == 0 {
            return Err(HttpError::Truncated.into());
        }
    }
    Ok(buf.split_to(len).freeze())
}

/// Answers a refused request with its status, closes the stream, counts it.
async fn refuse<S>(services: &Services, stream: &mut S, err: HttpError) -> Result<(), ServeError>
where
    S: AsyncWrite + Unpin,
{
    let response = Response::error(err.status());
    let head = response_head(&response, response.body_len(), false);
    // The peer may already be gone; the refusal is what the caller needs to hear about.
    let _ = stream.write_all(head.as_bytes()).await;
    if let Body::Bytes(body) = &response.body {
        let _ = stream.write_all(body).await;
    }
    let _ = stream.shutdown().await;
    services.observe(Route::Invalid, std::time::Duration::ZERO, false);
    Err(err.into())
}

/// Routes a request and builds its response.
async fn respond(services: &Services, request: &Request, body: Bytes) -> (Route, Response) {
    let readable = matches!(request.method, Method::Get | Method::Head);
    match request.path() {
        "/" => {
            let response = if readable {
                Response::new(200, "text/plain; charset=utf-8", INDEX)
            } else {
                Response::method_not_allowed("GET, HEAD")
            };
            (Route::Index, response)
        }
        "/api/status" => {
            let response = if !readable {
                Response::method_not_allowed("GET, HEAD")
            } else {
                match serde_json::to_vec(&services.snapshot()) {
                    Ok(json) => Response::new(200, "application/json", json),
                    Err(_) => Response::error(500),
                }
            };
            (Route::Status, response)
        }
        "/api/echo" => {
            let response = if matches!(request.method, Method::Post | Method::Put) {
                let mut response = Response::new(200, "application/octet-stream", body);
                if request.content_type.as_deref().is_some_and(is_text) {
                    response.content_type = "text/plain; charset=utf-8";
                }
                response
            } else {
                Response::method_not_allowed("POST, PUT")
            };
            (Route::Echo, response)
        }
        path if readable => (Route::Static, static_file(services, path).await),
        _ => (Route::Static, Response::method_not_allowed("GET, HEAD")),
    }
}

fn is_text(content_type: &str) -> bool {
    content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("text/")
}

/// A static file: from the cache, read and cached, or streamed when too large to cache.
async fn static_file(services: &Services, target: &str) -> Response {
    let resolved = match path::percent_decode(target) {
        Ok(decoded) => path::resolve(services.root.as_deref(), &decoded).await,
        Err(err) => Err(err),
    };
    let file_path = match resolved {
        Ok(file_path) => file_path,
        Err(PathError::NoRoot | PathError::NotFound | PathError::OutsideRoot) => {
            return Response::error(404);
        }
        Err(PathError::Io(_)) => return Response::error(500),
        Err(_) => return Response::error(400),
    };
    let content_type = content_type(&file_path);
    if let Some(body) = services.cache().and_then(|cache| cache.get(&file_path)) {
        return Response {
            cache: Some("hit"),
            ..Response::new(200, content_type, body)
        };
    }
    match load(services, file_path).await {
        Ok(body) => Response {
            cache: Some("miss"),
            ..Response::with_body(200, content_type, body)
        },
        Err(_) => Response::error(500),
    }
}

/// Reads a file for serving: into memory and the cache if it is small enough, else opened for
/// streaming.
async fn load(services: &Services, file_path: PathBuf) -> std::io::Result<Body> {
    let mut file = File::open(&file_path).await?;
    let len = file.metadata().await?.len();
    let Some(cache) = services.cache().filter(|_| len <= services.max_cached_file) else {
        return Ok(Body::File { file, len });
    };
    // The capacity comes from the file system, and is bounded by `max_cached_file`; `take`
    // bounds the read even if the file grew since.
    let mut data = Vec::with_capacity(len as usize);
    (&mut file)
        .take(services.max_cached_file)
        .read_to_end(&mut data)
        .await?;
    let body = Bytes::from(data);
    // Too heavy for the cache's budget: serve it uncached.
    let _ = cache.insert(file_path, body.clone());
    Ok(Body::Bytes(body))
}

fn content_type(path: &std::path::Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// Writes the head and, unless the request was `HEAD`, the body.
async fn write_response<S>(
    services: &Services,
    stream: &mut S,
    request: &Request,
    response: Response,
    keep_alive: bool,
) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let len = response.body_len();
    let head = response_head(&response, len, keep_alive);
    let send_body = request.method != Method::Head;
    match response.body {
        Body::Bytes(body) if send_body && body.len() <= READ_CHUNK => {
            // Small responses leave in one write: head and body together.
            let mut out = BytesMut::with_capacity(head.len() + body.len());
            out.put_slice(head.as_bytes());
            out.put_slice(&body);
            stream.write_all(&out).await?;
        }
        Body::Bytes(body) => {
            stream.write_all(head.as_bytes()).await?;
            if send_body {
                stream.write_all(&body).await?;
            }
        }
        Body::File { mut file, len } => {
            stream.write_all(head.as_bytes()).await?;
            if send_body {
                send_range(&services.buffers, &mut file, len, stream).await?;
            }
        }
    }
    stream.flush().await
}

fn response_head(response: &Response, len: u64, keep_alive: bool) -> String {
    let mut head = String::with_capacity(160);
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nServer: kwik\r\nContent-Type: {}\r\nContent-Length: {len}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
    );
    if let Some(cache) = response.cache {
        let _ = write!(head, "X-Kwik-Cache: {cache}\r\n");
    }
    if let Some(allow) = response.allow {
        let _ = write!(head, "Allow: {allow}\r\n");
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    head
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<Option<(Request, usize)>, HttpError> {
        parse_head(head.as_bytes())
    }

    #[test]
    fn parses_a_complete_head() {
        let raw = "POST /api/echo?x=1 HTTP/1.1\r\nContent-Length: 5\r\n\
                   Content-Type: text/plain\r\nExpect: 100-continue\r\n\r\nhello";
        let (request, len) = parse(raw).unwrap().unwrap();
        assert_eq!(len, raw.len() - 5);
        assert_eq!(request.method, Method::Post);
        assert_eq!(request.path(), "/api/echo");
        assert_eq!(request.content_length, 5);
        assert!(request.keep_alive && request.expect_continue);
        assert_eq!(request.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn partial_heads_ask_for_more() {
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn connection_header_decides_keep_alive() {
        let (r, _) = parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
        let (r, _) = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        let (r, _) = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.keep_alive);
    }

    #[test]
    fn bad_heads_are_typed_errors() {
        assert!(matches!(
            parse("GET / HTTP/2.0\r\n\r\n"),
            Err(HttpError::Parse(_))
        ));
        assert!(matches!(
            parse("GET /\x01 HTTP/1.1\r\n\r\n"),
            Err(HttpError::Parse(_))
        ));
        let bad_len = "POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n";
        assert!(matches!(parse(bad_len), Err(HttpError::BadContentLength)));
        let plus = "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n";
        assert!(matches!(parse(plus), Err(HttpError::BadContentLength)));
        let twice = "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert!(matches!(parse(twice), Err(HttpError::BadContentLength)));
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse(chunked), Err(HttpError::TransferEncoding)));
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert!(matches!(parse(&many), Err(HttpError::TooManyHeaders)));
    }

    #[test]
    fn heads_carry_the_cache_and_allow_fields() {
        let mut response = Response::method_not_allowed("GET, HEAD");
        response.cache = Some("hit");
        let head = response_head(&response, 3, false);
        assert!(head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(head.contains("Allow: GET, HEAD\r\n"));
        assert!(head.contains("X-Kwik-Cache: hit\r\n"));
        assert!(head.contains("Connection: close\r\n"));
        assert!(head.ends_with("Content-Length: 3\r\nX-Kwik-Cache: hit\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n"));
    }
}
