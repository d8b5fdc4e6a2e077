//! Process readings (from kwik-metrics: CPU time, resident set size and its peak) and the
//! windows and samplers the report is built from.
//!
//! Every figure `kwik loadtest` prints about the process comes from here, read from the kernel,
//! never estimated.

use std::time::Instant;

pub(crate) use kwik_metrics::process::{
    cpu_seconds, current_rss_bytes, peak_rss_bytes, reset_peak_rss,
};

/// CPU use of the whole process over a window: started with [`CpuWindow::start`], read with
/// [`CpuWindow::percent`] (100% = one core busy for the whole window).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuWindow {
    wall: Instant,
    cpu: Option<f64>,
}

impl CpuWindow {
    pub(crate) fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    /// Percent of one core used since `start`; 0 where `/proc` is unavailable.
    pub(crate) fn percent(&self) -> f64 {
        let wall = self.wall.elapsed().as_secs_f64();
        match (self.cpu, cpu_seconds()) {
            (Some(before), Some(now)) if wall > 0.0 => (now - before) / wall * 100.0,
            _ => 0.0,
        }
    }
}

/// The highest RSS seen by a sampler, for kernels that refuse [`reset_peak_rss`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PeakTracker {
    sampled: u64,
    watermark_reset: bool,
}

impl PeakTracker {
    /// Resets the kernel watermark (when allowed) and starts sampling from the current RSS.
    pub(crate) fn start() -> Self {
        let watermark_reset = reset_peak_rss();
        Self {
            sampled: current_rss_bytes().unwrap_or(0),
            watermark_reset,
        }
    }

    pub(crate) fn sample(&mut self) {
        if let Some(rss) = current_rss_bytes() {
            self.sampled = self.sampled.max(rss);
        }
    }

    /// The kernel's exact watermark when it could be reset, else the highest sample.
    pub(crate) fn peak(&self) -> u64 {
        let kernel = self
            .watermark_reset
            .then(peak_rss_bytes)
            .flatten()
            .unwrap_or(0);
        kernel.max(self.sampled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_plausible() {
        let cpu = cpu_seconds().expect("/proc/self/stat is readable");
        assert!(cpu >= 0.0);
        let rss = current_rss_bytes().expect("VmRSS is present");
        let peak = peak_rss_bytes().expect("VmHWM is present");
        assert!(rss > 0 && peak >= rss / 2);
    }

    #[test]
    fn busy_loop_shows_cpu() {
        let window = CpuWindow::start();
        let before = cpu_seconds().expect("/proc/self/stat is readable");
        let mut x = 0_u64;
        // Spin until the kernel has charged at least one tick to us (bounded, in case it never
        // does): the window must then see a non-zero share of a core.
        for _ in 0..1_000_000 {
            for _ in 0..10_000 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            }
            if cpu_seconds().is_some_and(|now| now > before) {
                break;
            }
        }
        std::hint::black_box(x);
        assert!(window.percent() > 0.0);
    }
}
