//! Tokio runtime metrics sampled at scrape time.

use parking_lot::RwLock;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use tokio::runtime::Handle;

use crate::families;
use crate::proto;

/// The collector for the `kwik_runtime_*` families.
///
/// It samples the runtime given to [`Metrics::set_runtime`](crate::Metrics::set_runtime), or else
/// the runtime the scrape runs on (the [`MetricsServer`](crate::MetricsServer)'s); with neither
/// it exports nothing rather than zeros that would read as "no workers".
pub(crate) struct RuntimeCollector {
    descs: Vec<Desc>,
    handle: RwLock<Option<Handle>>,
}

impl RuntimeCollector {
    pub(crate) fn new(handle: Option<Handle>) -> prometheus::Result<Self> {
        let descs = [
            families::RUNTIME_WORKERS,
            families::RUNTIME_ALIVE_TASKS,
            families::RUNTIME_GLOBAL_QUEUE_DEPTH,
        ]
        .iter()
        .map(proto::desc)
        .collect::<prometheus::Result<_>>()?;
        Ok(Self {
            descs,
            handle: RwLock::new(handle),
        })
    }

    pub(crate) fn set(&self, handle: Handle) {
        *self.handle.write() = Some(handle);
    }
}

impl Collector for RuntimeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let handle = self
            .handle
            .read()
            .clone()
            .or_else(|| Handle::try_current().ok());
        let Some(handle) = handle else {
            return Vec::new();
        };
        let m = handle.metrics();
        vec![
            proto::single(&families::RUNTIME_WORKERS, m.num_workers() as f64),
            proto::single(&families::RUNTIME_ALIVE_TASKS, m.num_alive_tasks() as f64),
            proto::single(
                &families::RUNTIME_GLOBAL_QUEUE_DEPTH,
                m.global_queue_depth() as f64,
            ),
        ]
    }
}
