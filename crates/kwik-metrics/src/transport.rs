//! Handles for the transport families: sessions, paths, streams, bytes, packets, frames, errors,
//! session setup time and RTT.

use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::families;
use crate::registry::{Buckets, histogram, int_counter, int_counter_vec, int_gauge, int_gauge_vec};

/// Buckets of `kwik_session_setup_seconds`: 0.5 ms doubling to ~16 s (a handshake over a lossy
/// long-haul path can take seconds; loopback takes under a millisecond).
const SESSION_SETUP_BUCKETS: Buckets = (0.000_5, 2.0, 16);
/// Buckets of `kwik_rtt_seconds`: 100 µs doubling to ~3.3 s.
const RTT_BUCKETS: Buckets = (0.000_1, 2.0, 16);

macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The label value exported for this variant.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $label, )+
                }
            }

            /// Position in [`Self::ALL`]; indexes the resolved handles.
            pub(crate) fn index(self) -> usize {
                self as usize
            }
        }
    };
}
pub(crate) use label_enum;

label_enum! {
    /// Which end of a session: the label `role`.
    Role {
        /// The dialing side.
        Client => "client",
        /// The accepting side.
        Server => "server",
    }
}

label_enum! {
    /// The label `direction` of `kwik_frames_total`.
    Direction {
        /// Frames written by this process.
        Sent => "sent",
        /// Frames read by this process.
        Received => "received",
    }
}

label_enum! {
    /// KWIK frame types: the label `type` of `kwik_frames_total`.
    FrameKind {
        /// HELLO: the first frame on a path stream.
        Hello => "hello",
        /// STREAM: stream data at an offset.
        Stream => "stream",
        /// MAX_STREAM_DATA: flow-control credit.
        MaxStreamData => "max_stream_data",
        /// RESET_STREAM: abrupt end of a stream's send side.
        ResetStream => "reset_stream",
        /// STOP_SENDING: the receiver asks the sender to stop.
        StopSending => "stop_sending",
        /// ADD_PATH: the primary server asks the client to dial another server.
        AddPath => "add_path",
        /// ADD_PATH_RESULT: the client's answer to ADD_PATH.
        AddPathResult => "add_path_result",
        /// REMOVE_PATH: close a path.
        RemovePath => "remove_path",
        /// RELAY_DATA: data the client forwards on another path.
        RelayData => "relay_data",
        /// PING: liveness and RTT probe.
        Ping => "ping",
        /// PONG: answer to PING.
        Pong => "pong",
        /// CLOSE: a path closed with a code and reason.
        Close => "close",
    }
}

label_enum! {
    /// Protocol error codes: the label `code` of `kwik_protocol_errors_total`.
    ///
    /// The facade maps kwik-transport's error codes onto these; anything it does not know goes to
    /// [`ProtocolErrorKind::Other`] so the label set stays bounded.
    ProtocolErrorKind {
        /// A frame type this version does not know.
        UnknownFrame => "unknown_frame",
        /// A frame cut short by the end of its packet.
        TruncatedFrame => "truncated_frame",
        /// A packet or frame longer than the configured maximum.
        FrameTooLarge => "frame_too_large",
        /// Data sent past the flow-control credit.
        FlowControl => "flow_control",
        /// Overlapping stream data that disagrees with data already received.
        OffsetConflict => "offset_conflict",
        /// A frame for a stream in a state that does not allow it.
        StreamState => "stream_state",
        /// A path-management error (bad path id, failed ADD_PATH).
        Path => "path",
        /// A TLS or QUIC handshake failure.
        Handshake => "handshake",
        /// An internal error of the peer or of this process.
        Internal => "internal",
        /// Any other code.
        Other => "other",
    }
}

/// Handles for the transport families, resolved when [`Metrics`](crate::Metrics) is built.
///
/// Every accessor returns a ready handle: updating it is one atomic operation, with no label
/// lookup. Obtain it with [`Metrics::transport`](crate::Metrics::transport).
#[derive(Clone, Debug)]
pub struct TransportMetrics {
    sessions_active: Vec<IntGauge>,
    sessions_total: Vec<IntCounter>,
    paths_active: IntGauge,
    streams_active: IntGauge,
    bytes_sent: IntCounter,
    bytes_received: IntCounter,
    packets_sent: IntCounter,
    packets_received: IntCounter,
    /// Indexed by `direction.index() * FrameKind::ALL.len() + kind.index()`.
    frames: Vec<IntCounter>,
    protocol_errors: Vec<IntCounter>,
    session_setup_seconds: Histogram,
    rtt_seconds: Histogram,
}

