//! Public-API tests of `WorkerPool`: ordering, bounds, failures, shutdown.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::poll_immediate;
use kwik_pool::{
    BuildError, Job, JobError, JobHandle, Outcome, Overflow, PoolObserver, SubmitError, WorkerPool,
};
use tokio::sync::Semaphore;

mod support;
use support::{gate, join_then_drain, pass, pool_of, until};

/// Queues, without waiting, a job under key 0 that runs until `gate` gets a permit.
fn try_submit_gated(pool: &WorkerPool, gate: &Arc<Semaphore>) -> JobHandle<()> {
    let gate = Arc::clone(gate);
    pool.try_submit(0_u64, async move { pass(&gate).await })
        .unwrap()
}

/// Per key, the (producer, sequence) pairs in the order the jobs ran.
type KeyLogs = Vec<Mutex<Vec<(u8, u32)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_with_one_key_run_in_submission_order() {
    const PRODUCERS: usize = 8;
    const KEYS: usize = 64;
    const JOBS_PER_KEY: u32 = 10_000;

    let pool = pool_of(4, 256);
    // logs[key] records (producer, sequence) in the order the jobs ran.
    let logs: Arc<KeyLogs> = Arc::new(
        (0..KEYS)
            .map(|_| Mutex::new(Vec::with_capacity(PRODUCERS * JOBS_PER_KEY as usize)))
            .collect(),
    );
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let (pool, logs) = (pool.clone(), Arc::clone(&logs));
            tokio::spawn(async move {
                for seq in 0..JOBS_PER_KEY {
                    for key in 0..KEYS {
                        let logs = Arc::clone(&logs);
                        let job = async move {
                            logs[key].lock().unwrap().push((producer as u8, seq));
                        };
                        pool.execute(key as u64, job).await.unwrap();
                    }
                }
            })
        })
        .collect();
    join_then_drain(&pool, producers).await;

    for (key, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        assert_eq!(
            log.len(),
            PRODUCERS * JOBS_PER_KEY as usize,
            "key {key}: lost or extra jobs"
        );
        // Each producer's jobs for this key must appear exactly in the order it submitted them.
        let mut next = [0_u32; PRODUCERS];
        for &(producer, seq) in log.iter() {
            let expected = &mut next[usize::from(producer)];
            assert_eq!(
                seq, *expected,
                "key {key} producer {producer}: out of order"
            );
            *expected += 1;
        }
    }
    let stats = pool.stats();
    assert_eq!(
        stats.completed,
        (PRODUCERS * KEYS) as u64 * u64::from(JOBS_PER_KEY)
    );
    assert_eq!((stats.queued, stats.running, stats.rejected), (0, 0, 0));
}

