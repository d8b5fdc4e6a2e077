//! The kwik variants: the same echo workload through the `kwik` facade, with the packets of
//! every session dispatched as `[transport] dispatch` says (pool, inline or spawn).

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

/// A kwik runtime with an echo listener on 127.0.0.1, and the trust to dial it.
#[derive(Clone)]
pub(crate) struct KwikTarget {
    runtime: Runtime,
    listener: Arc<kwik::Listener>,
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
        Ok(Self {
            runtime,
            listener,
            addr,
            trust: Arc::new(Trust::Roots {
                roots: vec![tls.cert.clone()],
                server_name: Some(super::tls::SERVER_NAME.to_owned()),
            }),
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
        let (reader, writer) = tokio::io::split(stream);
        Ok(Channel {
            reader: Box::new(reader),
            writer: Box::new(writer),
        })
    }

    fn close(session: Session) {
        session.close(ErrorCode::NO_ERROR, "done");
    }

    async fn shutdown(self) {
        self.listener.close(ErrorCode::NO_ERROR, "done");
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
