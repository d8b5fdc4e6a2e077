//! Multi-server sessions: server-driven ADD_PATH, REMOVE_PATH, RELAY_DATA and path failure.
//!
//! The client is the hub: it holds one path per server and merges stream data from all of
//! them by offset (the reassembly in `stream.rs` is path-agnostic). Each server sees an
//! ordinary single-path session; the primary server learns the ids of the paths it added from
//! ADD_PATH_RESULT and addresses them in RELAY_DATA and REMOVE_PATH. docs/protocol.md §10-§13.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::config::ClientConfig;
use crate::error::{CloseReason, ErrorCode, ProtocolError};
use crate::path::{self, HandshakeError, PathShared};
use crate::session::SessionInner;
use crate::wire::{AddPathOutcome, Frame, MAX_ADDRESS_LEN, StreamFrame};

/// Identifies one path of a session (assigned by the client; the dialed path is 0).
pub type PathId = u64;

/// Relayed bytes a client holds for one (path, stream) while the receiving server has not
/// granted credit for them. A primary that relays more is cut off with EXCESSIVE_LOAD.
const MAX_RELAY_BACKLOG: u64 = 16 * 1024 * 1024;

/// Errors of [`Session::add_path`](crate::Session::add_path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddPathError {
    /// Only a server asks for paths; the client dials them.
    #[error("add_path is a server operation")]
    NotServer,
    /// The address is empty or longer than the 262 bytes ADD_PATH carries.
    #[error("invalid path address {0:?}")]
    InvalidAddress(String),
    /// The client refused: it already has `max_paths_per_session` paths (PATH_LIMIT).
    #[error("client refused the path: {0}")]
    PathLimit(String),
    /// The client could not dial the address (nothing listening, TLS refused, timeout...).
    #[error("client could not dial the path: {0}")]
    DialFailed(String),
    /// The client answered with another error code.
    #[error("client refused the path with code {code}: {reason}")]
    Refused {
        /// The code in ADD_PATH_RESULT.
        code: ErrorCode,
        /// The reason in ADD_PATH_RESULT.
        reason: String,
    },
    /// No ADD_PATH_RESULT within twice the handshake timeout.
    #[error("no answer from the client in time")]
    Timeout,
    /// The session closed before the answer.
    #[error("{0}")]
    SessionClosed(CloseReason),
}

/// Errors of [`Session::remove_path`](crate::Session::remove_path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemovePathError {
    /// No live path has this id (on a server: no path it added has this id).
    #[error("no path with id {0}")]
    UnknownPath(PathId),
    /// The path is the session's last one: close the session instead.
    #[error("path {0} is the session's last path; close the session instead")]
    LastPath(PathId),
    /// The session is closed.
    #[error("{0}")]
    SessionClosed(CloseReason),
}

/// Errors of [`Session::relay`](crate::Session::relay).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Only a server relays through the client.
    #[error("relay is a server operation")]
    NotServer,
    /// No path this server added has this id (never added, removed, or dead).
    #[error("no added path with id {0}")]
    UnknownPath(PathId),
    /// Relays travel on client-initiated streams only (the other server answers on them).
    #[error("stream {0} is not client-initiated")]
    NotClientStream(u64),
    /// The session is closed.
    #[error("{0}")]
    SessionClosed(CloseReason),
}

/// Multi-path state of one session (both sides; each side uses its own fields).
#[derive(Default)]
pub(crate) struct Multi {
    /// Client: the config the session was dialed with (trust, ALPN, endpoint, limits).
    dialer: OnceLock<ClientConfig>,
    state: Mutex<MultiState>,
}

#[derive(Default)]
struct MultiState {
    /// Client: the next path id to hand out.
    next_path_id: u64,
    /// Client: dials in flight (they count toward `max_paths_per_session`).
    dialing: usize,
    /// Client: stream window each path's server announced in its HELLO.
    path_windows: HashMap<PathId, u64>,
    /// Client: RELAY_DATA ordering per arriving path (packets may run out of order).
    relay_order: HashMap<PathId, RelayOrder>,
    /// Server: the next ADD_PATH request id.
    next_request: u64,
    /// Server: requests waiting for ADD_PATH_RESULT.
    pending: HashMap<u64, oneshot::Sender<Result<PathId, AddPathError>>>,
    /// Server: live paths this server added (RELAY_DATA and REMOVE_PATH targets).
    added: HashSet<PathId>,
}

