//! Paths: one quinn connection and its bidirectional path stream, a reader task handing
//! packets to the executor and a writer task coalescing frames into packets.
//!
//! A stream's data does not always go through the writer task: when the path is idle (nothing
//! queued, no write under way) the writing caller encodes its frame and hands it to quinn in
//! place ([`PathShared::send_stream_frame`]), which spares a wake-up and a poll of the writer
//! task per message. Whoever holds `Outbox::writing` is the only one writing to the path
//! stream, so packets keep the order their frames were sent in.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kwik_buffer::PooledBuf;
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

use crate::error::{CloseReason, ErrorCode, ProtocolError};
use crate::executor::PacketJob;
use crate::session::SessionInner;
use crate::stats::{Counters, PathInfo, PathState};
use crate::wire::{self, Frame, FrameDecoder, Hello, PACKET_HEADER_LEN};

/// How long a closing path waits for the peer to acknowledge its last packets (including
/// CLOSE) before closing the QUIC connection, which discards anything still unsent. The QUIC
/// CONNECTION_CLOSE repeats the code, so a peer that never acknowledges still learns it.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Payloads at least this long travel as their own zero-copy chunk; shorter ones are copied
/// next to their frame header (one memcpy is cheaper than one more chunk for quinn).
const INLINE_PAYLOAD_MAX: usize = 512;

/// Read at least this much per read call; a smaller free tail gets a fresh buffer.
const MIN_READ: usize = 4096;

/// Frames the writer's spare deque keeps room for between batches.
const KEPT_FRAME_CAPACITY: usize = 64;

/// Control frames (PONG, MAX_STREAM_DATA, ...) a path may have queued before the peer that
/// provokes them (e.g. by PING floods while not reading) is cut off with EXCESSIVE_LOAD.
pub(crate) const MAX_CONTROL_BACKLOG: usize = 16 * 1024;

#[derive(Debug, Default)]
struct Outbox {
    frames: VecDeque<Frame>,
    control: usize,
    closing: Option<Closing>,
    /// Held by whoever writes to the path stream: the writer task, or a caller writing in
    /// place. Frames queued meanwhile wait in `frames`; the holder wakes the writer task when it
    /// lets go and something is left to do.
    writing: bool,
}

/// The path stream's send side, touched only by the holder of `Outbox::writing` (the mutex is
/// never contended; it makes that rule safe to express).
struct SendSide {
    stream: quinn::SendStream,
    /// Frame headers and short payloads of the packets being built.
    scratch: BytesMut,
    /// Packets built and not yet taken by quinn, in order: whoever writes next starts with them.
    chunks: Vec<Bytes>,
}

#[derive(Debug, Clone)]
struct Closing {
    code: ErrorCode,
    reason: String,
    /// CLOSE was queued and the writer must flush it before closing the connection.
    graceful: bool,
}

#[derive(Debug, Default)]
struct PingState {
    next_nonce: u64,
    outstanding: Option<(u64, Instant)>,
}

/// One path of a session.
pub(crate) struct PathShared {
    id: u64,
    /// The path's executor key: unique in the process for the path's whole life (path ids
    /// restart at 0 in every session).
    executor_key: u64,
    remote: SocketAddr,
    pub(crate) conn: quinn::Connection,
    outbox: Mutex<Outbox>,
    send: Mutex<SendSide>,
    wake_writer: Notify,
    closing_signal: Notify,
    pub(crate) counters: Counters,
    primary: AtomicBool,
    ping: Mutex<PingState>,
    /// Latest RTT in nanoseconds, 0 = none yet.
    rtt_nanos: AtomicU64,
}

/// Executor keys handed out so far; a `u64` never wraps in practice.
static EXECUTOR_KEYS: AtomicU64 = AtomicU64::new(0);

fn next_executor_key() -> u64 {
    EXECUTOR_KEYS.fetch_add(1, Relaxed)
}

