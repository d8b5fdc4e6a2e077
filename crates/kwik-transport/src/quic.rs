//! UDP socket and quinn tuning shared by kwik sessions and raw-quinn baselines.
//!
//! The `quinn_raw` benchmark and `kwik loadtest --baseline quic` build their endpoints with
//! these functions (and with [`ClientConfig::quinn_client_config`](crate::ClientConfig) /
//! [`ServerConfig::quinn_server_config`](crate::ServerConfig)), so a comparison differs only by
//! the KWIK layer.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TokioRuntime, TransportConfig, VarInt};
use socket2::{Domain, Protocol, Socket, Type};

/// Per-stream and per-connection QUIC receive windows. The path stream carries every KWIK
/// stream of the path, so it gets the connection's whole window; 16 MiB covers a loopback or LAN
/// bandwidth-delay product with room to spare.
const QUIC_STREAM_WINDOW: u32 = 16 * 1024 * 1024;
/// Connection receive window (and send window): the path stream plus slack.
const QUIC_CONNECTION_WINDOW: u32 = 24 * 1024 * 1024;

/// Binds a non-blocking UDP socket on `addr` with send and receive buffers of
/// `socket_buffer` bytes (0 keeps the OS default).
///
/// The kernel may clamp the size (`net.core.rmem_max`); the request is still worth making:
/// with Linux's default ~208 KiB buffers loopback bulk transfers drop packets.
pub fn bind_udp_socket(addr: SocketAddr, socket_buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual-stack where the OS allows it; ignore failure (some systems are v6-only).
        let _ = socket.set_only_v6(false);
    }
    if socket_buffer > 0 {
        // Best effort: a refused size leaves the OS default, which still works.
        let _ = socket.set_send_buffer_size(socket_buffer);
        let _ = socket.set_recv_buffer_size(socket_buffer);
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A quinn endpoint on a socket from [`bind_udp_socket`], optionally accepting connections.
/// Must be called inside a tokio runtime.
pub fn endpoint(
    addr: SocketAddr,
    socket_buffer: usize,
    server_config: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    let socket = bind_udp_socket(addr, socket_buffer)?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server_config,
        socket,
        Arc::new(TokioRuntime),
    )
}

/// quinn transport parameters sized for KWIK: exactly one bidirectional stream per connection
/// (the path stream; quinn's default 100 + 100 stream tables cost ~17 KiB per connection pair),
/// no unidirectional streams, bulk-sized windows, and the given keep-alive / idle timeout.
pub fn transport_config(keep_alive: Option<Duration>, idle_timeout: Duration) -> TransportConfig {
    let mut config = TransportConfig::default();
    config
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(QUIC_STREAM_WINDOW))
        .receive_window(VarInt::from_u32(QUIC_CONNECTION_WINDOW))
        .send_window(u64::from(QUIC_CONNECTION_WINDOW))
        .keep_alive_interval(keep_alive)
        .max_idle_timeout(IdleTimeout::try_from(idle_timeout).ok());
    config
}

/// The unspecified address of `remote`'s family, port 0: where a client endpoint binds.
pub fn unspecified_for(remote: SocketAddr) -> SocketAddr {
    if remote.is_ipv6() {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    }
}
