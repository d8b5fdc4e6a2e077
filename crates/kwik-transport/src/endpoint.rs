//! Dialing and listening: the QUIC handshake plus the HELLO exchange.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ClientConfig, ServerConfig, Settings};
use crate::error::{ConnectError, ErrorCode, ListenError};
use crate::path::{self, HandshakeError, PathShared, close_reason_from};
use crate::quic;
use crate::session::{Session, SessionInner};

/// The path id of the path a client dials (the primary until it fails).
const PRIMARY_PATH_ID: u64 = 0;

/// The `path_id` of a server's HELLO: the server speaks before it knows the client's choice,
/// so the field carries 0 and the client ignores it (docs/protocol.md §3).
const SERVER_HELLO_PATH_ID: u64 = 0;

/// Dials a KWIK server at `addr`: QUIC handshake (TLS verified unless the config opts out),
/// the server's HELLO (which arrives with the handshake), then ours, all within
/// `handshake_timeout`.
pub async fn dial(addr: SocketAddr, config: &ClientConfig) -> Result<Session, ConnectError> {
    let settings = &config.settings;
    let endpoint = config.endpoint_for(addr).map_err(ConnectError::Bind)?;
    let server_name = config
        .server_name
        .clone()
        .unwrap_or_else(|| addr.ip().to_string());
    let connecting = endpoint.connect_with(config.quinn.clone(), addr, &server_name)?;
    let handshake = path::client_handshake(connecting, settings, PRIMARY_PATH_ID);
    let (conn, send, recv, hello) = tokio::time::timeout(settings.handshake_timeout, handshake)
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(|e| match e {
            HandshakeError::Connection(quinn::ConnectionError::ApplicationClosed(c)) => {
                ConnectError::Closed(close_reason_from(
                    quinn::ConnectionError::ApplicationClosed(c),
                ))
            }
            HandshakeError::Connection(c) => ConnectError::Handshake(c),
            HandshakeError::Protocol(p) => ConnectError::Protocol(p),
        })?;
    let inner = SessionInner::new(true, settings.clone(), &hello, endpoint);
    inner.multi.set_dialer(config.clone(), hello.stream_window);
    let path = Arc::new(PathShared::new(PRIMARY_PATH_ID, conn, send, true));
    inner.start_path(path, recv);
    Ok(Session::new(inner))
}

/// Binds a KWIK server on `addr` (port 0 picks a free port) and starts accepting.
///
/// Handshakes run concurrently (up to `max_pending_handshakes`), so one slow client never
/// delays [`Listener::accept`] for the others.
pub fn listen(addr: SocketAddr, config: &ServerConfig) -> Result<Listener, ListenError> {
    let endpoint = quic::endpoint(
        addr,
        config.settings.socket_buffer,
        Some(config.quinn.clone()),
    )
    .map_err(ListenError::Bind)?;
    let local_addr = endpoint.local_addr().map_err(ListenError::Bind)?;
    let (tx, rx) = mpsc::channel(config.max_pending_handshakes);
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tasks.spawn(accept_loop(
        endpoint.clone(),
        shutdown.clone(),
        config.settings.clone(),
        Arc::new(Semaphore::new(config.max_pending_handshakes)),
        tx,
        tasks.clone(),
    ));
    Ok(Listener {
        endpoint,
        local_addr,
        sessions: Mutex::new(rx),
        tasks,
        shutdown,
    })
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    shutdown: CancellationToken,
    settings: Settings,
    permits: Arc<Semaphore>,
    sessions: mpsc::Sender<Session>,
    tasks: TaskTracker,
) {
    loop {
        let next = async {
            let permit = permits.clone().acquire_owned().await.ok()?;
            Some((permit, endpoint.accept().await?))
        };
        let Some(Some((permit, incoming))) = shutdown.run_until_cancelled(next).await else {
            return;
        };
        let endpoint = endpoint.clone();
        let settings = settings.clone();
        let sessions = sessions.clone();
        tasks.spawn(async move {
            let handshake = server_handshake(incoming, &settings);
            let outcome = tokio::time::timeout(settings.handshake_timeout, handshake).await;
            match outcome {
                Ok(Ok((conn, send, recv, hello))) => {
                    let inner = SessionInner::new(false, settings, &hello, endpoint);
                    let path = Arc::new(PathShared::new(hello.path_id, conn, send, true));
                    inner.start_path(path, recv);
                    // Holding the permit until the application accepts bounds the backlog.
                    let _ = sessions.send(Session::new(inner)).await;
                }
                Ok(Err(e)) => tracing::debug!("kwik handshake failed: {e:?}"),
                Err(_) => tracing::debug!("kwik handshake timed out"),
            }
            drop(permit);
        });
    }
}

type Handshaken = (
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
    crate::wire::Hello,
);

async fn server_handshake(
    incoming: quinn::Incoming,
    settings: &Settings,
) -> Result<Handshaken, HandshakeError> {
    // The server speaks first: it opens the path stream and sends its HELLO as 0.5-RTT data,
    // in the same flight as its TLS handshake messages, so the client has it when its own
    // handshake completes and a dial costs no round trip beyond QUIC's. Nothing in it is
    // secret, and nothing the client sends is read before the handshake is confirmed (quinn
    // does not process 1-RTT packets from the client earlier).
    let connecting = incoming.accept()?;
    let conn = match connecting.into_0rtt() {
        Ok((conn, _accepted)) => conn,
        // Not reachable on a server (0.5-RTT is always possible), but waiting is correct too.
        Err(connecting) => connecting.await?,
    };
    let (mut send, mut recv) = conn.open_bi().await?;
    path::write_hello(
        &mut send,
        SessionInner::hello(settings, SERVER_HELLO_PATH_ID),
    )
    .await?;
    let hello = match path::read_hello(&mut recv, settings.max_packet_size).await {
        Ok(hello) => hello,
        Err(HandshakeError::Protocol(e)) => {
            conn.close(path::varint(e.code.0), e.reason.as_bytes());
            return Err(HandshakeError::Protocol(e));
        }
        Err(e) => return Err(e),
    };
    Ok((conn, send, recv, hello))
}

/// Accepts KWIK sessions on one UDP socket.
pub struct Listener {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    sessions: Mutex<mpsc::Receiver<Session>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Listener {
    /// The next session whose handshake completed; `None` once the listener is closed.
    pub async fn accept(&self) -> Option<Session> {
        self.sessions.lock().await.recv().await
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes every connection of this listener with `code`.
    pub fn close(&self, code: ErrorCode, reason: &str) {
        self.shutdown.cancel();
        self.tasks.close();
        self.endpoint.close(path::varint(code.0), reason.as_bytes());
    }

    /// Waits until the listener's accept loop and handshakes have ended and every connection
    /// is gone (call after [`close`](Listener::close)).
    pub async fn closed(&self) {
        self.sessions.lock().await.close();
        self.tasks.wait().await;
        self.endpoint.wait_idle().await;
    }

    /// The quinn endpoint (for tools that need raw QUIC on the same socket).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.tasks.close();
        // Sessions already accepted keep working; only new connections are refused.
        self.endpoint.set_server_config(None);
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}
