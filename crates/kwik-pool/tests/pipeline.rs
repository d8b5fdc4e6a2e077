//! Public-API tests of `Pipeline`: order, bounds, retries, failures.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use kwik_pool::{BuildError, Pipeline, PipelineError};

/// Counts calls of one stage running at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Concurrency {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_million_items_through_three_stages_keep_their_order() {
    const ITEMS: u64 = 1_000_000;
    let wide = Arc::new(Concurrency::default());
    let probe = Arc::clone(&wide);
    let pipeline = Pipeline::builder()
        .chunk_size(1_000)
        .buffer(2)
        .stage("increment", 1, |chunk: Vec<u64>| async move {
            Ok::<_, Infallible>(chunk.into_iter().map(|x| x + 1).collect())
        })
        .stage("square-ish", 4, move |chunk: Vec<u64>| {
            let probe = Arc::clone(&probe);
            async move {
                probe.enter();
                // Let other chunks of this stage start while this one is "busy".
                tokio::task::yield_now().await;
                let out = chunk.into_iter().map(|x| (x, x * 3)).collect();
                probe.leave();
                Ok::<_, Infallible>(out)
            }
        })
        .stage("sum", 2, |chunk: Vec<(u64, u64)>| async move {
            Ok::<_, Infallible>(chunk.into_iter().map(|(a, b)| a + b).collect())
        })
        .build()
        .unwrap();

    let mut output = pipeline.run(stream::iter(0..ITEMS));
    let mut expected = 0_u64;
    while let Some(item) = output.next().await {
        assert_eq!(item.unwrap(), (expected + 1) * 4, "item {expected}");
        expected += 1;
    }
    assert_eq!(expected, ITEMS);
    let seen = output.max_chunks_in_flight();
    assert!(
        seen >= 2 && seen <= pipeline.max_chunks_in_flight(),
        "in flight {seen}"
    );
    assert_eq!(
        pipeline.max_chunks_in_flight(),
        1 + 2 + (1 + 1 + 2) + (4 + 1 + 2) + (2 + 1 + 2) + 1
    );
    assert!(wide.max.load(Ordering::SeqCst) <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_holds_the_chunks_in_flight_to_the_bound() {
    let pipeline = Pipeline::builder()
        .chunk_size(10)
        .buffer(1)
        .stage("a", 3, |c: Vec<u32>| async move { Ok::<_, Infallible>(c) })
        .stage("b", 2, |c: Vec<u32>| async move { Ok::<_, Infallible>(c) })
        .build()
        .unwrap();
    let mut output = pipeline.run(stream::iter(0..100_000));
    let mut n = 0_u32;
    while let Some(item) = output.next().await {
        assert_eq!(item.unwrap(), n);
        n += 1;
        // The consumer lags: upstream fills every buffer and must stop there.
        tokio::task::yield_now().await;
    }
    assert_eq!(n, 100_000);
    assert!(output.max_chunks_in_flight() <= pipeline.max_chunks_in_flight());
}

#[tokio::test(start_paused = true)]
async fn a_chunk_that_fails_twice_is_retried_with_backoff() {
    const FLAKY_CHUNK: u32 = 5;
    let attempts: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let log = Arc::clone(&attempts);
    let pipeline = Pipeline::builder()
        .chunk_size(10)
        .max_retries(2)
        .backoff(Duration::from_millis(100))
        .stage("store", 2, move |chunk: Vec<u32>| {
            let log = Arc::clone(&log);
            async move {
                let index = chunk[0] / 10;
                let attempt = {
                    let mut log = log.lock().unwrap();
                    let attempt = log.entry(index).or_insert(0);
                    *attempt += 1;
                    *attempt
                };
                if index == FLAKY_CHUNK && attempt <= 2 {
                    return Err(format!("disk busy (attempt {attempt})"));
                }
                Ok(chunk)
            }
        })
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let out: Vec<u32> = pipeline
        .run(stream::iter(0..200))
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(out, (0..200).collect::<Vec<_>>());
    let attempts = attempts.lock().unwrap();
    assert_eq!(attempts[&FLAKY_CHUNK], 3);
    assert!(
        attempts
            .iter()
            .all(|(&chunk, &n)| n == 1 || chunk == FLAKY_CHUNK)
    );
    // Backoff 100 ms then 200 ms, in virtual time.
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_names_the_stage_and_the_chunk() {
    let pipeline = Pipeline::builder()
        .chunk_size(4)
        .max_retries(3)
        .backoff(Duration::from_millis(1))
        .stage(
            "parse",
            2,
            |c: Vec<u32>| async move { Ok::<_, Infallible>(c) },
        )
        .stage("enrich", 3, |c: Vec<u32>| async move {
            if c.contains(&29) {
                Err(std::io::Error::other("lookup failed"))
            } else {
                Ok(c)
            }
        })
        .build()
        .unwrap();
    let results: Vec<_> = pipeline.run(stream::iter(0..100)).collect().await;
    // Chunks 0..7 came out whole and in order, then the error, then the end.
    let (ok, err) = results.split_at(28);
    assert_eq!(
        ok.iter().map(|r| *r.as_ref().unwrap()).collect::<Vec<_>>(),
        (0..28).collect::<Vec<_>>()
    );
    assert_eq!(err.len(), 1);
    match &err[0] {
        Err(
            error @ PipelineError::StageFailed {
                stage,
                chunk,
                attempts,
                source,
            },
        ) => {
            assert_eq!((stage.as_str(), *chunk, *attempts), ("enrich", 7, 4));
            assert_eq!(source.to_string(), "lookup failed");
            assert_eq!(
                error.to_string(),
                "stage `enrich` failed on chunk 7 after 4 attempts"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_panicking_stage_stops_the_run() {
    let pipeline = Pipeline::builder()
        .chunk_size(10)
        .max_retries(0)
        .stage("explode", 1, |c: Vec<u32>| async move {
            assert!(c[0] != 20, "bad chunk");
            Ok::<_, Infallible>(c)
        })
        .build()
        .unwrap();
    let results: Vec<_> = pipeline.run(stream::iter(0..100)).collect().await;
    assert_eq!(results.len(), 21);
    assert!(matches!(
        &results[20],
        Err(PipelineError::StagePanicked { stage, chunk: 2 }) if stage == "explode"
    ));
}

#[tokio::test]
async fn a_pipeline_runs_again_and_handles_empty_input() {
    let pipeline = Pipeline::builder()
        .chunk_size(3)
        .stage("len", 1, |c: Vec<&'static str>| async move {
            Ok::<_, Infallible>(c.into_iter().map(str::len).collect())
        })
        .build()
        .unwrap();
    let first: Vec<_> = pipeline
        .run(stream::iter(["a", "bb", "ccc", "dddd"]))
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(first, vec![1, 2, 3, 4]);
    assert_eq!(
        pipeline.run(stream::iter(Vec::<&str>::new())).count().await,
        0
    );
}

#[tokio::test]
async fn builder_rejects_bad_values() {
    let noop = |c: Vec<u8>| async move { Ok::<_, Infallible>(c) };
    assert_eq!(
        Pipeline::builder()
            .chunk_size(0)
            .stage("s", 1, noop)
            .build()
            .unwrap_err(),
        BuildError::ZeroChunkSize
    );
    assert_eq!(
        Pipeline::builder()
            .buffer(0)
            .stage("s", 1, noop)
            .build()
            .unwrap_err(),
        BuildError::ZeroBuffer
    );
    assert_eq!(
        Pipeline::<u8, u8>::builder().build().unwrap_err(),
        BuildError::NoStages
    );
    assert_eq!(
        Pipeline::builder()
            .stage("ok", 1, noop)
            .stage("zero", 0, noop)
            .build()
            .unwrap_err(),
        BuildError::ZeroParallelism {
            stage: "zero".into()
        }
    );
}
