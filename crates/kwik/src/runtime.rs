//! [`Runtime`]: every component built from one `performance.toml`, and the sessions wired to
//! them.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kwik_buffer::BufferPool;
use kwik_config::{Dispatch, Overflow, PerformanceConfig};
use kwik_pool::{ShutdownReport, WorkerPool};
use kwik_transport::{
    ClientConfig, Executor, InlineExecutor, Observer, ServerConfig, SpawnExecutor,
};
use tokio::task::JoinHandle;

use crate::error::{DialError, ListenError, RuntimeError};
use crate::executor::PoolExecutor;
use crate::session::{Listener, Session};
use crate::tls::{Identity, Trust};

/// Applies the `[transport]` section and the runtime's executor, buffer pool and observer to a
/// client or server builder (they share these setters).
macro_rules! transport_settings {
    ($builder:expr, $runtime:expr) => {{
        let inner = &$runtime.inner;
        let section = &inner.config.transport;
        let mut builder = $builder
            .alpn([section.alpn.as_bytes().to_vec()])
            .max_packet_size(section.max_packet_size.as_usize())
            .read_buffer(section.read_buffer.as_usize())
            .stream_window(section.stream_window.as_u64())
            .max_streams(u64::from(section.max_streams))
            .max_paths_per_session(section.max_paths_per_session)
            .keep_alive((!section.keep_alive.is_zero()).then_some(section.keep_alive))
            .idle_timeout(section.idle_timeout)
            .handshake_timeout(section.handshake_timeout)
            .socket_buffer(section.socket_buffer.as_usize())
            .executor(Arc::clone(&inner.executor))
            .buffer_pool(inner.buffers.clone());
        if let Some(observer) = &inner.observer {
            builder = builder.observer(Arc::clone(observer));
        }
        builder
    }};
}

/// Client configurations a runtime keeps (one per distinct [`Trust`]); a process dialing with
/// more trusts than this rebuilds the oldest, which only costs a new client endpoint.
const MAX_CLIENT_CONFIGS: usize = 16;

/// The cache a runtime builds from `[cache]`: bytes values (lz4-compressed above the
/// threshold) under string keys.
#[cfg(feature = "cache")]
pub type RuntimeCache = kwik_cache::BytesCache<String>;

/// kwik's components built from one [`PerformanceConfig`], and the sessions that use them.
///
/// [`from_config`](Self::from_config) builds the worker pool (`[worker_pool]`), the buffer pool
/// (`[buffer_pool]`), the cache (`[cache]`, with its sweep timer), the metrics registry and
/// endpoints (`[metrics]`, `[profiling]`) and maps `[transport]` onto the transport settings:
/// every session dialed or accepted through this runtime reads into the buffer pool and, with
/// `dispatch = "pool"`, has its packets decoded on the worker pool, ordered per path.
///
/// Cloning is cheap; clones share everything. [`shutdown`](Self::shutdown) stops it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kwik::config::PerformanceConfig;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = PerformanceConfig::default();
/// config.metrics.enabled = false;
/// let runtime = kwik::Runtime::from_config(&config).await?;
///
/// // Application jobs may share the pool the packets run on.
/// let answer = runtime.pool().submit("job", async { 6 * 7 }).await?.await?;
/// assert_eq!(answer, 42);
///
/// assert!(runtime.shutdown(Duration::from_secs(1)).await.is_complete());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    config: PerformanceConfig,
    pool: WorkerPool,
    buffers: BufferPool,
    executor: Arc<dyn Executor>,
    observer: Option<Arc<dyn Observer>>,
    #[cfg(feature = "cache")]
    cache: Option<Arc<RuntimeCache>>,
    #[cfg(feature = "metrics")]
    telemetry: Option<crate::telemetry::Telemetry>,
    /// Tasks the runtime owns (the cache sweep); aborted at shutdown.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Client configurations already built, per trust: sessions dialed with one configuration
    /// share its client endpoint (one UDP socket), so they are kept and reused.
    clients: Mutex<Vec<(Trust, ClientConfig)>>,
    /// Endpoints of the listeners, closed at shutdown.
    listeners: Mutex<Vec<quinn::Endpoint>>,
    shut_down: AtomicBool,
}

