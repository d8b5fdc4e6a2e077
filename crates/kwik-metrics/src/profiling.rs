//! [`ProfilingServer`]: CPU profiles over HTTP (pprof-rs), like Go's `net/http/pprof`.
//!
//! `GET /debug/pprof/profile?seconds=N` samples every thread's stack for N seconds and answers
//! with a pprof protobuf (`go tool pprof` or `pprof -http` read it);
//! `GET /debug/pprof/flamegraph?seconds=N` answers the same samples as an SVG flamegraph. One
//! profile runs at a time: the CPU profiler is process-wide.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::{Method, StatusCode};

use crate::http::{HttpServer, ShutdownError, StartError, Stopping, response, text};
use crate::server::DEFAULT_SHUTDOWN_TIMEOUT;

/// The default profiling address, the port Go's pprof conventionally uses.
pub const DEFAULT_PROFILING_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 6060);
/// Default and upper bound of `seconds`.
pub const DEFAULT_MAX_PROFILE_SECONDS: u64 = 60;
/// `seconds` when the query does not give one (Go's default), capped at the maximum.
pub const DEFAULT_PROFILE_SECONDS: u64 = 30;
/// Default sampling frequency: 99 Hz rather than 100 so sampling does not run in lockstep with
/// periodic work (timers at 10 ms would always or never be caught).
pub const DEFAULT_FREQUENCY_HZ: u32 = 99;

/// Shared libraries whose frames are skipped while unwinding: unwinding through them from a
/// signal handler can deadlock or crash (pprof-rs' own recommendation).
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];

/// Builds and starts a [`ProfilingServer`]; see [`ProfilingServer::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ProfilingServerBuilder {
    addr: SocketAddr,
    max_seconds: u64,
    frequency: u32,
    shutdown_timeout: Duration,
}

impl ProfilingServerBuilder {
    /// The address to listen on; port 0 picks a free port.
    ///
    /// Default: [`DEFAULT_PROFILING_ADDR`] (127.0.0.1:6060).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The longest profile a request may ask for; a larger `seconds` is answered 400.
    ///
    /// Default: [`DEFAULT_MAX_PROFILE_SECONDS`] (60). Between 1 and 3600.
    pub fn max_seconds(mut self, max: u64) -> Self {
        self.max_seconds = max;
        self
    }

    /// Stack samples per second of CPU time.
    ///
    /// Default: [`DEFAULT_FREQUENCY_HZ`] (99). Between 1 and 1000.
    pub fn frequency(mut self, hz: u32) -> Self {
        self.frequency = hz;
        self
    }

    /// How long [`ProfilingServer::shutdown`] waits for in-flight requests. A running profile
    /// is cut short by the shutdown (answered 503), so this rarely matters.
    ///
    /// Default: 5 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Validates the configuration, binds the address and starts serving on the current tokio
    /// runtime.
    pub async fn start(self) -> Result<ProfilingServer, StartError> {
        if !(1..=3600).contains(&self.max_seconds) {
            return Err(StartError::InvalidConfig(
                "max_seconds must be between 1 and 3600",
            ));
        }
        if !(1..=1000).contains(&self.frequency) {
            return Err(StartError::InvalidConfig(
                "frequency must be between 1 and 1000 Hz",
            ));
        }
        let profiler = Arc::new(Profiler {
            busy: AtomicBool::new(false),
            max_seconds: self.max_seconds,
            // Checked above: at most 1000, which fits in a c_int.
            frequency: self.frequency as i32,
        });
        let state = Arc::clone(&profiler);
        let http = HttpServer::start(
            self.addr,
            self.shutdown_timeout,
            move |request, stopping| {
                let profiler = Arc::clone(&state);
                async move {
                    if request.method() != Method::GET {
                        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
                    }
                    let format = match request.uri().path() {
                        "/debug/pprof/profile" => Format::Pprof,
                        "/debug/pprof/flamegraph" => Format::Flamegraph,
                        "/debug/pprof" | "/debug/pprof/" => return text(StatusCode::OK, INDEX),
                        _ => return text(StatusCode::NOT_FOUND, "not found; try /debug/pprof/\n"),
                    };
                    match parse_seconds(request.uri().query(), profiler.max_seconds) {
                        Ok(seconds) => profiler.serve(format, seconds, stopping).await,
                        Err(reason) => text(StatusCode::BAD_REQUEST, reason),
                    }
                }
            },
        )
        .await?;
        tracing::info!(addr = %http.local_addr(), "profiling endpoint listening");
        Ok(ProfilingServer { http, profiler })
    }
}

const INDEX: &str = "kwik CPU profiling\n\
    /debug/pprof/profile?seconds=N     pprof protobuf (go tool pprof, pprof -http)\n\
    /debug/pprof/flamegraph?seconds=N  SVG flamegraph\n";

