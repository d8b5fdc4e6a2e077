//! The `kwik serve` subcommand: loads the configuration, starts the metrics endpoint, listens for
//! KWIK sessions and serves every stream they open, until SIGINT or SIGTERM.
//!
//! Shutdown is graceful: on a signal the listener stops taking new sessions and sessions stop
//! taking new streams, the streams in flight get `worker_pool.shutdown_timeout` to finish, then
//! every session is closed and the process exits 0.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use clap::ArgGroup;
use kwik_buffer::BufferPool;
use kwik_config::{LogFormat, LogLevel, PerformanceConfig};
use kwik_metrics::{Metrics, MetricsServer};
use kwik_transport::{ErrorCode, Listener, ServerConfig, Session};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::dispatch::ServeError;
use super::metrics::{PrometheusObserver, TransportObserver, register_stats, route_labels};
use super::secondary::{self, Cluster, Secondaries};
use super::{
    DEFAULT_REQUEST_TIMEOUT, RuntimeStatus, Services, StatusSource, response_cache, serve_stream,
};

/// How long a shutdown waits for the sessions it closed to finish closing (their CLOSE
/// acknowledged by the clients): a little more than the transport's own 2 s linger.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Code a secondary closes a session with when it refuses a relayed part: the client then sees
/// the path lost (`ReadError::PathLost`) instead of waiting for bytes that will never come.
const PART_REFUSED: ErrorCode = ErrorCode(ErrorCode::APPLICATION_BASE.0 + 1);

/// Serve echo, file ranges and HTTP over KWIK streams (docs/serve.md).
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("tls").required(true).args(["cert", "insecure_dev_self_signed"])))]
pub(crate) struct ServeArgs {
    /// performance.toml to load; KWIK_<SECTION>_<KEY> variables override it. Default: the
    /// built-in defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on. Default: `[transport] listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Certificate chain (PEM, leaf first) presented to clients.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of the certificate.
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// DEVELOPMENT ONLY: generate a throw-away self-signed certificate for localhost.
    #[arg(long)]
    insecure_dev_self_signed: bool,
    /// Directory served by FILE requests and HTTP static files. Default: none.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Another `kwik serve` with the same files (`host:port`, repeatable): every client is
    /// asked to add a path to it, and FILE downloads are split with it. Default: none.
    #[arg(long, value_name = "ADDR", num_args = 1.., value_parser = secondary::parse_address)]
    secondary: Vec<String>,
}