/// Applies the RELAY_DATA frames of one path in packet order whatever order the executor runs
/// the packets in: packet `seq` waits in `held` until every earlier packet was applied.
#[derive(Default)]
struct RelayOrder {
    next: u64,
    held: BTreeMap<u64, Vec<Relay>>,
}

/// One RELAY_DATA frame as received.
pub(crate) struct Relay {
    path_id: PathId,
    stream_id: u64,
    data: Bytes,
}

impl Relay {
    pub(crate) fn new(path_id: PathId, stream_id: u64, data: Bytes) -> Self {
        Self {
            path_id,
            stream_id,
            data,
        }
    }
}

/// Client relay state of one stream towards one non-home path: the next offset (allocated
/// under the stream lock, so relays can neither swap nor share an offset), the credit that
/// path's server granted, and bytes waiting for credit.
#[derive(Debug)]
pub(crate) struct RelayStream {
    offset: u64,
    max_data: u64,
    queued: VecDeque<Bytes>,
    queued_len: u64,
    path: Arc<PathShared>,
}

/// Per-stream relay targets (client side), keyed by path id.
#[derive(Debug, Default)]
pub(crate) struct RelayStreams {
    targets: HashMap<PathId, RelayStream>,
}

impl RelayStreams {
    /// A MAX_STREAM_DATA from a non-home path: more credit for relays on that path. Returns
    /// false when this stream relays nothing to that path (the frame is stale).
    pub(crate) fn on_credit(
        &mut self,
        path_id: PathId,
        stream_id: u64,
        max_offset: u64,
        max_payload: usize,
    ) -> bool {
        let Some(t) = self.targets.get_mut(&path_id) else {
            return false;
        };
        if max_offset > t.max_data {
            t.max_data = max_offset;
            t.flush(stream_id, max_payload);
        }
        true
    }

    /// Forgets a removed path.
    pub(crate) fn remove(&mut self, path_id: PathId) {
        self.targets.remove(&path_id);
    }
}

impl RelayStream {
    /// Sends queued bytes as STREAM frames while credit lasts.
    fn flush(&mut self, stream_id: u64, max_payload: usize) {
        while let Some(front) = self.queued.front_mut() {
            let credit = self.max_data.saturating_sub(self.offset);
            if credit == 0 {
                break;
            }
            let n = (front.len() as u64).min(credit).min(max_payload as u64) as usize;
            let data = front.split_to(n);
            if front.is_empty() {
                self.queued.pop_front();
            }
            self.queued_len -= n as u64;
            self.path.queue(Frame::Stream(StreamFrame {
                stream_id,
                offset: self.offset,
                fin: false,
                data,
            }));
            self.offset += n as u64;
        }
    }
}

impl Multi {
    fn state(&self) -> MutexGuard<'_, MultiState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Client: remembers the config added paths are dialed with.
    pub(crate) fn set_dialer(&self, config: ClientConfig, primary_window: u64) {
        let _ = self.dialer.set(config);
        let mut st = self.state();
        st.next_path_id = st.next_path_id.max(1);
        st.path_windows.insert(0, primary_window);
    }

    /// Server: whether `path_id` is a live path this server added.
    fn is_added(&self, path_id: PathId) -> bool {
        self.state().added.contains(&path_id)
    }

    /// Both sides: the peer said path `path_id` is gone.
    pub(crate) fn forget(&self, path_id: PathId) {
        let mut st = self.state();
        st.added.remove(&path_id);
        st.relay_order.remove(&path_id);
        st.path_windows.remove(&path_id);
    }