/// An abort in the middle of a stream from several producers on several threads: every handle
/// still resolves, to the job's output if it ran and to `PoolClosed` if it did not (the jobs end
/// in their first poll, so none is cut short), no job runs twice, and every submission after
/// the abort gets its job back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abort_under_load_leaves_no_handle_waiting() {
    const PRODUCERS: u64 = 4;
    const JOBS_PER_PRODUCER: u64 = 20_000;
    const ABORT_AFTER: u64 = 10_000;

    let pool = pool_of(4, 4);
    let runs: Arc<Vec<AtomicU32>> = Arc::new(
        (0..PRODUCERS * JOBS_PER_PRODUCER)
            .map(|_| AtomicU32::new(0))
            .collect(),
    );
    let ran = Arc::new(AtomicU64::new(0));
    let halfway = Arc::new(Semaphore::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let (pool, runs, ran) = (pool.clone(), Arc::clone(&runs), Arc::clone(&ran));
            let halfway = Arc::clone(&halfway);
            tokio::spawn(async move {
                let mut handles = Vec::new();
                for i in 0..JOBS_PER_PRODUCER {
                    let id = producer * JOBS_PER_PRODUCER + i;
                    let (runs, ran, halfway) =
                        (Arc::clone(&runs), Arc::clone(&ran), Arc::clone(&halfway));
                    let job = async move {
                        runs[id as usize].fetch_add(1, Ordering::Relaxed);
                        if ran.fetch_add(1, Ordering::Relaxed) + 1 == ABORT_AFTER {
                            halfway.add_permits(1);
                        }
                        id
                    };
                    match pool.submit(i % 64, job).await {
                        Ok(handle) => handles.push((id, handle)),
                        Err(refused) => {
                            assert!(refused.is_closed());
                            break;
                        }
                    }
                }
                let mut outcomes = Vec::new();
                for (id, handle) in handles {
                    outcomes.push((id, handle.await));
                }
                outcomes
            })
        })
        .collect();
    let _ = halfway.acquire().await.unwrap();
    pool.abort();
    let mut finished = 0;
    let mut dropped = 0;
    for producer in producers {
        for (id, outcome) in producer.await.unwrap() {
            let runs = runs[id as usize].load(Ordering::Relaxed);
            match outcome {
                Ok(got) => {
                    assert_eq!((got, runs), (id, 1));
                    finished += 1;
                }
                Err(JobError::PoolClosed) => {
                    assert_eq!(runs, 0, "job {id} ran but its handle says it never did");
                    dropped += 1;
                }
                Err(other) => panic!("job {id}: {other}"),
            }
        }
    }
    assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) <= 1));
    assert_eq!(finished, ran.load(Ordering::Relaxed));
    assert!(finished >= ABORT_AFTER);
    assert!(finished + dropped <= PRODUCERS * JOBS_PER_PRODUCER);
    assert!(pool.try_submit(0_u64, async {}).unwrap_err().is_closed());
    assert!(pool.submit(0_u64, async {}).await.unwrap_err().is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_handles_keep_key_order_across_producers() {
    let pool = WorkerPool::builder().workers(3).build().unwrap();
    let counter = Arc::new(AtomicU32::new(0));
    let mut producers = Vec::new();
    for key in 0..4_u64 {
        let (pool, counter) = (pool.clone(), Arc::clone(&counter));
        producers.push(tokio::spawn(async move {
            let mut handles = Vec::new();
            for seq in 0..500_u32 {
                let counter = Arc::clone(&counter);
                let job = async move { (seq, counter.fetch_add(1, Ordering::SeqCst)) };
                handles.push(pool.submit(key, job).await.unwrap());
            }
            let mut last_tick = None;
            for (seq, handle) in handles.into_iter().enumerate() {
                let (got, tick) = handle.await.unwrap();
                assert_eq!(got as usize, seq);
                // A global tick taken when the job ran: strictly increasing within one key.
                assert!(last_tick < Some(tick));
                last_tick = Some(tick);
            }
        }));
    }
    for producer in producers {
        producer.await.unwrap();
    }
}

#[tokio::test]
async fn block_waits_for_room_and_never_exceeds_the_bound() {
    let pool = pool_of(2, 3);
    let gate = gate();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let job = |id: u32| {
        let (gate, ran) = (Arc::clone(&gate), Arc::clone(&ran));
        async move {
            pass(&gate).await;
            ran.lock().unwrap().push(id);
        }
    };

    // One job running on key 0's shard and three queued behind it fill the shard.
    pool.execute(0_u64, job(0)).await.unwrap();
    until(|| pool.stats().running == 1).await;
    for id in 1..4 {
        pool.execute(0_u64, job(id)).await.unwrap();
    }
    assert_eq!(pool.stats().queued, 3);

    // A fifth submission waits for room.
    let blocked = tokio::spawn({
        let (pool, job) = (pool.clone(), job(4));
        async move { pool.execute(0_u64, job).await.is_ok() }
    });
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        !blocked.is_finished(),
        "submit returned while the shard was full"
    );
    assert_eq!(pool.stats().queued, 3);

    gate.add_permits(5);
    assert!(blocked.await.unwrap());
    assert!(pool.shutdown(Duration::from_secs(5)).await.is_complete());
    assert_eq!(
        *ran.lock().unwrap(),
        vec![0, 1, 2, 3, 4],
        "every job ran once, in order"
    );
    let stats = pool.stats();
    assert_eq!(stats.queued_high_water, 3);
    assert_eq!((stats.completed, stats.rejected), (5, 0));
}

