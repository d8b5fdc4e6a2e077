//! The baseline: the same echo workload on raw quinn, no kwik layer in between.
//!
//! What a quinn user would write: one endpoint per side, a task per accepted connection, each
//! bidirectional stream echoed chunk by chunk without a copy. TLS uses a self-signed
//! certificate made for this run, which the client trusts exactly (verification stays on).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use kwik_config::PerformanceConfig;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use socket2::{Domain, Protocol, Socket, Type};

use super::driver::{Channel, Target};

/// The name the certificate is issued for and the client dials.
const SERVER_NAME: &str = "localhost";

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
    pub(crate) fn start(config: &PerformanceConfig) -> anyhow::Result<Self> {
        let tls = DevTls::generate(config.transport.alpn.as_bytes())?;
        let transport = Arc::new(transport_config(config)?);
        let socket_buffer = config.transport.socket_buffer.as_usize();

        let mut server_config =
            quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls.server)?));
        server_config.transport_config(Arc::clone(&transport));
        let server = endpoint(Some(server_config), socket_buffer)?;
        let addr = server.local_addr()?;

        let mut client = endpoint(None, socket_buffer)?;
        let mut client_config =
            quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls.client)?));
        client_config.transport_config(transport);
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
        let connecting = self.client.connect(self.addr, SERVER_NAME);
        async move { Ok(connecting?.await?) }
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

/// QUIC transport settings from `[transport]`, shared by both sides.
fn transport_config(config: &PerformanceConfig) -> anyhow::Result<quinn::TransportConfig> {
    let section = &config.transport;
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(section.idle_timeout.try_into()?));
    transport.keep_alive_interval((!section.keep_alive.is_zero()).then_some(section.keep_alive));
    Ok(transport)
}

/// A UDP socket on 127.0.0.1 with `SO_SNDBUF`/`SO_RCVBUF` set (0 keeps the OS default), as a
/// quinn endpoint.
fn endpoint(
    server: Option<quinn::ServerConfig>,
    socket_buffer: usize,
) -> anyhow::Result<quinn::Endpoint> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if socket_buffer > 0 {
        // The kernel may cap the size (net.core.rmem_max); a smaller buffer is not an error.
        let _ = socket.set_recv_buffer_size(socket_buffer);
        let _ = socket.set_send_buffer_size(socket_buffer);
    }
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    let socket: UdpSocket = socket.into();
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// A self-signed certificate for `localhost` made for this run, and TLS configurations: the
/// server presents it, the client trusts it and nothing else.
struct DevTls {
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
}

impl DevTls {
    fn generate(alpn: &[u8]) -> anyhow::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])?;
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)?;
        server.alpn_protocols = vec![alpn.to_vec()];

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert)?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![alpn.to_vec()];
        Ok(Self { server, client })
    }
}