/// Runs `kwik serve` to completion.
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => PerformanceConfig::load(path)?,
        None => PerformanceConfig::default(),
    }
    .with_env_overrides()?;
    init_logging(config.logging.level, config.logging.format);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime.effective_worker_threads(cores))
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(serve(args, config))
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let filter = match level {
        LogLevel::Off => tracing_subscriber::filter::LevelFilter::OFF,
        LogLevel::Error => tracing_subscriber::filter::LevelFilter::ERROR,
        LogLevel::Warn => tracing_subscriber::filter::LevelFilter::WARN,
        LogLevel::Info => tracing_subscriber::filter::LevelFilter::INFO,
        LogLevel::Debug => tracing_subscriber::filter::LevelFilter::DEBUG,
        LogLevel::Trace => tracing_subscriber::filter::LevelFilter::TRACE,
    };
    // Logs go to stderr: stdout carries the `listening on` line that scripts read.
    let builder = tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(args: ServeArgs, config: PerformanceConfig) -> anyhow::Result<()> {
    let metrics = Metrics::builder()
        .routes(route_labels())
        .build()
        .context("cannot build the metrics registry")?;
    let metrics_server = if config.metrics.enabled {
        let server = MetricsServer::builder()
            .addr(config.metrics.listen)
            .start(metrics.clone())
            .await
            .context("cannot start the metrics endpoint")?;
        println!("metrics on http://{}/metrics", server.local_addr());
        Some(server)
    } else {
        None
    };

    #[cfg(feature = "profiling")]
    let profiling = start_profiling(&config).await?;
    #[cfg(not(feature = "profiling"))]
    if config.profiling.enabled {
        warn!("[profiling] enabled = true, but kwik was built without the `profiling` feature");
    }

    let cluster = Arc::new(Cluster::new(args.secondary.iter().cloned()));
    let sessions = Arc::new(Sessions::new(cluster.clone()));
    let buffers = BufferPool::builder()
        .buffer_size(config.buffer_pool.buffer_size.as_usize())
        .max_pooled(config.buffer_pool.max_pooled)
        .build()
        .context("invalid [buffer_pool]")?;
    // A stream waits for its request at most 30 s, less if `[limits] idle_timeout` is shorter.
    let request_timeout = config.limits.idle_timeout.min(DEFAULT_REQUEST_TIMEOUT);
    let mut services = Services::builder(buffers)
        .request_timeout(request_timeout)
        .stream_window(config.transport.stream_window.as_u64())
        .observer(Arc::new(PrometheusObserver::new(&metrics)))
        .status_source(sessions.clone());
    if let Some(cache) = response_cache(&config.cache).context("invalid [cache]")? {
        services = services.cache(cache);
    }
    if let Some(root) = &args.root {
        services = services.root(root);
    }
    let services = Arc::new(services.build()?);
    register_stats(&metrics, &services);

    let observer = Arc::new(TransportObserver::new(&metrics));
    let server_config = server_config(&args, &config, observer)?;
    let addr = args.listen.unwrap_or(config.transport.listen);
    let listener = kwik_transport::listen(addr, &server_config)
        .with_context(|| format!("cannot listen on {addr}"))?;
    // Watch the signals before announcing the address: whoever reads the line may signal at once.
    let mut signals = ShutdownSignals::new()?;
    // Scripts and tests read this line to find the ephemeral port.
    println!("listening on {}", listener.local_addr());
    info!(
        addr = %listener.local_addr(),
        root = ?args.root,
        secondaries = ?args.secondary,
        "kwik serve started"
    );

    let stop = CancellationToken::new();
    let streams = TaskTracker::new();
    let session_tasks = TaskTracker::new();
    tokio::select! {
        () = accept_sessions(&listener, &sessions, &services, &cluster, &stop, &streams, &session_tasks) => {}
        signal = signals.recv() => info!(signal = signal?, "stopping: no new sessions or streams"),
    }

    // Drain: refuse new connections and streams, let the streams in flight finish. A finished
    // stream's last bytes may still be in flight, so the sessions are then left to their clients
    // to close; whatever is still open at the deadline is closed.
    let timeout = config.worker_pool.shutdown_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    listener.endpoint().set_server_config(None);
    stop.cancel();
    session_tasks.close();
    session_tasks.wait().await;
    streams.close();
    if tokio::time::timeout_at(deadline, streams.wait())
        .await
        .is_err()
    {
        warn!(
            unfinished = streams.len(),
            ?timeout,
            "streams still running after worker_pool.shutdown_timeout; closing them"
        );
    } else if tokio::time::timeout_at(deadline, sessions.all_closed())
        .await
        .is_err()
    {
        info!(
            ?timeout,
            "sessions still open after worker_pool.shutdown_timeout; closing them"
        );
    }
    sessions.close_all();
    // A closing session sends CLOSE on each path and lingers until the client acknowledged it
    // (the transport waits up to 2 s). Closing the endpoint at once would discard a CLOSE not
    // yet delivered, and a client that then also misses the QUIC CONNECTION_CLOSE (one packet,
    // never repeated once this process is gone) would only notice at its idle timeout.
    if tokio::time::timeout(CLOSE_GRACE, sessions.all_closed())
        .await
        .is_err()
    {
        debug!("sessions still closing after the grace period; closing the endpoint");
    }
    listener.close(ErrorCode::NO_ERROR, "server shutting down");
    listener.closed().await;
    if let Some(server) = metrics_server {
        server
            .shutdown()
            .await
            .context("metrics endpoint shutdown")?;
    }
    #[cfg(feature = "profiling")]
    if let Some(server) = profiling {
        server
            .shutdown()
            .await
            .context("profiling endpoint shutdown")?;
    }
    info!("kwik serve stopped");
    Ok(())
}

