//! One file, two servers, one stream: the multi-server download of KWIK.
//!
//! The client asks the primary server for a byte range of a file. The primary has asked the
//! client to add a path to a secondary server holding the same file (`Session::add_path`);
//! it cuts the range into chunks, writes the even ones itself and relays the request for the
//! odd ones to the secondary through the client (`Session::relay`). The secondary writes each
//! odd chunk at its offset in the client's stream (`Stream::set_write_offset`). The client
//! reads ONE stream, in order, and checks its SHA-256 against the file.
//!
//! ```sh
//! cargo run -p kwik --example file_transfer                   # 64 MiB, all in-process
//! cargo run -p kwik --example file_transfer -- --size-mib 256
//! # three processes (the client needs --insecure: each server makes its own certificate)
//! cargo run -p kwik --example file_transfer -- --server --listen 127.0.0.1:4434 --root DIR
//! cargo run -p kwik --example file_transfer -- --server --listen 127.0.0.1:4433 --root DIR \
//!     --secondary 127.0.0.1:4434
//! cargo run -p kwik --example file_transfer -- --connect 127.0.0.1:4433 --insecure \
//!     --file data.bin --verify DIR/data.bin
//! ```
//!
//! Requests are `kwik serve`'s file service (`FILE <path> <offset> <len>\n`, answered
//! `OK <len> <size>\n` and the bytes), so the client also downloads from a `kwik serve`.

mod common;

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use common::{LocalTls, Mode, NetArgs, Server};
use kwik::transport::{ErrorCode, PathId, Stream};
use kwik::{Identity, Runtime, Session, Trust};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The file the in-process run generates and downloads.
const FILE_NAME: &str = "data.bin";

/// A file downloaded from two servers over one stream, SHA-256 checked.
#[derive(Debug, Clone, Parser)]
struct Options {
    /// Size of the generated file (in-process run), MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: u64,
    /// Chunk size the range is cut into (even chunks: primary, odd: secondary), KiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_kib: u64,
    /// Server: the directory files are served from.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Server: act as primary and have each client add a path to this secondary server.
    #[arg(long)]
    secondary: Option<SocketAddr>,
    /// Client: the file to download (relative to the servers' root).
    #[arg(long, default_value = FILE_NAME)]
    file: String,
    /// Client: check the download against this local copy of the file.
    #[arg(long)]
    verify: Option<PathBuf>,
    #[command(flatten)]
    net: NetArgs,
}

/// Bytes one path carried, as the client counts them (whole packets, framing included).
#[derive(Debug, Clone)]
struct PathBytes {
    id: PathId,
    remote: SocketAddr,
    bytes_received: u64,
}

/// What a download did.
#[derive(Debug)]
struct Download {
    /// Stream payload bytes received.
    bytes: u64,
    /// SHA-256 of the bytes received.
    sha256: Vec<u8>,
    /// Request sent until the last byte read.
    elapsed: Duration,
    /// Per path of the client's session.
    paths: Vec<PathBytes>,
}

/// An in-process run.
#[derive(Debug)]
struct Summary {
    download: Download,
    /// SHA-256 of the file.
    expected_sha256: Vec<u8>,
    /// File bytes each server wrote: primary, secondary.
    written: [u64; 2],
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    match options.net.mode() {
        Mode::Server(addr) => {
            let files = Arc::new(Files::new(
                &options.root,
                options.chunk_kib,
                options.secondary,
            ));
            let what = match options.secondary {
                Some(secondary) => format!("primary file server (secondary {secondary})"),
                None => "file server".to_owned(),
            };
            let identity = options.net.identity()?;
            common::serve_until_ctrl_c(&what, addr, &identity, |runtime, addr, identity| {
                start_server(runtime, addr, identity, files)
            })
            .await?;
        }
        Mode::Client(addr) => {
            let trust = options.net.trust()?;
            let download = common::connect(addr, &trust, async |runtime, addr, trust| {
                download(runtime, addr, trust, &options.file).await
            })
            .await?;
            print_download(&download);
            if let Some(path) = &options.verify {
                let expected = sha256_of(path).await?;
                ensure!(
                    download.sha256 == expected,
                    "SHA-256 MISMATCH with {path:?}"
                );
                println!("sha256 {} matches {}", hex(&expected), path.display());
            }
        }
        Mode::InProcess => {
            let summary = run(&options).await?;
            print_download(&summary.download);
            println!(
                "servers wrote: primary {}, secondary {}",
                common::bytes(summary.written[0]),
                common::bytes(summary.written[1])
            );
            ensure!(
                summary.download.sha256 == summary.expected_sha256,
                "SHA-256 MISMATCH"
            );
            println!("sha256 {} matches the file", hex(&summary.expected_sha256));
        }
    }
    Ok(())
}