impl PathShared {
    pub(crate) fn new(
        id: u64,
        conn: quinn::Connection,
        send: quinn::SendStream,
        primary: bool,
    ) -> Self {
        Self {
            id,
            executor_key: next_executor_key(),
            remote: conn.remote_address(),
            conn,
            outbox: Mutex::default(),
            send: Mutex::new(SendSide {
                stream: send,
                scratch: BytesMut::new(),
                chunks: Vec::new(),
            }),
            wake_writer: Notify::new(),
            closing_signal: Notify::new(),
            counters: Counters::default(),
            primary: AtomicBool::new(primary),
            ping: Mutex::default(),
            rtt_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The send side; only for the holder of `Outbox::writing`.
    fn send_side(&self) -> MutexGuard<'_, SendSide> {
        self.send.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a STREAM frame: written to the path stream in place when the path is idle, queued
    /// for the writer task otherwise (see the module docs). What quinn does not take at once
    /// (its flow control is full) is left for the writer task, in order. Returns false once the
    /// path is closing.
    pub(crate) fn send_stream_frame(&self, frame: Frame, session: &SessionInner) -> bool {
        {
            let mut out = self.outbox();
            if out.closing.is_some() {
                return false;
            }
            if out.writing || !out.frames.is_empty() {
                out.frames.push_back(frame);
                drop(out);
                self.wake_writer.notify_one();
                return true;
            }
            out.writing = true;
        }
        let written = {
            let mut side = self.send_side();
            let SendSide {
                stream,
                scratch,
                chunks,
            } = &mut *side;
            let max = session.settings.max_packet_size;
            let (packets, bytes) =
                build_packets(std::iter::once(frame), max, scratch, chunks, self, session);
            self.count_sent(session, packets, bytes);
            // Polled once: quinn either takes data now or registers this no-op waker, which the
            // writer task replaces with its own when it takes over.
            let mut cx = Context::from_waker(Waker::noop());
            matches!(
                poll_write_chunks(stream, chunks, &mut cx),
                Poll::Ready(Ok(()))
            )
        };
        let mut out = self.outbox();
        out.writing = false;
        // Left over, queued meanwhile, or closing: the writer task takes it from here (and
        // meets the write error again, if that is what stopped this write).
        let wake = !written || !out.frames.is_empty() || out.closing.is_some();
        drop(out);
        if wake {
            self.wake_writer.notify_one();
        }
        true
    }

    fn count_sent(&self, session: &SessionInner, packets: u64, bytes: u64) {
        self.counters.packets_sent.fetch_add(packets, Relaxed);
        self.counters.bytes_sent.fetch_add(bytes, Relaxed);
        let paths = &session.counters.paths;
        paths.packets_sent.fetch_add(packets, Relaxed);
        paths.bytes_sent.fetch_add(bytes, Relaxed);
    }

    /// Queues a frame for the writer. Returns false once the path is closing.
    pub(crate) fn queue(&self, frame: Frame) -> bool {
        let mut out = self.outbox();
        if out.closing.is_some() {
            return false;
        }
        if !matches!(frame, Frame::Stream(_)) {
            out.control += 1;
        }
        out.frames.push_back(frame);
        drop(out);
        self.wake_writer.notify_one();
        true
    }

    /// Control frames waiting for the writer.
    pub(crate) fn control_backlog(&self) -> usize {
        self.outbox().control
    }

    /// Queues CLOSE as the last frame; the writer flushes, lingers, then closes the connection.
    pub(crate) fn close_gracefully(&self, code: ErrorCode, reason: &str) {
        let mut out = self.outbox();
        if out.closing.is_some() {
            return;
        }
        out.frames.push_back(Frame::Close {
            code: code.0,
            reason: reason.to_owned(),
        });
        out.closing = Some(Closing {
            code,
            reason: reason.to_owned(),
            graceful: true,
        });
        drop(out);
        self.wake_writer.notify_one();
        self.closing_signal.notify_waiters();
    }

    /// Closes the connection now (the peer is gone or already closed).
    pub(crate) fn abort(&self, code: ErrorCode, reason: &str) {
        let mut out = self.outbox();
        out.frames.clear();
        out.control = 0;
        if out.closing.is_none() {
            out.closing = Some(Closing {
                code,
                reason: reason.to_owned(),
                graceful: false,
            });
        }
        drop(out);
        self.conn.close(varint(code.0), reason.as_bytes());
        self.wake_writer.notify_one();
        self.closing_signal.notify_waiters();
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.outbox().closing.is_some()
    }

    fn send_ping(&self) {
        let nonce = {
            let mut ping = self.ping.lock().unwrap_or_else(|p| p.into_inner());
            let nonce = ping.next_nonce;
            ping.next_nonce += 1;
            ping.outstanding = Some((nonce, Instant::now()));
            nonce
        };
        self.queue(Frame::Ping { nonce });
    }

    /// Matches a PONG with the outstanding PING; returns the RTT it measured.
    pub(crate) fn on_pong(&self, nonce: u64) -> Option<Duration> {
        let mut ping = self.ping.lock().unwrap_or_else(|p| p.into_inner());
        match ping.outstanding {
            Some((sent_nonce, at)) if sent_nonce == nonce => {
                ping.outstanding = None;
                let rtt = at.elapsed();
                self.rtt_nanos.store(rtt.as_nanos().max(1) as u64, Relaxed);
                Some(rtt)
            }
            _ => None,
        }
    }

    pub(crate) fn info(&self) -> PathInfo {
        let rtt = self.rtt_nanos.load(Relaxed);
        PathInfo {
            id: self.id,
            remote: self.remote,
            primary: self.primary.load(Relaxed),
            rtt: (rtt > 0).then(|| Duration::from_nanos(rtt)),
            state: if self.is_closing() {
                PathState::Closing
            } else {
                PathState::Active
            },
            counters: self.counters.snapshot(),
        }
    }

    pub(crate) fn is_primary(&self) -> bool {
        self.primary.load(Relaxed)
    }

    pub(crate) fn set_primary(&self, primary: bool) {
        self.primary.store(primary, Relaxed);
    }
}

impl fmt::Debug for PathShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PathShared")
            .field("id", &self.id)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

pub(crate) fn varint(v: u64) -> quinn::VarInt {
    quinn::VarInt::from_u64(v.min(wire::MAX_VARINT)).unwrap_or(quinn::VarInt::MAX)
}

/// Maps a quinn connection error to why the session ended.
pub(crate) fn close_reason_from(err: quinn::ConnectionError) -> CloseReason {
    match err {
        quinn::ConnectionError::ApplicationClosed(close) => CloseReason::Peer {
            code: ErrorCode(close.error_code.into_inner()),
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        other => CloseReason::ConnectionLost(other),
    }
}

/// Writes one packet holding only HELLO.
pub(crate) async fn write_hello(
    send: &mut quinn::SendStream,
    hello: Hello,
) -> Result<(), quinn::WriteError> {
    let mut out = BytesMut::new();
    wire::encode_packet(&[Frame::Hello(hello)], &mut out);
    send.write_all(&out).await
}

/// The client side of a path handshake: QUIC, then the server's HELLO on the path stream the
/// server opened (sent as 0.5-RTT data, so it is usually there when the handshake completes),
/// then our HELLO{path_id}. The caller bounds it with `handshake_timeout`.
pub(crate) async fn client_handshake(
    connecting: quinn::Connecting,
    settings: &crate::config::Settings,
    path_id: u64,
) -> Result<
    (
        quinn::Connection,
        quinn::SendStream,
        quinn::RecvStream,
        Hello,
    ),
    HandshakeError,
> {
    let conn = connecting.await?;
    let (mut send, mut recv) = conn.accept_bi().await?;
    let hello = match read_hello(&mut recv, settings.max_packet_size).await {
        Ok(hello) => hello,
        Err(HandshakeError::Protocol(e)) => {
            conn.close(varint(e.code.0), e.reason.as_bytes());
            return Err(HandshakeError::Protocol(e));
        }
        Err(e) => return Err(e),
    };
    write_hello(&mut send, SessionInner::hello(settings, path_id)).await?;
    Ok((conn, send, recv, hello))
}

/// Why the HELLO exchange failed.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    Connection(quinn::ConnectionError),
    Protocol(ProtocolError),
}

impl From<quinn::ConnectionError> for HandshakeError {
    fn from(e: quinn::ConnectionError) -> Self {
        Self::Connection(e)
    }
}

impl From<ProtocolError> for HandshakeError {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<quinn::WriteError> for HandshakeError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => Self::Connection(c),
            other => Self::Protocol(ProtocolError::new(
                ErrorCode::PROTOCOL_VIOLATION,
                format!("path stream closed during the handshake: {other}"),
            )),
        }
    }
}

