//! What the examples share: the flags that split client and servers into processes, the TLS
//! material, the runtime, a server loop that joins what it spawns, and line I/O on streams.

// Each example uses a part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use kwik::config::PerformanceConfig;
use kwik::transport::{ErrorCode, Stream};
use kwik::{Identity, Listener, Runtime, Session, Trust};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// Longest service line the examples read (as `kwik serve`'s `MAX_SERVICE_LINE`).
pub(crate) const MAX_LINE: usize = 4096;

/// Deadline for draining the worker pool when an example stops its runtime.
pub(crate) const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Flags shared by every example: without `--server` or `--connect` the example runs client and
/// server(s) in one process.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NetArgs {
    /// Run only the server, on --listen, until Ctrl-C.
    #[arg(long)]
    pub(crate) server: bool,
    /// Address the server listens on (with --server; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:4433")]
    pub(crate) listen: SocketAddr,
    /// Run only the client, against the server at this address (this example's server or a
    /// running `kwik serve`).
    #[arg(long, conflicts_with = "server")]
    pub(crate) connect: Option<SocketAddr>,
    /// Server: certificate chain (PEM, leaf first). Without it: a throw-away self-signed
    /// certificate for 127.0.0.1 (development only).
    #[arg(long, requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// Server: private key of --cert (PEM).
    #[arg(long, requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Client: trust this CA or self-signed certificate (PEM).
    #[arg(long, conflicts_with = "insecure")]
    pub(crate) ca: Option<PathBuf>,
    /// Client: the name verified in the server certificate (default: the dialed IP).
    #[arg(long, requires = "ca")]
    pub(crate) server_name: Option<String>,
    /// Client: accept any server certificate (development only: no protection against an
    /// active attacker).
    #[arg(long)]
    pub(crate) insecure: bool,
}

/// How an example runs, from its [`NetArgs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Client and server(s) in this process, on ephemeral 127.0.0.1 ports.
    InProcess,
    /// Only the server, on this address.
    Server(SocketAddr),
    /// Only the client, against this server.
    Client(SocketAddr),
}

impl NetArgs {
    /// The mode the flags select.
    pub(crate) fn mode(&self) -> Mode {
        match (self.server, self.connect) {
            (true, _) => Mode::Server(self.listen),
            (false, Some(addr)) => Mode::Client(addr),
            (false, None) => Mode::InProcess,
        }
    }

    /// What a separate server process presents: --cert/--key, else a throw-away self-signed
    /// certificate.
    pub(crate) fn identity(&self) -> anyhow::Result<Identity> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Ok(Identity::InsecureDevSelfSigned);
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading {}", cert.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing {}", cert.display()))?;
        ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("reading {}", key.display()))?;
        Ok(Identity::certificate(chain, key))
    }

    /// What a separate client process trusts: --ca or --insecure, one of them required.
    pub(crate) fn trust(&self) -> anyhow::Result<Trust> {
        if let Some(ca) = &self.ca {
            let roots = CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading {}", ca.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("parsing {}", ca.display()))?;
            ensure!(!roots.is_empty(), "no certificate in {}", ca.display());
            return Ok(Trust::Roots {
                roots,
                server_name: self.server_name.clone(),
            });
        }
        if self.insecure {
            return Ok(Trust::InsecureDevSkipVerification);
        }
        bail!("--connect needs --ca PEM (or --insecure, development only)")
    }
}

/// TLS for client and servers in one process: a self-signed certificate for 127.0.0.1, made
/// now and thrown away, that the client trusts explicitly (verification stays on).
#[derive(Debug, Clone)]
pub(crate) struct LocalTls {
    /// What the servers present.
    pub(crate) identity: Identity,
    /// What the client trusts: that certificate alone.
    pub(crate) trust: Trust,
}

impl LocalTls {
    /// Generates the certificate and its key.
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
        let cert = generated.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
        Ok(Self {
            identity: Identity::certificate(vec![cert.clone()], key.into()),
            trust: Trust::roots([cert]),
        })
    }
}

/// A runtime with the default `performance.toml` settings (the ones `kwik serve` uses, so the
/// examples' clients can talk to it), without the Prometheus endpoint: examples bind no fixed
/// port.
pub(crate) async fn runtime() -> anyhow::Result<Runtime> {
    let mut config = PerformanceConfig::default();
    config.metrics.enabled = false;
    Ok(Runtime::from_config(&config).await?)
}

/// A server accepting sessions on a listener, one task per session, all joined by
/// [`stop`](Self::stop).
pub(crate) struct Server {
    listener: Arc<Listener>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves every session `listener` accepts with `session_fn`, each on its own task.
    pub(crate) fn start<F, Fut>(listener: Listener, session_fn: F) -> Self
    where
        F: Fn(Session) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = Arc::new(listener);
        let accepting = Arc::clone(&listener);
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            while let Some(session) = accepting.accept().await {
                sessions.spawn(session_fn(session));
                // Reap finished sessions so a long-running server does not accumulate them.
                while let Some(done) = sessions.try_join_next() {
                    report("session", done);
                }
            }
            while let Some(done) = sessions.join_next().await {
                report("session", done);
            }
        });
        Self { listener, task }
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Closes the listener (new and open sessions end), then waits for every session task.
    pub(crate) async fn stop(self) {
        self.listener.close(ErrorCode::NO_ERROR, "server stopped");
        self.listener.closed().await;
        if let Err(e) = self.task.await {
            eprintln!("server task failed: {e}");
        }
    }
}

