//! Client and server configuration, built from plain values and validated once.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kwik_buffer::BufferPool;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::ConfigError;
use crate::executor::{Executor, InlineExecutor};
use crate::stats::Observer;

/// Default ALPN protocol id (the same as `transport.alpn` in performance.toml).
pub const DEFAULT_ALPN: &[u8] = b"kwik";

/// Settings shared by both sides, copied into every session.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) alpn: Vec<Vec<u8>>,
    pub(crate) max_packet_size: usize,
    pub(crate) read_buffer: usize,
    pub(crate) stream_window: u64,
    pub(crate) max_streams: u64,
    pub(crate) max_paths_per_session: usize,
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) idle_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) socket_buffer: usize,
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) observer: Option<Arc<dyn Observer>>,
    /// Where path readers take their buffers; built from `read_buffer` when not given.
    pub(crate) buffer_pool: Option<BufferPool>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            alpn: vec![DEFAULT_ALPN.to_vec()],
            max_packet_size: 64 * 1024,
            read_buffer: 64 * 1024,
            stream_window: 1024 * 1024,
            max_streams: 1000,
            max_paths_per_session: 16,
            keep_alive: Some(Duration::from_secs(10)),
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(10)),
            socket_buffer: 4 * 1024 * 1024,
            executor: Arc::new(InlineExecutor),
            observer: None,
            buffer_pool: None,
        }
    }
}

impl Settings {
    /// Validates, and gives the settings a buffer pool if they have none.
    fn finish(mut self) -> Result<Self, ConfigError> {
        self.validate()?;
        if self.buffer_pool.is_none() {
            self.buffer_pool = Some(
                BufferPool::builder()
                    .buffer_size(self.read_buffer)
                    .build()?,
            );
        }
        Ok(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason| Err(ConfigError::InvalidValue { field, reason });
        if !(2048..=16 * 1024 * 1024).contains(&self.max_packet_size) {
            return invalid("max_packet_size", "must be between 2 KiB and 16 MiB");
        }
        if self.read_buffer < 4096 {
            return invalid("read_buffer", "must be at least 4 KiB");
        }
        if !(4096..=1 << 30).contains(&self.stream_window) {
            return invalid("stream_window", "must be between 4 KiB and 1 GiB");
        }
        if !(1..=1 << 40).contains(&self.max_streams) {
            return invalid("max_streams", "must be between 1 and 2^40");
        }
        if self.max_paths_per_session == 0 {
            return invalid("max_paths_per_session", "must be at least 1");
        }
        if self.idle_timeout.is_zero() || quinn::IdleTimeout::try_from(self.idle_timeout).is_err() {
            return invalid("idle_timeout", "must be positive and below 2^62 ms");
        }
        if self
            .keep_alive
            .is_some_and(|k| k.is_zero() || k >= self.idle_timeout)
        {
            return invalid(
                "keep_alive",
                "must be positive and shorter than idle_timeout",
            );
        }
        if self.handshake_timeout.is_zero() {
            return invalid("handshake_timeout", "must be positive");
        }
        if self.ping_interval.is_some_and(|p| p.is_zero()) {
            return invalid("ping_interval", "must be positive");
        }
        if self.alpn.is_empty() || self.alpn.iter().any(|a| a.is_empty() || a.len() > 255) {
            return invalid("alpn", "needs at least one protocol id of 1 to 255 bytes");
        }
        Ok(())
    }

    /// The read buffer pool (always set on settings of a built config).
    pub(crate) fn read_pool(&self) -> Option<BufferPool> {
        self.buffer_pool.clone()
    }

    fn quinn_transport(&self) -> Arc<quinn::TransportConfig> {
        Arc::new(crate::quic::transport_config(
            self.keep_alive,
            self.idle_timeout,
        ))
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("max_packet_size", &self.max_packet_size)
            .field("read_buffer", &self.read_buffer)
            .field("stream_window", &self.stream_window)
            .field("max_streams", &self.max_streams)
            .field("max_paths_per_session", &self.max_paths_per_session)
            .field("keep_alive", &self.keep_alive)
            .field("idle_timeout", &self.idle_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("socket_buffer", &self.socket_buffer)
            .finish_non_exhaustive()
    }
}

/// Generates the setters shared by both builders.
macro_rules! common_setters {
    () => {
        /// ALPN protocol ids offered / accepted. Default: `["kwik"]`.
        pub fn alpn<I, P>(mut self, protocols: I) -> Self
        where
            I: IntoIterator<Item = P>,
            P: Into<Vec<u8>>,
        {
            self.settings.alpn = protocols.into_iter().map(Into::into).collect();
            self
        }

        /// Largest packet body this side accepts and sends (2 KiB..=16 MiB). A peer packet
        /// announcing more is a `PACKET_TOO_LARGE` protocol error. Default: 64 KiB.
        pub fn max_packet_size(mut self, bytes: usize) -> Self {
            self.settings.max_packet_size = bytes;
            self
        }

        /// Size of the buffers the path reader reads into (at least 4 KiB). Default: 64 KiB.
        pub fn read_buffer(mut self, bytes: usize) -> Self {
            self.settings.read_buffer = bytes;
            self
        }

        /// Receive window of every stream: the most bytes buffered per stream
        /// (4 KiB..=1 GiB). Default: 1 MiB.
        pub fn stream_window(mut self, bytes: u64) -> Self {
            self.settings.stream_window = bytes;
            self
        }

        /// Streams the peer may have open at once towards this side. Default: 1000.
        pub fn max_streams(mut self, streams: u64) -> Self {
            self.settings.max_streams = streams;
            self
        }

        /// Most paths one session may have. Default: 16.
        pub fn max_paths_per_session(mut self, paths: usize) -> Self {
            self.settings.max_paths_per_session = paths;
            self
        }

        /// QUIC keep-alive interval (`None` disables; must be shorter than the idle timeout).
        /// Default: 10 s.
        pub fn keep_alive(mut self, interval: Option<std::time::Duration>) -> Self {
            self.settings.keep_alive = interval;
            self
        }

        /// QUIC idle timeout. Default: 30 s.
        pub fn idle_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.idle_timeout = timeout;
            self
        }

        /// Time allowed for the QUIC handshake plus the HELLO exchange. Default: 10 s.
        pub fn handshake_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.handshake_timeout = timeout;
            self
        }

        /// Interval of the PING frames that measure each path's RTT (`None`: only the PING
        /// sent when the path opens). Default: 10 s.
        pub fn ping_interval(mut self, interval: Option<std::time::Duration>) -> Self {
            self.settings.ping_interval = interval;
            self
        }

        /// UDP socket send and receive buffer size (0 keeps the OS default). Default: 4 MiB.
        pub fn socket_buffer(mut self, bytes: usize) -> Self {
            self.settings.socket_buffer = bytes;
            self
        }

        /// Executor running received packets. Default: [`InlineExecutor`](crate::InlineExecutor).
        pub fn executor(mut self, executor: std::sync::Arc<dyn crate::Executor>) -> Self {
            self.settings.executor = executor;
            self
        }

        /// Pool the path readers take their read buffers from (shared by every session built
        /// from this config). Default: a pool of `read_buffer`-sized buffers per config.
        pub fn buffer_pool(mut self, pool: kwik_buffer::BufferPool) -> Self {
            self.settings.buffer_pool = Some(pool);
            self
        }

        /// Observer notified of session, path and error events. Default: none.
        pub fn observer(mut self, observer: std::sync::Arc<dyn crate::Observer>) -> Self {
            self.settings.observer = Some(observer);
            self
        }
    };
}