/// Reads the first packet of a path stream, which must hold exactly one HELLO.
pub(crate) async fn read_hello(
    recv: &mut quinn::RecvStream,
    max_packet_size: usize,
) -> Result<Hello, HandshakeError> {
    let read_err = |e: quinn::ReadExactError| match e {
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => {
            HandshakeError::Connection(c)
        }
        other => HandshakeError::Protocol(ProtocolError::new(
            ErrorCode::PROTOCOL_VIOLATION,
            format!("path stream ended before HELLO: {other}"),
        )),
    };
    let mut header = [0u8; PACKET_HEADER_LEN];
    recv.read_exact(&mut header).await.map_err(read_err)?;
    let len = wire::packet_len(&header, max_packet_size)
        .map_err(ProtocolError::from)?
        .unwrap_or(0);
    // Bounded by max_packet_size, checked above.
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(read_err)?;
    let mut frames = FrameDecoder::new(Bytes::from(body));
    match (frames.next(), frames.next()) {
        (Some(Ok(Frame::Hello(hello))), None) => {
            if hello.version != wire::VERSION {
                return Err(ProtocolError::new(
                    ErrorCode::VERSION_MISMATCH,
                    format!(
                        "unsupported version {} (this side speaks {})",
                        hello.version,
                        wire::VERSION
                    ),
                )
                .into());
            }
            Ok(hello)
        }
        (Some(Err(e)), _) => Err(ProtocolError::from(e).into()),
        _ => Err(ProtocolError::new(
            ErrorCode::PROTOCOL_VIOLATION,
            "the first packet must hold exactly one HELLO",
        )
        .into()),
    }
}

