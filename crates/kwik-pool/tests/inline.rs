//! `WorkerPool::try_run_inline`: a caller runs a job in place of an idle shard's worker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kwik_pool::{Outcome, PoolObserver, RunInlineError, WorkerPool};

mod support;
use support::{gate, join_then_drain, pass, pool_of, until};

/// Two keys on different shards of a two-worker pool.
fn two_shards(pool: &WorkerPool) -> (u64, u64) {
    let other = (1..).find(|&k| pool.shard_for(k) != pool.shard_for(0_u64));
    (0, other.expect("some key maps to the other shard"))
}

/// Producers each own some keys (as path readers own their paths) and share the shards: every
/// job runs in place when its shard is idle and is queued otherwise. Per key, the jobs must run
/// in submission order whichever way each went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_and_queued_jobs_keep_key_order() {
    const PRODUCERS: u64 = 4;
    const KEYS_PER_PRODUCER: u64 = 8;
    const JOBS_PER_KEY: u32 = 2_000;
    const BURST: u32 = 4;

    let pool = pool_of(2, 4);
    let keys = PRODUCERS * KEYS_PER_PRODUCER;
    let logs: Arc<Vec<Mutex<Vec<u32>>>> = Arc::new((0..keys).map(|_| Mutex::default()).collect());
    let inline = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let (pool, logs, inline) = (pool.clone(), Arc::clone(&logs), Arc::clone(&inline));
            tokio::spawn(async move {
                // Bursts on one key: a job tried right after its predecessor was queued is the
                // one that could overtake it.
                for first in (0..JOBS_PER_KEY).step_by(BURST as usize) {
                    for key in producer * KEYS_PER_PRODUCER..(producer + 1) * KEYS_PER_PRODUCER {
                        for seq in first..first + BURST {
                            let logs = Arc::clone(&logs);
                            let job = move || logs[key as usize].lock().unwrap().push(seq);
                            match pool.try_run_inline(key, job) {
                                Ok(()) => {
                                    inline.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(RunInlineError::Busy(job)) => {
                                    pool.execute(key, async move { job() }).await.unwrap();
                                }
                                Err(err) => panic!("unexpected {err}"),
                            }
                        }
                    }
                }
            })
        })
        .collect();
    join_then_drain(&pool, producers).await;

    for (key, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        let expected: Vec<u32> = (0..JOBS_PER_KEY).collect();
        assert!(
            *log == expected,
            "key {key}: jobs lost, repeated or reordered"
        );
    }
    let stats = pool.stats();
    assert_eq!(stats.completed, keys * u64::from(JOBS_PER_KEY));
    assert!(inline.load(Ordering::Relaxed) > 0, "no job ran in place");
    assert_eq!((stats.queued, stats.running), (0, 0));
}

#[tokio::test]
async fn a_busy_shard_hands_the_job_back_and_an_idle_one_runs_it() {
    let pool = WorkerPool::builder().workers(2).build().unwrap();
    let (busy, idle) = two_shards(&pool);
    let gate = gate();
    let blocker = {
        let gate = Arc::clone(&gate);
        pool.submit(busy, async move { pass(&gate).await })
            .await
            .unwrap()
    };
    until(|| pool.stats().running == 1).await;

    let err = pool.try_run_inline(busy, || 1).unwrap_err();
    assert!(matches!(err, RunInlineError::Busy(_)));
    assert_eq!(
        err.into_inner().map(|job| job()),
        Some(1),
        "handed back unrun"
    );
    assert_eq!(pool.try_run_inline(idle, || 2).unwrap(), 2);

    gate.add_permits(1);
    blocker.await.unwrap();
    // Once its worker has found the queue empty, the shard is the callers' again.
    let mut ran = 0;
    until(|| {
        ran = pool.try_run_inline(busy, || 3).unwrap_or(0);
        ran == 3
    })
    .await;
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.running, stats.queued), (3, 0, 0));
}

