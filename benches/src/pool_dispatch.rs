//! The `pool_dispatch` workload, shared by the criterion suite (`benches/pool.rs`) and the
//! `pool_overload` binary: N tiny jobs (hash a 64-byte buffer) dispatched by one producer task
//! through each strategy, then waited for.

use std::collections::VecDeque;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use kwik_pool::{JobHandle, WorkerPool};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

/// Ordering keys the keyed strategies spread jobs over (think: paths of a few sessions).
pub const KEYS: u64 = 64;

/// Result handles `kwik_pool_keyed` keeps outstanding before it awaits the oldest one.
const HANDLE_WINDOW: usize = 4096;

/// A boxed job, as the seed's shared queue carried them.
type BoxJob = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One way of running jobs, built once and reused for every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `WorkerPool::submit(key, job)`, awaiting result handles in a sliding window.
    KwikPoolKeyed,
    /// `WorkerPool::execute(key, job)`: keyed, fire and forget.
    KwikPoolExecute,
    /// `tokio::spawn` per job.
    TokioSpawn,
    /// The bare sharded design kwik-pool builds on: one bounded flume channel and one worker per
    /// shard, `key % workers`, no handles, stats, panic or timeout handling. Shows what per-key
    /// order costs by itself, apart from kwik-pool's own overhead.
    ShardedQueue,
    /// The seed's design: one bounded flume channel (`workers × queue_capacity`; the seed used
    /// `workers × 10`), N workers, no order.
    SharedQueue,
}

impl Strategy {
    /// Every strategy, in report order.
    pub const ALL: [Self; 5] = [
        Self::KwikPoolKeyed,
        Self::KwikPoolExecute,
        Self::TokioSpawn,
        Self::ShardedQueue,
        Self::SharedQueue,
    ];

    /// The criterion id and command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::KwikPoolKeyed => "kwik_pool_keyed",
            Self::KwikPoolExecute => "kwik_pool_execute",
            Self::TokioSpawn => "tokio_spawn",
            Self::ShardedQueue => "sharded_queue",
            Self::SharedQueue => "shared_queue",
        }
    }

    /// The strategy called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A strategy set up on a runtime: pool or queue built, workers started.
pub struct Dispatcher {
    strategy: Strategy,
    pool: Option<WorkerPool>,
    /// The shared queue, or one queue per shard.
    queues: Vec<flume::Sender<BoxJob>>,
}

/// Jobs of the current batch not yet finished, and the wake-up of the waiting producer. One
/// batch runs at a time, so statics avoid an `Arc` clone per job (for every strategy alike).
static REMAINING: AtomicUsize = AtomicUsize::new(0);
static DONE: Notify = Notify::const_new();

/// The tiny job: FNV-1a over a 64-byte buffer seeded with `seed`, then count down.
async fn tiny_job(seed: u64) {
    black_box(hash64(seed));
    if REMAINING.fetch_sub(1, Ordering::AcqRel) == 1 {
        DONE.notify_one();
    }
}

/// FNV-1a of a 64-byte buffer: ~100 ns of real work that the optimiser cannot remove.
pub fn hash64(seed: u64) -> u64 {
    let mut buf = [0_u8; 64];
    for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed ^ i as u64).to_le_bytes());
    }
    buf.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A flume worker: runs the jobs it receives one at a time until the channel closes.
async fn drain(rx: flume::Receiver<BoxJob>) {
    while let Ok(job) = rx.recv_async().await {
        job.await;
    }
}

impl Dispatcher {
    /// Builds `strategy` on `runtime` with `workers` workers holding up to `queue_capacity` queued
    /// jobs each (the shared queue holds `workers × queue_capacity`; `tokio_spawn` ignores both).
    pub fn new(
        strategy: Strategy,
        runtime: &Runtime,
        workers: usize,
        queue_capacity: usize,
    ) -> Self {
        let _guard = runtime.enter();
        let mut dispatcher = Self {
            strategy,
            pool: None,
            queues: Vec::new(),
        };
        match strategy {
            Strategy::KwikPoolKeyed | Strategy::KwikPoolExecute => {
                let pool = WorkerPool::builder()
                    .workers(workers)
                    .queue_capacity(queue_capacity)
                    .build()
                    .expect("valid pool settings");
                dispatcher.pool = Some(pool);
            }
            Strategy::SharedQueue => {
                let (tx, rx) = flume::bounded::<BoxJob>(workers * queue_capacity);
                for _ in 0..workers {
                    runtime.spawn(drain(rx.clone()));
                }
                dispatcher.queues.push(tx);
            }
            Strategy::ShardedQueue => {
                for _ in 0..workers {
                    let (tx, rx) = flume::bounded::<BoxJob>(queue_capacity);
                    runtime.spawn(drain(rx));
                    dispatcher.queues.push(tx);
                }
            }
            Strategy::TokioSpawn => {}
        }
        dispatcher
    }

    /// Dispatches `jobs` jobs from one producer task and waits until all have run.
    pub fn run(&self, runtime: &Runtime, jobs: u64) {
        REMAINING.store(jobs as usize, Ordering::Release);
        let strategy = self.strategy;
        let pool = self.pool.clone();
        let queues = self.queues.clone();
        let producer = runtime.spawn(async move {
            match strategy {
                Strategy::KwikPoolKeyed => {
                    let pool = pool.expect("built with a pool");
                    let mut window: VecDeque<JobHandle<()>> =
                        VecDeque::with_capacity(HANDLE_WINDOW);
                    for i in 0..jobs {
                        if window.len() == HANDLE_WINDOW {
                            let oldest = window.pop_front().expect("window is full");
                            oldest.await.expect("job ran");
                        }
                        window.push_back(
                            pool.submit(i % KEYS, tiny_job(i)).await.expect("pool open"),
                        );
                    }
                    for handle in window {
                        handle.await.expect("job ran");
                    }
                }
                Strategy::KwikPoolExecute => {
                    let pool = pool.expect("built with a pool");
                    for i in 0..jobs {
                        pool.execute(i % KEYS, tiny_job(i))
                            .await
                            .expect("pool open");
                    }
                }
                Strategy::TokioSpawn => {
                    for i in 0..jobs {
                        drop(tokio::spawn(tiny_job(i)));
                    }
                }
                Strategy::SharedQueue | Strategy::ShardedQueue => {
                    // One queue for the shared design; key % workers for the sharded one.
                    let shards = queues.len() as u64;
                    for i in 0..jobs {
                        let queue = &queues[(i % KEYS % shards) as usize];
                        queue
                            .send_async(Box::pin(tiny_job(i)))
                            .await
                            .expect("workers alive");
                    }
                }
            }
            DONE.notified().await;
        });
        runtime.block_on(producer).expect("producer finished");
    }
}