/// The path reader: reads packets into buffers and submits each to the executor under the
/// path id. Ends when the connection closes or the peer breaks the protocol.
pub(crate) async fn run_reader(
    session: Arc<SessionInner>,
    path: Arc<PathShared>,
    mut recv: quinn::RecvStream,
) {
    let max = session.settings.max_packet_size;
    let executor = session.settings.executor.clone();
    let Some(pool) = session.settings.read_pool() else {
        let reason = CloseReason::Local {
            code: ErrorCode::INTERNAL,
            reason: "no read buffer pool".into(),
        };
        session.path_failed(&path, reason);
        return;
    };
    // `None` while idle: a path waiting for data holds no read buffer (idle sessions are
    // cheap); the first chunk of a burst takes one from the pool.
    let mut buf: Option<PooledBuf> = None;
    let mut next_seq = 0u64;
    let outcome: Result<(), CloseReason> = 'read: loop {
        let read = match buf.as_mut() {
            None => match recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => {
                    let mut fresh = pool.get();
                    fresh.extend_from_slice(&chunk.bytes);
                    buf = Some(fresh);
                    Ok(chunk.bytes.len())
                }
                Ok(None) => Ok(0),
                Err(e) => Err(read_error_reason(e)),
            },
            Some(b) => {
                // Make room: a fresh buffer when the free tail is small or cannot hold the
                // packet in progress. The partial packet (less than one max_packet_size) is
                // copied over; the old storage is reused once its packets are dropped.
                let needed = match wire::packet_len(b, max) {
                    Ok(Some(len)) => PACKET_HEADER_LEN + len,
                    Ok(None) => PACKET_HEADER_LEN,
                    Err(e) => break Err(CloseReason::Protocol(e.into())),
                };
                if b.capacity() - b.len() < MIN_READ || b.capacity() < needed {
                    let mut fresh = pool.get();
                    fresh.reserve(needed);
                    let tail = std::mem::replace(b, fresh).freeze();
                    b.extend_from_slice(&tail);
                }
                recv.read_buf(&mut **b)
                    .await
                    .map_err(|e| match e.downcast::<quinn::ReadError>() {
                        Ok(e) => read_error_reason(e),
                        Err(io) => CloseReason::Protocol(ProtocolError::new(
                            ErrorCode::INTERNAL,
                            format!("path stream read failed: {io}"),
                        )),
                    })
            }
        };
        match read {
            Ok(0) => {
                // The peer finishes its path stream right after CLOSE, and closes the
                // connection with the same code once we acknowledged it. With an unordered
                // executor the CLOSE may still be running, so take the reason from the
                // connection close rather than racing it.
                break Err(close_reason_from(path.conn.closed().await));
            }
            Ok(n) => {
                path.counters.bytes_received.fetch_add(n as u64, Relaxed);
                let total = &session.counters.paths.bytes_received;
                total.fetch_add(n as u64, Relaxed);
            }
            Err(reason) => break Err(reason),
        }
        let Some(buf_ref) = buf.as_mut() else {
            continue;
        };
        // Hand every complete packet over, zero-copy.
        loop {
            let len = match wire::packet_len(buf_ref, max) {
                Ok(Some(len)) if buf_ref.len() >= PACKET_HEADER_LEN + len => len,
                Ok(_) => break,
                Err(e) => break 'read Err(CloseReason::Protocol(e.into())),
            };
            let mut packet = buf_ref.split_to(PACKET_HEADER_LEN + len).freeze();
            let packet = packet.split_off(PACKET_HEADER_LEN);
            if session.is_closed() {
                break 'read Ok(());
            }
            let seq = next_seq;
            next_seq += 1;
            let job = PacketJob {
                packet,
                seq,
                session: session.clone(),
                path: path.clone(),
            };
            if executor.submit(path.executor_key, job).await.is_err() {
                break 'read Err(CloseReason::Local {
                    code: ErrorCode::INTERNAL,
                    reason: "executor closed".into(),
                });
            }
        }
        if buf_ref.is_empty() {
            buf = None;
        }
    };
    if let Err(reason) = outcome {
        session.path_failed(&path, reason);
    }
}

