//! The KWIK wire format: QUIC variable-length integers, frames and packets.
//!
//! A packet on a path stream is `u32 length (big endian) | frames`; each frame is `varint type`
//! followed by its fields (docs/protocol.md is the normative description). Decoding works on
//! [`Bytes`] and hands out zero-copy slices for payloads; nothing is allocated from a length read
//! off the wire before that many bytes are known to be present.
//!
//! # Examples
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use kwik_transport::wire::{Frame, FrameDecoder, StreamFrame};
//!
//! let frame = Frame::Stream(StreamFrame {
//!     stream_id: 4,
//!     offset: 0,
//!     fin: true,
//!     data: Bytes::from_static(b"hello"),
//! });
//! let mut out = BytesMut::new();
//! frame.encode(&mut out);
//! let decoded: Vec<Frame> = FrameDecoder::new(out.freeze()).collect::<Result<_, _>>().unwrap();
//! assert_eq!(decoded, vec![frame]);
//! ```

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ErrorCode;

/// The protocol version carried in HELLO; a peer speaking another version is refused.
pub const VERSION: u64 = 1;

/// Largest value a QUIC variable-length integer can hold (2^62 - 1).
pub const MAX_VARINT: u64 = (1 << 62) - 1;

/// Bytes of the packet length prefix.
pub const PACKET_HEADER_LEN: usize = 4;

/// Longest CLOSE reason accepted (bytes); longer reasons are truncated when encoding.
pub const MAX_REASON_LEN: usize = 1024;

/// Longest ADD_PATH address accepted (bytes): a DNS name (253) plus `:port`.
pub const MAX_ADDRESS_LEN: usize = 262;

/// Upper bound of the header of a STREAM frame (type, id, offset, fin, length: five varints).
pub const MAX_STREAM_FRAME_OVERHEAD: usize = 1 + 8 + 8 + 1 + 8;

/// Number of bytes [`put_varint`] writes for `v`.
pub fn varint_len(v: u64) -> usize {
    if v < 1 << 6 {
        1
    } else if v < 1 << 14 {
        2
    } else if v < 1 << 30 {
        4
    } else {
        8
    }
}

/// Appends `v` as a QUIC variable-length integer (RFC 9000 §16). Values above
/// [`MAX_VARINT`] are clamped; callers validate their inputs before encoding.
pub fn put_varint(out: &mut impl BufMut, v: u64) {
    let v = v.min(MAX_VARINT);
    if v < 1 << 6 {
        out.put_u8(v as u8);
    } else if v < 1 << 14 {
        out.put_u16(0x4000 | v as u16);
    } else if v < 1 << 30 {
        out.put_u32(0x8000_0000 | v as u32);
    } else {
        out.put_u64(0xc000_0000_0000_0000 | v);
    }
}

/// Reads a QUIC variable-length integer, or `None` if `buf` ends inside it.
pub fn get_varint(buf: &mut impl Buf) -> Option<u64> {
    if !buf.has_remaining() {
        return None;
    }
    let first = buf.chunk()[0];
    let len = 1usize << (first >> 6);
    if buf.remaining() < len {
        return None;
    }
    Some(match len {
        1 => u64::from(buf.get_u8() & 0x3f),
        2 => u64::from(buf.get_u16() & 0x3fff),
        4 => u64::from(buf.get_u32() & 0x3fff_ffff),
        _ => buf.get_u64() & 0x3fff_ffff_ffff_ffff,
    })
}

/// Frame type codes (the first varint of every frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FrameType {
    /// `0x00` HELLO: the first frame on every path stream, in both directions.
    Hello,
    /// `0x01` STREAM: stream data at an offset, possibly with FIN.
    Stream,
    /// `0x02` MAX_STREAM_DATA: receive credit for one stream.
    MaxStreamData,
    /// `0x03` RESET_STREAM: the sender abandons a stream.
    ResetStream,
    /// `0x04` STOP_SENDING: the receiver asks the sender to stop.
    StopSending,
    /// `0x05` MAX_STREAMS: how many streams the peer may open in total.
    MaxStreams,
    /// `0x06` ADD_PATH: a server asks the client to dial another server.
    AddPath,
    /// `0x07` ADD_PATH_RESULT: the client's answer to ADD_PATH.
    AddPathResult,
    /// `0x08` REMOVE_PATH: close one path of the session.
    RemovePath,
    /// `0x09` RELAY_DATA: bytes the client forwards as STREAM data on another path.
    RelayData,
    /// `0x0a` PING: asks for a PONG with the same nonce.
    Ping,
    /// `0x0b` PONG: answers a PING.
    Pong,
    /// `0x0c` CLOSE: closes the path (and the session with its last path).
    Close,
}

