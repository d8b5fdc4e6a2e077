//! Logical streams: offset reassembly, flow-control credit and the application handle.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{CloseReason, ErrorCode, ProtocolError, ReadError, WriteError};
use crate::multipath::RelayStreams;
use crate::path::PathShared;
use crate::session::SessionHandle;
use crate::wire::{Frame, StreamFrame};

/// Received bytes of one stream, reassembled by offset whatever path carried them.
///
/// `ready` holds the contiguous bytes from `read_offset`; `pending` holds out-of-order ranges
/// beyond them, never overlapping one another. Overlapping copies of a range must agree.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    read_offset: u64,
    ready: VecDeque<Bytes>,
    ready_len: u64,
    pending: BTreeMap<u64, Bytes>,
    pending_len: u64,
    final_size: Option<u64>,
    max_received: u64,
}

impl Reassembly {
    /// Adds `data` at `offset`; returns how many bytes became newly buffered.
    pub(crate) fn insert(
        &mut self,
        offset: u64,
        mut data: Bytes,
        fin: bool,
    ) -> Result<u64, ProtocolError> {
        let end = offset + data.len() as u64;
        if let Some(final_size) = self.final_size
            && (end > final_size || (fin && end != final_size))
        {
            return Err(ProtocolError::new(
                ErrorCode::FINAL_SIZE,
                format!("data up to {end} but the final size is {final_size}"),
            ));
        }
        if fin {
            if end < self.max_received {
                return Err(ProtocolError::new(
                    ErrorCode::FINAL_SIZE,
                    format!(
                        "final size {end} below received offset {}",
                        self.max_received
                    ),
                ));
            }
            self.final_size = Some(end);
        }
        self.max_received = self.max_received.max(end);

        let mut start = offset;
        let ready_end = self.read_offset + self.ready_len;
        if start < ready_end {
            // Bytes already read by the application can no longer be compared; the rest can.
            let from = start.max(self.read_offset);
            let to = end.min(ready_end);
            if from < to {
                let mine = &data[(from - start) as usize..(to - start) as usize];
                if !self.ready_matches(from - self.read_offset, mine) {
                    return Err(conflict(from));
                }
            }
            if end <= ready_end {
                return Ok(0);
            }
            data = data.slice((ready_end - start) as usize..);
            start = ready_end;
        }

        let lower = match self.pending.range(..=start).next_back() {
            Some((&k, v)) if k + v.len() as u64 > start => k,
            _ => start,
        };
        let mut pieces = Vec::new();
        let mut cursor = start;
        for (&k, v) in self.pending.range(lower..end) {
            let k_end = k + v.len() as u64;
            if k_end <= cursor {
                continue;
            }
            if k > cursor {
                pieces.push((
                    cursor,
                    data.slice((cursor - start) as usize..(k - start) as usize),
                ));
            }
            let from = k.max(cursor);
            let to = k_end.min(end);
            let theirs = &v[(from - k) as usize..(to - k) as usize];
            if theirs != &data[(from - start) as usize..(to - start) as usize] {
                return Err(conflict(from));
            }
            cursor = to;
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            pieces.push((cursor, data.slice((cursor - start) as usize..)));
        }
        let mut added = 0;
        for (k, piece) in pieces {
            if !piece.is_empty() {
                added += piece.len() as u64;
                self.pending_len += piece.len() as u64;
                self.pending.insert(k, piece);
            }
        }
        // Move what became contiguous into the ready queue.
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.read_offset + self.ready_len {
                break;
            }
            let piece = entry.remove();
            self.pending_len -= piece.len() as u64;
            self.ready_len += piece.len() as u64;
            self.ready.push_back(piece);
        }
        Ok(added)
    }

    fn ready_matches(&self, mut skip: u64, mut mine: &[u8]) -> bool {
        for chunk in &self.ready {
            if mine.is_empty() {
                break;
            }
            let len = chunk.len() as u64;
            if skip >= len {
                skip -= len;
                continue;
            }
            let avail = &chunk[skip as usize..];
            let n = avail.len().min(mine.len());
            if avail[..n] != mine[..n] {
                return false;
            }
            mine = &mine[n..];
            skip = 0;
        }
        true
    }

    /// Copies contiguous bytes into `out`; returns the count.
    fn read_into(&mut self, out: &mut ReadBuf<'_>) -> usize {
        let mut copied = 0;
        while out.remaining() > 0 {
            let Some(front) = self.ready.front_mut() else {
                break;
            };
            let n = front.len().min(out.remaining());
            out.put_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                self.ready.pop_front();
            }
            copied += n;
        }
        self.consume(copied as u64);
        copied
    }

    /// Takes the next contiguous chunk (at most `max` bytes) without copying.
    fn read_chunk(&mut self, max: usize) -> Option<Bytes> {
        let front = self.ready.front_mut()?;
        let chunk = if front.len() <= max {
            self.ready.pop_front()?
        } else {
            front.split_to(max)
        };
        self.consume(chunk.len() as u64);
        Some(chunk)
    }

    fn consume(&mut self, n: u64) {
        self.read_offset += n;
        self.ready_len -= n;
    }

    /// Drops everything buffered; returns the byte count dropped.
    fn discard(&mut self) -> u64 {
        let dropped = self.buffered();
        self.ready.clear();
        self.pending.clear();
        self.read_offset += self.ready_len;
        self.ready_len = 0;
        self.pending_len = 0;
        dropped
    }

    pub(crate) fn buffered(&self) -> u64 {
        self.ready_len + self.pending_len
    }

    fn at_end(&self) -> bool {
        self.final_size == Some(self.read_offset)
    }
}