fn read_error_reason(e: quinn::ReadError) -> CloseReason {
    match e {
        quinn::ReadError::ConnectionLost(c) => close_reason_from(c),
        quinn::ReadError::Reset(code) => CloseReason::Peer {
            code: ErrorCode(code.into_inner()),
            reason: "path stream reset".into(),
        },
        other => CloseReason::Protocol(ProtocolError::new(
            ErrorCode::PROTOCOL_VIOLATION,
            format!("path stream failed: {other}"),
        )),
    }
}

/// A number in `[0, 1)` hashed from `key` with a fresh random seed (every `RandomState` gets
/// its own keys): spreads the paths' periodic work (PINGs) evenly over an interval.
fn unit_phase(key: u64) -> f64 {
    use std::hash::BuildHasher;
    let bits = std::hash::RandomState::new().hash_one(key) >> 11;
    bits as f64 / (1_u64 << 53) as f64
}

/// The path writer: drains the outbox into packets of at most `max_packet_size` and writes
/// them; sends PINGs; on close flushes CLOSE, lingers, closes the connection.
pub(crate) async fn run_writer(session: Arc<SessionInner>, path: Arc<PathShared>) {
    let max = session.settings.max_packet_size;
    // One PING at once, for an early RTT sample; then one per interval, at a phase of the
    // path's own, so the paths of sessions opened together do not ping together: a crowd of
    // 1000 sessions connected within half a second otherwise sends 2000 PINGs and their PONGs
    // within that half second of every interval, and the messages queued behind them made
    // `kwik loadtest`'s p99 four times raw quinn's whenever the burst fell in the window.
    path.send_ping();
    let mut pinger = session.settings.ping_interval.map(|every| {
        let first =
            tokio::time::Instant::now() + every.mul_f64(0.5 + unit_phase(path.executor_key));
        let mut pinger = tokio::time::interval_at(first, every);
        pinger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pinger
    });
    // Swapped with the outbox's deque, so both keep their capacity: no allocation per batch.
    let mut frames: VecDeque<Frame> = VecDeque::new();
    loop {
        // Take the send side unless a caller is writing in place (it wakes us when done).
        let (claimed, closing) = {
            let mut out = path.outbox();
            let claimed = !out.writing;
            if claimed {
                out.writing = true;
                out.control = 0;
                std::mem::swap(&mut out.frames, &mut frames);
            }
            (claimed, out.closing.clone())
        };
        if claimed {
            let pending = {
                let mut side = path.send_side();
                let SendSide {
                    scratch, chunks, ..
                } = &mut *side;
                if !frames.is_empty() {
                    let (packets, bytes) =
                        build_packets(frames.drain(..), max, scratch, chunks, &path, &session);
                    path.count_sent(&session, packets, bytes);
                    // A burst's capacity is not kept for the path's whole life.
                    frames.shrink_to(KEPT_FRAME_CAPACITY);
                }
                !chunks.is_empty()
            };
            if pending {
                if !write_pending(&session, &path).await {
                    return;
                }
                path.outbox().writing = false;
                continue;
            }
            match closing {
                Some(c) if c.graceful => {
                    // The send side stays claimed: nothing is written after CLOSE.
                    let stopped = {
                        let mut side = path.send_side();
                        let _ = side.stream.finish();
                        side.stream.stopped()
                    };
                    let _ = tokio::time::timeout(CLOSE_LINGER, stopped).await;
                    path.conn.close(varint(c.code.0), c.reason.as_bytes());
                    return;
                }
                Some(_) => return,
                None => {}
            }
            // Frames queued from here on find the flag down and wake us through the Notify,
            // which keeps the wake-up if it comes before we wait.
            path.outbox().writing = false;
        }
        tokio::select! {
            () = path.wake_writer.notified() => {}
            _ = async { match pinger.as_mut() { Some(p) => p.tick().await, None => std::future::pending().await } } => path.send_ping(),
        }
    }
}