#[tokio::test]
async fn max_queued_bounds_the_sum_across_shards() {
    const JOBS: u32 = 40;
    let pool = WorkerPool::builder()
        .workers(4)
        .queue_capacity(8)
        .max_queued(5)
        .build()
        .unwrap();
    let gate = gate();
    let ran = Arc::new(AtomicU32::new(0));
    let producer = tokio::spawn({
        let (pool, gate, ran) = (pool.clone(), Arc::clone(&gate), Arc::clone(&ran));
        async move {
            for id in 0..JOBS {
                let (gate, ran) = (Arc::clone(&gate), Arc::clone(&ran));
                let job = async move {
                    pass(&gate).await;
                    ran.fetch_add(1, Ordering::Relaxed);
                };
                pool.execute(u64::from(id), job).await.unwrap();
            }
        }
    });
    // With every worker stuck, the producer stalls once 5 jobs are queued.
    until(|| pool.stats().queued == 5).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!producer.is_finished());
    assert_eq!(pool.stats().queued, 5);

    gate.add_permits(JOBS as usize);
    producer.await.unwrap();
    assert!(pool.shutdown(Duration::from_secs(5)).await.is_complete());
    assert_eq!(ran.load(Ordering::Relaxed), JOBS);
    assert_eq!(pool.stats().queued_high_water, 5);
}

#[tokio::test]
async fn reject_hands_every_extra_job_back() {
    const JOBS: u32 = 50;
    let pool = WorkerPool::builder()
        .workers(2)
        .queue_capacity(4)
        .max_queued(5)
        .overflow(Overflow::Reject)
        .build()
        .unwrap();
    let gate = gate();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let mut handed_back = Vec::new();
    for id in 0..JOBS {
        let (gate, ran) = (Arc::clone(&gate), Arc::clone(&ran));
        let job = async move {
            pass(&gate).await;
            ran.lock().unwrap().push(id);
        };
        match pool.submit(u64::from(id), job).await {
            Ok(handle) => drop(handle),
            Err(SubmitError::Full(job)) => handed_back.push(job),
            Err(SubmitError::Closed(_)) => panic!("pool closed"),
        }
    }
    let accepted = JOBS as usize - handed_back.len();
    let stats = pool.stats();
    // At most one running per worker plus the pool-wide bound of five queued.
    assert!(accepted <= 2 + 5, "accepted {accepted}");
    assert_eq!(stats.rejected, handed_back.len() as u64);
    assert!(stats.queued_high_water <= 5);

    // The returned jobs are intact: running them ourselves completes the set.
    gate.add_permits(JOBS as usize);
    for job in handed_back {
        job.await;
    }
    assert!(pool.shutdown(Duration::from_secs(5)).await.is_complete());
    let mut ran = ran.lock().unwrap().clone();
    ran.sort_unstable();
    assert_eq!(
        ran,
        (0..JOBS).collect::<Vec<_>>(),
        "each job ran exactly once"
    );
}

#[tokio::test]
async fn try_submit_returns_full_whatever_the_policy() {
    let pool = pool_of(1, 2);
    let gate = gate();
    let running = try_submit_gated(&pool, &gate);
    until(|| pool.stats().running == 1).await;
    let queued: Vec<_> = (0..2)
        .map(|i| pool.try_submit(0_u64, async move { i }).unwrap())
        .collect();
    let refused = pool.try_execute(0_u64, async {}).unwrap_err();
    assert!(refused.is_full());
    assert!(pool.try_spawn(async { 7 }).unwrap_err().is_full());
    assert_eq!(pool.stats().rejected, 2);
    gate.add_permits(1);
    running.await.unwrap();
    for (i, handle) in queued.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap(), i);
    }
}

#[tokio::test]
async fn a_panicking_job_is_reported_and_its_worker_goes_on() {
    let pool = WorkerPool::builder().workers(1).build().unwrap();
    let boom = pool
        .submit(0_u64, async { panic!("malformed frame") })
        .await
        .unwrap();
    let after = pool.submit(0_u64, async { "still alive" }).await.unwrap();
    pool.execute(0_u64, async { panic!("fire and forget") })
        .await
        .unwrap();
    let last = pool.submit(0_u64, async { 3 }).await.unwrap();
    assert_eq!(boom.await, Err::<(), _>(JobError::Panicked));
    assert_eq!(after.await, Ok("still alive"));
    assert_eq!(last.await, Ok(3));
    let stats = pool.stats();
    assert_eq!((stats.panicked, stats.completed), (2, 2));
}

