//! Shared helpers for kwik's benchmarks: process readings (re-exported from kwik-metrics) and an
//! allocation counter.
//!
//! Criterion suites live in `benches/benches/<area>.rs`; small bench binaries that print figures
//! criterion cannot (peak RSS, bytes per entry) live in `src/bin/`. Every figure they print is
//! measured by the helpers here, never typed in.
#![warn(missing_docs)]

pub mod pool_dispatch;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub use kwik_metrics::process::{cpu_seconds, current_rss_bytes, peak_rss_bytes, reset_peak_rss};

/// A global allocator wrapper that counts allocations and live bytes.
///
/// Install it in a bench binary with `#[global_allocator] static A: CountingAlloc =
/// CountingAlloc::new();` and read [`CountingAlloc::allocations`] / [`CountingAlloc::live_bytes`]
/// around the code under measurement.
#[derive(Debug)]
pub struct CountingAlloc {
    allocations: AtomicU64,
    live_bytes: AtomicUsize,
}

impl CountingAlloc {
    /// A counter with both totals at zero.
    pub const fn new() -> Self {
        Self {
            allocations: AtomicU64::new(0),
            live_bytes: AtomicUsize::new(0),
        }
    }

    /// Number of allocations (including reallocations) since the process started.
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }

    /// Bytes currently allocated through this allocator.
    pub fn live_bytes(&self) -> usize {
        self.live_bytes.load(Ordering::Relaxed)
    }
}

impl Default for CountingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters only observe.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        self.live_bytes.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.live_bytes.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        self.live_bytes.fetch_add(new_size, Ordering::Relaxed);
        self.live_bytes.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_readings_are_plausible() {
        // The current reading first: the watermark read after it can only be higher.
        let now = current_rss_bytes().expect("linux /proc");
        let peak = peak_rss_bytes().expect("linux /proc");
        assert!(peak >= now && now > 0, "peak {peak} now {now}");
    }
}