/// While a caller runs a job in place, a job queued behind it on the same key must wait for it,
/// even with the worker free on another thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_waits_for_the_job_running_in_place() {
    let pool = WorkerPool::builder().workers(1).build().unwrap();
    let inline_done = Arc::new(AtomicBool::new(false));
    let saw_inline_done = {
        let (pool, inline_done) = (pool.clone(), Arc::clone(&inline_done));
        tokio::task::spawn_blocking(move || {
            let queued = {
                let inline_done = Arc::clone(&inline_done);
                async move { inline_done.load(Ordering::SeqCst) }
            };
            let mut handle = None;
            pool.try_run_inline(1_u64, || {
                let submitted = pool.try_submit(1_u64, queued);
                handle = Some(submitted.unwrap_or_else(|_| panic!("room in the queue")));
                // Give the idle worker, on its own thread, every chance to overtake.
                for _ in 0..10_000 {
                    std::thread::yield_now();
                }
                inline_done.store(true, Ordering::SeqCst);
            })
            .unwrap();
            handle.expect("submitted in place")
        })
        .await
        .unwrap()
        .await
        .unwrap()
    };
    assert!(
        saw_inline_done,
        "the queued job ran before the job in place finished"
    );
    assert_eq!(pool.stats().completed, 2);
}

#[derive(Default)]
struct Seen(Mutex<Vec<(Duration, Outcome)>>);

impl PoolObserver for Seen {
    fn on_job(&self, queue_wait: Duration, _run: Duration, outcome: Outcome) {
        self.0.lock().unwrap().push((queue_wait, outcome));
    }
}

#[tokio::test]
async fn a_panic_in_place_is_caught_counted_and_observed() {
    let seen = Arc::new(Seen::default());
    let pool = WorkerPool::builder()
        .workers(1)
        .observer(Arc::clone(&seen) as Arc<dyn PoolObserver>)
        .build()
        .unwrap();
    let err = pool
        .try_run_inline(5_u64, || panic!("bad packet"))
        .unwrap_err();
    assert!(matches!(err, RunInlineError::Panicked));
    assert!(err.into_inner().is_none());
    // The shard was given back: the next job runs, in place or on the worker.
    assert_eq!(pool.try_run_inline(5_u64, || 7).unwrap(), 7);
    pool.submit(5_u64, async {}).await.unwrap().await.unwrap();
    let stats = pool.stats();
    assert_eq!((stats.panicked, stats.completed), (1, 2));
    let seen = seen.0.lock().unwrap();
    assert_eq!(
        seen[..2],
        [
            (Duration::ZERO, Outcome::Panicked),
            (Duration::ZERO, Outcome::Completed)
        ]
    );
}

#[tokio::test]
async fn a_closed_pool_hands_the_job_back() {
    let pool = WorkerPool::builder().build().unwrap();
    assert!(pool.shutdown(Duration::from_secs(1)).await.is_complete());
    let err = pool.try_run_inline(1_u64, || 9).unwrap_err();
    assert!(matches!(err, RunInlineError::Closed(_)));
    assert_eq!(err.into_inner().map(|job| job()), Some(9));
    assert_eq!(pool.stats().completed, 0);
}

/// `shutdown` waits for a job running in place, as it waits for the workers' jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_job_running_in_place() {
    let pool = WorkerPool::builder().workers(1).build().unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (started, on_start) = tokio::sync::oneshot::channel::<()>();
    let finished = Arc::new(AtomicBool::new(false));
    let caller = {
        let (pool, finished) = (pool.clone(), Arc::clone(&finished));
        std::thread::spawn(move || {
            pool.try_run_inline(1_u64, || {
                started.send(()).unwrap();
                released.recv().unwrap();
                finished.store(true, Ordering::SeqCst);
            })
            .unwrap();
        })
    };
    on_start.await.unwrap();
    // `join!` polls the shutdown first, so the pool is closing before the job is released.
    let ((report, finished_first), ()) = tokio::join!(
        async {
            let report = pool.shutdown(Duration::from_secs(60)).await;
            (report, finished.load(Ordering::SeqCst))
        },
        async {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            release.send(()).unwrap();
        }
    );
    assert!(report.is_complete());
    assert!(finished_first, "shutdown returned while the job ran");
    caller.join().unwrap();
}