impl Runtime {
    /// Builds every component from `config` and starts the endpoints it enables.
    ///
    /// Must be called inside a tokio runtime (the pool's workers and the timers run on it).
    ///
    /// # Errors
    ///
    /// A [`RuntimeError`] naming the section a component rejected, or the endpoint that could
    /// not start.
    pub async fn from_config(config: &PerformanceConfig) -> Result<Self, RuntimeError> {
        config.validate()?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);

        #[cfg(feature = "metrics")]
        let telemetry = if config.metrics.enabled || config.profiling.enabled {
            Some(crate::telemetry::Telemetry::start(config).await?)
        } else {
            None
        };

        let section = &config.worker_pool;
        let mut pool = WorkerPool::builder()
            .workers(section.effective_size(cores))
            .queue_capacity(section.buffer_size)
            .overflow(match section.overflow {
                Overflow::Block => kwik_pool::Overflow::Block,
                Overflow::Reject => kwik_pool::Overflow::Reject,
            });
        if !section.worker_timeout.is_zero() {
            pool = pool.job_timeout(section.worker_timeout);
        }
        if section.max_queue_size != 0 {
            pool = pool.max_queued(section.max_queue_size);
        }
        #[cfg(feature = "metrics")]
        if let Some(telemetry) = &telemetry {
            pool = pool.observer(telemetry.pool_observer());
        }
        let pool = pool.build()?;

        let section = &config.buffer_pool;
        let buffers = BufferPool::builder()
            .buffer_size(section.buffer_size.as_usize())
            .max_pooled(section.max_pooled)
            .thread_cache(section.thread_cache)
            .build()?;

        #[cfg(feature = "cache")]
        let cache = build_cache(config)?;

        let executor: Arc<dyn Executor> = match config.transport.dispatch {
            Dispatch::Pool => Arc::new(PoolExecutor::new(pool.clone())),
            Dispatch::Inline => Arc::new(InlineExecutor),
            Dispatch::Spawn => Arc::new(SpawnExecutor),
        };
        #[cfg(feature = "metrics")]
        let observer = telemetry.as_ref().map(|t| t.transport_observer());
        #[cfg(not(feature = "metrics"))]
        let observer = None;

        #[cfg(feature = "cache")]
        let tasks: Vec<JoinHandle<()>> = cache
            .iter()
            .map(|cache| tokio::spawn(sweep(Arc::clone(cache), config.cache.cleanup_interval)))
            .collect();
        #[cfg(not(feature = "cache"))]
        let tasks: Vec<JoinHandle<()>> = Vec::new();