fn conflict(at: u64) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::OVERLAP_CONFLICT,
        format!("overlapping stream data disagrees at offset {at}"),
    )
}

/// Receive half state.
#[derive(Debug)]
pub(crate) struct RecvState {
    pub(crate) buf: Reassembly,
    /// Receive window: credit is `read_offset + window`.
    window: u64,
    /// Largest `max_offset` advertised to the peer.
    pub(crate) advertised: u64,
    /// Paths carrying this stream's data: each gets MAX_STREAM_DATA.
    pub(crate) credit_paths: Vec<Arc<PathShared>>,
    pub(crate) reset: Option<ErrorCode>,
    stopped: bool,
    waker: Option<Waker>,
}

impl RecvState {
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped
    }
}

/// Send half state.
#[derive(Debug)]
pub(crate) struct SendState {
    offset: u64,
    pub(crate) max_data: u64,
    fin_sent: bool,
    reset_sent: bool,
    stopped: Option<ErrorCode>,
    waker: Option<Waker>,
    pub(crate) path: Arc<PathShared>,
}

/// Both halves of one stream, behind one lock (the path reader and the application touch
/// it; neither holds it across an await).
#[derive(Debug)]
pub(crate) struct StreamState {
    pub(crate) recv: RecvState,
    pub(crate) send: SendState,
    pub(crate) closed: Option<CloseReason>,
    retired: bool,
    /// A path that carried this stream's data was removed before its end was read.
    pub(crate) recv_lost: Option<u64>,
    /// The path this stream sends on was removed.
    pub(crate) send_lost: Option<u64>,
    /// Client: bytes relayed for this stream to other servers.
    pub(crate) relay: RelayStreams,
}

impl StreamState {
    pub(crate) fn new(window: u64, peer_window: u64, path: Arc<PathShared>) -> Self {
        Self {
            recv: RecvState {
                buf: Reassembly::default(),
                window,
                advertised: window,
                credit_paths: vec![path.clone()],
                reset: None,
                stopped: false,
                waker: None,
            },
            send: SendState {
                offset: 0,
                max_data: peer_window,
                fin_sent: false,
                reset_sent: false,
                stopped: None,
                waker: None,
                path,
            },
            closed: None,
            retired: false,
            recv_lost: None,
            send_lost: None,
            relay: RelayStreams::default(),
        }
    }

