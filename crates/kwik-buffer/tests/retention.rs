//! What the pool keeps, and what it lets go.

use bytes::BufMut;
use kwik_buffer::BufferPool;

#[test]
fn pooled_count_never_exceeds_max_pooled_after_a_large_release() {
    let max_pooled = 256;
    let pool = BufferPool::builder()
        .buffer_size(1024)
        .max_pooled(max_pooled)
        .thread_cache(32)
        .build()
        .expect("valid settings");

    let held: Vec<_> = (0..10_000).map(|_| pool.get()).collect();
    assert_eq!(pool.stats().outstanding, 10_000);
    drop(held);
    let stats = pool.stats();
    assert_eq!(stats.pooled, max_pooled as u64);
    assert_eq!(stats.pooled_bytes, (max_pooled * 1024) as u64);
    assert_eq!(stats.dropped, 10_000 - max_pooled as u64);

    // Frozen buffers count against the same bound.
    let frozen: Vec<_> = (0..10_000)
        .map(|i: u32| {
            let mut buf = pool.get();
            buf.put_u32(i);
            buf.freeze()
        })
        .collect();
    assert!(pool.stats().pooled <= max_pooled as u64);
    drop(frozen);
    let stats = pool.stats();
    assert!(stats.pooled <= max_pooled as u64, "{stats:?}");
    assert_eq!((stats.outstanding, stats.gets), (0, 20_000));
}

#[test]
fn buffers_grown_by_writes_are_not_retained() {
    let pool = BufferPool::builder()
        .buffer_size(256)
        .max_pooled(8)
        .thread_cache(2)
        .build()
        .expect("valid settings");
    let mut grown = pool.get();
    grown.put_bytes(0xee, 4096);
    assert!(grown.capacity() >= 4096);
    drop(grown);

    let mut grown_then_frozen = pool.get();
    grown_then_frozen.put_bytes(0xee, 1000);
    let bytes = grown_then_frozen.freeze();
    assert_eq!(bytes.len(), 1000);

    let stats = pool.stats();
    assert_eq!((stats.oversized, stats.pooled, stats.returns), (2, 0, 2));
    // The next buffer is fresh and of the class size.
    assert_eq!(pool.get().capacity(), 256);
}