impl FrameType {
    /// Every frame type, in code order (index = code).
    pub const ALL: [Self; 13] = [
        Self::Hello,
        Self::Stream,
        Self::MaxStreamData,
        Self::ResetStream,
        Self::StopSending,
        Self::MaxStreams,
        Self::AddPath,
        Self::AddPathResult,
        Self::RemovePath,
        Self::RelayData,
        Self::Ping,
        Self::Pong,
        Self::Close,
    ];

    /// The type's wire code.
    pub fn code(self) -> u64 {
        self as u64
    }

    /// The type for a wire code, if known.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// Upper-case protocol name, as in docs/protocol.md.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hello => "HELLO",
            Self::Stream => "STREAM",
            Self::MaxStreamData => "MAX_STREAM_DATA",
            Self::ResetStream => "RESET_STREAM",
            Self::StopSending => "STOP_SENDING",
            Self::MaxStreams => "MAX_STREAMS",
            Self::AddPath => "ADD_PATH",
            Self::AddPathResult => "ADD_PATH_RESULT",
            Self::RemovePath => "REMOVE_PATH",
            Self::RelayData => "RELAY_DATA",
            Self::Ping => "PING",
            Self::Pong => "PONG",
            Self::Close => "CLOSE",
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// HELLO: protocol version and the sender's receive limits for this path's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version, [`VERSION`].
    pub version: u64,
    /// Path id chosen by the client (the server echoes it).
    pub path_id: u64,
    /// Initial number of streams the receiver of this HELLO may open towards its sender.
    pub max_streams: u64,
    /// Initial receive window of every stream, in bytes.
    pub stream_window: u64,
}

/// STREAM: `data` at `offset` of `stream_id`; `fin` marks the last byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFrame {
    /// Stream id (low bit: 0 client-initiated, 1 server-initiated).
    pub stream_id: u64,
    /// Offset of the first byte of `data` in the stream.
    pub offset: u64,
    /// Whether `offset + data.len()` is the final size of the stream.
    pub fin: bool,
    /// The bytes (a zero-copy slice of the received packet when decoded).
    pub data: Bytes,
}

/// The outcome carried by ADD_PATH_RESULT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddPathOutcome {
    /// The client dialed the server; the new path has this id.
    Added {
        /// Id of the new path.
        path_id: u64,
    },
    /// The client could not add the path.
    Failed {
        /// Error code (docs/protocol.md, "Error codes").
        code: u64,
        /// Human-readable reason.
        reason: String,
    },
}

/// One decoded (or to-be-encoded) frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// HELLO.
    Hello(Hello),
    /// STREAM.
    Stream(StreamFrame),
    /// MAX_STREAM_DATA: the sender of this frame accepts data of `stream_id` up to `max_offset`.
    MaxStreamData {
        /// Stream id.
        stream_id: u64,
        /// Exclusive upper bound of the offsets the peer may send.
        max_offset: u64,
    },
    /// RESET_STREAM: the sender abandons its side of `stream_id`.
    ResetStream {
        /// Stream id.
        stream_id: u64,
        /// Application error code.
        code: u64,
        /// Final size of the stream (bytes the sender had sent).
        final_offset: u64,
    },
    /// STOP_SENDING: the receiver no longer reads `stream_id`.
    StopSending {
        /// Stream id.
        stream_id: u64,
        /// Application error code.
        code: u64,
    },
    /// MAX_STREAMS: the peer may open streams while it has opened fewer than `max_streams`.
    MaxStreams {
        /// Cumulative number of streams the peer may open.
        max_streams: u64,
    },
    /// ADD_PATH: dial `address` and add it to the session.
    AddPath {
        /// Correlates the ADD_PATH_RESULT.
        request_id: u64,
        /// `host:port` of the server to dial.
        address: String,
    },
    /// ADD_PATH_RESULT: the answer to ADD_PATH `request_id`.
    AddPathResult {
        /// The request this answers.
        request_id: u64,
        /// Path id or error.
        outcome: AddPathOutcome,
    },
    /// REMOVE_PATH: close path `path_id`.
    RemovePath {
        /// Path to close.
        path_id: u64,
    },
    /// RELAY_DATA: the client sends `data` as STREAM data of `stream_id` on path `path_id`.
    RelayData {
        /// Path that must carry the data.
        path_id: u64,
        /// Stream the data belongs to.
        stream_id: u64,
        /// The bytes.
        data: Bytes,
    },
    /// PING.
    Ping {
        /// Echoed in the PONG.
        nonce: u64,
    },
    /// PONG.
    Pong {
        /// The PING's nonce.
        nonce: u64,
    },
    /// CLOSE: the path (and with its last path, the session) closes.
    Close {
        /// Error code: 0 = no error, `0x01..=0xff` protocol errors, `>= 0x100` application.
        code: u64,
        /// Human-readable reason (at most [`MAX_REASON_LEN`] bytes).
        reason: String,
    },
}

