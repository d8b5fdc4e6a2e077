//! Sessions: the stream table, frame handling, paths and close.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::error::{CloseReason, ErrorCode, ProtocolError, SessionError};
use crate::multipath::{AddPathError, Multi, PathId, Relay, RelayError, RemovePathError};
use crate::path::{self, MAX_CONTROL_BACKLOG, PathShared};
use crate::stats::{PathInfo, SessionCounters, SessionStats};
use crate::stream::{Stream, StreamShared, StreamState, flow_control_error};
use crate::wire::{Frame, FrameDecoder, Hello, MAX_STREAM_FRAME_OVERHEAD};

/// The session state shared by its handles, streams and path tasks.
pub(crate) struct SessionInner {
    pub(crate) client: bool,
    pub(crate) settings: Settings,
    /// Largest STREAM payload that fits a packet.
    pub(crate) max_stream_payload: usize,
    state: Mutex<State>,
    closed: AtomicBool,
    closed_tx: watch::Sender<Option<CloseReason>>,
    accept_notify: Notify,
    open_notify: Notify,
    pub(crate) counters: SessionCounters,
    tasks: TaskTracker,
    /// Paths added, removed and relayed to (multipath.rs).
    pub(crate) multi: Multi,
    /// Keeps a client's own endpoint (and a server's listener endpoint) alive.
    _endpoint: quinn::Endpoint,
}

struct State {
    /// Keyed by stream id, which the peer chooses: foldhash with a per-table random seed
    /// (hashbrown's default) rather than SipHash, which cost ~600 instructions per echoed
    /// message in `kwik loadtest` (docs/benchmarks.md).
    streams: HashMap<u64, Arc<StreamShared>, foldhash::fast::RandomState>,
    accept_queue: VecDeque<Arc<StreamShared>>,
    /// Streams this side opened (the next local stream index).
    next_local: u64,
    /// Streams this side may open in total (peer's MAX_STREAMS).
    local_max: u64,
    /// Peer streams seen (the next peer stream index).
    peer_opened: u64,
    /// Peer streams retired from the table.
    peer_retired: u64,
    /// Peer streams allowed in total (advertised MAX_STREAMS).
    peer_max: u64,
    /// The peer's initial stream window (its HELLO).
    peer_window: u64,
    paths: Vec<Arc<PathShared>>,
    close: Option<CloseReason>,
}

