//! The file service: `FILE <path> <offset> <len>` answers `OK <len> <size>\n` and then exactly
//! bytes `[offset, offset + len)` of the file, streamed in pooled chunks.
//!
//! With secondaries ([`Secondaries`]) the primary splits a download into blocks dealt
//! round-robin between the servers: it relays to each secondary a *part* line
//! `FILE <path> <offset> <len> <stream_offset> <block> <stride>`, which the secondary answers by
//! writing its blocks at their offsets of the same stream (no `OK` line), while the primary
//! writes the `OK` line and its own blocks, then finishes the stream at its full length.

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

/// Smallest block of a split download: each block costs a seek and a jump of the write offset.
pub(crate) const MIN_BLOCK: u64 = 64 * 1024;

/// A parsed `FILE` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRequest {
    /// The path relative to the root, percent-decoded.
    pub(crate) path: String,
    /// First byte to send.
    pub(crate) offset: u64,
    /// Number of bytes the request spans.
    pub(crate) len: u64,
    /// For a part (the optional fields): where in the stream the bytes go. A part is answered
    /// with its bytes alone, and no `OK` line.
    pub(crate) part: Option<Part>,
}

/// Where the bytes of a part go: blocks of `block` bytes every `stride` bytes of the range, the
/// first at `stream_offset`; each block lands in the stream as far from `stream_offset` as it is
/// from the range's first byte. A contiguous part is one block (`block = stride = len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    /// Where the range's first byte goes in the stream.
    pub(crate) stream_offset: u64,
    /// Bytes per block, at least 1.
    pub(crate) block: u64,
    /// Distance between the starts of two blocks, at least `block`.
    pub(crate) stride: u64,
}

impl Part {
    /// The whole range `[0, len)` as one block at `stream_offset`.
    fn contiguous(stream_offset: u64, len: u64) -> Self {
        Self {
            stream_offset,
            block: len.max(1),
            stride: len.max(1),
        }
    }
}

impl FileRequest {
    /// Parses the arguments after `FILE `: `<path> <offset> <len>`, optionally followed by
    /// `<stream_offset>` or `<stream_offset> <block> <stride>` (a part), single spaces, the path
    /// percent-encoded (so that it holds no space), the numbers plain decimal. A part must end
    /// within [`MAX_STREAM_OFFSET`] and have `1 <= block <= stride`.
    pub(crate) fn parse(args: &str) -> Result<Self, RequestError> {
        let fields: Vec<&str> = args.splitn(8, ' ').collect();
        let (path, offset, len, part) = match fields[..] {
            [path, offset, len] => (path, offset, len, None),
            [path, offset, len, at] => (path, offset, len, Some((at, None))),
            [path, offset, len, at, block, stride] => {
                (path, offset, len, Some((at, Some((block, stride)))))
            }
            _ => return Err(RequestError::FileSyntax),
        };
        if path.is_empty() {
            return Err(RequestError::FileSyntax);
        }
        let path = path::percent_decode(path)?;
        let offset = parse_u64(offset, "offset")?;
        let len = parse_u64(len, "len")?;
        let part = match part {
            None => None,
            Some((at, blocks)) => {
                let stream_offset = parse_u64(at, "stream_offset")?;
                let part = match blocks {
                    None => Part::contiguous(stream_offset, len),
                    Some((block, stride)) => Part {
                        stream_offset,
                        block: parse_u64(block, "block")?,
                        stride: parse_u64(stride, "stride")?,
                    },
                };
                if part.block == 0 || part.stride < part.block {
                    return Err(RequestError::BadBlocks {
                        block: part.block,
                        stride: part.stride,
                    });
                }
                if stream_offset
                    .checked_add(len)
                    .is_none_or(|end| end > MAX_STREAM_OFFSET)
                {
                    return Err(RequestError::BadStreamOffset { stream_offset, len });
                }
                Some(part)
            }
        };
        Ok(Self {
            path,
            offset,
            len,
            part,
        })
    }

    /// Whether `args` (after `FILE `) has the four or six fields of a part, parsed or not: a
    /// refused part is not answered with an `ERR` line (docs/serve.md, "Parts").
    pub(crate) fn is_part(args: &str) -> bool {
        matches!(args.split(' ').count(), 4 | 6)
    }

    /// The line that asks another server for the part of this request's range from `start`
    /// on (relative), laid out as `part`.
    fn part_line(&self, start: u64, part: Part) -> String {
        let path = path::percent_encode(&self.path);
        let offset = self.offset + start;
        let len = self.len - start;
        let at = part.stream_offset;
        if part.block >= len {
            format!("FILE {path} {offset} {len} {at}\n")
        } else {
            format!(
                "FILE {path} {offset} {len} {at} {} {}\n",
                part.block, part.stride
            )
        }
    }
}

