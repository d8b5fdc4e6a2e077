//! Public-API tests of `Batcher`, on tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kwik_pool::{Batcher, BuildError};
use tokio::time::Instant;

type Flushed = Arc<Mutex<Vec<(Duration, Vec<u32>)>>>;

/// A batcher whose sink records each batch with the (virtual) time since `start`.
fn recording(max_size: usize, max_delay: Duration) -> (Batcher<u32>, Flushed) {
    let flushed: Flushed = Arc::default();
    let sink = Arc::clone(&flushed);
    let start = Instant::now();
    let batcher = Batcher::builder()
        .max_size(max_size)
        .max_delay(max_delay)
        .build(move |batch| {
            let sink = Arc::clone(&sink);
            async move { sink.lock().unwrap().push((start.elapsed(), batch)) }
        })
        .unwrap();
    (batcher, flushed)
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_is_flushed_at_once() {
    let (batcher, flushed) = recording(4, Duration::from_secs(3600));
    for item in 0..9 {
        batcher.push(item).await.unwrap();
    }
    settle().await;
    assert_eq!(
        *flushed.lock().unwrap(),
        vec![
            (Duration::ZERO, vec![0, 1, 2, 3]),
            (Duration::ZERO, vec![4, 5, 6, 7])
        ]
    );
    let stats = batcher.close().await.unwrap();
    assert_eq!(
        (
            stats.flushed_by_size,
            stats.flushed_by_delay,
            stats.flushed_on_close
        ),
        (2, 0, 1)
    );
    assert_eq!(stats.items, 9);
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_flushed_when_its_delay_passes() {
    let delay = Duration::from_millis(100);
    let (batcher, flushed) = recording(1_000, delay);
    batcher.push(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    batcher.push(2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(39)).await;
    settle().await;
    assert!(
        flushed.lock().unwrap().is_empty(),
        "flushed before the delay"
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    settle().await;
    // Measured from the batch's first item, not its last.
    assert_eq!(*flushed.lock().unwrap(), vec![(delay, vec![1, 2])]);

    // The next batch gets its own delay from its own first item.
    tokio::time::sleep(Duration::from_millis(500)).await;
    batcher.push(3).await.unwrap();
    tokio::time::sleep(delay).await;
    settle().await;
    assert_eq!(
        flushed.lock().unwrap()[1],
        (Duration::from_millis(700), vec![3])
    );
    assert_eq!(batcher.stats().flushed_by_delay, 2);
    batcher.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn close_flushes_everything_left() {
    let (batcher, flushed) = recording(100, Duration::from_secs(60));
    let producer = batcher.clone();
    for item in 0..250 {
        producer.push(item).await.unwrap();
    }
    let stats = batcher.close().await.unwrap();
    let flushed = flushed.lock().unwrap().clone();
    let all: Vec<u32> = flushed
        .iter()
        .flat_map(|(_, batch)| batch.iter().copied())
        .collect();
    assert_eq!(all, (0..250).collect::<Vec<_>>(), "nothing left behind");
    assert_eq!(
        flushed.last().unwrap().0,
        Duration::ZERO,
        "close did not wait for the delay"
    );
    assert_eq!(
        (stats.flushed_by_size, stats.flushed_on_close, stats.items),
        (2, 1, 250)
    );
    let refused = producer.push(7).await.unwrap_err();
    assert!(refused.is_closed());
    assert_eq!(refused.into_inner(), 7);
    // A second close returns at once.
    assert_eq!(batcher.close().await.unwrap(), stats);
}

#[tokio::test]
async fn builder_rejects_bad_values() {
    let sink = |b: Vec<u8>| async move { drop(b) };
    assert_eq!(
        Batcher::builder().max_size(0).build(sink).unwrap_err(),
        BuildError::ZeroMaxSize
    );
    assert_eq!(
        Batcher::builder()
            .max_delay(Duration::ZERO)
            .build(sink)
            .unwrap_err(),
        BuildError::ZeroMaxDelay
    );
    assert_eq!(
        Batcher::builder().capacity(0).build(sink).unwrap_err(),
        BuildError::ZeroCapacity
    );
}
