//! Registering catalogue families with a prometheus [`Registry`].

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::families::Family;

fn opts(family: &Family) -> Opts {
    Opts::new(family.name, family.help)
}

/// Bucket layout of a histogram family: `(start, factor, count)` exponential buckets.
pub(crate) type Buckets = (f64, f64, usize);

fn histogram_opts(
    family: &Family,
    (start, factor, count): Buckets,
) -> prometheus::Result<HistogramOpts> {
    let buckets = prometheus::exponential_buckets(start, factor, count)?;
    Ok(HistogramOpts::new(family.name, family.help).buckets(buckets))
}

pub(crate) fn int_counter(registry: &Registry, family: &Family) -> prometheus::Result<IntCounter> {
    let metric = IntCounter::with_opts(opts(family))?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

pub(crate) fn int_gauge(registry: &Registry, family: &Family) -> prometheus::Result<IntGauge> {
    let metric = IntGauge::with_opts(opts(family))?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

pub(crate) fn int_counter_vec(
    registry: &Registry,
    family: &Family,
) -> prometheus::Result<IntCounterVec> {
    let metric = IntCounterVec::new(opts(family), family.labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

pub(crate) fn int_gauge_vec(
    registry: &Registry,
    family: &Family,
) -> prometheus::Result<IntGaugeVec> {
    let metric = IntGaugeVec::new(opts(family), family.labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

pub(crate) fn histogram(
    registry: &Registry,
    family: &Family,
    buckets: Buckets,
) -> prometheus::Result<Histogram> {
    let metric = Histogram::with_opts(histogram_opts(family, buckets)?)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

pub(crate) fn histogram_vec(
    registry: &Registry,
    family: &Family,
    buckets: Buckets,
) -> prometheus::Result<HistogramVec> {
    let metric = HistogramVec::new(histogram_opts(family, buckets)?, family.labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}