/// A job that panics, then panics again when its future is dropped: the handle still learns
/// `Panicked`, the worker survives both panics, and the next job of the shard runs.
#[tokio::test]
async fn a_job_that_panics_again_when_dropped_is_still_reported() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("destructor of a broken job");
            }
        }
    }
    let pool = WorkerPool::builder().workers(1).build().unwrap();
    let guard = PanicOnDrop;
    let boom = pool
        .submit(0_u64, async move {
            let _guard = &guard;
            panic!("malformed frame");
        })
        .await
        .unwrap();
    let after = pool.submit(0_u64, async { "still alive" }).await.unwrap();
    assert_eq!(boom.await, Err::<(), _>(JobError::Panicked));
    assert_eq!(after.await, Ok("still alive"));
    assert_eq!(pool.stats().panicked, 1);
}

#[tokio::test(start_paused = true)]
async fn a_job_past_its_timeout_is_dropped_and_counted() {
    let pool = WorkerPool::builder()
        .workers(1)
        .job_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicU32::new(0));
    struct CountDrop(Arc<AtomicU32>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let guard = CountDrop(Arc::clone(&dropped));
    let start = tokio::time::Instant::now();
    let slow = pool
        .submit(0_u64, async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
        .await
        .unwrap();
    let next = pool
        .submit(0_u64, async { tokio::time::Instant::now() })
        .await
        .unwrap();
    assert_eq!(slow.await, Err(JobError::TimedOut));
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        1,
        "the timed-out job was dropped"
    );
    let next_ran_at = next.await.unwrap();
    assert_eq!(next_ran_at - start, Duration::from_secs(1));
    assert_eq!(pool.stats().timed_out, 1);
}

struct Sleeper {
    id: u64,
    sleep: Duration,
    timeout: Option<Duration>,
}

impl Job for Sleeper {
    type Output = u64;
    type Error = String;
    fn id(&self) -> u64 {
        self.id
    }
    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    async fn execute(self) -> Result<u64, String> {
        tokio::time::sleep(self.sleep).await;
        if self.id.is_multiple_of(2) {
            Ok(self.id)
        } else {
            Err(format!("job {} failed", self.id))
        }
    }
}

/// A timeout too long to add to the clock (`Duration::MAX`) means no deadline, not a panic in
/// the worker.
#[tokio::test(start_paused = true)]
async fn a_timeout_beyond_the_clock_never_expires() {
    let pool = WorkerPool::builder().workers(1).build().unwrap();
    let sleeper = Sleeper {
        id: 6,
        sleep: Duration::from_secs(3600),
        timeout: Some(Duration::MAX),
    };
    let handle = pool.submit_job(0_u64, sleeper).await.unwrap();
    assert_eq!(handle.await, Ok(Ok(6)));
    assert_eq!(pool.stats().completed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_job_carries_its_own_id_and_timeout() {
    let pool = WorkerPool::builder()
        .workers(2)
        .job_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let secs = Duration::from_secs;
    let ok = pool
        .submit_job(
            1_u64,
            Sleeper {
                id: 2,
                sleep: secs(5),
                timeout: None,
            },
        )
        .await
        .unwrap();
    let err = pool
        .submit_job(
            1_u64,
            Sleeper {
                id: 3,
                sleep: secs(5),
                timeout: None,
            },
        )
        .await
        .unwrap();
    let late = pool
        .submit_job(
            1_u64,
            Sleeper {
                id: 4,
                sleep: secs(5),
                timeout: Some(secs(2)),
            },
        )
        .await
        .unwrap();
    assert_eq!((ok.id(), err.id(), late.id()), (Some(2), Some(3), Some(4)));
    assert_eq!(ok.await, Ok(Ok(2)));
    assert_eq!(err.await, Ok(Err("job 3 failed".to_owned())));
    assert_eq!(late.await, Err(JobError::TimedOut));
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.failed, stats.timed_out), (1, 1, 1));
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(Duration, Duration, Outcome)>>);