        let runtime = Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                pool,
                buffers,
                executor,
                observer,
                #[cfg(feature = "cache")]
                cache,
                #[cfg(feature = "metrics")]
                telemetry,
                tasks: Mutex::new(tasks),
                clients: Mutex::new(Vec::new()),
                listeners: Mutex::new(Vec::new()),
                shut_down: AtomicBool::new(false),
            }),
        };
        #[cfg(feature = "metrics")]
        if let Some(telemetry) = &runtime.inner.telemetry {
            telemetry.publish_stats(&runtime);
        }
        // Reject bad [transport] values now rather than at the first dial.
        runtime.client_config(&Trust::InsecureDevSkipVerification)?;
        Ok(runtime)
    }

    /// The configuration this runtime was built from.
    pub fn config(&self) -> &PerformanceConfig {
        &self.inner.config
    }

    /// The worker pool (`[worker_pool]`); with `dispatch = "pool"` it also runs the packets.
    pub fn pool(&self) -> &WorkerPool {
        &self.inner.pool
    }

    /// The buffer pool path readers read into (`[buffer_pool]`).
    pub fn buffers(&self) -> &BufferPool {
        &self.inner.buffers
    }

    /// The cache (`[cache]`), `None` when `enabled = false`.
    #[cfg(feature = "cache")]
    pub fn cache(&self) -> Option<&RuntimeCache> {
        self.inner.cache.as_deref()
    }

    /// A shared handle on the cache, to keep beyond the runtime's borrow.
    #[cfg(feature = "cache")]
    pub fn cache_handle(&self) -> Option<Arc<RuntimeCache>> {
        self.inner.cache.clone()
    }

    /// The metrics registry, `None` when `[metrics] enabled = false` (and profiling is off).
    #[cfg(feature = "metrics")]
    pub fn metrics(&self) -> Option<&kwik_metrics::Metrics> {
        self.inner.telemetry.as_ref().map(|t| t.metrics())
    }

    /// Where `/metrics` is served, when it is.
    #[cfg(feature = "metrics")]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.inner.telemetry.as_ref().and_then(|t| t.metrics_addr())
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::Acquire)
    }

    /// Dials a KWIK server at `addr`, trusting `trust`, with this runtime's settings.
    ///
    /// # Errors
    ///
    /// [`DialError::ShutDown`] after [`shutdown`](Self::shutdown); otherwise the TLS settings
    /// or the handshake failed.
    pub async fn dial(&self, addr: SocketAddr, trust: &Trust) -> Result<Session, DialError> {
        if self.is_shut_down() {
            return Err(DialError::ShutDown);
        }
        let config = self.shared_client_config(trust)?;
        let session = kwik_transport::dial(addr, &config).await?;
        Ok(Session::new(session, None))
    }

    /// Sets up now what the first dial to `addr` with `trust` would: the client configuration
    /// (TLS roots and transport settings) and the client endpoint, one UDP socket for `addr`'s
    /// address family, shared by every later dial with the same trust. Dials then pay for their
    /// handshakes only, e.g. when a crowd of sessions is opened at once or connect times are
    /// measured. Optional: without it the first dial does the same.
    ///
    /// # Errors
    ///
    /// [`DialError::ShutDown`] after [`shutdown`](Self::shutdown); [`DialError::Config`] for
    /// rejected TLS settings; [`DialError::Connect`] if the socket could not be bound.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let runtime = kwik::Runtime::from_config(&kwik::config::PerformanceConfig::default()).await?;
    /// let trust = kwik::Trust::InsecureDevSkipVerification;
    /// runtime.prepare_dial("127.0.0.1:4433".parse()?, &trust)?; // binds, sends nothing
    /// runtime.shutdown(std::time::Duration::from_secs(1)).await;
    /// # Ok(()) }
    /// ```
    pub fn prepare_dial(&self, addr: SocketAddr, trust: &Trust) -> Result<(), DialError> {
        if self.is_shut_down() {
            return Err(DialError::ShutDown);
        }
        let config = self.shared_client_config(trust)?;
        config
            .endpoint_for(addr)
            .map_err(kwik_transport::ConnectError::Bind)?;
        Ok(())
    }

    /// The client configuration for `trust`, built once and then reused, so that every session
    /// dialed with the same trust shares one client endpoint (one UDP socket and its buffers).
    fn shared_client_config(&self, trust: &Trust) -> Result<ClientConfig, DialError> {
        let mut clients = lock(&self.inner.clients);
        if let Some((_, config)) = clients.iter().find(|(t, _)| t == trust) {
            return Ok(config.clone());
        }
        let config = self.client_config(trust)?;
        if clients.len() == MAX_CLIENT_CONFIGS {
            clients.remove(0);
        }
        clients.push((trust.clone(), config.clone()));
        Ok(config)
    }

    /// Listens for KWIK sessions on `addr` (port 0 picks a free port), presenting `identity`.
    ///
    /// # Errors
    ///
    /// [`ListenError::ShutDown`] after [`shutdown`](Self::shutdown); otherwise the certificate
    /// was rejected or the socket could not be bound.
    pub fn listen(&self, addr: SocketAddr, identity: &Identity) -> Result<Listener, ListenError> {
        if self.is_shut_down() {
            return Err(ListenError::ShutDown);
        }
        let config = self.server_config(identity)?;
        let listener = kwik_transport::listen(addr, &config)?;
        lock(&self.inner.listeners).push(listener.endpoint().clone());
        Ok(Listener::new(listener, None))
    }

    /// The transport client settings: `[transport]`, the executor chosen by `dispatch`, the
    /// buffer pool, the metrics observer, and `trust`.
    ///
    /// # Errors
    ///
    /// The transport rejected a value.
    pub fn client_config(
        &self,
        trust: &Trust,
    ) -> Result<ClientConfig, kwik_transport::ConfigError> {
        let mut builder = transport_settings!(ClientConfig::builder(), self);
        match trust {
            Trust::Roots { roots, server_name } => {
                for root in roots {
                    builder = builder.add_root_certificate(root.clone());
                }
                if let Some(name) = server_name {
                    builder = builder.server_name(name.clone());
                }
            }
            Trust::InsecureDevSkipVerification => {
                builder = builder.insecure_dev_skip_verification(true);
            }
        }
        builder.build()
    }

    /// The transport server settings: as [`client_config`](Self::client_config), with
    /// `identity`.
    ///
    /// # Errors
    ///
    /// The transport rejected a value or the certificate.
    pub fn server_config(
        &self,
        identity: &Identity,
    ) -> Result<ServerConfig, kwik_transport::ConfigError> {
        let builder = transport_settings!(ServerConfig::builder(), self);
        match identity {
            Identity::Certificate { chain, key } => {
                builder.certificate(chain.clone(), key.clone_key())
            }
            Identity::InsecureDevSelfSigned => builder.insecure_dev_self_signed(true),
        }
        .build()
    }

    /// Stops the runtime: refuses new dials and listens, closes the listeners' endpoints,
    /// drains the worker pool within `deadline` (sessions still open then see their paths fail),
    /// stops the cache sweep and the metrics endpoints.
    ///
    /// Only the first call does the work; later calls return an empty report at once.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        if self.inner.shut_down.swap(true, Ordering::AcqRel) {
            return ShutdownReport::default();
        }
        for endpoint in lock(&self.inner.listeners).drain(..) {
            endpoint.close(quinn::VarInt::from_u32(0), b"runtime shut down");
        }
        let report = self.inner.pool.shutdown(deadline).await;
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
        #[cfg(feature = "metrics")]
        if let Some(telemetry) = &self.inner.telemetry {
            telemetry.shutdown().await;
        }
        report
    }

    /// Shutdown from a synchronous context (a `Drop`): on the current tokio runtime when there
    /// is one, else an immediate abort of the pool.
    pub(crate) fn shutdown_in_background(&self) {
        let deadline = self.inner.config.worker_pool.shutdown_timeout;
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let runtime = self.clone();
                drop(handle.spawn(async move {
                    runtime.shutdown(deadline).await;
                }));
            }
            Err(_) => {
                self.inner.shut_down.store(true, Ordering::Release);
                self.inner.pool.abort();
                for task in lock(&self.inner.tasks).drain(..) {
                    task.abort();
                }
            }
        }
    }
}