/// Starts the pprof endpoint when `[profiling] enabled`.
#[cfg(feature = "profiling")]
async fn start_profiling(
    config: &PerformanceConfig,
) -> anyhow::Result<Option<kwik_metrics::ProfilingServer>> {
    let profiling = &config.profiling;
    if !profiling.enabled {
        return Ok(None);
    }
    let mut addr = profiling.listen;
    if let Some(port) = profiling.pprof_port {
        addr.set_port(port);
    }
    let server = kwik_metrics::ProfilingServer::builder()
        .addr(addr)
        .frequency(profiling.sample_rate)
        .start()
        .await
        .context("cannot start the profiling endpoint")?;
    println!(
        "profiling on http://{}/debug/pprof/profile",
        server.local_addr()
    );
    Ok(Some(server))
}

/// Accepts sessions until the listener closes; each session's streams are served in `streams`.
/// A session a client opened to this server (not one it opened as someone's secondary) is
/// given paths to the secondaries of `cluster`.
async fn accept_sessions(
    listener: &Listener,
    sessions: &Arc<Sessions>,
    services: &Arc<Services>,
    cluster: &Arc<Cluster>,
    stop: &CancellationToken,
    streams: &TaskTracker,
    session_tasks: &TaskTracker,
) {
    while let Some(session) = listener.accept().await {
        let secondaries = (!cluster.is_empty() && !is_secondary_session(&session))
            .then(|| Secondaries::start(cluster.clone(), session.clone(), stop, session_tasks));
        let id = sessions.add(session.clone(), secondaries.clone());
        debug!(id, remote = ?session.remote_address(), "session accepted");
        let sessions = sessions.clone();
        let services = services.clone();
        let stop = stop.clone();
        let streams = streams.clone();
        session_tasks.spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = stop.cancelled() => break,
                    stream = session.accept_stream() => stream,
                };
                let Ok(stream) = stream else { break };
                let services = services.clone();
                let secondaries = secondaries.clone();
                let session = session.clone();
                streams.spawn(async move {
                    match serve_stream(&services, stream, secondaries.as_deref()).await {
                        Ok(()) => {}
                        Err(ServeError::PartRefused(err)) => {
                            warn!(error = %err, "refused a relayed part; closing its session");
                            session.close(PART_REFUSED, &format!("part refused: {err}"));
                        }
                        Err(err) => debug!(error = %err, "stream ended with an error"),
                    }
                });
            }
            // A stopped session stays open until the server closes it after the drain.
            if !stop.is_cancelled() {
                sessions.remove(id);
                debug!(id, "session closed");
            }
        });
    }
}

/// SIGINT and SIGTERM, watched from creation on: a signal that arrives before anyone awaits
/// [`ShutdownSignals::recv`] is still seen (instead of killing the process).
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for the next signal; returns its name.
    async fn recv(&mut self) -> anyhow::Result<&'static str> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Ok("SIGINT"),
                _ = self.terminate.recv() => Ok("SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .context("cannot watch Ctrl-C")?;
            Ok("SIGINT")
        }
    }
}