impl PoolObserver for Recorder {
    fn on_job(&self, queue_wait: Duration, run: Duration, outcome: Outcome) {
        self.0.lock().unwrap().push((queue_wait, run, outcome));
    }
}

#[tokio::test(start_paused = true)]
async fn the_observer_sees_queue_wait_and_run_time() {
    let recorder = Arc::new(Recorder::default());
    let pool = WorkerPool::builder()
        .workers(1)
        .observer(recorder.clone())
        .build()
        .unwrap();
    // The sleep starts when the job runs, not when it is submitted.
    let sleep = |secs| async move { tokio::time::sleep(Duration::from_secs(secs)).await };
    let first = pool.submit(0_u64, sleep(5)).await.unwrap();
    let second = pool.submit(0_u64, sleep(2)).await.unwrap();
    let third = pool
        .submit(0_u64, async { panic!("observed") })
        .await
        .unwrap();
    first.await.unwrap();
    second.await.unwrap();
    assert_eq!(third.await, Err::<(), _>(JobError::Panicked));
    let secs = Duration::from_secs;
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![
            (secs(0), secs(5), Outcome::Completed),
            (secs(5), secs(2), Outcome::Completed),
            (secs(7), secs(0), Outcome::Panicked),
        ]
    );
}

#[tokio::test]
async fn spawn_goes_to_the_least_loaded_shard() {
    let pool = WorkerPool::builder().workers(2).build().unwrap();
    let gate = gate();
    let g = Arc::clone(&gate);
    let stuck = pool
        .submit(0_u64, async move { pass(&g).await })
        .await
        .unwrap();
    until(|| pool.stats().running == 1).await;
    // Shard of key 0 is busy: every spawn must land on the other one and finish.
    for i in 0..20 {
        assert_eq!(pool.spawn(async move { i }).await.unwrap().await, Ok(i));
    }
    gate.add_permits(1);
    stuck.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_runs_every_queued_job() {
    const JOBS: u64 = 2_000;
    let pool = pool_of(3, 1_000);
    let gate = gate();
    let ran = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for i in 0..JOBS {
        let (gate, ran) = (Arc::clone(&gate), Arc::clone(&ran));
        let job = async move {
            if i < 3 {
                pass(&gate).await;
            }
            ran.fetch_add(1, Ordering::Relaxed);
            i
        };
        handles.push(pool.submit(i, job).await.unwrap());
    }
    let mut shutdown = Box::pin(pool.shutdown(Duration::from_secs(60)));
    // One poll starts the shutdown; it cannot finish while three jobs wait behind the gate.
    assert!(poll_immediate(&mut shutdown).await.is_none());
    assert!(pool.is_closed());
    assert!(
        pool.submit(0_u64, async { 0 })
            .await
            .unwrap_err()
            .is_closed()
    );
    gate.add_permits(3);
    assert!(shutdown.await.is_complete());
    assert_eq!(ran.load(Ordering::Relaxed), JOBS, "nothing lost");
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.await, Ok(i as u64));
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_reports_what_missed_the_deadline() {
    let pool = WorkerPool::builder().workers(1).build().unwrap();
    let running = pool
        .submit(0_u64, tokio::time::sleep(Duration::from_secs(3600)))
        .await
        .unwrap();
    until(|| pool.stats().running == 1).await;
    let queued: Vec<_> = (0..4)
        .map(|_| pool.try_submit(0_u64, async {}).unwrap())
        .collect();
    let report = pool.shutdown(Duration::from_secs(1)).await;
    assert_eq!((report.abandoned, report.interrupted), (4, 1));
    assert!(!report.is_complete());
    assert_eq!(running.await, Err(JobError::Cancelled));
    for handle in queued {
        assert_eq!(handle.await, Err(JobError::PoolClosed));
    }
}

#[tokio::test]
async fn abort_stops_at_once() {
    let pool = WorkerPool::builder()
        .workers(1)
        .max_queued(3)
        .build()
        .unwrap();
    let gate = gate();
    let g = Arc::clone(&gate);
    let running = pool
        .submit(0_u64, async move { pass(&g).await })
        .await
        .unwrap();
    until(|| pool.stats().running == 1).await;
    let queued: Vec<_> = (0..3)
        .map(|_| pool.try_submit(0_u64, async {}).unwrap())
        .collect();
    // A submitter waiting on the full pool-wide bound gets its job back.
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move {
            pool.submit(0_u64, async { 1 })
                .await
                .map(drop)
                .map_err(|e| e.is_closed())
        }
    });
    tokio::task::yield_now().await;
    pool.abort();
    assert_eq!(waiting.await.unwrap(), Err(true));
    assert_eq!(running.await, Err(JobError::Cancelled));
    for handle in queued {
        assert_eq!(handle.await, Err(JobError::PoolClosed));
    }
    assert!(pool.is_closed());
}

