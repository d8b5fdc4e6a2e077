//! Error codes on the wire and the typed errors of every operation family.

use std::fmt;
use std::io;

/// A CLOSE / RESET_STREAM / STOP_SENDING error code.
///
/// `0` is "no error", `0x01..=0xff` are KWIK protocol errors (constants below, normative list in
/// docs/protocol.md), `0x100` and above belong to applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u64);

impl ErrorCode {
    /// Graceful close.
    pub const NO_ERROR: Self = Self(0x0);
    /// The implementation failed (not the peer's fault).
    pub const INTERNAL: Self = Self(0x1);
    /// A frame valid on its own arrived where the protocol forbids it (HELLO twice, a frame
    /// before HELLO, ADD_PATH sent to a server, ...).
    pub const PROTOCOL_VIOLATION: Self = Self(0x2);
    /// Unknown frame type, truncated frame or invalid field value.
    pub const FRAME_ENCODING: Self = Self(0x3);
    /// A packet length prefix above the receiver's `max_packet_size`.
    pub const PACKET_TOO_LARGE: Self = Self(0x4);
    /// STREAM data beyond the credit the receiver advertised.
    pub const FLOW_CONTROL: Self = Self(0x5);
    /// A frame for a stream the sender may not use (not opened by the receiver yet, or a
    /// direction that does not exist).
    pub const STREAM_STATE: Self = Self(0x6);
    /// The peer opened more streams than MAX_STREAMS allowed.
    pub const STREAM_LIMIT: Self = Self(0x7);
    /// Data past the final size, or two different final sizes.
    pub const FINAL_SIZE: Self = Self(0x8);
    /// Two copies of the same stream range with different bytes.
    pub const OVERLAP_CONFLICT: Self = Self(0x9);
    /// HELLO carried a version this implementation does not speak.
    pub const VERSION_MISMATCH: Self = Self(0xa);
    /// The peer made the receiver queue more control frames than it is willing to hold.
    pub const EXCESSIVE_LOAD: Self = Self(0xb);
    /// A session already has `max_paths_per_session` paths (ADD_PATH_RESULT).
    pub const PATH_LIMIT: Self = Self(0xc);
    /// Dialing an ADD_PATH address failed (ADD_PATH_RESULT).
    pub const DIAL_FAILED: Self = Self(0xd);
    /// First code available to applications.
    pub const APPLICATION_BASE: Self = Self(0x100);

    /// Whether this is a KWIK protocol error code (`0x01..=0xff`).
    pub fn is_protocol_error(self) -> bool {
        (0x01..0x100).contains(&self.0)
    }

    /// Short upper-case name for protocol codes, `None` for application codes.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::NO_ERROR => "NO_ERROR",
            Self::INTERNAL => "INTERNAL",
            Self::PROTOCOL_VIOLATION => "PROTOCOL_VIOLATION",
            Self::FRAME_ENCODING => "FRAME_ENCODING",
            Self::PACKET_TOO_LARGE => "PACKET_TOO_LARGE",
            Self::FLOW_CONTROL => "FLOW_CONTROL",
            Self::STREAM_STATE => "STREAM_STATE",
            Self::STREAM_LIMIT => "STREAM_LIMIT",
            Self::FINAL_SIZE => "FINAL_SIZE",
            Self::OVERLAP_CONFLICT => "OVERLAP_CONFLICT",
            Self::VERSION_MISMATCH => "VERSION_MISMATCH",
            Self::EXCESSIVE_LOAD => "EXCESSIVE_LOAD",
            Self::PATH_LIMIT => "PATH_LIMIT",
            Self::DIAL_FAILED => "DIAL_FAILED",
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#x})", self.0),
            None => write!(f, "{:#x}", self.0),
        }
    }
}

/// A protocol error detected while processing the peer's packets: the path is closed with a
/// CLOSE carrying `code` and `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol error {code}: {reason}")]
pub struct ProtocolError {
    /// The CLOSE code sent to the peer.
    pub code: ErrorCode,
    /// The CLOSE reason sent to the peer.
    pub reason: String,
}

