//! Per-route request accounting: a fixed set of routes (so a client sending arbitrary paths
//! cannot grow the number of series), built-in counters for `/api/status`, and a seam through
//! which the binary feeds the same events to Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// The routes of the HTTP service, the label set of the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Route {
    /// `/`: a short text.
    Index,
    /// `/api/status`: the JSON status snapshot.
    Status,
    /// `/api/echo`: echoes the request body.
    Echo,
    /// Any other path: a static file under the root (404 when there is none).
    Static,
    /// Requests refused before routing (malformed, too large, unsupported encoding).
    Invalid,
}

impl Route {
    /// Every route, in the order of [`Route::index`].
    pub(crate) const ALL: [Self; 5] = [
        Self::Index,
        Self::Status,
        Self::Echo,
        Self::Static,
        Self::Invalid,
    ];

    /// The route's label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Index => "/",
            Self::Status => "/api/status",
            Self::Echo => "/api/echo",
            Self::Static => "static",
            Self::Invalid => "invalid",
        }
    }

    /// Position in [`Route::ALL`], for per-route arrays.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// Receives one event per answered HTTP request. The binary plugs Prometheus in here; the
/// services themselves only know this trait.
pub(crate) trait RequestObserver: Send + Sync + 'static {
    /// `route` answered in `elapsed`; `ok` is false for a 4xx or 5xx status.
    fn observe(&self, route: Route, elapsed: Duration, ok: bool);
}

/// Lock-free request and error counts per route, always kept (they feed `/api/status`).
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    requests: [AtomicU64; Route::ALL.len()],
    errors: [AtomicU64; Route::ALL.len()],
}

impl RouteCounters {
    /// A snapshot of every route's counts.
    pub(crate) fn snapshot(&self) -> Vec<RouteCount> {
        Route::ALL
            .iter()
            .map(|&route| RouteCount {
                route: route.as_str(),
                requests: self.requests[route.index()].load(Ordering::Relaxed),
                errors: self.errors[route.index()].load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl RequestObserver for RouteCounters {
    fn observe(&self, route: Route, _elapsed: Duration, ok: bool) {
        self.requests[route.index()].fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors[route.index()].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One route's counts in the status snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RouteCount {
    /// The route label.
    pub(crate) route: &'static str,
    /// Requests answered.
    pub(crate) requests: u64,
    /// Requests answered with a 4xx or 5xx status.
    pub(crate) errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_all() {
        for (i, route) in Route::ALL.iter().enumerate() {
            assert_eq!(route.index(), i);
        }
    }

    #[test]
    fn counters_count_requests_and_errors_per_route() {
        let counters = RouteCounters::default();
        counters.observe(Route::Echo, Duration::ZERO, true);
        counters.observe(Route::Echo, Duration::ZERO, false);
        counters.observe(Route::Index, Duration::ZERO, true);
        let snapshot = counters.snapshot();
        let echo = snapshot.iter().find(|c| c.route == "/api/echo").unwrap();
        assert_eq!((echo.requests, echo.errors), (2, 1));
        let index = snapshot.iter().find(|c| c.route == "/").unwrap();
        assert_eq!((index.requests, index.errors), (1, 0));
    }
}
