//! Picks a stream's service from its first bytes, and the echo service.
//!
//! An HTTP request line is recognised by its method token (`GET /…`); anything else must be a
//! service line ending in `\n`: `ECHO` or `FILE <path> <offset> <len> [<part>]`. A
//! refused line is answered `ERR <code> <message>\n` and the stream is closed, except a refused
//! part (a `FILE` line with a stream offset), which writes nothing: its bytes would land in the
//! middle of another server's answer. docs/serve.md is the reference.

use std::io;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Services;
use super::file::{self, FileRequest};
use super::http::{self, HttpError};
use super::path::PathError;
use super::secondary::Secondaries;

/// Longest service line accepted, `\n` included: room for a `FILE` line with a path of
/// [`MAX_PATH_LEN`](super::path::MAX_PATH_LEN) bytes percent-encoded, and two 20-digit numbers.
pub(crate) const MAX_SERVICE_LINE: usize = 4096;

/// The HTTP methods whose token, followed by a space, opens an HTTP stream.
const HTTP_METHODS: [&[u8]; 9] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT",
];

/// Size of the echo service's copy buffer.
const ECHO_CHUNK: usize = 16 * 1024;

/// What the services need from a stream besides its bytes: writing at an offset, for the parts
/// of a download that several servers fill, and the id a primary relays part lines on.
pub(crate) trait ServiceStream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Moves the write offset forward to `offset`: the bytes before it are written by another
    /// server ([`kwik_transport::Stream::set_write_offset`]).
    fn set_write_offset(&mut self, offset: u64) -> io::Result<()>;

    /// The stream's id if part lines can be relayed on it to other servers, `None` otherwise.
    fn relay_id(&self) -> Option<u64>;
}

impl ServiceStream for kwik_transport::Stream {
    fn set_write_offset(&mut self, offset: u64) -> io::Result<()> {
        Self::set_write_offset(self, offset).map_err(io::Error::from)
    }

    fn relay_id(&self) -> Option<u64> {
        // Only client-initiated streams (low bit 0) can be relayed (docs/protocol.md §11).
        Some(self.id()).filter(|id| id & 1 == 0)
    }
}