impl Frame {
    /// The frame's type.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::Hello(_) => FrameType::Hello,
            Self::Stream(_) => FrameType::Stream,
            Self::MaxStreamData { .. } => FrameType::MaxStreamData,
            Self::ResetStream { .. } => FrameType::ResetStream,
            Self::StopSending { .. } => FrameType::StopSending,
            Self::MaxStreams { .. } => FrameType::MaxStreams,
            Self::AddPath { .. } => FrameType::AddPath,
            Self::AddPathResult { .. } => FrameType::AddPathResult,
            Self::RemovePath { .. } => FrameType::RemovePath,
            Self::RelayData { .. } => FrameType::RelayData,
            Self::Ping { .. } => FrameType::Ping,
            Self::Pong { .. } => FrameType::Pong,
            Self::Close { .. } => FrameType::Close,
        }
    }

    /// Appends the whole frame (header and payload) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_header(out);
        if let Some(payload) = self.payload() {
            out.extend_from_slice(payload);
        }
    }

    /// The frame's bulk payload (STREAM and RELAY_DATA data), which [`Frame::encode_header`]
    /// leaves out so that a writer can send it as a separate zero-copy chunk.
    pub fn payload(&self) -> Option<&Bytes> {
        match self {
            Self::Stream(s) => Some(&s.data),
            Self::RelayData { data, .. } => Some(data),
            _ => None,
        }
    }

    /// Appends the frame without its [`payload`](Frame::payload); `encode_header` followed by
    /// the payload bytes is exactly [`encode`](Frame::encode).
    pub fn encode_header(&self, out: &mut BytesMut) {
        put_varint(out, self.frame_type().code());
        match self {
            Self::Hello(h) => {
                put_varint(out, h.version);
                put_varint(out, h.path_id);
                put_varint(out, h.max_streams);
                put_varint(out, h.stream_window);
            }
            Self::Stream(s) => {
                put_varint(out, s.stream_id);
                put_varint(out, s.offset);
                put_varint(out, u64::from(s.fin));
                put_varint(out, s.data.len() as u64);
            }
            Self::MaxStreamData {
                stream_id,
                max_offset,
            } => {
                put_varint(out, *stream_id);
                put_varint(out, *max_offset);
            }
            Self::ResetStream {
                stream_id,
                code,
                final_offset,
            } => {
                put_varint(out, *stream_id);
                put_varint(out, *code);
                put_varint(out, *final_offset);
            }
            Self::StopSending { stream_id, code } => {
                put_varint(out, *stream_id);
                put_varint(out, *code);
            }
            Self::MaxStreams { max_streams } => put_varint(out, *max_streams),
            Self::AddPath {
                request_id,
                address,
            } => {
                put_varint(out, *request_id);
                put_str(out, address, MAX_ADDRESS_LEN);
            }
            Self::AddPathResult {
                request_id,
                outcome,
            } => {
                put_varint(out, *request_id);
                match outcome {
                    AddPathOutcome::Added { path_id } => {
                        put_varint(out, 0);
                        put_varint(out, *path_id);
                    }
                    AddPathOutcome::Failed { code, reason } => {
                        put_varint(out, 1);
                        put_varint(out, *code);
                        put_str(out, reason, MAX_REASON_LEN);
                    }
                }
            }
            Self::RemovePath { path_id } => put_varint(out, *path_id),
            Self::RelayData {
                path_id,
                stream_id,
                data,
            } => {
                put_varint(out, *path_id);
                put_varint(out, *stream_id);
                put_varint(out, data.len() as u64);
            }
            Self::Ping { nonce } | Self::Pong { nonce } => put_varint(out, *nonce),
            Self::Close { code, reason } => {
                put_varint(out, *code);
                put_str(out, reason, MAX_REASON_LEN);
            }
        }
    }

    /// Exact number of bytes [`encode`](Frame::encode) appends.
    pub fn encoded_len(&self) -> usize {
        let mut scratch = BytesMut::new();
        self.encode_header(&mut scratch);
        scratch.len() + self.payload().map_or(0, Bytes::len)
    }
}

