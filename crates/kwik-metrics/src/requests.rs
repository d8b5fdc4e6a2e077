//! Handles for the per-route request families (seed 002's request histogram by endpoint).

use std::time::Duration;

use prometheus::{Histogram, IntCounter, Registry};

use crate::families;
use crate::registry::{Buckets, histogram_vec, int_counter_vec};

/// Buckets of `kwik_request_duration_seconds`: 100 µs doubling to ~6.5 s.
const REQUEST_BUCKETS: Buckets = (0.000_1, 2.0, 17);

/// The route label that collects requests on routes not declared at build time, so that a
/// client sending arbitrary paths cannot grow the number of series without bound.
pub const OTHER_ROUTE: &str = "other";

/// Handles for one route: its request counter, error counter and duration histogram.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    requests: IntCounter,
    errors: IntCounter,
    duration_seconds: Histogram,
}

impl RouteMetrics {
    /// Records one finished request: counts it, counts it as an error when `ok` is false and
    /// records its duration.
    pub fn observe(&self, elapsed: Duration, ok: bool) {
        self.requests.inc();
        if !ok {
            self.errors.inc();
        }
        self.duration_seconds.observe(elapsed.as_secs_f64());
    }

    /// `kwik_requests_total{route}`.
    pub fn requests(&self) -> &IntCounter {
        &self.requests
    }

    /// `kwik_request_errors_total{route}`.
    pub fn errors(&self) -> &IntCounter {
        &self.errors
    }

    /// `kwik_request_duration_seconds{route}`.
    pub fn duration_seconds(&self) -> &Histogram {
        &self.duration_seconds
    }
}

/// Per-route handles for the routes declared with
/// [`MetricsBuilder::routes`](crate::MetricsBuilder::routes), plus [`OTHER_ROUTE`].
///
/// Obtain it with [`Metrics::requests`](crate::Metrics::requests).
#[derive(Clone, Debug)]
pub struct RequestMetrics {
    routes: Vec<(String, RouteMetrics)>,
    other: RouteMetrics,
}

impl RequestMetrics {
    pub(crate) fn register(registry: &Registry, routes: &[String]) -> prometheus::Result<Self> {
        let requests = int_counter_vec(registry, &families::REQUESTS)?;
        let errors = int_counter_vec(registry, &families::REQUEST_ERRORS)?;
        let durations = histogram_vec(registry, &families::REQUEST_DURATION, REQUEST_BUCKETS)?;
        let resolve = |route: &str| RouteMetrics {
            requests: requests.with_label_values(&[route]),
            errors: errors.with_label_values(&[route]),
            duration_seconds: durations.with_label_values(&[route]),
        };
        Ok(Self {
            routes: routes.iter().map(|r| (r.clone(), resolve(r))).collect(),
            other: resolve(OTHER_ROUTE),
        })
    }

    /// The handles of `route`, or those of [`OTHER_ROUTE`] when `route` was not declared.
    ///
    /// This compares strings: call it once per route when wiring a handler and keep the
    /// returned handle (it is cheap to clone), not on every request.
    pub fn route(&self, route: &str) -> &RouteMetrics {
        self.routes
            .iter()
            .find(|(name, _)| name == route)
            .map_or(&self.other, |(_, m)| m)
    }

    /// The declared route names, in declaration order ([`OTHER_ROUTE`] excluded).
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|(name, _)| name.as_str())
    }
}
