//! The facade's errors: building a runtime, dialing, listening.

/// Why [`Runtime::from_config`](crate::Runtime::from_config) could not build a runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The configuration file or an environment override was rejected.
    #[error("invalid configuration")]
    Config(#[from] kwik_config::ConfigError),
    /// `[worker_pool]` was rejected by the pool (or no tokio runtime is running).
    #[error("cannot build the worker pool")]
    Pool(#[from] kwik_pool::BuildError),
    /// `[buffer_pool]` was rejected by the buffer pool.
    #[error("cannot build the buffer pool")]
    Buffer(#[from] kwik_buffer::BuildError),
    /// `[cache]` was rejected by the cache.
    #[cfg(feature = "cache")]
    #[error("cannot build the cache")]
    Cache(#[from] kwik_cache::BuildError),
    /// `[transport]` was rejected by the transport.
    #[error("invalid transport settings")]
    Transport(#[from] kwik_transport::ConfigError),
    /// The metrics registry could not be built.
    #[cfg(feature = "metrics")]
    #[error("cannot build the metrics registry")]
    Metrics(#[from] kwik_metrics::BuildError),
    /// The `/metrics` or profiling endpoint could not start (address in use, ...).
    #[cfg(feature = "metrics")]
    #[error("cannot start the metrics endpoint")]
    MetricsServer(#[from] kwik_metrics::StartError),
}

/// Why [`Runtime::dial`](crate::Runtime::dial) or [`dial_addr`](crate::dial_addr) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The runtime was shut down.
    #[error("the kwik runtime is shut down")]
    ShutDown,
    /// The process-wide runtime could not be created.
    #[error("cannot create the kwik runtime")]
    Runtime(#[from] RuntimeError),
    /// The TLS trust settings were rejected.
    #[error("invalid client settings")]
    Config(#[from] kwik_transport::ConfigError),
    /// The handshake failed.
    #[error("cannot connect")]
    Connect(#[from] kwik_transport::ConnectError),
}

/// Why [`Runtime::listen`](crate::Runtime::listen) or [`listen_addr`](crate::listen_addr) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The runtime was shut down.
    #[error("the kwik runtime is shut down")]
    ShutDown,
    /// The process-wide runtime could not be created.
    #[error("cannot create the kwik runtime")]
    Runtime(#[from] RuntimeError),
    /// The certificate settings were rejected.
    #[error("invalid server settings")]
    Config(#[from] kwik_transport::ConfigError),
    /// The socket could not be bound.
    #[error("cannot listen")]
    Listen(#[from] kwik_transport::ListenError),
}
