//! The file service: `FILE <path> <offset> <len>` answers `OK <len> <size>\n` and then exactly
//! bytes `[offset, offset + len)` of the file, streamed in pooled chunks, so that several servers
//! can each serve a disjoint part of one file.

use std::io::{self, SeekFrom};

use kwik_buffer::BufferPool;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use super::Services;
use super::dispatch::{RequestError, ServeError};
use super::path::{self, PathError};

/// Longest decimal u64.
const MAX_DIGITS: usize = 20;

/// A parsed `FILE` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRequest {
    /// The path relative to the root, percent-decoded.
    pub(crate) path: String,
    /// First byte to send.
    pub(crate) offset: u64,
    /// Number of bytes to send.
    pub(crate) len: u64,
}

impl FileRequest {
    /// Parses the arguments after `FILE `: `<path> <offset> <len>`, single spaces, the path
    /// percent-encoded (so that it holds no space), the numbers plain decimal.
    pub(crate) fn parse(args: &str) -> Result<Self, RequestError> {
        let mut fields = args.split(' ');
        let (Some(path), Some(offset), Some(len), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(RequestError::FileSyntax);
        };
        if path.is_empty() {
            return Err(RequestError::FileSyntax);
        }
        Ok(Self {
            path: path::percent_decode(path)?,
            offset: parse_u64(offset, "offset")?,
            len: parse_u64(len, "len")?,
        })
    }
}

fn parse_u64(field: &str, name: &'static str) -> Result<u64, RequestError> {
    // `str::parse` would also take a leading `+`; the protocol says digits only.
    if field.is_empty() || field.len() > MAX_DIGITS || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RequestError::BadNumber(name));
    }
    field.parse().map_err(|_| RequestError::BadNumber(name))
}

/// Serves `request`: checks the path and the range, answers `OK`, streams the bytes, closes.
/// A refusal is returned as [`ServeError::Request`] before anything was written.
pub(crate) async fn serve<S>(
    services: &Services,
    stream: &mut S,
    request: &FileRequest,
) -> Result<(), ServeError>
where
    S: AsyncWrite + Unpin,
{
    let file_path = path::resolve(services.root.as_deref(), &request.path)
        .await
        .map_err(RequestError::from)?;
    let mut file = File::open(&file_path)
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
    file.seek(SeekFrom::Start(request.offset)).await?;
    stream
        .write_all(format!("OK {} {size}\n", request.len).as_bytes())
        .await?;
    send_range(&services.buffers, &mut file, request.len, stream).await?;
    stream.shutdown().await?;
    Ok(())
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
    fn parse_accepts_exactly_three_fields() {
        let request = FileRequest::parse("dir/f.bin 0 18446744073709551615").unwrap();
        assert_eq!(request.len, u64::MAX);
        for bad in ["f 0", "f 0 1 2", " f 0 1", "f  0 1", "f 0 1 "] {
            assert!(
                matches!(FileRequest::parse(bad), Err(RequestError::FileSyntax)),
                "{bad}"
            );
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
    }
}
