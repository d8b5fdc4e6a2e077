//! After warm-up, the packet path — get, write 1 KiB, freeze, clone, drop — allocates nothing.
//!
//! This binary installs a counting global allocator, so it holds this one test only: nothing
//! else may run (and allocate) while the counter is read.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BufMut;
use kwik_buffer::BufferPool;

/// Counts, per thread, the allocations made while that thread opted in: other tests and the
/// harness's own threads never disturb a reading.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

/// Allocations `f` makes on this thread.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCATIONS.get();
    COUNTING.set(true);
    let out = f();
    COUNTING.set(false);
    (out, ALLOCATIONS.get() - before)
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter only observes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const CYCLES: usize = 1_000_000;
const WARM_UP: usize = 1_000;

/// One packet's life: read into a pooled buffer, frozen, shared with a second owner, released.
fn cycle(pool: &BufferPool, payload: &[u8]) -> usize {
    let mut buf = pool.get();
    buf.put_slice(payload);
    let packet = buf.freeze();
    let for_the_app = packet.clone();
    let seen = packet.len() + usize::from(for_the_app[1023]);
    drop(packet);
    drop(for_the_app);
    seen
}

#[test]
fn get_write_freeze_clone_drop_allocates_nothing_after_warm_up() {
    let payload = [1_u8; 1024];
    for thread_cache in [16, 0] {
        let pool = BufferPool::builder()
            .buffer_size(2048)
            .max_pooled(64)
            .thread_cache(thread_cache)
            .build()
            .expect("valid settings");
        let mut seen = 0;
        for _ in 0..WARM_UP {
            seen += cycle(&pool, &payload);
        }

        let (counted, allocations) =
            allocations_in(|| (0..CYCLES).map(|_| cycle(&pool, &payload)).sum::<usize>());
        seen += counted;

        assert_eq!(seen, (WARM_UP + CYCLES) * 1025);
        assert_eq!(
            allocations, 0,
            "thread_cache {thread_cache}: allocations after warm-up"
        );
        let stats = pool.stats();
        assert_eq!(stats.misses, 1, "one buffer serves every cycle");
        assert_eq!(
            (stats.gets, stats.outstanding),
            ((WARM_UP + CYCLES) as u64, 0)
        );
    }
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the test above against a counter that never counts.
    let (boxed, counted) = allocations_in(|| std::hint::black_box(Box::new(7_u64)));
    drop(boxed);
    assert_eq!(counted, 1);
}