/// Why a stream ended without its service completing. Each refusal was answered on the stream
/// (an `ERR` line or an HTTP error status) before it was closed, except a refused part.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ServeError {
    /// Reading or writing the stream (or a served file) failed.
    #[error("stream i/o failed")]
    Io(#[from] io::Error),
    /// A service line or `FILE` request was refused.
    #[error("request refused: {0}")]
    Request(#[from] RequestError),
    /// A part (`FILE` with a stream offset) was refused. Nothing was written: the caller should
    /// end the session, so that the client sees the part's path lost instead of waiting for
    /// bytes that will never come.
    #[error("part refused: {0}")]
    PartRefused(RequestError),
    /// An HTTP request was refused.
    #[error("http request refused: {0}")]
    Http(#[from] HttpError),
}

/// A refused service line or `FILE` request; [`RequestError::code`] is its wire code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RequestError {
    /// The line names no known service.
    #[error("unknown service")]
    UnknownService,
    /// No `\n` within [`MAX_SERVICE_LINE`] bytes.
    #[error("service line longer than {MAX_SERVICE_LINE} bytes")]
    LineTooLong,
    /// The stream ended before a full service line.
    #[error("stream ended inside the service line")]
    Truncated,
    /// No service line arrived within the request timeout.
    #[error("no service line within the request timeout")]
    Timeout,
    /// `FILE` without a path, an offset, a length and optionally a part's placement.
    #[error("expected FILE <path> <offset> <len> [<stream_offset> [<block> <stride>]]")]
    FileSyntax,
    /// The offset or the length is not a decimal integer that fits in 64 bits.
    #[error("{0} is not a decimal u64")]
    BadNumber(&'static str),
    /// The path was refused or names no file.
    #[error("{0}")]
    Path(#[from] PathError),
    /// A part's blocks do not tile its range: `block` is 0 or larger than `stride`.
    #[error("part blocks of {block} bytes every {stride} bytes")]
    BadBlocks {
        /// Requested block size.
        block: u64,
        /// Requested stride.
        stride: u64,
    },
    /// A part's `stream_offset + len` is past the largest stream offset (2^62 - 1).
    #[error("part {stream_offset}+{len} ends past the largest stream offset")]
    BadStreamOffset {
        /// Requested stream offset.
        stream_offset: u64,
        /// Requested length.
        len: u64,
    },
    /// `[offset, offset + len)` does not lie within the file.
    #[error("range {offset}+{len} is outside the file of {size} bytes")]
    OutOfRange {
        /// Requested first byte.
        offset: u64,
        /// Requested length.
        len: u64,
        /// The file's size.
        size: u64,
    },
}

impl RequestError {
    /// The stable code sent in the `ERR` line.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::UnknownService => "unknown-service",
            Self::LineTooLong => "line-too-long",
            Self::Truncated | Self::FileSyntax | Self::BadNumber(_) | Self::BadBlocks { .. } => {
                "bad-request"
            }
            Self::Timeout => "timeout",
            Self::Path(PathError::NoRoot | PathError::NotFound | PathError::OutsideRoot) => {
                "not-found"
            }
            Self::Path(PathError::Io(_)) => "io",
            Self::Path(_) => "bad-path",
            Self::OutOfRange { .. } => "out-of-range",
            Self::BadStreamOffset { .. } => "bad-offset",
        }
    }
}

/// What the first bytes selected.
#[derive(Debug, PartialEq, Eq)]
enum Selected {
    /// HTTP: the buffer holds the start of the first request.
    Http,
    /// A service line of `len` bytes (its `\n` included) ends at the front of the buffer.
    Line(usize),
}

/// Serves one stream to its end: reads the first bytes, runs the selected service, closes the
/// stream. Bad input is answered on the stream and returned as an error; nothing panics.
/// `FILE` downloads are split with `secondaries` when given and live.
pub(crate) async fn serve_stream<S>(
    services: &Services,
    mut stream: S,
    secondaries: Option<&Secondaries>,
) -> Result<(), ServeError>
where
    S: ServiceStream,
{
    let mut buf = BytesMut::with_capacity(MAX_SERVICE_LINE);
    let selected =
        match tokio::time::timeout(services.request_timeout, select(&mut stream, &mut buf)).await {
            Ok(Ok(selected)) => selected,
            Ok(Err(SelectError::Io(err))) => return Err(err.into()),
            Ok(Err(SelectError::Refused(err))) => return refuse(&mut stream, err).await,
            Err(_elapsed) => return refuse(&mut stream, RequestError::Timeout).await,
        };
    match selected {
        Selected::Http => http::serve(services, &mut stream, buf).await,
        Selected::Line(len) => {
            let line = buf.split_to(len);
            let part = is_part_line(&line);
            let result = match parse_line(&line) {
                Ok(Service::Echo) => echo(&mut stream, buf).await,
                Ok(Service::File(request)) => {
                    file::serve(services, &mut stream, &request, secondaries).await
                }
                Err(err) => Err(err.into()),
            };
            match result {
                Err(ServeError::Request(err)) if part => Err(ServeError::PartRefused(err)),
                Err(ServeError::Request(err)) => refuse(&mut stream, err).await,
                other => other,
            }
        }
    }
}

enum SelectError {
    Io(io::Error),
    Refused(RequestError),
}

/// Reads until the first bytes name a service.
async fn select<S>(stream: &mut S, buf: &mut BytesMut) -> Result<Selected, SelectError>
where
    S: AsyncRead + Unpin,
{
    let mut scanned = 0;
    loop {
        if let Some(selected) = classify(buf, scanned) {
            return Ok(selected);
        }
        scanned = buf.len();
        if buf.len() >= MAX_SERVICE_LINE {
            return Err(SelectError::Refused(RequestError::LineTooLong));
        }
        // The buffer was allocated with MAX_SERVICE_LINE bytes and never grows past them.
        let room = MAX_SERVICE_LINE - buf.len();
        let n = stream
            .read_buf(&mut (&mut *buf).limit(room))
            .await
            .map_err(SelectError::Io)?;
        if n == 0 {
            return Err(SelectError::Refused(RequestError::Truncated));
        }
    }
}

/// Decides on the bytes read so far, `None` if more are needed. `scanned` bytes were already
/// seen without a decision.
fn classify(buf: &[u8], scanned: usize) -> Option<Selected> {
    let first_space = buf.iter().position(|&b| b == b' ');
    let newline = buf[scanned..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| scanned + i);
    match (first_space, newline) {
        (Some(space), nl) if nl.is_none_or(|nl| space < nl) => {
            if HTTP_METHODS.contains(&&buf[..space]) {
                Some(Selected::Http)
            } else {
                nl.map(|nl| Selected::Line(nl + 1))
            }
        }
        (_, Some(nl)) => Some(Selected::Line(nl + 1)),
        (_, None) => None,
    }
}

/// A service named by a line.
#[derive(Debug, PartialEq, Eq)]
enum Service {
    Echo,
    File(FileRequest),
}

/// Parses a service line (its `\n`, and a `\r` before it, included).
fn parse_line(line: &[u8]) -> Result<Service, RequestError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| RequestError::UnknownService)?;
    if line == "ECHO" {
        return Ok(Service::Echo);
    }
    match line.strip_prefix("FILE ") {
        Some(args) => FileRequest::parse(args).map(Service::File),
        None => Err(RequestError::UnknownService),
    }
}

