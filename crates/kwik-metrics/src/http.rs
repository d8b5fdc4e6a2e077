//! The small HTTP/1.1 server under [`MetricsServer`](crate::MetricsServer) and the profiling
//! server: an accept loop on tokio, hyper connections, graceful shutdown with a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Pause after a failed `accept` (typically EMFILE): retrying at once would spin on the error
/// while the process is out of descriptors.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Binding the listening socket failed (address in use, permission denied, ...).
    #[error("binding {addr} failed")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Reading back the bound address failed.
    #[error("reading the bound address failed")]
    LocalAddr(#[source] io::Error),
    /// A configuration value was out of range.
    #[error("invalid server configuration: {0}")]
    InvalidConfig(&'static str),
}

/// Why a shutdown was not clean.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Some connections were still busy when the shutdown timeout expired and were aborted.
    #[error("{connections} connection(s) still busy after the shutdown timeout were aborted")]
    Forced {
        /// How many connections were aborted.
        connections: usize,
    },
    /// The server task panicked.
    #[error("the server task panicked")]
    Panicked,
}

/// The response body type of every handler.
pub(crate) type Body = Full<Bytes>;

/// A response with `status`, `content_type` and `body`.
pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", body)
}

/// Tells handlers the server is stopping, so long requests (profiles) can end early.
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "profiling"), allow(dead_code))] // only profiles run long enough to care
pub(crate) struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Resolves once shutdown has been requested.
    #[cfg_attr(not(feature = "profiling"), allow(dead_code))]
    pub(crate) async fn wait(mut self) {
        Self::wait_on(&mut self.0).await;
    }

    async fn wait_on(receiver: &mut watch::Receiver<bool>) {
        // An error means the server is gone, which is also a stop. The returned guard is
        // dropped here so that callers' futures stay `Send`.
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }
}

/// A running accept loop.
#[derive(Debug)]
pub(crate) struct HttpServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<usize>>,
}

impl HttpServer {
    /// Binds `addr` and serves every connection with `handler` on the current runtime.
    pub(crate) async fn start<H, F>(
        addr: SocketAddr,
        shutdown_timeout: Duration,
        handler: H,
    ) -> Result<Self, StartError>
    where
        H: Fn(Request<Incoming>, Stopping) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(StartError::LocalAddr)?;
        let (stop, stopping) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::new(handler),
            stopping,
            shutdown_timeout,
        ));
        Ok(Self {
            local_addr,
            stop,
            task: Some(task),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets in-flight requests finish within the shutdown timeout, aborts the
    /// rest, and waits for every connection task.
    pub(crate) async fn shutdown(mut self) -> Result<(), ShutdownError> {
        let _ = self.stop.send(true);
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(0) => Ok(()),
            Ok(connections) => Err(ShutdownError::Forced { connections }),
            Err(_) => Err(ShutdownError::Panicked),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        // Dropped without `shutdown`: stop at once. Aborting the accept loop drops its JoinSet,
        // which aborts every connection task.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop<H, F>(
    listener: TcpListener,
    handler: Arc<H>,
    mut stopping: watch::Receiver<bool>,
    shutdown_timeout: Duration,
) -> usize
where
    H: Fn(Request<Incoming>, Stopping) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    // Handed to every request; `stopping` itself is borrowed by the select below.
    let signal = Stopping(stopping.clone());
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let handler = Arc::clone(&handler);
                    let signal = signal.clone();
                    let service = hyper::service::service_fn(move |request| {
                        let response = handler(request, signal.clone());
                        async move { Ok::<_, Infallible>(response.await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "metrics connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a metrics connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow with the server's lifetime.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = Stopping::wait_on(&mut stopping) => break,
        }
    }
    drop(listener);
    let forced = match tokio::time::timeout(shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => 0,
        Err(_) => {
            while connections.try_join_next().is_some() {}
            connections.len()
        }
    };
    connections.shutdown().await;
    forced
}