    /// Server: applies ADD_PATH_RESULT. Returns a path the client added for a request this
    /// server no longer waits for (timed out): the caller asks the client to remove it.
    pub(crate) fn on_add_path_result(
        &self,
        request_id: u64,
        outcome: AddPathOutcome,
    ) -> Option<PathId> {
        let mut st = self.state();
        let Some(tx) = st.pending.remove(&request_id) else {
            return match outcome {
                AddPathOutcome::Added { path_id } => Some(path_id),
                AddPathOutcome::Failed { .. } => None,
            };
        };
        let result = match outcome {
            AddPathOutcome::Added { path_id } => {
                st.added.insert(path_id);
                Ok(path_id)
            }
            AddPathOutcome::Failed { code, reason } => Err(match ErrorCode(code) {
                ErrorCode::PATH_LIMIT => AddPathError::PathLimit(reason),
                ErrorCode::DIAL_FAILED => AddPathError::DialFailed(reason),
                code => AddPathError::Refused { code, reason },
            }),
        };
        drop(st);
        if let Err(Ok(path_id)) = tx.send(result) {
            // add_path gave up between the lookup and the send.
            self.state().added.remove(&path_id);
            return Some(path_id);
        }
        None
    }

    /// Fails every pending request (the session closed).
    pub(crate) fn on_close(&self, reason: &CloseReason) {
        let pending: Vec<_> = self.state().pending.drain().collect();
        for (_, tx) in pending {
            let _ = tx.send(Err(AddPathError::SessionClosed(reason.clone())));
        }
    }
}