    pub(crate) fn wake_all(&mut self) {
        if let Some(w) = self.recv.waker.take() {
            w.wake();
        }
        if let Some(w) = self.send.waker.take() {
            w.wake();
        }
    }

    pub(crate) fn wake_reader(&mut self) {
        if let Some(w) = self.recv.waker.take() {
            w.wake();
        }
    }

    pub(crate) fn wake_writer(&mut self) {
        if let Some(w) = self.send.waker.take() {
            w.wake();
        }
    }

    /// Records a received RESET_STREAM; returns the buffered bytes dropped.
    pub(crate) fn on_reset(
        &mut self,
        code: ErrorCode,
        final_offset: u64,
    ) -> Result<u64, ProtocolError> {
        let buf = &mut self.recv.buf;
        if final_offset < buf.max_received || buf.final_size.is_some_and(|f| f != final_offset) {
            return Err(ProtocolError::new(
                ErrorCode::FINAL_SIZE,
                format!("reset final size {final_offset} contradicts received data"),
            ));
        }
        if final_offset > self.recv.advertised {
            return Err(flow_control_error(final_offset, self.recv.advertised));
        }
        buf.final_size = Some(final_offset);
        buf.max_received = final_offset;
        if self.recv.reset.is_none() {
            self.recv.reset = Some(code);
        }
        let dropped = buf.discard();
        self.wake_reader();
        Ok(dropped)
    }

    /// Records a received STOP_SENDING: the send half is reset with the peer's code.
    pub(crate) fn on_stop_sending(&mut self, stream_id: u64, code: ErrorCode) {
        if self.send.stopped.is_none() {
            self.send.stopped = Some(code);
        }
        if !self.send.fin_sent && !self.send.reset_sent {
            self.send.reset_sent = true;
            self.send.path.queue(Frame::ResetStream {
                stream_id,
                code: code.0,
                final_offset: self.send.offset,
            });
        }
        self.wake_writer();
    }

    /// Whether both halves are finished, and marks the stream retired the first time.
    pub(crate) fn take_retirable(&mut self) -> bool {
        let send_done = self.send.fin_sent || self.send.reset_sent;
        let recv_done = self.recv.reset.is_some() || self.recv.stopped || self.recv.buf.at_end();
        if send_done && recv_done && !self.retired {
            self.retired = true;
            return true;
        }
        false
    }
}

pub(crate) fn flow_control_error(end: u64, limit: u64) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::FLOW_CONTROL,
        format!("stream data up to {end} beyond the advertised credit {limit}"),
    )
}

/// Shared by the session's stream table and the application's [`Stream`].
#[derive(Debug)]
pub(crate) struct StreamShared {
    pub(crate) id: u64,
    pub(crate) state: Mutex<StreamState>,
}

impl StreamShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, StreamState> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the stream; keep going with the inner value.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What each half of a stream holds: the stream's state and its session.
struct Handle {
    shared: Arc<StreamShared>,
    session: Arc<SessionHandle>,
}

impl Handle {
    fn finish(&mut self) -> Result<(), WriteError> {
        let mut st = self.shared.lock();
        if st.send.fin_sent {
            return Ok(());
        }
        check_writable(&st)?;
        st.send.fin_sent = true;
        let frame = Frame::Stream(StreamFrame {
            stream_id: self.shared.id,
            offset: st.send.offset,
            fin: true,
            data: Bytes::new(),
        });
        st.send.path.send_stream_frame(frame, &self.session.inner);
        let retire = st.take_retirable();
        drop(st);
        self.retire_if(retire);
        Ok(())
    }