/// Writes the send side's pending packets, for the writer task holding `Outbox::writing`.
/// Returns false when the path is done (failed, or closed while the peer took nothing).
async fn write_pending(session: &SessionInner, path: &Arc<PathShared>) -> bool {
    let written = {
        let write = poll_fn(|cx| {
            let mut side = path.send_side();
            let SendSide { stream, chunks, .. } = &mut *side;
            poll_write_chunks(stream, chunks, cx)
        });
        tokio::pin!(write);
        if path.is_closing() {
            tokio::time::timeout(CLOSE_LINGER, write).await.ok()
        } else {
            tokio::select! {
                r = &mut write => Some(r),
                () = path.closing_signal.notified() => {
                    tokio::time::timeout(CLOSE_LINGER, write).await.ok()
                }
            }
        }
    };
    match written {
        Some(Ok(())) => true,
        Some(Err(quinn::WriteError::ConnectionLost(e))) => {
            session.path_failed(path, close_reason_from(e));
            false
        }
        Some(Err(e)) => {
            session.path_failed(
                path,
                CloseReason::Protocol(ProtocolError::new(
                    ErrorCode::PROTOCOL_VIOLATION,
                    format!("path stream write failed: {e}"),
                )),
            );
            false
        }
        None => {
            // Closing and the peer did not take the data within the linger time.
            let c = path.outbox().closing.clone();
            let (code, reason) =
                c.map_or((ErrorCode::NO_ERROR, String::new()), |c| (c.code, c.reason));
            path.conn.close(varint(code.0), reason.as_bytes());
            false
        }
    }
}