/// Generates the file in a temporary directory, starts the secondary then the primary on
/// ephemeral ports, downloads the whole file, and stops everything.
async fn run(options: &Options) -> anyhow::Result<Summary> {
    let dir = tempfile::tempdir()?;
    let size = options.size_mib * 1024 * 1024;
    let file = dir.path().join(FILE_NAME);
    let started = Instant::now();
    let expected_sha256 = generate(&file, size).await?;
    println!(
        "generated {} ({}) in {}",
        file.display(),
        common::bytes(size),
        common::ms(started.elapsed())
    );

    let runtime = common::runtime().await?;
    let tls = LocalTls::generate()?;
    let localhost: SocketAddr = "127.0.0.1:0".parse()?;
    let secondary_files = Arc::new(Files::new(dir.path(), options.chunk_kib, None));
    let secondary = start_server(
        &runtime,
        localhost,
        &tls.identity,
        Arc::clone(&secondary_files),
    )?;
    let primary_files = Arc::new(Files::new(
        dir.path(),
        options.chunk_kib,
        Some(secondary.local_addr()),
    ));
    let primary = start_server(
        &runtime,
        localhost,
        &tls.identity,
        Arc::clone(&primary_files),
    )?;
    println!(
        "primary on {}, secondary on {}",
        primary.local_addr(),
        secondary.local_addr()
    );

    let download = download(&runtime, primary.local_addr(), &tls.trust, FILE_NAME).await;
    primary.stop().await;
    secondary.stop().await;
    runtime.shutdown(common::SHUTDOWN_DEADLINE).await;
    Ok(Summary {
        download: download?,
        expected_sha256,
        written: [
            primary_files.written.load(Ordering::Relaxed),
            secondary_files.written.load(Ordering::Relaxed),
        ],
    })
}

/// A server's file service settings and counter.
#[derive(Debug)]
struct Files {
    root: PathBuf,
    /// Bytes per chunk of a split range.
    chunk: u64,
    /// Primary: the secondary each client is asked to add.
    secondary: Option<SocketAddr>,
    /// File bytes this server wrote to streams.
    written: AtomicU64,
}

impl Files {
    fn new(root: &Path, chunk_kib: u64, secondary: Option<SocketAddr>) -> Self {
        Self {
            root: root.to_owned(),
            chunk: chunk_kib * 1024,
            secondary,
            written: AtomicU64::new(0),
        }
    }

    /// `name` under the root; only plain relative components, so nothing outside the root.
    fn resolve(&self, name: &str) -> anyhow::Result<PathBuf> {
        let name = name.trim_start_matches('/');
        let relative = Path::new(name);
        ensure!(
            !name.is_empty()
                && relative
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))),
            "bad path {name:?}"
        );
        Ok(self.root.join(relative))
    }
}

/// A file server: a primary when `files.secondary` is set, else a secondary (or a lone
/// server).
fn start_server(
    runtime: &Runtime,
    addr: SocketAddr,
    identity: &Identity,
    files: Arc<Files>,
) -> anyhow::Result<Server> {
    let listener = runtime.listen(addr, identity)?;
    Ok(Server::start(listener, move |session| {
        serve_session(session, Arc::clone(&files))
    }))
}

async fn serve_session(session: Session, files: Arc<Files>) -> anyhow::Result<()> {
    // A primary has the client add the secondary first; without it, it serves alone.
    let path = match files.secondary {
        Some(secondary) => match session.add_path(secondary).await {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!("add_path {secondary}: {e}; serving alone");
                None
            }
        },
        None => None,
    };
    common::serve_streams(session, move |session, stream| {
        serve_stream(session, stream, Arc::clone(&files), path)
    })
    .await
}