/// The blocks of a range of `len` bytes laid out as `block` bytes every `stride`: `(start, len)`
/// relative to the range's first byte, in order.
pub(crate) fn blocks(len: u64, block: u64, stride: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut next = Some(0u64);
    std::iter::from_fn(move || {
        let start = next.filter(|&start| start < len)?;
        next = start.checked_add(stride.max(1));
        Some((start, block.min(len - start)))
    })
}

/// Total bytes of [`blocks`]`(len, block, stride)`.
pub(crate) fn blocks_len(len: u64, block: u64, stride: u64) -> u64 {
    let stride = stride.max(1);
    (len / stride) * block.min(stride) + (len % stride).min(block)
}

/// The block size of a download of `len` bytes split over `servers`: the servers' blocks of one
/// round fit in one `window` together (so that all of them can send at once), the blocks are at
/// least [`MIN_BLOCK`] and never more than an equal share of the range.
pub(crate) fn block_size(len: u64, servers: u64, window: u64) -> u64 {
    let servers = servers.max(1);
    (window / servers)
        .max(MIN_BLOCK)
        .min(len.div_ceil(servers))
        .max(1)
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

fn parse_u64(field: &str, name: &'static str) -> Result<u64, RequestError> {
    // `str::parse` would also take a leading `+`; the protocol says digits only.
    if field.is_empty() || field.len() > MAX_DIGITS || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RequestError::BadNumber(name));
    }
    field.parse().map_err(|_| RequestError::BadNumber(name))
}

/// Serves `request`: checks the path and the range, then answers it: a part at its stream
/// offsets, a whole range with `OK` and the bytes, split with `secondaries` when some are live.
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
    let mut out = Placement {
        services,
        file: &mut file,
        stream,
        position: 0,
    };
    if let Some(part) = request.part {
        let sent = out.write_lanes(request.len, part, &[0]).await?;
        out.stream.shutdown().await?;
        services.files.part_served(sent);
        return Ok(());
    }
    let header = format!("OK {} {size}\n", request.len);
    let base = header.len() as u64;
    let split = match (secondaries, out.stream.relay_id()) {
        (Some(secondaries), Some(stream_id)) if request.len >= MIN_SPLIT => {
            let targets = secondaries.targets().await;
            (!targets.is_empty()).then_some((secondaries, stream_id, targets))
        }
        _ => None,
    };
    // One server: the range is one block right after the header, sent without a jump.
    let mut layout = Part::contiguous(base, request.len);
    let mut lanes = vec![0];
    if let Some((secondaries, stream_id, targets)) = split {
        let servers = targets.len() as u64 + 1;
        let block = block_size(request.len, servers, services.stream_window);
        layout = Part {
            stream_offset: base,
            block,
            stride: block * servers,
        };
        for (&target, lane) in targets
            .iter()
            .zip((1u64..).map(|j| j.saturating_mul(block)))
        {
            if lane >= request.len {
                break;
            }
            let part = Part {
                stream_offset: base + lane,
                ..layout
            };
            let line = request.part_line(lane, part);
            let len = blocks_len(request.len - lane, block, layout.stride);
            if !secondaries.relay(target, stream_id, &line, len) {
                // The path is gone: this server sends that lane's blocks too.
                lanes.push(lane);
            }
        }
    }
    out.stream.write_all(header.as_bytes()).await?;
    out.position = base;
    let sent = out.write_lanes(request.len, layout, &lanes).await?;
    // Only this (the home) path's FIN sets the stream's length: past the secondaries' blocks.
    if out.position != base + request.len {
        out.stream.set_write_offset(base + request.len)?;
    }
    out.stream.shutdown().await?;
    services.files.download_served(sent);
    Ok(())
}

/// Writes file bytes at their stream offsets.
struct Placement<'a, S> {
    services: &'a Services,
    /// Positioned at the range's first byte, or where the last block written ended.
    file: &'a mut File,
    stream: &'a mut S,
    /// The stream's write offset.
    position: u64,
}