/// Writes a string as `varint length | bytes`, truncated to `max` bytes at a char boundary.
fn put_str(out: &mut BytesMut, s: &str, max: usize) {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    put_varint(out, end as u64);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Why a packet or frame could not be decoded. Each maps to a CLOSE code
/// ([`DecodeError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame type code is not defined.
    #[error("unknown frame type {0:#x}")]
    UnknownFrameType(u64),
    /// The packet ended inside a frame of this type.
    #[error("truncated {0} frame")]
    Truncated(FrameType),
    /// A field holds a value the protocol does not allow.
    #[error("invalid {field} in {frame} frame")]
    InvalidField {
        /// Frame type.
        frame: FrameType,
        /// Field name.
        field: &'static str,
    },
    /// A packet's length prefix exceeds the configured maximum.
    #[error("packet length {len} exceeds the maximum of {max}")]
    PacketTooLarge {
        /// Announced length.
        len: u64,
        /// Configured `max_packet_size`.
        max: u64,
    },
    /// A packet with no frames.
    #[error("empty packet")]
    EmptyPacket,
}

impl DecodeError {
    /// The CLOSE code a receiver sends for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::PacketTooLarge { .. } => ErrorCode::PACKET_TOO_LARGE,
            _ => ErrorCode::FRAME_ENCODING,
        }
    }
}

/// Reads a packet length prefix from the start of `buf`.
///
/// Returns `Ok(None)` while fewer than [`PACKET_HEADER_LEN`] bytes are available, the body
/// length otherwise. A length above `max_packet_size` (or zero) is rejected here, before any
/// body byte is read or any buffer is sized from it.
pub fn packet_len(buf: &[u8], max_packet_size: usize) -> Result<Option<usize>, DecodeError> {
    let Some(header) = buf.get(..PACKET_HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if len as u64 > max_packet_size as u64 {
        return Err(DecodeError::PacketTooLarge {
            len: u64::from(len),
            max: max_packet_size as u64,
        });
    }
    if len == 0 {
        return Err(DecodeError::EmptyPacket);
    }
    Ok(Some(len as usize))
}

/// An iterator over the frames of one packet body (the bytes after the length prefix).
///
/// It yields frames until the body is exhausted; after the first error it yields nothing more.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Bytes,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder over one packet body.
    pub fn new(body: Bytes) -> Self {
        Self {
            buf: body,
            failed: false,
        }
    }

    fn decode_one(&mut self) -> Result<Frame, DecodeError> {
        let code = get_varint(&mut self.buf).ok_or(DecodeError::Truncated(FrameType::Hello))?;
        let ty = FrameType::from_code(code).ok_or(DecodeError::UnknownFrameType(code))?;
        let buf = &mut self.buf;
        let v = |buf: &mut Bytes| get_varint(buf).ok_or(DecodeError::Truncated(ty));
        Ok(match ty {
            FrameType::Hello => Frame::Hello(Hello {
                version: v(buf)?,
                path_id: v(buf)?,
                max_streams: v(buf)?,
                stream_window: v(buf)?,
            }),
            FrameType::Stream => {
                let stream_id = v(buf)?;
                let offset = v(buf)?;
                let fin = match v(buf)? {
                    0 => false,
                    1 => true,
                    _ => {
                        return Err(DecodeError::InvalidField {
                            frame: ty,
                            field: "fin",
                        });
                    }
                };
                let len = v(buf)?;
                let data = take(buf, len, ty)?;
                if offset
                    .checked_add(data.len() as u64)
                    .is_none_or(|end| end > MAX_VARINT)
                {
                    return Err(DecodeError::InvalidField {
                        frame: ty,
                        field: "offset",
                    });
                }
                Frame::Stream(StreamFrame {
                    stream_id,
                    offset,
                    fin,
                    data,
                })
            }
            FrameType::MaxStreamData => Frame::MaxStreamData {
                stream_id: v(buf)?,
                max_offset: v(buf)?,
            },
            FrameType::ResetStream => Frame::ResetStream {
                stream_id: v(buf)?,
                code: v(buf)?,
                final_offset: v(buf)?,
            },
            FrameType::StopSending => Frame::StopSending {
                stream_id: v(buf)?,
                code: v(buf)?,
            },
            FrameType::MaxStreams => Frame::MaxStreams {
                max_streams: v(buf)?,
            },
            FrameType::AddPath => Frame::AddPath {
                request_id: v(buf)?,
                address: take_str(buf, ty, "address", MAX_ADDRESS_LEN)?,
            },
            FrameType::AddPathResult => {
                let request_id = v(buf)?;
                let outcome = match v(buf)? {
                    0 => AddPathOutcome::Added { path_id: v(buf)? },
                    1 => AddPathOutcome::Failed {
                        code: v(buf)?,
                        reason: take_str(buf, ty, "reason", MAX_REASON_LEN)?,
                    },
                    _ => {
                        return Err(DecodeError::InvalidField {
                            frame: ty,
                            field: "status",
                        });
                    }
                };
                Frame::AddPathResult {
                    request_id,
                    outcome,
                }
            }
            FrameType::RemovePath => Frame::RemovePath { path_id: v(buf)? },
            FrameType::RelayData => {
                let path_id = v(buf)?;
                let stream_id = v(buf)?;
                let len = v(buf)?;
                let data = take(buf, len, ty)?;
                Frame::RelayData {
                    path_id,
                    stream_id,
                    data,
                }
            }
            FrameType::Ping => Frame::Ping { nonce: v(buf)? },
            FrameType::Pong => Frame::Pong { nonce: v(buf)? },
            FrameType::Close => Frame::Close {
                code: v(buf)?,
                reason: take_str(buf, ty, "reason", MAX_REASON_LEN)?,
            },
        })
    }
}