impl SessionInner {
    /// Server side of `Session::add_path`.
    pub(crate) async fn add_path(&self, address: String) -> Result<PathId, AddPathError> {
        if self.client {
            return Err(AddPathError::NotServer);
        }
        if address.is_empty() || address.len() > MAX_ADDRESS_LEN {
            return Err(AddPathError::InvalidAddress(address));
        }
        let (tx, rx) = oneshot::channel();
        let request_id = {
            let mut st = self.multi.state();
            let id = st.next_request;
            st.next_request += 1;
            st.pending.insert(id, tx);
            id
        };
        let sent = self.primary_path().is_some_and(|p| {
            p.queue(Frame::AddPath {
                request_id,
                address,
            })
        });
        if !sent || self.is_closed() {
            self.multi.state().pending.remove(&request_id);
            return Err(AddPathError::SessionClosed(self.close_reason_or_local()));
        }
        // The client bounds its dial by its own handshake timeout; allow for that plus the
        // round trip.
        let wait = self.settings.handshake_timeout * 2;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AddPathError::SessionClosed(self.close_reason_or_local())),
            Err(_) => {
                self.multi.state().pending.remove(&request_id);
                Err(AddPathError::Timeout)
            }
        }
    }

    /// Client: ADD_PATH arrived on `path`. Refuses at the path limit, otherwise dials in the
    /// background and answers on the primary path.
    pub(crate) fn on_add_path(
        self: &Arc<Self>,
        path: &Arc<PathShared>,
        request_id: u64,
        address: String,
    ) {
        let refuse = |code: ErrorCode, reason: String| {
            path.queue(Frame::AddPathResult {
                request_id,
                outcome: AddPathOutcome::Failed {
                    code: code.0,
                    reason,
                },
            });
        };
        let Some(config) = self.multi.dialer.get().cloned() else {
            refuse(
                ErrorCode::PATH_LIMIT,
                "this client takes no more paths".into(),
            );
            return;
        };
        let path_id = {
            let paths = self.path_count();
            let mut st = self.multi.state();
            if paths + st.dialing >= self.settings.max_paths_per_session {
                drop(st);
                refuse(
                    ErrorCode::PATH_LIMIT,
                    format!(
                        "the session has its maximum of {} paths",
                        self.settings.max_paths_per_session
                    ),
                );
                return;
            }
            st.dialing += 1;
            let id = st.next_path_id;
            st.next_path_id += 1;
            id
        };
        let session = self.clone();
        let request_path = path.clone();
        self.spawn_task(async move {
            let outcome = session.dial_path(&config, path_id, &address).await;
            session.multi.state().dialing -= 1;
            let outcome = match outcome {
                Ok(()) => AddPathOutcome::Added { path_id },
                Err(reason) => AddPathOutcome::Failed {
                    code: ErrorCode::DIAL_FAILED.0,
                    reason,
                },
            };
            let frame = Frame::AddPathResult {
                request_id,
                outcome,
            };
            if !request_path.queue(frame.clone())
                && let Some(p) = session.primary_path()
            {
                p.queue(frame);
            }
        });
    }

    /// Client: dials `address` as path `path_id` with the session's config and starts it.
    async fn dial_path(
        self: &Arc<Self>,
        config: &ClientConfig,
        path_id: PathId,
        address: &str,
    ) -> Result<(), String> {
        let settings = &config.settings;
        let handshake = async {
            let addr = resolve(address).await?;
            let endpoint = config.endpoint_for(addr).map_err(|e| e.to_string())?;
            let server_name = config
                .server_name
                .clone()
                .unwrap_or_else(|| addr.ip().to_string());
            let connecting = endpoint
                .connect_with(config.quinn.clone(), addr, &server_name)
                .map_err(|e| e.to_string())?;
            let shake = path::client_handshake(connecting, settings, path_id);
            shake.await.map_err(|e| match e {
                HandshakeError::Connection(c) => c.to_string(),
                HandshakeError::Protocol(p) => p.to_string(),
            })
        };
        let (conn, send, recv, hello) = tokio::time::timeout(settings.handshake_timeout, handshake)
            .await
            .map_err(|_| format!("dialing {address} timed out"))??;
        if self.is_closed() {
            conn.close(path::varint(0), b"session closed");
            return Err("the session closed while dialing".into());
        }
        self.multi
            .state()
            .path_windows
            .insert(path_id, hello.stream_window);
        let path = PathShared::new(path_id, conn, send, false);
        self.start_path(Arc::new(path), recv);
        Ok(())
    }

    /// Client: applies the RELAY_DATA frames of packet `seq` of `path` in wire order.
    pub(crate) fn on_relays(
        &self,
        path: &Arc<PathShared>,
        seq: u64,
        relays: Vec<Relay>,
    ) -> Result<(), ProtocolError> {
        // The multi lock is held while applying, so concurrent packets cannot interleave.
        let mut st = self.multi.state();
        let order = st.relay_order.entry(path.id()).or_default();
        if seq != order.next {
            order.held.insert(seq, relays);
            return Ok(());
        }
        let mut batch = relays;
        loop {
            for relay in batch {
                self.apply_relay(path, &st.path_windows, relay)?;
            }
            let order = st.relay_order.entry(path.id()).or_default();
            order.next += 1;
            match order.held.remove(&order.next) {
                Some(next) => batch = next,
                None => return Ok(()),
            }
        }
    }

    fn apply_relay(
        &self,
        from: &Arc<PathShared>,
        windows: &HashMap<PathId, u64>,
        relay: Relay,
    ) -> Result<(), ProtocolError> {
        if relay.stream_id & 1 != 0 {
            return Err(ProtocolError::new(
                ErrorCode::PROTOCOL_VIOLATION,
                format!("RELAY_DATA on server-initiated stream {}", relay.stream_id),
            ));
        }
        let Some(target) = self.path_by_id(relay.path_id) else {
            // The path died or never existed: tell the server, drop the bytes.
            from.queue(Frame::RemovePath {
                path_id: relay.path_id,
            });
            // The server relayed because it expects that path to fill part of the stream; it
            // never will, so the stream fails (PathLost) instead of waiting for it forever.
            if let Ok(Some(stream)) = self.local_stream(relay.stream_id) {
                let mut st = stream.lock();
                if st.recv_lost.is_none() {
                    st.recv_lost = Some(relay.path_id);
                    st.wake_reader();
                }
            }
            return Ok(());
        };
        let Some(stream) = self.local_stream(relay.stream_id)? else {
            return Ok(());
        };
        let max_payload = self.max_stream_payload;
        let mut st = stream.lock();
        if st.closed.is_some() {
            return Ok(());
        }
        if Arc::ptr_eq(&st.send.path, &target) {
            return Err(ProtocolError::new(
                ErrorCode::PROTOCOL_VIOLATION,
                format!(
                    "RELAY_DATA to path {} which already carries stream {}",
                    relay.path_id, relay.stream_id
                ),
            ));
        }
        if !st.recv.credit_paths.iter().any(|p| Arc::ptr_eq(p, &target)) {
            // The other server may answer on this stream: give it the current credit.
            st.recv.credit_paths.push(target.clone());
            target.queue(Frame::MaxStreamData {
                stream_id: relay.stream_id,
                max_offset: st.recv.advertised,
            });
        }
        let window = windows.get(&relay.path_id).copied().unwrap_or(0);
        let t = st
            .relay
            .targets
            .entry(relay.path_id)
            .or_insert_with(|| RelayStream {
                offset: 0,
                max_data: window,
                queued: VecDeque::new(),
                queued_len: 0,
                path: target.clone(),
            });
        if t.queued_len + relay.data.len() as u64 > MAX_RELAY_BACKLOG {
            return Err(ProtocolError::new(
                ErrorCode::EXCESSIVE_LOAD,
                format!(
                    "more than {MAX_RELAY_BACKLOG} relayed bytes waiting for path {}",
                    relay.path_id
                ),
            ));
        }
        if !relay.data.is_empty() {
            t.queued_len += relay.data.len() as u64;
            t.queued.push_back(relay.data);
        }
        t.flush(relay.stream_id, max_payload);
        Ok(())
    }

    /// Server side of `Session::relay`.
    pub(crate) fn relay(
        &self,
        path_id: PathId,
        stream_id: u64,
        mut data: Bytes,
    ) -> Result<(), RelayError> {
        if self.client {
            return Err(RelayError::NotServer);
        }
        if stream_id & 1 != 0 {
            return Err(RelayError::NotClientStream(stream_id));
        }
        if self.is_closed() {
            return Err(RelayError::SessionClosed(self.close_reason_or_local()));
        }
        if !self.multi.is_added(path_id) {
            return Err(RelayError::UnknownPath(path_id));
        }
        let primary = self
            .primary_path()
            .ok_or_else(|| RelayError::SessionClosed(self.close_reason_or_local()))?;
        // Frames of one path are queued in order and the client applies them in order.
        loop {
            let n = data.len().min(self.max_stream_payload);
            let chunk = data.split_to(n);
            let ok = primary.queue(Frame::RelayData {
                path_id,
                stream_id,
                data: chunk,
            });
            if !ok {
                return Err(RelayError::SessionClosed(self.close_reason_or_local()));
            }
            if data.is_empty() {
                return Ok(());
            }
        }
    }

    /// Both sides of `Session::remove_path`.
    pub(crate) fn remove_path(&self, path_id: PathId) -> Result<(), RemovePathError> {
        if self.is_closed() {
            return Err(RemovePathError::SessionClosed(self.close_reason_or_local()));
        }
        if !self.client {
            if self.path_by_id(path_id).is_some() {
                return Err(RemovePathError::LastPath(path_id));
            }
            if !self.multi.state().added.remove(&path_id) {
                return Err(RemovePathError::UnknownPath(path_id));
            }
            if let Some(p) = self.primary_path() {
                p.queue(Frame::RemovePath { path_id });
            }
            return Ok(());
        }
        let Some(path) = self.path_by_id(path_id) else {
            return Err(RemovePathError::UnknownPath(path_id));
        };
        if self.path_count() <= 1 {
            return Err(RemovePathError::LastPath(path_id));
        }
        self.drop_path(
            &path,
            CloseReason::Local {
                code: ErrorCode::NO_ERROR,
                reason: "path removed".into(),
            },
        );
        Ok(())
    }
}

/// Resolves `host:port` (an IP literal without a lookup).
async fn resolve(address: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = address.parse() {
        return Ok(addr);
    }
    tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("resolving {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to no address"))
}
