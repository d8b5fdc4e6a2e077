//! `pool_dispatch`: 1M tiny jobs per iteration through kwik's pool and its peers, in one group.
//!
//! Run: `cargo bench -p kwik-benches --bench pool -- --warm-up-time 1 --measurement-time 3`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kwik_benches::pool_dispatch::{Dispatcher, Strategy};

const JOBS: u64 = 1_000_000;
/// kwik-pool's default per-worker queue depth.
const QUEUE_CAPACITY: usize = 10;

fn pool_dispatch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .max(4);
    let mut group = c.benchmark_group("pool_dispatch");
    group.sample_size(10).throughput(Throughput::Elements(JOBS));
    for strategy in Strategy::ALL {
        let dispatcher = Dispatcher::new(strategy, &runtime, workers, QUEUE_CAPACITY);
        group.bench_function(strategy.name(), |b| {
            b.iter(|| dispatcher.run(&runtime, JOBS));
        });
    }
    group.finish();
}

criterion_group!(benches, pool_dispatch);
criterion_main!(benches);