/// Hands `chunks` to quinn until it has taken them all (`Ready(Ok)`, `chunks` empty) or is
/// blocked (`Pending`; what it took is gone from `chunks`, the rest stays for the next call).
fn poll_write_chunks(
    stream: &mut quinn::SendStream,
    chunks: &mut Vec<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), quinn::WriteError>> {
    while !chunks.is_empty() {
        // Cancel safe: a write that returns `Pending` has taken nothing, and one that returns
        // `Ready` has taken exactly what it reports (a chunk taken in part is advanced).
        let written = std::task::ready!(pin!(stream.write_chunks(chunks)).poll(cx))?;
        chunks.drain(..written.chunks);
    }
    Poll::Ready(Ok(()))
}

/// Encodes `frames` into length-prefixed packets appended to `chunks` (headers copied
/// into `scratch`, large payloads referenced). Returns (packets, bytes).
fn build_packets(
    frames: impl IntoIterator<Item = Frame>,
    max: usize,
    scratch: &mut BytesMut,
    chunks: &mut Vec<Bytes>,
    path: &PathShared,
    session: &SessionInner,
) -> (u64, u64) {
    let mut packets = 0u64;
    let mut total = 0u64;
    let mut packet_len = 0usize;
    let mut prefix_at = chunks.len();
    chunks.push(Bytes::new());
    let mut finish_packet =
        |chunks: &mut Vec<Bytes>, scratch: &mut BytesMut, len: usize, at: usize| {
            if !scratch.is_empty() {
                chunks.push(scratch.split().freeze());
            }
            chunks[at] = Bytes::copy_from_slice(&(len as u32).to_be_bytes());
            packets += 1;
            total += (PACKET_HEADER_LEN + len) as u64;
        };
    for frame in frames {
        let ty = frame.frame_type();
        path.counters.frame_sent(ty);
        session.counters.paths.frame_sent(ty);
        let header_at = scratch.len();
        frame.encode_header(scratch);
        let payload = match frame {
            Frame::Stream(s) => s.data,
            Frame::RelayData { data, .. } => data,
            _ => Bytes::new(),
        };
        let frame_len = scratch.len() - header_at + payload.len();
        if packet_len > 0 && packet_len + frame_len > max {
            let header = scratch.split_off(header_at);
            finish_packet(chunks, scratch, packet_len, prefix_at);
            prefix_at = chunks.len();
            chunks.push(Bytes::new());
            packet_len = 0;
            scratch.extend_from_slice(&header);
        }
        packet_len += frame_len;
        if payload.len() > INLINE_PAYLOAD_MAX {
            chunks.push(scratch.split().freeze());
            chunks.push(payload);
        } else {
            scratch.extend_from_slice(&payload);
        }
    }
    finish_packet(chunks, scratch, packet_len, prefix_at);
    (packets, total)
}

#[cfg(test)]
mod phase_tests {
    use super::unit_phase;

    /// Consecutive keys (the paths of sessions opened together) land all over the interval.
    #[test]
    fn ping_phases_spread_over_the_interval() {
        let mut buckets = [0_u32; 10];
        for key in 0..1000 {
            let phase = unit_phase(key);
            assert!((0.0..1.0).contains(&phase), "phase {phase} out of [0, 1)");
            buckets[(phase * 10.0) as usize] += 1;
        }
        // 100 expected per bucket; a clustering schedule would leave most of them empty.
        assert!(
            buckets.iter().all(|&n| n >= 50),
            "clustered phases: {buckets:?}"
        );
    }
}