    fn reset(&mut self, code: ErrorCode) -> Result<(), WriteError> {
        let mut st = self.shared.lock();
        check_writable(&st)?;
        st.send.reset_sent = true;
        let frame = Frame::ResetStream {
            stream_id: self.shared.id,
            code: code.0,
            final_offset: st.send.offset,
        };
        st.send.path.queue(frame);
        let retire = st.take_retirable();
        drop(st);
        self.retire_if(retire);
        Ok(())
    }

    fn stop(&mut self, code: ErrorCode) {
        let mut st = self.shared.lock();
        if st.recv.stopped || st.recv.reset.is_some() || st.recv.buf.at_end() {
            return;
        }
        st.recv.stopped = true;
        let dropped = st.recv.buf.discard();
        self.session
            .inner
            .counters
            .recv_buffered
            .fetch_sub(dropped, Relaxed);
        if st.closed.is_none() {
            st.send.path.queue(Frame::StopSending {
                stream_id: self.shared.id,
                code: code.0,
            });
        }
        let retire = st.take_retirable();
        drop(st);
        self.retire_if(retire);
    }

    fn set_write_offset(&mut self, offset: u64) -> Result<(), WriteError> {
        let mut st = self.shared.lock();
        check_writable(&st)?;
        if offset < st.send.offset {
            return Err(WriteError::OffsetBehind {
                requested: offset,
                current: st.send.offset,
            });
        }
        st.send.offset = offset;
        Ok(())
    }

    fn write_offset(&self) -> u64 {
        self.shared.lock().send.offset
    }