#[cfg(feature = "cache")]
fn build_cache(config: &PerformanceConfig) -> Result<Option<Arc<RuntimeCache>>, RuntimeError> {
    let section = &config.cache;
    if !section.enabled {
        return Ok(None);
    }
    let mut builder = RuntimeCache::builder()
        .capacity(section.capacity)
        .ttl(section.ttl)
        .compression_threshold(if section.compression {
            section.compression_threshold.as_usize()
        } else {
            // Nothing is ever this large: compression off.
            usize::MAX
        });
    if !section.max_bytes.is_zero() {
        builder = builder.max_weight(section.max_bytes.as_u64());
    }
    if section.shards != 0 {
        builder = builder.shards(section.shards);
    }
    Ok(Some(Arc::new(builder.build()?)))
}

/// Removes expired entries every `interval` (the first sweep one interval after start).
#[cfg(feature = "cache")]
async fn sweep(cache: Arc<RuntimeCache>, interval: Duration) {
    let start = tokio::time::Instant::now() + interval;
    let mut ticks = tokio::time::interval_at(start, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let removed = cache.run_pending_tasks();
        tracing::trace!(removed, "kwik cache sweep");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded vectors stay consistent whatever panicked while holding them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("pool", &self.inner.pool.stats())
            .field("buffers", &self.inner.buffers.stats())
            .field("dispatch", &self.inner.config.transport.dispatch)
            .field("shut_down", &self.is_shut_down())
            .finish_non_exhaustive()
    }
}