impl Iterator for FrameDecoder {
    type Item = Result<Frame, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let result = self.decode_one();
        self.failed = result.is_err();
        Some(result)
    }
}

/// Splits `len` bytes off `buf` without copying; the length is checked against what is present.
fn take(buf: &mut Bytes, len: u64, ty: FrameType) -> Result<Bytes, DecodeError> {
    if len > buf.len() as u64 {
        return Err(DecodeError::Truncated(ty));
    }
    Ok(buf.split_to(len as usize))
}

fn take_str(
    buf: &mut Bytes,
    ty: FrameType,
    field: &'static str,
    max: usize,
) -> Result<String, DecodeError> {
    let len = get_varint(buf).ok_or(DecodeError::Truncated(ty))?;
    if len > max as u64 {
        return Err(DecodeError::InvalidField { frame: ty, field });
    }
    let raw = take(buf, len, ty)?;
    String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::InvalidField { frame: ty, field })
}

/// Appends one whole packet (`u32 length | frames`) holding `frames` to `out`.
///
/// Used by tests, the fuzz corpus and raw-protocol tools; the path writer builds packets
/// incrementally with zero-copy payloads instead.
pub fn encode_packet(frames: &[Frame], out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0);
    for frame in frames {
        frame.encode(out);
    }
    let len = (out.len() - start - PACKET_HEADER_LEN) as u32;
    out[start..start + PACKET_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let v = || 0..=MAX_VARINT;
        let data = || proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        let text = |max: usize| {
            proptest::string::string_regex(&format!(".{{0,{max}}}"))
                .expect("valid regex")
                .prop_filter("fits", move |s| s.len() <= max)
        };
        prop_oneof![
            (v(), v(), v(), v()).prop_map(|(version, path_id, max_streams, stream_window)| {
                Frame::Hello(Hello {
                    version,
                    path_id,
                    max_streams,
                    stream_window,
                })
            }),
            (v(), 0..(1u64 << 40), any::<bool>(), data()).prop_map(
                |(stream_id, offset, fin, data)| Frame::Stream(StreamFrame {
                    stream_id,
                    offset,
                    fin,
                    data
                })
            ),
            (v(), v()).prop_map(|(stream_id, max_offset)| Frame::MaxStreamData {
                stream_id,
                max_offset
            }),
            (v(), v(), v()).prop_map(|(stream_id, code, final_offset)| Frame::ResetStream {
                stream_id,
                code,
                final_offset
            }),
            (v(), v()).prop_map(|(stream_id, code)| Frame::StopSending { stream_id, code }),
            v().prop_map(|max_streams| Frame::MaxStreams { max_streams }),
            (v(), text(40)).prop_map(|(request_id, address)| Frame::AddPath {
                request_id,
                address
            }),
            (v(), v()).prop_map(|(request_id, path_id)| Frame::AddPathResult {
                request_id,
                outcome: AddPathOutcome::Added { path_id }
            }),
            (v(), v(), text(40)).prop_map(|(request_id, code, reason)| Frame::AddPathResult {
                request_id,
                outcome: AddPathOutcome::Failed { code, reason }
            }),
            v().prop_map(|path_id| Frame::RemovePath { path_id }),
            (v(), v(), data()).prop_map(|(path_id, stream_id, data)| Frame::RelayData {
                path_id,
                stream_id,
                data
            }),
            v().prop_map(|nonce| Frame::Ping { nonce }),
            v().prop_map(|nonce| Frame::Pong { nonce }),
            (v(), text(40)).prop_map(|(code, reason)| Frame::Close { code, reason }),
        ]
    }

    /// Decodes a byte stream as the path reader does: packet headers, then frames.
    fn decode_stream(mut bytes: Bytes, max: usize) -> Vec<Result<Frame, DecodeError>> {
        let mut out = Vec::new();
        loop {
            match packet_len(&bytes, max) {
                Ok(Some(len)) if bytes.len() >= PACKET_HEADER_LEN + len => {
                    bytes.advance(PACKET_HEADER_LEN);
                    out.extend(FrameDecoder::new(bytes.split_to(len)));
                }
                Ok(_) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    proptest! {
        #[test]
        fn varint_round_trips(v in 0..=MAX_VARINT) {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            prop_assert_eq!(get_varint(&mut out.freeze()), Some(v));
        }

        #[test]
        fn frames_round_trip(frames in proptest::collection::vec(arb_frame(), 1..8)) {
            let mut out = BytesMut::new();
            encode_packet(&frames, &mut out);
            for f in &frames {
                let mut one = BytesMut::new();
                f.encode(&mut one);
                prop_assert_eq!(one.len(), f.encoded_len());
            }
            let decoded: Vec<Frame> = decode_stream(out.freeze(), usize::MAX >> 1)
                .into_iter()
                .collect::<Result<_, _>>()
                .expect("round trip decodes");
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_stream(Bytes::from(bytes.clone()), 256);
            let _ = FrameDecoder::new(Bytes::from(bytes)).count();
        }

        #[test]
        fn mutated_packets_never_panic(
            frames in proptest::collection::vec(arb_frame(), 1..6),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut out = BytesMut::new();
            encode_packet(&frames, &mut out);
            for (at, byte) in flips {
                let i = at.index(out.len());
                out[i] ^= byte;
            }
            let cut = cut.index(out.len() + 1);
            out.truncate(cut);
            let _ = decode_stream(out.freeze(), 1 << 16);
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_the_body() {
        let header = 70_000u32.to_be_bytes();
        assert_eq!(
            packet_len(&header, 65_536),
            Err(DecodeError::PacketTooLarge {
                len: 70_000,
                max: 65_536
            })
        );
    }

    #[test]
    fn truncated_and_unknown_frames_are_errors() {
        let mut out = BytesMut::new();
        Frame::Stream(StreamFrame {
            stream_id: 0,
            offset: 0,
            fin: false,
            data: Bytes::from_static(b"abcdef"),
        })
        .encode(&mut out);
        out.truncate(out.len() - 2);
        let r: Vec<_> = FrameDecoder::new(out.freeze()).collect();
        assert_eq!(r, vec![Err(DecodeError::Truncated(FrameType::Stream))]);
        let r: Vec<_> = FrameDecoder::new(Bytes::from_static(&[0x3f])).collect();
        assert_eq!(r, vec![Err(DecodeError::UnknownFrameType(0x3f))]);
    }

    #[test]
    fn decoder_advances_over_every_frame() {
        // The Go original decoded N frames as N copies of the first one.
        let frames: Vec<Frame> = (0..5).map(|nonce| Frame::Ping { nonce }).collect();
        let mut out = BytesMut::new();
        for f in &frames {
            f.encode(&mut out);
        }
        let decoded: Vec<Frame> = FrameDecoder::new(out.freeze())
            .map(Result::unwrap)
            .collect();
        assert_eq!(decoded, frames);
    }
}
