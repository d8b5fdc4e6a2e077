//! Buffers travel between threads and the pool's books still balance exactly.

use std::sync::mpsc;
use std::thread;

use bytes::{BufMut, Bytes};
use kwik_buffer::{BufferPool, PooledBuf, Stats};

const PAIRS: usize = 4;
const CYCLES_PER_PRODUCER: usize = 100_000;
/// Room for every buffer in flight (4 channels of 64 plus the thread caches).
const ROOMY: usize = 512;
/// Far less than the buffers in flight: the pool is alternately full and empty, so the drop and
/// miss paths run under contention as well as the hit path.
const CRAMPED: usize = 48;

enum Packet {
    Buffer(PooledBuf),
    Frozen(Bytes),
}

/// Every buffer the pool ever allocated is, once everything is quiet, either retained by it or
/// was let go through exactly one of the counted exits.
fn assert_books_balance(stats: Stats, gets: u64, max_pooled: usize) {
    assert_eq!(stats.gets, gets);
    assert_eq!(stats.gets, stats.hits + stats.misses);
    assert_eq!(stats.returns, gets);
    assert_eq!(stats.outstanding, 0);
    assert!(stats.pooled <= max_pooled as u64, "{stats:?}");
    assert_eq!(
        stats.misses,
        stats.pooled + stats.dropped + stats.oversized + stats.detached,
        "{stats:?}"
    );
}

#[test]
fn buffers_taken_on_one_thread_and_dropped_on_another_come_back() {
    let stats = producers_to_consumers(ROOMY);
    assert!(
        stats.hits > 100 * stats.misses,
        "the pool served almost every get: {stats:?}"
    );
    let stats = producers_to_consumers(CRAMPED);
    assert!(stats.dropped > 0, "{stats:?}");
}

/// 4 producer threads fill buffers and send them, half frozen, to 4 consumer threads that check
/// and drop them.
fn producers_to_consumers(max_pooled: usize) -> Stats {
    let pool = BufferPool::builder()
        .buffer_size(2048)
        .max_pooled(max_pooled)
        .thread_cache(8)
        .build()
        .expect("valid settings");

    let mut threads = Vec::new();
    for pair in 0..PAIRS {
        // Bounded, so producers and consumers run concurrently rather than one after the other.
        let (tx, rx) = mpsc::sync_channel::<Packet>(64);
        let producer_pool = pool.clone();
        threads.push(thread::spawn(move || {
            for i in 0..CYCLES_PER_PRODUCER {
                let mut buf = producer_pool.get();
                assert!(buf.is_empty() && buf.capacity() >= 2048);
                buf.put_u64(i as u64);
                buf.put_bytes(pair as u8, 100);
                let packet = if i % 2 == 0 {
                    Packet::Buffer(buf)
                } else {
                    Packet::Frozen(buf.freeze())
                };
                tx.send(packet).expect("consumer alive");
            }
        }));
        threads.push(thread::spawn(move || {
            for (i, packet) in rx.iter().enumerate() {
                let data: &[u8] = match &packet {
                    Packet::Buffer(buf) => buf,
                    Packet::Frozen(bytes) => bytes,
                };
                // Nothing another thread wrote into a reused buffer may show through.
                assert_eq!(data.len(), 108);
                assert_eq!(&data[..8], &(i as u64).to_be_bytes());
                assert!(data[8..].iter().all(|&b| b == pair as u8));
            }
        }));
    }
    for thread in threads {
        thread.join().expect("no thread panicked");
    }

    let stats = pool.stats();
    assert_books_balance(stats, (PAIRS * CYCLES_PER_PRODUCER) as u64, max_pooled);
    stats
}

#[test]
fn frozen_clones_released_on_many_threads_come_back() {
    let pool = BufferPool::builder()
        .buffer_size(512)
        .max_pooled(CRAMPED)
        .thread_cache(4)
        .build()
        .expect("valid settings");
    let rounds = 2_000;
    for round in 0..rounds {
        let mut buf = pool.get();
        buf.put_u32(round);
        let bytes = buf.freeze();
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let mine = bytes.clone();
                thread::spawn(move || u32::from_be_bytes(mine[..4].try_into().expect("4 bytes")))
            })
            .collect();
        drop(bytes);
        for reader in readers {
            assert_eq!(reader.join().expect("no panic"), round);
        }
    }
    let stats = pool.stats();
    assert_books_balance(stats, u64::from(rounds), CRAMPED);
    // One buffer at a time is in use, so after the first allocation every get is a hit.
    assert_eq!(stats.misses, 1, "{stats:?}");
}