/// Whether `line` is a `FILE` line with the fields of a part, parsed or not.
fn is_part_line(line: &[u8]) -> bool {
    std::str::from_utf8(line)
        .ok()
        .and_then(|line| line.trim_end_matches(['\r', '\n']).strip_prefix("FILE "))
        .is_some_and(FileRequest::is_part)
}

/// Answers `ERR <code> <message>\n`, closes the stream and returns the refusal.
async fn refuse<S>(stream: &mut S, err: RequestError) -> Result<(), ServeError>
where
    S: AsyncWrite + Unpin,
{
    let line = format!("ERR {} {err}\n", err.code());
    // The peer may already be gone; the refusal is what the caller needs to hear about.
    let _ = stream.write_all(line.as_bytes()).await;
    let _ = stream.shutdown().await;
    Err(err.into())
}

/// Echo: writes back every byte after the `ECHO` line until the peer finishes, then finishes.
async fn echo<S>(stream: &mut S, mut pending: BytesMut) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if pending.has_remaining() {
        stream.write_all(&pending).await?;
    }
    pending.clear();
    let mut chunk = vec![0; ECHO_CHUNK];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&chunk[..n]).await?;
    }
    stream.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_recognises_http_by_its_method() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n", 0), Some(Selected::Http));
        assert_eq!(classify(b"POST ", 0), Some(Selected::Http));
        assert_eq!(classify(b"GET", 0), None);
        assert_eq!(classify(b"get / HTTP/1.1\r\n", 0), Some(Selected::Line(16)));
    }

    #[test]
    fn classify_finds_service_lines() {
        assert_eq!(classify(b"ECHO\nhello", 0), Some(Selected::Line(5)));
        assert_eq!(classify(b"FILE a 0 1", 0), None);
        assert_eq!(classify(b"FILE a 0 1\n", 5), Some(Selected::Line(11)));
    }

    #[test]
    fn parse_line_accepts_echo_and_file() {
        assert_eq!(parse_line(b"ECHO\n").unwrap(), Service::Echo);
        assert_eq!(parse_line(b"ECHO\r\n").unwrap(), Service::Echo);
        let Service::File(request) = parse_line(b"FILE a%20b.bin 10 20\n").unwrap() else {
            panic!("not a file request");
        };
        assert_eq!(
            (request.path.as_str(), request.offset, request.len),
            ("a b.bin", 10, 20)
        );
        assert_eq!(request.part, None);
        let Service::File(part) = parse_line(b"FILE a 10 20 4096\n").unwrap() else {
            panic!("not a file request");
        };
        assert_eq!(
            (part.offset, part.len, part.part.map(|p| p.stream_offset)),
            (10, 20, Some(4096))
        );
        assert!(is_part_line(b"FILE a 10 20 4096\r\n"));
        assert!(is_part_line(b"FILE a 10 20 -1\n"));
        assert!(!is_part_line(b"FILE a 10 20\n"));
        assert!(matches!(
            parse_line(b"NOPE\n"),
            Err(RequestError::UnknownService)
        ));
        assert!(matches!(
            parse_line(b"\xff\n"),
            Err(RequestError::UnknownService)
        ));
    }
}
