//! Session and path statistics (atomics read on demand) and the observer hook.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::{CloseReason, ErrorCode};
use crate::wire::FrameType;

/// Receives session events as they happen; the `kwik` facade turns them into metrics.
///
/// Methods run on protocol tasks: keep them short and non-blocking. All default to no-ops.
pub trait Observer: Send + Sync + 'static {
    /// A session finished its handshake (`client` tells the side).
    fn session_opened(&self, client: bool) {
        let _ = client;
    }
    /// A session closed.
    fn session_closed(&self, client: bool, reason: &CloseReason) {
        let _ = (client, reason);
    }
    /// A path joined a session.
    fn path_added(&self, path_id: u64, remote: SocketAddr) {
        let _ = (path_id, remote);
    }
    /// A path left a session.
    fn path_removed(&self, path_id: u64) {
        let _ = path_id;
    }
    /// The peer's input broke the protocol; the path is closed with `code`.
    fn protocol_error(&self, code: ErrorCode) {
        let _ = code;
    }
    /// A PONG measured a path's round-trip time.
    fn rtt_sample(&self, path_id: u64, rtt: Duration) {
        let _ = (path_id, rtt);
    }
}

const FRAME_TYPES: usize = FrameType::ALL.len();

/// Live counters of one path (or of a whole session).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) packets_sent: AtomicU64,
    pub(crate) packets_received: AtomicU64,
    pub(crate) frames_sent: [AtomicU64; FRAME_TYPES],
    pub(crate) frames_received: [AtomicU64; FRAME_TYPES],
}

impl Counters {
    pub(crate) fn frame_sent(&self, ty: FrameType) {
        self.frames_sent[ty as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn frame_received(&self, ty: FrameType) {
        self.frames_received[ty as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> PathCounters {
        let frames = |a: &[AtomicU64; FRAME_TYPES]| {
            FrameType::ALL
                .map(|t| (t, a[t as usize].load(Relaxed)))
                .to_vec()
        };
        PathCounters {
            bytes_sent: self.bytes_sent.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            packets_sent: self.packets_sent.load(Relaxed),
            packets_received: self.packets_received.load(Relaxed),
            frames_sent: frames(&self.frames_sent),
            frames_received: frames(&self.frames_received),
        }
    }
}

/// Traffic counters of a path (bytes are whole packets on the path stream, prefix included).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PathCounters {
    /// Bytes written to the path stream.
    pub bytes_sent: u64,
    /// Bytes read from the path stream.
    pub bytes_received: u64,
    /// Packets written.
    pub packets_sent: u64,
    /// Packets read.
    pub packets_received: u64,
    /// Frames written, by type.
    pub frames_sent: Vec<(FrameType, u64)>,
    /// Frames read, by type.
    pub frames_received: Vec<(FrameType, u64)>,
}

impl PathCounters {
    /// Frames of type `ty` received.
    pub fn received(&self, ty: FrameType) -> u64 {
        self.frames_received
            .iter()
            .find(|(t, _)| *t == ty)
            .map_or(0, |(_, n)| *n)
    }

    /// Frames of type `ty` sent.
    pub fn sent(&self, ty: FrameType) -> u64 {
        self.frames_sent
            .iter()
            .find(|(t, _)| *t == ty)
            .map_or(0, |(_, n)| *n)
    }
}

/// A snapshot of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PathInfo {
    /// Path id (per session, assigned by the client; the dialed path is 0).
    pub id: u64,
    /// The peer's UDP address.
    pub remote: SocketAddr,
    /// Whether this is the session's primary path.
    pub primary: bool,
    /// Latest PING/PONG round-trip time, if one completed.
    pub rtt: Option<Duration>,
    /// Traffic counters.
    pub counters: PathCounters,
    /// Whether the path carries traffic or is closing.
    pub state: PathState,
}

/// Lifecycle of a path as [`PathInfo`] reports it. A removed or dead path leaves
/// `Session::paths` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathState {
    /// Carrying traffic.
    Active,
    /// CLOSE queued or the connection is closing (the session is closing).
    Closing,
}

/// A snapshot of a session's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Streams opened by this side.
    pub streams_opened: u64,
    /// Streams opened by the peer.
    pub streams_accepted: u64,
    /// Streams currently in the stream table.
    pub streams_active: u64,
    /// Stream payload bytes written by the application.
    pub stream_bytes_sent: u64,
    /// Stream payload bytes delivered to the application.
    pub stream_bytes_received: u64,
    /// Bytes received but not yet read by the application, over all streams (each stream holds
    /// at most its window).
    pub recv_buffered: u64,
    /// Sum of all paths' counters, including paths already removed.
    pub paths: PathCounters,
}

/// Session-wide counters.
#[derive(Debug, Default)]
pub(crate) struct SessionCounters {
    pub(crate) streams_opened: AtomicU64,
    pub(crate) streams_accepted: AtomicU64,
    pub(crate) stream_bytes_sent: AtomicU64,
    pub(crate) stream_bytes_received: AtomicU64,
    pub(crate) recv_buffered: AtomicU64,
    /// Totals over every path (each path also keeps its own).
    pub(crate) paths: Counters,
}