/// How a client dials: TLS trust, ALPN and limits. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub(crate) settings: Settings,
    pub(crate) server_name: Option<String>,
    pub(crate) quinn: quinn::ClientConfig,
    /// Client endpoints (IPv4, IPv6) shared by every session dialed with this config and its
    /// clones: one UDP socket and one quinn driver instead of one per session (a quinn endpoint
    /// costs about 3 MiB of buffers).
    pub(crate) endpoints: Arc<Mutex<[Option<quinn::Endpoint>; 2]>>,
}

impl ClientConfig {
    /// A builder with the defaults documented on each setter.
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder::default()
    }

    /// The quinn client configuration kwik dials with (same TLS provider, trust, ALPN and
    /// transport parameters): for raw-quinn baselines.
    pub fn quinn_client_config(&self) -> quinn::ClientConfig {
        self.quinn.clone()
    }

    /// UDP socket buffer size in bytes.
    pub fn socket_buffer(&self) -> usize {
        self.settings.socket_buffer
    }

    /// The client endpoint for `remote`'s address family, bound on first use. It is driven by
    /// the tokio runtime of the first dial, so use one config per runtime.
    pub fn endpoint_for(&self, remote: SocketAddr) -> std::io::Result<quinn::Endpoint> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut endpoints[usize::from(remote.is_ipv6())];
        if let Some(endpoint) = slot {
            return Ok(endpoint.clone());
        }
        let endpoint = crate::quic::endpoint(
            crate::quic::unspecified_for(remote),
            self.settings.socket_buffer,
            None,
        )?;
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }
}

/// Builds a [`ClientConfig`].
#[derive(Default)]
pub struct ClientConfigBuilder {
    settings: Settings,
    roots: Vec<CertificateDer<'static>>,
    server_name: Option<String>,
    insecure_dev_skip_verification: bool,
}

impl ClientConfigBuilder {
    common_setters!();

    /// Trusts `cert` as a root certificate authority. Default: no roots, so nothing is trusted
    /// until a root is added (or the development option below is set).
    pub fn add_root_certificate(mut self, cert: CertificateDer<'static>) -> Self {
        self.roots.push(cert);
        self
    }