/// The transport's server configuration from `[transport]` and the TLS flags.
fn server_config(
    args: &ServeArgs,
    config: &PerformanceConfig,
    observer: Arc<dyn kwik_transport::Observer>,
) -> anyhow::Result<ServerConfig> {
    let transport = &config.transport;
    let mut builder = ServerConfig::builder()
        .observer(observer)
        .alpn([transport.alpn.as_bytes().to_vec()])
        .max_packet_size(transport.max_packet_size.as_usize())
        .read_buffer(transport.read_buffer.as_usize())
        .stream_window(transport.stream_window.as_u64())
        .socket_buffer(transport.socket_buffer.as_usize())
        .max_streams(u64::from(transport.max_streams))
        .max_paths_per_session(transport.max_paths_per_session)
        .keep_alive(Some(transport.keep_alive).filter(|d| !d.is_zero()))
        .idle_timeout(transport.idle_timeout)
        .handshake_timeout(transport.handshake_timeout);
    match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let (chain, key) = load_pem(cert, key)?;
            builder = builder.certificate(chain, key);
        }
        _ => {
            warn!("serving with a throw-away self-signed certificate (--insecure-dev-self-signed)");
            builder = builder.insecure_dev_self_signed(true);
        }
    }
    builder
        .build()
        .context("invalid [transport] or certificate")
}

fn load_pem(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let pem = std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("no valid certificate in {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let pem = std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .with_context(|| format!("no valid private key in {}", key.display()))?;
    Ok((chain, key))
}

/// Whether `session` is a path that a client added to another server's session at that
/// server's request: its path id, chosen by the client, is not 0 (docs/protocol.md §10).
fn is_secondary_session(session: &Session) -> bool {
    session.paths().first().is_some_and(|path| path.id != 0)
}

/// The sessions being served, for `/api/status` and for closing them at shutdown.
struct Sessions {
    cluster: Arc<Cluster>,
    inner: Mutex<SessionTable>,
}

#[derive(Default)]
struct SessionTable {
    next_id: u64,
    live: Vec<LiveSession>,
}

struct LiveSession {
    id: u64,
    session: Session,
    secondaries: Option<Arc<Secondaries>>,
}

impl Sessions {
    fn new(cluster: Arc<Cluster>) -> Self {
        Self {
            cluster,
            inner: Mutex::default(),
        }
    }

    fn add(&self, session: Session, secondaries: Option<Arc<Secondaries>>) -> u64 {
        let mut table = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let id = table.next_id;
        table.next_id += 1;
        table.live.push(LiveSession {
            id,
            session,
            secondaries,
        });
        id
    }

    fn remove(&self, id: u64) {
        let mut table = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        table.live.retain(|live| live.id != id);
    }

    fn close_all(&self) {
        let table = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for live in &table.live {
            live.session
                .close(ErrorCode::NO_ERROR, "server shutting down");
        }
    }

    /// Waits until every session is closed (by its client or by an error).
    async fn all_closed(&self) {
        for session in self.snapshot() {
            session.closed().await;
        }
    }

    fn snapshot(&self) -> Vec<Session> {
        let table = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        table.live.iter().map(|live| live.session.clone()).collect()
    }
}

impl StatusSource for Sessions {
    fn runtime_status(&self) -> RuntimeStatus {
        let (sessions, secondaries): (Vec<Session>, Vec<Arc<Secondaries>>) = {
            let table = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            (
                table.live.iter().map(|live| live.session.clone()).collect(),
                table
                    .live
                    .iter()
                    .filter_map(|live| live.secondaries.clone())
                    .collect(),
            )
        };
        let secondaries = if self.cluster.is_empty() {
            Vec::new()
        } else {
            self.cluster.status(secondaries.iter().map(Arc::as_ref))
        };
        let own_paths: u64 = sessions.iter().map(|s| s.paths().len() as u64).sum();
        RuntimeStatus {
            sessions: sessions.len() as u64,
            streams: sessions.iter().map(|s| s.stats().streams_active).sum(),
            paths: own_paths + secondaries.iter().map(|s| s.live).sum::<u64>(),
            secondary_sessions: sessions.iter().filter(|s| is_secondary_session(s)).count() as u64,
            secondaries,
        }
    }
}
