//! The file service: `FILE <path> <offset> <len>` answers `OK <len> <size>\n` and then exactly
//! bytes `[offset, offset + len)` of the file, streamed in pooled chunks.
//!
//! With secondaries ([`Secondaries`]) the primary splits a download: it relays to each secondary
//! a *part* line `FILE <path> <offset> <len> <stream_offset>`, which the secondary answers by
//! writing its bytes at `stream_offset` of the same stream (no `OK` line), while the primary
//! writes the `OK` line and its own part, then finishes the stream at its full length.

use std::io::{self, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};

use kwik_buffer::BufferPool;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use super::Services;
use super::dispatch::{RequestError, ServeError, ServiceStream};
use super::path::{self, PathError};
use super::secondary::Secondaries;
use super::status::FileStatus;

/// Longest decimal u64.
const MAX_DIGITS: usize = 20;

/// Largest stream offset a part may end at: QUIC stream offsets are varints below 2^62.
pub(crate) const MAX_STREAM_OFFSET: u64 = (1 << 62) - 1;

/// Ranges shorter than this are served by the primary alone: relaying a part costs a round trip
/// through the client and a file open on the secondary, more than sending 64 KiB.
pub(crate) const MIN_SPLIT: u64 = 64 * 1024;

/// A parsed `FILE` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRequest {
    /// The path relative to the root, percent-decoded.
    pub(crate) path: String,
    /// First byte to send.
    pub(crate) offset: u64,
    /// Number of bytes to send.
    pub(crate) len: u64,
    /// For a part (the optional fourth field): where in the stream the bytes go. A part is
    /// answered with the bytes alone, written from this offset on, and no `OK` line.
    pub(crate) stream_offset: Option<u64>,
}

impl FileRequest {
    /// Parses the arguments after `FILE `: `<path> <offset> <len> [<stream_offset>]`, single
    /// spaces, the path percent-encoded (so that it holds no space), the numbers plain decimal.
    /// A part must end within [`MAX_STREAM_OFFSET`].
    pub(crate) fn parse(args: &str) -> Result<Self, RequestError> {
        let mut fields = args.split(' ');
        let (Some(path), Some(offset), Some(len), stream_offset, None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(RequestError::FileSyntax);
        };
        if path.is_empty() {
            return Err(RequestError::FileSyntax);
        }
        let request = Self {
            path: path::percent_decode(path)?,
            offset: parse_u64(offset, "offset")?,
            len: parse_u64(len, "len")?,
            stream_offset: stream_offset
                .map(|field| parse_u64(field, "stream_offset"))
                .transpose()?,
        };
        if let Some(at) = request.stream_offset
            && at
                .checked_add(request.len)
                .is_none_or(|end| end > MAX_STREAM_OFFSET)
        {
            return Err(RequestError::BadStreamOffset {
                stream_offset: at,
                len: request.len,
            });
        }
        Ok(request)
    }

    /// Whether `args` (after `FILE `) has the four fields of a part, parsed or not: a refused
    /// part is not answered with an `ERR` line (docs/serve.md, "Parts").
    pub(crate) fn is_part(args: &str) -> bool {
        args.split(' ').count() == 4
    }

    /// The part line that asks another server for `len` bytes from `offset`, to be written at
    /// `stream_offset`.
    fn part_line(&self, offset: u64, len: u64, stream_offset: u64) -> String {
        format!(
            "FILE {} {offset} {len} {stream_offset}\n",
            path::percent_encode(&self.path)
        )
    }
}

/// Counts of the file service, for `/api/status`.
#[derive(Debug, Default)]
pub(crate) struct FileCounters {
    downloads: AtomicU64,
    download_bytes: AtomicU64,
    parts: AtomicU64,
    part_bytes: AtomicU64,
}

