//! The baseline: the same echo workload on raw quinn, no kwik layer in between.
//!
//! What a quinn user would write: one endpoint per side, a task per accepted connection, each
//! bidirectional stream echoed chunk by chunk without a copy. The sockets, the QUIC transport
//! parameters and the TLS configurations come from kwik-transport's own helpers
//! (`kwik::transport::quic`, `quinn_client_config`, `quinn_server_config`), built from the same
//! `[transport]` section and certificate as the kwik variants, so the comparison differs only
//! by the KWIK layer.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use kwik::config::PerformanceConfig;
use kwik::transport::{ClientConfig, ServerConfig, quic};

use super::driver::{Channel, Target};
use super::tls::{DevTls, SERVER_NAME};

/// How long shutdown waits for the endpoints to finish closing their connections.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A raw quinn echo server on 127.0.0.1 and the client endpoint that reaches it.
#[derive(Clone)]
pub(crate) struct QuicTarget {
    server: quinn::Endpoint,
    client: quinn::Endpoint,
    addr: SocketAddr,
}

impl QuicTarget {
    /// Starts the echo server on an ephemeral port and a client endpoint.
    pub(crate) fn start(config: &PerformanceConfig, tls: &DevTls) -> anyhow::Result<Self> {
        let section = &config.transport;
        let keep_alive = (!section.keep_alive.is_zero()).then_some(section.keep_alive);
        let alpn = [section.alpn.as_bytes().to_vec()];
        let server_config = ServerConfig::builder()
            .alpn(alpn.clone())
            .keep_alive(keep_alive)
            .idle_timeout(section.idle_timeout)
            .certificate(vec![tls.cert.clone()], tls.key.clone_key())
            .build()?
            .quinn_server_config();
        let client_config = ClientConfig::builder()
            .alpn(alpn)
            .keep_alive(keep_alive)
            .idle_timeout(section.idle_timeout)
            .add_root_certificate(tls.cert.clone())
            .server_name(SERVER_NAME)
            .build()?
            .quinn_client_config();

        let socket_buffer = section.socket_buffer.as_usize();
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let server = quic::endpoint(local, socket_buffer, Some(server_config))?;
        let addr = server.local_addr()?;
        let mut client = quic::endpoint(local, socket_buffer, None)?;
        client.set_default_client_config(client_config);

        tokio::spawn(accept_loop(server.clone()));
        Ok(Self {
            server,
            client,
            addr,
        })
    }
}

impl Target for QuicTarget {
    type Session = quinn::Connection;

    fn connect(&self) -> impl Future<Output = anyhow::Result<quinn::Connection>> + Send + 'static {
        // All of it inside the future, as a kwik dial: the driver spawns one task per session,
        // and starting quinn's connection in the spawning loop instead would give the baseline
        // sequential, uncontended `connect` calls the kwik variants do not get.
        let (client, addr) = (self.client.clone(), self.addr);
        async move { Ok(client.connect(addr, SERVER_NAME)?.await?) }
    }

    async fn open(session: &quinn::Connection) -> anyhow::Result<Channel> {
        let (send, recv) = session.open_bi().await?;
        Ok(Channel {
            reader: Box::new(recv),
            writer: Box::new(send),
        })
    }

    fn close(session: quinn::Connection) {
        session.close(0_u32.into(), b"done");
    }

    async fn shutdown(self) {
        self.client.close(0_u32.into(), b"done");
        self.server.close(0_u32.into(), b"done");
        let idle = async {
            tokio::join!(self.client.wait_idle(), self.server.wait_idle());
        };
        // Peers that vanished are not waited for beyond the grace period.
        let _ = tokio::time::timeout(CLOSE_GRACE, idle).await;
    }
}

async fn accept_loop(server: quinn::Endpoint) {
    while let Some(incoming) = server.accept().await {
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else {
                return;
            };
            while let Ok((send, recv)) = connection.accept_bi().await {
                tokio::spawn(echo(send, recv));
            }
        });
    }
}

/// Echoes a stream back, chunk by chunk, without copying, then finishes it.
async fn echo(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
        if send.write_chunk(chunk.bytes).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}