impl SessionInner {
    pub(crate) fn new(
        client: bool,
        settings: Settings,
        peer: &Hello,
        endpoint: quinn::Endpoint,
    ) -> Arc<Self> {
        let max_stream_payload = settings.max_packet_size - MAX_STREAM_FRAME_OVERHEAD;
        let (closed_tx, _) = watch::channel(None);
        Arc::new(Self {
            client,
            max_stream_payload,
            state: Mutex::new(State {
                streams: HashMap::default(),
                accept_queue: VecDeque::new(),
                next_local: 0,
                local_max: peer.max_streams,
                peer_opened: 0,
                peer_retired: 0,
                peer_max: settings.max_streams,
                peer_window: peer.stream_window,
                paths: Vec::new(),
                close: None,
            }),
            settings,
            closed: AtomicBool::new(false),
            closed_tx,
            accept_notify: Notify::new(),
            open_notify: Notify::new(),
            counters: SessionCounters::default(),
            tasks: TaskTracker::new(),
            multi: Multi::default(),
            _endpoint: endpoint,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The HELLO this side sends, carrying its limits.
    pub(crate) fn hello(settings: &Settings, path_id: u64) -> Hello {
        Hello {
            version: crate::wire::VERSION,
            path_id,
            max_streams: settings.max_streams,
            stream_window: settings.stream_window,
        }
    }

    /// Adds a path whose handshake finished and starts its reader and writer.
    pub(crate) fn start_path(self: &Arc<Self>, path: Arc<PathShared>, recv: quinn::RecvStream) {
        {
            let mut st = self.state();
            if st.close.is_some() {
                // An added path whose dial finished after the session closed.
                drop(st);
                path.abort(ErrorCode::NO_ERROR, "session closed");
                return;
            }
            st.paths.push(path.clone());
        }
        if let Some(o) = &self.settings.observer {
            o.path_added(path.id(), path.conn.remote_address());
        }
        self.tasks
            .spawn(path::run_writer(self.clone(), path.clone()));
        self.tasks.spawn(path::run_reader(self.clone(), path, recv));
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    fn side_bit(&self) -> u64 {
        u64::from(!self.client)
    }

    pub(crate) fn primary_path(&self) -> Option<Arc<PathShared>> {
        let st = self.state();
        st.paths
            .iter()
            .find(|p| p.is_primary())
            .or(st.paths.first())
            .cloned()
    }

    /// Decodes and applies one packet (called by the executor).
    pub(crate) fn handle_packet(self: &Arc<Self>, path: &Arc<PathShared>, packet: Bytes, seq: u64) {
        if self.is_closed() {
            return;
        }
        let mut relays = Vec::new();
        path.counters.packets_received.fetch_add(1, Relaxed);
        self.counters.paths.packets_received.fetch_add(1, Relaxed);
        for frame in FrameDecoder::new(packet) {
            let result = match frame {
                Ok(frame) => {
                    let ty = frame.frame_type();
                    path.counters.frame_received(ty);
                    self.counters.paths.frame_received(ty);
                    match frame {
                        Frame::RelayData {
                            path_id,
                            stream_id,
                            data,
                        } if self.client => {
                            relays.push(Relay::new(path_id, stream_id, data));
                            Ok(())
                        }
                        frame => self.handle_frame(path, frame),
                    }
                }
                Err(e) => Err(e.into()),
            };
            if let Err(e) = result {
                self.protocol_error(path, e);
                return;
            }
            if self.is_closed() {
                return;
            }
        }
        if self.client
            && let Err(e) = self.on_relays(path, seq, relays)
        {
            self.protocol_error(path, e);
        }
    }

    fn handle_frame(
        self: &Arc<Self>,
        path: &Arc<PathShared>,
        frame: Frame,
    ) -> Result<(), ProtocolError> {
        match frame {
            Frame::Stream(s) => {
                let Some(stream) = self.stream_for_frame(s.stream_id, path)? else {
                    return Ok(());
                };
                let mut st = stream.lock();
                if st.recv.reset.is_some() || st.closed.is_some() {
                    return Ok(());
                }
                let end = s.offset + s.data.len() as u64;
                if end > st.recv.advertised {
                    return Err(flow_control_error(end, st.recv.advertised));
                }
                // Merged streams: only the home path's FIN sets the final size; a FIN from
                // another server ends that server's contribution (docs/protocol.md §12).
                let fin = s.fin && Arc::ptr_eq(&st.send.path, path);
                if st.recv.is_stopped() {
                    // The application stopped reading: the bytes are dropped on arrival.
                    return Ok(());
                }
                let added = st.recv.buf.insert(s.offset, s.data, fin)?;
                self.counters.recv_buffered.fetch_add(added, Relaxed);
                if !st.recv.credit_paths.iter().any(|p| Arc::ptr_eq(p, path)) {
                    st.recv.credit_paths.push(path.clone());
                }
                st.wake_reader();
            }
            Frame::MaxStreamData {
                stream_id,
                max_offset,
            } => {
                if let Some(stream) = self.stream_for_frame(stream_id, path)? {
                    let mut st = stream.lock();
                    if !Arc::ptr_eq(&st.send.path, path) {
                        // Credit from a server the client relays to for this stream.
                        let max_payload = self.max_stream_payload;
                        st.relay
                            .on_credit(path.id(), stream_id, max_offset, max_payload);
                    } else if max_offset > st.send.max_data {
                        st.send.max_data = max_offset;
                        st.wake_writer();
                    }
                }
            }
            Frame::ResetStream {
                stream_id,
                code,
                final_offset,
            } => {
                if let Some(stream) = self.stream_for_frame(stream_id, path)? {
                    let mut st = stream.lock();
                    let dropped = st.on_reset(ErrorCode(code), final_offset)?;
                    self.counters.recv_buffered.fetch_sub(dropped, Relaxed);
                    let retire = st.take_retirable();
                    drop(st);
                    if retire {
                        self.retire_stream(stream_id);
                    }
                }
            }
            Frame::StopSending { stream_id, code } => {
                if let Some(stream) = self.stream_for_frame(stream_id, path)? {
                    let mut st = stream.lock();
                    st.on_stop_sending(stream_id, ErrorCode(code));
                    let retire = st.take_retirable();
                    drop(st);
                    if retire {
                        self.retire_stream(stream_id);
                    }
                }
            }
            Frame::MaxStreams { max_streams } => {
                let mut st = self.state();
                if max_streams > st.local_max {
                    st.local_max = max_streams;
                    drop(st);
                    self.open_notify.notify_waiters();
                }
            }
            Frame::Ping { nonce } => {
                if path.control_backlog() >= MAX_CONTROL_BACKLOG {
                    return Err(ProtocolError::new(
                        ErrorCode::EXCESSIVE_LOAD,
                        "too many PINGs waiting for their PONG",
                    ));
                }
                path.queue(Frame::Pong { nonce });
            }
            Frame::Pong { nonce } => {
                if let (Some(rtt), Some(o)) = (path.on_pong(nonce), &self.settings.observer) {
                    o.rtt_sample(path.id(), rtt);
                }
            }
            Frame::Close { code, reason } => {
                let reason = CloseReason::Peer {
                    code: ErrorCode(code),
                    reason,
                };
                if self.drop_path(path, reason.clone()) {
                    return Ok(());
                }
                self.close_with(reason, false);
            }
            Frame::AddPath {
                request_id,
                address,
            } if self.client => self.on_add_path(path, request_id, address),
            Frame::AddPathResult {
                request_id,
                outcome,
            } if !self.client => {
                if let Some(path_id) = self.multi.on_add_path_result(request_id, outcome) {
                    // Nobody waits for this path any more: the client should not keep it.
                    path.queue(Frame::RemovePath { path_id });
                }
            }
            Frame::RemovePath { path_id } if path_id != path.id() => {
                if self.client {
                    if let Some(target) = self.path_by_id(path_id) {
                        let reason = CloseReason::Local {
                            code: ErrorCode::NO_ERROR,
                            reason: "path removed by the primary server".into(),
                        };
                        if !self.drop_path(&target, reason.clone()) {
                            self.close_with(reason, true);
                        }
                    }
                } else {
                    // The client reports a path this server added as gone.
                    self.multi.forget(path_id);
                }
            }
            Frame::RemovePath { .. } => {
                let reason = CloseReason::Peer {
                    code: ErrorCode::NO_ERROR,
                    reason: "path removed by peer".into(),
                };
                if !self.drop_path(path, reason) {
                    self.close_with(
                        CloseReason::Peer {
                            code: ErrorCode::NO_ERROR,
                            reason: "last path removed by peer".into(),
                        },
                        true,
                    );
                }
            }
            Frame::Hello(_) => {
                return Err(ProtocolError::new(
                    ErrorCode::PROTOCOL_VIOLATION,
                    "HELLO after the handshake",
                ));
            }
            other => {
                return Err(ProtocolError::new(
                    ErrorCode::PROTOCOL_VIOLATION,
                    format!(
                        "{} is not valid towards a {}",
                        other.frame_type(),
                        if self.client { "client" } else { "server" }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Finds the stream a frame refers to, opening peer streams implicitly (all lower ids
    /// too, as in QUIC, so reordered frames cannot skip an accept). `None`: the stream was
    /// retired and the frame is stale.
    fn stream_for_frame(
        &self,
        id: u64,
        path: &Arc<PathShared>,
    ) -> Result<Option<Arc<StreamShared>>, ProtocolError> {
        let mut st = self.state();
        if let Some(s) = st.streams.get(&id) {
            return Ok(Some(s.clone()));
        }
        if st.close.is_some() {
            return Ok(None);
        }
        let index = id >> 1;
        if id & 1 == self.side_bit() {
            if index < st.next_local {
                return Ok(None);
            }
            return Err(ProtocolError::new(
                ErrorCode::STREAM_STATE,
                format!("stream {id} was not opened by this side"),
            ));
        }
        if index < st.peer_opened {
            return Ok(None);
        }
        if index >= st.peer_max {
            return Err(ProtocolError::new(
                ErrorCode::STREAM_LIMIT,
                format!("stream {id} exceeds the stream limit of {}", st.peer_max),
            ));
        }
        let peer_bit = id & 1;
        let mut found = None;
        for i in st.peer_opened..=index {
            let sid = (i << 1) | peer_bit;
            let shared = Arc::new(StreamShared {
                id: sid,
                state: Mutex::new(StreamState::new(
                    self.settings.stream_window,
                    st.peer_window,
                    path.clone(),
                )),
            });
            st.streams.insert(sid, shared.clone());
            st.accept_queue.push_back(shared.clone());
            found = Some(shared);
        }
        let opened = index + 1 - st.peer_opened;
        st.peer_opened = index + 1;
        drop(st);
        self.counters.streams_accepted.fetch_add(opened, Relaxed);
        self.accept_notify.notify_waiters();
        Ok(found)
    }

    /// Removes a stream whose both halves are finished; peer streams free a MAX_STREAMS slot.
    pub(crate) fn retire_stream(&self, id: u64) {
        let mut st = self.state();
        if st.streams.remove(&id).is_none() {
            return;
        }
        if id & 1 != self.side_bit() {
            st.peer_retired += 1;
            st.peer_max = st.peer_retired + self.settings.max_streams;
            let frame = Frame::MaxStreams {
                max_streams: st.peer_max,
            };
            let primary = st.paths.iter().find(|p| p.is_primary()).cloned();
            drop(st);
            if let Some(p) = primary {
                p.queue(frame);
            }
        }
    }

    fn protocol_error(&self, path: &Arc<PathShared>, err: ProtocolError) {
        tracing::warn!(
            path = path.id(),
            remote = %path.conn.remote_address(),
            code = %err.code,
            "kwik protocol error, closing: {}",
            err.reason
        );
        if let Some(o) = &self.settings.observer {
            o.protocol_error(err.code);
        }
        // One misbehaving server loses its path; servers disagreeing on a merged stream's
        // bytes (OVERLAP_CONFLICT) compromise the whole session.
        if err.code != ErrorCode::OVERLAP_CONFLICT
            && self.drop_path(path, CloseReason::Protocol(err.clone()))
        {
            return;
        }
        self.close_with(CloseReason::Protocol(err), true);
    }

    /// A path ended (connection lost, protocol error, peer finished). A session with a single
    /// path ends with it; removing one path of several is the multi-path extension's job.
    pub(crate) fn path_failed(&self, path: &Arc<PathShared>, reason: CloseReason) {
        let session_wide =
            matches!(&reason, CloseReason::Protocol(e) if e.code == ErrorCode::OVERLAP_CONFLICT);
        if !session_wide && self.drop_path(path, reason.clone()) {
            return;
        }
        match reason {
            CloseReason::Protocol(e) => self.protocol_error(path, e),
            CloseReason::Local { .. } => self.close_with(reason, true),
            other => self.close_with(other, false),
        }
    }

    /// Closes the session once: records `reason`, fails pending operations, and closes every
    /// path (with a CLOSE frame when `send_close`).
    pub(crate) fn close_with(&self, reason: CloseReason, send_close: bool) {
        let (streams, paths) = {
            let mut st = self.state();
            if st.close.is_some() {
                return;
            }
            st.close = Some(reason.clone());
            self.closed.store(true, Relaxed);
            st.accept_queue.clear();
            let streams: Vec<_> = st.streams.drain().map(|(_, s)| s).collect();
            (streams, st.paths.clone())
        };
        for stream in streams {
            let mut st = stream.lock();
            st.closed = Some(reason.clone());
            st.wake_all();
        }
        self.accept_notify.notify_waiters();
        self.open_notify.notify_waiters();
        self.multi.on_close(&reason);
        let (code, text) = match &reason {
            CloseReason::Local { code, reason } | CloseReason::Peer { code, reason } => {
                (*code, reason.as_str())
            }
            CloseReason::Protocol(e) => (e.code, e.reason.as_str()),
            CloseReason::ConnectionLost(_) => (ErrorCode::NO_ERROR, ""),
        };
        for path in &paths {
            if send_close {
                path.close_gracefully(code, text);
            } else {
                path.abort(code, text);
            }
            if let Some(o) = &self.settings.observer {
                o.path_removed(path.id());
            }
        }
        self.tasks.close();
        if let Some(o) = &self.settings.observer {
            o.session_closed(self.client, &reason);
        }
        self.closed_tx.send_replace(Some(reason));
    }

    /// Why the session closed, or a local "no path" reason while it is still open.
    pub(crate) fn close_reason_or_local(&self) -> CloseReason {
        self.state().close.clone().unwrap_or_else(no_path)
    }

    pub(crate) fn path_count(&self) -> usize {
        self.state().paths.len()
    }

    pub(crate) fn path_by_id(&self, id: PathId) -> Option<Arc<PathShared>> {
        self.state().paths.iter().find(|p| p.id() == id).cloned()
    }

    /// A stream this side opened: `None` if retired, an error if never opened.
    pub(crate) fn local_stream(&self, id: u64) -> Result<Option<Arc<StreamShared>>, ProtocolError> {
        let st = self.state();
        if let Some(s) = st.streams.get(&id) {
            return Ok(Some(s.clone()));
        }
        if id & 1 == self.side_bit() && (id >> 1) < st.next_local {
            return Ok(None);
        }
        Err(ProtocolError::new(
            ErrorCode::STREAM_STATE,
            format!("stream {id} was not opened by this side"),
        ))
    }

    /// Runs a session task (joined by [`Session::closed`]).
    pub(crate) fn spawn_task(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(fut);
    }

    /// Removes `path` from a session that has other paths: closes it (CLOSE for local and
    /// protocol reasons), moves the primary role, fails the streams that needed it and tells
    /// the primary server. Returns false, doing nothing, when `path` is the last path (the
    /// caller closes the session); true if the path is gone (or was already).
    pub(crate) fn drop_path(&self, path: &Arc<PathShared>, reason: CloseReason) -> bool {
        let (streams, primary) = {
            let mut st = self.state();
            if st.close.is_some() {
                return false;
            }
            let Some(i) = st.paths.iter().position(|p| Arc::ptr_eq(p, path)) else {
                return true;
            };
            if st.paths.len() == 1 {
                return false;
            }
            st.paths.remove(i);
            if path.is_primary() {
                path.set_primary(false);
                st.paths[0].set_primary(true);
            }
            let streams: Vec<_> = st.streams.values().cloned().collect();
            (streams, st.paths.iter().find(|p| p.is_primary()).cloned())
        };
        let id = path.id();
        tracing::debug!(path = id, "kwik path removed: {reason}");
        match &reason {
            CloseReason::Local { code, reason } => path.close_gracefully(*code, reason),
            CloseReason::Protocol(e) => path.close_gracefully(e.code, &e.reason),
            CloseReason::Peer { code, reason } => path.abort(*code, reason),
            _ => path.abort(ErrorCode::NO_ERROR, ""),
        }
        if let Some(o) = &self.settings.observer {
            o.path_removed(id);
        }
        self.multi.forget(id);
        for stream in streams {
            let mut st = stream.lock();
            st.relay.remove(id);
            let carried = st.recv.credit_paths.iter().any(|p| Arc::ptr_eq(p, path));
            st.recv.credit_paths.retain(|p| !Arc::ptr_eq(p, path));
            if carried && st.recv_lost.is_none() {
                st.recv_lost = Some(id);
                st.wake_reader();
            }
            if Arc::ptr_eq(&st.send.path, path) && st.send_lost.is_none() {
                st.send_lost = Some(id);
                st.wake_writer();
            }
        }
        if self.client
            && let Some(p) = primary
        {
            p.queue(Frame::RemovePath { path_id: id });
        }
        true
    }

    async fn open_stream(self: &Arc<Self>) -> Result<Arc<StreamShared>, SessionError> {
        loop {
            let notified = self.open_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state();
                if let Some(reason) = &st.close {
                    return Err(SessionError::Closed(reason.clone()));
                }
                if st.next_local < st.local_max {
                    let path = st
                        .paths
                        .iter()
                        .find(|p| p.is_primary())
                        .or(st.paths.first())
                        .cloned()
                        .ok_or_else(|| SessionError::Closed(no_path()))?;
                    let id = (st.next_local << 1) | self.side_bit();
                    st.next_local += 1;
                    let shared = Arc::new(StreamShared {
                        id,
                        state: Mutex::new(StreamState::new(
                            self.settings.stream_window,
                            st.peer_window,
                            path,
                        )),
                    });
                    st.streams.insert(id, shared.clone());
                    self.counters.streams_opened.fetch_add(1, Relaxed);
                    return Ok(shared);
                }
            }
            notified.await;
        }
    }

    async fn accept_stream(&self) -> Result<Arc<StreamShared>, SessionError> {
        loop {
            let notified = self.accept_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state();
                if let Some(s) = st.accept_queue.pop_front() {
                    return Ok(s);
                }
                if let Some(reason) = &st.close {
                    return Err(SessionError::Closed(reason.clone()));
                }
            }
            notified.await;
        }
    }
}

fn no_path() -> CloseReason {
    CloseReason::Local {
        code: ErrorCode::INTERNAL,
        reason: "no path".into(),
    }
}

/// Closes the session when the last [`Session`] and [`Stream`] handle is dropped.
pub(crate) struct SessionHandle {
    pub(crate) inner: Arc<SessionInner>,
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.inner.close_with(
            CloseReason::Local {
                code: ErrorCode::NO_ERROR,
                reason: "session dropped".into(),
            },
            true,
        );
    }
}

/// A KWIK session: one client talking to a server over one or more paths.
///
/// Cheap to clone; the session closes (CLOSE with code 0) when the last clone and the last
/// [`Stream`] are dropped, or explicitly with [`close`](Session::close).
#[derive(Clone)]
pub struct Session {
    handle: Arc<SessionHandle>,
}

impl Session {
    pub(crate) fn new(inner: Arc<SessionInner>) -> Self {
        if let Some(o) = &inner.settings.observer {
            o.session_opened(inner.client);
        }
        Self {
            handle: Arc::new(SessionHandle { inner }),
        }
    }

    fn inner(&self) -> &Arc<SessionInner> {
        &self.handle.inner
    }

    /// Opens a stream. Waits while the peer's stream limit (MAX_STREAMS) is reached. The peer
    /// learns of the stream with its first byte (or FIN).
    pub async fn open_stream(&self) -> Result<Stream, SessionError> {
        let shared = self.inner().open_stream().await?;
        Ok(Stream::new(shared, self.handle.clone()))
    }

    /// Waits for the next stream the peer opened.
    pub async fn accept_stream(&self) -> Result<Stream, SessionError> {
        let shared = self.inner().accept_stream().await?;
        Ok(Stream::new(shared, self.handle.clone()))
    }

    /// Closes the session: every path sends CLOSE{code, reason}, pending and future
    /// operations fail with [`CloseReason::Local`]. Data already received stays readable.
    pub fn close(&self, code: ErrorCode, reason: &str) {
        self.inner().close_with(
            CloseReason::Local {
                code,
                reason: reason.to_owned(),
            },
            true,
        );
    }

    /// Waits until the session is closed and its path tasks have ended; returns why.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.inner().closed_tx.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_else(no_path),
            Err(_) => no_path(),
        };
        self.inner().tasks.wait().await;
        reason
    }

    /// Why the session closed, or `None` while it is open.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner().closed_tx.borrow().clone()
    }

    /// Whether this is the client side.
    pub fn is_client(&self) -> bool {
        self.inner().client
    }

    /// The primary path's remote address.
    pub fn remote_address(&self) -> Option<SocketAddr> {
        self.inner().primary_path().map(|p| p.conn.remote_address())
    }

    /// Server: asks the client to dial `address` (`host:port`) and add it to this session as
    /// a new path (ADD_PATH). Resolves with the new path's id once the client answered, or
    /// with a typed error when the client refused, failed to dial (it bounds the dial by its
    /// handshake timeout), or did not answer within twice this side's handshake timeout.
    /// Several requests may be in flight.
    pub async fn add_path(&self, address: impl ToString) -> Result<PathId, AddPathError> {
        self.inner().add_path(address.to_string()).await
    }

    /// Removes path `id`. On the client the path drains and closes (the server behind it sees
    /// its session close with code 0); on the primary server it asks the client to do so
    /// (REMOVE_PATH) for a path this server added. The last path cannot be removed: close the
    /// session instead.
    pub fn remove_path(&self, id: PathId) -> Result<(), RemovePathError> {
        self.inner().remove_path(id)
    }

    /// Server: asks the client to send `data` as the next bytes of client stream
    /// `stream_id` on path `path_id` (RELAY_DATA), i.e. to the server behind that path.
    /// Relays for one (path, stream) arrive in call order at consecutive offsets.
    pub fn relay(
        &self,
        path_id: PathId,
        stream_id: u64,
        data: impl Into<Bytes>,
    ) -> Result<(), RelayError> {
        self.inner().relay(path_id, stream_id, data.into())
    }

    /// A snapshot of every path of this side: on the client every server's path (id, remote
    /// address, primary flag, RTT, traffic, state); on a server its own connection only.
    pub fn paths(&self) -> Vec<PathInfo> {
        self.inner()
            .state()
            .paths
            .iter()
            .map(|p| p.info())
            .collect()
    }

    /// A snapshot of the session counters.
    pub fn stats(&self) -> SessionStats {
        let inner = self.inner();
        let streams_active = inner.state().streams.len() as u64;
        let c = &inner.counters;
        SessionStats {
            streams_opened: c.streams_opened.load(Relaxed),
            streams_accepted: c.streams_accepted.load(Relaxed),
            streams_active,
            stream_bytes_sent: c.stream_bytes_sent.load(Relaxed),
            stream_bytes_received: c.stream_bytes_received.load(Relaxed),
            recv_buffered: c.recv_buffered.load(Relaxed),
            paths: c.paths.snapshot(),
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.inner().client)
            .field("remote", &self.remote_address())
            .finish_non_exhaustive()
    }
}