    /// Name verified against the server certificate (SNI). Default: the dialed IP address.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// **Development only: accepts any server certificate**, which removes all protection
    /// against an active attacker. Pairs with
    /// [`ServerConfigBuilder::insecure_dev_self_signed`]. Default: false.
    pub fn insecure_dev_skip_verification(mut self, skip: bool) -> Self {
        self.insecure_dev_skip_verification = skip;
        self
    }

    /// Validates the settings and builds the TLS configuration.
    pub fn build(mut self) -> Result<ClientConfig, ConfigError> {
        self.settings = self.settings.finish()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let mut tls = if self.insecure_dev_skip_verification {
            tracing::warn!("kwik client: TLS certificate verification DISABLED (development)");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipServerVerification(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for cert in self.roots {
                roots.add(cert)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        tls.alpn_protocols = self.settings.alpn.clone();
        let quic = QuicClientConfig::try_from(tls).map_err(|e| ConfigError::Quic(e.to_string()))?;
        let mut quinn = quinn::ClientConfig::new(Arc::new(quic));
        quinn.transport_config(self.settings.quinn_transport());
        Ok(ClientConfig {
            settings: self.settings,
            server_name: self.server_name,
            quinn,
            endpoints: Arc::default(),
        })
    }
}

/// How a server accepts: certificate, ALPN and limits. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub(crate) settings: Settings,
    pub(crate) quinn: quinn::ServerConfig,
    pub(crate) max_pending_handshakes: usize,
    pub(crate) self_signed: Option<CertificateDer<'static>>,
}

impl ServerConfig {
    /// A builder with the defaults documented on each setter.
    pub fn builder() -> ServerConfigBuilder {
        ServerConfigBuilder::default()
    }

    /// The quinn server configuration kwik listens with: for raw-quinn baselines.
    pub fn quinn_server_config(&self) -> quinn::ServerConfig {
        self.quinn.clone()
    }

    /// UDP socket buffer size in bytes.
    pub fn socket_buffer(&self) -> usize {
        self.settings.socket_buffer
    }

    /// The generated certificate when built with `insecure_dev_self_signed`, so that a
    /// development client may choose to trust exactly it.
    pub fn self_signed_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.self_signed.as_ref()
    }
}

/// Builds a [`ServerConfig`].
pub struct ServerConfigBuilder {
    settings: Settings,
    cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    insecure_dev_self_signed: bool,
    max_pending_handshakes: usize,
}

impl Default for ServerConfigBuilder {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            cert: None,
            insecure_dev_self_signed: false,
            max_pending_handshakes: 256,
        }
    }
}

impl ServerConfigBuilder {
    common_setters!();

    /// The certificate chain (leaf first) and private key the server presents. Default: none;
    /// `build` fails without one unless `insecure_dev_self_signed` is set.
    pub fn certificate(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.cert = Some((chain, key));
        self
    }

    /// **Development only:** generate a self-signed certificate for `localhost`, `127.0.0.1`
    /// and `::1` at build time. Clients must then either trust
    /// [`ServerConfig::self_signed_certificate`] or skip verification. Ignored when a
    /// certificate is set. Default: false.
    pub fn insecure_dev_self_signed(mut self, enable: bool) -> Self {
        self.insecure_dev_self_signed = enable;
        self
    }

    /// Handshakes (QUIC + HELLO) run concurrently at most; further connections wait in quinn's
    /// queue. Default: 256.
    pub fn max_pending_handshakes(mut self, handshakes: usize) -> Self {
        self.max_pending_handshakes = handshakes;
        self
    }

    /// Validates the settings and builds the TLS configuration.
    pub fn build(mut self) -> Result<ServerConfig, ConfigError> {
        self.settings = self.settings.finish()?;
        if self.max_pending_handshakes == 0 {
            return Err(ConfigError::InvalidValue {
                field: "max_pending_handshakes",
                reason: "must be at least 1",
            });
        }
        let mut self_signed = None;
        let (chain, key) = match self.cert {
            Some(pair) => pair,
            None if self.insecure_dev_self_signed => {
                tracing::warn!(
                    "kwik server: using a generated SELF-SIGNED certificate (development)"
                );
                let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
                let certified = rcgen::generate_simple_self_signed(names)?;
                let cert = certified.cert.der().clone();
                let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
                self_signed = Some(cert.clone());
                (vec![cert], PrivateKeyDer::Pkcs8(key))
            }
            None => return Err(ConfigError::MissingCertificate),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        tls.alpn_protocols = self.settings.alpn.clone();
        let quic = QuicServerConfig::try_from(tls).map_err(|e| ConfigError::Quic(e.to_string()))?;
        let mut quinn = quinn::ServerConfig::with_crypto(Arc::new(quic));
        quinn.transport_config(self.settings.quinn_transport());
        Ok(ServerConfig {
            settings: self.settings,
            quinn,
            max_pending_handshakes: self.max_pending_handshakes,
            self_signed,
        })
    }
}

/// Accepts every certificate but still checks handshake signatures (so the connection is at
/// least keyed to the presented certificate). Development only.
#[derive(Debug)]
struct SkipServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