    fn recv_buffered(&self) -> u64 {
        self.shared.lock().recv.buf.buffered()
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, ReadError> {
        std::future::poll_fn(|cx| self.poll_read_chunk(cx, max)).await
    }

    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Option<Bytes>, ReadError>> {
        let mut st = self.shared.lock();
        if let Some(err) = read_error(&st) {
            return Poll::Ready(Err(err));
        }
        if let Some(chunk) = st.recv.buf.read_chunk(max.max(1)) {
            self.after_read(st, chunk.len() as u64);
            return Poll::Ready(Ok(Some(chunk)));
        }
        if st.recv.buf.at_end() {
            let retire = st.take_retirable();
            drop(st);
            self.retire_if(retire);
            return Poll::Ready(Ok(None));
        }
        if let Some(reason) = &st.closed {
            return Poll::Ready(Err(ReadError::SessionClosed(reason.clone())));
        }
        if let Some(path_id) = st.recv_lost {
            return Poll::Ready(Err(ReadError::PathLost(path_id)));
        }
        st.recv.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Bookkeeping after the application consumed `n` bytes: counters and credit.
    fn after_read(&self, mut st: MutexGuard<'_, StreamState>, n: u64) {
        let counters = &self.session.inner.counters;
        counters.recv_buffered.fetch_sub(n, Relaxed);
        counters.stream_bytes_received.fetch_add(n, Relaxed);
        let recv = &mut st.recv;
        let credit = recv.buf.read_offset + recv.window;
        // Advertise once a quarter window is free, so the sender never runs dry on a fast path
        // while credit frames stay rare.
        if recv.buf.final_size.is_none() && credit - recv.advertised >= recv.window / 4 {
            recv.advertised = credit;
            for path in &recv.credit_paths {
                path.queue(Frame::MaxStreamData {
                    stream_id: self.shared.id,
                    max_offset: credit,
                });
            }
        }
        let retire = st.take_retirable();
        drop(st);
        self.retire_if(retire);
    }

    fn retire_if(&self, retire: bool) {
        if retire {
            self.session.inner.retire_stream(self.shared.id);
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        if let Some(err) = read_error(&st) {
            return Poll::Ready(Err(err.into()));
        }
        let n = st.recv.buf.read_into(buf);
        if n > 0 {
            self.after_read(st, n as u64);
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if st.recv.buf.at_end() {
            let retire = st.take_retirable();
            drop(st);
            self.retire_if(retire);
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = &st.closed {
            return Poll::Ready(Err(ReadError::SessionClosed(reason.clone()).into()));
        }
        if let Some(path_id) = st.recv_lost {
            return Poll::Ready(Err(ReadError::PathLost(path_id).into()));
        }
        st.recv.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut st = self.shared.lock();
        check_writable(&st)?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let credit = st.send.max_data.saturating_sub(st.send.offset);
        if credit == 0 {
            st.send.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let max_frame = self.session.inner.max_stream_payload as u64;
        let n = (buf.len() as u64).min(credit).min(max_frame) as usize;
        let frame = Frame::Stream(StreamFrame {
            stream_id: self.shared.id,
            offset: st.send.offset,
            fin: false,
            data: Bytes::copy_from_slice(&buf[..n]),
        });
        st.send.path.send_stream_frame(frame, &self.session.inner);
        st.send.offset += n as u64;
        self.session
            .inner
            .counters
            .stream_bytes_sent
            .fetch_add(n as u64, Relaxed);
        Poll::Ready(Ok(n))
    }

    /// Sends FIN once the peer's credit covers the write offset (after a
    /// [`set_write_offset`](Handle::set_write_offset) past the credit, the final size must not
    /// exceed what the receiver allows).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut st = self.shared.lock();
            if check_writable(&st).is_ok() && st.send.offset > st.send.max_data {
                st.send.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        Poll::Ready(self.finish().map_err(io::Error::from))
    }

    /// Finishes the send half if it is still open (what dropping it does).
    fn finish_if_open(&mut self) {
        let open = {
            let st = self.shared.lock();
            st.closed.is_none()
                && !st.send.fin_sent
                && !st.send.reset_sent
                && st.send.stopped.is_none()
        };
        if open {
            let _ = self.finish();
        }
    }
}

/// A bidirectional KWIK stream: `AsyncRead` until the peer's FIN, `AsyncWrite` until
/// [`finish`](Stream::finish) (or `shutdown`). [`into_split`](Stream::into_split) hands the two
/// directions to two tasks.
///
/// Dropping a stream finishes its send half if still open and stops its receive half
/// (STOP_SENDING with code 0) if the peer's FIN has not been read.
pub struct Stream {
    // Dropped in this order: the send half finishes, then the receive half stops.
    send: SendHalf,
    recv: RecvHalf,
}

impl Stream {
    pub(crate) fn new(shared: Arc<StreamShared>, session: Arc<SessionHandle>) -> Self {
        let send = Handle {
            shared: Arc::clone(&shared),
            session: Arc::clone(&session),
        };
        Self {
            send: SendHalf { handle: send },
            recv: RecvHalf {
                handle: Handle { shared, session },
            },
        }
    }

    /// The stream id (low bit: 0 client-initiated, 1 server-initiated).
    pub fn id(&self) -> u64 {
        self.send.id()
    }

    /// Sends FIN: the peer reads to the end after the bytes already written. Idempotent.
    pub fn finish(&mut self) -> Result<(), WriteError> {
        self.send.finish()
    }

    /// Abandons the send half: the peer's reads fail with [`ReadError::Reset`] carrying `code`.
    pub fn reset(&mut self, code: ErrorCode) -> Result<(), WriteError> {
        self.send.reset(code)
    }

    /// Stops reading: buffered data is dropped and the peer is asked (STOP_SENDING) to reset
    /// its send half with `code`.
    pub fn stop(&mut self, code: ErrorCode) {
        self.recv.stop(code);
    }

    /// Moves the write offset forward to `offset` (before writing), so that several senders
    /// (paths) can fill disjoint ranges of one stream. The receiver sees a gap until someone
    /// fills it.
    pub fn set_write_offset(&mut self, offset: u64) -> Result<(), WriteError> {
        self.send.set_write_offset(offset)
    }

    /// The next offset a write will use.
    pub fn write_offset(&self) -> u64 {
        self.send.write_offset()
    }

    /// Bytes received on this stream and not yet read (at most the stream window).
    pub fn recv_buffered(&self) -> u64 {
        self.recv.recv_buffered()
    }

    /// Reads the next contiguous chunk of at most `max` bytes without copying; `Ok(None)` at
    /// the end of the stream.
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, ReadError> {
        self.recv.read_chunk(max).await
    }

    /// Splits the stream into its receive and send halves, each owned and usable from its own
    /// task, without a lock between them (unlike `tokio::io::split`). Each half keeps its part
    /// of the drop behaviour: dropping the [`SendHalf`] finishes it if still open, dropping the
    /// [`RecvHalf`] stops it if the peer's FIN has not been read.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # async fn echo(session: kwik_transport::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// let stream = session.accept_stream().await?;
    /// let (mut recv, mut send) = stream.into_split();
    /// let reader = tokio::spawn(async move {
    ///     let mut request = Vec::new();
    ///     recv.read_to_end(&mut request).await.map(|_| request)
    /// });
    /// send.write_all(b"hello").await?;
    /// send.shutdown().await?;
    /// let request = reader.await??;
    /// # let _ = request; Ok(())
    /// # }
    /// ```
    pub fn into_split(self) -> (RecvHalf, SendHalf) {
        (self.recv, self.send)
    }
}

/// The sending half of a [`Stream`] ([`Stream::into_split`]): `AsyncWrite` until
/// [`finish`](SendHalf::finish) (or `shutdown`). Dropping it finishes it if still open.
pub struct SendHalf {
    handle: Handle,
}

impl SendHalf {
    /// The stream id (low bit: 0 client-initiated, 1 server-initiated).
    pub fn id(&self) -> u64 {
        self.handle.shared.id
    }

    /// Sends FIN: the peer reads to the end after the bytes already written. Idempotent.
    pub fn finish(&mut self) -> Result<(), WriteError> {
        self.handle.finish()
    }

    /// Abandons the send half: the peer's reads fail with [`ReadError::Reset`] carrying `code`.
    pub fn reset(&mut self, code: ErrorCode) -> Result<(), WriteError> {
        self.handle.reset(code)
    }

    /// Moves the write offset forward to `offset` (before writing), so that several senders
    /// (paths) can fill disjoint ranges of one stream. The receiver sees a gap until someone
    /// fills it.
    pub fn set_write_offset(&mut self, offset: u64) -> Result<(), WriteError> {
        self.handle.set_write_offset(offset)
    }

    /// The next offset a write will use.
    pub fn write_offset(&self) -> u64 {
        self.handle.write_offset()
    }
}

/// The receiving half of a [`Stream`] ([`Stream::into_split`]): `AsyncRead` until the peer's
/// FIN. Dropping it stops it (STOP_SENDING with code 0) if the FIN has not been read.
pub struct RecvHalf {
    handle: Handle,
}

impl RecvHalf {
    /// The stream id (low bit: 0 client-initiated, 1 server-initiated).
    pub fn id(&self) -> u64 {
        self.handle.shared.id
    }

    /// Stops reading: buffered data is dropped and the peer is asked (STOP_SENDING) to reset
    /// its send half with `code`.
    pub fn stop(&mut self, code: ErrorCode) {
        self.handle.stop(code);
    }

    /// Bytes received on this stream and not yet read (at most the stream window).
    pub fn recv_buffered(&self) -> u64 {
        self.handle.recv_buffered()
    }

    /// Reads the next contiguous chunk of at most `max` bytes without copying; `Ok(None)` at
    /// the end of the stream.
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, ReadError> {
        self.handle.read_chunk(max).await
    }
}

fn check_writable(st: &StreamState) -> Result<(), WriteError> {
    if let Some(reason) = &st.closed {
        return Err(WriteError::SessionClosed(reason.clone()));
    }
    if let Some(code) = st.send.stopped {
        return Err(WriteError::Stopped(code));
    }
    if st.send.fin_sent || st.send.reset_sent {
        return Err(WriteError::ClosedStream);
    }
    if let Some(path_id) = st.send_lost {
        return Err(WriteError::PathLost(path_id));
    }
    Ok(())
}

fn read_error(st: &StreamState) -> Option<ReadError> {
    if let Some(code) = st.recv.reset {
        return Some(ReadError::Reset(code));
    }
    if st.recv.stopped {
        return Some(ReadError::Stopped);
    }
    None
}

impl AsyncRead for RecvHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().handle.poll_read(cx, buf)
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().handle.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every write's frame is already with quinn or queued for the path writer, which sends
        // without waiting to be flushed: there is nothing to push.
        Poll::Ready(Ok(()))
    }

    /// Sends FIN once the peer's credit covers the write offset (after a
    /// [`set_write_offset`](SendHalf::set_write_offset) past the credit, the final size must not
    /// exceed what the receiver allows).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().handle.poll_shutdown(cx)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().send).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().send).poll_flush(cx)
    }

    /// As [`SendHalf`]'s: FIN once the peer's credit covers the write offset.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().send).poll_shutdown(cx)
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        self.handle.finish_if_open();
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        self.handle.stop(ErrorCode::NO_ERROR);
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendHalf")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RecvHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvHalf")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    fn drain(r: &mut Reassembly) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = r.read_chunk(usize::MAX) {
            out.extend_from_slice(&c);
        }
        out
    }

    #[test]
    fn reassembles_out_of_order_and_overlapping_ranges() {
        let mut r = Reassembly::default();
        assert_eq!(r.insert(6, b(b"ghij"), true).unwrap(), 4);
        assert_eq!(r.insert(2, b(b"cdef"), false).unwrap(), 4);
        assert_eq!(r.buffered(), 8);
        // Overlaps both existing ranges and fills the head.
        assert_eq!(r.insert(0, b(b"abcdefgh"), false).unwrap(), 2);
        assert_eq!(drain(&mut r), b"abcdefghij");
        assert!(r.at_end());
    }

    #[test]
    fn disagreeing_overlap_is_an_error() {
        let mut r = Reassembly::default();
        r.insert(4, b(b"wxyz"), false).unwrap();
        let err = r.insert(2, b(b"..wX"), false).unwrap_err();
        assert_eq!(err.code, ErrorCode::OVERLAP_CONFLICT);
        let mut r = Reassembly::default();
        r.insert(0, b(b"abcd"), false).unwrap();
        let err = r.insert(1, b(b"bX"), false).unwrap_err();
        assert_eq!(err.code, ErrorCode::OVERLAP_CONFLICT);
        // Agreeing duplicates are fine.
        assert_eq!(r.insert(1, b(b"bcd"), false).unwrap(), 0);
    }

    #[test]
    fn final_size_is_enforced() {
        let mut r = Reassembly::default();
        r.insert(0, b(b"abc"), true).unwrap();
        assert_eq!(
            r.insert(3, b(b"d"), false).unwrap_err().code,
            ErrorCode::FINAL_SIZE
        );
        let mut r = Reassembly::default();
        r.insert(0, b(b"abcdef"), false).unwrap();
        assert_eq!(
            r.insert(0, b(b"abc"), true).unwrap_err().code,
            ErrorCode::FINAL_SIZE
        );
    }

    #[test]
    fn duplicate_of_consumed_data_is_ignored() {
        let mut r = Reassembly::default();
        r.insert(0, b(b"abcd"), false).unwrap();
        assert_eq!(drain(&mut r), b"abcd");
        assert_eq!(r.insert(0, b(b"abcdef"), false).unwrap(), 2);
        assert_eq!(drain(&mut r), b"ef");
    }
}