/// One request: `FILE` from a client, or a part line (`FILE` with a stream offset, block and
/// stride) relayed by a primary.
async fn serve_stream(
    session: Session,
    mut stream: Stream,
    files: Arc<Files>,
    path: Option<PathId>,
) -> anyhow::Result<()> {
    let Some(line) = common::read_line(&mut stream).await? else {
        return Ok(());
    };
    let words: Vec<&str> = line.split(' ').collect();
    match words.as_slice() {
        ["FILE", name, offset, len] => {
            let (Ok(offset), Ok(len)) = (offset.parse::<u64>(), len.parse::<u64>()) else {
                return refuse(stream, "bad-request", "offset and length are decimal u64").await;
            };
            let Ok(file_path) = files.resolve(name) else {
                return refuse(stream, "bad-path", "not a plain relative path").await;
            };
            let Ok(mut file) = tokio::fs::File::open(&file_path).await else {
                return refuse(stream, "not-found", "no such file").await;
            };
            let size = file.metadata().await?.len();
            if offset.checked_add(len).is_none_or(|end| end > size) {
                return refuse(stream, "out-of-range", "the range ends past the file").await;
            }
            let header = format!("OK {len} {size}\n");
            stream.write_all(header.as_bytes()).await?;
            let base = header.len() as u64;
            let chunk = files.chunk;
            let written = match path.filter(|_| len > chunk) {
                Some(path) => {
                    // The secondary's share (the odd chunks) travels as a request on this very
                    // stream, in `kwik serve`'s part form (docs/serve.md), so a `kwik serve`
                    // can be the secondary too.
                    let odd = Split {
                        file_offset: offset + chunk,
                        len: len - chunk,
                        stream_offset: base + chunk,
                        block: chunk,
                        stride: 2 * chunk,
                    };
                    session.relay(path, stream.id(), odd.part_line(name).into_bytes())?;
                    let even = Split {
                        file_offset: offset,
                        len,
                        stream_offset: base,
                        block: chunk,
                        stride: 2 * chunk,
                    };
                    let written = even.write(&mut file, &mut stream, chunk).await?;
                    // The stream ends after the secondary's chunks too.
                    stream.set_write_offset(base + len)?;
                    written
                }
                None => {
                    let all = Split {
                        file_offset: offset,
                        len,
                        stream_offset: base,
                        block: len,
                        stride: len,
                    };
                    all.write(&mut file, &mut stream, chunk).await?
                }
            };
            files.written.fetch_add(written, Ordering::Relaxed);
        }
        ["FILE", name, offset, len, stream_offset, block, stride] => {
            let split = Split {
                file_offset: offset.parse()?,
                len: len.parse()?,
                stream_offset: stream_offset.parse()?,
                block: block.parse()?,
                stride: stride.parse()?,
            };
            ensure!(
                split.block > 0 && split.stride >= split.block,
                "bad block layout"
            );
            let mut file = tokio::fs::File::open(files.resolve(name)?).await?;
            let written = split.write(&mut file, &mut stream, files.chunk).await?;
            files.written.fetch_add(written, Ordering::Relaxed);
        }
        ["ECHO"] => return common::echo(stream).await,
        _ => bail!("unknown request {line:?}"),
    }
    // On the primary this FIN sets the stream's final size; on the secondary it only ends its
    // contribution (docs/protocol.md §12).
    stream.shutdown().await?;
    Ok(())
}

/// Answers `ERR <code> <message>` and finishes the stream, as `kwik serve` refuses a request.
async fn refuse(mut stream: Stream, code: &str, message: &str) -> anyhow::Result<()> {
    stream
        .write_all(format!("ERR {code} {message}\n").as_bytes())
        .await?;
    stream.shutdown().await?;
    Ok(())
}

/// Where a server's share of a file range goes in the stream, as `kwik serve`'s part line
/// describes it: blocks of `block` bytes every `stride` bytes of the range, block `j` read from
/// `file_offset + j * stride` and written at `stream_offset + j * stride`.
#[derive(Debug, Clone, Copy)]
struct Split {
    file_offset: u64,
    len: u64,
    stream_offset: u64,
    block: u64,
    stride: u64,
}

impl Split {
    /// The request a primary relays for this share: `FILE <path> <offset> <len>
    /// <stream_offset> <block> <stride>`.
    fn part_line(&self, name: &str) -> String {
        format!(
            "FILE {name} {} {} {} {} {}\n",
            self.file_offset, self.len, self.stream_offset, self.block, self.stride
        )
    }

    /// Writes the blocks at their offsets, `buffer` bytes at a time; returns the bytes written.
    async fn write(
        &self,
        file: &mut tokio::fs::File,
        stream: &mut Stream,
        buffer: u64,
    ) -> anyhow::Result<u64> {
        let mut buf = vec![0u8; usize::try_from(buffer.min(self.block).max(1))?];
        let mut written = 0;
        let mut start = 0;
        while start < self.len {
            let end = (start + self.block).min(self.len);
            file.seek(SeekFrom::Start(self.file_offset + start)).await?;
            stream.set_write_offset(self.stream_offset + start)?;
            let mut at = start;
            while at < end {
                let n = usize::try_from((end - at).min(buf.len() as u64))?;
                file.read_exact(&mut buf[..n]).await?;
                stream.write_all(&buf[..n]).await?;
                at += n as u64;
            }
            written += end - start;
            start += self.stride;
        }
        Ok(written)
    }
}