/// Prints how a session or stream task failed, if it did: a server goes on serving the others.
fn report(what: &str, done: Result<anyhow::Result<()>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("{what}: {e:#}"),
        Err(e) => eprintln!("{what} task failed: {e}"),
    }
}

/// Serves every stream of `session` with `stream_fn`, each on its own task, until the session
/// closes; joins them all.
pub(crate) async fn serve_streams<F, Fut>(session: Session, stream_fn: F) -> anyhow::Result<()>
where
    F: Fn(Session, Stream) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut streams = JoinSet::new();
    while let Ok(stream) = session.accept_stream().await {
        streams.spawn(stream_fn(session.clone(), stream));
        while let Some(done) = streams.try_join_next() {
            report("stream", done);
        }
    }
    while let Some(done) = streams.join_next().await {
        report("stream", done);
    }
    Ok(())
}

/// Reads one `\n`-terminated line (without the `\n` and a `\r` before it), one byte at a time
/// so that nothing after the line is consumed. `None` when the stream ended, was reset or its
/// session closed before its first byte: there was no request. (A secondary server sees such
/// streams: data relayed on a client stream opens every lower client stream id on its side too,
/// as in QUIC, and those, used with the primary only, never carry a byte there.)
pub(crate) async fn read_line(stream: &mut Stream) -> anyhow::Result<Option<String>> {
    let Ok(first) = stream.read_u8().await else {
        return Ok(None);
    };
    let mut line = vec![first];
    loop {
        if line.last() == Some(&b'\n') {
            line.pop();
            break;
        }
        if line.len() > MAX_LINE {
            bail!("line longer than {MAX_LINE} bytes");
        }
        line.push(
            stream
                .read_u8()
                .await
                .context("stream ended inside a line")?,
        );
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8(line)?))
}

/// The echo service of `kwik serve` after its `ECHO\n` line: every byte back until the peer
/// finishes, then FIN.
pub(crate) async fn echo(mut stream: Stream) -> anyhow::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await?;
    }
    stream.shutdown().await?;
    Ok(())
}

/// `kwik serve`'s echo service on one stream: the `ECHO` line, then [`echo`]. A stream with no
/// line at all is left alone.
pub(crate) async fn echo_service(mut stream: Stream) -> anyhow::Result<()> {
    let Some(line) = read_line(&mut stream).await? else {
        return Ok(());
    };
    ensure!(line == "ECHO", "unknown service {line:?}");
    echo(stream).await
}

/// One echo request on a new stream of `session`: `ECHO\n`, `message`, FIN; the reply read to
/// its end, checked and returned.
pub(crate) async fn echo_request(session: &Session, message: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = session.open_stream().await?;
    stream.write_all(b"ECHO\n").await?;
    stream.write_all(message).await?;
    stream.shutdown().await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    ensure!(reply == message, "the echo differs from the request");
    Ok(reply)
}

/// `--connect`: a runtime for `client` alone, shut down after it whatever it returned.
pub(crate) async fn connect<T>(
    addr: SocketAddr,
    trust: &Trust,
    client: impl AsyncFnOnce(&Runtime, SocketAddr, &Trust) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = runtime().await?;
    let result = client(&runtime, addr, trust).await;
    runtime.shutdown(SHUTDOWN_DEADLINE).await;
    result
}

/// The default run: a runtime, the server `start` makes on an ephemeral 127.0.0.1 port with a
/// [`LocalTls`] certificate, and `client` against it; then the server and the runtime stopped.
pub(crate) async fn in_process<T>(
    what: &str,
    start: impl FnOnce(&Runtime, SocketAddr, &Identity) -> anyhow::Result<Server>,
    client: impl AsyncFnOnce(&Runtime, SocketAddr, &Trust) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = runtime().await?;
    let tls = LocalTls::generate()?;
    let server = start(
        &runtime,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &tls.identity,
    )?;
    println!("{what} listening on {}", server.local_addr());
    let result = client(&runtime, server.local_addr(), &tls.trust).await;
    server.stop().await;
    runtime.shutdown(SHUTDOWN_DEADLINE).await;
    result
}

/// `--server`: a runtime, the server `start` makes on `addr`, until Ctrl-C; then the server
/// and the runtime stopped.
pub(crate) async fn serve_until_ctrl_c(
    what: &str,
    addr: SocketAddr,
    identity: &Identity,
    start: impl FnOnce(&Runtime, SocketAddr, &Identity) -> anyhow::Result<Server>,
) -> anyhow::Result<()> {
    let runtime = runtime().await?;
    let server = start(&runtime, addr, identity)?;
    println!("{what} listening on {} (Ctrl-C stops)", server.local_addr());
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    runtime.shutdown(SHUTDOWN_DEADLINE).await;
    Ok(())
}

/// `n` bytes in human units.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration in milliseconds with microsecond precision.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}