impl ProtocolError {
    pub(crate) fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

impl From<crate::wire::DecodeError> for ProtocolError {
    fn from(e: crate::wire::DecodeError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side called [`Session::close`](crate::Session::close) (or dropped the session).
    #[error("session closed locally with code {code}: {reason}")]
    Local {
        /// The code sent in CLOSE.
        code: ErrorCode,
        /// The reason sent in CLOSE.
        reason: String,
    },
    /// The peer sent CLOSE (or closed its QUIC connection with an application code).
    #[error("session closed by peer with code {code}: {reason}")]
    Peer {
        /// The peer's code.
        code: ErrorCode,
        /// The peer's reason.
        reason: String,
    },
    /// This side detected a protocol error in the peer's input and closed the session.
    #[error("{0}")]
    Protocol(ProtocolError),
    /// The QUIC connection failed (timeout, reset, TLS alert...).
    #[error("connection lost: {0}")]
    ConnectionLost(#[from] quinn::ConnectionError),
}

impl CloseReason {
    /// The CLOSE code associated with this reason, if any.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Local { code, .. } | Self::Peer { code, .. } => Some(*code),
            Self::Protocol(e) => Some(e.code),
            Self::ConnectionLost(_) => None,
        }
    }
}

/// Errors building a [`ClientConfig`](crate::ClientConfig) or
/// [`ServerConfig`](crate::ServerConfig).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A numeric setting is outside its allowed range.
    #[error("invalid {field}: {reason}")]
    InvalidValue {
        /// Setting name.
        field: &'static str,
        /// Allowed range.
        reason: &'static str,
    },
    /// A server config has neither a certificate nor `insecure_dev_self_signed`.
    #[error("no server certificate configured (set one, or opt into insecure_dev_self_signed)")]
    MissingCertificate,
    /// rustls rejected the TLS material.
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Generating the development self-signed certificate failed.
    #[error("self-signed certificate generation: {0}")]
    SelfSigned(#[from] rcgen::Error),
    /// The read buffer pool could not be built from `read_buffer`.
    #[error("read buffer pool: {0}")]
    BufferPool(#[from] kwik_buffer::BuildError),
    /// quinn rejected the TLS configuration (e.g. no TLS 1.3 cipher suite).
    #[error("quic tls configuration: {0}")]
    Quic(String),
}

/// Errors of [`dial`](crate::dial).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Binding the local UDP socket failed.
    #[error("binding the udp socket: {0}")]
    Bind(#[source] io::Error),
    /// quinn refused to start the connection (invalid server name, ...).
    #[error("starting the connection: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC handshake failed (TLS verification, refused, lost...).
    #[error("quic handshake failed: {0}")]
    Handshake(#[from] quinn::ConnectionError),
    /// The QUIC or KWIK handshake did not finish within `handshake_timeout`.
    #[error("handshake timed out")]
    Timeout,
    /// The server broke the KWIK handshake (no HELLO, wrong version, closed the path stream).
    #[error("kwik handshake failed: {0}")]
    Protocol(#[from] ProtocolError),
    /// The server closed the session during the handshake.
    #[error("server closed the session during the handshake: {0}")]
    Closed(CloseReason),
}

/// Errors of [`listen`](crate::listen).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// Binding the UDP socket failed.
    #[error("binding the udp socket: {0}")]
    Bind(#[source] io::Error),
}

/// Errors of [`Session::open_stream`](crate::Session::open_stream) and
/// [`Session::accept_stream`](crate::Session::accept_stream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session is closed.
    #[error("{0}")]
    Closed(CloseReason),
}

impl From<SessionError> for io::Error {
    fn from(e: SessionError) -> Self {
        Self::new(io::ErrorKind::NotConnected, e)
    }
}

/// Errors writing to a [`Stream`](crate::Stream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The peer sent STOP_SENDING with this code; the stream was reset.
    #[error("stream stopped by peer with code {0}")]
    Stopped(ErrorCode),
    /// This side already finished or reset the stream.
    #[error("stream already finished or reset")]
    ClosedStream,
    /// The write offset can only move forward, and only before data is written past it.
    #[error("write offset {requested} is behind the current offset {current}")]
    OffsetBehind {
        /// Requested offset.
        requested: u64,
        /// Current write offset.
        current: u64,
    },
    /// The path this stream sends on was removed or died (the server behind it is gone).
    #[error("path {0} carrying this stream was lost")]
    PathLost(u64),
    /// The session is closed.
    #[error("{0}")]
    SessionClosed(CloseReason),
}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> Self {
        let kind = match e {
            WriteError::Stopped(_) => io::ErrorKind::ConnectionReset,
            WriteError::ClosedStream => io::ErrorKind::BrokenPipe,
            WriteError::OffsetBehind { .. } => io::ErrorKind::InvalidInput,
            WriteError::PathLost(_) => io::ErrorKind::ConnectionAborted,
            WriteError::SessionClosed(_) => io::ErrorKind::NotConnected,
        };
        Self::new(kind, e)
    }
}

/// Errors reading from a [`Stream`](crate::Stream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer reset the stream with this code.
    #[error("stream reset by peer with code {0}")]
    Reset(ErrorCode),
    /// This side called [`Stream::stop`](crate::Stream::stop).
    #[error("stream stopped locally")]
    Stopped,
    /// A path that carried part of this stream was removed or died before the stream's end
    /// was read: its server's ranges will never arrive.
    #[error("path {0} carrying part of this stream was lost")]
    PathLost(u64),
    /// The session is closed.
    #[error("{0}")]
    SessionClosed(CloseReason),
}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> Self {
        let kind = match e {
            ReadError::Reset(_) => io::ErrorKind::ConnectionReset,
            ReadError::Stopped => io::ErrorKind::BrokenPipe,
            ReadError::PathLost(_) => io::ErrorKind::ConnectionAborted,
            ReadError::SessionClosed(_) => io::ErrorKind::NotConnected,
        };
        Self::new(kind, e)
    }
}

/// The executor no longer accepts jobs (it was shut down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("executor closed")]
pub struct ExecutorClosed;
