//! The kwik variants: the same echo workload through the `kwik` facade, with the packets of
//! every session dispatched as `[transport] dispatch` says (pool, inline or spawn), against the
//! embedded echo listener or, with `--target`, a separate `kwik serve` whose echo service each
//! stream asks for with the line `ECHO\n` (docs/serve.md).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kwik::config::{Dispatch, PerformanceConfig};
use kwik::transport::ErrorCode;
use kwik::{Identity, Runtime, Session, Trust};
use tokio::io::AsyncWriteExt;

use super::driver::{Channel, Target};
use super::tls::DevTls;

/// How long shutdown lets the pool drain.
const DRAIN: Duration = Duration::from_secs(2);

/// Largest chunk the echo server reads at once.
const ECHO_CHUNK: usize = 64 * 1024;

/// The line that selects `kwik serve`'s echo service; the echo starts after it.
const SERVE_ECHO_LINE: &[u8] = b"ECHO\n";

/// A kwik runtime, the server its sessions dial and the trust to dial it: an echo listener of
/// its own on 127.0.0.1, or a `kwik serve` elsewhere.
#[derive(Clone)]
pub(crate) struct KwikTarget {
    runtime: Runtime,
    /// The embedded listener; `None` against a remote server.
    listener: Option<Arc<kwik::Listener>>,
    addr: SocketAddr,
    trust: Arc<Trust>,
}

impl KwikTarget {
    /// Builds the runtime from `config` with `dispatch`, and starts the echo listener.
    pub(crate) async fn start(
        config: &PerformanceConfig,
        dispatch: Dispatch,
        tls: &DevTls,
    ) -> anyhow::Result<Self> {
        let mut config = config.clone();
        config.transport.dispatch = dispatch;
        let runtime = Runtime::from_config(&config).await?;
        let identity = Identity::certificate(vec![tls.cert.clone()], tls.key.clone_key());
        let listener =
            Arc::new(runtime.listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &identity)?);
        let addr = listener.local_addr();
        tokio::spawn(accept_loop(Arc::clone(&listener)));
        let trust = Trust::Roots {
            roots: vec![tls.cert.clone()],
            server_name: Some(super::tls::SERVER_NAME.to_owned()),
        };
        // As the baseline builds its client endpoint and TLS configuration before the clock
        // starts: `setup` times the sessions' handshakes, not this one-time work.
        runtime.prepare_dial(addr, &trust)?;
        Ok(Self {
            runtime,
            listener: Some(listener),
            addr,
            trust: Arc::new(trust),
        })
    }

    /// Builds the runtime from `config` with `dispatch`, to dial the `kwik serve` at `addr`
    /// with `trust`. Nothing is contacted until the first session connects.
    pub(crate) async fn remote(
        config: &PerformanceConfig,
        dispatch: Dispatch,
        addr: SocketAddr,
        trust: Trust,
    ) -> anyhow::Result<Self> {
        let mut config = config.clone();
        config.transport.dispatch = dispatch;
        let runtime = Runtime::from_config(&config).await?;
        runtime.prepare_dial(addr, &trust)?;
        Ok(Self {
            runtime,
            listener: None,
            addr,
            trust: Arc::new(trust),
        })
    }
}

impl Target for KwikTarget {
    type Session = Session;

    fn connect(&self) -> impl Future<Output = anyhow::Result<Session>> + Send + 'static {
        let target = self.clone();
        async move { Ok(target.runtime.dial(target.addr, &target.trust).await?) }
    }

    async fn open(session: &Session) -> anyhow::Result<Channel> {
        let stream = session.open_stream().await?;
        let (reader, writer) = stream.into_split();
        Ok(Channel {
            reader: Box::new(reader),
            writer: Box::new(writer),
        })
    }

    fn service_line(&self) -> &'static [u8] {
        if self.listener.is_some() {
            b""
        } else {
            SERVE_ECHO_LINE
        }
    }

    fn close(session: Session) {
        session.close(ErrorCode::NO_ERROR, "done");
    }

    async fn shutdown(self) {
        if let Some(listener) = &self.listener {
            listener.close(ErrorCode::NO_ERROR, "done");
        }
        self.runtime.shutdown(DRAIN).await;
    }
}

async fn accept_loop(listener: Arc<kwik::Listener>) {
    while let Some(session) = listener.accept().await {
        tokio::spawn(async move {
            while let Ok(stream) = session.accept_stream().await {
                tokio::spawn(echo(stream));
            }
        });
    }
}

/// Echoes a stream back chunk by chunk, then finishes it.
async fn echo(mut stream: kwik::transport::Stream) {
    while let Ok(Some(chunk)) = stream.read_chunk(ECHO_CHUNK).await {
        if stream.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = stream.shutdown().await;
}