impl FileCounters {
    /// A download was answered; this server sent `bytes` of it (less than its length when
    /// secondaries sent the rest).
    fn download_served(&self, bytes: u64) {
        self.downloads.fetch_add(1, Ordering::Relaxed);
        self.download_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A part of `bytes` was sent for another server's download.
    fn part_served(&self, bytes: u64) {
        self.parts.fetch_add(1, Ordering::Relaxed);
        self.part_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A snapshot of the counts.
    pub(crate) fn snapshot(&self) -> FileStatus {
        FileStatus {
            downloads: self.downloads.load(Ordering::Relaxed),
            download_bytes: self.download_bytes.load(Ordering::Relaxed),
            parts: self.parts.load(Ordering::Relaxed),
            part_bytes: self.part_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Cuts `len` bytes into `parts` contiguous ranges `(start, len)` relative to the range's start,
/// as equal as possible (the first ones one byte longer when `len` does not divide evenly).
pub(crate) fn split_range(len: u64, parts: usize) -> Vec<(u64, u64)> {
    let parts = parts.max(1) as u64;
    let (base, extra) = (len / parts, len % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let part = base + u64::from(i < extra);
            let range = (start, part);
            start += part;
            range
        })
        .collect()
}

fn parse_u64(field: &str, name: &'static str) -> Result<u64, RequestError> {
    // `str::parse` would also take a leading `+`; the protocol says digits only.
    if field.is_empty() || field.len() > MAX_DIGITS || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RequestError::BadNumber(name));
    }
    field.parse().map_err(|_| RequestError::BadNumber(name))
}

/// Serves `request`: checks the path and the range, then answers it: a part at its stream
/// offset, a whole range with `OK` and the bytes, split with `secondaries` when some are live.
/// A refusal is returned as [`ServeError::Request`] before anything was written.
pub(crate) async fn serve<S>(
    services: &Services,
    stream: &mut S,
    request: &FileRequest,
    secondaries: Option<&Secondaries>,
) -> Result<(), ServeError>
where
    S: ServiceStream,
{
    let (mut file, size) = open_range(services, request).await?;
    file.seek(SeekFrom::Start(request.offset)).await?;
    if let Some(at) = request.stream_offset {
        stream.set_write_offset(at)?;
        send_range(&services.buffers, &mut file, request.len, stream).await?;
        stream.shutdown().await?;
        services.files.part_served(request.len);
        return Ok(());
    }
    let header = format!("OK {} {size}\n", request.len);
    let mut own = vec![(0, request.len)];
    let split = match (secondaries, stream.relay_id()) {
        (Some(secondaries), Some(stream_id)) if request.len >= MIN_SPLIT => {
            let targets = secondaries.targets().await;
            (!targets.is_empty()).then_some((secondaries, stream_id, targets))
        }
        _ => None,
    };
    if let Some((secondaries, stream_id, targets)) = split {
        let base = header.len() as u64;
        let parts = split_range(request.len, targets.len() + 1);
        own = vec![parts[0]];
        for (&target, &(start, len)) in targets.iter().zip(&parts[1..]) {
            let line = request.part_line(request.offset + start, len, base + start);
            if len > 0 && !secondaries.relay(target, stream_id, &line, len) {
                // The path is gone: this server sends that part too, after its own.
                own.push((start, len));
            }
        }
    }
    stream.write_all(header.as_bytes()).await?;
    let base = header.len() as u64;
    let mut position = base;
    let mut sent = 0;
    for (start, len) in own {
        // Single-server downloads never jump: their one part starts right after the header.
        if base + start != position {
            stream.set_write_offset(base + start)?;
            file.seek(SeekFrom::Start(request.offset + start)).await?;
        }
        send_range(&services.buffers, &mut file, len, stream).await?;
        position = base + start + len;
        sent += len;
    }
    // Only this (the home) path's FIN sets the stream's length: past the secondaries' parts.
    if position != base + request.len {
        stream.set_write_offset(base + request.len)?;
    }
    stream.shutdown().await?;
    services.files.download_served(sent);
    Ok(())
}

/// Resolves and opens the file of `request`, checks that its range lies within the file;
/// returns the file and its size.
async fn open_range(services: &Services, request: &FileRequest) -> Result<(File, u64), ServeError> {
    let file_path = path::resolve(services.root.as_deref(), &request.path)
        .await
        .map_err(RequestError::from)?;
    let file = File::open(&file_path)
        .await
        .map_err(|err| RequestError::Path(PathError::Io(err)))?;
    let size = file
        .metadata()
        .await
        .map_err(|err| RequestError::Path(PathError::Io(err)))?
        .len();
    let in_range = request
        .offset
        .checked_add(request.len)
        .is_some_and(|end| end <= size);
    if !in_range {
        return Err(RequestError::OutOfRange {
            offset: request.offset,
            len: request.len,
            size,
        }
        .into());
    }
    Ok((file, size))
}

/// Copies exactly `len` bytes from `file`'s current position to `out` through one pooled
/// buffer. A file that ends early (it shrank meanwhile) is an `UnexpectedEof` error: the peer
/// was promised `len` bytes, so the caller must close the stream rather than carry on.
pub(crate) async fn send_range<W>(
    buffers: &BufferPool,
    file: &mut File,
    len: u64,
    out: &mut W,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut buf = buffers.get();
    let chunk = buf.capacity().max(1) as u64;
    let mut remaining = len;
    while remaining > 0 {
        buf.clear();
        let n = (&mut *file)
            .take(remaining.min(chunk))
            .read_buf(&mut buf)
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file ended before the promised length",
            ));
        }
        out.write_all(&buf).await?;
        remaining -= n as u64;
    }
    out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_three_or_four_fields() {
        let request = FileRequest::parse("dir/f.bin 0 18446744073709551615").unwrap();
        assert_eq!(request.len, u64::MAX);
        assert_eq!(request.stream_offset, None);
        let part = FileRequest::parse("dir/f%20g.bin 5 10 4096").unwrap();
        assert_eq!(
            (
                part.path.as_str(),
                part.offset,
                part.len,
                part.stream_offset
            ),
            ("dir/f g.bin", 5, 10, Some(4096))
        );
        assert!(FileRequest::is_part("f 5 10 4096"));
        assert!(!FileRequest::is_part("f 5 10"));
        for bad in ["f 0", "f 0 1 2 3", " f 0 1", "f 0 1 2 ", "f 0 1  2"] {
            assert!(
                matches!(FileRequest::parse(bad), Err(RequestError::FileSyntax)),
                "{bad}"
            );
        }
        // An empty field between two spaces is a bad number: the same `bad-request` code.
        for bad in ["f  0 1", "f 0 1 "] {
            let err = FileRequest::parse(bad).unwrap_err();
            assert_eq!(err.code(), "bad-request", "{bad}");
        }
    }

    #[test]
    fn parse_rejects_numbers_that_are_not_plain_u64() {
        for bad in [
            "f +1 1",
            "f -1 1",
            "f 0x1 1",
            "f 18446744073709551616 1",
            "f 1e3 1",
        ] {
            assert!(
                matches!(
                    FileRequest::parse(bad),
                    Err(RequestError::BadNumber("offset"))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            FileRequest::parse("f 0 99999999999999999999999"),
            Err(RequestError::BadNumber("len"))
        ));
        assert!(matches!(
            FileRequest::parse("f 0 1 +2"),
            Err(RequestError::BadNumber("stream_offset"))
        ));
    }

    #[test]
    fn a_part_must_end_within_the_largest_stream_offset() {
        let last = FileRequest::parse(&format!("f 0 1 {}", MAX_STREAM_OFFSET - 1)).unwrap();
        assert_eq!(last.stream_offset, Some(MAX_STREAM_OFFSET - 1));
        for bad in [
            format!("f 0 2 {}", MAX_STREAM_OFFSET - 1),
            format!("f 0 0 {}", MAX_STREAM_OFFSET + 1),
            format!("f 0 {} 1", u64::MAX),
            format!("f 0 1 {}", u64::MAX),
        ] {
            assert!(
                matches!(
                    FileRequest::parse(&bad),
                    Err(RequestError::BadStreamOffset { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn part_lines_round_trip() {
        let request = FileRequest::parse("dir/a%20b.bin 0 100").unwrap();
        let line = request.part_line(40, 60, 52);
        assert_eq!(line, "FILE dir/a%20b.bin 40 60 52\n");
        let args = line.strip_prefix("FILE ").unwrap().trim_end();
        let part = FileRequest::parse(args).unwrap();
        assert_eq!(
            (
                part.path.as_str(),
                part.offset,
                part.len,
                part.stream_offset
            ),
            ("dir/a b.bin", 40, 60, Some(52))
        );
    }

    #[test]
    fn split_range_cuts_contiguous_nearly_equal_parts() {
        assert_eq!(split_range(10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(split_range(9, 3), vec![(0, 3), (3, 3), (6, 3)]);
        assert_eq!(split_range(2, 3), vec![(0, 1), (1, 1), (2, 0)]);
        assert_eq!(split_range(5, 0), vec![(0, 5)]);
        let parts = split_range(u64::MAX, 7);
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), u64::MAX);
        for pair in parts.windows(2) {
            assert_eq!(pair[0].0 + pair[0].1, pair[1].0);
        }
    }
}