/// Downloads the whole of `name` from the server at `addr` over one stream.
async fn download(
    runtime: &Runtime,
    addr: SocketAddr,
    trust: &Trust,
    name: &str,
) -> anyhow::Result<Download> {
    let session = runtime.dial(addr, trust).await?;

    // First the size (a zero-length range), then the whole file.
    let (_, size) = request(&session, name, 0, 0).await?.finish().await?;
    let started = Instant::now();
    let mut response = request(&session, name, 0, size).await?;
    let mut hasher = Sha256::new();
    let mut bytes = 0;
    while let Some(chunk) = response.stream.read_chunk(usize::MAX).await? {
        bytes += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let elapsed = started.elapsed();
    ensure!(
        bytes == response.len,
        "short download: {bytes} of {} bytes",
        response.len
    );
    let paths = session
        .paths()
        .into_iter()
        .map(|p| PathBytes {
            id: p.id,
            remote: p.remote,
            bytes_received: p.counters.bytes_received,
        })
        .collect();
    drop(response);
    session.close(ErrorCode::NO_ERROR, "download done");
    session.closed().await;
    Ok(Download {
        bytes,
        sha256: hasher.finalize().to_vec(),
        elapsed,
        paths,
    })
}

/// A response whose `OK` line was read.
struct Response {
    stream: Stream,
    len: u64,
    size: u64,
}

impl Response {
    /// Reads a response with no body to its end; returns `(len, size)`.
    async fn finish(mut self) -> anyhow::Result<(u64, u64)> {
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest).await?;
        ensure!(rest.len() as u64 == self.len, "body length differs");
        Ok((self.len, self.size))
    }
}

/// Sends `FILE name offset len` on a new stream and reads the `OK` line.
async fn request(session: &Session, name: &str, offset: u64, len: u64) -> anyhow::Result<Response> {
    let mut stream = session.open_stream().await?;
    stream
        .write_all(format!("FILE {name} {offset} {len}\n").as_bytes())
        .await?;
    let line = common::read_line(&mut stream)
        .await?
        .context("the server sent no response")?;
    let words: Vec<&str> = line.split(' ').collect();
    let ["OK", len, size] = words.as_slice() else {
        bail!("server answered {line:?}");
    };
    Ok(Response {
        stream,
        len: len.parse()?,
        size: size.parse()?,
    })
}

fn print_download(download: &Download) {
    let secs = download.elapsed.as_secs_f64();
    println!(
        "downloaded {} on one stream in {}: {:.1} MiB/s",
        common::bytes(download.bytes),
        common::ms(download.elapsed),
        download.bytes as f64 / secs / (1024.0 * 1024.0)
    );
    for path in &download.paths {
        println!(
            "  path {} from {}: {} received",
            path.id,
            path.remote,
            common::bytes(path.bytes_received)
        );
    }
}

/// Writes `size` bytes of deterministic pseudo-random content to `path`; returns their SHA-256.
async fn generate(path: &Path, size: u64) -> anyhow::Result<Vec<u8>> {
    const BLOCK: usize = 1 << 20;
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(path).await?);
    let mut hasher = Sha256::new();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut block = vec![0u8; BLOCK];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(BLOCK as u64))?;
        for word in block[..n].chunks_mut(8) {
            // xorshift64: fast, and no two chunks alike.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        file.write_all(&block[..n]).await?;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    file.flush().await?;
    Ok(hasher.finalize().to_vec())
}

async fn sha256_of(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(hasher.finalize().to_vec());
        }
        hasher.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_servers_fill_one_stream() {
        let options =
            Options::parse_from(["file_transfer", "--size-mib", "2", "--chunk-kib", "64"]);
        let summary = run(&options).await.unwrap();
        assert_eq!(summary.download.bytes, 2 << 20);
        assert_eq!(summary.download.sha256, summary.expected_sha256);
        // 32 chunks: 16 each.
        assert_eq!(summary.written, [1 << 20, 1 << 20]);
        let paths = &summary.download.paths;
        assert_eq!(paths.len(), 2, "{paths:?}");
        for path in paths {
            assert!(path.bytes_received > 1 << 20, "{path:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_requests_are_refused_as_kwik_serve_does() {
        let dir = tempfile::tempdir().unwrap();
        let files = Arc::new(Files::new(dir.path(), 64, None));
        let start = |runtime: &Runtime, addr, identity: &Identity| {
            start_server(runtime, addr, identity, files)
        };
        let refusals = common::in_process("file server", start, async |runtime, addr, trust| {
            let session = runtime.dial(addr, trust).await?;
            let mut refusals = Vec::new();
            for name in ["missing.bin", "../etc/passwd"] {
                let err = request(&session, name, 0, 1).await.err();
                refusals.push(err.map(|e| e.to_string()).unwrap_or_default());
            }
            session.close(ErrorCode::NO_ERROR, "test done");
            session.closed().await;
            Ok(refusals)
        })
        .await
        .unwrap();
        assert_eq!(
            refusals,
            [
                "server answered \"ERR not-found no such file\"",
                "server answered \"ERR bad-path not a plain relative path\"",
            ]
        );
    }
}