impl TransportMetrics {
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let sessions_active: IntGaugeVec = int_gauge_vec(registry, &families::SESSIONS_ACTIVE)?;
        let sessions_total: IntCounterVec = int_counter_vec(registry, &families::SESSIONS_TOTAL)?;
        let frames = int_counter_vec(registry, &families::FRAMES)?;
        let errors = int_counter_vec(registry, &families::PROTOCOL_ERRORS)?;
        Ok(Self {
            sessions_active: Role::ALL
                .iter()
                .map(|r| sessions_active.with_label_values(&[r.as_str()]))
                .collect(),
            sessions_total: Role::ALL
                .iter()
                .map(|r| sessions_total.with_label_values(&[r.as_str()]))
                .collect(),
            paths_active: int_gauge(registry, &families::PATHS_ACTIVE)?,
            streams_active: int_gauge(registry, &families::STREAMS_ACTIVE)?,
            bytes_sent: int_counter(registry, &families::BYTES_SENT)?,
            bytes_received: int_counter(registry, &families::BYTES_RECEIVED)?,
            packets_sent: int_counter(registry, &families::PACKETS_SENT)?,
            packets_received: int_counter(registry, &families::PACKETS_RECEIVED)?,
            frames: Direction::ALL
                .iter()
                .flat_map(|d| {
                    FrameKind::ALL
                        .iter()
                        .map(|k| frames.with_label_values(&[d.as_str(), k.as_str()]))
                })
                .collect(),
            protocol_errors: ProtocolErrorKind::ALL
                .iter()
                .map(|c| errors.with_label_values(&[c.as_str()]))
                .collect(),
            session_setup_seconds: histogram(
                registry,
                &families::SESSION_SETUP,
                SESSION_SETUP_BUCKETS,
            )?,
            rtt_seconds: histogram(registry, &families::RTT, RTT_BUCKETS)?,
        })
    }

    /// `kwik_sessions_active{role}`.
    pub fn sessions_active(&self, role: Role) -> &IntGauge {
        &self.sessions_active[role.index()]
    }

    /// `kwik_sessions_total{role}`.
    pub fn sessions_total(&self, role: Role) -> &IntCounter {
        &self.sessions_total[role.index()]
    }

    /// Counts a session opening: increments `kwik_sessions_total` and `kwik_sessions_active`.
    pub fn session_opened(&self, role: Role) {
        self.sessions_total(role).inc();
        self.sessions_active(role).inc();
    }

    /// Counts a session closing: decrements `kwik_sessions_active`.
    pub fn session_closed(&self, role: Role) {
        self.sessions_active(role).dec();
    }

    /// `kwik_paths_active`.
    pub fn paths_active(&self) -> &IntGauge {
        &self.paths_active
    }

    /// `kwik_streams_active`.
    pub fn streams_active(&self) -> &IntGauge {
        &self.streams_active
    }

    /// `kwik_bytes_sent_total`.
    pub fn bytes_sent(&self) -> &IntCounter {
        &self.bytes_sent
    }

    /// `kwik_bytes_received_total`.
    pub fn bytes_received(&self) -> &IntCounter {
        &self.bytes_received
    }

    /// `kwik_packets_sent_total`.
    pub fn packets_sent(&self) -> &IntCounter {
        &self.packets_sent
    }

    /// `kwik_packets_received_total`.
    pub fn packets_received(&self) -> &IntCounter {
        &self.packets_received
    }

    /// `kwik_frames_total{direction, type}`.
    pub fn frames(&self, direction: Direction, kind: FrameKind) -> &IntCounter {
        &self.frames[direction.index() * FrameKind::ALL.len() + kind.index()]
    }

    /// `kwik_protocol_errors_total{code}`.
    pub fn protocol_errors(&self, code: ProtocolErrorKind) -> &IntCounter {
        &self.protocol_errors[code.index()]
    }

    /// `kwik_session_setup_seconds`.
    pub fn session_setup_seconds(&self) -> &Histogram {
        &self.session_setup_seconds
    }

    /// Records one session setup time in `kwik_session_setup_seconds`.
    pub fn observe_session_setup(&self, elapsed: Duration) {
        self.session_setup_seconds.observe(elapsed.as_secs_f64());
    }

    /// `kwik_rtt_seconds`.
    pub fn rtt_seconds(&self) -> &Histogram {
        &self.rtt_seconds
    }

    /// Records one RTT sample in `kwik_rtt_seconds`.
    pub fn observe_rtt(&self, rtt: Duration) {
        self.rtt_seconds.observe(rtt.as_secs_f64());
    }
}
