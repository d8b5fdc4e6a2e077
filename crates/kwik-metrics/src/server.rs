//! [`MetricsServer`]: `GET /metrics` and `GET /health` over HTTP/1.1.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hyper::{Method, StatusCode};

use crate::http::{HttpServer, ShutdownError, StartError, response, text};
use crate::metrics::Metrics;

/// The default metrics address, the port the seeds use for Prometheus.
pub const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 2112);
/// Default grace period for in-flight requests at shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds and starts a [`MetricsServer`]; see [`MetricsServer::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MetricsServerBuilder {
    addr: SocketAddr,
    shutdown_timeout: Duration,
}

impl MetricsServerBuilder {
    /// The address to listen on. Port 0 picks a free port (read it back with
    /// [`MetricsServer::local_addr`]).
    ///
    /// Default: [`DEFAULT_METRICS_ADDR`] (127.0.0.1:2112).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// How long [`MetricsServer::shutdown`] lets in-flight requests finish before aborting them.
    ///
    /// Default: [`DEFAULT_SHUTDOWN_TIMEOUT`] (5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Binds the address and starts serving `metrics` on the current tokio runtime.
    pub async fn start(self, metrics: Metrics) -> Result<MetricsServer, StartError> {
        let http = HttpServer::start(self.addr, self.shutdown_timeout, move |request, _| {
            let metrics = metrics.clone();
            async move {
                if request.method() != Method::GET && request.method() != Method::HEAD {
                    return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
                }
                match request.uri().path() {
                    "/metrics" => match metrics.encode_text() {
                        Ok(body) => response(StatusCode::OK, Metrics::text_content_type(), body),
                        Err(error) => {
                            tracing::error!(%error, "encoding metrics failed");
                            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n"))
                        }
                    },
                    "/health" => text(StatusCode::OK, "ok\n"),
                    _ => text(
                        StatusCode::NOT_FOUND,
                        "not found; try /metrics or /health\n",
                    ),
                }
            }
        })
        .await?;
        tracing::info!(addr = %http.local_addr(), "metrics endpoint listening");
        Ok(MetricsServer { http })
    }
}

/// The HTTP endpoint Prometheus scrapes: `GET /metrics` (text exposition format) and
/// `GET /health` (`200 ok`).
///
/// Started explicitly with [`MetricsServer::builder`]`().start(metrics)` and stopped with
/// [`shutdown`](Self::shutdown), which lets in-flight scrapes finish. Dropping it without
/// `shutdown` stops it at once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kwik_metrics::{Metrics, MetricsServer};
///
/// let server = MetricsServer::builder()
///     .addr("127.0.0.1:0".parse()?)
///     .start(Metrics::new())
///     .await?;
/// println!("scrape http://{}/metrics", server.local_addr());
/// server.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct MetricsServer {
    http: HttpServer,
}

impl MetricsServer {
    /// A builder with the defaults (127.0.0.1:2112, 5 s shutdown timeout).
    pub fn builder() -> MetricsServerBuilder {
        MetricsServerBuilder {
            addr: DEFAULT_METRICS_ADDR,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }

    /// The address actually bound (the real port when the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Stops accepting connections, waits for in-flight requests up to the shutdown timeout,
    /// then aborts what is left.
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        self.http.shutdown().await
    }
}