/// Jobs queued behind a running one stay in their slots until the worker takes them: an abort
/// while the first runs reports every other one as never run, and the queued count goes back
/// to zero.
#[tokio::test(flavor = "current_thread")]
async fn abort_drops_the_jobs_queued_behind_a_running_one() {
    let pool = pool_of(1, 8);
    let gate = gate();
    // One thread: nothing runs until this task waits, so all six are queued before the worker
    // takes the first.
    let running = try_submit_gated(&pool, &gate);
    let batched: Vec<_> = (0..5)
        .map(|i| pool.try_submit(0_u64, async move { i }).unwrap())
        .collect();
    assert_eq!(pool.stats().queued, 6);
    until(|| pool.stats().running == 1).await;
    assert_eq!(pool.stats().queued, 5);
    pool.abort();
    assert_eq!(running.await, Err(JobError::Cancelled));
    for handle in batched {
        assert_eq!(handle.await, Err(JobError::PoolClosed));
    }
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.completed), (0, 0));
}

/// A worker runs the jobs that end at once back to back in one poll, but within tokio's budget:
/// with a long queue it still gives its thread back now and then, so the thread's other tasks
/// run before the queue is through.
#[tokio::test(flavor = "current_thread")]
async fn a_worker_with_a_long_queue_gives_its_thread_back() {
    const JOBS: usize = 4096;
    let pool = pool_of(1, JOBS);
    let handles: Vec<_> = (0..JOBS)
        .map(|_| pool.try_submit(0_u64, async {}).unwrap())
        .collect();
    // Queued behind the worker on this one thread: it runs when the worker first yields.
    let probe = tokio::spawn({
        let pool = pool.clone();
        async move { pool.stats().completed }
    });
    for handle in handles {
        handle.await.unwrap();
    }
    let seen = probe.await.unwrap();
    assert!(
        0 < seen && seen < JOBS as u64,
        "the probe ran after {seen} of {JOBS} jobs"
    );
}

/// Workers that never ran (their runtime was dropped first) still let go of their queues: the
/// queued jobs' handles learn the pool closed instead of waiting forever, and submissions are
/// refused.
#[test]
fn a_runtime_dropped_before_its_workers_ran_closes_the_pool() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Built inside the runtime, which never runs the workers: `block_on` returns at once.
    let pool = runtime.block_on(async { pool_of(2, 4) });
    let queued: Vec<_> = (0..4_u64)
        .map(|key| pool.try_submit(key, async move { key }).unwrap())
        .collect();
    assert_eq!(pool.stats().queued, 4);
    drop(runtime);
    for handle in queued {
        assert_eq!(
            futures_util::FutureExt::now_or_never(handle),
            Some(Err(JobError::PoolClosed))
        );
    }
    assert_eq!(pool.stats().queued, 0);
    assert!(pool.try_submit(0_u64, async {}).unwrap_err().is_closed());
}