impl<S: ServiceStream> Placement<'_, S> {
    /// Writes, round after round of `layout.stride` bytes of a range of `len` bytes, the blocks
    /// that start `lanes` bytes (sorted) into each round: `[0]` for a part, or a primary's own
    /// lane and those of the secondaries it could not relay to. The range's first byte is the
    /// file's current position and goes to `layout.stream_offset`. Returns the bytes written.
    async fn write_lanes(&mut self, len: u64, layout: Part, lanes: &[u64]) -> io::Result<u64> {
        let range_start = self.file.stream_position().await?;
        let mut sent = 0;
        for (round, _) in blocks(len, layout.stride, layout.stride) {
            for &lane in lanes {
                let Some(start) = round.checked_add(lane).filter(|&start| start < len) else {
                    break;
                };
                let block = layout.block.min(len - start);
                let at = layout.stream_offset + start;
                if at != self.position {
                    self.stream.set_write_offset(at)?;
                    self.file.seek(SeekFrom::Start(range_start + start)).await?;
                }
                send_range(&self.services.buffers, self.file, block, self.stream).await?;
                self.position = at + block;
                sent += block;
            }
        }
        Ok(sent)
    }
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
    fn parse_accepts_three_four_or_six_fields() {
        let request = FileRequest::parse("dir/f.bin 0 18446744073709551615").unwrap();
        assert_eq!(request.len, u64::MAX);
        assert_eq!(request.part, None);
        let part = FileRequest::parse("dir/f%20g.bin 5 10 4096").unwrap();
        assert_eq!(
            (part.path.as_str(), part.offset, part.len),
            ("dir/f g.bin", 5, 10)
        );
        assert_eq!(part.part, Some(Part::contiguous(4096, 10)));
        let strided = FileRequest::parse("f 5 100 4096 10 30").unwrap();
        let expected = Part {
            stream_offset: 4096,
            block: 10,
            stride: 30,
        };
        assert_eq!(strided.part, Some(expected));
        assert!(FileRequest::is_part("f 5 10 4096"));
        assert!(FileRequest::is_part("f 5 10 4096 1 2"));
        assert!(!FileRequest::is_part("f 5 10"));
        assert!(!FileRequest::is_part("f 5 10 4096 1"));
        for bad in [
            "f 0",
            "f 0 1 2 3",
            "f 0 1 2 3 4 5",
            " f 0 1",
            "f 0 1 2 ",
            "f 0 1  2",
        ] {
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
    fn parse_rejects_blocks_that_do_not_tile() {
        for bad in ["f 0 10 0 0 5", "f 0 10 0 6 5", "f 0 10 0 0 0"] {
            let err = FileRequest::parse(bad).unwrap_err();
            assert!(matches!(err, RequestError::BadBlocks { .. }), "{bad}");
            assert_eq!(err.code(), "bad-request");
        }
        // An empty contiguous part is fine: it writes nothing.
        assert!(FileRequest::parse("f 0 0 7").is_ok());
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
        assert_eq!(
            last.part.map(|p| p.stream_offset),
            Some(MAX_STREAM_OFFSET - 1)
        );
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
        let request = FileRequest::parse("dir/a%20b.bin 1000 100").unwrap();
        // One block left: the short, contiguous form.
        let line = request.part_line(40, Part::contiguous(52, 60));
        assert_eq!(line, "FILE dir/a%20b.bin 1040 60 52\n");
        let strided = Part {
            stream_offset: 52,
            block: 20,
            stride: 40,
        };
        let line = request.part_line(40, strided);
        assert_eq!(line, "FILE dir/a%20b.bin 1040 60 52 20 40\n");
        let args = line.strip_prefix("FILE ").unwrap().trim_end();
        let part = FileRequest::parse(args).unwrap();
        assert_eq!(
            (part.path.as_str(), part.offset, part.len, part.part),
            ("dir/a b.bin", 1040, 60, Some(strided))
        );
    }

    #[test]
    fn blocks_lay_out_a_range_round_by_round() {
        let all: Vec<_> = blocks(10, 3, 5).collect();
        assert_eq!(all, vec![(0, 3), (5, 3)]);
        assert_eq!(
            blocks(11, 3, 5).collect::<Vec<_>>(),
            vec![(0, 3), (5, 3), (10, 1)]
        );
        assert_eq!(blocks(7, 7, 7).collect::<Vec<_>>(), vec![(0, 7)]);
        assert_eq!(blocks(0, 7, 7).count(), 0);
        assert_eq!(
            blocks(u64::MAX, u64::MAX / 2 + 1, u64::MAX / 2 + 1).count(),
            2
        );
        for (len, block, stride) in [(10, 3, 5), (11, 3, 5), (7, 7, 7), (0, 1, 1), (100, 7, 21)] {
            let total: u64 = blocks(len, block, stride).map(|(_, n)| n).sum();
            assert_eq!(
                blocks_len(len, block, stride),
                total,
                "{len} {block} {stride}"
            );
        }
    }

    #[test]
    fn lanes_of_all_servers_cover_the_range_once() {
        let len = 1_000_003;
        for servers in 1..=4u64 {
            let block = block_size(len, servers, 256 * 1024);
            assert!(block >= MIN_BLOCK.min(len));
            let stride = block * servers;
            let mut covered = vec![0u8; len as usize];
            for lane in (0..servers).map(|j| j * block).filter(|&l| l < len) {
                for (start, n) in blocks(len - lane, block, stride) {
                    let at = (lane + start) as usize;
                    covered[at..at + n as usize]
                        .iter_mut()
                        .for_each(|c| *c += 1);
                }
            }
            assert!(covered.iter().all(|&c| c == 1), "{servers} servers");
        }
        // Small ranges: one block per server at most.
        assert_eq!(block_size(100, 2, 1 << 20), 50);
        assert_eq!(block_size(101, 2, 1 << 20), 51);
        assert_eq!(block_size(10 << 20, 2, 1 << 20), 512 * 1024);
        assert_eq!(block_size(10 << 20, 4, 1 << 20), MIN_BLOCK.max(256 * 1024));
    }
}