/// The profiling endpoint: `GET /debug/pprof/profile?seconds=N` (pprof protobuf) and
/// `GET /debug/pprof/flamegraph?seconds=N` (SVG).
///
/// A `seconds` that is not an integer in `1..=max_seconds` is answered `400` with the reason; a
/// request while another profile runs is answered `409`.
#[derive(Debug)]
pub struct ProfilingServer {
    http: HttpServer,
    profiler: Arc<Profiler>,
}

impl ProfilingServer {
    /// A builder with the defaults (127.0.0.1:6060, at most 60 s, 99 Hz).
    pub fn builder() -> ProfilingServerBuilder {
        ProfilingServerBuilder {
            addr: DEFAULT_PROFILING_ADDR,
            max_seconds: DEFAULT_MAX_PROFILE_SECONDS,
            frequency: DEFAULT_FREQUENCY_HZ,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Whether a profile is being taken right now.
    pub fn profile_in_progress(&self) -> bool {
        self.profiler.busy.load(Ordering::Acquire)
    }

    /// Stops the server; a running profile ends at once and is answered 503.
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        self.http.shutdown().await
    }
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Pprof,
    Flamegraph,
}

#[derive(Debug)]
struct Profiler {
    busy: AtomicBool,
    max_seconds: u64,
    frequency: i32,
}

/// Clears the busy flag when the profile ends, however it ends (including the client going
/// away, which drops the request future).
struct Slot<'a>(&'a AtomicBool);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[derive(Debug, thiserror::Error)]
enum ProfileError {
    #[error("a profile is already running; retry when it ends\n")]
    Busy,
    #[error("the server is shutting down\n")]
    Stopping,
    #[error("profiling failed: {0}\n")]
    Pprof(#[from] pprof::Error),
    #[error("encoding the flamegraph failed: {0}\n")]
    Flamegraph(String),
}

impl Profiler {
    async fn serve(
        &self,
        format: Format,
        seconds: u64,
        stopping: Stopping,
    ) -> hyper::Response<crate::http::Body> {
        let result = self.profile(format, seconds, stopping).await;
        match result {
            Ok((content_type, body)) => response(StatusCode::OK, content_type, body),
            Err(error) => {
                let status = match error {
                    ProfileError::Busy => StatusCode::CONFLICT,
                    ProfileError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
                    ProfileError::Pprof(_) | ProfileError::Flamegraph(_) => {
                        tracing::warn!(%error, "profile failed");
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                };
                text(status, error.to_string())
            }
        }
    }

    async fn profile(
        &self,
        format: Format,
        seconds: u64,
        stopping: Stopping,
    ) -> Result<(&'static str, Vec<u8>), ProfileError> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(ProfileError::Busy);
        }
        let _slot = Slot(&self.busy);
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(self.frequency)
            .blocklist(BLOCKLIST)
            .build()
            .map_err(|e| match e {
                // Someone else in the process holds pprof's profiler.
                pprof::Error::Running => ProfileError::Busy,
                other => ProfileError::Pprof(other),
            })?;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
            () = stopping.wait() => return Err(ProfileError::Stopping),
        }
        let report = guard.report().build()?;
        drop(guard);
        match format {
            Format::Pprof => {
                use pprof::protos::Message;
                Ok(("application/octet-stream", report.pprof()?.encode_to_vec()))
            }
            Format::Flamegraph => {
                let mut svg = Vec::new();
                report
                    .flamegraph(&mut svg)
                    .map_err(|e| ProfileError::Flamegraph(e.to_string()))?;
                Ok(("image/svg+xml", svg))
            }
        }
    }
}

/// Reads `seconds` from a query string: absent → the default (capped at `max`), otherwise an
/// integer in `1..=max`. The error is the reason sent back with the 400.
fn parse_seconds(query: Option<&str>, max: u64) -> Result<u64, String> {
    let value = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("seconds="));
    let Some(value) = value else {
        return Ok(DEFAULT_PROFILE_SECONDS.min(max));
    };
    match value.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "seconds must be an integer between 1 and {max}, got {value:?}\n"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_parsed_and_bounded() {
        assert_eq!(parse_seconds(None, 60), Ok(30));
        assert_eq!(parse_seconds(Some("debug=1"), 10), Ok(10));
        assert_eq!(parse_seconds(Some("seconds=1"), 60), Ok(1));
        assert_eq!(parse_seconds(Some("x=y&seconds=60"), 60), Ok(60));
        for bad in [
            "seconds=0",
            "seconds=61",
            "seconds=-1",
            "seconds=abc",
            "seconds=",
            "seconds=1.5",
        ] {
            let reason = parse_seconds(Some(bad), 60).unwrap_err();
            assert!(reason.contains("between 1 and 60"), "{bad}: {reason}");
        }
    }
}