#[tokio::test]
async fn every_submission_after_close_hands_the_job_back() {
    let pool = WorkerPool::builder().build().unwrap();
    assert!(pool.shutdown(Duration::from_secs(1)).await.is_complete());
    let job = pool.submit(1_u64, async { 11 }).await.unwrap_err();
    assert!(job.is_closed());
    assert_eq!(job.into_inner().await, 11, "the job comes back intact");
    assert!(pool.try_submit(1_u64, async {}).unwrap_err().is_closed());
    assert!(pool.execute(1_u64, async {}).await.unwrap_err().is_closed());
    assert!(pool.try_execute(1_u64, async {}).unwrap_err().is_closed());
    assert!(pool.spawn(async {}).await.unwrap_err().is_closed());
    assert!(pool.try_spawn(async {}).unwrap_err().is_closed());
    let sleeper = Sleeper {
        id: 8,
        sleep: Duration::ZERO,
        timeout: None,
    };
    assert_eq!(
        pool.submit_job(1_u64, sleeper)
            .await
            .unwrap_err()
            .into_inner()
            .id,
        8
    );
    // A second shutdown returns at once.
    assert!(pool.shutdown(Duration::from_secs(1)).await.is_complete());

    let aborted = WorkerPool::builder().build().unwrap();
    aborted.abort();
    assert!(
        aborted
            .execute(1_u64, async {})
            .await
            .unwrap_err()
            .is_closed()
    );
}

#[tokio::test]
async fn builder_rejects_bad_values() {
    let bad = [
        (
            WorkerPool::builder().workers(0).build(),
            BuildError::ZeroWorkers,
        ),
        (
            WorkerPool::builder().workers(5_000).build(),
            BuildError::TooManyWorkers {
                got: 5_000,
                max: kwik_pool::MAX_WORKERS,
            },
        ),
        (
            WorkerPool::builder().queue_capacity(0).build(),
            BuildError::ZeroQueueCapacity,
        ),
        (
            WorkerPool::builder().queue_capacity(usize::MAX).build(),
            BuildError::QueueCapacityTooLarge {
                got: usize::MAX,
                max: kwik_pool::MAX_QUEUE_CAPACITY,
            },
        ),
        (
            // Each limit alone allows this; together it would be 4096 × 65,536 slots.
            WorkerPool::builder()
                .workers(kwik_pool::MAX_WORKERS)
                .queue_capacity(kwik_pool::MAX_QUEUE_CAPACITY)
                .build(),
            BuildError::TooManyQueueSlots {
                got: 1 << 28,
                max: kwik_pool::MAX_QUEUE_SLOTS,
            },
        ),
        (
            WorkerPool::builder().max_queued(0).build(),
            BuildError::ZeroMaxQueued,
        ),
        (
            WorkerPool::builder().job_timeout(Duration::ZERO).build(),
            BuildError::ZeroJobTimeout,
        ),
    ];
    for (result, expected) in bad {
        assert_eq!(result.unwrap_err(), expected);
    }
    assert!(WorkerPool::builder().build().unwrap().workers() >= 4);
}

#[test]
fn building_outside_a_runtime_is_an_error() {
    assert_eq!(
        WorkerPool::builder().build().unwrap_err(),
        BuildError::NoRuntime
    );
}

#[test]
fn a_timeout_on_a_runtime_without_timers_fails_the_job_not_the_worker() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = WorkerPool::builder()
            .workers(1)
            .job_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let timed = pool.submit(0_u64, async { 1 }).await.unwrap();
        assert_eq!(timed.await, Err(JobError::NoTimer));
        let untimed = Sleeper {
            id: 2,
            sleep: Duration::ZERO,
            timeout: None,
        };
        // The worker survived; a job without its own timeout still uses the pool's.
        assert_eq!(
            pool.submit_job(0_u64, untimed).await.unwrap().await,
            Err(JobError::NoTimer)
        );
        assert_eq!(pool.stats().timed_out, 2);
    });
}

/// A job is in the stats (and seen by the observer) by the time its handle resolves, so a caller
/// that awaited the handle reads consistent counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_a_job_before_its_handle_resolves() {
    let pool = WorkerPool::builder().workers(2).build().unwrap();
    for n in 1..=200_u64 {
        let handle = pool.submit(n, async move { n }).await.unwrap();
        assert_eq!(handle.await.unwrap(), n);
        let stats = pool.stats();
        assert_eq!(stats.completed, n, "job {n} resolved before it was counted");
    }
    assert!(pool.shutdown(Duration::from_secs(5)).await.is_complete());
}
